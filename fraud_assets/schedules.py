"""Schedules: daily ingestion, drift monitoring every six hours, a weekly fairness audit.

Cron strings and the timezone come from ``settings.schedules`` (``FRAUD_SCHEDULES__*``) and
are read when the definitions load, so a change takes effect on the next code reload.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dagster import DefaultScheduleStatus, ScheduleDefinition
from dagster._utils.schedules import is_valid_cron_string

from fraud_assets.jobs import drift_monitoring_job, fairness_audit_job, ingestion_job
from fraud_assets.settings import FraudSettings, get_settings

INGESTION_SCHEDULE = "daily_ingestion_schedule"
DRIFT_MONITORING_SCHEDULE = "drift_monitoring_schedule"
FAIRNESS_AUDIT_SCHEDULE = "weekly_fairness_audit_schedule"


def build_schedules(settings: FraudSettings) -> list[ScheduleDefinition]:
    """The three schedules with the cron strings and timezone in ``settings``."""
    config = settings.schedules
    try:
        ZoneInfo(config.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"FRAUD_SCHEDULES__TIMEZONE={config.timezone!r} is not an IANA timezone "
            "such as 'America/Los_Angeles'"
        ) from None
    specs = [
        (
            INGESTION_SCHEDULE,
            ingestion_job,
            "ingestion_cron",
            "Every night, land each claim file in the landing folder that the landed_files "
            "ledger does not hold yet (a configured FRAUD_SOURCE_PATH instead, once; "
            "synthetic claims in dev).",
        ),
        (
            DRIFT_MONITORING_SCHEDULE,
            drift_monitoring_job,
            "drift_monitoring_cron",
            "Score the latest claims with the champion and measure PSI drift.",
        ),
        (
            FAIRNESS_AUDIT_SCHEDULE,
            fairness_audit_job,
            "fairness_audit_cron",
            "Audit the champion's fairness on its labelled production decisions (HTML and PDF).",
        ),
    ]
    # Running in staging/prod when Dagster is the orchestrator of record (FRAUD_SCHEDULES__START).
    status = (
        DefaultScheduleStatus.RUNNING
        if settings.automation_running
        else DefaultScheduleStatus.STOPPED
    )
    schedules = []
    for name, job, field, description in specs:
        cron = getattr(config, field)
        if not is_valid_cron_string(cron):
            raise ValueError(
                f"FRAUD_SCHEDULES__{field.upper()}={cron!r} is not a valid cron string "
                "(five fields: minute hour day-of-month month day-of-week)"
            )
        schedules.append(
            ScheduleDefinition(
                name=name,
                job=job,
                cron_schedule=cron,
                execution_timezone=config.timezone,
                description=description,
                tags={"fraud_assets/trigger": "schedule"},
                default_status=status,
            )
        )
    return schedules


SCHEDULES = build_schedules(get_settings())

__all__ = [
    "DRIFT_MONITORING_SCHEDULE",
    "FAIRNESS_AUDIT_SCHEDULE",
    "INGESTION_SCHEDULE",
    "SCHEDULES",
    "build_schedules",
]
