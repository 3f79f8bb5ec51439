"""Batch scoring: the latest batch, scored by the champion, validated before anything is written."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from mlflow.models import infer_signature
from mlflow.pyfunc import PythonModel

from fraud_assets.claims.synthetic import generate_claims, to_arrow
from fraud_assets.features import MODEL_FEATURES, SplitPolicy
from fraud_assets.features.engineering import build_claim_features
from fraud_assets.lakehouse import table_store
from fraud_assets.ml import registry, scoring
from fraud_assets.ml.pyfunc import FeatureFrameError
from fraud_assets.ml.reasons import REASON_COUNT
from fraud_assets.ml.tracking import configure_mlflow, mlflow_client
from fraud_assets.serving.inference_log import INFERENCE_LOG_SCHEMA
from fraud_assets.settings import get_settings
from fraud_assets.tasks import score, train
from fraud_assets.tasks._runtime import run_task
from fraud_assets_tests.gold_frames import use_migrated_mlflow_store

MODEL = "fraud_detector"
LOADED = datetime(2025, 3, 1, tzinfo=UTC)


def _silver(claims: pd.DataFrame, batch_id: str, loaded_at: datetime) -> pa.Table:
    table = to_arrow(claims)
    n = table.num_rows
    return (
        table.append_column("_source", pa.array([f"{batch_id}.parquet"] * n))
        .append_column("_loaded_at", pa.array([loaded_at] * n, pa.timestamp("us", tz="UTC")))
        .append_column("_batch_id", pa.array([batch_id] * n))
    )


@pytest.fixture(scope="module")
def scoring_home(tmp_path_factory: pytest.TempPathFactory, spark: Any) -> Iterator[dict[str, Any]]:
    """Silver with two batches, gold built from it by the real feature code, a champion.

    Built once for the module: tests that change the registry use their own model name.
    """
    with pytest.MonkeyPatch.context() as env:
        for name in list(os.environ):
            if name.startswith("FRAUD_"):
                env.delenv(name)
        home = tmp_path_factory.mktemp("scoring_home")
        env.setenv("FRAUD_HOME", str(home))
        yield _build_scoring_home(home, spark)


def _build_scoring_home(fraud_home: Path, spark: Any) -> dict[str, Any]:
    store = table_store(get_settings())
    history = generate_claims(3_000, seed=21)
    latest = generate_claims(400, seed=22, id_prefix="N", start_date=datetime(2025, 1, 1).date())
    store.write_arrow(_silver(history, "b-001", LOADED), "claims")
    store.write_arrow(_silver(latest, "b-002", LOADED + timedelta(days=1)), "claims", mode="append")
    silver = store.read_spark(spark, "claims")
    gold = build_claim_features(silver, split=SplitPolicy(0.25, 42))
    store.write_arrow(gold.toArrow(), "claim_features")

    use_migrated_mlflow_store(fraud_home)
    result = run_task(train.train, ["--model", "xgboost", "--boosting_rounds", "15"], name="train")
    configure_mlflow(get_settings())
    client = mlflow_client()
    uri = str(result.materializations[0].metadata["model_uri"])
    version = str(mlflow.register_model(uri, MODEL).version)
    registry.move_champion(client, name=MODEL, version=version, actor="test")
    run_id = str(result.materializations[0].metadata["mlflow_run_id"])
    return {
        "store": store,
        "latest_ids": set(latest["claim_id"]),
        "version": version,
        "model_uri": uri,
        # Chosen on the holdout at training and logged with the run; scoring must use it.
        "threshold": float(client.get_run(run_id).data.params["operating_threshold"]),
    }


def test_score_task_scores_only_the_latest_batch_with_history_aware_features(scoring_home, spark):
    store = scoring_home["store"]
    result = run_task(score.score, ["--run_id", "drift-run-7"], name="score")
    metadata = result.materializations[0].metadata
    assert metadata["batch_id"] == "b-002" and metadata["model_version"] == scoring_home["version"]

    scores = store.read_pandas("fraud_scores")
    assert set(scores["claim_id"]) == scoring_home["latest_ids"]
    assert scores["claim_id"].is_unique
    assert (scores["model_alias"] == "champion").all() and (scores["model_name"] == MODEL).all()
    assert ((scores["fraud_score"] >= 0) & (scores["fraud_score"] <= 1)).all()
    threshold = scoring_home["threshold"]
    assert threshold != get_settings().thresholds.operating_threshold  # not a global 0.5
    assert metadata["operating_threshold"] == threshold
    assert (scores["decision"] == (scores["fraud_score"] >= threshold).astype(int)).all()

    log = store.read_arrow("inference_log")
    assert log.schema.equals(INFERENCE_LOG_SCHEMA)
    logged = log.to_pandas().query("window_id == 'drift-run-7'")
    assert len(logged) == len(scores)
    assert set(logged["source"]) == {"batch"}
    answered = logged.set_index("claim_id")["decision"]
    assert (answered.loc[scores["claim_id"]].to_numpy() == scores["decision"].to_numpy()).all()
    assert set(logged["operating_threshold"]) == {threshold}

    # The batch's features are the ones computed over all of silver, not over the batch alone.
    everything = build_claim_features(
        store.read_spark(spark, "claims"), split=SplitPolicy(0.2, 42)
    ).toPandas()
    expected = everything.set_index("claim_id").loc[logged["claim_id"], "provider_claim_count"]
    np.testing.assert_array_equal(logged["provider_claim_count"].to_numpy(), expected.to_numpy())

    # The scores are the champion's own predictions for those rows.
    champion = mlflow.pyfunc.load_model(f"models:/{MODEL}/{scoring_home['version']}")
    by_id = scores.set_index("claim_id")["fraud_score"]
    np.testing.assert_allclose(
        by_id.loc[logged["claim_id"]].to_numpy(), champion.predict(logged[MODEL_FEATURES])
    )


class _NewerContractModel(PythonModel):
    """A model trained on a feature the current feature code does not produce."""

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> np.ndarray:
        return np.full(len(model_input), 0.5)


def test_a_champion_needing_a_missing_column_fails_clearly_and_writes_nothing(
    scoring_home, monkeypatch
):
    monkeypatch.setenv("FRAUD_MODEL_NAME", "contract_change")
    name = get_settings().registered_model_name
    client = mlflow_client()
    good = str(mlflow.register_model(scoring_home["model_uri"], name).version)
    registry.move_champion(client, name=name, version=good, actor="test")
    store = scoring_home["store"]
    run_task(score.score, ["--run_id", "first"], name="score")
    versions = (store.version("fraud_scores"), store.version("inference_log"))

    example = store.read_pandas("claim_features").head(3)[MODEL_FEATURES]
    example["provider_risk_score"] = 0.1
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=_NewerContractModel(),
            signature=infer_signature(example, np.full(3, 0.5)),
        )
    version = str(mlflow.register_model(info.model_uri, name).version)
    registry.move_champion(client, name=name, version=version, actor="test")

    with pytest.raises(
        FeatureFrameError, match=r"missing 1 model input column.*provider_risk_score"
    ):
        run_task(score.score, ["--run_id", "second"], name="score")
    assert (store.version("fraud_scores"), store.version("inference_log")) == versions


def test_every_batch_score_comes_with_its_reasons(scoring_home):
    """fraud_scores and inference_log carry each claim's reason codes, and the metadata
    says which reasons drive this batch's flags."""
    store = scoring_home["store"]
    result = run_task(score.score, ["--run_id", "reasons-run"], name="score")
    metadata = result.materializations[0].metadata

    scores = store.read_pandas("fraud_scores").set_index("claim_id")
    assert scores["reasons"].map(len).eq(REASON_COUNT).all()
    first = scores["reasons"].iloc[0]
    assert set(first[0]) == {"feature", "contribution", "reason"}
    assert all(r["feature"] in MODEL_FEATURES and r["reason"] for r in first)
    sizes = [abs(r["contribution"]) for r in first]
    assert sizes == sorted(sizes, reverse=True)

    log = store.read_pandas("inference_log").query("window_id == 'reasons-run'")
    logged = log.set_index("claim_id")["reasons"]
    for claim_id in scores.index[:20]:
        assert list(logged.loc[claim_id]) == list(scores.loc[claim_id, "reasons"])

    table = metadata["flag_reasons"]
    assert table["type"] == "md"
    flagged = scores[scores["decision"] == 1]
    assert len(flagged) > 0
    strongest = flagged["reasons"].map(
        lambda rs: next((r["feature"] for r in rs if r["contribution"] > 0), None)
    )
    top, count = strongest.value_counts().index[0], int(strongest.value_counts().iloc[0])
    assert metadata["top_flag_reason"] == top
    assert f"| {top} | {count} |" in table["raw_value"]


