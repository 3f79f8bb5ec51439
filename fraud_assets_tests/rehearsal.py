"""Rehearse a staging deploy and a week of operation, offline: ``make rehearse``.

Boots the staging configuration exactly as deployed (``deploy/helm/values-staging.yaml``'s
environment plus what ``scripts/deploy.py`` hands the Dagster deployment) against the
loopback Databricks emulator, performs the deploy's SDK-side steps, then plays a simulated
week by driving the code location's own schedules and sensors tick by tick, as Dagster's
daemon would: a claims file lands on the landing Volume every day, without outcomes, as a
claims feed does; twice in the week the outcomes of earlier days land as adjudications
files; one file is malformed, two days of drifted claims start a drift episode that retrains
and promotes, the weekly fairness audit judges the champion's decisions whose outcomes
arrived, and an operator rolls the champion back.

It asserts what an operator needs from that week: no landed row lost or duplicated, no
synthetic claim in staging, every alert and drift issue delivered exactly once, the serving
endpoint always serving the champion, every outcome landed once, the audit judging batch
decisions on outcomes that arrived after them, and its report present as a PDF. The wall time
is printed at the end; the exit code is non-zero when any assertion fails.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "scripts"))  # deploy.py, promote_model.py, drift_issue.py

import drift_issue  # noqa: E402

from fraud_assets_tests.emulator import DatabricksEmulator  # noqa: E402
from fraud_assets_tests.emulator.fixtures import SENTINEL_TOKEN  # noqa: E402

TARGET = "staging"
# The simulated week starts on a Monday at midnight, in the schedules' timezone.
WEEK_START = date(2026, 11, 30)
DAYS = 7
DAILY_CLAIMS = 300
HISTORY_CLAIMS = 15000
FEED_SEED = 7
DRIFT_DAYS = (3, 4)
MALFORMED_DAY = 2
ROLLBACK_DAY = 6
# Outcomes arrive in batches, days after the claims: on day 3 Monday's and Tuesday's, on
# day 5 Wednesday's and Thursday's (day: the days whose claims they adjudicate).
OUTCOME_DAYS = {3: (0, 1), 5: (2, 3)}
REHEARSED_SHA = "0123456789abcdef0123456789abcdef01234567"
QUIET_LOGGERS = {"console": {"config": {"log_level": "ERROR"}}}


# --- what the deployment hands the code location --------------------------------------------


def helm_environment(target: str) -> dict[str, str]:
    """The plain ``env`` entries of the target's Helm values (secrets come separately)."""
    values = yaml.safe_load((REPO_ROOT / f"deploy/helm/values-{target}.yaml").read_text())
    (deployment,) = values["deployments"]
    return {str(e["name"]): str(e["value"]) for e in deployment.get("env") or []}


# --- recording fakes for what lies outside Databricks ---------------------------------------


class AlertInbox:
    """A webhook that records every alert POSTed to it (the alert sink's secret URL)."""

    def __init__(self) -> None:
        self.alerts: list[dict[str, Any]] = []
        inbox = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                inbox.alerts.append(json.loads(self.rfile.read(length) or b"{}"))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/hooks/alerts-secret-path"

    def __enter__(self) -> AlertInbox:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class _Issue:
    issue: drift_issue.Issue
    body: str
    labels: list[str]
    comments: list[str] = field(default_factory=list)
    open: bool = True


class IssueBoard:
    """GitHub issues of the repository, as the drift-monitor workflow sees them."""

    def __init__(self) -> None:
        self.issues: list[_Issue] = []

    def open_issues(self, label: str) -> list[drift_issue.Issue]:
        return [i.issue for i in self.issues if i.open and label in i.labels]

    def comments(self, number: int) -> list[str]:
        item = self.issues[number - 1]
        return [item.body, *item.comments]

    def create(self, *, title: str, body: str, labels: Sequence[str]) -> drift_issue.Issue:
        number = len(self.issues) + 1
        issue = drift_issue.Issue(number, title, f"https://github.test/issues/{number}")
        self.issues.append(_Issue(issue, body, list(labels)))
        return issue

    def comment(self, number: int, body: str) -> None:
        self.issues[number - 1].comments.append(body)

    def close(self, number: int) -> None:
        self.issues[number - 1].open = False


