"""The alert resource: sensors hand it an ``Alert``; it picks the sink chosen in settings."""

from __future__ import annotations

import logging
import os

from dagster import ConfigurableResource, EnvVar
from dagster_slack import SlackResource
from pydantic import Field

from fraud_assets.alerts import (
    Alert,
    AlertSink,
    LoggerLike,
    LogSink,
    SlackSink,
    WebhookSink,
    deliver,
    run_link,
)
from fraud_assets.settings import get_settings

log = logging.getLogger(__name__)

WEBHOOK_URL_ENV = "FRAUD_ALERT_WEBHOOK_URL"
SLACK_TOKEN_ENV = "SLACK_BOT_TOKEN"


class AlertResource(ConfigurableResource):
    """Delivers alerts to the log, a JSON webhook or Slack, with bounded retries."""

    sink: str = Field(default="log", description="log, webhook or slack (FRAUD_ALERT_SINK)")
    webhook_url: str | None = Field(
        default=None, description=f"Webhook URL; pass EnvVar({WEBHOOK_URL_ENV!r}), never a literal"
    )
    slack: SlackResource | None = Field(
        default=None, description=f"dagster-slack resource; token from EnvVar({SLACK_TOKEN_ENV!r})"
    )
    slack_channel: str = "#fraud-alerts"
    dagster_base_url: str = Field(
        default="http://localhost:3000", description="Dagster UI address used in run links"
    )
    max_tries: int = Field(default=3, ge=1, description="Delivery attempts per alert")
    backoff_seconds: float = Field(
        default=1.0, ge=0, description="First retry delay; doubles per retry"
    )
    timeout_seconds: float = Field(default=10.0, gt=0, description="Webhook request timeout")

    def run_url(self, run_id: str) -> str:
        return run_link(self.dagster_base_url, run_id)

    def send(self, alert: Alert, *, logger: LoggerLike | None = None) -> bool:
        """Deliver one alert; a failure is logged with the alert's full text, never raised."""
        out = logger or log
        sink = self._sink(out)
        if sink is None:
            LogSink(out).send(alert)
            return False
        return deliver(
            alert,
            sink,
            max_tries=self.max_tries,
            backoff_seconds=self.backoff_seconds,
            logger=out,
        )

    def _sink(self, out: LoggerLike) -> AlertSink | None:
        if self.sink == "log":
            return LogSink(out)
        if self.sink == "webhook":
            if not self.webhook_url:
                out.error(
                    "FRAUD_ALERT_SINK=webhook but %s is not set; the alert goes to the log",
                    WEBHOOK_URL_ENV,
                )
                return None
            return WebhookSink(self.webhook_url, timeout_seconds=self.timeout_seconds)
        if self.sink == "slack":
            if self.slack is None:
                out.error(
                    "FRAUD_ALERT_SINK=slack but %s is not set; the alert goes to the log",
                    SLACK_TOKEN_ENV,
                )
                return None
            return SlackSink(self.slack.get_client(), channel=self.slack_channel)
        raise ValueError(f"unknown alert sink {self.sink!r}; expected log, webhook or slack")


def default_alerts() -> AlertResource:
    """The alert resource configured by ``FRAUD_ALERT_*`` settings.

    Secrets are passed as ``EnvVar`` so the Dagster UI shows the variable's name, not its
    value, and they are resolved when a sensor runs, never when definitions load. A sink
    whose secret is unset logs an error at delivery time and falls back to the log.
    """
    settings = get_settings()
    return AlertResource(
        sink=settings.alert_sink,
        webhook_url=EnvVar(WEBHOOK_URL_ENV) if os.environ.get(WEBHOOK_URL_ENV) else None,
        slack=(
            SlackResource(token=EnvVar(SLACK_TOKEN_ENV))
            if settings.alert_sink == "slack" and os.environ.get(SLACK_TOKEN_ENV)
            else None
        ),
        slack_channel=settings.slack_channel,
        dagster_base_url=settings.dagster_base_url,
    )
