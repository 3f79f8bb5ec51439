"""Tell Slack how a deploy ended: target, commit, actor, outcome and the workflow run.

    python scripts/notify_deploy.py --target T --git-sha SHA --actor WHO --outcome success \
        --run-url URL

Posts to the incoming webhook in ``SLACK_WEBHOOK_URL`` through the project's webhook alert
sink (its JSON carries ``text``, which Slack shows), with its bounded retries; the URL is a
secret and never printed. Without the variable it sends nothing and says so.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping, Sequence

from fraud_assets.alerts import Alert, WebhookSink, deliver

WEBHOOK_ENV = "SLACK_WEBHOOK_URL"
# GitHub's job.status values.
OUTCOMES = {"success": "succeeded", "failure": "FAILED", "cancelled": "was cancelled"}

log = logging.getLogger("notify_deploy")


def deploy_alert(*, target: str, git_sha: str, actor: str, outcome: str, run_url: str) -> Alert:
    """The message for one finished deploy."""
    return Alert(
        kind="deploy_finished",
        severity="INFO" if outcome == "success" else "ERROR",
        title=f"Deploy of {target} at {git_sha[:7]} {OUTCOMES[outcome]}",
        run_id=None,
        run_url=run_url,
        job_name="deploy",
        description=f"target {target}, commit {git_sha}, started by {actor}",
        details={"target": target, "git_sha": git_sha, "actor": actor, "outcome": outcome},
    )


def notify(
    alert: Alert, env: Mapping[str, str] = os.environ, *, backoff_seconds: float = 1.0
) -> bool:
    """Deliver ``alert`` to the webhook; True when delivered or when none is configured."""
    url = env.get(WEBHOOK_ENV, "").strip()
    if not url:
        log.info("%s is not set: no deploy notification sent", WEBHOOK_ENV)
        return True
    return deliver(alert, WebhookSink(url), backoff_seconds=backoff_seconds)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--target", required=True)
    parser.add_argument("--git-sha", required=True)
    parser.add_argument("--actor", required=True)
    parser.add_argument("--outcome", required=True, choices=sorted(OUTCOMES))
    parser.add_argument("--run-url", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    alert = deploy_alert(
        target=args.target,
        git_sha=args.git_sha,
        actor=args.actor,
        outcome=args.outcome,
        run_url=args.run_url,
    )
    try:
        delivered = notify(alert)
    except ValueError as exc:  # not an http(s) URL; the message does not show it
        log.error("%s", exc)
        return 1
    return 0 if delivered else 1


if __name__ == "__main__":
    sys.exit(main())
