"""The task runtime: parameters, settings precedence, and the check_history audit trail."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from fraud_assets.checks import CHECK_ROC_AUC_FLOOR
from fraud_assets.lakehouse import LocalDeltaStore
from fraud_assets.ml.registry import verdicts_since
from fraud_assets.tasks._runtime import (
    CheckOutcome,
    Materialization,
    TaskContext,
    TaskResult,
    parse_params,
    run_task,
)


def test_parse_params_accepts_both_forms_and_flags() -> None:
    assert parse_params(["--model", "catboost", "--run-id=abc", "--dry-run"]) == {
        "model": "catboost",
        "run_id": "abc",
        "dry_run": "true",
    }


def test_parse_params_rejects_positional_arguments() -> None:
    with pytest.raises(SystemExit, match="unexpected argument"):
        parse_params(["catboost"])


def test_cli_settings_flags_override_the_environment(
    fraud_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FRAUD_TARGET", "dev")
    seen: list[TaskContext] = []

    def task(ctx: TaskContext) -> TaskResult:
        seen.append(ctx)
        return TaskResult()

    run_task(task, ["--target", "prod", "--catalog", "cat_x", "--run_id", "r-1"], name="t")
    (ctx,) = seen
    assert ctx.settings.target == "prod"
    assert ctx.settings.catalog == "cat_x"
    assert ctx.run_id == "r-1"
    assert ctx.param("catalog") == "cat_x"


def test_verdicts_are_recorded_and_the_latest_one_wins(fraud_home: Path) -> None:
    def verdict(passed: bool):  # type: ignore[no-untyped-def]
        def task(ctx: TaskContext) -> TaskResult:
            return TaskResult(
                materializations=[Materialization("model_evaluation", {"row_count": 1})],
                checks=[
                    CheckOutcome("model_evaluation", CHECK_ROC_AUC_FLOOR, passed, metadata={"v": 1})
                ],
            )

        return task

    result = run_task(verdict(True), ["--run_id", "r-1"], name="evaluate")
    assert result.materializations[0].metadata["duration_seconds"] >= 0
    run_task(verdict(False), ["--run_id", "r-2"], name="evaluate")

    history = LocalDeltaStore(fraud_home).read_pandas("check_history")
    assert sorted(history["run_id"]) == ["r-1", "r-2"]

    assert verdicts_since(history, since=datetime(1970, 1, 1, tzinfo=UTC)) == {
        ("model_evaluation", CHECK_ROC_AUC_FLOOR): False
    }


def test_pipes_metadata_wraps_containers_dagster_pipes_would_reject() -> None:
    from dagster_pipes import _normalize_param_metadata

    from fraud_assets.tasks._runtime import pipes_metadata

    metadata = {
        "quarantined_by_reason": {},
        "drifted_features": ["claim_amount"],
        "row_count": 3,
        "run_url": {"raw_value": "http://x", "type": "url"},
    }
    with pytest.raises(Exception, match="Invalid type for parameter `metadata`"):
        _normalize_param_metadata(metadata, "report_asset_materialization", "metadata")
    normalized = _normalize_param_metadata(
        pipes_metadata(metadata), "report_asset_materialization", "metadata"
    )
    assert normalized["quarantined_by_reason"] == {"raw_value": {}, "type": "json"}
    assert normalized["drifted_features"] == {"raw_value": ["claim_amount"], "type": "json"}
    assert normalized["run_url"] == {"raw_value": "http://x", "type": "url"}


def test_manual_runs_started_in_the_same_second_get_their_own_batch(
    fraud_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 14: the batch id was manual-<epoch second>, so two ingests started together
    replaced each other's landed file."""
    monkeypatch.setattr("time.time", lambda: 1_765_000_000.0)
    ids: list[str] = []

    def probe(ctx: TaskContext) -> TaskResult:
        ids.append(ctx.run_id)
        return TaskResult()

    run_task(probe, [], name="probe")
    run_task(probe, [], name="probe")
    assert len(set(ids)) == 2, ids
    assert all(run_id.startswith("manual-20251206T054640Z-") for run_id in ids), ids
