"""What every task entry point shares: parameters, settings, Pipes reporting, timing.

A task is a pure function ``(TaskContext) -> TaskResult``. ``run_task`` wraps it so the
same function runs when Dagster launches it through Pipes (locally or on Databricks), when
a bundle job runs it as a ``python_wheel_task``, and when a person runs ``python -m``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from dagster_pipes import (
    DAGSTER_PIPES_CONTEXT_ENV_VAR,
    DAGSTER_PIPES_MESSAGES_ENV_VAR,
    PipesContext,
    PipesContextLoader,
    PipesEnvVarParamsLoader,
    PipesMappingParamsLoader,
    PipesMessageWriter,
    PipesParamsLoader,
    open_dagster_pipes,
)

from fraud_assets.checks import Severity
from fraud_assets.checks import declared as check_declaration
from fraud_assets.settings import FraudSettings

# Bundle tasks pass these as named parameters; they override the environment.
_SETTINGS_FLAGS = ("target", "catalog", "schema_name", "model_name", "experiment_name")


@dataclass
class Materialization:
    """One asset a task wrote, with the metadata Dagster records for it."""

    asset_key: str
    metadata: dict[str, Any] = field(default_factory=dict)
    data_version: str | None = None


@dataclass
class CheckOutcome:
    """One asset check's verdict, computed where the data is."""

    asset_key: str
    check_name: str
    passed: bool
    severity: Severity = "ERROR"
    metadata: dict[str, Any] = field(default_factory=dict)
    description: str | None = None

    @classmethod
    def declared(
        cls,
        asset_key: str,
        check_name: str,
        *,
        passed: bool,
        severity: Severity | None = None,
        metadata: dict[str, Any] | None = None,
        description: str | None = None,
    ) -> CheckOutcome:
        """The outcome of a check declared in ``fraud_assets.checks``: an undeclared check is
        a KeyError, and the severity is the declared one (or, where a rule decides it, the
        verdict's ``severity``). ``description`` defaults to the declared one."""
        declaration = check_declaration(asset_key, check_name)
        return cls(
            asset_key,
            check_name,
            passed=passed,
            severity=declaration.severity_of(severity),
            metadata=metadata or {},
            description=description if description is not None else declaration.description,
        )


@dataclass
class TaskResult:
    materializations: list[Materialization] = field(default_factory=list)
    checks: list[CheckOutcome] = field(default_factory=list)


@dataclass
class TaskContext:
    """What a task function gets: settings, its parameters, a logger and the run id."""

    settings: FraudSettings
    params: dict[str, Any]
    log: logging.Logger
    run_id: str

    def param(self, name: str, default: Any = None) -> Any:
        return self.params.get(name, default)


def parse_params(argv: Sequence[str]) -> dict[str, Any]:
    """Turn ``--key value`` and ``--key=value`` pairs into a dict (dashes become underscores)."""
    params: dict[str, Any] = {}
    items = list(argv)
    i = 0
    while i < len(items):
        token = items[i]
        if not token.startswith("--"):
            raise SystemExit(f"unexpected argument {token!r}: parameters are --name value")
        key, eq, value = token[2:].partition("=")
        if not eq:
            if i + 1 < len(items) and not items[i + 1].startswith("--"):
                value = items[i + 1]
                i += 1
            else:
                value = "true"
        params[key.replace("-", "_")] = value
        i += 1
    return params


@dataclass(frozen=True)
class PipesBootstrap:
    """How to open Pipes in this process; ``None`` loaders mean the dagster-pipes defaults."""

    params_loader: PipesParamsLoader
    context_loader: PipesContextLoader | None = None
    message_writer: PipesMessageWriter | None = None


def pipes_bootstrap(params: dict[str, Any]) -> PipesBootstrap | None:
    """Find how Dagster launched this process, if it did, and drop the Pipes CLI arguments.

    Locally and on a new job cluster the bootstrap comes in environment variables; serverless
    and run-now launches pass ``--dagster-pipes-context``/``--dagster-pipes-messages`` task
    parameters instead. On Databricks (or the emulator) the context and message files live on
    DBFS or a Volume and are reached through the FUSE mounts.
    """
    context_arg = params.pop("dagster_pipes_context", None)
    messages_arg = params.pop("dagster_pipes_messages", None)
    loader: PipesParamsLoader
    if context_arg is not None or messages_arg is not None:
        if context_arg is None or messages_arg is None:
            raise SystemExit(
                "--dagster-pipes-context and --dagster-pipes-messages must be given together"
            )
        loader = PipesMappingParamsLoader(
            {
                DAGSTER_PIPES_CONTEXT_ENV_VAR: context_arg,
                DAGSTER_PIPES_MESSAGES_ENV_VAR: messages_arg,
            }
        )
    else:
        loader = PipesEnvVarParamsLoader()
    if not loader.is_dagster_pipes_process():
        return None
    from fraud_assets.databricks.pipes import FuseContextLoader, FuseMessageWriter, fuse_root

    root = fuse_root()
    if root is None:
        return PipesBootstrap(loader)
    return PipesBootstrap(loader, FuseContextLoader(root), FuseMessageWriter(root))


def _settings(params: Mapping[str, Any], payload: dict[str, Any] | None) -> FraudSettings:
    overrides = {k: params[k] for k in _SETTINGS_FLAGS if params.get(k)}
    if payload:
        return FraudSettings.from_payload({**payload, **overrides})
    return FraudSettings(**overrides)


