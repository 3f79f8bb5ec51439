"""A mapping's extras through the whole training graph under Dagster, as in ``dagster dev``."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
import pyarrow as pa
import pytest
from dagster import materialize

from fraud_assets.assets.evaluation import model_evaluation
from fraud_assets.assets.features import claim_features
from fraud_assets.assets.governance import fairness_report, psi_report
from fraud_assets.assets.registry import registered_model
from fraud_assets.assets.scoring import fraud_scores
from fraud_assets.assets.training import catboost_model, xgboost_model
from fraud_assets.lakehouse import table_store
from fraud_assets.ml.tracking import configure_mlflow
from fraud_assets.resources.compute import LocalPipesCompute
from fraud_assets.settings import get_settings
from fraud_assets_tests.extras_support import silver_with_extras
from fraud_assets_tests.gold_frames import use_migrated_mlflow_store

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("shared_step_spark")]

SMALL = {"config": {"boosting_rounds": 30, "max_depth": 4}}
RUN_CONFIG = {"ops": {"catboost_model": SMALL, "xgboost_model": SMALL}}


def test_extras_reach_both_models_scoring_psi_and_the_fairness_report(
    fraud_home: Path, dagster_instance: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FRAUD_FAIRNESS__MIN_GROUP_SIZE", "20")
    use_migrated_mlflow_store(fraud_home)
    store = table_store(get_settings())
    silver = silver_with_extras(4_000)
    n = silver.num_rows
    silver = silver.append_column("_source", pa.array(["file"] * n)).append_column(
        "_loaded_at", pa.array([datetime.now(UTC)] * n, pa.timestamp("us", tz="UTC"))
    )
    store.write_arrow(silver, "claims")

    result = materialize(
        [
            claim_features,
            catboost_model,
            xgboost_model,
            model_evaluation,
            fairness_report,
            registered_model,
            fraud_scores,
            psi_report,
        ],
        resources={"compute": LocalPipesCompute()},
        instance=dagster_instance,
        run_config=RUN_CONFIG,
        raise_on_error=False,
    )
    assert result.success
    configure_mlflow(get_settings())
    for node in ("catboost_model", "xgboost_model"):
        [trained] = result.asset_materializations_for_node(node)
        model = mlflow.pyfunc.load_model(str(trained.metadata["model_uri"].value))
        inputs = model.metadata.get_input_schema().input_names()
        assert {"xn_deductible", "xc_hobby"} <= set(inputs) and "xp_race" not in inputs
    [fairness] = result.asset_materializations_for_node("fairness_report")
    assert "xp_race" in fairness.metadata["policy"].value["attributes"]
    [registered] = result.asset_materializations_for_node("registered_model")
    assert registered.metadata["promoted"].value is True
    assert {"xn_deductible", "xc_hobby"} <= set(store.table_schema("inference_log").names)
    [drift] = result.asset_materializations_for_node("psi_report")
    assert {"xn_deductible", "xc_hobby"} <= set(drift.metadata["psi"].value)
