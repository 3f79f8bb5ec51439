"""A gold table's extras reach both models, their signatures, batch logging, PSI and fairness."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sklearn.metrics import roc_auc_score

from fraud_assets.features import MODEL_FEATURES, ProtectedInputError
from fraud_assets.governance import fairness_report_under, psi_report
from fraud_assets.governance.policy import pinned_policy, with_attributes
from fraud_assets.lakehouse import table_store
from fraud_assets.ml import tracking
from fraud_assets.ml.runs import REFERENCE_ARTIFACT, TAG_MODEL_URI
from fraud_assets.ml.scoring import ScoringModel, inference_log_rows, score_batch
from fraud_assets.ml.training import TrainingParams, split_gold, train_model
from fraud_assets.settings import get_settings
from fraud_assets.tasks import train as train_task
from fraud_assets.tasks._runtime import run_task
from fraud_assets.tasks.compute_psi import monitored_features
from fraud_assets_tests.gold_frames import make_gold_frame

SMALL = TrainingParams(boosting_rounds=40, max_depth=4, seed=11)
EXTRA_INPUTS = ["xn_signal", "xc_tier"]


@pytest.fixture(scope="module")
def gold() -> pd.DataFrame:
    """A gold frame whose canonical features carry little signal and whose extras carry much:
    a nullable number and a categorical that follow the label, and a protected group."""
    frame = make_gold_frame(2_500, seed=4, signal=0.05)
    rng = np.random.default_rng(4)
    fraud = frame["is_fraud"].to_numpy()
    signal = fraud * 1.5 + rng.normal(0.0, 1.0, len(frame))
    signal[rng.random(len(frame)) < 0.1] = np.nan  # a source that leaves some blank
    frame["xn_signal"] = signal
    tier = np.where(rng.random(len(frame)) < 0.6, np.where(fraud == 1, "gold", "basic"), "mid")
    frame["xc_tier"] = tier
    frame["xp_race"] = rng.choice(["a", "b"], len(frame))
    return frame


@pytest.mark.parametrize("model_type", ["catboost", "xgboost"])
def test_an_extra_carrying_the_label_signal_is_used_and_raises_auc(gold, model_type):
    train, holdout = split_gold(gold)
    with_extras = train_model(train, model_type=model_type, params=SMALL)
    without = train_model(
        train.drop(columns=[*EXTRA_INPUTS, "xp_race"]), model_type=model_type, params=SMALL
    )
    assert with_extras.spec.columns[-1] == "xc_tier" and "xn_signal" in with_extras.spec.numeric
    assert "xp_race" not in with_extras.spec.columns
    assert without.spec.columns == [*without.spec.numeric, *without.spec.categorical]
    assert sorted(without.spec.columns) == sorted(MODEL_FEATURES)
    labels = holdout["is_fraud"]
    auc_with = roc_auc_score(labels, with_extras.predict_proba(holdout))
    auc_without = roc_auc_score(labels, without.predict_proba(holdout))
    assert auc_with > auc_without + 0.1, (auc_with, auc_without)
    assert with_extras.feature_importance["xn_signal"] > 0.05


def test_a_protected_extra_is_never_an_input_and_a_protected_input_is_refused(gold):
    train, _ = split_gold(gold)
    trained = train_model(train, model_type="xgboost", params=SMALL)
    assert not [c for c in trained.spec.columns if c.startswith("xp_")]
    with pytest.raises(ProtectedInputError, match="xc_tier"):
        train_model(train, model_type="xgboost", params=SMALL, protected=["xc_tier"])


@pytest.mark.parametrize("model_type", ["catboost", "xgboost"])
def test_the_logged_model_signs_its_extras_and_batch_scoring_logs_them(
    fraud_home, gold, model_type
):
    table_store(get_settings()).write_pandas(gold, "claim_features")
    result = run_task(
        train_task.train,
        ["--model", model_type, "--boosting_rounds", "20", "--run_id", "r-extras"],
        name="train",
    )
    run = tracking.mlflow_client().get_run(result.materializations[0].metadata["mlflow_run_id"])
    model = mlflow.pyfunc.load_model(run.data.tags[TAG_MODEL_URI])
    names = model.metadata.get_input_schema().input_names()
    assert {"xn_signal", "xc_tier"} <= set(names) and "xp_race" not in names
    assert set(MODEL_FEATURES) <= set(names)

    # Batch scoring takes the model's own inputs (its signature), extras included.
    _, holdout = split_gold(gold)
    features = pa.Table.from_pandas(holdout, preserve_index=False)
    scoring = ScoringModel(model=model, name="fraud", version="1", alias="champion")
    scored = score_batch(
        features, scoring=scoring, threshold=0.5, scored_at=pd.Timestamp.now("UTC"), batch_id="b"
    )
    assert roc_auc_score(holdout["is_fraud"], scored.scores) > 0.75
    logged = inference_log_rows(
        features,
        scored,
        scoring=scoring,
        threshold=0.5,
        scored_at=pd.Timestamp.now("UTC"),
        window_id="w",
    )
    assert logged.column_names[-2:] == ["xn_signal", "xc_tier"]

    # PSI watches the extras: the reference logged with the model has them, so does the log.
    reference = pd.read_parquet(
        mlflow.artifacts.download_artifacts(
            run_id=run.info.run_id, artifact_path=REFERENCE_ARTIFACT
        )
    )
    numeric, categorical = monitored_features(reference, logged.to_pandas())
    assert "xn_signal" in numeric and "xc_tier" in categorical
    report = psi_report(
        reference,
        logged.to_pandas(),
        numeric_features=numeric,
        categorical_features=categorical,
        score_column="fraud_score",
        bins=10,
        epsilon=1e-4,
        warn=0.1,
        error=0.25,
    )
    rows = report.set_index("feature")
    assert rows.loc["xn_signal", "kind"] == "numeric"
    assert rows.loc["xc_tier", "kind"] == "categorical"
    assert np.isfinite(rows.loc["xn_signal", "psi"]) and np.isfinite(rows.loc["xc_tier", "psi"])


def test_psi_leaves_out_an_extra_the_window_did_not_log(gold):
    reference = gold[[*MODEL_FEATURES, *EXTRA_INPUTS]]
    numeric, categorical = monitored_features(reference, gold[MODEL_FEATURES])
    assert [*numeric, *categorical] == [c for c in [*numeric, *categorical] if c in MODEL_FEATURES]
    assert sorted([*numeric, *categorical]) == sorted(MODEL_FEATURES)


def test_a_protected_extra_is_judged_in_the_fairness_report_under_a_stricter_policy(gold):
    pinned = pinned_policy("dev")
    policy = with_attributes(pinned, ["xp_race"])
    assert policy.attributes == (*pinned.attributes, "xp_race")
    assert policy.weaker_than(pinned) == []  # registration accepts a verdict under it
    assert with_attributes(pinned, []) is pinned
    _, holdout = split_gold(gold)
    rows = holdout.assign(decision=(holdout["xn_signal"].fillna(0) > 0.8).astype(int))
    report = fairness_report_under(rows, policy)
    assert "xp_race" in set(report.figures["slice"])
    assert set(report.groups.loc[report.groups["slice"] == "xp_race", "group"]) == {"a", "b"}