# --- the week's claim files ---------------------------------------------------------------


class ClaimFeed:
    """The claims an upstream system lands: one population over ninety days, in a random
    order (a day's file carries claims of any service date, as submissions do), split into a
    history file and one file per day of the week. The history is large beside a day, as in
    production, so provider and patient counts do not grow by a tenth a day. The drifted
    days come from the same population billed under drift, with their own claim ids."""

    def __init__(self) -> None:
        from fraud_assets.claims.synthetic import SHAPES, generate_claims

        def feed(drift: float, prefix: str) -> Any:
            frame = generate_claims(
                HISTORY_CLAIMS + DAILY_CLAIMS * DAYS,
                seed=FEED_SEED,
                drift=drift,
                start_date=WEEK_START - timedelta(days=90),
                period_days=90,
                id_prefix=prefix,
                shape=SHAPES["obvious"],
            )
            return frame.sample(frac=1.0, random_state=FEED_SEED)

        self.claims = feed(0.0, "C")
        self.drifted = feed(1.0, "D")

    def history(self) -> bytes:
        """The claims of the months before, adjudicated long ago: with their outcomes."""
        return _csv(self.claims.iloc[:HISTORY_CLAIMS])

    def day(self, day: int) -> bytes:
        """A day's claims as the claims system sends them: no outcome yet."""
        return _csv(self._day(day).assign(is_fraud=None))

    def outcomes(self, days: Sequence[int], *, adjudicated: date) -> bytes:
        """The outcomes of ``days``' claims (an adjudications file)."""
        import pandas as pd

        claims = pd.concat([self._day(day) for day in days])
        labelled = claims.loc[claims["is_fraud"].notna(), ["claim_id", "is_fraud"]]
        return _csv(labelled.assign(adjudicated_at=adjudicated.isoformat()))

    def _day(self, day: int) -> Any:
        start = HISTORY_CLAIMS + DAILY_CLAIMS * day
        frame = self.drifted if day in DRIFT_DAYS else self.claims
        return frame.iloc[start : start + DAILY_CLAIMS]


def _csv(frame: Any) -> bytes:
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, date_format="%Y-%m-%d")
    return buffer.getvalue().encode()


def malformed_csv() -> bytes:
    """A file whose columns match no mapping: an export with the wrong layout."""
    return b"member,billed,when\nM1,12.50,yesterday\nM2,oops,today\n"


# --- driving Dagster as its daemon would ----------------------------------------------------


@dataclass
class Tick:
    at: datetime
    source: str
    run_ids: list[str]
    skipped: str | None = None


