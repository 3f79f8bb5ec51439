"""Run a job of the code location with one progress line per step and a summary at the end.

    python -m fraud_assets.local.run                # the fraud_pipeline job
    python -m fraud_assets.local.run fraud_pipeline --audit-report
    python -m fraud_assets.local.run fairness_audit_job

The run goes through the persistent Dagster instance in ``$DAGSTER_HOME`` (default
``$FRAUD_HOME/dagster_home``) with the job's own multiprocess executor, exactly like
``dagster job execute``, so ``dagster dev`` shows it afterwards. Dagster's, Spark's and the
steps' own log lines go to ``$FRAUD_HOME/logs/<job>-<run id>.log`` (``--verbose`` keeps them
on the terminal); the terminal gets step starts, successes and failures with their duration,
each step's progress messages, failed checks, and then the tables, the model version, every
gate's verdict and where to look next. The exit code is 1 when the run fails.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from dagster import (
    DagsterEventType,
    DagsterInstance,
    EventLogEntry,
    RunsFilter,
    execute_job,
)
from dagster._core.definitions.reconstruct import ReconstructableRepository

from fraud_assets import keys
from fraud_assets.checks import promotion_gates
from fraud_assets.governance.policy import pinned_policy
from fraud_assets.local.demo import persistent_instance
from fraud_assets.local.spark_server import local_run_spark
from fraud_assets.settings import FraudSettings, get_settings

DEFINITIONS_MODULE = "fraud_assets.definitions"
RUN_TAG = "fraud_assets/runner"
POLL_SECONDS = 0.5
# Step messages the summary already covers (every task logs its materializations and
# verdicts; failed checks get their own line) and those of the Pipes machinery itself.
_QUIET_PREFIXES = ("[pipes]", "materialized ", "check ")
# Dagster's message for a step whose upstream failed or whose blocking check did.
_NOT_EXECUTING = "Not executing."
# The engine event Dagster logs when a Pipes process closes with an exception: the task's own
# error (e.g. a SourceError), where the step failure says only "Error occurred while ...".
_PIPES_EXCEPTION = "[pipes] external process pipes closed with exception"


@dataclass
class RunOutcome:
    """What the summary needs, read back from the run's event log."""

    run_id: str
    success: bool
    seconds: float
    materializations: dict[str, dict[str, Any]] = field(default_factory=dict)
    checks: dict[tuple[str, str], tuple[bool, str]] = field(default_factory=dict)
    failed_steps: list[str] = field(default_factory=list)
    # Every check the job would evaluate; those missing from ``checks`` did not run.
    planned_checks: list[tuple[str, str]] = field(default_factory=list)


