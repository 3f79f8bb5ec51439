"""Keep one GitHub issue per drift episode of a target: open it, comment on it, close it.

    python scripts/drift_issue.py --target prod --report drift-report/drift_monitoring_job.json

Reads the report ``scripts/orchestrate.py watch`` wrote for the latest drift_monitoring_job
run (psi_report's ``drift_level`` in the run's metadata). While the level is at or above
``--open-at`` (default ``major``) the target is in a drift episode: the first run of the
episode opens an issue labelled ``drift-monitor`` titled ``[drift-monitor:<target>] ...``,
later runs comment on that issue (once per run), and the first run below the level closes
it. A report without a drift level (the run failed, or the orchestrator does not return
asset metadata) changes nothing: the watch step's own failure is the alert then.

Talks to the GitHub REST API with ``GITHUB_TOKEN`` (``permissions: issues: write``) in
``GITHUB_REPOSITORY``; the token is never printed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

DRIFT_LEVELS = ("none", "minor", "major")
LABEL = "drift-monitor"
API = "https://api.github.com"

Action = Literal["open", "comment", "close", "nothing"]

log = logging.getLogger("drift_issue")


class GitHubError(RuntimeError):
    """GitHub refused a call; the message names the call, never the token."""


@dataclass(frozen=True)
class Issue:
    number: int
    title: str
    url: str


class IssueTracker(Protocol):
    """The few issue calls this script makes; tests pass a fake."""

    def open_issues(self, label: str) -> list[Issue]: ...
    def comments(self, number: int) -> list[str]: ...
    def create(self, *, title: str, body: str, labels: Sequence[str]) -> Issue: ...
    def comment(self, number: int, body: str) -> None: ...
    def close(self, number: int) -> None: ...


# --- pure decisions -----------------------------------------------------------------------


def issue_title(target: str) -> str:
    return f"[{LABEL}:{target}] Feature drift in {target}"


def run_marker(run_id: str) -> str:
    """Hidden in each issue body or comment, so one run is reported once."""
    return f"<!-- drift-run: {run_id} -->"


def drift_level(report: Mapping[str, Any]) -> str | None:
    """psi_report's drift level in the watched run, or ``None`` when the report has none."""
    run = report.get("run") or {}
    level = ((run.get("metadata") or {}).get("psi_report") or {}).get("drift_level")
    return level if level in DRIFT_LEVELS else None


def decide(
    level: str | None, episode: Issue | None, *, open_at: str, reported: bool
) -> tuple[Action, str]:
    """What to do with the episode's issue, and why, given the latest drift level."""
    if level is None:
        return "nothing", "the watched run reports no drift level"
    drifting = DRIFT_LEVELS.index(level) >= DRIFT_LEVELS.index(open_at)
    if drifting and episode is None:
        return "open", f"drift is {level}, at or above {open_at}, and no issue is open"
    if drifting and episode is not None:
        if reported:
            return "nothing", f"issue #{episode.number} already reports this run"
        return "comment", f"drift is still {level}: issue #{episode.number} gets this run"
    if episode is not None:
        return "close", f"drift is {level}, below {open_at}: the episode is over"
    return "nothing", f"drift is {level}, below {open_at}, and no issue is open"


def describe(target: str, level: str, report: Mapping[str, Any], run_url: str | None) -> str:
    """The issue body or comment for one watched run."""
    run = report.get("run") or {}
    psi = (run.get("metadata") or {}).get("psi_report") or {}
    lines = [
        f"drift_monitoring_job in **{target}** reports drift level **{level}**.",
        "",
        f"- max PSI: {psi.get('max_psi', 'unknown')}",
        f"- run: {run.get('url') or run.get('run_id') or 'unknown'}",
        f"- started at: {run.get('started_at', 'unknown')}",
    ]
    if run_url:
        lines.append(f"- seen by: {run_url}")
    lines += ["", run_marker(str(run.get("run_id") or "unknown"))]
    return "\n".join(lines)


# --- the one call the workflow makes ------------------------------------------------------


