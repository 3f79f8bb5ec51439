"""A small workload for launch tests: the Pipes protocol without Spark or models.

It is launched exactly like a real step (``python -m`` of a module whose ``main`` calls
``run_task``), so launch, messages, logs, failure and cancellation are exercised for real,
in about a second instead of a Spark session's six.
"""

from __future__ import annotations

import sys
import time

from fraud_assets.tasks._runtime import (
    CheckOutcome,
    Materialization,
    TaskContext,
    TaskResult,
    run_task,
)

PROBE_ASSET = "probe_asset"
PROBE_CHECK = "probe_check"


def probe(ctx: TaskContext) -> TaskResult:
    """Report one materialization and one check, or fail or sleep when asked to."""
    behaviour = ctx.param("behaviour", "ok")
    sys.stdout.write("probe stdout: started\n")
    sys.stdout.flush()
    ctx.log.info(f"probe running with behaviour={behaviour}")
    if behaviour == "fail":
        raise FileNotFoundError("claims file /landing/missing.csv does not exist")
    if behaviour == "sleep":
        time.sleep(float(ctx.param("seconds", 60)))
    return TaskResult(
        materializations=[
            Materialization(
                PROBE_ASSET,
                {
                    "row_count": 3,
                    "target": ctx.settings.target,
                    "home": str(ctx.settings.fraud_home),
                    "run_id": ctx.run_id,
                },
            )
        ],
        checks=[CheckOutcome(PROBE_ASSET, PROBE_CHECK, passed=True)],
    )


def main(argv: list[str] | None = None) -> None:
    run_task(probe, argv, name="probe")


if __name__ == "__main__":
    main()
