"""Where alerts go: the log, a generic JSON webhook, or Slack; delivery with bounded retries.

A sink's ``send`` either delivers or raises ``AlertDeliveryError`` whose message is safe to log:
it never contains the webhook URL or a token.
"""

from __future__ import annotations

import http.client
import json
import logging
import urllib.error
import urllib.request
from typing import Any, Protocol
from urllib.parse import urlsplit

import backoff
from pydantic import SecretStr

from fraud_assets.alerts.message import Alert

log = logging.getLogger(__name__)


class LoggerLike(Protocol):
    def info(self, msg: str, *args: Any) -> Any: ...
    def warning(self, msg: str, *args: Any) -> Any: ...
    def error(self, msg: str, *args: Any) -> Any: ...


class AlertDeliveryError(Exception):
    """A sink could not deliver; ``retriable`` says whether trying again may help."""

    def __init__(self, reason: str, *, retriable: bool) -> None:
        super().__init__(reason)
        self.retriable = retriable


class AlertSink(Protocol):
    name: str

    def send(self, alert: Alert) -> None:
        """Deliver ``alert`` or raise ``AlertDeliveryError``."""


class LogSink:
    """Writes alerts to the log: the default sink, and the fallback when delivery fails."""

    name = "log"

    def __init__(self, logger: LoggerLike | None = None) -> None:
        self._log = logger or log

    def send(self, alert: Alert) -> None:
        emit = self._log.error if alert.severity == "ERROR" else self._log.warning
        emit("ALERT %s", alert.text())


class WebhookSink:
    """POSTs the alert as JSON to a URL that is itself a secret (it usually embeds a token)."""

    name = "webhook"

    def __init__(self, url: SecretStr | str, *, timeout_seconds: float = 10.0) -> None:
        secret = url.get_secret_value() if isinstance(url, SecretStr) else url
        parts = urlsplit(secret)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("the alert webhook URL must be an http(s) URL (value not shown)")
        self._url = secret
        self._timeout = timeout_seconds

    def __repr__(self) -> str:
        return "WebhookSink(url=<hidden>)"

    def send(self, alert: Alert) -> None:
        body = json.dumps(alert.to_json(), default=str).encode("utf-8")
        request = urllib.request.Request(
            self._url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "fraud-assets-alerts"},
        )
        # urllib rather than requests: urllib3 logs the request path at DEBUG, and a webhook's
        # path is its secret.
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            exc.close()
            retriable = exc.code == 429 or exc.code >= 500
            raise AlertDeliveryError(
                f"webhook answered HTTP {exc.code}", retriable=retriable
            ) from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            raise AlertDeliveryError(
                f"webhook unreachable: {type(reason).__name__}: {self._redact(str(reason))}",
                retriable=True,
            ) from None

    def _redact(self, text: str) -> str:
        parts = urlsplit(self._url)
        for secret in (self._url, parts.path, parts.query):
            if secret and secret != "/":
                text = text.replace(secret, "<hidden>")
        return text


class SlackClient(Protocol):
    """The part of ``slack_sdk.WebClient`` the Slack sink uses."""

    def chat_postMessage(self, *, channel: str, text: str, **kwargs: Any) -> Any: ...


class SlackSink:
    """Posts the alert to a Slack channel through a ``slack_sdk`` client (dagster-slack)."""

    name = "slack"

    def __init__(self, client: SlackClient, *, channel: str) -> None:
        self._client = client
        self._channel = channel

    def __repr__(self) -> str:
        return f"SlackSink(channel={self._channel!r})"

    def send(self, alert: Alert) -> None:
        from slack_sdk.errors import SlackApiError, SlackClientError

        try:
            self._client.chat_postMessage(
                channel=self._channel, text=alert.slack_text(), unfurl_links=False
            )
        except SlackApiError as exc:
            status = int(getattr(exc.response, "status_code", 0) or 0)
            error = exc.response.get("error") if exc.response is not None else None
            raise AlertDeliveryError(
                f"Slack API answered {error or 'an error'} (HTTP {status})",
                retriable=status == 429 or status >= 500,
            ) from None
        except (SlackClientError, OSError) as exc:
            raise AlertDeliveryError(
                f"Slack unreachable: {type(exc).__name__}", retriable=True
            ) from None


def _permanent(exc: Exception) -> bool:
    return isinstance(exc, AlertDeliveryError) and not exc.retriable


def deliver(
    alert: Alert,
    sink: AlertSink,
    *,
    max_tries: int = 3,
    backoff_seconds: float = 1.0,
    logger: LoggerLike | None = None,
) -> bool:
    """Send ``alert`` through ``sink``, retrying transient failures with exponential backoff.

    Never raises for a delivery failure: it logs the failure together with the full alert
    text, so an undeliverable alert is still on record, and returns False.
    """
    out = logger or log

    def _retrying(details: Any) -> None:
        out.warning(
            "alert %r to %s failed (try %d of %d): %s; retrying in %.2fs",
            alert.title,
            sink.name,
            details["tries"],
            max_tries,
            details["exception"],
            details["wait"],
        )

    send = backoff.on_exception(
        backoff.expo,
        AlertDeliveryError,
        max_tries=max_tries,
        giveup=_permanent,
        on_backoff=_retrying,
        factor=backoff_seconds,
        jitter=None,
        logger=None,
    )(sink.send)
    try:
        send(alert)
    except AlertDeliveryError as exc:
        out.error(
            "alert %r NOT delivered to %s: %s. Alert follows.\n%s",
            alert.title,
            sink.name,
            exc,
            alert.text(),
        )
        return False
    if sink.name != "log":
        out.info("alert %r delivered to %s", alert.title, sink.name)
    return True
