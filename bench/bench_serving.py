"""Benchmark: the scoring service vs ``mlflow models serve`` under 32 concurrent clients.

    python bench/bench_serving.py                         # 32 clients x 30 s per target
    python bench/bench_serving.py --clients 8 --seconds 10 --claims 5000   # a quick look

In a fresh temporary FRAUD_HOME it trains the real XGBoost model on synthetic claims
(default training parameters), logs it exactly as the training step does, registers it
twice (``champion`` = version 1, ``challenger`` = version 2, the same artifact, so the
10% A/B routing is live), then starts on loopback, one uvicorn worker each:

- this project's service, ``python -m fraud_assets.serving`` (default settings:
  micro-batching, buffered inference log, registry poll);
- ``mlflow models serve -m models:/<name>/1 --env-manager local``.

The service takes the claims themselves (its default ``claim`` request shape), so it
computes each claim's features from the online view, which holds the synthetic claims'
history as validation leaves it; ``mlflow models serve`` takes the same claims' gold
features, the only shape it can score. One load generator, the same for both targets, runs
in its own process (``bench_serving.py load``): ``--clients`` asyncio clients on aiohttp and
uvloop, each sending 1-row ``dataframe_records`` requests back to back (a closed loop) for
``--warmup`` seconds unmeasured, then ``--seconds`` measured. It reports requests per
second, latency percentiles of the 200 answers, and every error or non-200 answer. The
targets run one after the other, and the load average is recorded around each run.

Then the service alone is measured twice more: one closed-loop client (1-row latency), and
an open loop sending ``--open-rate`` requests per second whatever the answers (latency from
each request's scheduled time), beside the peer, the champion's booster called in-process
on one claim at a time (raw predict). The online view's lookup (one claim's features) is
timed in-process too, so its share of the latency shows.

Before the load, 200 claims are scored through both servers and must agree. On the way
out the service is stopped with SIGTERM, and each of its answered requests must have left
exactly one ``realtime`` row in ``inference_log``. Results go to
``bench/results/serving.json``.
"""

from __future__ import annotations

import os

# The service runs XGBoost with one OpenMP thread (fraud_assets.serving.__main__); give the
# mlflow server the same, so the stacks are compared alike.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import asyncio
import json
import logging
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd

from fraud_assets.claims.synthetic import generate_claims, to_arrow
from fraud_assets.features import ID_COLUMN, MODEL_FEATURES, TRAIN, SplitPolicy
from fraud_assets.features.online import ClaimsHistoryView
from fraud_assets.settings import FraudSettings
from fraud_assets_tests.pandas_peer import build_claim_features_pandas

log = logging.getLogger("bench_serving")

