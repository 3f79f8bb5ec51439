"""Jobs over the asset graph. Schedules and sensors target these by name."""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job

from fraud_assets import keys
from fraud_assets.executor import RUN_LOCK_TAG
from fraud_assets.settings import get_settings

# The shared state a run writes is the target's: a run queue limited on this tag runs one
# at a time per target (fraud_assets.executor).
WRITER_TAGS = {RUN_LOCK_TAG: get_settings().target}

fraud_pipeline = define_asset_job(
    keys.MAIN_JOB,
    selection=AssetSelection.all(),
    tags=WRITER_TAGS,
    description="Every asset: claims in, governed champion model and fraud scores out.",
)

ingestion_job = define_asset_job(
    keys.INGESTION_JOB,
    selection=AssetSelection.assets(keys.RAW_CLAIMS, keys.CLAIMS, keys.CLAIMS_QUARANTINE),
    tags=WRITER_TAGS,
    description="Land new claims in bronze, validate them into silver and quarantine.",
)

retraining_job = define_asset_job(
    keys.RETRAINING_JOB,
    selection=AssetSelection.assets(
        keys.CLAIM_FEATURES,
        keys.CATBOOST_MODEL,
        keys.XGBOOST_MODEL,
        keys.MODEL_EVALUATION,
        keys.FAIRNESS_REPORT,
        keys.REGISTERED_MODEL,
    ),
    tags=WRITER_TAGS,
    description="Rebuild features, train both models, gate them and register the winner.",
)

drift_monitoring_job = define_asset_job(
    keys.DRIFT_MONITORING_JOB,
    selection=AssetSelection.assets(keys.FRAUD_SCORES, keys.PSI_REPORT),
    tags=WRITER_TAGS,
    description="Score the latest claims with the champion and measure drift against it.",
)

# The champion, on its own decisions; the candidate's holdout gate stays in retraining_job.
fairness_audit_job = define_asset_job(
    keys.FAIRNESS_AUDIT_JOB,
    selection=AssetSelection.assets(keys.CHAMPION_FAIRNESS_AUDIT),
    tags=WRITER_TAGS,
    description="Audit the champion's fairness on its labelled production decisions "
    "(HTML and PDF report on the reports Volume and the champion's MLflow run).",
)

ASSET_JOBS = [
    fraud_pipeline,
    ingestion_job,
    retraining_job,
    drift_monitoring_job,
    fairness_audit_job,
]
