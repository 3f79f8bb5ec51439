"""Benchmark: ingest (generate → bronze → silver) plus gold features, PySpark vs plain pandas.

    python bench/bench_ingest_features.py                      # 100k and 1M claims
    python bench/bench_ingest_features.py --rows 20000         # a quick look

Each size runs the real task functions in one process, in a fresh temporary FRAUD_HOME:
``ingest`` (synthetic claims → bronze, delta-rs), ``validate`` (bronze → silver, PySpark)
and ``build_features`` (silver → gold plus its completeness check, PySpark). On the same
silver table it then times the plain-pandas peer of the features (delta-rs read, pandas,
delta-rs write) and checks both engines produced the same table before comparing them.

SparkSession startup and the first (JIT-cold) query are timed once and reported on their
own, so they neither hide in nor inflate the per-size figures. Results go to
``bench/results/ingest_features.json``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import platform
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa

from fraud_assets.claims.synthetic import generate_claims
from fraud_assets.claims.synthetic import to_arrow as claims_to_arrow
from fraud_assets.features import CLAIM_FEATURES_SCHEMA, NUMERIC_FEATURES, SplitPolicy
from fraud_assets.features.engineering import build_claim_features
from fraud_assets.lakehouse import CLAIM_FEATURES, CLAIMS, LocalDeltaStore
from fraud_assets.settings import FraudSettings, get_settings
from fraud_assets.tasks._runtime import TaskContext, TaskResult
from fraud_assets_tests.pandas_peer import build_claim_features_pandas, to_arrow

log = logging.getLogger("bench.ingest_features")
RESULTS = Path(__file__).resolve().parent / "results" / "ingest_features.json"
T = TypeVar("T")


def timed(step: str, fn: Callable[[], T]) -> tuple[T, float]:
    started = time.perf_counter()
    value = fn()
    seconds = time.perf_counter() - started
    log.info("  %-34s %8.2f s", step, seconds)
    return value, seconds


def run_task(module: str, function: str, settings: FraudSettings, run_id: str) -> TaskResult:
    """Call a task's pure function the way ``run_task`` would, minus Pipes."""
    task = getattr(importlib.import_module(module), function)
    ctx = TaskContext(settings=settings, params={}, log=logging.getLogger(module), run_id=run_id)
    result: TaskResult = task(ctx)
    failed = [c.check_name for c in result.checks if not c.passed and c.severity == "ERROR"]
    if failed:
        raise RuntimeError(f"{module} failed its blocking checks {failed}; timings would lie")
    return result


def warm_up_spark(spark: Any) -> float:
    """Run the feature query once on a small frame: the JIT and planner warm-up cost."""
    claims = spark.createDataFrame(claims_to_arrow(generate_claims(2_000, seed=1)))
    _, seconds = timed(
        "first query (2k rows, JIT-cold)",
        lambda: build_claim_features(claims, split=SplitPolicy(0.2, 1)).toArrow(),
    )
    return seconds


def same_features(spark_table: pa.Table, pandas_table: pa.Table) -> None:
    """Fail the benchmark unless both engines produced the same gold table."""
    ours = spark_table.to_pandas().sort_values("claim_id", ignore_index=True)
    peer = pandas_table.to_pandas().sort_values("claim_id", ignore_index=True)
    if len(ours) != len(peer) or not ours["claim_id"].equals(peer["claim_id"]):
        raise AssertionError("Spark and pandas produced different claim ids")
    for name in [*NUMERIC_FEATURES, "split"]:
        if ours[name].dtype.kind == "f":
            if not np.allclose(ours[name], peer[name], rtol=1e-9, atol=1e-9):
                raise AssertionError(f"Spark and pandas differ on {name}")
        elif not ours[name].equals(peer[name]):
            raise AssertionError(f"Spark and pandas differ on {name}")


