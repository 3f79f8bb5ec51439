"""A one-asset Dagster job that launches the probe workload through the compute resource.

Tests use it in-process, and run it as ``python -m fraud_assets_tests.emulator.probe_job``
when the run must be terminated from outside (SIGINT, as Dagster's run launcher does).
"""

# No `from __future__ import annotations`: Dagster reads the asset annotations at runtime.

import os
import sys
from collections.abc import Iterator

from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    Config,
    DagsterInstance,
    ExecuteInProcessResult,
    MaterializeResult,
    asset,
    materialize,
)

from fraud_assets.resources.compute import FraudCompute
from fraud_assets.resources.compute.databricks import DatabricksPipesCompute
from fraud_assets.resources.defaults import default_compute
from fraud_assets.resources.workspace import DatabricksWorkspace
from fraud_assets.settings import get_settings
from fraud_assets.tasks import TASKS, TaskSpec
from fraud_assets_tests.emulator.probe import PROBE_ASSET, PROBE_CHECK

PROBE_SPEC = TaskSpec("probe", "fraud_assets_tests.emulator.probe", "fraud-probe", False)


def register_probe_task() -> None:
    """Make ``probe`` a known step (tests undo it with monkeypatch)."""
    TASKS[PROBE_SPEC.name] = PROBE_SPEC


class ProbeConfig(Config):
    behaviour: str = "ok"
    seconds: float = 60.0


@asset(key=PROBE_ASSET, check_specs=[AssetCheckSpec(PROBE_CHECK, asset=PROBE_ASSET)])
def probe_asset(
    context: AssetExecutionContext, config: ProbeConfig, compute: FraudCompute
) -> Iterator[MaterializeResult | AssetCheckResult]:
    """A stand-in asset whose step is the probe workload."""
    yield from compute.run_task(
        context=context,
        task=PROBE_SPEC.name,
        params={"behaviour": config.behaviour, "seconds": config.seconds},
    )


def run_probe(
    instance: DagsterInstance,
    behaviour: str = "ok",
    seconds: float = 60.0,
    compute: FraudCompute | None = None,
) -> ExecuteInProcessResult:
    """Materialize the probe on ``compute``, by default the one the environment describes now,
    as the definitions would build it."""
    if compute is None:
        workspace = DatabricksWorkspace.from_env()
        compute = DatabricksPipesCompute.from_settings(get_settings(), workspace)
    return materialize(
        [probe_asset],
        instance=instance,
        resources={"compute": compute},
        run_config={
            "ops": {"probe_asset": {"config": {"behaviour": behaviour, "seconds": seconds}}}
        },
        raise_on_error=False,
    )


def failure_message(result: ExecuteInProcessResult) -> str:
    failures = [e for e in result.all_events if e.is_step_failure]
    assert failures, "the step was expected to fail"
    error = failures[0].step_failure_data.error
    assert error is not None
    return error.to_string()


def main() -> None:
    """Materialize the probe with the compute chosen by the environment, in DAGSTER_HOME."""
    import dagster._core.pipes.utils as pipes_utils

    register_probe_task()
    # As the short_pipes_drain fixture: a killed remote never closes Pipes; wait 1 s, not 10.
    pipes_utils.WAIT_FOR_LOGS_AFTER_EXECUTION_INTERVAL = 1
    behaviour = sys.argv[1] if len(sys.argv) > 1 else "ok"
    with DagsterInstance.get() as instance:
        result = materialize(
            [probe_asset],
            instance=instance,
            resources={"compute": default_compute(get_settings(), DatabricksWorkspace.from_env())},
            run_config={"ops": {"probe_asset": {"config": {"behaviour": behaviour}}}},
            raise_on_error=False,
        )
    sys.stdout.write(f"dagster run {result.run_id} success={result.success}\n")
    os._exit(0 if result.success else 1)


if __name__ == "__main__":
    main()