class ProgressPrinter:
    """Turns event log entries into one short line each, on the terminal."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.started: dict[str, float] = {}
        self.causes: dict[str, str] = {}  # step -> the error its Pipes process raised

    def write(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()

    def entry(self, entry: EventLogEntry) -> None:
        step = entry.step_key or ""
        event = entry.dagster_event
        if event is None:
            message = entry.user_message.strip()
            if not step or not message or message.startswith(_QUIET_PREFIXES):
                return
            if message.endswith(_NOT_EXECUTING):
                reason = message.removesuffix(_NOT_EXECUTING).rstrip(". ")
                self.write(f"{_clock(entry.timestamp)} · {step} not run: {reason}")
            else:
                self.write(f"{'':9}{step}: {_first_line(message)}")
            return
        kind = event.event_type
        stamp = _clock(entry.timestamp)
        if kind == DagsterEventType.STEP_START:
            self.started[step] = entry.timestamp
            self.write(f"{stamp} ▶ {step}")
        elif kind == DagsterEventType.STEP_SUCCESS:
            self.write(f"{stamp} ✔ {step} ({self._elapsed(step, entry.timestamp)})")
        elif kind == DagsterEventType.ENGINE_EVENT:
            error = event.engine_event_data.error if event.engine_event_data else None
            if error is not None and (event.message or "").startswith(_PIPES_EXCEPTION):
                self.causes[step] = _one_line(error.message)
        elif kind == DagsterEventType.STEP_FAILURE:
            error = event.step_failure_data.error if event.step_failure_data else None
            why = self.causes.get(step) or (_one_line(error.message) if error else "failed")
            self.write(f"{stamp} ✘ {step} failed ({self._elapsed(step, entry.timestamp)}): {why}")
        elif kind == DagsterEventType.STEP_SKIPPED:
            self.write(f"{stamp} · {step} skipped: an upstream step or blocking check failed")
        elif kind == DagsterEventType.ASSET_CHECK_EVALUATION:
            evaluation = event.event_specific_data
            if evaluation is not None and not evaluation.passed:  # type: ignore[union-attr]
                severity = evaluation.severity.value  # type: ignore[union-attr]
                name = f"{evaluation.asset_key.to_user_string()}.{evaluation.check_name}"  # type: ignore[union-attr]
                self.write(f"{'':9}check {name} FAILED ({severity})")

    def _elapsed(self, step: str, now: float) -> str:
        started = self.started.get(step)
        return "?" if started is None else _duration(now - started)


class _Watcher(threading.Thread):
    """Follows the run tagged ``token`` in the event log until told to stop, then drains it."""

    def __init__(self, instance: DagsterInstance, token: str, printer: ProgressPrinter) -> None:
        super().__init__(daemon=True)
        self.instance = instance
        self.token = token
        self.printer = printer
        self.done = threading.Event()

    def run(self) -> None:
        run_id: str | None = None
        cursor: str | None = None
        while True:
            finished = self.done.is_set()
            if run_id is None:
                runs = self.instance.get_runs(RunsFilter(tags={RUN_TAG: self.token}), limit=1)
                run_id = runs[0].run_id if runs else None
            if run_id is not None:
                connection = self.instance.get_records_for_run(run_id, cursor=cursor)
                for record in connection.records:
                    self.printer.entry(record.event_log_entry)
                cursor = connection.cursor
            if finished:
                return
            self.done.wait(POLL_SECONDS)


def run_job(
    job_name: str,
    *,
    instance: DagsterInstance,
    out: TextIO,
    run_config: Mapping[str, Any] | None = None,
    log_path: Path | None = None,
    module: str = DEFINITIONS_MODULE,
) -> RunOutcome:
    """Execute ``job_name`` of ``module``'s ``defs`` while printing its progress to ``out``."""
    recon = ReconstructableRepository.for_module(
        module, "defs", working_directory=os.getcwd()
    ).get_reconstructable_job(job_name)
    token = uuid.uuid4().hex
    printer = ProgressPrinter(out)
    watcher = _Watcher(instance, token, printer)
    started = time.perf_counter()
    watcher.start()
    try:
        with _output_to(log_path):
            result = execute_job(
                recon,
                instance=instance,
                run_config=dict(run_config or {}),
                tags={RUN_TAG: token},
                raise_on_error=False,
            )
    finally:
        watcher.done.set()
        watcher.join()
    outcome = read_outcome(instance, result.run_id, result.success, time.perf_counter() - started)
    outcome.planned_checks = sorted(
        (key.asset_key.to_user_string(), key.name)
        for key in recon.get_definition().asset_layer.asset_graph.asset_check_keys
    )
    return outcome


def read_outcome(
    instance: DagsterInstance, run_id: str, success: bool, seconds: float
) -> RunOutcome:
    """Materialization metadata, check verdicts and failed steps of a finished run."""
    outcome = RunOutcome(run_id=run_id, success=success, seconds=seconds)
    records = instance.get_records_for_run(
        run_id,
        of_type={
            DagsterEventType.ASSET_MATERIALIZATION,
            DagsterEventType.ASSET_CHECK_EVALUATION,
            DagsterEventType.STEP_FAILURE,
        },
    ).records
    for record in records:
        entry = record.event_log_entry
        event = entry.dagster_event
        if event is None:
            continue
        if event.event_type == DagsterEventType.ASSET_MATERIALIZATION:
            materialization = event.step_materialization_data.materialization
            outcome.materializations[materialization.asset_key.to_user_string()] = {
                name: value.value for name, value in materialization.metadata.items()
            }
        elif event.event_type == DagsterEventType.ASSET_CHECK_EVALUATION:
            evaluation = event.event_specific_data
            outcome.checks[
                (evaluation.asset_key.to_user_string(), evaluation.check_name)  # type: ignore[union-attr]
            ] = (bool(evaluation.passed), evaluation.severity.value)  # type: ignore[union-attr]
        elif event.event_type == DagsterEventType.STEP_FAILURE and entry.step_key:
            outcome.failed_steps.append(entry.step_key)
    return outcome


