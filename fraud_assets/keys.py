"""Asset keys, check names and job names: module constants so nothing is spelled twice."""

from __future__ import annotations

from collections.abc import Iterable

from dagster import AssetKey

from fraud_assets import checks

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

# Check names and lists, re-exported from fraud_assets.checks where each check is declared.
CHECK_RAW_SCHEMA = checks.CHECK_RAW_SCHEMA
CHECK_RAW_NOT_EMPTY = checks.CHECK_RAW_NOT_EMPTY
CHECK_SCHEMA = checks.CHECK_SCHEMA
CHECK_UNIQUE_CLAIM_ID = checks.CHECK_UNIQUE_CLAIM_ID
CHECK_QUARANTINE_RATE = checks.CHECK_QUARANTINE_RATE
CHECK_VALUE_RANGES = checks.CHECK_VALUE_RANGES
CHECK_NULL_RATES = checks.CHECK_NULL_RATES
CHECK_RECONCILES = checks.CHECK_RECONCILES
CHECK_FEATURES_COMPLETE = checks.CHECK_FEATURES_COMPLETE
CHECK_HOLDOUT_SEPARATED = checks.CHECK_HOLDOUT_SEPARATED
CHECK_MODEL_ROC_AUC = checks.CHECK_MODEL_ROC_AUC
CHECK_ROC_AUC_FLOOR = checks.CHECK_ROC_AUC_FLOOR
CHECK_PR_AUC_FLOOR = checks.CHECK_PR_AUC_FLOOR
CHECK_NO_REGRESSION = checks.CHECK_NO_REGRESSION
CHECK_DISPARATE_IMPACT = checks.CHECK_DISPARATE_IMPACT
CHECK_FALSE_POSITIVE_RATE_RATIO = checks.CHECK_FALSE_POSITIVE_RATE_RATIO
CHECK_EQUAL_OPPORTUNITY = checks.CHECK_EQUAL_OPPORTUNITY
CHECK_MIN_GROUP_SIZE = checks.CHECK_MIN_GROUP_SIZE
CHECK_FAIRNESS_POLICY = checks.CHECK_FAIRNESS_POLICY
CHECK_FEATURE_DRIFT = checks.CHECK_FEATURE_DRIFT
CHECK_SCORE_DRIFT = checks.CHECK_SCORE_DRIFT

FAIRNESS_FIGURE_CHECKS: list[str] = list(checks.FAIRNESS_FIGURE_CHECKS)
FAIRNESS_CHECKS: list[str] = list(checks.FAIRNESS_CHECKS)
MODEL_QUALITY_GATES: list[str] = list(checks.MODEL_QUALITY_GATES)


def promotion_gates(gated_figures: Iterable[str]) -> dict[AssetKey, list[str]]:
    """``checks.promotion_gates`` by asset key: the checks ``registered_model`` waits on."""
    return {
        AssetKey(asset): names for asset, names in checks.promotion_gates(gated_figures).items()
    }
