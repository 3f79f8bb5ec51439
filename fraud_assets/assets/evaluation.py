"""Model evaluation: both models and the champion on one holdout, and the quality gates."""

from collections.abc import Iterator

from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    MaterializeResult,
    asset,
)

from fraud_assets import keys
from fraud_assets.assets._check_specs import check_specs
from fraud_assets.assets._retry import LAUNCH_RETRY_POLICY
from fraud_assets.resources.compute import FraudCompute

# No `from __future__ import annotations`: Dagster inspects the context annotation at runtime.


@asset(
    retry_policy=LAUNCH_RETRY_POLICY,
    key=keys.MODEL_EVALUATION,
    group_name="evaluation",
    deps=[keys.CATBOOST_MODEL, keys.XGBOOST_MODEL],
    check_specs=check_specs(keys.MODEL_EVALUATION),
    kinds={"mlflow", "delta"},
)
def model_evaluation(
    context: AssetExecutionContext, compute: FraudCompute
) -> Iterator[MaterializeResult | AssetCheckResult]:
    """Which model catches the most fraud on unseen claims, and whether it beats the champion."""
    yield from compute.run_task(context=context, task="evaluate")
