"""The main job on a laptop: ``fraud_pipeline`` with one shared Spark beside a Spark per step.

Runs ``python -m fraud_assets.local.run fraud_pipeline`` (what ``make demo`` runs) on the
default 20,000 synthetic claims, alternating the two ways its Spark steps meet Spark: the
run's shared Spark Connect server (the default) and ``--no-shared-spark`` (each step starts
its own local SparkSession). Each run gets a fresh ``FRAUD_HOME``. For every run it records
the wall time of the whole command, the run's own duration, each step's duration from
Dagster's event log (STEP_START to STEP_SUCCESS) and their sum.

Output: ``bench/results/pipeline.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from statistics import median
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "pipeline.json"
MODES = {"shared_spark": [], "spark_per_step": ["--no-shared-spark"]}


def run_once(flags: list[str]) -> dict[str, Any]:
    """One ``fraud_pipeline`` run in a fresh FRAUD_HOME; its wall time and step durations."""
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as scratch:
        home = Path(scratch) / "fraud_home"
        dagster_home = home / "dagster_home"
        dagster_home.mkdir(parents=True)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("FRAUD_", "SPARK_"))},
            "FRAUD_HOME": str(home),
            "DAGSTER_HOME": str(dagster_home),
            "PYSPARK_PYTHON": sys.executable,
        }
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "fraud_assets.local.run", "fraud_pipeline", *flags],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        wall = time.perf_counter() - started
        if done.returncode != 0:
            kept = Path(tempfile.mkdtemp(prefix="bench-pipeline-failed-"))
            shutil.copytree(home / "logs", kept / "logs")
            raise SystemExit(
                f"fraud_pipeline failed ({flags}); its step logs are in {kept}:\n"
                f"{done.stdout[-3000:]}"
            )
        steps, run_seconds = _step_seconds(dagster_home)
    return {
        "wall_seconds": round(wall, 1),
        "run_seconds": round(run_seconds, 1),
        "step_seconds": {k: round(v, 1) for k, v in sorted(steps.items())},
        "sum_of_steps_seconds": round(sum(steps.values()), 1),
    }


def _step_seconds(dagster_home: Path) -> tuple[dict[str, float], float]:
    from dagster import DagsterEventType, DagsterInstance, EventRecordsFilter

    os.environ["DAGSTER_HOME"] = str(dagster_home)
    with DagsterInstance.get() as instance:
        (run,) = instance.get_runs(limit=1)
        record = instance.get_run_record_by_id(run.run_id)
        assert record is not None and record.start_time and record.end_time
        starts: dict[str, float] = {}
        ends: dict[str, float] = {}
        for kind, into in (
            (DagsterEventType.STEP_START, starts),
            (DagsterEventType.STEP_SUCCESS, ends),
        ):
            for event in instance.get_event_records(
                EventRecordsFilter(event_type=kind), ascending=True
            ):
                entry = event.event_log_entry
                if entry.run_id == run.run_id and entry.step_key:
                    into[entry.step_key] = entry.timestamp
    steps = {key: ends[key] - starts[key] for key in ends if key in starts}
    return steps, record.end_time - record.start_time


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs of each mode, alternating")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    for _ in range(args.repeats):
        for mode, flags in MODES.items():
            runs[mode].append(run_once(flags))
            last = runs[mode][-1]
            print(  # noqa: T201
                f"{mode:>15}: wall {last['wall_seconds']:6.1f} s, run {last['run_seconds']:6.1f} s,"
                f" sum of steps {last['sum_of_steps_seconds']:6.1f} s",
                flush=True,
            )
    summary = {
        mode: {
            "median_wall_seconds": median(r["wall_seconds"] for r in results),
            "median_run_seconds": median(r["run_seconds"] for r in results),
            "median_sum_of_steps_seconds": median(r["sum_of_steps_seconds"] for r in results),
            "median_step_seconds": {
                step: median(r["step_seconds"][step] for r in results)
                for step in results[0]["step_seconds"]
            },
        }
        for mode, results in runs.items()
    }
    shared, own = summary["shared_spark"], summary["spark_per_step"]
    ratios = [
        s["wall_seconds"] / o["wall_seconds"]
        for s, o in zip(runs["shared_spark"], runs["spark_per_step"], strict=True)
    ]
    result = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpu_count": os.cpu_count(),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
        "job": "fraud_pipeline, 20,000 synthetic claims (the default), local compute",
        "repeats": args.repeats,
        "summary": summary,
        "shared_over_per_step_wall_median": round(median(ratios), 3),
        "runs": runs,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(  # noqa: T201
        f"shared Spark: wall {shared['median_wall_seconds']} s (sum of steps "
        f"{shared['median_sum_of_steps_seconds']} s); Spark per step: wall "
        f"{own['median_wall_seconds']} s (sum of steps {own['median_sum_of_steps_seconds']} s); "
        f"shared / per step {result['shared_over_per_step_wall_median']} -> {RESULTS}"
    )


if __name__ == "__main__":
    main()
