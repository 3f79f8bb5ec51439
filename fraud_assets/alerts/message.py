"""What an alert says: one message model for failed checks and failed runs, in every sink."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

AlertKind = Literal["check_failed", "run_failed", "deploy_finished"]

# Where the offending number sits in check metadata, tried in order after the generic keys
# (``value``, ``observed_value``, ``observed``, a key named like the check, and the value of
# the first attribute in ``failing_attributes``): (value key, key naming what was measured).
VALUE_KEYS = ("value", "observed_value", "observed")
FALLBACK_VALUE_KEYS: tuple[tuple[str, str | None], ...] = (
    ("max_feature_psi", "worst_feature"),
    ("score_psi", None),
    ("max_psi", None),
    ("roc_auc_change", None),
    ("roc_auc", None),
    ("pr_auc", None),
)
# The limit the value broke; ``<value key>_min`` / ``_max`` are tried after ``threshold``.
THRESHOLD_KEYS = ("threshold", "psi_error", "regression_tolerance")
# Checks reported through Pipes carry their sentence in metadata rather than a description.
DESCRIPTION_KEYS = ("why", "summary")


@dataclass(frozen=True)
class Alert:
    """One alert, rendered the same way by the log, webhook and Slack sinks."""

    kind: AlertKind
    severity: str
    title: str
    run_id: str | None
    run_url: str | None
    job_name: str | None = None
    asset_key: str | None = None
    check_name: str | None = None
    value: Any = None
    subject: str | None = None
    threshold: Any = None
    description: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def text(self) -> str:
        """Plain text: one line a person can act on, then the run link."""
        parts = [f"[{self.severity}] {self.title}"]
        if self.value is not None:
            measured = f"value {_fmt(self.value)}"
            if self.subject:
                measured += f" for {self.subject}"
            if self.threshold is not None:
                measured += f" (threshold {_fmt(self.threshold)})"
            parts.append(measured)
        if self.description:
            parts.append(self.description)
        text = ": ".join(parts[:2]) + "".join(f". {p}" for p in parts[2:])
        if self.run_url:
            text += f"\nRun: {self.run_url}"
        return text

    def slack_text(self) -> str:
        """Slack mrkdwn: the same content, with the run as a link."""
        body = _slack_escape(self.text().split("\nRun: ")[0])
        if self.run_url:
            label = f"run {self.run_id[:8]}" if self.run_id else "run"
            body += f"\n<{self.run_url}|Open {label} in Dagster>"
        return body

    def to_json(self) -> dict[str, Any]:
        """The webhook body. ``text`` makes it readable by Slack-style incoming webhooks too."""
        return {
            "kind": self.kind,
            "severity": self.severity,
            "title": self.title,
            "asset": self.asset_key,
            "check": self.check_name,
            "value": _json_safe(self.value),
            "subject": self.subject,
            "threshold": _json_safe(self.threshold),
            "description": self.description,
            "job": self.job_name,
            "run_id": self.run_id,
            "run_url": self.run_url,
            "details": {k: _json_safe_deep(v) for k, v in self.details.items()},
            "text": self.text(),
        }


def run_link(base_url: str, run_id: str) -> str:
    """The Dagster UI page of one run."""
    return f"{base_url.rstrip('/')}/runs/{run_id}"


def check_failure_alert(
    *,
    asset_key: str,
    check_name: str,
    severity: str,
    metadata: Mapping[str, Any],
    run_id: str,
    base_url: str,
    job_name: str | None = None,
    description: str | None = None,
) -> Alert:
    """The alert for one failed asset check evaluation, naming the offending value."""
    details = {k: v for k, v in metadata.items() if _is_plain(v)}
    value_key, value, subject = offending_value(check_name, details)
    return Alert(
        kind="check_failed",
        severity=severity,
        title=f"Check {asset_key}.{check_name} failed",
        run_id=run_id,
        run_url=run_link(base_url, run_id),
        job_name=job_name,
        asset_key=asset_key,
        check_name=check_name,
        value=value,
        subject=subject,
        threshold=_first(details, _threshold_keys(value_key)),
        description=description or _first(details, DESCRIPTION_KEYS),
        details=details,
    )


def run_failure_alert(
    *,
    job_name: str,
    run_id: str,
    message: str | None,
    base_url: str,
    failed_steps: list[str] | None = None,
) -> Alert:
    """The alert for one failed run, with the steps that failed."""
    details: dict[str, Any] = {}
    if failed_steps:
        details["failed_steps"] = ", ".join(failed_steps)
    return Alert(
        kind="run_failed",
        severity="ERROR",
        title=f"Run {run_id[:8]} of {job_name} failed",
        run_id=run_id,
        run_url=run_link(base_url, run_id),
        job_name=job_name,
        description=message,
        details=details,
    )


def offending_value(
    check_name: str, metadata: Mapping[str, Any]
) -> tuple[str | None, Any, str | None]:
    """The number a failed check measured: ``(metadata key, value, what it measured)``."""
    for key in (*VALUE_KEYS, check_name):
        if _is_number_or_text(metadata.get(key)):
            return key, metadata[key], None
    failing = metadata.get("failing_attributes")
    if isinstance(failing, list):
        for attribute in failing:
            key = f"{attribute}.{check_name}"
            if _is_number_or_text(metadata.get(key)):
                return key, metadata[key], str(attribute)
    for key, subject_key in FALLBACK_VALUE_KEYS:
        if _is_number_or_text(metadata.get(key)):
            subject = metadata.get(subject_key) if subject_key else None
            return key, metadata[key], str(subject) if subject is not None else None
    return None, None, None


def _threshold_keys(value_key: str | None) -> tuple[str, ...]:
    if value_key is None:
        return THRESHOLD_KEYS
    return (THRESHOLD_KEYS[0], f"{value_key}_min", f"{value_key}_max", *THRESHOLD_KEYS[1:])


def _first(metadata: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    return next((metadata[k] for k in keys if metadata.get(k) is not None), None)


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


def _is_plain(value: Any) -> bool:
    """Scalars and lists of scalars: what a webhook body and a chat message can show."""
    if isinstance(value, list):
        return all(_is_scalar(v) for v in value)
    return _is_scalar(value)


def _is_number_or_text(value: Any) -> bool:
    return value is not None and not isinstance(value, bool) and _is_scalar(value)


def _json_safe(value: Any) -> Any:
    # JSON has no NaN or infinity; a receiver would reject the whole alert.
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _json_safe_deep(value: Any) -> Any:
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return _json_safe(value)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