@dataclass
class Week:
    """Everything the simulated week produced, for the assertions."""

    ticks: list[Tick] = field(default_factory=list)
    runs: list[tuple[str, str, bool]] = field(default_factory=list)  # job, run id, success
    endpoint_mismatches: list[str] = field(default_factory=list)
    serving_deployed: bool = False
    champions: list[tuple[str, str, str | None]] = field(default_factory=list)  # job, source, v
    landed_files: dict[str, int] = field(default_factory=dict)  # path -> rows in the file
    outcome_files: dict[str, int] = field(default_factory=dict)  # path -> outcomes in it
    malformed_files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class Daemon:
    """Schedules and sensors evaluated tick by tick; their run requests executed in order."""

    def __init__(self, defs: Any, instance: Any, week: Week) -> None:
        self.defs = defs
        self.instance = instance
        self.week = week
        self.cursors: dict[str, str | None] = {}
        self.run_keys: set[tuple[str, str]] = set()
        self.repository = defs.get_repository_def()
        # Called with (job name, run id) after every run: the week's observers.
        self.after_run: list[Callable[[str, str], None]] = []

    def schedules_due(self, start: datetime, end: datetime) -> list[tuple[Any, datetime]]:
        from dagster._utils.schedules import cron_string_iterator

        due = []
        for schedule in self.repository.schedule_defs:
            ticks = cron_string_iterator(
                start.timestamp(), schedule.cron_schedule, schedule.execution_timezone
            )
            for tick in ticks:
                if tick > end:
                    break
                if tick > start:
                    due.append((schedule, tick))
        return sorted(due, key=lambda pair: pair[1])

    def tick_schedule(self, schedule: Any, at: datetime) -> None:
        from dagster import build_schedule_context

        with build_schedule_context(
            instance=self.instance,
            scheduled_execution_time=at,
            repository_def=self.repository,
            resources=self.defs.resources,
        ) as context:
            data = schedule.evaluate_tick(context)
        self._handle(schedule.name, at, data.run_requests or [], data.skip_message)

    def tick_sensors(self, at: datetime) -> None:
        from dagster import build_sensor_context

        for sensor in self.repository.sensor_defs:
            with build_sensor_context(
                instance=self.instance,
                cursor=self.cursors.get(sensor.name),
                definitions=self.defs,
                resources=self.defs.resources,
                sensor_name=sensor.name,
            ) as context:
                data = sensor.evaluate_tick(context)
            self.cursors[sensor.name] = data.cursor
            self._handle(sensor.name, at, data.run_requests or [], data.skip_message)

    def _handle(
        self, source: str, at: datetime, requests: Sequence[Any], skipped: str | None
    ) -> None:
        tick = Tick(at, source, [], skipped)
        for request in requests:
            if request.run_key is not None:
                if (source, request.run_key) in self.run_keys:
                    continue  # the daemon drops a repeated run key
                self.run_keys.add((source, request.run_key))
            tick.run_ids.append(self.execute(request, source))
        if tick.run_ids or tick.skipped:
            self.week.ticks.append(tick)

    def execute(self, request: Any, source: str) -> str:
        job_name = request.job_name or self._job_of(source)
        job = self.defs.resolve_job_def(job_name)
        tags = {**request.tags, "fraud_assets/rehearsal": source}
        # Step logs stay in the run's event log; the rehearsal prints one line per run.
        run_config = {**(request.run_config or {}), "loggers": QUIET_LOGGERS}
        started = time.monotonic()
        result = job.execute_in_process(
            run_config=run_config,
            instance=self.instance,
            tags=tags,
            asset_selection=request.asset_selection,
            raise_on_error=False,
        )
        log(
            f"  {job_name} from {source}: {'success' if result.success else 'FAILURE'} "
            f"in {time.monotonic() - started:.0f} s ({result.run_id[:8]})"
        )
        self.week.runs.append((job_name, result.run_id, result.success))
        for observer in self.after_run:
            observer(job_name, result.run_id)
        return result.run_id

    def _job_of(self, source: str) -> str:
        for schedule in self.repository.schedule_defs:
            if schedule.name == source:
                return schedule.job_name
        for sensor in self.repository.sensor_defs:
            if sensor.name == source:
                return sensor.job_name
        raise KeyError(source)


STARTED = time.monotonic()


def log(message: str) -> None:
    sys.stdout.write(f"[{time.monotonic() - STARTED:7.1f} s] {message}\n")
    sys.stdout.flush()


