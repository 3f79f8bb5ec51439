"""Launched steps retry a transient launch failure, never a task's own failure (issue 16)."""

# No `from __future__ import annotations`: Dagster inspects the context annotation at runtime.

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    DagsterEventType,
    DagsterInstance,
    MaterializeResult,
    RetryPolicy,
    asset,
    materialize,
)
from databricks.sdk.errors import InternalError, InvalidParameterValue, TooManyRequests
from databricks.sdk.service.jobs import Run, RunLifeCycleState, RunResultState, RunState

from fraud_assets.assets._retry import LAUNCH_RETRY_POLICY
from fraud_assets.databricks.retries import is_transient_launch_failure
from fraud_assets.databricks.runs import DatabricksRunFailed, DatabricksRunTimedOut, _terminal_error
from fraud_assets.resources.compute import FraudCompute, LocalPipesCompute, launch_retry_policy
from fraud_assets.resources.compute import local as local_compute
from fraud_assets.settings import DatabricksSettings


def _ended(life_cycle: RunLifeCycleState, message: str) -> DatabricksRunFailed:
    run = Run(
        run_id=7,
        run_page_url="https://example.test/run/7",
        state=RunState(
            life_cycle_state=life_cycle,
            result_state=RunResultState.FAILED,
            state_message=message,
        ),
    )
    error = _terminal_error(None, run)  # type: ignore[arg-type]  # no tasks: no output read
    assert isinstance(error, DatabricksRunFailed)
    return error


TRANSIENT = [
    InternalError("HTTP 500 from jobs/runs/submit"),
    TooManyRequests("HTTP 429"),
    requests.ConnectionError("connection reset by peer"),
    _ended(RunLifeCycleState.INTERNAL_ERROR, "Cluster failed to start: CLOUD_PROVIDER_LAUNCH"),
]
DETERMINISTIC = [
    _ended(RunLifeCycleState.TERMINATED, "Workload failed: ValueError: no claim_id column"),
    DatabricksRunTimedOut("did not finish within 3600 s", run_id=7, run_page_url=None),
    InvalidParameterValue("node_type_id i3.nonexistent is not supported"),
    ValueError("refusing a synthetic source in prod"),
]


@pytest.mark.parametrize("error", TRANSIENT, ids=lambda e: type(e).__name__)
def test_platform_failures_are_transient(error: BaseException) -> None:
    assert is_transient_launch_failure(error)


@pytest.mark.parametrize("error", DETERMINISTIC, ids=lambda e: type(e).__name__)
def test_a_task_failure_is_not_transient(error: BaseException) -> None:
    assert not is_transient_launch_failure(error)


class _FailingPipesClient:
    """Stands in for PipesSubprocessClient: every launch fails with ``error``."""

    error: BaseException
    launches = 0

    def __init__(self, **_: Any) -> None:
        pass

    def run(self, **_: Any) -> Any:
        type(self).launches += 1
        raise self.error


@asset(retry_policy=RetryPolicy(max_retries=2))
def launched_step(
    context: AssetExecutionContext, compute: FraudCompute
) -> Iterator[MaterializeResult | AssetCheckResult]:
    yield from compute.run_task(context=context, task="evaluate")


def _launches(error: BaseException, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> int:
    client = type("Client", (_FailingPipesClient,), {"error": error, "launches": 0})
    monkeypatch.setattr(local_compute, "PipesSubprocessClient", client)
    with DagsterInstance.ephemeral(tempdir=str(tmp_path)) as instance:
        result = materialize(
            [launched_step],
            resources={"compute": LocalPipesCompute()},
            instance=instance,
            raise_on_error=False,
        )
        assert not result.success
        retries = instance.get_records_for_run(
            result.run_id, of_type=DagsterEventType.STEP_UP_FOR_RETRY
        ).records
    assert len(retries) == client.launches - 1
    return client.launches


def test_a_transient_launch_failure_is_retried_by_the_policy(
    fraud_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert _launches(InternalError("HTTP 503"), monkeypatch, tmp_path) == 3


def test_a_deterministic_failure_fails_the_step_at_once(
    fraud_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert _launches(ValueError("no claim_id column"), monkeypatch, tmp_path) == 1


def test_every_launched_step_carries_the_launch_retry_policy() -> None:
    from fraud_assets.definitions import defs

    repository = defs.get_repository_def()
    launched = [
        node
        for job in repository.get_all_jobs()
        for node in job.graph.iterate_op_defs()
        if "compute" in node.required_resource_keys
    ]
    names = {node.name for node in launched}
    assert {"registered_model", "psi_report", "rollback_champion", "validate_claims"} <= names
    for node in launched:
        assert node.retry_policy == LAUNCH_RETRY_POLICY, node.name


def test_the_policy_backs_off_exponentially_from_the_settings() -> None:
    policy = launch_retry_policy(
        DatabricksSettings(launch_retries=4, launch_retry_delay_seconds=10.0)
    )
    assert (policy.max_retries, policy.delay, policy.backoff.value) == (4, 10.0, "EXPONENTIAL")
