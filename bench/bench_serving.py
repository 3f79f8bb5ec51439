"""Benchmark: 1-row request latency of the scoring service vs ``mlflow models serve``.

    python bench/bench_serving.py                          # 5 rounds x 200 requests per target
    python bench/bench_serving.py --rounds 2 --requests 100 --max-seconds 60

In a fresh temporary FRAUD_HOME it trains the real XGBoost model on synthetic claims
(default training parameters), logs it exactly as the training step does, registers it
twice (``champion`` = version 1, ``challenger`` = version 2, so routing is live), then
starts on loopback:

- this project's service, ``python -m fraud_assets.serving`` (one uvicorn worker, 10%
  challenger traffic, inference log buffered as configured by default);
- ``mlflow models serve -m models:/<name>/1 --env-manager local`` (one uvicorn worker).

Both receive the same 1-row ``dataframe_records`` payloads over one keep-alive HTTP
connection each. The raw model is timed in-process on the same rows: the pyfunc's
``predict`` on a 1-row frame, and the booster alone. The four targets run in alternating
rounds, so background load on the machine falls on all of them alike. Every request is
bounded by a timeout, every target by ``--max-seconds``. On the
way out, the service is stopped with SIGTERM and the benchmark checks that each of its
requests left exactly one ``realtime`` row in ``inference_log``. Results go to
``bench/results/serving.json``.
"""

from __future__ import annotations

import os

# The service runs XGBoost with one OpenMP thread (fraud_assets.serving.__main__); give the
# mlflow server and the in-process raw timings the same, so the stacks are compared alike.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import logging
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd

from fraud_assets.claims.synthetic import generate_claims
from fraud_assets.features import ID_COLUMN, MODEL_FEATURES, TRAIN
from fraud_assets.features.pandas_peer import build_claim_features_pandas
from fraud_assets.settings import FraudSettings

log = logging.getLogger("bench_serving")

RESULTS = Path(__file__).resolve().parent / "results" / "serving.json"
REQUEST_TIMEOUT = 10.0
STARTUP_TIMEOUT = 180.0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--claims", type=int, default=20_000, help="synthetic claims to train on")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=200, help="requests per target per round")
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--max-seconds", type=float, default=120.0, help="time cap per target")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise

    with tempfile.TemporaryDirectory(prefix="bench_serving_") as scratch:
        home = Path(scratch)
        values: dict[str, Any] = {"home": home}
        settings = FraudSettings(**values)
        gold = _gold(args.claims, settings)
        booster, pyfunc_model, name = _register(settings, gold)
        payload_rows = gold[[ID_COLUMN, *MODEL_FEATURES]].head(500).reset_index(drop=True)
        records = [
            {str(k): v for k, v in row.items()} for row in payload_rows.to_dict(orient="records")
        ]

        frames = [payload_rows.iloc[[i]][MODEL_FEATURES] for i in range(len(payload_rows))]
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
        with (
            _server(service_cmd, env, f"http://127.0.0.1:{service_port}/health") as service,
            _server(mlflow_cmd, env, f"http://127.0.0.1:{mlflow_port}/ping") as mlflow_server,
        ):
            answers: dict[str, dict[str, Any]] = {}
            clients: list[httpx.Client] = []
            targets: dict[str, Callable[[int], object]] = {
                "pyfunc_predict": lambda i: pyfunc_model.predict(frames[i % len(frames)]),
                "raw_booster": lambda i: booster.predict_proba(frames[i % len(frames)]),
            }
            for target, port in (
                ("fraud_assets_service", service_port),
                ("mlflow_models_serve", mlflow_port),
            ):
                clients.append(httpx.Client(timeout=REQUEST_TIMEOUT))
                answers[target] = {"count": 0, "scores": {}}
                targets[target] = _poster(
                    clients[-1], f"http://127.0.0.1:{port}/invocations", records, answers[target]
                )
            try:
                latencies = _measure(targets, args)
            finally:
                for client in clients:
                    client.close()
            agreement = _agreement(answers)
            service.send_signal(signal.SIGTERM)
            service.wait(timeout=60)
            mlflow_server.send_signal(signal.SIGTERM)
        logged = _logged_rows(settings)

    service_requests = answers["fraud_assets_service"]["count"]
    summary = {name: _summary(values) for name, values in latencies.items()}
    service_p50 = summary["fraud_assets_service"]["p50_ms"]
    mlflow_p50 = summary["mlflow_models_serve"]["p50_ms"]
    result = {
        "benchmark": "serving_latency_1_row",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_at_end": list(os.getloadavg()),
            "omp_num_threads": os.environ["OMP_NUM_THREADS"],
        },
        "model": "xgboost probability pyfunc (fraud_assets.ml.pyfunc), default training params",
        "training_claims": args.claims,
        "requests_per_target": {k: len(v) for k, v in latencies.items()},
        "latency_ms": summary,
        "mlflow_p50_over_service_p50": round(mlflow_p50 / service_p50, 2),
        "service_overhead_over_pyfunc_p50_ms": round(
            service_p50 - summary["pyfunc_predict"]["p50_ms"], 3
        ),
        "scores_agree_with_mlflow_serve": agreement,
        "inference_log": {
            "service_requests": service_requests,
            "realtime_rows_after_sigterm": logged,
            "complete": logged == service_requests,
        },
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    for key in ("fraud_assets_service", "mlflow_models_serve", "pyfunc_predict", "raw_booster"):
        figures = summary[key]
        log.info(
            "%-22s p50 %7.3f ms  p95 %7.3f ms  (n=%d)",
            key,
            figures["p50_ms"],
            figures["p95_ms"],
            figures["n"],
        )
    log.info("mlflow serve p50 / service p50 = %.2f", result["mlflow_p50_over_service_p50"])
    log.info("inference log: %d rows for %d requests", logged, service_requests)
    log.info("saved %s", args.output)
    if not agreement or logged != service_requests:
        raise SystemExit("the service disagreed with mlflow serve or lost inference-log rows")