@contextmanager
def staging_environment(
    root: Path, emulator: DatabricksEmulator, inbox: AlertInbox, handed: Mapping[str, str]
) -> Iterator[dict[str, str]]:
    """The code location's environment as deployed: the Helm values with what the deploy
    handed it, plus the secrets the Kubernetes secret supplies."""
    env = dict(handed)
    env.update(
        {
            "FRAUD_HOME": str(root / "fraud_home"),
            "DAGSTER_HOME": str(root / "dagster_home"),
            "DATABRICKS_HOST": emulator.host,
            "DATABRICKS_TOKEN": SENTINEL_TOKEN,
            "FRAUD_ALERT_SINK": "webhook",
            "FRAUD_ALERT_WEBHOOK_URL": inbox.url,
            # The emulator answers at once; a workspace needs the 5 s default.
            "FRAUD_DATABRICKS__POLL_INTERVAL_SECONDS": "0.5",
            "FRAUD_DATABRICKS__FORWARD_STDIO": "false",
        }
    )
    saved = {
        k: v for k, v in os.environ.items() if k.startswith(("FRAUD_", "DATABRICKS_", "DAGSTER_"))
    }
    for key in saved:
        del os.environ[key]
    os.environ.update(env)
    try:
        yield env
    finally:
        for key in env:
            os.environ.pop(key, None)
        os.environ.update(saved)


def workspace_client(emulator: DatabricksEmulator) -> Any:
    from databricks.sdk import WorkspaceClient

    return WorkspaceClient(host=emulator.host, token=SENTINEL_TOKEN)


def emulator_upload(emulator: DatabricksEmulator, path: str, data: bytes) -> None:
    """Land a file on a Volume through the Files API, as an upstream system would."""
    workspace_client(emulator).files.upload(path, io.BytesIO(data), overwrite=False)


def _landing_volume(settings: Any) -> str:
    from fraud_assets.claims.landing import landing_location

    return landing_location(settings)


def _land(emulator: DatabricksEmulator, path: str, data: bytes, week: Week, note: str) -> None:
    emulator_upload(emulator, path, data)
    rows = data.count(b"\n") - 1
    week.landed_files[path] = rows
    log(f"landed {path} ({rows} claims{note})")


def drift_report(instance: Any, run_id: str) -> dict[str, Any]:
    """What ``scripts/orchestrate.py watch`` writes for a drift_monitoring_job run."""
    from dagster import AssetKey

    from fraud_assets import keys

    record = instance.get_run_record_by_id(run_id)
    metadata: dict[str, Any] = {}
    for key in (keys.FRAUD_SCORES, keys.PSI_REPORT):
        event = instance.get_latest_materialization_event(AssetKey(key))
        if event is not None and event.run_id == run_id and event.asset_materialization:
            metadata[key] = {
                k: getattr(v, "value", v) for k, v in event.asset_materialization.metadata.items()
            }
    return {
        "job": record.dagster_run.job_name,
        "run": {
            "run_id": run_id,
            "state": "success" if record.dagster_run.is_success else "failure",
            "started_at": str(record.start_time),
            "metadata": metadata,
        },
    }


def _drift_issue_observer(
    instance: Any, board: IssueBoard, target: str
) -> Callable[[str, str], None]:
    """drift-monitor.yml: after each drift_monitoring_job run, sync the episode's issue."""
    from fraud_assets import keys

    def observe(job_name: str, run_id: str) -> None:
        if job_name != keys.DRIFT_MONITORING_JOB:
            return
        action = drift_issue.sync_drift_issue(
            board, target=target, report=drift_report(instance, run_id)
        )
        if action != "nothing":
            log(f"  drift-monitor workflow: {action} the drift issue")

    return observe


def _endpoint_observer(
    emulator: DatabricksEmulator, settings: Any, week: Week
) -> Callable[[str, str], None]:
    """After every run, the endpoint must serve the registry's champion."""

    def observe(job_name: str, run_id: str) -> None:
        champion = _champion(settings)
        if not week.champions or week.champions[-1][2] != champion:
            week.champions.append((job_name, run_id, champion))
            log(f"  champion is now v{champion}")
        if not week.serving_deployed:
            return  # the first deploy creates the endpoint once a champion exists
        served = _served_champion(emulator, settings)
        if champion is not None and served != champion:
            week.endpoint_mismatches.append(
                f"after {job_name} {run_id[:8]}: champion v{champion}, endpoint serves {served}"
            )

    return observe