def run_task(
    task: Callable[[TaskContext], TaskResult],
    argv: Sequence[str] | None = None,
    *,
    name: str,
) -> TaskResult:
    """Run ``task`` with parameters from the command line and, under Dagster, from Pipes."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    params = parse_params(sys.argv[1:] if argv is None else argv)
    bootstrap = pipes_bootstrap(params)
    if bootstrap is None:
        ctx = TaskContext(
            settings=_settings(params, None),
            params=params,
            log=logging.getLogger(f"fraud_assets.tasks.{name}"),
            run_id=str(params.get("run_id") or manual_run_id()),
        )
        return execute(task, ctx, None)
    with open_dagster_pipes(
        params_loader=bootstrap.params_loader,
        context_loader=bootstrap.context_loader,
        message_writer=bootstrap.message_writer,
    ) as pipes:
        ctx = launched_context(params, pipes.extras, log=pipes.log, run_id=pipes.run_id)
        return execute(task, ctx, pipes)


def launched_context(
    params: Mapping[str, Any],
    extras: Mapping[str, Any],
    *,
    log: logging.Logger,
    run_id: str | None,
) -> TaskContext:
    """The context of a task Dagster launched with ``extras`` (``task_extras``): its settings
    payload and parameters win over the command line's ``params``."""
    merged = {**params, **(extras.get("params") or {})}
    return TaskContext(
        settings=_settings(merged, extras.get("settings")),
        params=merged,
        log=log,
        run_id=str(merged.get("run_id") or run_id),
    )


def manual_run_id() -> str:
    """A run id for a task started by hand: its UTC second plus a random suffix, so two runs
    started together never share a batch (and never replace each other's landed file)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time()))
    return f"manual-{stamp}-{uuid.uuid4().hex[:8]}"


def execute(
    task: Callable[[TaskContext], TaskResult], ctx: TaskContext, pipes: PipesContext | None
) -> TaskResult:
    """Run ``task``, stamp its duration, record its check verdicts and, under Pipes, report
    what it wrote and checked."""
    started = time.perf_counter()
    result = task(ctx)
    duration = round(time.perf_counter() - started, 3)
    for mat in result.materializations:
        mat.metadata.setdefault("duration_seconds", duration)
        ctx.log.info("materialized %s: %s", mat.asset_key, _summary(mat.metadata))
        if pipes is not None:
            pipes.report_asset_materialization(
                asset_key=mat.asset_key,
                metadata=pipes_metadata(mat.metadata),
                data_version=mat.data_version,
            )
    if result.checks:
        record_check_history(ctx, result.checks)
    for check in result.checks:
        level = logging.INFO if check.passed else logging.WARNING
        ctx.log.log(level, "check %s.%s passed=%s", check.asset_key, check.check_name, check.passed)
        if pipes is not None:
            pipes.report_asset_check(
                asset_key=check.asset_key,
                check_name=check.check_name,
                passed=check.passed,
                severity=check.severity,
                metadata=pipes_metadata(check.metadata),
            )
    return result


def pipes_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Metadata Pipes accepts: containers become explicit JSON values, even when empty.

    Pipes infers a type for scalars but rejects an empty dict and mis-reads nested ones.
    """
    return {
        key: {"raw_value": value, "type": "json"} if _is_plain_container(value) else value
        for key, value in metadata.items()
    }


def link(name: str, url: str | None) -> dict[str, Any]:
    """``{name: url}`` as a clickable Pipes URL value, or nothing when the URL is unknown."""
    return {} if url is None else {name: {"raw_value": url, "type": "url"}}


def markdown(text: str) -> dict[str, Any]:
    """Markdown the Dagster UI renders (tables, and charts as data-URI images)."""
    return {"raw_value": text, "type": "md"}


def _is_plain_container(value: Any) -> bool:
    if isinstance(value, dict):
        return set(value) != {"raw_value", "type"}
    return isinstance(value, list | tuple)


def record_check_history(ctx: TaskContext, checks: Sequence[CheckOutcome]) -> None:
    """Append every verdict to the ``check_history`` table: the audit trail promotion reads.

    A bundle job has no Dagster instance to ask whether a gate passed, so the verdicts are
    kept next to the data, keyed by the pipeline run id, for both modes alike.
    """
    from fraud_assets.lakehouse import CHECK_HISTORY, table_store

    now = datetime.now(UTC)
    frame = pd.DataFrame(
        {
            "run_id": [ctx.run_id] * len(checks),
            "asset_key": [c.asset_key for c in checks],
            "check_name": [c.check_name for c in checks],
            "passed": [bool(c.passed) for c in checks],
            "severity": [c.severity for c in checks],
            "metadata_json": [json.dumps(c.metadata, default=str, sort_keys=True) for c in checks],
            "evaluated_at": [now] * len(checks),
        }
    )
    table_store(ctx.settings).write_pandas(frame, CHECK_HISTORY, mode="append")


def _summary(metadata: Mapping[str, Any]) -> str:
    shown = {
        k: v for k, v in metadata.items() if isinstance(v, int | float | str) and len(str(v)) < 80
    }
    return ", ".join(f"{k}={v}" for k, v in list(shown.items())[:8])
