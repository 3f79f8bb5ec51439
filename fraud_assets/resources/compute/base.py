"""The compute contract: one call per heavy step, the same entry point in every mode."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    ConfigurableResource,
    MaterializeResult,
    OpExecutionContext,
)

from fraud_assets.settings import FraudSettings

TaskResults = Sequence[MaterializeResult | AssetCheckResult]
# Who launched a run (scripts/orchestrate.py sets it to CI's actor); models it registers
# or promotes record it as deployed_by.
DEPLOYED_BY_TAG = "fraud_assets/deployed_by"


def task_extras(
    context: AssetExecutionContext | OpExecutionContext,
    settings: FraudSettings,
    params: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """What every launched task receives: settings (no secrets), parameters, the run id and,
    when the run names one, who launched it (``deployed_by``)."""
    launched_by = context.run.tags.get(DEPLOYED_BY_TAG)
    return {
        "settings": settings.to_payload(),
        "params": {
            "run_id": context.run.run_id,
            **({"deployed_by": launched_by} if launched_by else {}),
            **(params or {}),
        },
    }


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
