"""Launch or watch a job through the target's orchestrator of record, never around it.

    python scripts/orchestrate.py launch --target T --job J [--wait] [--git-sha SHA]
                                         [--source-path PATH [--mapping NAME]]
                                         [--skip-without-champion]
    python scripts/orchestrate.py watch  --target T --job J --max-age-hours H [--report-dir D]

``databricks.yml`` names each target's orchestrator of record (variable ``orchestrator``).
Where it is ``dagster``, a launch goes through the Dagster GraphQL API (``DAGSTER_GRAPHQL_URL``,
optional bearer ``DAGSTER_API_TOKEN``) so the run, its checks and its alerts live in Dagster;
where it is ``databricks``, through ``databricks bundle run``.

``--source-path`` (and ``--mapping``) name the claims file the run's ``raw_claims`` ingests,
as its run config: staging and prod refuse synthetic claims, so a smoke run of
``ingestion_job`` needs a file unless the code location sets ``FRAUD_SOURCE_PATH``.

``--skip-without-champion`` launches nothing while the target's registered model has no
``champion`` alias (read from Unity Catalog with the Databricks CLI) and says so: a job that
scores with the champion cannot run in a new environment before its first model
(``scripts/promote_model.py bootstrap``). cd-prod's validation run uses it.

``watch`` launches nothing: it reads the latest run of the job from the orchestrator of
record, fails when that run failed or is older than ``--max-age-hours`` (the scheduler
stopped), and writes the run's summary, metadata and any HTML or PDF report it points at under
``--report-dir``. The scheduled GitHub workflows use ``watch``, so GitHub never becomes a
second scheduler.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests
from _commands import Command, CommandError, Runner

from deploy import model_aliases, model_full_name
from fraud_assets.resources.compute import DEPLOYED_BY_TAG
from fraud_assets.settings import bundle_variables

TARGETS = ("dev", "staging", "prod")
CODE_LOCATION = "fraud_assets"
REPOSITORY = "__repository__"
NO_CHAMPION = "no champion: run the bootstrap"
# The reports a run writes to UC Volumes: HTML, and the PDF the fairness audit archives.
VOLUME_REPORT = re.compile(r"/Volumes/[^\s'\"]+\.(?:html|pdf)\b")

LAUNCH_RUN = """
mutation LaunchRun($executionParams: ExecutionParams!) {
  launchRun(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId status } }
    ... on Error { message }
  }
}
"""

RUN_STATUS = """
query RunStatus($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { runId status startTime endTime }
    ... on Error { message }
  }
}
"""

LATEST_RUN = """
query LatestRun($jobName: String!) {
  runsOrError(filter: {pipelineName: $jobName}, limit: 1) {
    __typename
    ... on Runs {
      results {
        runId
        status
        startTime
        endTime
        assetMaterializations {
          assetKey { path }
          metadataEntries {
            label
            ... on TextMetadataEntry { text }
            ... on PathMetadataEntry { path }
            ... on UrlMetadataEntry { url }
            ... on FloatMetadataEntry { floatValue }
            ... on IntMetadataEntry { intValue }
            ... on BoolMetadataEntry { boolValue }
          }
        }
      }
    }
    ... on Error { message }
  }
}
"""

log = logging.getLogger("orchestrate")


class OrchestrationError(RuntimeError):
    """The orchestrator refused, or answered something this script cannot use."""


# --- what a run looks like, whoever ran it ---------------------------------------------------


@dataclass
class RunInfo:
    """The latest run of a job, in terms both orchestrators share."""

    run_id: str
    state: str  # success | failure | running
    started_at: datetime
    ended_at: datetime | None = None
    url: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


DAGSTER_STATES = {
    "SUCCESS": "success",
    "FAILURE": "failure",
    "CANCELED": "failure",
    "CANCELING": "failure",
}


def dagster_run(record: Mapping[str, Any], base_url: str | None = None) -> RunInfo:
    """A ``Run`` from the GraphQL API, with its materializations' metadata by asset."""
    metadata: dict[str, Any] = {}
    for materialization in record.get("assetMaterializations") or []:
        asset = "/".join(materialization["assetKey"]["path"])
        entries = metadata.setdefault(asset, {})
        for entry in materialization.get("metadataEntries") or []:
            values = [v for k, v in entry.items() if k != "label" and v is not None]
            entries[entry["label"]] = values[0] if values else None
    started = record.get("startTime")
    ended = record.get("endTime")
    return RunInfo(
        run_id=record["runId"],
        state=DAGSTER_STATES.get(record["status"], "running"),
        started_at=datetime.fromtimestamp(started or time.time(), UTC),
        ended_at=datetime.fromtimestamp(ended, UTC) if ended else None,
        url=f"{base_url.removesuffix('/graphql')}/runs/{record['runId']}" if base_url else None,
        metadata=metadata,
    )


