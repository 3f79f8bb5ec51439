"""InProcessCompute is faithful: the same task function, the results Pipes would report."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterInstance, materialize

from fraud_assets.assets.training import catboost_model
from fraud_assets.resources.compute import FraudCompute, LocalPipesCompute
from fraud_assets.resources.inprocess_compute import InProcessCompute
from fraud_assets.tasks import TASKS, task_function
from fraud_assets_tests.gold_frames import use_migrated_mlflow_store
from fraud_assets_tests.inprocess_support import SMALL, write_claim_features

# What differs between any two training runs: the MLflow run and how long it took.
RUN_SPECIFIC = {"mlflow_run_id", "mlflow_run", "model_uri", "training_seconds", "duration_seconds"}


@pytest.mark.parametrize("name", sorted(TASKS))
def test_the_task_function_is_the_one_main_runs(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    module = importlib.import_module(TASKS[name].module)
    handed: list[tuple[Callable[..., Any], str]] = []
    monkeypatch.setattr(
        module, "run_task", lambda task, argv=None, *, name: handed.append((task, name))
    )

    module.main([])

    assert handed == [(task_function(name), name)]


def test_an_unknown_task_is_a_clear_error() -> None:
    with pytest.raises(KeyError, match="unknown task 'nope'"):
        task_function("nope")


def _train(instance: DagsterInstance, compute: FraudCompute) -> tuple[Any, Any]:
    result = materialize(
        [catboost_model],
        resources={"compute": compute},
        instance=instance,
        run_config={"ops": {"catboost_model": SMALL}},
    )
    [materialized] = result.asset_materializations_for_node("catboost_model")
    [check] = result.get_asset_check_evaluations()
    return materialized, check


@pytest.mark.slow
def test_the_fake_reports_what_the_pipes_subprocess_reports(
    fraud_home: Path, dagster_instance: DagsterInstance
) -> None:
    use_migrated_mlflow_store(fraud_home)
    write_claim_features()

    launched, launched_check = _train(dagster_instance, LocalPipesCompute())
    in_process, in_process_check = _train(dagster_instance, InProcessCompute())

    assert set(in_process.metadata) == set(launched.metadata)
    for name, value in launched.metadata.items():
        assert type(in_process.metadata[name]) is type(value), name
        if name not in RUN_SPECIFIC:
            assert in_process.metadata[name] == value, name
    assert in_process.metadata["mlflow_run_id"] != launched.metadata["mlflow_run_id"]
    for field in ("asset_key", "check_name", "passed", "severity", "metadata", "description"):
        assert getattr(in_process_check, field) == getattr(launched_check, field), field
