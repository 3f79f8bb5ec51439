"""Asset keys and job names: module constants so nothing is spelled twice.

Plain strings, so a task on a cluster can name its assets without importing Dagster.
Dagster coerces them where it takes a key (``@asset(key=...)``, ``deps``, ``AssetCheckSpec``,
``AssetSelection.assets``); the Dagster side wraps one in ``AssetKey(...)`` where it
compares keys or builds an ``AssetCheckKey``. Check names live with their declarations in
``fraud_assets.checks``.
"""

from __future__ import annotations

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
CHAMPION_FAIRNESS_AUDIT = "champion_fairness_audit"

MODEL_ASSETS = {"catboost": CATBOOST_MODEL, "xgboost": XGBOOST_MODEL}

MAIN_JOB = "fraud_pipeline"
INGESTION_JOB = "ingestion_job"
RETRAINING_JOB = "retraining_job"
DRIFT_MONITORING_JOB = "drift_monitoring_job"
FAIRNESS_AUDIT_JOB = "fairness_audit_job"
ROLLBACK_JOB = "rollback_champion_job"
PROMOTE_JOB = "promote_champion_job"
