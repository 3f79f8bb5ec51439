"""Alert messages and the sinks that deliver them. Plain Python: no Dagster imports."""

from fraud_assets.alerts.message import (
    Alert,
    AlertKind,
    check_failure_alert,
    offending_value,
    run_failure_alert,
    run_link,
)
from fraud_assets.alerts.sinks import (
    AlertDeliveryError,
    AlertSink,
    LoggerLike,
    LogSink,
    SlackClient,
    SlackSink,
    WebhookSink,
    deliver,
)

__all__ = [
    "Alert",
    "AlertDeliveryError",
    "AlertKind",
    "AlertSink",
    "LogSink",
    "LoggerLike",
    "SlackClient",
    "SlackSink",
    "WebhookSink",
    "check_failure_alert",
    "deliver",
    "offending_value",
    "run_failure_alert",
    "run_link",
]
