"""scripts/orchestrate.py against a real Dagster webserver, and the Databricks CLI path.

The Dagster side runs the real ``dagster-webserver`` GraphQL app on loopback over a real
instance holding real runs, so the queries, the parsing and the verdicts are the ones a
deployed Dagster answers. The Databricks side has no workspace here: its CLI is replaced
by a recorder on PATH that answers with canned JSON.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from dagster import MetadataValue, asset

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "scripts"))

import orchestrate  # noqa: E402

VOLUME_REPORT = "/Volumes/fraud_prod/claims/reports/fairness_audit_2026-11-22.html"
AUDIT_PDF = "/Volumes/fraud_prod/claims/reports/champion_fairness_audit_20261122T140000Z.pdf"


# `context` unannotated: under postponed annotations Dagster cannot resolve the hint.
@asset
def psi_report(context) -> int:
    context.add_output_metadata(
        {"max_psi": 0.04, "drift_level": "none", "report": MetadataValue.path(VOLUME_REPORT)}
    )
    return 1


@asset
def fairness_report() -> int:
    return 1


@pytest.fixture(scope="module")
def dagster_graphql_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Dagster webserver on loopback whose instance holds one good and one failed run."""
    import uvicorn
    from dagster import DagsterInstance, Definitions, define_asset_job
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import EmptyWorkspaceTarget
    from dagster_webserver.webserver import DagsterWebserver

    defs = Definitions(
        assets=[psi_report, fairness_report],
        jobs=[
            define_asset_job("drift_monitoring_job", selection=[psi_report]),
            define_asset_job("fairness_audit_job", selection=[fairness_report]),
        ],
    )
    home = tmp_path_factory.mktemp("dagster_home")
    with DagsterInstance.from_config(str(home)) as instance:
        defs.resolve_job_def("drift_monitoring_job").execute_in_process(instance=instance)
        # A run the instance records as failed, as the daemon does for a failed audit.
        failed = instance.create_run_for_job(defs.resolve_job_def("fairness_audit_job"))
        instance.report_run_failed(failed)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        with WorkspaceProcessContext(instance, EmptyWorkspaceTarget()) as context:
            app = DagsterWebserver(context).create_asgi_app()
            server = uvicorn.Server(
                uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
            )
            thread = threading.Thread(target=server.run, daemon=True)
            thread.start()
            deadline = time.monotonic() + 30
            while not server.started:
                assert time.monotonic() < deadline, "dagster webserver did not start in 30 s"
                time.sleep(0.05)
            yield f"http://127.0.0.1:{port}/graphql"
            server.should_exit = True
            thread.join(timeout=10)


FAKE_DATABRICKS = r"""#!{python}
import json, os, sys
argv = ["databricks", *sys.argv[1:]]
with open(os.environ["FAKE_CLI_LOG"], "a") as log:
    log.write(json.dumps(argv) + "\n")
for rule in json.load(open(os.environ["FAKE_CLI_RULES"])):
    if argv[: len(rule["prefix"])] == rule["prefix"]:
        if rule.get("create_last_argument"):
            open(argv[-1], "w").write("<html>report</html>")
        sys.stdout.write(rule.get("stdout", ""))
        sys.exit(rule.get("exit", 0))
"""


