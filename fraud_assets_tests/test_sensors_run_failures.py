"""The run-failure alert sensor on a real failed run."""

import pytest
from dagster import (
    DagsterEventType,
    DagsterInstance,
    asset,
    build_run_status_sensor_context,
    materialize,
)

from fraud_assets.resources.alerts import AlertResource
from fraud_assets.sensors.run_failures import RUN_FAILURE_SENSOR, run_failure_alert_sensor
from fraud_assets_tests.alerts_support import WebhookReceiver


@asset
def raw_claims() -> None:
    """Fails the way a bad landing file would."""
    raise ValueError("landing file has no claim_id column")


def test_failed_run_alert_names_job_step_and_links_the_run(
    dagster_instance: DagsterInstance, webhook_receiver: WebhookReceiver
) -> None:
    result = materialize([raw_claims], instance=dagster_instance, raise_on_error=False)
    assert not result.success
    run = dagster_instance.get_run_by_id(result.run_id)
    assert run is not None
    failure = dagster_instance.get_records_for_run(
        result.run_id, of_type=DagsterEventType.RUN_FAILURE
    ).records[0]
    alerts = AlertResource(
        sink="webhook", webhook_url=webhook_receiver.url, dagster_base_url="http://dagster.test"
    )
    context = build_run_status_sensor_context(
        sensor_name=RUN_FAILURE_SENSOR,
        dagster_event=failure.event_log_entry.dagster_event,  # type: ignore[arg-type]
        dagster_instance=dagster_instance,
        dagster_run=run,
        resources={"alerts": alerts},
    ).for_run_failure()

    # AlertResource nests dagster-slack's resource, so its context is entered like a daemon's.
    with context:
        run_failure_alert_sensor(context)

    (body,) = webhook_receiver.received
    assert body["kind"] == "run_failed"
    assert body["job"] == "__ephemeral_asset_job__"
    assert body["details"] == {"failed_steps": "raw_claims"}
    assert body["run_url"] == f"http://dagster.test/runs/{result.run_id}"
    assert "raw_claims" in body["description"]


def test_failed_run_alert_with_undeliverable_sink_does_not_raise(
    dagster_instance: DagsterInstance, capfd: pytest.CaptureFixture[str]
) -> None:
    result = materialize([raw_claims], instance=dagster_instance, raise_on_error=False)
    run = dagster_instance.get_run_by_id(result.run_id)
    assert run is not None
    failure = dagster_instance.get_records_for_run(
        result.run_id, of_type=DagsterEventType.RUN_FAILURE
    ).records[0]
    context = build_run_status_sensor_context(
        sensor_name=RUN_FAILURE_SENSOR,
        dagster_event=failure.event_log_entry.dagster_event,  # type: ignore[arg-type]
        dagster_instance=dagster_instance,
        dagster_run=run,
        resources={"alerts": AlertResource(sink="webhook")},  # URL unset: falls back to log
    ).for_run_failure()

    # AlertResource nests dagster-slack's resource, so its context is entered like a daemon's.
    with context:
        run_failure_alert_sensor(context)

    err = capfd.readouterr().err
    assert "FRAUD_ALERT_WEBHOOK_URL is not set" in err
    assert f"Run {result.run_id[:8]} of __ephemeral_asset_job__ failed" in err