def summary(
    outcome: RunOutcome,
    *,
    job_name: str,
    settings: FraudSettings,
    log_path: Path | None = None,
) -> list[str]:
    """The lines printed after the run: tables, model, gates, and where to look next."""
    verdict = "SUCCESS" if outcome.success else "FAILURE"
    lines = [
        "",
        f"{job_name} run {outcome.run_id}: {verdict} in {_duration(outcome.seconds)}",
    ]
    tables = [
        (asset, meta) for asset, meta in outcome.materializations.items() if "row_count" in meta
    ]
    if tables:
        lines.append("")
        lines.append("Tables (rows, Delta version):")
        width = max(len(asset) for asset, _ in tables)
        for asset, meta in tables:
            version = meta.get("delta_version")
            where = meta.get("table_location", "")
            count = int(meta["row_count"])
            noun = "row " if count == 1 else "rows"
            lines.append(f"  {asset:<{width}}  {count:>9,} {noun}  v{version}  {where}".rstrip())
    lines += _model_lines(outcome)
    lines += _gate_lines(outcome, settings)
    lines += _next_lines(outcome, settings=settings, log_path=log_path)
    return lines


def _model_lines(outcome: RunOutcome) -> list[str]:
    registered = outcome.materializations.get(keys.REGISTERED_MODEL)
    evaluation = outcome.materializations.get(keys.MODEL_EVALUATION)
    if registered is None and evaluation is None:
        return []
    lines = ["", "Model:"]
    if evaluation is not None:
        lines.append(
            f"  candidate {evaluation.get('candidate_model')}: holdout ROC AUC "
            f"{evaluation.get('roc_auc')}, PR AUC {evaluation.get('pr_auc')}"
        )
    if registered is None:
        lines.append("  not registered: a blocking gate stopped the run before registered_model")
        return lines
    name = registered.get("registered_model_name")
    version = registered.get("model_version")
    if registered.get("promoted"):
        lines.append(f"  {name} version {version}: alias champion (and challenger)")
    else:
        lines.append(
            f"  {name} version {version}: registered without an alias; champion stays version "
            f"{registered.get('champion_version')} ({registered.get('reason')})"
        )
    if registered.get("mlflow_model_version"):
        lines.append(f"  {registered['mlflow_model_version']}")
    return lines


def _gate_lines(outcome: RunOutcome, settings: FraudSettings) -> list[str]:
    """Every gate's verdict; a gate the run never reached (a stop upstream) is "not run"."""
    verdicts: dict[tuple[str, str], str] = {
        gate: "pass" if passed else f"FAIL {severity}"
        for gate, (passed, severity) in outcome.checks.items()
    }
    for gate in outcome.planned_checks:
        verdicts.setdefault(gate, "not run")
    if not verdicts:
        return []
    lines = ["", "Gates:"]
    width = max(len(f"{asset}.{check}") for asset, check in verdicts)
    promotion = promotion_gates(pinned_policy(settings.target).gates)
    for (asset, check), verdict in verdicts.items():
        role = " (blocks promotion)" if check in promotion.get(asset, []) else ""
        lines.append(f"  {asset + '.' + check:<{width}}  {verdict}{role}")
    return lines