def test_scoring_path_names_every_missing_or_mistyped_column(scoring_home):
    store = scoring_home["store"]
    features = store.read_pandas("claim_features").head(50)
    model = scoring.ScoringModel(
        model=mlflow.pyfunc.load_model(f"models:/{MODEL}/{scoring_home['version']}"),
        name=MODEL,
        version=scoring_home["version"],
        alias="champion",
    )

    def score_frame(frame: pd.DataFrame) -> scoring.ScoredBatch:
        return scoring.score_batch(
            pa.Table.from_pandas(frame, preserve_index=False),
            scoring=model,
            threshold=0.5,
            scored_at=LOADED,
            batch_id="b",
        )

    scored = score_frame(features)
    assert scored.rows.schema.equals(scoring.FRAUD_SCORES_SCHEMA) and scored.rows.num_rows == 50
    expected = np.asarray(model.model.predict(features[MODEL_FEATURES]), dtype="float64")
    np.testing.assert_allclose(scored.scores, expected)
    assert scored.rows.column("claim_id").to_pylist() == features["claim_id"].tolist()

    with pytest.raises(FeatureFrameError, match="claim_amount, diagnosis_code"):
        score_frame(features.drop(columns=["claim_amount", "diagnosis_code"]))
    wrong = features.assign(num_procedures=features["num_procedures"].astype(str), procedure_code=3)
    with pytest.raises(
        FeatureFrameError, match=r"num_procedures is object.*procedure_code is int64"
    ):
        score_frame(wrong)