def sync_drift_issue(
    tracker: IssueTracker,
    *,
    target: str,
    report: Mapping[str, Any],
    open_at: str = "major",
    run_url: str | None = None,
) -> Action:
    """Open, comment on or close the target's drift issue so it matches the latest run."""
    title = issue_title(target)
    episode = next((i for i in tracker.open_issues(LABEL) if i.title == title), None)
    level = drift_level(report)
    run_id = str((report.get("run") or {}).get("run_id") or "unknown")
    reported = episode is not None and any(
        run_marker(run_id) in text for text in tracker.comments(episode.number)
    )
    action, why = decide(level, episode, open_at=open_at, reported=reported)
    log.info("%s: %s (%s)", target, action, why)
    if action == "open" and level is not None:
        opened = tracker.create(
            title=title, body=describe(target, level, report, run_url), labels=[LABEL]
        )
        log.info("opened %s", opened.url)
    elif action == "comment" and episode is not None and level is not None:
        tracker.comment(episode.number, describe(target, level, report, run_url))
    elif action == "close" and episode is not None:
        tracker.comment(
            episode.number,
            f"Drift in **{target}** is now **{level}**; closing.\n\n{run_marker(run_id)}",
        )
        tracker.close(episode.number)
    return action


# --- GitHub REST ----------------------------------------------------------------------------


class GitHubIssues:
    """Issues of one repository through the REST API (urllib: no client library needed)."""

    def __init__(self, repository: str, token: str, *, api: str = API) -> None:
        self._repository = repository
        self._token = token
        self._api = api.rstrip("/")

    def __repr__(self) -> str:
        return f"GitHubIssues({self._repository!r}, token=<hidden>)"

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> GitHubIssues:
        repository, token = env.get("GITHUB_REPOSITORY"), env.get("GITHUB_TOKEN")
        if not repository or not token:
            raise GitHubError("GITHUB_REPOSITORY and GITHUB_TOKEN must both be set")
        return cls(repository, token, api=env.get("GITHUB_API_URL") or API)

    def _call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        request = urllib.request.Request(
            f"{self._api}/repos/{self._repository}{path}",
            data=json.dumps(body).encode() if body is not None else None,
            method=method,
            headers={
                "Authorization": f"Bearer {self._token}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28",
                "User-Agent": "fraud-assets-drift-monitor",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            exc.close()
            raise GitHubError(f"GitHub answered HTTP {exc.code} to {method} {path}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise GitHubError(f"GitHub unreachable for {method} {path}: {exc}") from None

    def open_issues(self, label: str) -> list[Issue]:
        query = urllib.parse.urlencode({"state": "open", "labels": label, "per_page": 100})
        return [
            Issue(int(i["number"]), str(i["title"]), str(i["html_url"]))
            for i in self._call("GET", f"/issues?{query}")
            if "pull_request" not in i
        ]

    def comments(self, number: int) -> list[str]:
        body = self._call("GET", f"/issues/{number}")["body"] or ""
        listed = self._call("GET", f"/issues/{number}/comments?per_page=100")
        return [body, *(str(c.get("body") or "") for c in listed)]

    def create(self, *, title: str, body: str, labels: Sequence[str]) -> Issue:
        made = self._call("POST", "/issues", {"title": title, "body": body, "labels": [*labels]})
        return Issue(int(made["number"]), str(made["title"]), str(made["html_url"]))

    def comment(self, number: int, body: str) -> None:
        self._call("POST", f"/issues/{number}/comments", {"body": body})

    def close(self, number: int) -> None:
        self._call("PATCH", f"/issues/{number}", {"state": "closed", "state_reason": "completed"})


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--target", required=True)
    parser.add_argument("--report", type=Path, required=True, help="orchestrate.py watch JSON")
    parser.add_argument("--open-at", choices=DRIFT_LEVELS[1:], default="major")
    parser.add_argument("--run-url", help="this workflow run, linked from the issue")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if not args.report.is_file():
        log.warning("no watch report at %s: nothing to say about drift", args.report)
        return 0
    report = json.loads(args.report.read_text())
    try:
        sync_drift_issue(
            GitHubIssues.from_env(),
            target=args.target,
            report=report,
            open_at=args.open_at,
            run_url=args.run_url,
        )
    except GitHubError as exc:
        log.error("drift issue for %s not updated: %s", args.target, exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
