"""The failed-check alert sensor against a real DagsterInstance and a loopback webhook."""

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    Config,
    DagsterInstance,
    Definitions,
    MaterializeResult,
    SensorResult,
    asset,
    build_sensor_context,
    materialize,
)

from fraud_assets import keys
from fraud_assets.checks import CHECK_DISPARATE_IMPACT, CHECK_MIN_GROUP_SIZE, CHECK_SCORE_DRIFT
from fraud_assets.resources.alerts import AlertResource
from fraud_assets.sensors.check_cursor import CheckCursor, advance
from fraud_assets.sensors.check_failures import failed_check_alert_sensor
from fraud_assets_tests.alerts_support import WebhookReceiver


class FairnessConfig(Config):
    disparate_impact: float = 0.95
    min_group: int = 500


@asset(
    key=keys.FAIRNESS_REPORT,
    check_specs=[
        AssetCheckSpec(CHECK_DISPARATE_IMPACT, asset=keys.FAIRNESS_REPORT),
        AssetCheckSpec(CHECK_MIN_GROUP_SIZE, asset=keys.FAIRNESS_REPORT),
    ],
)
def fairness_report(config: FairnessConfig) -> MaterializeResult:
    """Stand-in for the governance asset: a disparate impact ERROR check and a WARN one."""
    return MaterializeResult(
        check_results=[
            AssetCheckResult(
                check_name=CHECK_DISPARATE_IMPACT,
                passed=config.disparate_impact >= 0.8,
                severity=AssetCheckSeverity.ERROR,
                metadata={"disparate_impact_ratio": config.disparate_impact, "threshold": 0.8},
                description="worst group patient_gender=F",
            ),
            AssetCheckResult(
                check_name=CHECK_MIN_GROUP_SIZE,
                passed=config.min_group >= 30,
                severity=AssetCheckSeverity.WARN,
                metadata={"value": config.min_group, "threshold": 30},
            ),
        ]
    )


GATE = threading.Event()


@asset(key=keys.PSI_REPORT, check_specs=[AssetCheckSpec(CHECK_SCORE_DRIFT, asset=keys.PSI_REPORT)])
def psi_report() -> MaterializeResult:
    """A slow asset: its check stays PLANNED until the test opens the gate."""
    assert GATE.wait(timeout=60), "the test never opened the gate"
    return MaterializeResult(
        check_results=[
            AssetCheckResult(
                check_name=CHECK_SCORE_DRIFT,
                passed=False,
                severity=AssetCheckSeverity.ERROR,
                metadata={"max_psi": 0.31},
            )
        ]
    )


DEFS = Definitions(assets=[fairness_report, psi_report])


@pytest.fixture
def alerts(webhook_receiver: WebhookReceiver) -> AlertResource:
    return AlertResource(
        sink="webhook",
        webhook_url=webhook_receiver.url,
        dagster_base_url="http://dagster.test:3000",
        backoff_seconds=0.01,
    )


def _fairness_run(instance: DagsterInstance, di: float, min_group: int = 500) -> str:
    result = materialize(
        [fairness_report],
        instance=instance,
        run_config={
            "ops": {"fairness_report": {"config": {"disparate_impact": di, "min_group": min_group}}}
        },
    )
    return result.run_id


def _evaluate(instance: DagsterInstance, alerts: AlertResource, cursor: str | None) -> SensorResult:
    with build_sensor_context(
        instance=instance, cursor=cursor, definitions=DEFS, resources={"alerts": alerts}
    ) as context:
        result = failed_check_alert_sensor(context)
    assert isinstance(result, SensorResult)
    return result


def test_a_failed_error_check_alerts_once_with_asset_check_value_and_run_link(
    dagster_instance: DagsterInstance, alerts: AlertResource, webhook_receiver: WebhookReceiver
) -> None:
    run_id = _fairness_run(dagster_instance, di=0.62)

    first = _evaluate(dagster_instance, alerts, None)
    second = _evaluate(dagster_instance, alerts, first.cursor)

    (body,) = webhook_receiver.received
    assert body["asset"] == "fairness_report"
    assert body["check"] == CHECK_DISPARATE_IMPACT
    assert body["value"] == 0.62 and body["threshold"] == 0.8
    assert body["run_url"] == f"http://dagster.test:3000/runs/{run_id}"
    assert body["job"] == "__ephemeral_asset_job__"
    assert body["description"] == "worst group patient_gender=F"
    assert first.skip_reason is not None and "1 failed ERROR check(s) alerted, 1 delivered" in (
        first.skip_reason.skip_message or ""
    )
    assert second.skip_reason is not None and "no new failed ERROR checks" in (
        second.skip_reason.skip_message or ""
    )


def test_warn_failures_and_passes_never_alert(
    dagster_instance: DagsterInstance, alerts: AlertResource, webhook_receiver: WebhookReceiver
) -> None:
    _fairness_run(dagster_instance, di=0.95, min_group=3)  # WARN check fails, ERROR passes

    _evaluate(dagster_instance, alerts, None)

    assert webhook_receiver.attempts == 0


