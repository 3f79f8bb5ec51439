"""A loopback emulator of the Databricks REST API that fraud_assets calls, for tests.

It speaks the wire format the Databricks SDK uses:

- Jobs 2.2: ``runs/submit``, ``run-now``, ``runs/get``, ``runs/get-output``, ``runs/cancel``,
  ``list``, ``get`` and ``create`` (the last one stands in for ``databricks bundle deploy``);
- DBFS 2.0: ``mkdirs``, ``put``, ``create``, ``add-block``, ``close``, ``read``,
  ``get-status``, ``delete``, ``list``;
- Files 2.0 for Unity Catalog Volumes: ``/api/2.0/fs/files/...`` (GET, PUT, HEAD, DELETE) and
  ``/api/2.0/fs/directories/...`` (GET, PUT, HEAD, DELETE);
- Cluster policies 2.0: ``list`` (one policy, "Job Compute", as the bundle looks up);
- Model Serving: ``serving-endpoints`` create, get and ``{name}/config`` (update_config),
  with the update states the SDK waits on (``serving.py``);
- OAuth machine-to-machine: the OIDC discovery document and ``/oidc/v1/token``.

A missing path answers 404 with ``{"error_code": "RESOURCE_DOES_NOT_EXIST"}``.

Submitted work really runs. A ``python_wheel_task`` runs its entry point's module
(``entry_point`` -> module through ``fraud_assets.tasks.TASKS``) as ``python -m <module>
<parameters...>`` in a local subprocess with local PySpark, in the same virtualenv: the
wheel is not built or installed, but a task without the wheel as a library (classic compute)
or as an environment dependency (serverless) fails the way a cluster without the package
would. DBFS and Volumes live under one temporary FUSE root laid out like a cluster's mounts
(``<root>/dbfs/...`` and ``<root>/Volumes/...``); the subprocess learns the root from
``FRAUD_DATABRICKS_FUSE_ROOT``. That variable is the one seam between emulator and cluster.
The subprocess gets none of the caller's ``DATABRICKS_*``, ``FRAUD_*`` or ``DAGSTER_*``
variables: like a real cluster, it only knows what the launch sent.

Runs go PENDING -> RUNNING -> TERMINATING -> TERMINATED (SUCCESS / FAILED / CANCELED /
TIMEDOUT) or INTERNAL_ERROR. Faults: HTTP errors on an endpoint for the next n calls (with
``Retry-After`` for 429/503 when asked), and for the next run: ``hang`` (stays RUNNING and
ignores its platform timeout), ``cancel_externally`` (someone cancels it in the workspace UI
once it runs) or ``internal_error``.
"""

from __future__ import annotations

import base64
import json
import re
import secrets as secrets_module
import sys
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from fraud_assets.tasks import TASKS
from fraud_assets_tests.emulator.core import (
    CLUSTER_POLICY_ID,
    JOBS_PATH,
    USER_NAME,
    ApiError,
    HttpFault,
    RecordedRequest,
    RunFault,
    now_ms,
)
from fraud_assets_tests.emulator.dbfs import DbfsApi
from fraud_assets_tests.emulator.files import VolumesApi
from fraud_assets_tests.emulator.jobs import EmulatedRun, EmulatedTask, JobsApi
from fraud_assets_tests.emulator.serving import (
    SERVING_PATH,
    EmulatedEndpoint,
    ServingEndpointsApi,
)


