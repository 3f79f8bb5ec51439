"""The compute contract: one call per heavy step, the same entry point in every mode."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    Backoff,
    ConfigurableResource,
    DagsterError,
    Failure,
    Jitter,
    MaterializeResult,
    OpExecutionContext,
    RetryPolicy,
)

from fraud_assets.databricks.retries import is_transient_launch_failure
from fraud_assets.settings import DatabricksSettings, FraudSettings

TaskResults = Sequence[MaterializeResult | AssetCheckResult]
# Who launched a run (scripts/orchestrate.py sets it to CI's actor); models it registers
# or promotes record it as deployed_by.
DEPLOYED_BY_TAG = "fraud_assets/deployed_by"
# Who approved a promotion and where (the approval workflow's run URL): a promote step
# under the approval promotion mode refuses to move champion without both.
APPROVED_BY_TAG = "fraud_assets/approved_by"
APPROVAL_URL_TAG = "fraud_assets/approval_url"
_APPROVAL_PARAMS = {APPROVED_BY_TAG: "approved_by", APPROVAL_URL_TAG: "approval_url"}


def task_extras(
    context: AssetExecutionContext | OpExecutionContext,
    settings: FraudSettings,
    params: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """What every launched task receives: settings (no secrets), parameters, the run id and,
    when the run names one, who launched it (``deployed_by``) and who approved it
    (``approved_by``, ``approval_url``)."""
    tags = context.run.tags
    launched_by = tags.get(DEPLOYED_BY_TAG)
    approval = {param: tags[tag] for tag, param in _APPROVAL_PARAMS.items() if tags.get(tag)}
    return {
        "settings": settings.to_payload(),
        "params": {
            "run_id": context.run.run_id,
            **({"deployed_by": launched_by} if launched_by else {}),
            **approval,
            **(params or {}),
        },
    }


def launch_retry_policy(settings: DatabricksSettings) -> RetryPolicy:
    """The retry policy of every launched step (``FRAUD_DATABRICKS__LAUNCH_RETRIES`` and
    ``FRAUD_DATABRICKS__LAUNCH_RETRY_DELAY_SECONDS``), exponential backoff with jitter."""
    return RetryPolicy(
        max_retries=settings.launch_retries,
        delay=settings.launch_retry_delay_seconds,
        backoff=Backoff.EXPONENTIAL,
        jitter=Jitter.PLUS_MINUS,
    )


@contextmanager
def transient_failures_retried() -> Iterator[None]:
    """Let only a transient launch failure reach the step's ``RetryPolicy``.

    A ``RetryPolicy`` retries any exception, and ``RetryRequested`` alone would hide the
    retry budget from the asset's definition; so the policy sits on every launched step and
    a deterministic failure (the task's own, a refused input, a bad launch spec) is raised
    as ``Failure(allow_retries=False)``, which Dagster fails at once whatever the policy.
    """
    try:
        yield
    except DagsterError:
        # Dagster's own errors (a Pipes task that failed, a bad config) bypass the policy.
        raise
    except Exception as error:
        if is_transient_launch_failure(error):
            raise
        raise Failure(
            description=f"{type(error).__name__}: {error}", allow_retries=False
        ) from error


class FraudCompute(ConfigurableResource, ABC):
    """Launches a pipeline step and returns the materializations and checks it reported."""

    @abstractmethod
    def run_task(
        self,
        *,
        context: AssetExecutionContext | OpExecutionContext,
        task: str,
        params: Mapping[str, Any] | None = None,
    ) -> TaskResults:
        """Run ``task`` (a name in ``fraud_assets.tasks.TASKS``) and collect its Pipes results."""
