"""Schedules fire when the design says, in the configured timezone, across DST changes."""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from dagster import DefaultScheduleStatus, ScheduleDefinition
from dagster._utils.schedules import cron_string_iterator

from fraud_assets import keys
from fraud_assets.schedules import (
    DRIFT_MONITORING_SCHEDULE,
    FAIRNESS_AUDIT_SCHEDULE,
    INGESTION_SCHEDULE,
    build_schedules,
)
from fraud_assets.settings import get_settings


def _by_name(schedules: list[ScheduleDefinition]) -> dict[str, ScheduleDefinition]:
    return {s.name: s for s in schedules}


def _next_ticks(schedule: ScheduleDefinition, after: datetime, n: int) -> list[datetime]:
    # The same iterator the Dagster daemon uses to decide when a schedule fires.
    ticks = cron_string_iterator(
        after.timestamp(), str(schedule.cron_schedule), schedule.execution_timezone
    )
    return [next(ticks).astimezone(UTC) for _ in range(n)]


def test_default_schedules_target_the_design_jobs(fraud_home: Path) -> None:
    schedules = _by_name(build_schedules(get_settings()))

    assert {name: s.job_name for name, s in schedules.items()} == {
        INGESTION_SCHEDULE: keys.INGESTION_JOB,
        DRIFT_MONITORING_SCHEDULE: keys.DRIFT_MONITORING_JOB,
        FAIRNESS_AUDIT_SCHEDULE: keys.FAIRNESS_AUDIT_JOB,
    }
    assert {s.execution_timezone for s in schedules.values()} == {"America/Los_Angeles"}
    assert {s.default_status for s in schedules.values()} == {DefaultScheduleStatus.STOPPED}


def test_daily_ingestion_runs_at_two_in_los_angeles_in_winter_and_summer(
    fraud_home: Path,
) -> None:
    ingestion = _by_name(build_schedules(get_settings()))[INGESTION_SCHEDULE]

    winter = _next_ticks(ingestion, datetime(2025, 1, 14, 12, 0, tzinfo=UTC), 2)
    summer = _next_ticks(ingestion, datetime(2025, 7, 14, 12, 0, tzinfo=UTC), 1)

    # 02:00 PST is 10:00 UTC; 02:00 PDT is 09:00 UTC.
    assert winter == [
        datetime(2025, 1, 15, 10, 0, tzinfo=UTC),
        datetime(2025, 1, 16, 10, 0, tzinfo=UTC),
    ]
    assert summer == [datetime(2025, 7, 15, 9, 0, tzinfo=UTC)]


def test_drift_monitoring_every_six_hours_and_fairness_audit_on_sunday(fraud_home: Path) -> None:
    schedules = _by_name(build_schedules(get_settings()))
    start = datetime(2025, 1, 15, 9, 30, tzinfo=UTC)  # a Wednesday, 01:30 in Los Angeles

    drift = _next_ticks(schedules[DRIFT_MONITORING_SCHEDULE], start, 4)
    audit = _next_ticks(schedules[FAIRNESS_AUDIT_SCHEDULE], start, 2)

    assert [(b - a).total_seconds() for a, b in pairwise(drift)] == [6 * 3600] * 3
    assert drift[0] == datetime(2025, 1, 15, 14, 0, tzinfo=UTC)  # 06:00 PST
    local = [t.astimezone(ZoneInfo("America/Los_Angeles")) for t in audit]
    assert [(t.weekday(), t.hour) for t in local] == [(6, 6), (6, 6)]  # Sundays, 06:00
    assert (audit[1] - audit[0]).days == 7


def test_cron_and_timezone_come_from_settings(
    fraud_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FRAUD_SCHEDULES__TIMEZONE", "Europe/Berlin")
    monkeypatch.setenv("FRAUD_SCHEDULES__INGESTION_CRON", "30 4 * * 1-5")

    ingestion = _by_name(build_schedules(get_settings()))[INGESTION_SCHEDULE]

    assert ingestion.cron_schedule == "30 4 * * 1-5"
    assert ingestion.execution_timezone == "Europe/Berlin"
    # Friday 2025-01-17 04:30 CET, then Monday 2025-01-20 (weekdays only).
    assert _next_ticks(ingestion, datetime(2025, 1, 17, 0, 0, tzinfo=UTC), 2) == [
        datetime(2025, 1, 17, 3, 30, tzinfo=UTC),
        datetime(2025, 1, 20, 3, 30, tzinfo=UTC),
    ]


def test_a_bad_cron_or_timezone_names_the_setting(
    fraud_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FRAUD_SCHEDULES__DRIFT_MONITORING_CRON", "every six hours")
    with pytest.raises(
        ValueError, match="FRAUD_SCHEDULES__DRIFT_MONITORING_CRON='every six hours'"
    ):
        build_schedules(get_settings())

    monkeypatch.delenv("FRAUD_SCHEDULES__DRIFT_MONITORING_CRON")
    monkeypatch.setenv("FRAUD_SCHEDULES__TIMEZONE", "Pacific/Nowhere")
    with pytest.raises(ValueError, match="FRAUD_SCHEDULES__TIMEZONE='Pacific/Nowhere'"):
        build_schedules(get_settings())


@pytest.mark.parametrize(
    ("target", "start", "running"),
    [
        ("dev", None, False),
        ("staging", None, True),
        ("prod", None, True),
        ("prod", "stopped", False),
        ("dev", "running", True),
    ],
)
def test_automation_runs_by_itself_only_where_dagster_orchestrates_a_deployed_target(
    fraud_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    target: str,
    start: str | None,
    running: bool,
) -> None:
    from dagster import DefaultSensorStatus

    from fraud_assets.sensors import build_new_claims_sensor
    from fraud_assets.sensors._automation import launching_sensor_status

    monkeypatch.setenv("FRAUD_TARGET", target)
    if start is not None:
        monkeypatch.setenv("FRAUD_SCHEDULES__START", start)
    settings = get_settings()

    expected = DefaultScheduleStatus.RUNNING if running else DefaultScheduleStatus.STOPPED
    assert {s.default_status for s in build_schedules(settings)} == {expected}
    sensor_status = DefaultSensorStatus.RUNNING if running else DefaultSensorStatus.STOPPED
    assert launching_sensor_status(settings) == sensor_status
    assert build_new_claims_sensor(settings=settings).default_status == sensor_status


def test_a_target_the_bundle_orchestrates_keeps_dagster_automation_stopped(
    fraud_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the bundle's own schedules run (orchestrator=databricks), Dagster's stay off."""
    from fraud_assets import settings as settings_module

    real = settings_module.bundle_variables
    monkeypatch.setattr(
        settings_module,
        "bundle_variables",
        lambda target: {**real(target), "orchestrator": "databricks"},
    )
    monkeypatch.setenv("FRAUD_TARGET", "prod")

    assert not get_settings().automation_running