def _next_lines(
    outcome: RunOutcome, *, settings: FraudSettings, log_path: Path | None
) -> list[str]:
    base = settings.dagster_base_url.rstrip("/")
    lines = [
        "",
        "Next:",
        f"  make dev        Dagster UI: {base}/runs/{outcome.run_id}",
        f"  make mlflow-ui  MLflow runs, model versions and aliases: {settings.mlflow_ui_url}",
    ]
    for label, asset_key in (
        ("fairness audit", keys.FAIRNESS_REPORT),
        ("champion audit", keys.CHAMPION_FAIRNESS_AUDIT),
    ):
        written = outcome.materializations.get(asset_key, {})
        reports = [written[k] for k in ("audit_report", "audit_report_pdf") if k in written]
        if reports:
            verdict = f"{written['verdict']}  " if "verdict" in written else ""
            lines.append(f"  {label}  {verdict}{reports[0]}")
            lines += [f"                  {path}" for path in reports[1:]]
    if log_path is not None:
        lines.append(f"  full log        {log_path}")
    return lines


@contextmanager
def _output_to(log_path: Path | None) -> Iterator[None]:
    """Send this process's and its children's stdout and stderr to ``log_path``.

    File descriptors, not ``sys.stdout``: the step processes and Spark inherit them.
    """
    if log_path is None:
        yield
        return
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with log_path.open("ab") as log_file:
        os.dup2(log_file.fileno(), 1)
        os.dup2(log_file.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def _clock(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).astimezone().strftime("%H:%M:%S")


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest:02d}s"


def _one_line(text: str) -> str:
    """An error as one short line, without the exception's module path."""
    flat = " ".join(re.sub(r"^[\w.]+\.(\w+(?:Error|Exception)): ", "", text.strip()).split())
    return flat if len(flat) <= 200 else flat[:197] + "..."


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= 160 else line[:157] + "..."


@contextmanager
def _spark_for(settings: FraudSettings, out: TextIO, args: argparse.Namespace) -> Iterator[str]:
    """One Spark Connect server for every Spark step of a local run (their JVM starts and cold
    first queries are most of their time); yields how the run's steps meet Spark."""
    if args.no_shared_spark:
        yield ""
        return
    started = time.perf_counter()
    with local_run_spark(settings) as url:
        yield (
            ""
            if url is None
            else f" (one shared Spark at {url}, up in {time.perf_counter() - started:.0f} s)"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fraud_assets.local.run",
        description="Run a job with per-step progress and a summary (runs show in dagster dev).",
    )
    parser.add_argument("job", nargs="?", default=keys.MAIN_JOB)
    parser.add_argument(
        "--audit-report",
        action="store_true",
        help="Also write the candidate's holdout fairness audit (HTML and PDF) under "
        "$FRAUD_HOME/reports; the champion's audit is written whenever it runs",
    )
    parser.add_argument(
        "--verbose", action="store_true", help="Keep every log line on the terminal"
    )
    parser.add_argument(
        "--no-shared-spark",
        action="store_true",
        help="Let each Spark step start its own local Spark instead of sharing one server",
    )
    args = parser.parse_args(argv)
    settings = get_settings()
    # A private copy of the terminal: fds 1 and 2 point at the log file during the run.
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8", buffering=1)
    run_config: dict[str, Any] = {}
    if args.audit_report:
        run_config = {"ops": {"fairness_report": {"config": {"write_audit_report": True}}}}
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    log_path = None if args.verbose else settings.fraud_home / "logs" / f"{args.job}-{stamp}.log"
    with persistent_instance(settings) as instance, _spark_for(settings, out, args) as spark:
        out.write(
            f"{args.job}: running on {settings.compute} compute{spark}, "
            f"FRAUD_HOME={settings.fraud_home}\n"
        )
        if log_path is not None:
            out.write(f"{args.job}: step logs go to {log_path}\n")
        out.flush()
        outcome = run_job(
            args.job, instance=instance, out=out, run_config=run_config, log_path=log_path
        )
    for line in summary(outcome, job_name=args.job, settings=settings, log_path=log_path):
        out.write(line + "\n")
    out.flush()
    return 0 if outcome.success else 1


if __name__ == "__main__":
    sys.exit(main())