def bench_size(rows: int, spark: Any, workdir: Path, seed: int) -> dict[str, Any]:
    log.info("%s claims", f"{rows:,}")
    home = workdir / f"rows_{rows}"
    # The environment's settings (FRAUD_*), with this run's home, size and seed.
    settings = get_settings().model_copy(
        update={"home": home, "synthetic_rows": rows, "seed": seed}
    )
    store = LocalDeltaStore(settings.fraud_home)

    _, ingest_s = timed(
        "ingest: generate -> bronze",
        lambda: run_task("fraud_assets.tasks.ingest", "ingest", settings, f"bench-{rows}"),
    )
    _, validate_s = timed(
        "validate: bronze -> silver (spark)",
        lambda: run_task("fraud_assets.tasks.validate", "validate", settings, f"bench-{rows}"),
    )
    silver_rows = store.read_arrow(CLAIMS).num_rows
    _, features_task_s = timed(
        "features task (spark, + check)",
        lambda: run_task(
            "fraud_assets.tasks.build_features", "build_features", settings, f"bench-{rows}"
        ),
    )
    spark_table = store.read_arrow(CLAIM_FEATURES)

    # The noop sink runs the whole plan without collecting rows to the driver: compute only.
    silver_df = store.read_spark(spark, CLAIMS)
    _, spark_compute_s = timed(
        "features compute only (spark)",
        lambda: (
            build_claim_features(silver_df, split=SplitPolicy(settings.holdout_fraction, seed))
            .write.format("noop")
            .mode("overwrite")
            .save()
        ),
    )
    spark.catalog.clearCache()

    def pandas_end_to_end() -> pa.Table:
        silver = store.read_pandas(CLAIMS)
        features = build_claim_features_pandas(
            silver, split=SplitPolicy(settings.holdout_fraction, seed)
        )
        table = to_arrow(features)
        store.write_arrow(table, CLAIM_FEATURES, mode="overwrite")
        return table

    pandas_table, pandas_e2e_s = timed("features read+compute+write (pandas)", pandas_end_to_end)
    silver_pd = store.read_pandas(CLAIMS)
    _, pandas_compute_s = timed(
        "features compute only (pandas)",
        lambda: build_claim_features_pandas(
            silver_pd, split=SplitPolicy(settings.holdout_fraction, seed)
        ),
    )
    same_features(spark_table, pandas_table.cast(CLAIM_FEATURES_SCHEMA))

    def per_second(seconds: float) -> float:
        return round(silver_rows / seconds, 1)

    spark_pipeline_s = ingest_s + validate_s + features_task_s
    return {
        "rows_generated": rows,
        "silver_rows": silver_rows,
        "seconds": {
            "ingest_generate_to_bronze": round(ingest_s, 3),
            "validate_bronze_to_silver_spark": round(validate_s, 3),
            "features_task_spark": round(features_task_s, 3),
            "features_compute_spark": round(spark_compute_s, 3),
            "features_end_to_end_pandas": round(pandas_e2e_s, 3),
            "features_compute_pandas": round(pandas_compute_s, 3),
            "ingest_plus_features_spark": round(spark_pipeline_s, 3),
        },
        "rows_per_second": {
            "ingest_plus_features_spark": per_second(spark_pipeline_s),
            "features_task_spark": per_second(features_task_s),
            "features_compute_spark": per_second(spark_compute_s),
            "features_end_to_end_pandas": per_second(pandas_e2e_s),
            "features_compute_pandas": per_second(pandas_compute_s),
        },
        # > 1 means plain pandas is that many times faster than Spark on this machine.
        "pandas_over_spark_speed": {
            "features_end_to_end": round(features_task_s / pandas_e2e_s, 2),
            "features_compute": round(spark_compute_s / pandas_compute_s, 2),
        },
        "outputs_equal": True,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("py4j", "fraud_assets", "deltalake"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    from fraud_assets.spark import get_spark

    spark, startup_s = timed("SparkSession startup", get_spark)
    spark.sparkContext.setLogLevel("ERROR")
    warm_up_s = warm_up_spark(spark)

    conf = spark.sparkContext.getConf()
    result: dict[str, Any] = {
        "benchmark": "ingest_features",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "pyspark": spark.version,
            "pandas": pd.__version__,
            "spark_master": conf.get("spark.master"),
            "spark_driver_memory": conf.get("spark.driver.memory"),
        },
        "spark_startup_seconds": round(startup_s, 3),
        "spark_first_query_seconds": round(warm_up_s, 3),
        "runs": [],
    }
    with tempfile.TemporaryDirectory(prefix="bench_ingest_features_") as tmp:
        workdir = args.workdir or Path(tmp)
        for rows in args.rows:
            load_before = os.getloadavg()[0]
            run = bench_size(rows, spark, workdir, args.seed)
            # Other processes on the machine slow every figure; keep that visible.
            run["load_average_1m"] = {
                "before": round(load_before, 2),
                "after": round(os.getloadavg()[0], 2),
            }
            result["runs"].append(run)
            # Saved after every size, so a failure at 1M keeps the 100k figures.
            args.output.parent.mkdir(parents=True, exist_ok=True)
            args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")

    log.info("wrote %s", args.output)
    for run in result["runs"]:
        rate = run["rows_per_second"]
        log.info(
            "%9s rows: ingest+features (spark) %9.0f rows/s | features spark %9.0f rows/s, "
            "pandas %9.0f rows/s (pandas x%.2f end to end)",
            f"{run['silver_rows']:,}",
            rate["ingest_plus_features_spark"],
            rate["features_task_spark"],
            rate["features_end_to_end_pandas"],
            run["pandas_over_spark_speed"]["features_end_to_end"],
        )


if __name__ == "__main__":
    main()
