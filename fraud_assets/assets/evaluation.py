"""Model evaluation: both models and the champion on one holdout, and the quality gates."""

from collections.abc import Iterator

from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    MaterializeResult,
    asset,
)

from fraud_assets import keys
from fraud_assets.resources.compute import FraudCompute

# No `from __future__ import annotations`: Dagster inspects the context annotation at runtime.

_GATES = {
    keys.CHECK_ROC_AUC_FLOOR: "Candidate holdout ROC AUC at or above thresholds.roc_auc_min",
    keys.CHECK_PR_AUC_FLOOR: (
        "Candidate PR AUC at least the precision with pr_auc_lift_min x the prevalence's odds"
    ),
    keys.CHECK_NO_REGRESSION: (
        "Candidate ROC AUC no more than thresholds.regression_tolerance below the champion's "
        "on the same holdout (passes when there is no champion)"
    ),
}


@asset(
    key=keys.MODEL_EVALUATION,
    group_name="evaluation",
    deps=[keys.CATBOOST_MODEL, keys.XGBOOST_MODEL],
    check_specs=[
        AssetCheckSpec(name, asset=keys.MODEL_EVALUATION, blocking=True, description=description)
        for name, description in _GATES.items()
    ],
    kinds={"mlflow", "delta"},
)
def model_evaluation(
    context: AssetExecutionContext, compute: FraudCompute
) -> Iterator[MaterializeResult | AssetCheckResult]:
    """Which model catches the most fraud on unseen claims, and whether it beats the champion."""
    yield from compute.run_task(context=context, task="evaluate")