def databricks_run(record: Mapping[str, Any]) -> RunInfo:
    """A run from the Jobs API ``runs/list`` (newest first)."""
    state = record.get("state") or {}
    life_cycle = state.get("life_cycle_state")
    if life_cycle in ("TERMINATED", "INTERNAL_ERROR", "SKIPPED"):
        outcome = "success" if state.get("result_state") == "SUCCESS" else "failure"
    else:
        outcome = "running"
    ended = record.get("end_time")
    return RunInfo(
        run_id=str(record["run_id"]),
        state=outcome,
        started_at=datetime.fromtimestamp(record["start_time"] / 1000, UTC),
        ended_at=datetime.fromtimestamp(ended / 1000, UTC) if ended else None,
        url=record.get("run_page_url"),
    )


def verdict(run: RunInfo | None, *, now: datetime, max_age: timedelta) -> tuple[bool, str]:
    """Whether the scheduler is healthy: a recent run that did not fail."""
    if run is None:
        return False, "no run at all: is the schedule of the orchestrator of record on?"
    age = now - run.started_at
    hours = age.total_seconds() / 3600
    if age > max_age:
        return False, (
            f"latest run {run.run_id} started {hours:.1f} h ago, more than "
            f"{max_age.total_seconds() / 3600:g} h: the schedule has stopped"
        )
    if run.state == "failure":
        return False, f"latest run {run.run_id} failed ({hours:.1f} h ago)"
    return True, f"latest run {run.run_id} is {run.state} ({hours:.1f} h ago)"


def report_paths(metadata: Any) -> list[str]:
    """HTML and PDF reports on UC Volumes that a run's metadata or logs point at."""
    found: list[str] = []
    for text in _strings(metadata):
        for path in VOLUME_REPORT.findall(text):
            if path not in found:
                found.append(path)
    return found


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)
    elif isinstance(node, str):
        yield node


# --- Dagster ------------------------------------------------------------------------------