def test_latest_batch_falls_back_to_the_newest_load_without_batch_ids(spark):
    frame = pd.DataFrame(
        {
            "claim_id": ["a", "b", "c"],
            "_loaded_at": pd.to_datetime(["2025-01-01", "2025-01-02", "2025-01-02"], utc=True),
        }
    )
    batch, ids = scoring.latest_batch(spark.createDataFrame(frame))
    assert sorted(r["claim_id"] for r in ids.collect()) == ["b", "c"]
    assert batch.startswith("2025-01-02")
    with pytest.raises(FeatureFrameError, match="neither _batch_id nor _loaded_at"):
        scoring.latest_batch(spark.createDataFrame(frame[["claim_id"]]))


def test_no_champion_is_a_one_line_failure(fraud_home):
    use_migrated_mlflow_store(fraud_home)
    with pytest.raises(registry.NoChampionError, match="holds the 'champion' alias"):
        run_task(score.score, ["--run_id", "r"], name="score")
    completed = subprocess.run(
        [sys.executable, "-m", "fraud_assets.tasks.score"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert completed.returncode == 1
    assert "Traceback" not in completed.stderr
    assert completed.stderr.strip().splitlines()[-1] == (
        "score: no version of registered model 'fraud_detector' holds the 'champion' alias "
        "yet: run the retraining job so a model passes its gates and is promoted"
    )
    assert not table_store(get_settings()).exists("fraud_scores")
