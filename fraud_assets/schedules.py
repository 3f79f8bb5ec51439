"""Schedules: daily ingestion, drift monitoring every six hours, a weekly fairness audit.

Cron strings and the timezone come from ``settings.schedules`` (``FRAUD_SCHEDULES__*``) and
are read when the definitions load, so a change takes effect on the next code reload.

The daily ingestion is a sweep behind the new-claims sensor: where it would land the
landing folder's new files (staging, prod), a tick whose every claim file already has a
successful sensor run skips, instead of launching two steps that find nothing to land.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dagster import (
    DagsterInstance,
    DagsterRunStatus,
    DefaultScheduleStatus,
    RunRequest,
    RunsFilter,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SkipReason,
    schedule,
)
from dagster._utils.schedules import is_valid_cron_string

from fraud_assets import keys
from fraud_assets.claims.landing import LandedFile, is_claim_file, landing_location
from fraud_assets.jobs import drift_monitoring_job, fairness_audit_job, ingestion_job
from fraud_assets.resources.workspace import DatabricksWorkspace
from fraud_assets.sensors.new_claims import FILE_VERSION_TAG, list_landing
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
        if name == INGESTION_SCHEDULE:
            schedules.append(_ingestion_sweep(cron, config.timezone, description, status))
            continue
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


def _ingestion_sweep(
    cron: str, timezone: str, description: str, status: DefaultScheduleStatus
) -> ScheduleDefinition:
    @schedule(
        name=INGESTION_SCHEDULE,
        job=ingestion_job,
        cron_schedule=cron,
        execution_timezone=timezone,
        description=description,
        default_status=status,
    )
    def daily_ingestion_schedule(
        context: ScheduleEvaluationContext, databricks: DatabricksWorkspace
    ) -> RunRequest | SkipReason:
        settings = get_settings()
        tags = {"fraud_assets/trigger": "schedule"}
        if settings.source_path or settings.synthetic_claims_allowed:
            return RunRequest(tags=tags)  # a configured source, or synthetic claims (dev)
        listing = list_landing(settings, lambda s: databricks.workspace_client(s.databricks))
        claim_files = [f for f in listing or [] if is_claim_file(f.name)]
        untaken = _first_untaken(context.instance, claim_files)
        if claim_files and untaken is None:
            return SkipReason(
                f"every claim file in {landing_location(settings)} ({len(claim_files)}) was "
                "already ingested by a successful new_claims_sensor run"
            )
        return RunRequest(tags=tags)

    return daily_ingestion_schedule


def _first_untaken(instance: DagsterInstance, files: list[LandedFile]) -> LandedFile | None:
    """The first file version no successful ingestion run took, newest first (a new file is
    the likeliest to be untaken, so most ticks ask once)."""
    for landed in sorted(files, key=lambda f: f.modified_ms, reverse=True):
        taken = instance.get_runs(
            filters=RunsFilter(
                job_name=keys.INGESTION_JOB,
                statuses=[DagsterRunStatus.SUCCESS],
                tags={FILE_VERSION_TAG: landed.run_key},
            ),
            limit=1,
        )
        if not taken:
            return landed
    return None


SCHEDULES = build_schedules(get_settings())

__all__ = [
    "DRIFT_MONITORING_SCHEDULE",
    "FAIRNESS_AUDIT_SCHEDULE",
    "INGESTION_SCHEDULE",
    "SCHEDULES",
    "build_schedules",
]
