"""Batch fraud scores for the latest claims, from the champion model."""

from collections.abc import Iterator

from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    MaterializeResult,
    asset,
)

from fraud_assets import keys
from fraud_assets.assets._retry import LAUNCH_RETRY_POLICY
from fraud_assets.resources.compute import FraudCompute

# No `from __future__ import annotations`: Dagster inspects the context annotation at runtime.


@asset(
    retry_policy=LAUNCH_RETRY_POLICY,
    key=keys.FRAUD_SCORES,
    group_name="scoring",
    deps=[keys.REGISTERED_MODEL, keys.CLAIMS],
    kinds={"spark", "mlflow", "delta"},
)
def fraud_scores(
    context: AssetExecutionContext, compute: FraudCompute
) -> Iterator[MaterializeResult | AssetCheckResult]:
    """The fraud probability and review decision for every claim in the latest batch."""
    yield from compute.run_task(context=context, task="score")