class FakeDatabricks:
    """The databricks CLI on PATH: each call is logged and answered by rules."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        bin_dir = root / "bin"
        bin_dir.mkdir()
        executable = bin_dir / "databricks"
        executable.write_text(FAKE_DATABRICKS.format(python=sys.executable))
        executable.chmod(0o755)
        self.log = root / "calls.jsonl"
        self.log.touch()
        self.rules_file = root / "rules.json"
        self.rules: list[dict[str, Any]] = []
        self._save()
        monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
        monkeypatch.setenv("FAKE_CLI_LOG", str(self.log))
        monkeypatch.setenv("FAKE_CLI_RULES", str(self.rules_file))

    def answer(self, prefix: list[str], stdout: Any = "", **extra: Any) -> None:
        text = stdout if isinstance(stdout, str) else json.dumps(stdout)
        self.rules.append({"prefix": prefix, "stdout": text, **extra})
        self._save()

    def _save(self) -> None:
        self.rules_file.write_text(json.dumps(self.rules))

    def calls(self) -> list[list[str]]:
        return [json.loads(line) for line in self.log.read_text().splitlines()]


@pytest.fixture
def fake_databricks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeDatabricks:
    return FakeDatabricks(tmp_path, monkeypatch)


@pytest.fixture
def step_summary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    summary = tmp_path / "step_summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    return summary


def _watch(job: str, report_dir: Path, max_age_hours: float = 6.5) -> int:
    return orchestrate.main(
        [
            "watch",
            "--target",
            "prod",
            "--job",
            job,
            "--max-age-hours",
            str(max_age_hours),
            "--report-dir",
            str(report_dir),
        ]
    )


# --- Dagster as orchestrator of record (every target today) --------------------------------


def test_watch_reports_a_healthy_drift_run_with_its_metadata_and_report(
    dagster_graphql_url: str,
    fake_databricks: FakeDatabricks,
    step_summary: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DAGSTER_GRAPHQL_URL", dagster_graphql_url)
    fake_databricks.answer(["databricks", "fs", "cp"], create_last_argument=True)
    report_dir = tmp_path / "report"

    assert _watch("drift_monitoring_job", report_dir) == 0

    record = json.loads((report_dir / "drift_monitoring_job.json").read_text())
    assert record["ok"] is True
    assert record["run"]["state"] == "success"
    assert record["run"]["metadata"]["psi_report"]["max_psi"] == 0.04
    assert record["run"]["metadata"]["psi_report"]["drift_level"] == "none"
    assert record["run"]["url"].startswith(dagster_graphql_url.removesuffix("/graphql") + "/runs/")
    local = report_dir / Path(VOLUME_REPORT).name
    assert ["databricks", "fs", "cp", f"dbfs:{VOLUME_REPORT}", str(local)] in (
        fake_databricks.calls()
    )
    assert local.read_text() == "<html>report</html>"
    assert "drift_monitoring_job: healthy" in step_summary.read_text()


def test_watch_fails_when_the_latest_run_failed(
    dagster_graphql_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAGSTER_GRAPHQL_URL", dagster_graphql_url)
    assert _watch("fairness_audit_job", tmp_path) == 1
    record = json.loads((tmp_path / "fairness_audit_job.json").read_text())
    assert record["run"]["state"] == "failure"
    assert "failed" in record["message"]


def test_watch_fails_when_the_schedule_stopped_or_never_ran(
    dagster_graphql_url: str,
    fake_databricks: FakeDatabricks,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DAGSTER_GRAPHQL_URL", dagster_graphql_url)
    fake_databricks.answer(["databricks", "fs", "cp"], create_last_argument=True)
    time.sleep(0.05)
    assert _watch("drift_monitoring_job", tmp_path / "stale", max_age_hours=1e-6) == 1
    stale = json.loads((tmp_path / "stale" / "drift_monitoring_job.json").read_text())
    assert "the schedule has stopped" in stale["message"]

    assert _watch("ingestion_job", tmp_path / "never") == 1
    never = json.loads((tmp_path / "never" / "ingestion_job.json").read_text())
    assert never["run"] is None and "no run at all" in never["message"]


def test_launch_reports_dagsters_refusal_without_leaking_the_token(
    dagster_graphql_url: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DAGSTER_GRAPHQL_URL", dagster_graphql_url)
    monkeypatch.setenv("DAGSTER_API_TOKEN", "tok-3f9a2c")
    code = orchestrate.main(["launch", "--target", "staging", "--job", "ingestion_job", "--wait"])
    assert code == 1
    # This webserver has no fraud_assets code location, so Dagster refuses the launch.
    assert "Dagster did not launch ingestion_job" in caplog.text
    assert "tok-3f9a2c" not in caplog.text + capsys.readouterr().out


def test_every_graphql_document_is_valid_for_the_running_dagster(dagster_graphql_url: str) -> None:
    client = orchestrate.DagsterGraphQL(dagster_graphql_url)
    # The webserver rejects a document that does not fit its schema (OrchestrationError).
    status = client.query(orchestrate.RUN_STATUS, {"runId": "no-such-run"})["runOrError"]
    assert status["__typename"] == "RunNotFoundError"
    latest = client.query(orchestrate.LATEST_RUN, {"jobName": "drift_monitoring_job"})
    assert latest["runsOrError"]["__typename"] == "Runs"
    with pytest.raises(orchestrate.OrchestrationError, match="Dagster did not launch"):
        client.launch("drift_monitoring_job", {"git_sha": "abc1234"})
    with pytest.raises(orchestrate.OrchestrationError, match="rejected the query"):
        client.query("query { runsOrError(limit: 1) { nosuchfield } }", {})


def test_launch_without_a_dagster_url_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("DAGSTER_GRAPHQL_URL", raising=False)
    assert orchestrate.main(["launch", "--target", "prod", "--job", "ingestion_job"]) == 1
    assert "DAGSTER_GRAPHQL_URL is not set" in caplog.text


# --- Databricks as orchestrator of record -------------------------------------------------


@pytest.fixture
def bundle_orchestrates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        orchestrate, "bundle_variables", lambda target: {"orchestrator": "databricks"}
    )


def test_launch_goes_through_the_bundle_where_databricks_orchestrates(
    bundle_orchestrates: None, fake_databricks: FakeDatabricks
) -> None:
    assert orchestrate.main(["launch", "--target", "prod", "--job", "ingestion_job", "--wait"]) == 0
    assert fake_databricks.calls() == [
        ["databricks", "bundle", "run", "-t", "prod", "ingestion_job"]
    ]


def test_watch_reads_the_bundle_jobs_latest_run_and_its_task_logs(
    bundle_orchestrates: None, fake_databricks: FakeDatabricks, tmp_path: Path
) -> None:
    started = int((datetime.now(UTC) - timedelta(hours=2)).timestamp() * 1000)
    fake_databricks.answer(
        ["databricks", "bundle", "summary"],
        {"resources": {"jobs": {"fairness_audit_job": {"id": "4711"}}}},
    )
    run = {
        "run_id": 99,
        "start_time": started,
        "end_time": started + 600_000,
        "run_page_url": "https://workspace/#job/4711/run/99",
        "state": {"life_cycle_state": "TERMINATED", "result_state": "SUCCESS"},
        "tasks": [{"task_key": "fairness", "run_id": 100}],
    }
    fake_databricks.answer(["databricks", "api", "get"], {"runs": [run], "has_more": True})
    fake_databricks.answer(
        ["databricks", "jobs", "get-run-output"],
        {"logs": f"wrote the champion fairness audit to {VOLUME_REPORT} and {AUDIT_PDF}"},
    )
    fake_databricks.answer(["databricks", "fs", "cp"], create_last_argument=True)

    assert _watch("fairness_audit_job", tmp_path, max_age_hours=170) == 0

    calls = fake_databricks.calls()
    assert [
        "databricks",
        *("api", "get", "/api/2.2/jobs/runs/list?job_id=4711&limit=1&expand_tasks=true"),
    ] in calls
    assert ["databricks", "jobs", "get-run-output", "100", "-o", "json"] in calls
    assert (tmp_path / Path(VOLUME_REPORT).name).is_file()
    # The PDF the weekly audit archives is fetched too, not only the HTML (issue 16).
    assert (tmp_path / Path(AUDIT_PDF).name).is_file()
    record = json.loads((tmp_path / "fairness_audit_job.json").read_text())
    assert record["ok"] and record["run"]["url"] == "https://workspace/#job/4711/run/99"


# --- pure decisions -------------------------------------------------------------------------

NOW = datetime(2026, 11, 27, 12, tzinfo=UTC)


def _run(state: str, hours_ago: float) -> orchestrate.RunInfo:
    return orchestrate.RunInfo("r1", state, NOW - timedelta(hours=hours_ago))


@pytest.mark.parametrize(
    ("run", "healthy"),
    [
        (None, False),
        (_run("success", 1), True),
        (_run("running", 1), True),
        (_run("failure", 1), False),
        (_run("success", 7), False),
    ],
)
def test_verdict(run: orchestrate.RunInfo | None, healthy: bool) -> None:
    ok, _ = orchestrate.verdict(run, now=NOW, max_age=timedelta(hours=6.5))
    assert ok is healthy


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ({"life_cycle_state": "RUNNING"}, "running"),
        ({"life_cycle_state": "TERMINATED", "result_state": "SUCCESS"}, "success"),
        ({"life_cycle_state": "TERMINATED", "result_state": "FAILED"}, "failure"),
        ({"life_cycle_state": "INTERNAL_ERROR"}, "failure"),
    ],
)
def test_databricks_run_states(state: dict[str, str], expected: str) -> None:
    run = orchestrate.databricks_run({"run_id": 1, "start_time": 0, "state": state})
    assert run.state == expected


# --- who launched: CI's actor reaches the steps ---------------------------------------------


@pytest.mark.parametrize("actor", ["octocat", ""])
def test_a_ci_launch_tags_its_actor_and_each_step_receives_it(
    monkeypatch: pytest.MonkeyPatch, actor: str
) -> None:
    from _commands import Runner
    from dagster import materialize

    from fraud_assets.resources.compute import DEPLOYED_BY_TAG, task_extras
    from fraud_assets.settings import get_settings

    launched: dict[str, str] = {}

    def launch(
        client: orchestrate.DagsterGraphQL, job: str, tags: dict[str, str], run_config: object
    ) -> str:
        launched.update(tags)
        return "run-1"

    def status(client: orchestrate.DagsterGraphQL, run_id: str) -> orchestrate.RunInfo:
        return orchestrate.RunInfo(run_id, "success", datetime.now(UTC))

    monkeypatch.setattr(orchestrate.DagsterGraphQL, "launch", launch)
    monkeypatch.setattr(orchestrate.DagsterGraphQL, "status", status)
    env = {"DAGSTER_GRAPHQL_URL": "http://dagster.test/graphql", "FRAUD_DEPLOYED_BY": actor}
    orchestration = orchestrate.Orchestration("staging", "ingestion_job", Runner(False), env)
    orchestration.launch(git_sha="abc1234", wait=True, timeout=timedelta(minutes=1))
    assert launched.get(DEPLOYED_BY_TAG) == (actor or None)

    received: dict[str, object] = {}

    @asset
    def step(context) -> None:
        received.update(task_extras(context, get_settings(), {"action": "promote"})["params"])

    assert materialize([step], tags=launched).success
    assert received.get("deployed_by") == (actor or None)
    assert received["action"] == "promote"


# --- a source for the run: staging refuses synthetic claims ----------------------------------


def test_a_launch_gives_raw_claims_its_source_file_as_run_config(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dagster import validate_run_config

    from fraud_assets.definitions import defs

    sent: list[object] = []

    def launch(client: object, job: str, tags: object, run_config: object = None) -> str:
        sent.append(run_config)
        return "run-1"

    def status(client: object, run_id: str) -> orchestrate.RunInfo:
        return orchestrate.RunInfo(run_id, "success", datetime.now(UTC))

    monkeypatch.setattr(orchestrate.DagsterGraphQL, "launch", launch)
    monkeypatch.setattr(orchestrate.DagsterGraphQL, "status", status)
    monkeypatch.setenv("DAGSTER_GRAPHQL_URL", "http://dagster.test/graphql")
    source = "/Volumes/fraud_staging/claims/landing/smoke_claims.csv"
    launch_args = ["launch", "--target", "staging", "--job", "ingestion_job", "--wait"]
    assert orchestrate.main([*launch_args, "--source-path", source, "--mapping", "auto"]) == 0
    assert orchestrate.main(launch_args) == 0
    config = {"ops": {"raw_claims": {"config": {"source_path": source, "mapping": "auto"}}}}
    assert sent == [config, {}]
    # The run config is one the project's own ingestion_job accepts.
    validate_run_config(defs.resolve_job_def("ingestion_job"), config)


def test_a_source_without_dagster_or_a_mapping_without_a_file_is_refused(
    bundle_orchestrates: None, fake_databricks: FakeDatabricks, caplog: pytest.LogCaptureFixture
) -> None:
    launch_args = ["launch", "--target", "staging", "--job", "ingestion_job"]
    assert orchestrate.main([*launch_args, "--source-path", "/Volumes/x/claims.csv"]) == 1
    assert "set FRAUD_SOURCE_PATH on the bundle job instead" in caplog.text
    assert orchestrate.main([*launch_args, "--mapping", "auto"]) == 1
    assert "give --source-path too" in caplog.text
    assert fake_databricks.calls() == []


def test_report_paths_are_the_audit_html_and_pdf_on_volumes() -> None:
    metadata = {
        "champion_fairness_audit": {
            "audit_report": VOLUME_REPORT,
            "audit_report_pdf": AUDIT_PDF,
            "chart": "/tmp/not_on_a_volume.pdf",
            "note": f"same file again: {AUDIT_PDF}",
        }
    }
    assert orchestrate.report_paths(metadata) == [VOLUME_REPORT, AUDIT_PDF]
