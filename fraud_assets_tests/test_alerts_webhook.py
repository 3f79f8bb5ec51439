"""Alerts reach a real HTTP receiver on loopback, retries are bounded, secrets stay hidden."""

from __future__ import annotations

import logging
import socket
from typing import Any

import pytest
from pydantic import SecretStr

from fraud_assets.alerts import (
    AlertDeliveryError,
    LogSink,
    WebhookSink,
    check_failure_alert,
    deliver,
    run_failure_alert,
)
from fraud_assets_tests.alerts_support import SECRET_PATH, WebhookReceiver


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _fairness_alert() -> Any:
    return check_failure_alert(
        asset_key="fairness_report",
        check_name="disparate_impact_ratio",
        severity="ERROR",
        metadata={"disparate_impact_ratio": 0.62, "threshold": 0.8, "worst_group": "F"},
        run_id="0f1e2d3c-aaaa-bbbb-cccc-123456789abc",
        base_url="http://dagster.example:3000/",
        job_name="retraining_job",
        description="patient_gender group F is flagged at 0.62 of the rate of M",
    )


def test_webhook_alert_arrives_with_asset_check_value_and_run_link(
    webhook_receiver: WebhookReceiver,
) -> None:
    delivered = deliver(_fairness_alert(), WebhookSink(SecretStr(webhook_receiver.url)))

    assert delivered is True
    assert webhook_receiver.paths == [SECRET_PATH]
    (body,) = webhook_receiver.received
    assert body["kind"] == "check_failed"
    assert body["asset"] == "fairness_report"
    assert body["check"] == "disparate_impact_ratio"
    assert body["value"] == 0.62
    assert body["threshold"] == 0.8
    assert (
        body["run_url"] == "http://dagster.example:3000/runs/0f1e2d3c-aaaa-bbbb-cccc-123456789abc"
    )
    assert body["details"]["worst_group"] == "F"
    assert "fairness_report.disparate_impact_ratio" in body["text"]
    assert "0.62" in body["text"] and body["run_url"] in body["text"]


def test_server_error_is_retried_then_delivered_and_logged(
    webhook_receiver: WebhookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    webhook_receiver.statuses = [500, 503]
    caplog.set_level(logging.DEBUG)

    delivered = deliver(
        _fairness_alert(), WebhookSink(webhook_receiver.url), max_tries=3, backoff_seconds=0.01
    )

    assert delivered is True
    assert webhook_receiver.attempts == 3
    assert len(webhook_receiver.received) == 1
    retries = [r for r in caplog.records if "retrying" in r.getMessage()]
    assert [r.levelno for r in retries] == [logging.WARNING, logging.WARNING]
    assert "HTTP 500" in retries[0].getMessage() and "HTTP 503" in retries[1].getMessage()
    assert SECRET_PATH not in caplog.text
    assert "s3cr3t" not in caplog.text


def test_retries_are_bounded_and_the_alert_is_kept_in_the_log(
    webhook_receiver: WebhookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    webhook_receiver.statuses = [500] * 10
    caplog.set_level(logging.DEBUG)

    delivered = deliver(
        _fairness_alert(), WebhookSink(webhook_receiver.url), max_tries=3, backoff_seconds=0.01
    )

    assert delivered is False
    assert webhook_receiver.attempts == 3
    final = caplog.records[-1]
    assert final.levelno == logging.ERROR
    assert "NOT delivered to webhook" in final.getMessage()
    # The undelivered alert's content is on record, so nothing is lost silently.
    assert "disparate_impact_ratio failed: value 0.62" in final.getMessage()
    assert "s3cr3t" not in caplog.text


def test_client_error_is_not_retried(
    webhook_receiver: WebhookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    webhook_receiver.statuses = [404]

    assert deliver(_fairness_alert(), WebhookSink(webhook_receiver.url)) is False
    assert webhook_receiver.attempts == 1
    assert "HTTP 404" in caplog.text


def test_connection_refused_is_retried_logged_and_never_raises(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"http://127.0.0.1:{_closed_port()}{SECRET_PATH}"
    caplog.set_level(logging.DEBUG)

    delivered = deliver(
        _fairness_alert(), WebhookSink(SecretStr(url)), max_tries=2, backoff_seconds=0.01
    )

    assert delivered is False
    assert "ConnectionRefusedError" in caplog.text
    assert "s3cr3t" not in caplog.text


def test_sink_error_and_repr_never_show_the_url() -> None:
    url = f"http://127.0.0.1:{_closed_port()}{SECRET_PATH}?token=abc123"
    sink = WebhookSink(url, timeout_seconds=2)

    with pytest.raises(AlertDeliveryError) as raised:
        sink.send(_fairness_alert())

    assert raised.value.retriable is True
    for shown in (str(raised.value), repr(raised.value), repr(sink)):
        assert "s3cr3t" not in shown and "abc123" not in shown
    with pytest.raises(ValueError, match="http") as bad:
        WebhookSink("ftp://s3cr3t@host/x")
    assert "s3cr3t" not in str(bad.value)


def test_run_failure_alert_names_job_steps_and_link(webhook_receiver: WebhookReceiver) -> None:
    alert = run_failure_alert(
        job_name="ingestion_job",
        run_id="abcdef12-0000-0000-0000-000000000000",
        message="Execution of run for \"ingestion_job\" failed. Steps failed: ['raw_claims'].",
        base_url="http://localhost:3000",
        failed_steps=["raw_claims"],
    )

    assert deliver(alert, WebhookSink(webhook_receiver.url)) is True
    (body,) = webhook_receiver.received
    assert body["kind"] == "run_failed"
    assert body["job"] == "ingestion_job"
    assert body["details"] == {"failed_steps": "raw_claims"}
    assert body["run_url"] == "http://localhost:3000/runs/abcdef12-0000-0000-0000-000000000000"


def test_log_sink_writes_error_alerts_at_error_level(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)

    assert deliver(_fairness_alert(), LogSink()) is True

    (record,) = [r for r in caplog.records if "ALERT" in r.getMessage()]
    assert record.levelno == logging.ERROR
    assert "fairness_report.disparate_impact_ratio failed: value 0.62 (threshold 0.8)" in (
        record.getMessage()
    )
    assert "/runs/0f1e2d3c-aaaa-bbbb-cccc-123456789abc" in record.getMessage()


def test_non_finite_values_still_make_valid_json(webhook_receiver: WebhookReceiver) -> None:
    alert = check_failure_alert(
        asset_key="psi_report",
        check_name="score_drift",
        severity="ERROR",
        metadata={"max_psi": float("inf")},
        run_id="r1",
        base_url="http://localhost:3000",
    )

    assert deliver(alert, WebhookSink(webhook_receiver.url)) is True
    assert webhook_receiver.received[0]["value"] == "inf"
