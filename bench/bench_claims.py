"""Benchmark: the synthetic claims generator and landing a claims file into bronze rows.

    python bench/bench_claims.py                  # 100k and 1M claims
    python bench/bench_claims.py --rows 20000     # a quick look

For each size: ``generate_claims`` (vectorised numpy, with fraud patterns; best of three),
the same with drift and bias, ``bronze_table`` (typed claims → bronze text columns),
writing the claims as CSV, and ``read_source`` on that CSV (pyarrow parse + the canonical
mapping). Results go to ``bench/results/claims.json`` with the CPU count and load average.
"""

from __future__ import annotations

import argparse
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

from fraud_assets.claims.mapping import bronze_table, read_source
from fraud_assets.claims.synthetic import generate_claims, to_arrow, write_claims_file

log = logging.getLogger("bench.claims")
RESULTS = Path(__file__).resolve().parent / "results" / "claims.json"
T = TypeVar("T")


def best_of(repeats: int, fn: Callable[[], T]) -> tuple[T, float]:
    """The fastest of ``repeats`` runs: the figure least disturbed by other processes."""
    best = float("inf")
    value: T | None = None
    for _ in range(repeats):
        started = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - started)
    assert value is not None
    return value, best


def measure(rows: int, folder: Path) -> dict[str, Any]:
    claims, generate_s = best_of(3, lambda: generate_claims(rows, seed=1))
    _, drifted_s = best_of(3, lambda: generate_claims(rows, seed=1, drift=1.0, bias=1.0))
    table = to_arrow(claims)
    _, bronze_s = best_of(
        3,
        lambda: bronze_table(table, source="bench", loaded_at=datetime.now(UTC), batch_id="bench"),
    )
    path = folder / f"claims_{rows}.csv"
    _, write_s = best_of(1, lambda: write_claims_file(claims, path))
    landed, read_s = best_of(1, lambda: read_source(path))
    assert landed.row_count == rows
    figures = {
        "rows": rows,
        "fraud_rate": round(float(claims["is_fraud"].mean()), 4),
        "generate_seconds": round(generate_s, 3),
        "generate_rows_per_second": round(rows / generate_s),
        "generate_drift_bias_seconds": round(drifted_s, 3),
        "bronze_table_seconds": round(bronze_s, 3),
        "write_csv_seconds": round(write_s, 3),
        "csv_megabytes": round(path.stat().st_size / 1e6, 1),
        "read_and_map_csv_seconds": round(read_s, 3),
        "read_and_map_rows_per_second": round(rows / read_s),
    }
    log.info("%s", figures)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="*", default=[100_000, 1_000_000])
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with tempfile.TemporaryDirectory() as folder:
        sizes = [measure(rows, Path(folder)) for rows in args.rows]
    result = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "sizes": sizes,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    log.info("saved %s", RESULTS)


if __name__ == "__main__":
    main()
