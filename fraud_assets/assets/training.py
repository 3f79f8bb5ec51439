"""The two fraud classifiers: each trained from the gold training split as its own step.

Two assets, not one multi-asset, so the multiprocess executor trains them in parallel.
"""

from collections.abc import Iterator
from typing import Any

from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    Config,
    MaterializeResult,
    asset,
)
from pydantic import Field

from fraud_assets import keys
from fraud_assets.assets._check_specs import check_specs
from fraud_assets.assets._retry import LAUNCH_RETRY_POLICY
from fraud_assets.resources.compute import FraudCompute

# No `from __future__ import annotations`: Dagster inspects the context annotation at runtime.


class TrainingConfig(Config):
    """Booster size and pace; unset fields keep the train task's defaults (TrainingParams)."""

    boosting_rounds: int | None = Field(None, ge=1, description="Trees / iterations")
    learning_rate: float | None = Field(None, gt=0.0, le=1.0)
    max_depth: int | None = Field(None, ge=1, le=16)

    def params(self, model: str) -> dict[str, Any]:
        return {"model": model, **self.model_dump(exclude_none=True)}


@asset(
    retry_policy=LAUNCH_RETRY_POLICY,
    key=keys.CATBOOST_MODEL,
    group_name="training",
    deps=[keys.CLAIM_FEATURES],
    check_specs=check_specs(keys.CATBOOST_MODEL),
    kinds={"catboost", "mlflow"},
)
def catboost_model(
    context: AssetExecutionContext, config: TrainingConfig, compute: FraudCompute
) -> Iterator[MaterializeResult | AssetCheckResult]:
    """CatBoost fraud classifier (balanced class weights), logged to MLflow as a probability."""
    yield from compute.run_task(context=context, task="train", params=config.params("catboost"))


@asset(
    retry_policy=LAUNCH_RETRY_POLICY,
    key=keys.XGBOOST_MODEL,
    group_name="training",
    deps=[keys.CLAIM_FEATURES],
    check_specs=check_specs(keys.XGBOOST_MODEL),
    kinds={"xgboost", "mlflow"},
)
def xgboost_model(
    context: AssetExecutionContext, config: TrainingConfig, compute: FraudCompute
) -> Iterator[MaterializeResult | AssetCheckResult]:
    """XGBoost fraud classifier (native categoricals, weighted positives), logged to MLflow."""
    yield from compute.run_task(context=context, task="train", params=config.params("xgboost"))
