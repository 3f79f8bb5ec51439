"""scripts/notify_deploy.py: a deploy's outcome reaches a webhook; the URL is never shown."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

from fraud_assets_tests.alerts_support import SECRET_PATH, WebhookReceiver

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "scripts"))

import notify_deploy  # noqa: E402

SHA = "0123456789abcdef0123456789abcdef01234567"
RUN_URL = "https://github.com/acme/fraud/actions/runs/42"


def _args(outcome: str) -> list[str]:
    return [
        "--target", "prod", "--git-sha", SHA, "--actor", "alice",
        "--outcome", outcome, "--run-url", RUN_URL,
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("outcome", "severity", "said"),
    [("success", "INFO", "succeeded"), ("failure", "ERROR", "FAILED")],
)
def test_the_outcome_target_commit_actor_and_run_reach_the_webhook(
    webhook_receiver: WebhookReceiver,
    monkeypatch: pytest.MonkeyPatch,
    outcome: str,
    severity: str,
    said: str,
) -> None:
    monkeypatch.setenv(notify_deploy.WEBHOOK_ENV, webhook_receiver.url)
    assert notify_deploy.main(_args(outcome)) == 0
    [body] = webhook_receiver.received
    assert body["kind"] == "deploy_finished" and body["severity"] == severity
    assert body["details"] == {
        "target": "prod",
        "git_sha": SHA,
        "actor": "alice",
        "outcome": outcome,
    }
    assert body["text"] == (
        f"[{severity}] Deploy of prod at 0123456 {said}: target prod, commit {SHA}, "
        f"started by alice\nRun: {RUN_URL}"
    )


def test_no_webhook_sends_nothing_and_succeeds(
    webhook_receiver: WebhookReceiver,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    monkeypatch.setenv(notify_deploy.WEBHOOK_ENV, "")
    assert notify_deploy.main(_args("success")) == 0
    assert webhook_receiver.attempts == 0
    assert "no deploy notification sent" in caplog.text


def test_an_undelivered_notice_fails_the_step_without_showing_the_url(
    webhook_receiver: WebhookReceiver,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    webhook_receiver.statuses = [404]
    alert = notify_deploy.deploy_alert(
        target="staging", git_sha=SHA, actor="bob", outcome="failure", run_url=RUN_URL
    )
    assert notify_deploy.notify(alert, {notify_deploy.WEBHOOK_ENV: webhook_receiver.url}) is False
    monkeypatch.setenv(notify_deploy.WEBHOOK_ENV, "not a url " + SECRET_PATH)
    assert notify_deploy.main(_args("failure")) == 1
    shown = caplog.text + "".join(capsys.readouterr())
    assert "HTTP 404" in shown
    assert SECRET_PATH not in shown and webhook_receiver.url not in shown
