"""Task entry points: one module per pipeline step, each with a pure function and ``main()``.

``TASKS`` maps a step's name to its module and console script. Dagster launches the module,
a bundle job runs the script as a ``python_wheel_task`` with ``task_key`` equal to the name.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TaskSpec:
    name: str
    module: str
    script: str
    needs_spark: bool


TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in [
        TaskSpec("ingest", "fraud_assets.tasks.ingest", "fraud-ingest", True),
        TaskSpec("validate", "fraud_assets.tasks.validate", "fraud-validate", True),
        TaskSpec("features", "fraud_assets.tasks.build_features", "fraud-features", True),
        TaskSpec("train", "fraud_assets.tasks.train", "fraud-train", False),
        TaskSpec("evaluate", "fraud_assets.tasks.evaluate", "fraud-evaluate", False),
        TaskSpec("fairness", "fraud_assets.tasks.fairness", "fraud-fairness", False),
        TaskSpec("psi", "fraud_assets.tasks.compute_psi", "fraud-psi", False),
        TaskSpec("register", "fraud_assets.tasks.register", "fraud-register", False),
        TaskSpec("score", "fraud_assets.tasks.score", "fraud-score", True),
        TaskSpec("promote", "fraud_assets.tasks.promote", "fraud-promote", False),
    ]
}


def task_spec(name: str) -> TaskSpec:
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; known tasks: {sorted(TASKS)}") from None
