"""Sensor: every failed run sends an alert with its job, failed steps and a link."""

from __future__ import annotations

from dagster import DefaultSensorStatus, RunFailureSensorContext, run_failure_sensor

from fraud_assets.alerts import run_failure_alert
from fraud_assets.resources.alerts import AlertResource

RUN_FAILURE_SENSOR = "run_failure_alert_sensor"


@run_failure_sensor(
    name=RUN_FAILURE_SENSOR,
    default_status=DefaultSensorStatus.RUNNING,
    description="Send an alert (FRAUD_ALERT_SINK) for every failed run of this code location.",
)
def run_failure_alert_sensor(context: RunFailureSensorContext, alerts: AlertResource) -> None:
    run = context.dagster_run
    failed_steps = sorted({e.step_key for e in context.get_step_failure_events() if e.step_key})
    alert = run_failure_alert(
        job_name=run.job_name,
        run_id=run.run_id,
        message=context.failure_event.message,
        base_url=alerts.dagster_base_url,
        failed_steps=failed_steps,
    )
    alerts.send(alert, logger=context.log)
