"""A loopback emulator of the Databricks REST API that fraud_assets calls, for tests.

It speaks the wire format the Databricks SDK uses:

- Jobs 2.2: ``runs/submit``, ``run-now``, ``runs/get``, ``runs/get-output``, ``runs/cancel``,
  ``list``, ``get`` and ``create`` (the last one stands in for ``databricks bundle deploy``);
- DBFS 2.0: ``mkdirs``, ``put``, ``create``, ``add-block``, ``close``, ``read``,
  ``get-status``, ``delete``, ``list``;
- Files 2.0 for Unity Catalog Volumes: ``/api/2.0/fs/files/...`` (GET, PUT, HEAD, DELETE) and
  ``/api/2.0/fs/directories/...`` (GET, PUT, HEAD, DELETE);
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
import os
import re
import secrets as secrets_module
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

from fraud_assets.tasks import TASKS

RunFault = Literal["hang", "cancel_externally", "internal_error"]
FUSE_ROOT_VAR = "FRAUD_DATABRICKS_FUSE_ROOT"
PACKAGE_NAME = "fraud_assets"
USER_NAME = "emulator@example.com"
_MAX_DBFS_READ = 1024 * 1024
_MAX_LOG_BYTES = 1024 * 1024
_TERMINAL = {"TERMINATED", "SKIPPED", "INTERNAL_ERROR"}
_JOBS = r"/api/2\.[12]/jobs"


class ApiError(Exception):
    """An error answer in the Databricks format."""

    def __init__(self, status: int, error_code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message


def _missing(what: str) -> ApiError:
    return ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"{what} does not exist.")


@dataclass
class HttpFault:
    """Answer the next ``times`` matching requests with ``status`` instead of serving them."""

    path: str
    status: int
    times: int
    method: str | None = None
    retry_after: int | None = None
    body: str | None = None
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        return (
            self.hits < self.times
            and path.startswith(self.path)
            and (self.method is None or self.method == method)
        )


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    status: int = 0


@dataclass
class EmulatedTask:
    run_id: int
    task_key: str
    spec: dict[str, Any]
    life_cycle_state: str = "PENDING"
    result_state: str | None = None
    state_message: str = ""
    start_time: int = 0
    end_time: int = 0
    exit_code: int | None = None
    log_path: Path | None = None
    error: str | None = None
    error_trace: str | None = None
    command: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class EmulatedRun:
    run_id: int
    job_id: int
    run_name: str
    run_type: str
    tasks: list[EmulatedTask]
    environments: list[dict[str, Any]]
    job_clusters: list[dict[str, Any]]
    timeout_seconds: int
    fault: RunFault | None
    life_cycle_state: str = "PENDING"
    result_state: str | None = None
    state_message: str = ""
    start_time: int = 0
    end_time: int = 0
    job_parameters: dict[str, str] = field(default_factory=dict)
    cancel_requested_by: str | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def terminal(self) -> bool:
        return self.life_cycle_state in _TERMINAL


def _now_ms() -> int:
    return int(time.time() * 1000)


class DatabricksEmulator:
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
        self._server: ThreadingHTTPServer | None = None

    # ---------------------------------------------------------------- lifecycle

    @property
    def host(self) -> str:
        if self._server is None:
            raise RuntimeError("the emulator is not started")
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}"

    def start(self) -> DatabricksEmulator:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
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

    def create_volume(self, full_name: str) -> str:
        """Create the UC Volume ``catalog.schema.volume``; returns its ``/Volumes`` path."""
        catalog, schema, volume = full_name.split(".")
        (self.volumes_root / catalog / schema / volume).mkdir(parents=True, exist_ok=True)
        return f"/Volumes/{catalog}/{schema}/{volume}"

    def create_job(self, settings: Mapping[str, Any]) -> int:
        """Register a job the way ``databricks bundle deploy`` would; returns its id."""
        with self._lock:
            job_id = next(self._ids)
            self._jobs[job_id] = {
                "job_id": job_id,
                "settings": json.loads(json.dumps(settings)),
                "created_time": _now_ms(),
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

    def handle(self, handler: _Handler, method: str) -> None:
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

    def _authenticate(self, handler: _Handler) -> None:
        scheme, _, value = (handler.headers.get("Authorization") or "").partition(" ")
        if scheme != "Bearer" or value not in self._tokens:
            raise ApiError(401, "UNAUTHENTICATED", "Invalid access token.")

    def _route(
        self,
        handler: _Handler,
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
        args = {k: v[-1] for k, v in query.items()}
        jobs_match = re.fullmatch(_JOBS + r"/(.+)", path)
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
        }
        route = routes.get(key)
        if route is None:
            raise ApiError(404, "ENDPOINT_NOT_FOUND", f"No API found for '{method} {path}'")
        handler.respond_json(200, route(payload if method == "POST" else args))
        return 200

    # ---------------------------------------------------------------- OAuth M2M

    def _oauth(self, handler: _Handler, method: str, path: str, body: bytes) -> int:
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
            access_token = f"emu-oauth-{secrets_module.token_hex(16)}"
            with self._lock:
                self._tokens.add(access_token)
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

    # ---------------------------------------------------------------- Jobs

    def _runs_submit(self, payload: dict[str, Any]) -> dict[str, Any]:
        tasks = payload.get("tasks") or []
        if not tasks:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", "A run needs at least one task.")
        return self._start_run(
            job_id=None,
            run_name=payload.get("run_name") or "Untitled",
            run_type="SUBMIT_RUN",
            tasks=tasks,
            environments=payload.get("environments") or [],
            job_clusters=[],
            timeout_seconds=int(payload.get("timeout_seconds") or 0),
            idempotency_token=payload.get("idempotency_token"),
        )

    def _run_now(self, payload: dict[str, Any]) -> dict[str, Any]:
        job_id = int(payload.get("job_id") or 0)
        job = self._jobs.get(job_id)
        if job is None:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Job {job_id} does not exist.")
        settings = job["settings"]
        python_params = payload.get("python_params")
        python_named_params = payload.get("python_named_params")
        declared = {p["name"]: str(p.get("default", "")) for p in settings.get("parameters") or []}
        if declared and (python_params is not None or python_named_params is not None):
            raise ApiError(
                400,
                "INVALID_PARAMETER_VALUE",
                "Task-level parameter overrides (python_params, python_named_params) cannot be "
                "used in a job that defines job parameters; pass job_parameters instead.",
            )
        job_parameters = {**declared, **(payload.get("job_parameters") or {})}
        only = payload.get("only")
        defined = json.loads(json.dumps(settings.get("tasks") or []))
        if only is not None:
            unknown = set(only) - {t.get("task_key") for t in defined}
            if unknown:
                raise ApiError(
                    400, "INVALID_PARAMETER_VALUE", f"Tasks {sorted(unknown)} are not in the job."
                )
            defined = [t for t in defined if t.get("task_key") in only]
        tasks: list[dict[str, Any]] = []
        for task in defined:
            for concrete in _expand_for_each(task, job_parameters):
                wheel = concrete.get("python_wheel_task")
                if wheel is not None:
                    _apply_run_now_parameters(
                        wheel, python_params, python_named_params, job_parameters
                    )
                tasks.append(concrete)
        return self._start_run(
            job_id=job_id,
            run_name=settings.get("name") or f"job {job_id}",
            run_type="JOB_RUN",
            tasks=tasks,
            environments=settings.get("environments") or [],
            job_clusters=settings.get("job_clusters") or [],
            timeout_seconds=int(settings.get("timeout_seconds") or 0),
            idempotency_token=payload.get("idempotency_token"),
            job_parameters=job_parameters,
        )

    def _start_run(
        self,
        *,
        job_id: int | None,
        run_name: str,
        run_type: str,
        tasks: list[dict[str, Any]],
        environments: list[dict[str, Any]],
        job_clusters: list[dict[str, Any]],
        timeout_seconds: int,
        idempotency_token: str | None,
        job_parameters: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        with self._lock:
            if idempotency_token and idempotency_token in self._idempotency:
                return {"run_id": self._idempotency[idempotency_token]}
            run_id = next(self._ids)
            run = EmulatedRun(
                run_id=run_id,
                job_id=job_id if job_id is not None else next(self._ids),
                run_name=run_name,
                run_type=run_type,
                tasks=[
                    EmulatedTask(run_id=next(self._ids), task_key=t.get("task_key", ""), spec=t)
                    for t in tasks
                ],
                environments=environments,
                job_clusters=job_clusters,
                timeout_seconds=timeout_seconds,
                fault=self._run_faults.pop(0) if self._run_faults else None,
                start_time=_now_ms(),
                job_parameters=dict(job_parameters or {}),
            )
            self._runs[run_id] = run
            for task in run.tasks:
                self._task_runs[task.run_id] = (run, task)
            if idempotency_token:
                self._idempotency[idempotency_token] = run_id
            thread = threading.Thread(target=self._execute, args=(run,), daemon=True)
            self._threads.append(thread)
        thread.start()
        return {"run_id": run_id, "number_in_job": run_id}

    def _runs_get(self, args: dict[str, Any]) -> dict[str, Any]:
        run = self._runs.get(int(args.get("run_id") or 0))
        if run is None:
            raise ApiError(
                400, "INVALID_PARAMETER_VALUE", f"Run {args.get('run_id')} does not exist."
            )
        return self._run_json(run)

    def _runs_get_output(self, args: dict[str, Any]) -> dict[str, Any]:
        run_id = int(args.get("run_id") or 0)
        if run_id in self._runs:
            raise ApiError(
                400,
                "INVALID_PARAMETER_VALUE",
                "Retrieving the output of runs with multiple tasks is not supported. "
                "Please retrieve the output of each individual task run instead.",
            )
        found = self._task_runs.get(run_id)
        if found is None:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Run {run_id} does not exist.")
        run, task = found
        output: dict[str, Any] = {"metadata": self._task_json(run, task)}
        if task.log_path is not None and task.log_path.exists():
            raw = task.log_path.read_bytes()
            output["logs"] = raw[-_MAX_LOG_BYTES:].decode("utf-8", errors="replace")
            output["logs_truncated"] = len(raw) > _MAX_LOG_BYTES
        if task.error:
            output["error"] = task.error
        if task.error_trace:
            output["error_trace"] = task.error_trace
        return output

    def _runs_cancel(self, payload: dict[str, Any]) -> dict[str, Any]:
        self.cancel(int(payload.get("run_id") or 0), by="runs/cancel")
        return {}

    def _jobs_get(self, args: dict[str, Any]) -> dict[str, Any]:
        job = self._jobs.get(int(args.get("job_id") or 0))
        if job is None:
            raise ApiError(
                400, "INVALID_PARAMETER_VALUE", f"Job {args.get('job_id')} does not exist."
            )
        return job

    def _jobs_list(self, args: dict[str, Any]) -> dict[str, Any]:
        name = args.get("name")
        jobs = [
            job
            for job in self._jobs.values()
            if name is None or str(job["settings"].get("name", "")).lower() == name.lower()
        ]
        return {"jobs": jobs, "has_more": False} if jobs else {"has_more": False}

    def _run_json(self, run: EmulatedRun) -> dict[str, Any]:
        return {
            "job_id": run.job_id,
            "run_id": run.run_id,
            "number_in_job": run.run_id,
            "creator_user_name": USER_NAME,
            "run_name": run.run_name,
            "run_type": run.run_type,
            "state": self._state_json(run.life_cycle_state, run.result_state, run.state_message),
            "status": self._status_json(run.life_cycle_state, run.result_state, run.state_message),
            "start_time": run.start_time,
            "end_time": run.end_time,
            "run_page_url": f"{self.host}/?o=0#job/{run.job_id}/run/{run.run_id}",
            "tasks": [self._task_json(run, task) for task in run.tasks],
            "environments": run.environments,
            "job_clusters": run.job_clusters,
            "format": "MULTI_TASK",
        }

    def _task_json(self, run: EmulatedRun, task: EmulatedTask) -> dict[str, Any]:
        return {
            **{k: v for k, v in task.spec.items() if k not in ("depends_on", "_for_each_input")},
            "run_id": task.run_id,
            "task_key": task.task_key,
            "state": self._state_json(task.life_cycle_state, task.result_state, task.state_message),
            "start_time": task.start_time,
            "end_time": task.end_time,
            "attempt_number": 0,
            "run_page_url": f"{self.host}/?o=0#job/{run.job_id}/run/{task.run_id}",
        }

    @staticmethod
    def _state_json(life: str, result: str | None, message: str) -> dict[str, Any]:
        state: dict[str, Any] = {
            "life_cycle_state": life,
            "state_message": message,
            "user_cancelled_or_timedout": result in ("CANCELED", "TIMEDOUT"),
        }
        if result:
            state["result_state"] = result
        return state

    @staticmethod
    def _status_json(life: str, result: str | None, message: str) -> dict[str, Any]:
        if life not in _TERMINAL:
            return {"state": life}
        code = {
            "SUCCESS": "SUCCESS",
            "FAILED": "RUN_EXECUTION_ERROR",
            "CANCELED": "CANCELED",
            "TIMEDOUT": "TIMEOUT",
        }.get(result or "", "INTERNAL_ERROR")
        return {"state": "TERMINATED", "termination_details": {"code": code, "message": message}}

    # ---------------------------------------------------------------- run execution

    def _execute(self, run: EmulatedRun) -> None:
        try:
            self._execute_tasks(run)
        finally:
            run.end_time = _now_ms()
            run.done.set()

    def _execute_tasks(self, run: EmulatedRun) -> None:
        time.sleep(self.pending_seconds)
        if run.fault == "internal_error":
            self._finish(run, "INTERNAL_ERROR", None, "Emulated internal error: cluster lost")
            return
        deadline = time.monotonic() + run.timeout_seconds if run.timeout_seconds else None
        for task in run.tasks:
            if run.cancel_event.is_set():
                break
            run.life_cycle_state = "RUNNING"
            task.life_cycle_state, task.start_time = "RUNNING", _now_ms()
            if run.fault == "hang":
                run.cancel_event.wait()
                break
            problem = self._task_problem(run, task)
            if problem is not None:
                task.error = problem
                self._finish_task(task, "FAILED", problem)
                break
            outcome = self._run_process(run, task, deadline)
            if outcome != "SUCCESS":
                break
        if run.cancel_event.is_set():
            for task in run.tasks:
                if task.result_state is None:
                    self._finish_task(task, "CANCELED", "Run cancelled.")
            self._finish(run, "TERMINATED", "CANCELED", "Run cancelled.")
            return
        results = [t.result_state for t in run.tasks]
        if all(r == "SUCCESS" for r in results):
            self._finish(run, "TERMINATED", "SUCCESS", "")
        elif "TIMEDOUT" in results:
            self._finish(run, "TERMINATED", "TIMEDOUT", "Run timed out.")
        else:
            failed = next(t for t in run.tasks if t.result_state not in (None, "SUCCESS"))
            for task in run.tasks:
                if task.result_state is None:
                    self._finish_task(task, "UPSTREAM_FAILED", "Upstream task failed.")
            self._finish(run, "TERMINATED", "FAILED", f"Task {failed.task_key} failed.")

    def _task_problem(self, run: EmulatedRun, task: EmulatedTask) -> str | None:
        """Why this task cannot start, as a cluster would report it, or None."""
        wheel = task.spec.get("python_wheel_task")
        if wheel is None:
            return "The emulator runs python_wheel_task tasks only."
        if wheel.get("package_name") != PACKAGE_NAME:
            return f"ModuleNotFoundError: No module named '{wheel.get('package_name')}'"
        if not self._has_wheel(run, task):
            return f"ModuleNotFoundError: No module named '{PACKAGE_NAME}' (no wheel installed)"
        if wheel.get("entry_point") not in self.entry_points:
            return (
                f"RuntimeError: entry point {wheel.get('entry_point')!r} is not in the "
                f"metadata of package {PACKAGE_NAME}"
            )
        return None

    def _has_wheel(self, run: EmulatedRun, task: EmulatedTask) -> bool:
        env_key = task.spec.get("environment_key")
        if env_key is not None:
            env = next((e for e in run.environments if e.get("environment_key") == env_key), None)
            deps = ((env or {}).get("spec") or {}).get("dependencies") or []
            return any(str(d).endswith(".whl") for d in deps)
        return any(
            str(lib.get("whl", "")).endswith(".whl") for lib in task.spec.get("libraries") or []
        )

    def _cluster_env(self, run: EmulatedRun, task: EmulatedTask) -> dict[str, str]:
        cluster = task.spec.get("new_cluster")
        key = task.spec.get("job_cluster_key")
        if cluster is None and key is not None:
            cluster = next(
                (c.get("new_cluster") for c in run.job_clusters if c.get("job_cluster_key") == key),
                None,
            )
        return {str(k): str(v) for k, v in ((cluster or {}).get("spark_env_vars") or {}).items()}

    def _run_process(self, run: EmulatedRun, task: EmulatedTask, deadline: float | None) -> str:
        wheel = task.spec["python_wheel_task"]
        values = {
            **{f"job.parameters.{k}": v for k, v in run.job_parameters.items()},
            "job.run_id": str(run.run_id),
            "task.run_id": str(task.run_id),
            "input": str(task.spec.get("_for_each_input", "")),
        }
        named = wheel.get("named_parameters")
        if named is not None:
            parameters = [f"--{k}={_render(str(v), values)}" for k, v in named.items()]
        else:
            parameters = [_render(str(p), values) for p in wheel.get("parameters") or []]
        module = self.entry_points[wheel["entry_point"]]
        workdir = self.runs_dir / str(task.run_id)
        workdir.mkdir(parents=True, exist_ok=True)
        task.log_path = workdir / "output.log"
        # Like a cluster, the task sees only what the launch sent, not the caller's settings.
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("DATABRICKS_", "FRAUD_", "DAGSTER_"))
        }
        env.update(self._cluster_env(run, task))
        env[FUSE_ROOT_VAR] = str(self.fuse_root)
        env["PYTHONUNBUFFERED"] = "1"
        task.command = [self.python, "-m", module, *parameters]
        task.env = env
        with open(task.log_path, "wb") as log:
            process = subprocess.Popen(
                task.command,
                cwd=workdir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            if run.fault == "cancel_externally":
                threading.Timer(0.5, self.cancel, args=(run.run_id,)).start()
            outcome = None
            while process.poll() is None:
                if run.cancel_event.is_set():
                    outcome = "CANCELED"
                elif deadline is not None and time.monotonic() > deadline:
                    outcome = "TIMEDOUT"
                if outcome is not None:
                    _kill(process)
                    break
                time.sleep(0.05)
        task.exit_code = process.returncode
        output = task.log_path.read_text(encoding="utf-8", errors="replace")
        if outcome == "CANCELED":
            self._finish_task(task, "CANCELED", "Run cancelled.")
        elif outcome == "TIMEDOUT":
            self._finish_task(task, "TIMEDOUT", "Task timed out.")
        elif process.returncode == 0:
            self._finish_task(task, "SUCCESS", "")
        else:
            task.error, task.error_trace = _python_error(output, process.returncode)
            self._finish_task(task, "FAILED", f"Task failed with exit code {process.returncode}")
        return task.result_state or "FAILED"

    @staticmethod
    def _finish_task(task: EmulatedTask, result: str, message: str) -> None:
        task.result_state, task.state_message = result, message
        task.life_cycle_state, task.end_time = "TERMINATED", _now_ms()

    @staticmethod
    def _finish(run: EmulatedRun, life: str, result: str | None, message: str) -> None:
        run.result_state, run.state_message = result, message
        run.life_cycle_state = life

    # ---------------------------------------------------------------- DBFS 2.0

    def _dbfs_path(self, path: str | None) -> Path:
        if not path:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", "Path must be given.")
        posix = PurePosixPath(str(path).removeprefix("dbfs:"))
        if not posix.is_absolute() or ".." in posix.parts:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Path {path} must be absolute.")
        return self.dbfs_root / posix.relative_to("/")

    def _dbfs_info(self, local: Path) -> dict[str, Any]:
        stat = local.stat()
        return {
            "path": "/" + local.relative_to(self.dbfs_root).as_posix(),
            "is_dir": local.is_dir(),
            "file_size": 0 if local.is_dir() else stat.st_size,
            "modification_time": int(stat.st_mtime * 1000),
        }

    def _dbfs_mkdirs(self, payload: dict[str, Any]) -> dict[str, Any]:
        local = self._dbfs_path(payload.get("path"))
        if local.is_file():
            raise ApiError(400, "RESOURCE_ALREADY_EXISTS", f"{payload['path']} is a file.")
        local.mkdir(parents=True, exist_ok=True)
        return {}

    def _dbfs_put(self, payload: dict[str, Any]) -> dict[str, Any]:
        local = self._dbfs_path(payload.get("path"))
        data = base64.b64decode(payload.get("contents") or "")
        if len(data) > _MAX_DBFS_READ:
            raise ApiError(400, "MAX_BLOCK_SIZE_EXCEEDED", "put accepts at most 1 MB.")
        self._dbfs_write(local, data, overwrite=bool(payload.get("overwrite")))
        return {}

    def _dbfs_write(self, local: Path, data: bytes, *, overwrite: bool) -> None:
        if local.exists() and not overwrite:
            raise ApiError(400, "RESOURCE_ALREADY_EXISTS", f"{local.name} already exists.")
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(data)

    def _dbfs_create(self, payload: dict[str, Any]) -> dict[str, Any]:
        local = self._dbfs_path(payload.get("path"))
        if local.exists() and not payload.get("overwrite"):
            raise ApiError(400, "RESOURCE_ALREADY_EXISTS", f"{payload['path']} already exists.")
        with self._lock:
            handle = next(self._ids)
            self._handles[handle] = (local, bytearray())
        return {"handle": handle}

    def _dbfs_add_block(self, payload: dict[str, Any]) -> dict[str, Any]:
        entry = self._handles.get(int(payload.get("handle") or 0))
        if entry is None:
            raise _missing(f"Handle {payload.get('handle')}")
        entry[1].extend(base64.b64decode(payload.get("data") or ""))
        return {}

    def _dbfs_close(self, payload: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            entry = self._handles.pop(int(payload.get("handle") or 0), None)
        if entry is None:
            raise _missing(f"Handle {payload.get('handle')}")
        self._dbfs_write(entry[0], bytes(entry[1]), overwrite=True)
        return {}

    def _dbfs_read(self, args: dict[str, Any]) -> dict[str, Any]:
        local = self._dbfs_path(args.get("path"))
        if not local.exists():
            raise _missing(f"Path {args.get('path')}")
        if local.is_dir():
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"{args.get('path')} is a directory.")
        offset = int(args.get("offset") or 0)
        length = min(int(args.get("length") or 512 * 1024), _MAX_DBFS_READ)
        with open(local, "rb") as f:
            f.seek(offset)
            data = f.read(length)
        return {"bytes_read": len(data), "data": base64.b64encode(data).decode()}

    def _dbfs_get_status(self, args: dict[str, Any]) -> dict[str, Any]:
        local = self._dbfs_path(args.get("path"))
        if not local.exists():
            raise _missing(f"Path {args.get('path')}")
        return self._dbfs_info(local)

    def _dbfs_delete(self, payload: dict[str, Any]) -> dict[str, Any]:
        local = self._dbfs_path(payload.get("path"))
        if not local.exists():
            raise _missing(f"Path {payload.get('path')}")
        if local.is_dir():
            if any(local.iterdir()) and not payload.get("recursive"):
                raise ApiError(400, "IO_ERROR", f"{payload['path']} is a non-empty directory.")
            shutil.rmtree(local)
        else:
            local.unlink()
        return {}

    def _dbfs_list(self, args: dict[str, Any]) -> dict[str, Any]:
        local = self._dbfs_path(args.get("path"))
        if not local.exists():
            raise _missing(f"Path {args.get('path')}")
        if local.is_file():
            return {"files": [self._dbfs_info(local)]}
        return {"files": [self._dbfs_info(child) for child in sorted(local.iterdir())]}

    # ---------------------------------------------------------------- Files 2.0 (Volumes)

    def _volume_path(self, path: str) -> Path:
        posix = PurePosixPath(path)
        parts = posix.parts
        if not posix.is_absolute() or ".." in parts or parts[1:2] != ("Volumes",):
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"{path} is not a /Volumes path.")
        if len(parts) < 5 or not (self.volumes_root / Path(*parts[2:5])).is_dir():
            raise _missing(f"Volume {'.'.join(parts[2:5])}")
        return self.volumes_root / Path(*parts[2:])

    def _files(
        self,
        handler: _Handler,
        method: str,
        path: str,
        query: dict[str, list[str]],
        body: bytes,
    ) -> int:
        local = self._volume_path(path)
        if method == "PUT":
            overwrite = (query.get("overwrite") or ["true"])[-1] != "false"
            if local.exists() and not overwrite:
                raise ApiError(409, "ALREADY_EXISTS", f"{path} already exists.")
            local.parent.mkdir(parents=True, exist_ok=True)
            local.write_bytes(body)
            handler.respond(204, b"", None)
            return 204
        if not local.is_file():
            raise _missing(f"File {path}")
        if method == "DELETE":
            local.unlink()
            handler.respond(204, b"", None)
            return 204
        headers = {
            "Last-Modified": formatdate(local.stat().st_mtime, usegmt=True),
        }
        data = local.read_bytes()
        if method == "HEAD":
            handler.respond(200, b"", "application/octet-stream", headers, length=len(data))
            return 200
        if method == "GET":
            handler.respond(200, data, "application/octet-stream", headers)
            return 200
        raise ApiError(405, "METHOD_NOT_ALLOWED", f"{method} is not supported on files.")

    def _directories(self, handler: _Handler, method: str, path: str) -> int:
        local = self._volume_path(path)
        if method == "PUT":
            if local.is_file():
                raise ApiError(409, "ALREADY_EXISTS", f"{path} is a file.")
            local.mkdir(parents=True, exist_ok=True)
            handler.respond(204, b"", None)
            return 204
        if not local.is_dir():
            raise _missing(f"Directory {path}")
        if method == "HEAD":
            handler.respond(200, b"", None)
            return 200
        if method == "DELETE":
            if any(local.iterdir()):
                raise ApiError(400, "DIRECTORY_NOT_EMPTY", f"{path} is not empty.")
            local.rmdir()
            handler.respond(204, b"", None)
            return 204
        if method == "GET":
            contents = [
                {
                    "path": f"{path}/{child.name}",
                    "name": child.name,
                    "is_directory": child.is_dir(),
                    "file_size": 0 if child.is_dir() else child.stat().st_size,
                    "last_modified": int(child.stat().st_mtime * 1000),
                }
                for child in sorted(local.iterdir())
            ]
            handler.respond_json(200, {"contents": contents} if contents else {})
            return 200
        raise ApiError(405, "METHOD_NOT_ALLOWED", f"{method} is not supported on directories.")


def _render(value: str, values: Mapping[str, str]) -> str:
    """Resolve dynamic value references such as ``{{job.run_id}}`` and ``{{input}}``."""
    return re.sub(
        r"\{\{\s*([\w.-]+)\s*\}\}", lambda m: str(values.get(m.group(1), m.group(0))), value
    )


def _expand_for_each(
    task: dict[str, Any], job_parameters: Mapping[str, str]
) -> list[dict[str, Any]]:
    """A plain task as is; a for_each task as one nested task per input."""
    for_each = task.get("for_each_task")
    if for_each is None:
        return [task]
    values = {f"job.parameters.{k}": v for k, v in job_parameters.items()}
    inputs = json.loads(_render(str(for_each.get("inputs", "[]")), values))
    expanded = []
    for item in inputs:
        nested = json.loads(json.dumps(for_each["task"]))
        nested["_for_each_input"] = item if isinstance(item, str) else json.dumps(item)
        expanded.append(nested)
    return expanded


def _apply_run_now_parameters(
    wheel: dict[str, Any],
    python_params: list[str] | None,
    python_named_params: Mapping[str, str] | None,
    job_parameters: Mapping[str, str],
) -> None:
    """Run-now overrides: positional replace, named merge, job parameters pushed down."""
    if python_params is not None:
        wheel["parameters"] = list(python_params)
    if wheel.get("named_parameters") is not None:
        wheel["named_parameters"] = {
            **wheel["named_parameters"],
            **(python_named_params or {}),
            **job_parameters,
        }


def _python_error(output: str, exit_code: int) -> tuple[str, str | None]:
    """The exception line and traceback a Python task printed, as ``runs/get-output`` has them."""
    start = output.rfind("Traceback (most recent call last):")
    if start < 0:
        return f"Task exited with code {exit_code}", None
    trace = output[start:].rstrip()
    lines = [line for line in trace.splitlines() if line and not line[0].isspace()]
    exception_line = next(
        (line for line in reversed(lines) if re.match(r"^[A-Za-z_][\w.]*(: |$)", line)),
        lines[-1],
    )
    return exception_line, trace


def _kill(process: subprocess.Popen[bytes]) -> None:
    """Stop the task and everything it started (a Spark JVM, for one)."""
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


class _Handler(BaseHTTPRequestHandler):
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
