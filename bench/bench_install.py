"""A cold `make install`: uv from requirements.lock beside pip from pyproject.toml's ranges.

Runs ``bench/install/cold_uv.sh`` (today's ``make install``) and ``bench/install/cold_pip.sh``
(the one before the lock) in turn, A B A B ..., each in a fresh venv with no package cache,
times every whole run from outside, and saves the medians and their ratio.

Writes bench/results/install.json.

    .venv/bin/python bench/bench_install.py --runs 2
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger("bench_install")
HERE = Path(__file__).parent
RESULTS = HERE / "results" / "install.json"
SCRIPTS = {
    "uv_lock": HERE / "install" / "cold_uv.sh",
    "pip_ranges": HERE / "install" / "cold_pip.sh",
}


def timed(script: Path) -> float:
    started = time.perf_counter()
    subprocess.run(["bash", str(script)], check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    walls: dict[str, list[float]] = {name: [] for name in SCRIPTS}
    for run in range(args.runs):
        for name, script in SCRIPTS.items():
            walls[name].append(timed(script))
            log.info("run %d, %s: %.1f s", run + 1, name, walls[name][-1])
    medians = {name: statistics.median(times) for name, times in walls.items()}
    ratio = medians["uv_lock"] / medians["pip_ranges"]
    log.info("median wall: uv %.1f s, pip %.1f s (uv/pip %.2f)", *medians.values(), ratio)
    result = {
        "measured_at": datetime.now(UTC).isoformat(),
        "machine": {"cpus": os.cpu_count(), "load_average_after": list(os.getloadavg())},
        "wall_seconds": walls,
        "median_wall_seconds": medians,
        "uv_over_pip": round(ratio, 4),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    log.info("wrote %s", args.output)


if __name__ == "__main__":
    main()