def test_each_new_failure_alerts_once_and_old_ones_never_again(
    dagster_instance: DagsterInstance, alerts: AlertResource, webhook_receiver: WebhookReceiver
) -> None:
    first_run = _fairness_run(dagster_instance, di=0.5)
    cursor = _evaluate(dagster_instance, alerts, None).cursor
    _fairness_run(dagster_instance, di=0.9)
    second_fail = _fairness_run(dagster_instance, di=0.7)
    third_fail = _fairness_run(dagster_instance, di=0.6)

    cursor = _evaluate(dagster_instance, alerts, cursor).cursor
    _evaluate(dagster_instance, alerts, cursor)

    assert [(b["value"], b["run_id"]) for b in webhook_receiver.received] == [
        (0.5, first_run),
        (0.7, second_fail),
        (0.6, third_fail),
    ]


def test_first_evaluation_reports_only_the_latest_result_per_check(
    dagster_instance: DagsterInstance, alerts: AlertResource, webhook_receiver: WebhookReceiver
) -> None:
    _fairness_run(dagster_instance, di=0.5)
    latest = _fairness_run(dagster_instance, di=0.55)

    _evaluate(dagster_instance, alerts, None)

    assert [b["run_id"] for b in webhook_receiver.received] == [latest]


def test_a_check_in_progress_is_alerted_when_it_finishes_even_after_newer_ones(
    dagster_instance: DagsterInstance, alerts: AlertResource, webhook_receiver: WebhookReceiver
) -> None:
    GATE.clear()
    cursor = _evaluate(dagster_instance, alerts, None).cursor
    slow: dict[str, Any] = {}
    thread = threading.Thread(
        target=lambda: slow.update(result=materialize([psi_report], instance=dagster_instance))
    )
    thread.start()
    try:
        _wait_for_planned(dagster_instance)
        cursor = _evaluate(dagster_instance, alerts, cursor).cursor
        assert webhook_receiver.received == []
        fast_run = _fairness_run(dagster_instance, di=0.4)
        cursor = _evaluate(dagster_instance, alerts, cursor).cursor
        assert [b["run_id"] for b in webhook_receiver.received] == [fast_run]
    finally:
        GATE.set()
        thread.join(timeout=60)

    cursor = _evaluate(dagster_instance, alerts, cursor).cursor
    _evaluate(dagster_instance, alerts, cursor)

    assert [b["check"] for b in webhook_receiver.received] == [
        CHECK_DISPARATE_IMPACT,
        CHECK_SCORE_DRIFT,
    ]
    assert webhook_receiver.received[1]["value"] == 0.31
    assert webhook_receiver.received[1]["run_id"] == slow["result"].run_id


def test_delivery_failure_never_fails_the_tick(
    dagster_instance: DagsterInstance,
    webhook_receiver: WebhookReceiver,
    capfd: pytest.CaptureFixture[str],
) -> None:
    webhook_receiver.statuses = [500] * 10
    alerts = AlertResource(sink="webhook", webhook_url=webhook_receiver.url, backoff_seconds=0.01)
    _fairness_run(dagster_instance, di=0.5)

    result = _evaluate(dagster_instance, alerts, None)

    assert webhook_receiver.attempts == 3
    assert result.skip_reason is not None
    assert "1 failed ERROR check(s) alerted, 0 delivered" in (result.skip_reason.skip_message or "")
    # The sensor logs through context.log: the undelivered alert's text is in the tick log.
    assert "disparate_impact_ratio failed: value 0.5" in capfd.readouterr().err


def test_cursor_watermark_waits_for_the_oldest_open_row() -> None:
    cursor = CheckCursor(watermark=10)

    cursor = advance(cursor, finished=[12, 13], in_progress=[11])
    assert cursor == CheckCursor(10, frozenset({12, 13}))
    assert not cursor.handled(11) and cursor.handled(12)

    cursor = advance(cursor, finished=[11], in_progress=[])
    assert cursor == CheckCursor(13, frozenset())


def _wait_for_planned(instance: DagsterInstance, timeout: float = 30.0) -> None:
    from dagster import AssetCheckKey, AssetKey
    from dagster._core.storage.asset_check_execution_record import (
        AssetCheckExecutionRecordStatus,
    )

    key = AssetCheckKey(AssetKey(keys.PSI_REPORT), CHECK_SCORE_DRIFT)
    done = threading.Event()
    for _ in range(int(timeout / 0.1)):
        history = instance.event_log_storage.get_asset_check_execution_history(key, limit=1)
        if history and history[0].status == AssetCheckExecutionRecordStatus.PLANNED:
            return
        done.wait(0.1)
    raise AssertionError("the slow run never planned its check")


@pytest.fixture(autouse=True)
def _open_gate_after_test() -> Iterator[None]:
    yield
    GATE.set()