def _champion(settings: Any) -> str | None:
    from fraud_assets.ml import registry

    version = registry.alias_version(
        _registry_client(settings), settings.registered_model_name, registry.CHAMPION
    )
    return None if version is None else str(version.version)


def _served_champion(emulator: DatabricksEmulator, settings: Any) -> str | None:
    """The version the endpoint's champion entity serves, if it takes most traffic."""
    from fraud_assets.tasks._serving import endpoint_name

    served = emulator.served_versions(endpoint_name(settings))
    champion = served.get("champion")
    if champion is None or champion.traffic_percentage < 50:
        return f"no champion entity with most traffic: {served}"
    return champion.version


def _reports_folder(emulator: DatabricksEmulator, settings: Any) -> Path:
    """Where the emulator keeps the reports Volume's files."""
    reports = Path(settings.reports_path).as_posix()
    return emulator.fuse_root / reports.removeprefix("/")


def _rows_by_source(store: Any, table: str) -> Counter[str]:
    from fraud_assets.claims.schema import SOURCE_COLUMN

    if not store.exists(table):
        return Counter()
    column = store.read_arrow(table).column(SOURCE_COLUMN).to_pylist()
    return Counter(str(value) for value in column)


def _latest_metadata(instance: Any, asset: str) -> dict[str, Any]:
    """The newest materialization's metadata of ``asset``, as plain values."""
    from dagster import AssetKey

    event = instance.get_latest_materialization_event(AssetKey(asset))
    if event is None or event.asset_materialization is None:
        return {}
    return {k: getattr(v, "value", v) for k, v in event.asset_materialization.metadata.items()}


