"""The Slack sink through a fake slack_sdk client, and the resource that picks the sink."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from dagster_slack import SlackResource
from pydantic import PrivateAttr
from slack_sdk.errors import SlackApiError
from slack_sdk.web import SlackResponse

from fraud_assets.alerts import SlackSink, check_failure_alert, deliver
from fraud_assets.resources.alerts import AlertResource, default_alerts
from fraud_assets_tests.alerts_support import SECRET_PATH, WebhookReceiver

TOKEN = "xoxb-111-222-s3cr3tt0k3n"


def _slack_error(status: int, error: str) -> SlackApiError:
    response = SlackResponse(
        client=None,
        http_verb="POST",
        api_url="https://slack.com/api/chat.postMessage",
        req_args={},
        data={"ok": False, "error": error},
        headers={},
        status_code=status,
    )
    return SlackApiError(f"The request to the Slack API failed. token={TOKEN}", response)


class FakeSlackClient:
    """Records chat_postMessage calls; raises the scripted errors first."""

    def __init__(self, errors: list[Exception] | None = None) -> None:
        self.errors = list(errors or [])
        self.posts: list[dict[str, Any]] = []

    def chat_postMessage(self, **kwargs: Any) -> dict[str, Any]:
        if self.errors:
            raise self.errors.pop(0)
        self.posts.append(kwargs)
        return {"ok": True}


class FakeSlackResource(SlackResource):
    """dagster-slack's resource with the client swapped for the fake."""

    _fake: FakeSlackClient = PrivateAttr(default_factory=FakeSlackClient)

    def get_client(self) -> Any:
        return self._fake


def _alert() -> Any:
    return check_failure_alert(
        asset_key="fairness_report",
        check_name="equal_opportunity_difference",
        severity="ERROR",
        metadata={"value": 0.23, "threshold": 0.1, "attribute": "patient_age_group"},
        run_id="1234abcd-0000-0000-0000-000000000000",
        base_url="http://localhost:3000",
    )


def test_slack_message_names_asset_check_value_and_links_the_run() -> None:
    client = FakeSlackClient()

    assert deliver(_alert(), SlackSink(client, channel="#fraud-alerts")) is True

    (post,) = client.posts
    assert post["channel"] == "#fraud-alerts"
    assert "fairness_report.equal_opportunity_difference failed: value 0.23" in post["text"]
    assert "(threshold 0.1)" in post["text"]
    assert "<http://localhost:3000/runs/1234abcd-0000-0000-0000-000000000000|" in post["text"]


def test_slack_rate_limit_is_retried_and_token_never_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = FakeSlackClient(errors=[_slack_error(429, "ratelimited")])
    caplog.set_level(logging.DEBUG)

    assert deliver(_alert(), SlackSink(client, channel="#c"), backoff_seconds=0.01) is True
    assert len(client.posts) == 1
    assert "ratelimited (HTTP 429)" in caplog.text
    assert TOKEN not in caplog.text


def test_slack_auth_error_is_permanent_and_logged_with_the_alert(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = FakeSlackClient(errors=[_slack_error(200, "invalid_auth")] * 3)

    assert deliver(_alert(), SlackSink(client, channel="#c"), backoff_seconds=0.01) is False
    assert len(client.errors) == 2, "an auth error must not be retried"
    assert "invalid_auth" in caplog.text
    assert "equal_opportunity_difference failed" in caplog.text
    assert TOKEN not in caplog.text


def test_resource_routes_to_slack_through_dagster_slack() -> None:
    slack = FakeSlackResource(token=TOKEN)
    resource = AlertResource(sink="slack", slack=slack, slack_channel="#claims-fraud")

    assert resource.send(_alert()) is True
    assert slack._fake.posts[0]["channel"] == "#claims-fraud"


def test_resource_routes_to_webhook(webhook_receiver: WebhookReceiver) -> None:
    resource = AlertResource(sink="webhook", webhook_url=webhook_receiver.url)

    assert resource.send(_alert()) is True
    assert webhook_receiver.paths == [SECRET_PATH]
    assert webhook_receiver.received[0]["check"] == "equal_opportunity_difference"


def test_unset_secret_falls_back_to_the_log(caplog: pytest.LogCaptureFixture) -> None:
    resource = AlertResource(sink="webhook")

    assert resource.send(_alert()) is False
    assert "FRAUD_ALERT_WEBHOOK_URL is not set" in caplog.text
    assert "ALERT [ERROR] Check fairness_report.equal_opportunity_difference failed" in (
        caplog.text
    )


def test_default_alerts_reads_settings_and_keeps_secrets_as_env_vars(
    fraud_home: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FRAUD_ALERT_SINK", "slack")
    monkeypatch.setenv("FRAUD_SLACK_CHANNEL", "#fraud-ops")
    monkeypatch.setenv("FRAUD_DAGSTER_BASE_URL", "https://dagster.example.com")
    monkeypatch.setenv("FRAUD_ALERT_WEBHOOK_URL", "https://hooks.example.com" + SECRET_PATH)
    monkeypatch.setenv("SLACK_BOT_TOKEN", TOKEN)

    resource = default_alerts()

    assert resource.sink == "slack"
    assert resource.slack_channel == "#fraud-ops"
    assert resource.run_url("r1") == "https://dagster.example.com/runs/r1"
    # Unresolved EnvVars: what the Dagster UI shows is the variable's name, not the secret.
    assert resource.webhook_url == "FRAUD_ALERT_WEBHOOK_URL"
    assert resource.slack is not None and resource.slack.token == "SLACK_BOT_TOKEN"


def test_unknown_sink_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown alert sink 'pager'"):
        AlertResource(sink="pager").send(_alert())


def test_retry_waits_double_from_the_configured_first_delay(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = FakeSlackClient(errors=[_slack_error(503, "service_unavailable")] * 2)

    assert deliver(_alert(), SlackSink(client, channel="#c"), backoff_seconds=0.05) is True

    retries = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert [m.rsplit("retrying in ", 1)[1] for m in retries] == ["0.05s", "0.10s"]
