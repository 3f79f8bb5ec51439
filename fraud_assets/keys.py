"""Asset keys, check names and job names: module constants so nothing is spelled twice."""

from __future__ import annotations

from collections.abc import Iterable

from dagster import AssetKey

RAW_CLAIMS = AssetKey("raw_claims")
CLAIMS = AssetKey("claims")
CLAIMS_QUARANTINE = AssetKey("claims_quarantine")
CLAIM_FEATURES = AssetKey("claim_features")
CATBOOST_MODEL = AssetKey("catboost_model")
XGBOOST_MODEL = AssetKey("xgboost_model")
MODEL_EVALUATION = AssetKey("model_evaluation")
FAIRNESS_REPORT = AssetKey("fairness_report")
PSI_REPORT = AssetKey("psi_report")
REGISTERED_MODEL = AssetKey("registered_model")
FRAUD_SCORES = AssetKey("fraud_scores")

MODEL_ASSETS = {"catboost": CATBOOST_MODEL, "xgboost": XGBOOST_MODEL}

MAIN_JOB = "fraud_pipeline"
INGESTION_JOB = "ingestion_job"
RETRAINING_JOB = "retraining_job"
DRIFT_MONITORING_JOB = "drift_monitoring_job"
FAIRNESS_AUDIT_JOB = "fairness_audit_job"
ROLLBACK_JOB = "rollback_champion_job"

# Asset check names, per asset.
CHECK_RAW_SCHEMA = "raw_schema_has_required_columns"
CHECK_RAW_NOT_EMPTY = "raw_not_empty"
CHECK_SCHEMA = "schema_matches_contract"
CHECK_UNIQUE_CLAIM_ID = "claim_id_unique"
CHECK_QUARANTINE_RATE = "quarantine_rate_within_limit"
CHECK_VALUE_RANGES = "values_in_range"
CHECK_NULL_RATES = "null_rates_within_limit"
CHECK_RECONCILES = "bronze_equals_silver_plus_quarantine"
CHECK_FEATURES_COMPLETE = "features_complete"
CHECK_HOLDOUT_SEPARATED = "holdout_shares_no_label_unit"
CHECK_MODEL_ROC_AUC = "holdout_roc_auc_above_floor"
CHECK_ROC_AUC_FLOOR = "roc_auc_floor"
CHECK_PR_AUC_FLOOR = "pr_auc_floor"
CHECK_NO_REGRESSION = "no_regression_vs_champion"
CHECK_DISPARATE_IMPACT = "disparate_impact_ratio"
CHECK_FALSE_POSITIVE_RATE_RATIO = "false_positive_rate_ratio"
CHECK_EQUAL_OPPORTUNITY = "equal_opportunity_difference"
CHECK_MIN_GROUP_SIZE = "min_group_size"
CHECK_FAIRNESS_POLICY = "policy_at_least_pinned"
CHECK_FEATURE_DRIFT = "feature_drift"
CHECK_SCORE_DRIFT = "score_drift"

# Fairness checks: one per gateable figure (the pinned policy decides which of them gate),
# then the group-size and policy checks, which always gate.
FAIRNESS_FIGURE_CHECKS: list[str] = [
    CHECK_FALSE_POSITIVE_RATE_RATIO,
    CHECK_EQUAL_OPPORTUNITY,
    CHECK_DISPARATE_IMPACT,
]
FAIRNESS_CHECKS: list[str] = [*FAIRNESS_FIGURE_CHECKS, CHECK_MIN_GROUP_SIZE, CHECK_FAIRNESS_POLICY]
MODEL_QUALITY_GATES: list[str] = [CHECK_ROC_AUC_FLOOR, CHECK_PR_AUC_FLOOR, CHECK_NO_REGRESSION]


def promotion_gates(gated_figures: Iterable[str]) -> dict[AssetKey, list[str]]:
    """The checks that gate promotion: registered_model must not run when one of them fails.

    ``gated_figures`` are the fairness figures the target's pinned policy gates.
    """
    gated = set(gated_figures)
    return {
        MODEL_EVALUATION: list(MODEL_QUALITY_GATES),
        FAIRNESS_REPORT: [
            *(check for check in FAIRNESS_FIGURE_CHECKS if check in gated),
            CHECK_MIN_GROUP_SIZE,
            CHECK_FAIRNESS_POLICY,
        ],
    }