class DagsterGraphQL:
    """The few GraphQL calls this script makes, with the token kept out of every message."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 30.0) -> None:
        self.url = url
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.timeout = timeout

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> DagsterGraphQL:
        url = env.get("DAGSTER_GRAPHQL_URL")
        if not url:
            raise OrchestrationError(
                "DAGSTER_GRAPHQL_URL is not set: the target's orchestrator of record is Dagster, "
                "so its GraphQL endpoint (e.g. https://dagster.example.com/graphql) is needed"
            )
        return cls(url, env.get("DAGSTER_API_TOKEN") or None)

    def query(self, document: str, variables: Mapping[str, Any]) -> dict[str, Any]:
        response = requests.post(
            self.url,
            json={"query": document, "variables": dict(variables)},
            headers=self._headers,
            timeout=self.timeout,
        )
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code != 200 and not body.get("errors"):
            raise OrchestrationError(
                f"Dagster GraphQL at {self.url} answered HTTP {response.status_code}"
            )
        if body.get("errors"):
            messages = "; ".join(e.get("message", "?") for e in body["errors"])
            raise OrchestrationError(f"Dagster GraphQL rejected the query: {messages}")
        data: dict[str, Any] = body["data"]
        return data

    def launch(
        self, job: str, tags: Mapping[str, str], run_config: Mapping[str, Any] | None = None
    ) -> str:
        params = {
            "selector": {
                "repositoryLocationName": CODE_LOCATION,
                "repositoryName": REPOSITORY,
                "jobName": job,
            },
            "runConfigData": dict(run_config or {}),
            "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]},
        }
        result = self.query(LAUNCH_RUN, {"executionParams": params})["launchRun"]
        if result["__typename"] != "LaunchRunSuccess":
            raise OrchestrationError(
                f"Dagster did not launch {job}: {result['__typename']}: {result.get('message')}"
            )
        run_id: str = result["run"]["runId"]
        return run_id

    def status(self, run_id: str) -> RunInfo:
        result = self.query(RUN_STATUS, {"runId": run_id})["runOrError"]
        if result["__typename"] != "Run":
            raise OrchestrationError(f"Dagster has no run {run_id}: {result.get('message')}")
        return dagster_run(result, self.url)

    def latest(self, job: str) -> RunInfo | None:
        result = self.query(LATEST_RUN, {"jobName": job})["runsOrError"]
        if result["__typename"] != "Runs":
            raise OrchestrationError(f"Dagster could not list runs of {job}: {result}")
        runs = result["results"]
        return dagster_run(runs[0], self.url) if runs else None


def ingest_run_config(source_path: str | None, mapping: str | None) -> dict[str, Any]:
    """Run config giving ``raw_claims`` its source file (and mapping); empty without one."""
    if mapping and not source_path:
        raise OrchestrationError("--mapping names how to read a file: give --source-path too")
    if not source_path:
        return {}
    config = {"source_path": source_path, **({"mapping": mapping} if mapping else {})}
    return {"ops": {"raw_claims": {"config": config}}}


# --- the two orchestrators -------------------------------------------------------------------


@dataclass
class Orchestration:
    target: str
    job: str
    runner: Runner
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    poll_seconds: float = 30.0

    @property
    def orchestrator(self) -> str:
        value = str(bundle_variables(self.target).get("orchestrator"))
        if value not in ("dagster", "databricks"):
            raise OrchestrationError(
                f"databricks.yml sets orchestrator={value!r} for {self.target}; "
                "expected dagster or databricks"
            )
        return value

    def launch(
        self,
        *,
        git_sha: str | None,
        wait: bool,
        timeout: timedelta,
        run_config: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        job_parameters: Mapping[str, str] | None = None,
    ) -> RunInfo | None:
        """Start the job; ``tags`` are Dagster run tags, ``job_parameters`` the bundle job's."""
        self.runner.show(f"# launch {self.job} in {self.target} through {self.orchestrator}")
        if run_config and self.orchestrator == "databricks":
            # The bundle's wheel tasks take their settings as named parameters, which a
            # `bundle run` override would replace wholesale.
            raise OrchestrationError(
                "a source file for the run goes through Dagster's run config; under the "
                "Databricks orchestrator set FRAUD_SOURCE_PATH on the bundle job instead"
            )
        if self.orchestrator == "databricks":
            # `bundle run` waits for the run and exits non-zero when it fails.
            command: tuple[str, ...] = ("databricks", "bundle", "run", "-t", self.target, self.job)
            if job_parameters:
                given = ",".join(f"{k}={v}" for k, v in job_parameters.items())
                command = (*command, "--params", given)
            self.runner.run(Command(command if wait else (*command, "--no-wait")))
            return None
        run_tags = {"fraud_assets/launched_by": "scripts/orchestrate.py", **(tags or {})}
        if git_sha:
            run_tags["git_sha"] = git_sha
        # CI sets FRAUD_DEPLOYED_BY to its actor; a model the run registers records it.
        actor = self.env.get("FRAUD_DEPLOYED_BY", "").strip()
        if actor:
            run_tags[DEPLOYED_BY_TAG] = actor
        shown = f" runConfigData={json.dumps(run_config)}" if run_config else ""
        self.runner.show(f"POST $DAGSTER_GRAPHQL_URL launchRun {self.job} tags={run_tags}{shown}")
        if self.runner.dry_run:
            return None
        client = DagsterGraphQL.from_env(self.env)
        run_id = client.launch(self.job, run_tags, run_config)
        log.info("launched Dagster run %s of %s", run_id, self.job)
        if not wait:
            return client.status(run_id)
        deadline = time.monotonic() + timeout.total_seconds()
        while True:
            run = client.status(run_id)
            if run.state != "running":
                break
            if time.monotonic() > deadline:
                raise OrchestrationError(f"run {run_id} of {self.job} still runs after {timeout}")
            time.sleep(self.poll_seconds)
        if run.state != "success":
            raise OrchestrationError(f"Dagster run {run_id} of {self.job} failed: {run.url}")
        log.info("Dagster run %s of %s succeeded", run_id, self.job)
        return run

    def aliases(self) -> dict[str, str]:
        """``{alias: version}`` of the target's registered model in Unity Catalog (the same
        registry under either orchestrator); empty in a dry run."""
        self.runner.show(f"# champion and challenger of the {self.target} model")
        summary = self.runner.json(
            Command(("databricks", "bundle", "summary", "-t", self.target, "-o", "json"))
        )
        model = model_full_name(summary) if summary is not None else "<model_full_name>"
        answer = self.runner.json(
            Command(
                ("databricks", "registered-models", "get", model, "--include-aliases", "-o", "json")
            )
        )
        return model_aliases(answer or {})

    def latest(self) -> RunInfo | None:
        self.runner.show(f"# latest run of {self.job} in {self.target} from {self.orchestrator}")
        if self.orchestrator == "dagster":
            self.runner.show(f"POST $DAGSTER_GRAPHQL_URL runsOrError(pipelineName: {self.job})")
            if self.runner.dry_run:
                return None
            return DagsterGraphQL.from_env(self.env).latest(self.job)
        summary = self.runner.json(
            Command(("databricks", "bundle", "summary", "-t", self.target, "-o", "json"))
        )
        job_id = "<job id>"
        if summary is not None:
            jobs = (summary.get("resources") or {}).get("jobs") or {}
            if not (jobs.get(self.job) or {}).get("id"):
                raise OrchestrationError(f"bundle target {self.target} has no deployed {self.job}")
            job_id = str(jobs[self.job]["id"])
        # One page of one run: `databricks jobs list-runs` would page through every run.
        query = f"job_id={job_id}&limit=1&expand_tasks=true"
        listed = self.runner.json(
            Command(("databricks", "api", "get", f"/api/2.2/jobs/runs/list?{query}"))
        )
        runs = (listed or {}).get("runs") or []
        if not runs:
            return None
        run = databricks_run(runs[0])
        logs = {}
        for task in runs[0].get("tasks") or []:
            output = self.runner.json(
                Command(("databricks", "jobs", "get-run-output", str(task["run_id"]), "-o", "json"))
            )
            logs[task["task_key"]] = {
                k: (output or {}).get(k) for k in ("logs", "error", "error_trace")
            }
        run.metadata = logs
        return run

    def download(self, paths: Sequence[str], report_dir: Path) -> list[Path]:
        """Copy reports from UC Volumes next to the summary (they become the CI artifact)."""
        copied = []
        for path in paths:
            local = report_dir / Path(path).name
            self.runner.run(Command(("databricks", "fs", "cp", f"dbfs:{path}", str(local))))
            copied.append(local)
        return copied