class DatabricksEmulator(JobsApi, DbfsApi, VolumesApi, ServingEndpointsApi):
    """The emulated workspace: an HTTP server on 127.0.0.1 plus the runs it executes."""

    def __init__(
        self,
        root: Path,
        *,
        token: str,
        oauth_clients: Mapping[str, str] | None = None,
        entry_points: Mapping[str, str] | None = None,
        python: str = sys.executable,
        pending_seconds: float = 0.05,
    ) -> None:
        self.root = Path(root)
        self.fuse_root = self.root / "fuse"
        self.dbfs_root = self.fuse_root / "dbfs"
        self.volumes_root = self.fuse_root / "Volumes"
        self.runs_dir = self.root / "runs"
        for folder in (self.dbfs_root, self.volumes_root, self.runs_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self.python = python
        self.pending_seconds = pending_seconds
        self.entry_points = dict(
            entry_points or {spec.script: spec.module for spec in TASKS.values()}
        )
        self.oauth_clients = dict(oauth_clients or {})
        self._tokens = {token}
        self._lock = threading.RLock()
        self._ids = iter(range(1001, 10**9))
        self._http_faults: list[HttpFault] = []
        self._run_faults: list[RunFault] = []
        self._runs: dict[int, EmulatedRun] = {}
        self._task_runs: dict[int, tuple[EmulatedRun, EmulatedTask]] = {}
        self._jobs: dict[int, dict[str, Any]] = {}
        self._idempotency: dict[str, int] = {}
        self._handles: dict[int, tuple[Path, bytearray]] = {}
        self._threads: list[threading.Thread] = []
        self.requests: list[RecordedRequest] = []
        self.cluster_policies = [{"policy_id": CLUSTER_POLICY_ID, "name": "Job Compute"}]
        self.volume_grants: dict[str, list[dict[str, Any]]] = {}
        self._endpoints: dict[str, EmulatedEndpoint] = {}
        self._endpoint_update_failures: list[str] = []
        self.endpoint_update_seconds = 0.0
        self._server: ThreadingHTTPServer | None = None

    # ---------------------------------------------------------------- lifecycle

    @property
    def host(self) -> str:
        if self._server is None:
            raise RuntimeError("the emulator is not started")
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}"

    def start(self) -> DatabricksEmulator:
        server = ThreadingHTTPServer(("127.0.0.1", 0), RequestHandler)
        server.daemon_threads = True
        server.emulator = self  # type: ignore[attr-defined]
        self._server = server
        thread = threading.Thread(target=server.serve_forever, name="databricks-emulator")
        thread.daemon = True
        thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and kill whatever still runs, so a test never leaks processes."""
        for run in list(self._runs.values()):
            if not run.terminal:
                self.cancel(run.run_id, by="emulator shutdown")
        for thread in self._threads:
            thread.join(timeout=30)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> DatabricksEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---------------------------------------------------------------- test controls

    def fail_http(
        self,
        path: str,
        status: int,
        *,
        times: int = 1,
        method: str | None = None,
        retry_after: int | None = None,
        body: str | None = None,
    ) -> HttpFault:
        """Answer the next ``times`` requests whose path starts with ``path`` with ``status``."""
        fault = HttpFault(path, status, times, method, retry_after, body)
        with self._lock:
            self._http_faults.append(fault)
        return fault

    def fault_next_run(self, fault: RunFault) -> None:
        """Make the next submitted or run-now run hang, be cancelled externally, or break."""
        with self._lock:
            self._run_faults.append(fault)

    def mint_token(self, kind: str) -> str:
        """A new token the emulator accepts, e.g. the identity a run's tasks act as."""
        token = f"emu-{kind}-{secrets_module.token_hex(16)}"
        with self._lock:
            self._tokens.add(token)
        return token

    def create_volume(self, full_name: str, *, grants: list[dict[str, Any]] | None = None) -> str:
        """Create the UC Volume ``catalog.schema.volume``, recording its grants (as the
        bundle declares them) in ``volume_grants``; returns its ``/Volumes`` path."""
        catalog, schema, volume = full_name.split(".")
        (self.volumes_root / catalog / schema / volume).mkdir(parents=True, exist_ok=True)
        self.volume_grants[full_name] = list(grants or [])
        return f"/Volumes/{catalog}/{schema}/{volume}"

    def create_job(self, settings: Mapping[str, Any]) -> int:
        """Register a job the way ``databricks bundle deploy`` would; returns its id."""
        with self._lock:
            job_id = next(self._ids)
            self._jobs[job_id] = {
                "job_id": job_id,
                "settings": json.loads(json.dumps(settings)),
                "created_time": now_ms(),
                "creator_user_name": USER_NAME,
            }
        return job_id

    def cancel(self, run_id: int, *, by: str = "workspace user") -> None:
        with self._lock:
            run = self._runs.get(run_id)
            if run is None:
                raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Run {run_id} does not exist.")
            if run.terminal or run.cancel_event.is_set():
                return
            run.cancel_requested_by = by
            run.life_cycle_state = "TERMINATING"
            run.cancel_event.set()

    @property
    def runs(self) -> list[EmulatedRun]:
        with self._lock:
            return list(self._runs.values())

    def run(self, run_id: int) -> EmulatedRun:
        return self._runs[run_id]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError("condition not reached in the emulator")
            time.sleep(0.05)

    def calls(self, method: str, path: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == method and r.path.startswith(path)]

    # ---------------------------------------------------------------- HTTP dispatch

    def handle(self, handler: RequestHandler, method: str) -> None:
        url = urlsplit(handler.path)
        path = url.path
        query = parse_qs(url.query)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        record = RecordedRequest(method, path, query, dict(handler.headers.items()), body)
        with self._lock:
            self.requests.append(record)
            fault = next((f for f in self._http_faults if f.matches(method, path)), None)
            if fault is not None:
                fault.hits += 1
        if fault is not None:
            record.status = fault.status
            headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after else {}
            if fault.body is not None:
                handler.respond(fault.status, fault.body.encode(), "text/plain", headers)
            else:
                code = {429: "REQUEST_LIMIT_EXCEEDED", 503: "TEMPORARILY_UNAVAILABLE"}.get(
                    fault.status, "INTERNAL_ERROR"
                )
                handler.respond_json(
                    fault.status, {"error_code": code, "message": "injected fault"}, headers
                )
            return
        try:
            if path.startswith("/oidc/"):
                status = self._oauth(handler, method, path, body)
            else:
                self._authenticate(handler)
                status = self._route(handler, method, path, query, body)
        except ApiError as err:
            status = err.status
            if method == "HEAD":
                handler.respond(err.status, b"", "application/json")
            else:
                handler.respond_json(
                    err.status, {"error_code": err.error_code, "message": err.message}
                )
        record.status = status

    def _authenticate(self, handler: RequestHandler) -> None:
        scheme, _, value = (handler.headers.get("Authorization") or "").partition(" ")
        if scheme != "Bearer" or value not in self._tokens:
            raise ApiError(401, "UNAUTHENTICATED", "Invalid access token.")

    def _route(
        self,
        handler: RequestHandler,
        method: str,
        path: str,
        query: dict[str, list[str]],
        body: bytes,
    ) -> int:
        if path.startswith("/api/2.0/fs/files/"):
            return self._files(
                handler, method, unquote(path[len("/api/2.0/fs/files") :]), query, body
            )
        if path.startswith("/api/2.0/fs/directories/"):
            return self._directories(
                handler, method, unquote(path[len("/api/2.0/fs/directories") :]).rstrip("/")
            )
        payload = json.loads(body) if body else {}
        if path.startswith(SERVING_PATH):
            handler.respond_json(200, self._serving(method, path, payload))
            return 200
        args = {k: v[-1] for k, v in query.items()}
        jobs_match = re.fullmatch(JOBS_PATH + r"/(.+)", path)
        key = (method, f"jobs/{jobs_match.group(1)}" if jobs_match else path)
        routes: dict[tuple[str, str], Callable[[dict[str, Any]], dict[str, Any]]] = {
            ("POST", "jobs/runs/submit"): self._runs_submit,
            ("POST", "jobs/run-now"): self._run_now,
            ("GET", "jobs/runs/get"): self._runs_get,
            ("GET", "jobs/runs/get-output"): self._runs_get_output,
            ("POST", "jobs/runs/cancel"): self._runs_cancel,
            ("POST", "jobs/create"): lambda p: {"job_id": self.create_job(p)},
            ("GET", "jobs/get"): self._jobs_get,
            ("GET", "jobs/list"): self._jobs_list,
            ("GET", "/api/2.0/preview/scim/v2/Me"): lambda _: {
                "id": "1",
                "userName": USER_NAME,
                "active": True,
            },
            ("POST", "/api/2.0/dbfs/mkdirs"): self._dbfs_mkdirs,
            ("POST", "/api/2.0/dbfs/put"): self._dbfs_put,
            ("POST", "/api/2.0/dbfs/create"): self._dbfs_create,
            ("POST", "/api/2.0/dbfs/add-block"): self._dbfs_add_block,
            ("POST", "/api/2.0/dbfs/close"): self._dbfs_close,
            ("GET", "/api/2.0/dbfs/read"): self._dbfs_read,
            ("GET", "/api/2.0/dbfs/get-status"): self._dbfs_get_status,
            ("POST", "/api/2.0/dbfs/delete"): self._dbfs_delete,
            ("GET", "/api/2.0/dbfs/list"): self._dbfs_list,
            ("GET", "/api/2.0/policies/clusters/list"): lambda _: {
                "policies": self.cluster_policies
            },
        }
        route = routes.get(key)
        if route is None:
            raise ApiError(404, "ENDPOINT_NOT_FOUND", f"No API found for '{method} {path}'")
        handler.respond_json(200, route(payload if method == "POST" else args))
        return 200

    # ---------------------------------------------------------------- OAuth M2M

    def _oauth(self, handler: RequestHandler, method: str, path: str, body: bytes) -> int:
        if method == "GET" and path == "/oidc/.well-known/oauth-authorization-server":
            handler.respond_json(
                200,
                {
                    "issuer": f"{self.host}/oidc",
                    "authorization_endpoint": f"{self.host}/oidc/v1/authorize",
                    "token_endpoint": f"{self.host}/oidc/v1/token",
                },
            )
            return 200
        if method == "POST" and path == "/oidc/v1/token":
            form = {k: v[-1] for k, v in parse_qs(body.decode()).items()}
            scheme, _, encoded = (handler.headers.get("Authorization") or "").partition(" ")
            client_id, client_secret = form.get("client_id"), form.get("client_secret")
            if scheme == "Basic":
                client_id, _, client_secret = base64.b64decode(encoded).decode().partition(":")
            if form.get("grant_type") != "client_credentials" or (
                self.oauth_clients.get(client_id or "") != client_secret
            ):
                handler.respond_json(401, {"error": "invalid_client"})
                return 401
            access_token = self.mint_token("oauth")
            handler.respond_json(
                200,
                {
                    "access_token": access_token,
                    "token_type": "Bearer",
                    "expires_in": 3600,
                    "scope": "all-apis",
                },
            )
            return 200
        raise ApiError(404, "ENDPOINT_NOT_FOUND", f"No API found for '{method} {path}'")


class RequestHandler(BaseHTTPRequestHandler):
    server_version = "DatabricksEmulator/1.0"

    @property
    def emulator(self) -> DatabricksEmulator:
        return self.server.emulator  # type: ignore[attr-defined]

    def do_GET(self) -> None:
        self.emulator.handle(self, "GET")

    def do_POST(self) -> None:
        self.emulator.handle(self, "POST")

    def do_PUT(self) -> None:
        self.emulator.handle(self, "PUT")

    def do_DELETE(self) -> None:
        self.emulator.handle(self, "DELETE")

    def do_HEAD(self) -> None:
        self.emulator.handle(self, "HEAD")

    def respond(
        self,
        status: int,
        body: bytes,
        content_type: str | None,
        headers: Mapping[str, str] | None = None,
        *,
        length: int | None = None,
    ) -> None:
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def respond_json(
        self, status: int, payload: Any, headers: Mapping[str, str] | None = None
    ) -> None:
        self.respond(status, json.dumps(payload).encode(), "application/json", headers)

    def log_message(self, format: str, *args: Any) -> None:
        # Requests are kept in DatabricksEmulator.requests; stderr stays quiet.
        return
