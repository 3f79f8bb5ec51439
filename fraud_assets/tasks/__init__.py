"""Task entry points: one module per pipeline step, each with a pure function and ``main()``.

``TASKS`` maps a step's name to its module and console script. Dagster launches the module,
a bundle job runs the script as a ``python_wheel_task`` with ``task_key`` equal to the name.
Each module's pure function is named after the module (``task_function`` finds it).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fraud_assets.tasks._runtime import TaskContext, TaskResult


@dataclass(frozen=True)
class TaskSpec:
    name: str
    module: str
    script: str
    needs_spark: bool

    @property
    def function(self) -> str:
        """The name of the pure function its module's ``main()`` hands to ``run_task``."""
        return self.module.rpartition(".")[2]


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
        TaskSpec(
            "champion_audit", "fraud_assets.tasks.champion_audit", "fraud-champion-audit", False
        ),
    ]
}


def task_spec(name: str) -> TaskSpec:
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; known tasks: {sorted(TASKS)}") from None


def task_function(name: str) -> Callable[[TaskContext], TaskResult]:
    """The pure function of task ``name``, for running it in this process."""
    spec = task_spec(name)
    function: Callable[[TaskContext], TaskResult] = getattr(
        importlib.import_module(spec.module), spec.function
    )
    return function