def _verdicts(
    week: Week,
    board: IssueBoard,
    inbox: AlertInbox,
    settings: Any,
    emulator: DatabricksEmulator,
    instance: Any,
) -> list[str]:
    """Every way the week failed an operator; empty when it did not."""
    from fraud_assets.lakehouse import (
        ADJUDICATIONS,
        CLAIMS,
        CLAIMS_QUARANTINE,
        RAW_CLAIMS,
        table_store,
    )

    failures: list[str] = []
    store = table_store(settings)
    bronze = _rows_by_source(store, RAW_CLAIMS)
    silver = _rows_by_source(store, CLAIMS)
    quarantine = _rows_by_source(store, CLAIMS_QUARANTINE)
    log(f"bronze rows by source: {dict(bronze)}")
    synthetic = [source for source in bronze if source.startswith("synthetic://")]
    if synthetic:
        failures.append(f"staging landed synthetic claims: {synthetic}")
    for path, rows in week.landed_files.items():
        if bronze.get(path, 0) != rows:
            failures.append(f"{path}: {rows} rows in the file, {bronze.get(path, 0)} in bronze")
        if silver.get(path, 0) + quarantine.get(path, 0) != rows:
            failures.append(
                f"{path}: {rows} rows landed, {silver.get(path, 0)} in silver + "
                f"{quarantine.get(path, 0)} quarantined"
            )
    for path in week.malformed_files:
        if bronze.get(path):
            failures.append(f"the malformed file {path} reached bronze")
    unknown = set(bronze) - set(week.landed_files)
    if unknown:
        failures.append(f"bronze holds rows from files nobody landed: {sorted(unknown)}")
    outcomes = _rows_by_source(store, ADJUDICATIONS)
    log(f"adjudications rows by source: {dict(outcomes)}")
    if outcomes != Counter(week.outcome_files):
        failures.append(
            f"adjudications files landed {dict(week.outcome_files)}, table holds {dict(outcomes)}"
        )

    deliveries = Counter(
        (a.get("kind"), a.get("run_id"), a.get("asset"), a.get("check")) for a in inbox.alerts
    )
    for key, count in deliveries.items():
        if count > 1:
            failures.append(f"alert {key} delivered {count} times")
    log(f"alerts delivered: {len(inbox.alerts)}")
    for alert in inbox.alerts:
        log(f"  alert: {alert.get('title')} ({alert.get('asset')}.{alert.get('check')})")
    failed_runs = [(job, run) for job, run, ok in week.runs if not ok]
    log(f"runs: {len(week.runs)}, failed: {failed_runs}")
    if failed_runs:
        failures.append(f"{len(failed_runs)} run(s) failed: {failed_runs}")

    from fraud_assets import keys
    from fraud_assets.checks import CHECK_FEATURE_DRIFT, CHECK_NO_FILE_QUARANTINED

    quarantine_alerts = [a for a in inbox.alerts if a.get("check") == CHECK_NO_FILE_QUARANTINED]
    if len(quarantine_alerts) != len(week.malformed_files):
        failures.append(
            f"{len(week.malformed_files)} malformed file(s), "
            f"{len(quarantine_alerts)} quarantine alert(s)"
        )
    if not any(a.get("check") == CHECK_FEATURE_DRIFT for a in inbox.alerts):
        failures.append("the drift episode raised no feature_drift alert")

    moves = [(job, version) for job, _, version in week.champions]
    log(f"champion timeline: {moves}")
    retrained = [i for i, (job, _) in enumerate(moves) if job == keys.RETRAINING_JOB]
    if len(retrained) < 2:
        failures.append("the drift episode's retrain did not move the champion")
    elif moves[-1] != (keys.ROLLBACK_JOB, moves[retrained[-1] - 1][1]):
        failures.append(
            f"the rollback did not return the champion to v{moves[retrained[-1] - 1][1]}: {moves}"
        )

    audit = _latest_metadata(instance, keys.CHAMPION_FAIRNESS_AUDIT)
    log(
        f"audit of champion v{audit.get('champion_version')}: {audit.get('verdict')}, "
        f"{audit.get('labelled_decisions')} of {audit.get('batch_decisions')} batch decisions "
        "judged on outcomes that arrived after them"
    )
    if not audit.get("batch_decisions") or not audit.get("labelled_decisions"):
        failures.append(f"the audit judged no batch decision on a late outcome: {audit}")

    pdfs = sorted(_reports_folder(emulator, settings).glob("*.pdf"))
    if not pdfs or not pdfs[-1].read_bytes().startswith(b"%PDF-"):
        failures.append(f"no audit PDF on the reports Volume ({settings.reports_path})")
    else:
        log(f"audit report: {pdfs[-1].name} ({pdfs[-1].stat().st_size} bytes)")

    drift_issues = [i for i in board.issues if drift_issue.LABEL in i.labels]
    if len(drift_issues) != 1:
        failures.append(f"{len(drift_issues)} drift issues opened for one drift episode")
    failures += week.endpoint_mismatches
    return failures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--keep", type=Path, help="run in this folder and keep it")
    args = parser.parse_args(argv)
    root = args.keep or Path(tempfile.mkdtemp(prefix="fraud-rehearsal-"))
    root.mkdir(parents=True, exist_ok=True)
    raise SystemExit(rehearse(root))