def write_report(report_dir: Path, job: str, run: RunInfo | None, ok: bool, message: str) -> Path:
    """The watch result as JSON and Markdown; Markdown also goes to the GitHub job summary."""
    report_dir.mkdir(parents=True, exist_ok=True)
    record = {"job": job, "ok": ok, "message": message, "run": asdict(run) if run else None}
    (report_dir / f"{job}.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    lines = [f"### {job}: {'healthy' if ok else 'NEEDS ATTENTION'}", "", message, ""]
    if run is not None:
        lines += [f"- run: {run.url or run.run_id}", f"- state: {run.state}", ""]
        for asset, entries in sorted(run.metadata.items()):
            shown = {k: v for k, v in (entries or {}).items() if isinstance(v, int | float | str)}
            summary = ", ".join(f"{k}={str(v)[:80]}" for k, v in shown.items())
            lines.append(f"- {asset}: {summary}")
    markdown = report_dir / f"{job}.md"
    markdown.write_text("\n".join(lines) + "\n")
    summary_file = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary_file:
        with open(summary_file, "a", encoding="utf-8") as handle:
            handle.write(markdown.read_text())
    return markdown


def _has_champion(orchestration: Orchestration) -> bool:
    """Whether the model has a champion; when not, say so in the log and the job summary."""
    aliases = orchestration.aliases()
    if orchestration.runner.dry_run or "champion" in aliases:
        return True
    message = (
        f"{NO_CHAMPION}: the {orchestration.target} model has no champion yet, so "
        f"{orchestration.job} (which scores with it) was not launched. Run "
        f"`python scripts/promote_model.py bootstrap --target {orchestration.target}` (the "
        "promote-model workflow, action bootstrap; docs/deployment.md, 'The first model')"
    )
    log.warning("%s", message)
    summary_file = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary_file:
        with open(summary_file, "a", encoding="utf-8") as handle:
            handle.write(f"### {orchestration.job}: not run\n\n{message}\n")
    return False


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    commands = parser.add_subparsers(dest="command", required=True)
    launch = commands.add_parser("launch", help="start a run through the orchestrator of record")
    watch = commands.add_parser("watch", help="check the latest run; launches nothing")
    for sub in (launch, watch):
        sub.add_argument("--target", choices=TARGETS, required=True)
        sub.add_argument("--job", required=True, help="job name, the same in Dagster and bundle")
        sub.add_argument("--dry-run", action="store_true", help="print what would be called")
    launch.add_argument("--wait", action="store_true", help="wait for the run to finish")
    launch.add_argument("--git-sha", help="commit recorded as the run's git_sha tag")
    launch.add_argument("--timeout-minutes", type=float, default=180.0)
    launch.add_argument("--source-path", help="claims file raw_claims ingests (run config)")
    launch.add_argument("--mapping", help="mapping for --source-path (packaged name or YAML)")
    launch.add_argument(
        "--skip-without-champion",
        action="store_true",
        help="launch nothing (and succeed) while the model has no champion; say so",
    )
    watch.add_argument("--max-age-hours", type=float, required=True)
    watch.add_argument("--report-dir", type=Path, default=Path("orchestrator-report"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

    orchestration = Orchestration(args.target, args.job, Runner(dry_run=args.dry_run))
    try:
        if args.command == "launch":
            if args.skip_without_champion and not _has_champion(orchestration):
                return 0
            orchestration.launch(
                git_sha=args.git_sha,
                wait=args.wait,
                timeout=timedelta(minutes=args.timeout_minutes),
                run_config=ingest_run_config(args.source_path, args.mapping),
            )
            return 0
        run = orchestration.latest()
        if args.dry_run:
            return 0
        ok, message = verdict(
            run, now=datetime.now(UTC), max_age=timedelta(hours=args.max_age_hours)
        )
        args.report_dir.mkdir(parents=True, exist_ok=True)
        if run is not None:
            orchestration.download(report_paths(run.metadata), args.report_dir)
        write_report(args.report_dir, args.job, run, ok, message)
        (log.info if ok else log.error)("%s: %s", args.job, message)
        return 0 if ok else 1
    except (OrchestrationError, CommandError, subprocess.CalledProcessError) as exc:
        log.error("%s %s in %s: %s", args.command, args.job, args.target, exc)
        return 1
    except requests.RequestException as exc:
        log.error("Dagster GraphQL unreachable: %s", exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
