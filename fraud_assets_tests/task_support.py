"""Running a task function in-process, as ``run_task`` would on a cluster."""

from __future__ import annotations

import logging

from fraud_assets.settings import get_settings
from fraud_assets.tasks._runtime import TaskContext


def task_context(run_id: str, **params: str) -> TaskContext:
    """A task's context under the current environment's settings, for run ``run_id``."""
    return TaskContext(
        settings=get_settings(),
        params={"run_id": run_id, **params},
        log=logging.getLogger("test"),
        run_id=run_id,
    )