def _gold(n_claims: int, settings: FraudSettings) -> pd.DataFrame:
    claims = generate_claims(n_claims, seed=settings.seed)
    return build_claim_features_pandas(
        claims, holdout_fraction=settings.holdout_fraction, seed=settings.seed
    )


def _register(settings: FraudSettings, gold: pd.DataFrame) -> tuple[Any, Any, str]:
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
    pyfunc_model = mlflow.pyfunc.load_model(f"models:/{name}/{champion.version}")
    return trained, pyfunc_model, name


def _measure(
    targets: dict[str, Callable[[int], object]], args: argparse.Namespace
) -> dict[str, list[float]]:
    """Time each target in alternating rounds, so background load falls on all of them alike."""
    latencies: dict[str, list[float]] = {name: [] for name in targets}
    spent = dict.fromkeys(targets, 0.0)
    for call in targets.values():
        for i in range(args.warmup):
            call(i)
    for round_number in range(args.rounds):
        for name, call in targets.items():
            for i in range(args.requests):
                if spent[name] >= args.max_seconds:
                    break
                started = time.perf_counter()
                call(round_number * args.requests + i)
                elapsed = time.perf_counter() - started
                latencies[name].append(elapsed)
                spent[name] += elapsed
    return latencies


def _poster(
    client: httpx.Client, url: str, records: list[dict[str, Any]], sink: dict[str, Any]
) -> Callable[[int], None]:
    """One 1-row request per call; remembers each claim's score to compare the servers."""

    def post(i: int) -> None:
        record = records[i % len(records)]
        response = client.post(url, json={"dataframe_records": [record]})
        if response.status_code != 200:
            raise RuntimeError(f"{url} answered {response.status_code}: {response.text[:500]}")
        sink["count"] += 1
        sink["scores"][record[ID_COLUMN]] = float(response.json()["predictions"][0])

    return post


def _agreement(answers: dict[str, dict[str, Any]]) -> bool:
    """Every claim scores the same through both servers (versions 1 and 2 share one artifact)."""
    ours = answers["fraud_assets_service"]["scores"]
    theirs = answers["mlflow_models_serve"]["scores"]
    shared = sorted(set(ours) & set(theirs))
    if not shared:
        return False
    return bool(np.allclose([ours[c] for c in shared], [theirs[c] for c in shared], atol=1e-12))


def _logged_rows(settings: FraudSettings) -> int:
    from fraud_assets.lakehouse import table_store
    from fraud_assets.serving.inference_log import INFERENCE_LOG, REALTIME

    logged = table_store(settings).read_pandas(INFERENCE_LOG)
    return int((logged["source"] == REALTIME).sum())


def _summary(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000.0
    return {
        "n": len(ms),
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p95_ms": round(float(np.percentile(ms, 95)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "mean_ms": round(float(statistics.fmean(ms)), 3),
    }


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
