"""Sensor: major drift on psi_report starts retraining_job, once per drift episode."""

from __future__ import annotations

import time

from dagster import (
    AssetCheckKey,
    AssetCheckSeverity,
    AssetKey,
    DagsterInstance,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from fraud_assets import keys
from fraud_assets.checks import names_of
from fraud_assets.sensors._automation import launching_sensor_status
from fraud_assets.sensors.drift_policy import DriftCursor, PsiObservation, decide
from fraud_assets.settings import get_settings

DRIFT_SENSOR = "drift_retraining_sensor"
# The psi_report checks declared in fraud_assets.checks: feature_drift and score_drift.
DRIFT_CHECKS = tuple(names_of(keys.PSI_REPORT))


def latest_psi_observation(instance: DagsterInstance) -> PsiObservation | None:
    """The newest psi_report materialization with the ERROR drift checks its run failed."""
    records = instance.fetch_materializations(AssetKey(keys.PSI_REPORT), limit=1).records
    if not records:
        return None
    record = records[0]
    materialization = record.asset_materialization
    metadata = materialization.metadata if materialization is not None else {}
    drift_level = metadata["drift_level"].value if "drift_level" in metadata else None
    max_psi = metadata["max_psi"].value if "max_psi" in metadata else None
    check_keys = [AssetCheckKey(AssetKey(keys.PSI_REPORT), name) for name in DRIFT_CHECKS]
    latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(check_keys)
    failed = []
    for check_key, execution in latest.items():
        evaluation = execution.event.asset_check_evaluation if execution.event else None
        if (
            execution.run_id == record.run_id
            and execution.status == AssetCheckExecutionRecordStatus.FAILED
            and evaluation is not None
            and evaluation.severity == AssetCheckSeverity.ERROR
        ):
            failed.append(check_key.name)
    return PsiObservation(
        storage_id=record.storage_id,
        run_id=record.run_id,
        drift_level=str(drift_level) if drift_level is not None else None,
        max_psi=float(max_psi) if isinstance(max_psi, int | float) else None,
        failed_error_checks=tuple(sorted(failed)),
    )


@sensor(
    name=DRIFT_SENSOR,
    job_name=keys.RETRAINING_JOB,
    minimum_interval_seconds=300,
    default_status=launching_sensor_status(get_settings()),
    description=(
        "Start retraining_job when the latest psi_report shows major drift (drift_level major "
        "or a failed ERROR drift check). One run per psi_report materialization, then a "
        "cooldown of FRAUD_RETRAIN_COOLDOWN_MINUTES."
    ),
)
def drift_retraining_sensor(context: SensorEvaluationContext) -> SensorResult:
    settings = get_settings()
    observation = latest_psi_observation(context.instance)
    decision = decide(
        observation,
        DriftCursor.parse(context.cursor),
        now=time.time(),
        cooldown_minutes=settings.retrain_cooldown_minutes,
    )
    context.log.info(decision.reason)
    if not decision.retrain or observation is None:
        return SensorResult(skip_reason=decision.reason, cursor=decision.cursor.dump())
    request = RunRequest(
        run_key=decision.run_key,
        tags={
            "fraud_assets/trigger": DRIFT_SENSOR,
            "fraud_assets/psi_run_id": observation.run_id,
            "fraud_assets/drift_level": observation.drift_level or "unknown",
            "fraud_assets/max_psi": "n/a"
            if observation.max_psi is None
            else f"{observation.max_psi:.4f}",
        },
    )
    return SensorResult(run_requests=[request], cursor=decision.cursor.dump())
