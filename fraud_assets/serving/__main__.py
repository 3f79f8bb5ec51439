"""Run the scoring service: ``python -m fraud_assets.serving [--host H] [--port P]``.

Host and port default to ``FRAUD_SERVING__HOST`` / ``FRAUD_SERVING__PORT``. Stop it with
Ctrl-C or SIGTERM: uvicorn then runs the app's shutdown, which writes the buffered
inference-log rows before the process exits.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
from collections.abc import Sequence

# One OpenMP thread per prediction: a request scores a handful of rows, so XGBoost's
# per-row thread fan-out only adds overhead, and under load it multiplies latency (measured
# in bench/bench_serving.py). Concurrency comes from requests instead. Export
# OMP_NUM_THREADS to override; it must be set before the booster library loads.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import uvicorn

from fraud_assets.serving.app import create_app
from fraud_assets.settings import get_settings


def main(argv: Sequence[str] | None = None) -> None:
    settings = get_settings()
    parser = argparse.ArgumentParser(
        prog="python -m fraud_assets.serving", description="Real-time fraud scoring service"
    )
    parser.add_argument("--host", default=settings.serving.host)
    parser.add_argument("--port", type=int, default=settings.serving.port)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    # A loaded MLflow model is a heap of long-lived objects, and each full collection walks
    # all of it while every request waits: with the default thresholds those pauses were
    # the p99 (bench/bench_serving.py). Fewer, later collections; the objects live anyway.
    gc.set_threshold(50_000, 50, 100)
    uvicorn.run(
        create_app(settings),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        # Access logs cost more than a prediction; request ids are in the inference log.
        access_log=False,
    )


if __name__ == "__main__":
    main()