RESULTS = Path(__file__).resolve().parent / "results" / "serving.json"
REQUEST_TIMEOUT = 10.0
STARTUP_TIMEOUT = 180.0
SERVICE = "fraud_assets_service"
MLFLOW = "mlflow_models_serve"


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["load"]:
        _load_main(argv[1:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--claims", type=int, default=20_000, help="synthetic claims to train on")
    parser.add_argument("--clients", type=int, default=32, help="concurrent closed-loop clients")
    parser.add_argument("--seconds", type=float, default=30.0, help="measured seconds per target")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds first")
    parser.add_argument(
        "--open-rate", type=float, default=200.0, help="open-loop requests per second (service)"
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise

    with tempfile.TemporaryDirectory(prefix="bench_serving_") as scratch:
        home = Path(scratch)
        values: dict[str, Any] = {"home": home}
        settings = FraudSettings(**values)
        claims = generate_claims(args.claims, seed=settings.seed)
        gold = _gold(claims, settings)
        name = _register(settings, gold)
        view = ClaimsHistoryView.for_settings(settings)
        view.update(to_arrow(claims))
        payload_rows = gold[[ID_COLUMN, *MODEL_FEATURES]].head(2000).reset_index(drop=True)
        by_id = claims.set_index(ID_COLUMN)
        requests = {
            SERVICE: _canonical(by_id.loc[payload_rows[ID_COLUMN]].reset_index()),
            MLFLOW: _records(payload_rows),
        }
        bodies = {target: home / f"bodies_{target}.json" for target in requests}
        for target, records in requests.items():
            bodies[target].write_text(
                json.dumps([json.dumps({"dataframe_records": [r]}) for r in records]), "utf-8"
            )
        env = _clean_env(home)
        service_port, mlflow_port = _free_port(), _free_port()
        service_cmd = [
            sys.executable,
            "-m",
            "fraud_assets.serving",
            "--port",
            str(service_port),
            "--log-level",
            "warning",
        ]
        mlflow_cmd = [
            str(Path(sys.executable).with_name("mlflow")),
            "models",
            "serve",
            "-m",
            f"models:/{name}/1",
            "--env-manager",
            "local",
            "--host",
            "127.0.0.1",
            "--port",
            str(mlflow_port),
        ]
        urls = {
            SERVICE: f"http://127.0.0.1:{service_port}",
            MLFLOW: f"http://127.0.0.1:{mlflow_port}",
        }
        with (
            _server(service_cmd, env, f"{urls[SERVICE]}/ready") as service,
            _server(mlflow_cmd, env, f"{urls[MLFLOW]}/ping"),
        ):
            agreement, checked = _agreement(urls, requests)
            runs: dict[str, dict[str, Any]] = {}
            for target in (SERVICE, MLFLOW):
                runs[target] = _run_load(f"{urls[target]}/invocations", bodies[target], args)
                log.info("%s: %s", target, _line(runs[target]))
            service_url = f"{urls[SERVICE]}/invocations"
            single = _run_load(service_url, bodies[SERVICE], args, clients=1)
            log.info("one client: %s", _line(single))
            open_loop = _run_load(service_url, bodies[SERVICE], args, rate=args.open_rate)
            log.info("open loop at %.0f/s: %s", args.open_rate, _line(open_loop))
            batching = _batching(f"{urls[SERVICE]}/metrics")
            service.send_signal(signal.SIGTERM)
            service.wait(timeout=120)
        logged = _logged_rows(settings)
        raw = _raw_predict(settings, payload_rows)
        lookup = _lookup(view, to_arrow(by_id.loc[payload_rows[ID_COLUMN]].reset_index()))

    service_requests = runs[SERVICE]["ok_total"] + single["ok_total"] + open_loop["ok_total"]
    service_requests += checked
    ours, theirs = runs[SERVICE], runs[MLFLOW]
    result = {
        "benchmark": "serving_closed_loop_1_row",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
            "omp_num_threads": os.environ["OMP_NUM_THREADS"],
        },
        "model": "xgboost probability pyfunc (fraud_assets.ml.pyfunc), default training params",
        "request_shape": {
            SERVICE: "canonical claim (features from the online view, with reason codes)",
            MLFLOW: "gold features",
        },
        "training_claims": args.claims,
        "load": {
            "clients": args.clients,
            "measured_seconds": args.seconds,
            "warmup_seconds": args.warmup,
            "rows_per_request": 1,
            "generator": "aiohttp + uvloop, one process, closed loop, same for both targets",
        },
        "targets": runs,
        "service_over_mlflow_rps": round(ours["rps"] / theirs["rps"], 2),
        "mlflow_p99_over_service_p99": round(theirs["p99_ms"] / ours["p99_ms"], 2),
        "service_one_client": single,
        "service_open_loop": {"rate_per_second": args.open_rate, **open_loop},
        "raw_predict_1_row": raw,
        "online_view_lookup_1_claim": lookup,
        "service_micro_batching": batching,
        "targets_issue_17": {
            "closed_loop_rps_at_least_10x_mlflow": ours["rps"] >= 10 * theirs["rps"],
            "open_loop_p99_at_most_15_ms_no_errors": open_loop["p99_ms"] <= 15.0
            and not open_loop["errors"],
            "one_client_p50_at_most_3_ms": single["p50_ms"] <= 3.0,
        },
        "scores_agree_with_mlflow_serve": agreement,
        "inference_log": {
            "service_requests_answered": service_requests,
            "realtime_rows_after_sigterm": logged,
            "complete": logged == service_requests,
        },
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    for target in (SERVICE, MLFLOW):
        log.info("%-22s %s", target, _line(runs[target]))
    log.info(
        "service / mlflow: %.2fx requests per second; mean batch %.1f requests",
        result["service_over_mlflow_rps"],
        batching["mean_requests_per_batch"],
    )
    log.info("one client, 1-row requests: %s", _line(single))
    log.info("open loop at %.0f/s: %s", args.open_rate, _line(open_loop))
    log.info("raw predict, 1 row: p50 %.2f ms, p99 %.2f ms", raw["p50_ms"], raw["p99_ms"])
    log.info(
        "online view lookup, 1 claim (%d in the view): p50 %.2f ms, p99 %.2f ms",
        lookup["claims_in_view"],
        lookup["p50_ms"],
        lookup["p99_ms"],
    )
    log.info("load average at end: %s", result["machine"]["load_average_at_end"])
    log.info("inference log: %d rows for %d answered requests", logged, service_requests)
    log.info("saved %s", args.output)
    if not agreement or logged != service_requests:
        raise SystemExit("the service disagreed with mlflow serve or lost inference-log rows")


def _line(run: dict[str, Any]) -> str:
    return (
        f"{run['rps']:8.1f} req/s  p50 {run['p50_ms']:7.2f} ms  p99 {run['p99_ms']:7.2f} ms  "
        f"errors {sum(run['errors'].values())}  load {run['load_average_before'][0]:.2f}"
        f"->{run['load_average_after'][0]:.2f}"
    )


def _run_load(
    url: str,
    bodies: Path,
    args: argparse.Namespace,
    *,
    clients: int | None = None,
    rate: float | None = None,
) -> dict[str, Any]:
    """The load generator in its own process, so it never shares an interpreter with a server.

    Closed loop with ``clients`` (default ``--clients``), or open loop at ``rate`` per second.
    """
    command = [sys.executable, __file__, "load", "--url", url, "--bodies", str(bodies)]
    command += ["--clients", str(clients or args.clients), "--seconds", str(args.seconds)]
    command += ["--warmup", str(args.warmup)]
    if rate is not None:
        command += ["--rate", str(rate)]
    before = [round(x, 2) for x in os.getloadavg()]
    done = subprocess.run(
        command, capture_output=True, text=True, check=True, timeout=args.seconds * 3 + 120
    )
    run: dict[str, Any] = json.loads(done.stdout)
    run["load_average_before"] = before
    run["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    return run


def _load_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench_serving.py load")
    parser.add_argument("--url", required=True)
    parser.add_argument("--bodies", type=Path, required=True, help="JSON list of request bodies")
    parser.add_argument("--clients", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--warmup", type=float, required=True)
    parser.add_argument("--rate", type=float, default=None, help="open loop: requests/second")
    args = parser.parse_args(argv)
    import uvloop

    bodies = [body.encode() for body in json.loads(args.bodies.read_text("utf-8"))]
    if args.rate is None:
        load = _closed_loop(args.url, bodies, args.clients, args.seconds, args.warmup)
    else:
        load = _open_loop(args.url, bodies, args.rate, args.seconds, args.warmup)
    sys.stdout.write(json.dumps(uvloop.run(load)) + "\n")


async def _open_loop(
    url: str, bodies: list[bytes], rate: float, seconds: float, warmup: float
) -> dict[str, Any]:
    """One request every ``1 / rate`` seconds, whether or not earlier ones were answered.

    Latency is measured from each request's scheduled send time, so a server that falls
    behind is charged for the queue it builds (no coordinated omission).
    """
    import aiohttp

    started = time.perf_counter()
    tally = _Tally(measure_from=started + warmup)
    total = int((warmup + seconds) * rate)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), timeout=timeout
    ) as session:
        tasks = []
        for i in range(total):
            scheduled = started + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            body = bodies[i % len(bodies)]
            tasks.append(asyncio.create_task(tally.post(session, url, body, sent=scheduled)))
        await asyncio.gather(*tasks)
    return tally.summary(seconds)


async def _closed_loop(
    url: str, bodies: list[bytes], clients: int, seconds: float, warmup: float
) -> dict[str, Any]:
    """``clients`` loops, each sending its next request as soon as the last one is answered."""
    import aiohttp

    started = time.perf_counter()
    tally = _Tally(measure_from=started + warmup)
    stop_at = tally.measure_from + seconds

    async def client(session: aiohttp.ClientSession, first: int) -> None:
        i = first
        while (sent := time.perf_counter()) < stop_at:
            await tally.post(session, url, bodies[i % len(bodies)], sent=sent)
            i += clients

    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(client(session, k) for k in range(clients)))
    return tally.summary(seconds)


class _Tally:
    """What one load run saw: latencies of answers to requests sent after the warm-up,
    errors by kind, and every 200 (warm-up included, for the inference-log check)."""

    def __init__(self, *, measure_from: float) -> None:
        self.measure_from = measure_from
        self.latencies: list[float] = []
        self.errors: Counter[str] = Counter()
        self.ok_total = 0

    async def post(self, session: Any, url: str, body: bytes, *, sent: float) -> None:
        """Send one request and record it; latency counts from ``sent``."""
        import aiohttp

        try:
            async with session.post(url, data=body, headers=_JSON_HEADERS) as response:
                await response.read()
                outcome = str(response.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            outcome = type(exc).__name__
        answered = time.perf_counter()
        self.ok_total += outcome == "200"
        if sent >= self.measure_from:
            if outcome == "200":
                self.latencies.append(answered - sent)
            else:
                self.errors[outcome] += 1

    def summary(self, seconds: float) -> dict[str, Any]:
        return _summary(self.latencies, self.errors, self.ok_total, seconds)


_JSON_HEADERS = {"content-type": "application/json"}


def _summary(
    latencies: list[float], errors: Counter[str], ok_total: int, seconds: float
) -> dict[str, Any]:
    ms = np.asarray(latencies) * 1000.0
    return {
        "requests_ok": len(latencies),
        "errors": dict(errors),
        "ok_total": ok_total,
        "rps": round(len(latencies) / seconds, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p90_ms": round(float(np.percentile(ms, 90)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "max_ms": round(float(ms.max()), 3),
        "mean_ms": round(float(ms.mean()), 3),
    }


def _agreement(
    urls: dict[str, str], requests: dict[str, list[dict[str, Any]]], claims: int = 200
) -> tuple[bool, int]:
    """Whether the first ``claims`` score the same through both servers (the service from
    the claim, mlflow from its gold features), and the requests the service answered."""
    scores: dict[str, list[float]] = {}
    for target, base in urls.items():
        with httpx.Client(timeout=REQUEST_TIMEOUT) as client:
            scores[target] = [
                float(
                    client.post(f"{base}/invocations", json={"dataframe_records": [record]})
                    .raise_for_status()
                    .json()["predictions"][0]
                )
                for record in requests[target][:claims]
            ]
    # Online features equal gold's to 1e-9 (test_serving_claims.py), so may the scores.
    agree = bool(np.allclose(scores[SERVICE], scores[MLFLOW], rtol=0, atol=1e-9))
    return agree, claims


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): v for k, v in row.items()} for row in frame.to_dict(orient="records")]


def _canonical(claims: pd.DataFrame) -> list[dict[str, Any]]:
    """Claims as a claims system sends them: silver's columns, dates as ISO text."""
    frame = claims.drop(columns=["is_fraud"])
    for column in ("claim_date", "service_date"):
        frame[column] = frame[column].dt.strftime("%Y-%m-%d")
    return _records(frame)


def _lookup(view: ClaimsHistoryView, claims: Any) -> dict[str, float]:
    """One claim's features from the online view, in-process: the lookup's own latency."""
    rows = [claims.slice(i, 1) for i in range(min(claims.num_rows, 1000))]
    for row in rows[:50]:
        view.features(row)
    times = []
    for row in rows:
        started = time.perf_counter()
        view.features(row)
        times.append(time.perf_counter() - started)
    ms = np.asarray(times) * 1000.0
    return {
        "calls": len(rows),
        "claims_in_view": view.row_count(),
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
    }


def _raw_predict(settings: FraudSettings, rows: pd.DataFrame) -> dict[str, float]:
    """The peer: the champion's booster called in-process on one claim at a time."""
    import mlflow

    from fraud_assets.ml.tracking import configure_mlflow

    configure_mlflow(settings)
    model = mlflow.pyfunc.load_model(f"models:/{settings.registered_model_name}@champion")
    wrapped = model.unwrap_python_model()
    frames = [rows[MODEL_FEATURES].iloc[[i]] for i in range(min(len(rows), 1000))]
    for frame in frames[:50]:
        wrapped.predict(None, frame)
    times = []
    for frame in frames:
        started = time.perf_counter()
        wrapped.predict(None, frame)
        times.append(time.perf_counter() - started)
    ms = np.asarray(times) * 1000.0
    return {
        "calls": len(frames),
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
    }


def _batching(metrics_url: str) -> dict[str, float]:
    """How many requests shared a prediction, from the service's own /metrics."""
    text = httpx.get(metrics_url, timeout=REQUEST_TIMEOUT).text
    found = {
        name: float(value)
        for name, value in re.findall(
            r"^fraud_serving_batch_requests_(sum|count) (\S+)$", text, re.MULTILINE
        )
    }
    batches = found.get("count", 0.0)
    return {
        "batches": batches,
        "mean_requests_per_batch": round(found.get("sum", 0.0) / batches, 2) if batches else 0.0,
    }


def _gold(claims: pd.DataFrame, settings: FraudSettings) -> pd.DataFrame:
    return build_claim_features_pandas(
        claims, split=SplitPolicy(settings.holdout_fraction, settings.seed)
    )


def _register(settings: FraudSettings, gold: pd.DataFrame) -> str:
    import mlflow

    from fraud_assets.ml import registry
    from fraud_assets.ml.runs import TrainingData, log_training_run
    from fraud_assets.ml.tracking import configure_mlflow, mlflow_client
    from fraud_assets.ml.training import TrainingParams, reference_sample, train_model

    configure_mlflow(settings)
    train = gold[gold["split"] == TRAIN].reset_index(drop=True)
    trained = train_model(train, model_type="xgboost", params=TrainingParams())
    run = log_training_run(
        trained,
        data=TrainingData(location="bench", delta_version=0, frame=train),
        reference=reference_sample(train, trained, seed=settings.seed),
        pipeline_run_id="bench-serving",
        git_commit="bench",
        params={},
        metrics={},
    )
    client = mlflow_client()
    name = settings.registered_model_name
    champion = registry.register_version(
        client, name=name, model_uri=run.model_uri, run_id=run.run_id, description="bench"
    )
    # The same artifact again as version 2, so the service routes between two loaded models.
    challenger = mlflow.register_model(run.model_uri, name)
    registry.move_champion(client, name=name, version=str(champion.version), actor="bench")
    registry.set_challenger(client, name=name, version=str(challenger.version))
    return name


def _logged_rows(settings: FraudSettings) -> int:
    from fraud_assets.lakehouse import INFERENCE_LOG, table_store
    from fraud_assets.serving.inference_log import REALTIME

    logged = table_store(settings).read_pandas(INFERENCE_LOG)
    return int((logged["source"] == REALTIME).sum())


def _clean_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FRAUD_", "MLFLOW_"))}
    uri = f"sqlite:///{home / 'mlflow.db'}"
    return env | {
        # mlflow serve starts `uvicorn` through the shell: the venv's bin must be on PATH.
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        "FRAUD_HOME": str(home),
        "MLFLOW_TRACKING_URI": uri,
        "MLFLOW_REGISTRY_URI": uri,
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _server(
    command: list[str], env: dict[str, str], ready_url: str
) -> Iterator[subprocess.Popen[str]]:
    """Start a server process and wait until ``ready_url`` answers 200; always stop it."""
    with tempfile.TemporaryFile(mode="w+") as log_file:
        process = subprocess.Popen(
            command, env=env, stdout=log_file, stderr=subprocess.STDOUT, text=True
        )
        try:
            _wait_ready(process, ready_url, lambda: _tail(log_file))
            yield process
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def _wait_ready(process: subprocess.Popen[str], url: str, tail: Callable[[], str]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}:\n{tail()}")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise TimeoutError(f"{url} not ready after {STARTUP_TIMEOUT:.0f} s:\n{tail()}")


def _tail(handle: Any) -> str:
    handle.seek(0)
    return "".join(handle.readlines()[-30:])


if __name__ == "__main__":
    main()