def build_wheel(dist: Path) -> Path:
    """The release's wheel, built as the bundle's artifact build does."""
    import subprocess

    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(REPO_ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = dist.glob("fraud_assets-*.whl")
    return wheel


def deploy_release(emulator: DatabricksEmulator, root: Path) -> dict[str, str]:
    """The deploy's workspace side: ``bundle deploy`` (jobs, Volumes, grants), then
    ``scripts/deploy.py``'s wheel step; returns what the code location is handed."""
    import deploy as deploy_script
    from fraud_assets_tests.emulator.bundle import deploy as bundle_deploy
    from fraud_assets_tests.emulator.bundle import deploy_volumes

    volumes = deploy_volumes(emulator, TARGET)
    jobs = bundle_deploy(emulator, TARGET, files="resources/*.yml")
    log(f"bundle deploy -t {TARGET}: {len(jobs)} jobs, Volumes {sorted(volumes)}")
    wheel = build_wheel(root / "dist")
    handoff = deploy_script.publish_release(
        workspace_client(emulator), TARGET, wheel=wheel, git_sha=REHEARSED_SHA
    )
    log(f"wheel step: {wheel.name} -> {handoff.wheel_path}")
    return handoff.code_location_environment()


def deploy_serving(emulator: DatabricksEmulator, settings: Any) -> None:
    """``scripts/deploy.py --only serving`` once a champion exists: the serving bundle."""
    from fraud_assets.databricks.serving_endpoint import serving_plan
    from fraud_assets.tasks._serving import endpoint_name, registry_aliases

    configure = _registry_client(settings)
    plan = serving_plan(
        registry_aliases(configure, settings.registered_model_name),
        challenger_share=settings.serving.challenger_traffic,
    )
    if plan is None:
        raise AssertionError("the bootstrap left no champion to serve")

    def entity(name: str, version: str) -> dict[str, Any]:
        return {
            "name": name,
            "entity_name": settings.registered_model_name,
            "entity_version": version,
            "workload_size": "Small",
            "scale_to_zero_enabled": name != "champion",
        }

    emulator.create_serving_endpoint(
        endpoint_name(settings),
        {
            "served_entities": [
                entity("champion", plan.champion_version),
                entity("challenger", plan.challenger_version),
            ],
            "traffic_config": {
                "routes": [
                    {
                        "served_entity_name": "champion",
                        "traffic_percentage": plan.champion_traffic_percentage,
                    },
                    {
                        "served_entity_name": "challenger",
                        "traffic_percentage": plan.challenger_traffic_percentage,
                    },
                ]
            },
        },
    )
    log(f"serving bundle deployed: {endpoint_name(settings)} serves {plan.describe()}")


def _registry_client(settings: Any) -> Any:
    from fraud_assets.ml.tracking import configure_mlflow, mlflow_client

    configure_mlflow(settings)
    return mlflow_client()


class RehearsalOrchestration:
    """``scripts/orchestrate.py``'s orchestrator of record, as the bootstrap uses it: runs
    go through the rehearsal's daemon, aliases come from the registry."""

    orchestrator = "dagster"

    def __init__(self, daemon: Daemon, settings: Any, job: str) -> None:
        self.daemon, self.settings, self.job = daemon, settings, job

    def aliases(self) -> dict[str, str]:
        from fraud_assets.tasks._serving import registry_aliases

        return registry_aliases(
            _registry_client(self.settings), self.settings.registered_model_name
        )

    def launch(self, *, run_config: Any = None, tags: Any = None, **_: Any) -> Any:
        from dagster import RunRequest

        run_id = self.daemon.execute(
            RunRequest(job_name=self.job, run_config=run_config or {}, tags=tags or {}),
            "promote-model workflow",
        )
        return type("Run", (), {"run_id": run_id, "url": None})()


def bootstrap(daemon: Daemon, settings: Any) -> str | None:
    """``scripts/promote_model.py bootstrap``: the environment's first champion."""
    import promote_model
    from _commands import Runner

    promotion = promote_model.Promotion(
        target=TARGET, runner=Runner(dry_run=False), mode=settings.promotion.mode
    )
    promotion._orchestration = lambda job: RehearsalOrchestration(daemon, settings, job)  # type: ignore[method-assign]
    return promotion.bootstrap(source_path=None, mapping=None, approval=None)


def rehearse(root: Path) -> int:
    """Deploy, play the week, check it; 0 when every assertion held."""
    week = Week()
    board = IssueBoard()
    from fraud_assets.local.spark_server import shared_spark

    with (
        AlertInbox() as inbox,
        DatabricksEmulator(root / "workspace", token=SENTINEL_TOKEN) as emulator,
        # The cluster's Spark: every task of the week connects to it, as tasks on a running
        # cluster (or serverless, through Spark Connect) do, instead of starting their own.
        shared_spark() as spark_url,
    ):
        log(f"emulator at {emulator.host}, its Spark at {spark_url}; rehearsal folder {root}")
        handed = deploy_release(emulator, root)
        with staging_environment(root, emulator, inbox, handed):
            from dagster import DagsterInstance, RunRequest

            from fraud_assets import keys
            from fraud_assets.definitions import defs
            from fraud_assets.settings import get_settings

            settings = get_settings()
            log(
                f"code location: target {settings.target}, compute {settings.compute}, "
                f"launch style {settings.databricks.launch_style}"
            )
            landing = _landing_volume(settings)
            (root / "dagster_home").mkdir(exist_ok=True)
            (root / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
            instance = DagsterInstance.local_temp(tempdir=str(root / "dagster_home"))
            daemon = Daemon(defs, instance, week)
            daemon.after_run.append(_drift_issue_observer(instance, board, settings.target))
            daemon.after_run.append(_endpoint_observer(emulator, settings, week))
            zone = ZoneInfo(settings.schedules.timezone)
            clock = datetime(WEEK_START.year, WEEK_START.month, WEEK_START.day, tzinfo=zone)

            # The week before: history lands, the first champion is bootstrapped and served.
            feed = ClaimFeed()
            _land(emulator, f"{landing}/claims_history.csv", feed.history(), week, "")
            daemon.tick_sensors(clock)
            log(f"bootstrap: first champion v{bootstrap(daemon, settings)}")
            deploy_serving(emulator, settings)
            week.serving_deployed = True

            for hour in range(1, DAYS * 24 + 1):
                now = clock + timedelta(hours=hour)
                day, at = divmod(hour, 24)
                if at == 1:
                    today = WEEK_START + timedelta(days=day)
                    drifted = day in DRIFT_DAYS
                    _land(
                        emulator,
                        f"{landing}/claims_{today.isoformat()}.csv",
                        feed.day(day),
                        week,
                        ", drifted" if drifted else "",
                    )
                    if day in OUTCOME_DAYS:
                        path = f"{landing}/adjudications/outcomes_{today.isoformat()}.csv"
                        data = feed.outcomes(
                            OUTCOME_DAYS[day], adjudicated=today - timedelta(days=1)
                        )
                        emulator_upload(emulator, path, data)
                        week.outcome_files[path] = data.count(b"\n") - 1
                        log(f"landed {path} ({week.outcome_files[path]} outcomes)")
                    if day == MALFORMED_DAY:
                        path = f"{landing}/claims_{today.isoformat()}_export.csv"
                        emulator_upload(emulator, path, malformed_csv())
                        week.malformed_files.append(path)
                        log(f"landed {path} (malformed)")
                daemon.tick_sensors(now)
                for schedule, tick in daemon.schedules_due(now - timedelta(hours=1), now):
                    log(f"{tick:%a %H:%M} {schedule.name}")
                    daemon.tick_schedule(schedule, tick)
                    daemon.tick_sensors(now)
                if day == ROLLBACK_DAY and at == 12:
                    log(f"{now:%a %H:%M} an operator rolls the champion back")
                    daemon.execute(RunRequest(job_name=keys.ROLLBACK_JOB), "operator")
                    daemon.tick_sensors(now)
            failures = _verdicts(week, board, inbox, settings, emulator, instance)
    for line in failures:
        log(f"FAILED: {line}")
    verdict = "passed" if not failures else "FAILED"
    log(f"rehearsal {verdict}; wall time {time.monotonic() - STARTED:.0f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    main()
