"""The training graph under Dagster: champion moves only when every blocking check passed.

Runs the real assets (features, both models, evaluation, fairness, registry, scoring) with
``dagster.materialize`` and ``LocalPipesCompute``, so every step is a Pipes subprocess as in
``dagster dev``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
import pyarrow as pa
import pytest
from dagster import (
    AssetKey,
    MarkdownMetadataValue,
    MetadataValue,
    UrlMetadataValue,
    materialize,
)

from fraud_assets.assets.evaluation import model_evaluation
from fraud_assets.assets.features import claim_features
from fraud_assets.assets.governance import fairness_report
from fraud_assets.assets.registry import registered_model, rollback_champion_job
from fraud_assets.assets.scoring import fraud_scores
from fraud_assets.assets.training import catboost_model, xgboost_model
from fraud_assets.checks import CHECK_ROC_AUC_FLOOR, promotion_gates
from fraud_assets.claims.synthetic import generate_claims, to_arrow
from fraud_assets.governance.policy import pinned_policy
from fraud_assets.lakehouse import table_store
from fraud_assets.ml import registry
from fraud_assets.ml.tracking import configure_mlflow, mlflow_client
from fraud_assets.resources.compute import LocalPipesCompute
from fraud_assets.settings import get_settings
from fraud_assets_tests.chart_support import png_from_markdown
from fraud_assets_tests.gold_frames import make_gold_frame, use_migrated_mlflow_store

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("shared_step_spark")]

MODEL = "fraud_detector"
SMALL = {"config": {"boosting_rounds": 30, "max_depth": 4}}
RUN_CONFIG = {"ops": {"catboost_model": SMALL, "xgboost_model": SMALL}}


def _silver(n_rows: int) -> pa.Table:
    table = to_arrow(generate_claims(n_rows, seed=31))
    n = table.num_rows
    return (
        table.append_column("_source", pa.array(["synthetic"] * n))
        .append_column(
            "_loaded_at", pa.array([datetime.now(UTC)] * n, pa.timestamp("us", tz="UTC"))
        )
        .append_column("_batch_id", pa.array(["batch-1"] * n))
    )


def _champion() -> str | None:
    version = registry.alias_version(mlflow_client(), MODEL, registry.CHAMPION)
    return None if version is None else str(version.version)


def _check(result: Any, name: str) -> bool:
    [evaluation] = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    return bool(evaluation.passed)


def test_champion_moves_only_when_every_blocking_check_passes(
    fraud_home: Path, dagster_instance: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Group-size floor sized to a 4,000-claim demo holdout; the other gates keep their defaults.
    monkeypatch.setenv("FRAUD_FAIRNESS__MIN_GROUP_SIZE", "20")
    use_migrated_mlflow_store(fraud_home)
    store = table_store(get_settings())
    store.write_arrow(_silver(4_000), "claims")
    compute = {"compute": LocalPipesCompute()}

    passing = materialize(
        [
            claim_features,
            catboost_model,
            xgboost_model,
            model_evaluation,
            fairness_report,
            registered_model,
            fraud_scores,
        ],
        resources=compute,
        instance=dagster_instance,
        run_config=RUN_CONFIG,
    )
    assert passing.success
    for asset, checks in promotion_gates(pinned_policy(get_settings().target).gates).items():
        for name in checks:
            assert _check(passing, name), f"{asset}.{name} failed on good data"
    [registered] = passing.asset_materializations_for_node("registered_model")
    assert registered.metadata["promoted"].value is True
    # What a user reads at a glance in the UI: links into MLflow and the curves as images.
    assert registered.metadata["mlflow_model_version"] == MetadataValue.url(
        f"http://localhost:5000/#/models/{MODEL}/versions/1"
    )
    [first_evaluation] = passing.asset_materializations_for_node("model_evaluation")
    run_link = first_evaluation.metadata["candidate_mlflow_run"]
    assert isinstance(run_link, UrlMetadataValue)
    assert run_link.value.endswith(f"/runs/{first_evaluation.metadata['candidate_run_id'].value}")
    assert "champion_model_version" not in first_evaluation.metadata  # no champion yet
    for node in ("catboost_model", "xgboost_model", "model_evaluation"):
        [materialized] = passing.asset_materializations_for_node(node)
        curves = materialized.metadata["holdout_curves"]
        assert isinstance(curves, MarkdownMetadataValue)
        png_from_markdown({"raw_value": curves.value, "type": "md"})
    models_table = str(first_evaluation.metadata["models"].value)
    assert "| catboost | " in models_table and "| xgboost | " in models_table
    configure_mlflow(get_settings())
    assert _champion() == "1"
    # The threshold is chosen on the holdout (flag 5% of claims by default), recorded with
    # the model, and the one evaluation and batch scoring decide at (issue 12 finding 5).
    candidate = str(first_evaluation.metadata["candidate_model"].value)
    [trained] = passing.asset_materializations_for_node(f"{candidate}_model")
    chosen = trained.metadata["operating_threshold"].value
    assert 0.0 < chosen < 1.0 and chosen != 0.5
    assert trained.metadata["flagged_rate"].value <= 0.05
    assert first_evaluation.metadata["operating_threshold"].value == pytest.approx(chosen, abs=1e-6)
    run_params = mlflow_client().get_run(str(first_evaluation.metadata["candidate_run_id"].value))
    assert run_params.data.params["operating_point"] == "flag_rate"
    [scored] = passing.asset_materializations_for_node("fraud_scores")
    assert scored.metadata["operating_threshold"].value == pytest.approx(chosen, abs=1e-6)
    [scored] = passing.asset_materializations_for_node("fraud_scores")
    assert scored.metadata["model_version"].value == "1"
    assert scored.metadata["row_count"].value == 4_000
    history = store.read_pandas("check_history")
    assert set(history["run_id"]) == {passing.run_id}

    # A deliberately unlearnable training set: labels independent of every feature.
    store.write_pandas(make_gold_frame(3_000, seed=4, signal=0.0), "claim_features")
    failing = materialize(
        [
            catboost_model,
            xgboost_model,
            model_evaluation,
            fairness_report,
            registered_model,
        ],
        resources=compute,
        instance=dagster_instance,
        run_config=RUN_CONFIG,
        raise_on_error=False,
    )
    assert not _check(failing, CHECK_ROC_AUC_FLOOR)
    # The blocking check stops the run before fairness and registration...
    assert failing.asset_materializations_for_node("registered_model") == []
    assert failing.asset_materializations_for_node("fairness_report") == []
    # ...but the evaluation itself is written, so the failure can be inspected.
    [evaluated] = failing.asset_materializations_for_node("model_evaluation")
    roc_auc = evaluated.metadata["roc_auc"].value
    assert isinstance(roc_auc, float) and roc_auc < get_settings().thresholds.roc_auc_min
    assert evaluated.metadata["champion_model_version"] == MetadataValue.url(
        f"http://localhost:5000/#/models/{MODEL}/versions/1"
    )
    assert "| fraud_detector v1 | champion |" in str(evaluated.metadata["models"].value)
    assert _champion() == "1"
    assert [str(v.version) for v in mlflow_client().search_model_versions(f"name='{MODEL}'")] == [
        "1"
    ]

    # An operator promotes a second version by hand, then rolls back with the Dagster job.
    uri = str(registered.metadata["model_uri"].value)
    second = str(mlflow.register_model(uri, MODEL).version)
    registry.move_champion(mlflow_client(), name=MODEL, version=second, actor="test")
    rollback = rollback_champion_job.execute_in_process(
        resources=compute, instance=dagster_instance
    )
    assert rollback.success
    assert _champion() == "1"
    latest = dagster_instance.get_latest_materialization_event(AssetKey("registered_model"))
    assert latest is not None and latest.run_id == rollback.run_id
    assert latest.asset_materialization.metadata["champion_version"].value == "1"
