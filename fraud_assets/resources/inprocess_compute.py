"""A compute resource that runs each step's task function in this process, for fast tests.

``InProcessCompute`` calls the same pure function a launched task runs, with the context
``run_task`` would build from the same Pipes extras, and turns what it returns into the
results ``PipesSubprocessClient`` would have collected. No subprocess and no Pipes channel:
a Dagster wiring test costs the task's own work. Spark steps use a local session in this
process, started once.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetKey,
    DataVersion,
    MaterializeResult,
    OpExecutionContext,
)
from dagster._core.definitions.metadata.external_metadata import metadata_map_from_external
from dagster_pipes import DagsterPipesError, _normalize_param_metadata

from fraud_assets.resources.compute import (
    FraudCompute,
    TaskResults,
    task_extras,
    transient_failures_retried,
)
from fraud_assets.settings import get_settings
from fraud_assets.tasks import task_function
from fraud_assets.tasks._runtime import execute, launched_context, pipes_metadata


class InProcessCompute(FraudCompute):
    """Runs each step's task function directly; an error in it fails the step at once (no retry)."""

    def run_task(
        self,
        *,
        context: AssetExecutionContext | OpExecutionContext,
        task: str,
        params: Mapping[str, Any] | None = None,
    ) -> TaskResults:
        function = task_function(task)
        # Through JSON, as Pipes sends them: what would not survive the trip fails here too.
        extras = json.loads(json.dumps(task_extras(context, get_settings(), params)))
        ctx = launched_context({}, extras, log=context.log, run_id=context.run_id)
        with transient_failures_retried():
            outcome = execute(function, ctx, None)
        scope = _asset_keys_in_scope(context)
        results: list[MaterializeResult | AssetCheckResult] = []
        for mat in outcome.materializations:
            key = _reported_key(scope, mat.asset_key, "report_asset_materialization")
            version = None if mat.data_version is None else DataVersion(mat.data_version)
            if any(isinstance(r, MaterializeResult) and r.asset_key == key for r in results):
                raise DagsterPipesError(f"{mat.asset_key} was reported twice by task {task!r}")
            results.append(
                MaterializeResult(
                    asset_key=key,
                    metadata=_as_reported(mat.metadata, "report_asset_materialization"),
                    data_version=version,
                )
            )
        for check in outcome.checks:
            results.append(
                AssetCheckResult(
                    asset_key=_reported_key(scope, check.asset_key, "report_asset_check"),
                    check_name=check.check_name,
                    passed=check.passed,
                    severity=AssetCheckSeverity(check.severity),
                    metadata=_as_reported(check.metadata, "report_asset_check"),
                )
            )
        # Pipes adds an empty materialization for every selected asset the task did not report.
        reported = {r.asset_key for r in results if isinstance(r, MaterializeResult)}
        results.extend(
            MaterializeResult(asset_key=key)
            for key in sorted(context.selected_asset_keys)
            if key not in reported
        )
        return results


def _as_reported(metadata: Mapping[str, Any], method: str) -> Any:
    """Task metadata as Dagster receives it from Pipes: normalized by dagster-pipes, sent as
    JSON, and resolved into metadata values."""
    if not metadata:
        return {}
    sent = _normalize_param_metadata(pipes_metadata(metadata), method, "metadata")
    return metadata_map_from_external(json.loads(json.dumps(sent)))


def _asset_keys_in_scope(
    context: AssetExecutionContext | OpExecutionContext,
) -> set[AssetKey] | None:
    """The keys a launched task may report, as Pipes' context data lists them (None for an op)."""
    if not context.has_assets_def:
        return None
    return set(context.selected_asset_keys)


def _reported_key(scope: set[AssetKey] | None, asset_key: str, method: str) -> AssetKey:
    key = AssetKey.from_escaped_user_string(asset_key)
    if scope and key not in scope:
        expected = sorted(k.to_user_string() for k in scope)
        raise DagsterPipesError(
            f"Invalid asset key in `{method}`. Expected one of `{expected}`, got `{asset_key}`."
        )
    return key
