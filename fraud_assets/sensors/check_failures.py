"""Sensor: every failed ERROR-severity asset check sends one alert.

Open-source Dagster has no built-in alert for a failed check. This sensor reads each
check's execution history (``get_asset_check_execution_history``) rather than the global
event log: ``get_event_records(after_cursor=int)`` raises on the SQLite storage that
``dagster dev`` uses. Delivery goes through ``AlertResource``; a delivery failure is logged
with the alert's text and never fails the tick. The cursor is saved when the tick ends, so
an alert is sent once per evaluation unless the tick itself crashes mid-way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dagster import (
    AssetCheckKey,
    AssetCheckSeverity,
    DagsterInstance,
    DefaultSensorStatus,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)
from dagster._core.storage.asset_check_execution_record import (
    AssetCheckExecutionRecord,
    AssetCheckExecutionRecordStatus,
)

from fraud_assets.alerts import Alert, check_failure_alert
from fraud_assets.resources.alerts import AlertResource
from fraud_assets.sensors.check_cursor import (
    CheckCursor,
    advance,
    dump_cursors,
    load_cursors,
)

FAILED_CHECK_SENSOR = "failed_check_alert_sensor"
_PAGE = 50
# A check that ran this many times between two ticks is reported from its newest runs only.
_MAX_RECORDS_PER_TICK = 500


def _new_records(
    instance: DagsterInstance, key: AssetCheckKey, cursor: CheckCursor | None
) -> list[AssetCheckExecutionRecord]:
    """Rows newer than the cursor's watermark, oldest first. A check seen for the first time
    contributes only its latest row: turning the sensor on reports today's state, not history."""
    storage = instance.event_log_storage
    if cursor is None:
        return list(storage.get_asset_check_execution_history(key, limit=1))
    rows: list[AssetCheckExecutionRecord] = []
    before: int | None = None
    while len(rows) < _MAX_RECORDS_PER_TICK:
        page = storage.get_asset_check_execution_history(key, limit=_PAGE, cursor=before)
        rows.extend(r for r in page if r.id > cursor.watermark)
        if len(page) < _PAGE or page[-1].id <= cursor.watermark:
            break
        before = page[-1].id
    return sorted(rows, key=lambda r: r.id)


def _plain_metadata(metadata: Any) -> dict[str, Any]:
    return {name: getattr(value, "value", value) for name, value in metadata.items()}


def failed_check_alerts(
    instance: DagsterInstance,
    check_keys: Sequence[AssetCheckKey],
    cursors: dict[str, CheckCursor],
    *,
    base_url: str,
) -> tuple[list[Alert], dict[str, CheckCursor]]:
    """Alerts for ERROR checks that failed since the cursors, and the advanced cursors."""
    alerts: list[Alert] = []
    updated = dict(cursors)
    run_cache: dict[str, Any] = {}

    def run_of(run_id: str) -> Any:
        if run_id not in run_cache:
            run_cache[run_id] = instance.get_run_by_id(run_id)
        return run_cache[run_id]

    for key in check_keys:
        name = key.to_user_string()
        records = _new_records(instance, key, cursors.get(name))
        cursor = cursors.get(name) or CheckCursor(records[0].id - 1 if records else 0)
        finished: list[int] = []
        in_progress: list[int] = []
        for record in records:
            if cursor.handled(record.id):
                continue
            if record.status == AssetCheckExecutionRecordStatus.PLANNED:
                run = run_of(record.run_id)
                # A run that ended without evaluating the check never will; the run-failure
                # sensor reports that case.
                (finished if run is None or run.is_finished else in_progress).append(record.id)
                continue
            finished.append(record.id)
            evaluation = record.event.asset_check_evaluation if record.event else None
            if (
                record.status != AssetCheckExecutionRecordStatus.FAILED
                or evaluation is None
                or evaluation.severity != AssetCheckSeverity.ERROR
            ):
                continue
            run = run_of(record.run_id)
            alerts.append(
                check_failure_alert(
                    asset_key=key.asset_key.to_user_string(),
                    check_name=key.name,
                    severity=evaluation.severity.value,
                    metadata=_plain_metadata(evaluation.metadata),
                    run_id=record.run_id,
                    base_url=base_url,
                    job_name=run.job_name if run is not None else None,
                    description=evaluation.description,
                )
            )
        updated[name] = advance(cursor, finished, in_progress)
    return alerts, updated


@sensor(
    name=FAILED_CHECK_SENSOR,
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description=(
        "Send an alert (FRAUD_ALERT_SINK: log, webhook or slack) for every asset check that "
        "fails with ERROR severity, once per evaluation. WARN failures are not alerted."
    ),
)
def failed_check_alert_sensor(
    context: SensorEvaluationContext, alerts: AlertResource
) -> SensorResult:
    if context.repository_def is None:
        raise ValueError(
            f"{FAILED_CHECK_SENSOR} needs the repository to list its asset checks; "
            "pass definitions= to build_sensor_context"
        )
    check_keys = sorted(context.repository_def.asset_graph.asset_check_keys, key=str)
    found, cursors = failed_check_alerts(
        context.instance,
        check_keys,
        load_cursors(context.cursor),
        base_url=alerts.dagster_base_url,
    )
    delivered = sum(alerts.send(alert, logger=context.log) for alert in found)
    if found:
        reason = (
            f"{len(found)} failed ERROR check(s) alerted, {delivered} delivered to "
            f"{alerts.sink}: " + ", ".join(f"{a.asset_key}.{a.check_name}" for a in found)
        )
    else:
        reason = f"no new failed ERROR checks among {len(check_keys)} checks"
    return SensorResult(skip_reason=reason, cursor=dump_cursors(cursors))
