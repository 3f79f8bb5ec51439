"""Asset keys, check names and job names: module constants so nothing is spelled twice.

Plain strings, so a task on a cluster can name its assets without importing Dagster.
Dagster coerces them where it takes a key (``@asset(key=...)``, ``deps``, ``AssetCheckSpec``,
``AssetSelection.assets``); the Dagster side wraps one in ``AssetKey(...)`` where it
compares keys or builds an ``AssetCheckKey``.
"""

from __future__ import annotations

from collections.abc import Iterable

from fraud_assets import checks

RAW_CLAIMS = "raw_claims"
CLAIMS = "claims"
CLAIMS_QUARANTINE = "claims_quarantine"
CLAIM_FEATURES = "claim_features"
CATBOOST_MODEL = "catboost_model"
XGBOOST_MODEL = "xgboost_model"
MODEL_EVALUATION = "model_evaluation"
FAIRNESS_REPORT = "fairness_report"
PSI_REPORT = "psi_report"
REGISTERED_MODEL = "registered_model"
FRAUD_SCORES = "fraud_scores"

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


def promotion_gates(gated_figures: Iterable[str]) -> dict[str, list[str]]:
    """``checks.promotion_gates``: the checks, by asset name, ``registered_model`` waits on."""
    return checks.promotion_gates(gated_figures)
