"""One run at a time writes a ``FRAUD_HOME``: Dagster's multiprocess executor behind a lock.

Two pipelines on one ``FRAUD_HOME`` used to interleave: run B's fairness step judged run
A's candidate, and B's registration promoted A's model (issue 14). The evidence a run's
steps hand each other (``model_evaluation``, ``holdout_predictions``, ``check_history``)
and the tables they write are shared by every run on the home, so the unit that must not
overlap is the run, not a step.

The executor runs in the run's own worker process for the whole run, whether the run came
from ``python -m fraud_assets.local.run``, the UI, a schedule or a sensor, so it is where the
lock is held: a file lock under ``$FRAUD_HOME/locks/`` (released by the OS if the worker
dies, so it never goes stale). A second run waits, and says which run it waits for, in its
event log. Runs on separate machines (Kubernetes run pods in production) cannot share a
file; there the Dagster instance's run queue serializes them by the ``RUN_LOCK_TAG`` every
job carries (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dagster import (
    Executor,
    InitExecutorContext,
    executor,
    multiple_process_executor_requirements,
    multiprocess_executor,
)
from filelock import FileLock, Timeout

from fraud_assets.settings import get_settings

if TYPE_CHECKING:
    from dagster import DagsterEvent
    from dagster._core.execution.context.system import PlanOrchestrationContext
    from dagster._core.execution.plan.plan import ExecutionPlan
    from dagster._core.execution.retries import RetryMode

# Every job carries this tag; a shared Dagster instance limits it to one run at a time.
RUN_LOCK_TAG = "fraud_assets/fraud_home_writer"
# How often a waiting run re-tries the lock (and may be cancelled in between).
LOCK_POLL_SECONDS = 5.0


def run_lock_path(fraud_home: Path) -> Path:
    return fraud_home / "locks" / "pipeline_run.lock"


class FraudHomeLockedExecutor(Executor):
    """Hold the ``FRAUD_HOME`` run lock around another executor's whole run."""

    def __init__(self, inner: Executor, lock_path: Path) -> None:
        self.inner = inner
        self.lock_path = lock_path

    @property
    def retries(self) -> RetryMode:
        return self.inner.retries

    @property
    def step_dependency_config(self) -> Any:
        return self.inner.step_dependency_config

    def execute(
        self, plan_context: PlanOrchestrationContext, execution_plan: ExecutionPlan
    ) -> Iterator[DagsterEvent]:
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        owner = self.lock_path.with_suffix(".owner")
        lock = FileLock(str(self.lock_path))
        waited = False
        while True:
            try:
                lock.acquire(timeout=LOCK_POLL_SECONDS)
                break
            except Timeout:
                if not waited:
                    holder = owner.read_text(encoding="utf-8").strip() if owner.exists() else ""
                    plan_context.log.warning(
                        f"waiting for run {holder or '(unknown)'}: it is writing "
                        f"{self.lock_path.parent.parent}, and one run at a time may"
                    )
                    waited = True
        try:
            owner.write_text(f"{plan_context.run_id} (pid {os.getpid()})\n", encoding="utf-8")
            if waited:
                plan_context.log.info(f"{self.lock_path} acquired; the run starts")
            yield from self.inner.execute(plan_context, execution_plan)
        finally:
            lock.release()


@executor(
    name="fraud_home_multiprocess",
    config_schema=multiprocess_executor.config_schema.as_field(),
    requirements=multiple_process_executor_requirements(),
)
def fraud_home_executor(init_context: InitExecutorContext) -> Executor:
    """Dagster's multiprocess executor (same config), one run at a time per ``FRAUD_HOME``."""
    inner = multiprocess_executor.executor_creation_fn(init_context)  # type: ignore[misc]
    return FraudHomeLockedExecutor(inner, run_lock_path(get_settings().fraud_home))
