"""scripts/drift_issue.py: one GitHub issue per drift episode, opened, commented on, closed.

The decisions run against an in-memory tracker; the REST client against a loopback server
that answers like GitHub's issues API, so its paths, bodies and headers are checked too.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, get_args

import pytest

from fraud_assets.governance import DriftLevel

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "scripts"))

import drift_issue  # noqa: E402
from drift_issue import GitHubError, GitHubIssues, Issue, sync_drift_issue  # noqa: E402


class FakeTracker:
    """Issues in memory, as GitHub would keep them."""

    def __init__(self) -> None:
        self.issues: dict[int, dict[str, Any]] = {}

    def add(self, title: str, labels: Sequence[str], *, state: str = "open") -> int:
        number = len(self.issues) + 1
        self.issues[number] = {
            "title": title,
            "labels": list(labels),
            "state": state,
            "comments": [],
            "body": "",
        }
        return number

    def open_issues(self, label: str) -> list[Issue]:
        return [
            Issue(n, i["title"], f"https://github.test/issues/{n}")
            for n, i in self.issues.items()
            if i["state"] == "open" and label in i["labels"]
        ]

    def comments(self, number: int) -> list[str]:
        return [self.issues[number]["body"], *self.issues[number]["comments"]]

    def create(self, *, title: str, body: str, labels: Sequence[str]) -> Issue:
        number = self.add(title, labels)
        self.issues[number]["body"] = body
        return Issue(number, title, f"https://github.test/issues/{number}")

    def comment(self, number: int, body: str) -> None:
        self.issues[number]["comments"].append(body)

    def close(self, number: int) -> None:
        self.issues[number]["state"] = "closed"

    def open_for(self, target: str) -> list[int]:
        title = drift_issue.issue_title(target)
        return [n for n, i in self.issues.items() if i["state"] == "open" and i["title"] == title]


def watch_report(run_id: str, level: str | None, max_psi: float = 0.31) -> dict[str, Any]:
    """The JSON `orchestrate.py watch` writes, for a Dagster run of drift_monitoring_job."""
    metadata = {} if level is None else {"psi_report": {"drift_level": level, "max_psi": max_psi}}
    return {
        "job": "drift_monitoring_job",
        "ok": True,
        "message": "latest run is success",
        "run": {
            "run_id": run_id,
            "state": "success",
            "started_at": "2026-12-07 06:00:00+00:00",
            "url": f"https://dagster.test/runs/{run_id}",
            "metadata": metadata,
        },
    }


def test_the_levels_are_the_governance_levels() -> None:
    assert get_args(DriftLevel) == drift_issue.DRIFT_LEVELS


def test_one_issue_per_episode_opened_commented_and_closed() -> None:
    tracker = FakeTracker()
    runs = [
        ("r1", "none", "nothing"),
        ("r2", "major", "open"),
        ("r3", "major", "comment"),
        ("r3", "major", "nothing"),  # the same run watched twice: reported once
        ("r4", None, "nothing"),  # a run without psi metadata changes nothing
        ("r5", "minor", "close"),
        ("r6", "none", "nothing"),
        ("r7", "major", "open"),  # a new episode, a new issue
    ]
    actions = [
        sync_drift_issue(tracker, target="prod", report=watch_report(run, level))
        for run, level, _ in runs
    ]
    assert actions == [expected for _, _, expected in runs]
    first, second = sorted(tracker.issues)
    assert tracker.issues[first]["state"] == "closed"
    assert tracker.issues[first]["labels"] == [drift_issue.LABEL]
    assert "drift level **major**" in tracker.issues[first]["body"]
    assert "https://dagster.test/runs/r2" in tracker.issues[first]["body"]
    comments = tracker.issues[first]["comments"]
    assert len(comments) == 2
    assert "r3" in comments[0] and "now **minor**; closing" in comments[1]
    assert tracker.open_for("prod") == [second]


def test_targets_have_their_own_episodes_and_other_issues_are_left_alone() -> None:
    tracker = FakeTracker()
    unrelated = tracker.add("Feature drift in prod (hand-written)", [drift_issue.LABEL])
    sync_drift_issue(tracker, target="staging", report=watch_report("s1", "major"))
    assert sync_drift_issue(tracker, target="prod", report=watch_report("p1", "major")) == "open"
    assert sync_drift_issue(tracker, target="prod", report=watch_report("p2", "none")) == "close"
    assert len(tracker.open_for("staging")) == 1 and tracker.open_for("prod") == []
    assert tracker.issues[unrelated]["state"] == "open"
    assert tracker.issues[unrelated]["comments"] == []


@pytest.mark.parametrize(
    ("level", "open_at", "expected"),
    [("minor", "major", "nothing"), ("minor", "minor", "open"), ("major", "minor", "open")],
)
def test_open_at_sets_where_an_episode_starts(level: str, open_at: str, expected: str) -> None:
    action = sync_drift_issue(
        FakeTracker(), target="prod", report=watch_report("r", level), open_at=open_at
    )
    assert action == expected


# --- the REST client, against a loopback server -------------------------------------------


class FakeGitHub(BaseHTTPRequestHandler):
    issues: dict[int, dict[str, Any]] = {}
    requests: list[tuple[str, str, Any, str]] = []

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _route(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.requests.append((method, self.path, body, self.headers["Authorization"]))
        if self.headers["Authorization"] != "Bearer t0ken":
            return self._answer(401, {"message": "Bad credentials"})
        prefix = "/repos/acme/fraud/issues"
        path = self.path.split("?")[0]
        if method == "GET" and path == prefix:
            listed = [
                {"number": n, "title": i["title"], "html_url": f"https://gh/{n}", **i["extra"]}
                for n, i in self.issues.items()
                if i["state"] == "open"
            ]
            return self._answer(200, listed)
        if method == "POST" and path == prefix:
            number = len(self.issues) + 1
            self.issues[number] = {**body, "state": "open", "comments": [], "extra": {}}
            return self._answer(201, {"number": number, "title": body["title"], "html_url": "u"})
        number = int(path.removeprefix(prefix + "/").split("/")[0])
        if path.endswith("/comments"):
            if method == "POST":
                self.issues[number]["comments"].append(body["body"])
                return self._answer(201, {})
            return self._answer(200, [{"body": c} for c in self.issues[number]["comments"]])
        if method == "PATCH":
            self.issues[number]["state"] = body["state"]
        return self._answer(200, {"body": self.issues[number].get("body")})

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_PATCH(self) -> None:
        self._route("PATCH")


@pytest.fixture
def github_api() -> Iterator[str]:
    FakeGitHub.issues = {
        1: {
            "title": "a pull request",
            "state": "open",
            "comments": [],
            "extra": {"pull_request": {}},
        }
    }
    FakeGitHub.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeGitHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_rest_client_opens_comments_and_closes_through_githubs_api(github_api: str) -> None:
    client = GitHubIssues("acme/fraud", "t0ken", api=github_api)
    assert sync_drift_issue(client, target="prod", report=watch_report("r1", "major")) == "open"
    assert sync_drift_issue(client, target="prod", report=watch_report("r2", "major")) == "comment"
    assert sync_drift_issue(client, target="prod", report=watch_report("r2", "major")) == "nothing"
    assert sync_drift_issue(client, target="prod", report=watch_report("r3", "none")) == "close"
    created = FakeGitHub.issues[2]
    assert created["labels"] == [drift_issue.LABEL] and created["state"] == "closed"
    assert len(created["comments"]) == 2
    methods = [(m, p.split("?")[0]) for m, p, _, _ in FakeGitHub.requests]
    assert ("PATCH", "/repos/acme/fraud/issues/2") in methods
    assert FakeGitHub.issues[1]["comments"] == [], "pull requests are not drift issues"


def test_a_refusal_names_the_call_and_never_the_token(github_api: str) -> None:
    client = GitHubIssues("acme/fraud", "wrong-secret-value", api=github_api)
    with pytest.raises(GitHubError) as raised:
        client.open_issues(drift_issue.LABEL)
    assert "HTTP 401" in str(raised.value) and "GET /issues" in str(raised.value)
    assert "wrong-secret-value" not in str(raised.value) + repr(client)


def test_main_needs_the_token_and_shrugs_at_a_missing_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    monkeypatch.setenv("GITHUB_REPOSITORY", "acme/fraud")
    assert drift_issue.main(["--target", "prod", "--report", str(tmp_path / "none.json")]) == 0
    report = tmp_path / "drift_monitoring_job.json"
    report.write_text(json.dumps(watch_report("r1", "major")))
    assert drift_issue.main(["--target", "prod", "--report", str(report)]) == 1
    assert "GITHUB_TOKEN must both be set" in caplog.text
