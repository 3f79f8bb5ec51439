"""Training: seeded, imbalance-aware boosters logged as probability pyfuncs with their evidence."""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from fraud_assets import provenance
from fraud_assets.claims.mapping import load_mapping, read_source
from fraud_assets.claims.synthetic import generate_claims
from fraud_assets.features import (
    ACTIVITY_DAYS,
    CATEGORICAL_FEATURES,
    MODEL_FEATURES,
    NUMERIC_FEATURES,
    SplitPolicy,
)
from fraud_assets.governance import psi_report
from fraud_assets.lakehouse import table_store
from fraud_assets.ml import tracking, training
from fraud_assets.ml.pyfunc import FeatureFrameError, validate_feature_frame
from fraud_assets.ml.runs import REFERENCE_ARTIFACT, TAG_MODEL_URI
from fraud_assets.ml.training import TrainingDataError, TrainingParams, split_gold, train_model
from fraud_assets.settings import get_settings
from fraud_assets.tasks import train as train_task
from fraud_assets.tasks._runtime import run_task
from fraud_assets_tests.chart_support import png_from_markdown
from fraud_assets_tests.conftest import AUTO_INSURANCE_FILE, needs_auto_insurance_file
from fraud_assets_tests.gold_frames import make_gold_frame
from fraud_assets_tests.pandas_peer import build_claim_features_pandas

SMALL = TrainingParams(boosting_rounds=25, max_depth=4, seed=11)


@pytest.fixture(scope="module")
def gold() -> pd.DataFrame:
    return make_gold_frame(2_500, seed=3)


@pytest.mark.parametrize("model_type", ["catboost", "xgboost"])
def test_same_seed_reproduces_the_model(gold, model_type):
    train, holdout = split_gold(gold)
    first = train_model(train, model_type=model_type, params=SMALL)
    second = train_model(train, model_type=model_type, params=SMALL)
    np.testing.assert_array_equal(first.predict_proba(holdout), second.predict_proba(holdout))


def test_both_models_weight_the_rare_fraud_class(gold):
    train, _ = split_gold(gold)
    catboost = train_model(train, model_type="catboost", params=SMALL)
    xgboost = train_model(train, model_type="xgboost", params=SMALL)
    assert catboost.library_params["auto_class_weights"] == "Balanced"
    positives = int(train["is_fraud"].sum())
    assert xgboost.library_params["scale_pos_weight"] == pytest.approx(
        (len(train) - positives) / positives, rel=1e-5
    )
    assert xgboost.library_params["enable_categorical"] is True
    assert xgboost.library_params["tree_method"] == "hist"


@pytest.mark.parametrize("model_type", ["catboost", "xgboost"])
def test_probabilities_equal_the_librarys_own_predict_proba(gold, model_type):
    train, holdout = split_gold(gold)
    trained = train_model(train, model_type=model_type, params=SMALL)
    ours = trained.predict_proba(holdout)
    matrix = training.model_matrix(holdout, trained.spec)
    if model_type == "catboost":
        reference = trained.booster.predict_proba(matrix)[:, 1]
    else:
        import xgboost

        reference = trained.booster.predict(xgboost.DMatrix(matrix, enable_categorical=True))
    np.testing.assert_allclose(ours, reference, rtol=1e-6)


@pytest.mark.parametrize("model_type", ["catboost", "xgboost"])
def test_unseen_and_missing_categories_still_score(gold, model_type):
    train, holdout = split_gold(gold)
    trained = train_model(train, model_type=model_type, params=SMALL)
    odd = holdout.head(3).copy()
    odd["procedure_code"] = ["NEVER-SEEN", None, odd["procedure_code"].iloc[2]]
    scores = trained.predict_proba(odd)
    assert np.isfinite(scores).all() and ((scores >= 0) & (scores <= 1)).all()


def test_feature_frame_errors_name_every_bad_column(gold):
    train, _ = split_gold(gold)
    spec = training.feature_spec(train, "xgboost")
    with pytest.raises(FeatureFrameError, match="claim_amount, procedure_code"):
        validate_feature_frame(train.drop(columns=["claim_amount", "procedure_code"]), spec)
    wrong = train.copy()
    wrong["num_procedures"] = wrong["num_procedures"].astype(str)
    wrong["diagnosis_code"] = 7
    with pytest.raises(FeatureFrameError, match=r"num_procedures is object.*diagnosis_code is int"):
        validate_feature_frame(wrong, spec)


def test_gold_without_a_class_or_a_column_is_refused(gold):
    with pytest.raises(TrainingDataError, match="split"):
        split_gold(gold.drop(columns=["split"]))
    no_fraud = gold.assign(is_fraud=0)
    with pytest.raises(TrainingDataError, match="needs both classes"):
        split_gold(no_fraud)


def test_git_commit_prefers_the_pinned_value_and_never_crashes(monkeypatch, tmp_path):
    monkeypatch.setenv("FRAUD_GIT_COMMIT", "abc123")
    assert provenance.git_commit(get_settings()) == "abc123"
    monkeypatch.delenv("FRAUD_GIT_COMMIT")
    monkeypatch.setattr(provenance, "REPO_ROOT", tmp_path)  # a folder that is not a checkout
    assert provenance.git_commit(get_settings()) is None
    (tmp_path / ".git").mkdir()  # looks like one, but git cannot read it
    assert provenance.git_commit(get_settings()) is None
    monkeypatch.setenv("PATH", str(tmp_path))  # no git binary at all
    assert provenance.git_commit(get_settings()) is None


def _configure(home: str) -> str:
    import os

    os.environ["FRAUD_HOME"] = home
    return tracking.configure_mlflow(get_settings())


def test_parallel_first_use_of_a_fresh_store_does_not_race(fraud_home):
    # The two training steps start at once on a fresh FRAUD_HOME under the multiprocess executor.
    # Without the lock in configure_mlflow both migrate the schema at once and one fails.
    with multiprocessing.get_context("fork").Pool(2) as pool:
        ids = pool.map(_configure, [str(fraud_home)] * 2)
    assert ids[0] == ids[1]
    experiment = mlflow.MlflowClient(tracking.local_tracking_uri(get_settings())).get_experiment(
        ids[0]
    )
    assert experiment.artifact_location == (fraud_home / "mlartifacts").as_uri()


@pytest.fixture
def trained_run(fraud_home, gold, monkeypatch):
    """The train task run on a small gold table, with a pinned commit."""
    monkeypatch.setenv("FRAUD_GIT_COMMIT", "feedbeef")
    table_store(get_settings()).write_pandas(gold, "claim_features")
    result = run_task(
        train_task.train,
        ["--model", "xgboost", "--boosting_rounds", "25", "--run_id", "dagster-run-1"],
        name="train",
    )
    return result


def test_train_task_logs_a_probability_pyfunc_with_its_evidence(trained_run, gold, tmp_path):
    metadata = trained_run.materializations[0].metadata
    assert trained_run.materializations[0].asset_key == "xgboost_model"
    client = tracking.mlflow_client()
    run = client.get_run(metadata["mlflow_run_id"])
    params, tags = run.data.params, run.data.tags
    assert params["run_id"] == "dagster-run-1"
    assert params["git_commit"] == "feedbeef"
    assert params["training_delta_version"] == "0" == str(metadata["training_delta_version"])
    assert params["seed"] == "42" and params["n_estimators"] == "25"
    assert tags["mlflow.source.git.commit"] == "feedbeef"
    assert run.data.metrics["holdout_roc_auc"] == pytest.approx(metadata["roc_auc"], abs=1e-4)
    assert run.inputs is not None
    assert run.inputs.dataset_inputs[0].dataset.source_type == "delta_table"

    importance = json.loads(
        Path(
            mlflow.artifacts.download_artifacts(
                run_id=run.info.run_id, artifact_path="feature_importance.json"
            )
        ).read_text()
    )
    assert set(MODEL_FEATURES) <= set(importance)
    assert sum(importance[c] for c in MODEL_FEATURES) == pytest.approx(1.0, abs=1e-4)

    model = mlflow.pyfunc.load_model(tags[TAG_MODEL_URI])
    assert model.metadata.signature is not None
    assert model.metadata.saved_input_example_info is not None
    _, holdout = split_gold(gold)
    scores = model.predict(holdout[MODEL_FEATURES])
    assert scores.dtype == np.float64 and ((scores >= 0) & (scores <= 1)).all()
    # Probabilities, not labels: most scores lie strictly between 0 and 1.
    assert np.mean((scores > 0) & (scores < 1)) > 0.9
    assert len(np.unique(scores)) > 20

    reference = pd.read_parquet(
        mlflow.artifacts.download_artifacts(
            run_id=run.info.run_id, artifact_path=REFERENCE_ARTIFACT
        )
    )
    assert list(reference.columns) == [*NUMERIC_FEATURES, *CATEGORICAL_FEATURES, "fraud_score"]
    np.testing.assert_allclose(
        model.predict(reference[MODEL_FEATURES]), reference["fraud_score"], rtol=1e-9
    )
    check = trained_run.checks[0]
    assert check.check_name == "holdout_roc_auc_above_floor" and check.severity == "WARN"
    assert check.passed == (metadata["roc_auc"] >= get_settings().thresholds.roc_auc_min)
    _assert_loads_without_fraud_assets(metadata["model_uri"], tmp_path)


def test_reference_sample_is_capped(gold):
    train, _ = split_gold(gold)
    trained = train_model(train, model_type="catboost", params=SMALL)
    reference = training.reference_sample(train, trained, seed=1, max_rows=100)
    assert len(reference) == 100
    np.testing.assert_allclose(reference["fraud_score"], trained.predict_proba(reference))


def _assert_loads_without_fraud_assets(uri: str, tmp_path: Path) -> None:
    """The pyfunc ships its own code: a process that cannot import fraud_assets still scores."""
    local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(tmp_path / "m"))
    script = (
        "import sys, builtins\n"
        "real = builtins.__import__\n"
        "def guarded(name, *a, **k):\n"
        "    if name.split('.')[0] == 'fraud_assets':\n"
        "        raise ImportError('fraud_assets is not installed here')\n"
        "    return real(name, *a, **k)\n"
        "builtins.__import__ = guarded\n"
        "import mlflow.pyfunc, pandas as pd\n"
        f"m = mlflow.pyfunc.load_model({local!r})\n"
        "example = m.input_example\n"
        "print(float(m.predict(example)[0]))\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert 0.0 <= float(completed.stdout.strip().splitlines()[-1]) <= 1.0


def test_train_task_links_its_mlflow_run_and_charts_its_holdout_curves(trained_run):
    metadata = trained_run.materializations[0].metadata
    run = tracking.mlflow_client().get_run(metadata["mlflow_run_id"])
    assert metadata["mlflow_run"] == {
        "raw_value": (
            f"http://localhost:5000/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
        ),
        "type": "url",
    }
    png_from_markdown(metadata["holdout_curves"])


@pytest.mark.parametrize("model_type", ["catboost", "xgboost"])
def test_training_reports_its_progress(gold, model_type, caplog):
    import logging

    train, _ = split_gold(gold)
    logger = logging.getLogger(f"progress.{model_type}")
    with caplog.at_level(logging.INFO, logger=logger.name):
        train_model(train, model_type=model_type, params=SMALL, progress=logger)
    rounds = [m for m in caplog.messages if "round" in m]
    # 25 rounds, a line every 25 // 6 = 4 rounds and at the end.
    assert [m.split()[2] for m in rounds] == [f"{n}/25" for n in (4, 8, 12, 16, 20, 24, 25)]
    assert rounds[0].startswith(f"{model_type}: round 4/25 (16%) after ")
    assert caplog.messages[-1].startswith(f"trained {model_type} on {len(train)} rows")


def test_model_version_links_locally_and_on_databricks(fraud_home, monkeypatch):
    monkeypatch.delenv("DATABRICKS_RUNTIME_VERSION", raising=False)
    settings = get_settings()
    assert (
        tracking.model_version_url(settings, "fraud_detector", "3")
        == "http://localhost:5000/#/models/fraud_detector/versions/3"
    )
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "17.3")
    monkeypatch.setenv("DATABRICKS_HOST", "adb-1.azuredatabricks.net")
    assert (
        tracking.model_version_url(settings, "main.fraud.fraud_detector", "3")
        == "https://adb-1.azuredatabricks.net/explore/data/models/main/fraud/fraud_detector/version/3"
    )


def test_no_protected_attribute_or_its_source_reaches_a_model(gold):
    # Issue 12 finding 2: patient_age, the source of patient_age_group, was a model input.
    from fraud_assets.features import MODEL_FEATURES, PROTECTED_SOURCES

    forbidden = {column for sources in PROTECTED_SOURCES.values() for column in sources}
    assert {"patient_age", "patient_age_group", "patient_gender"} <= forbidden
    assert not forbidden & set(MODEL_FEATURES)
    train, _ = split_gold(gold)
    trained = train_model(train, model_type="xgboost", params=SMALL)
    assert not forbidden & set(trained.spec.columns)
    assert not forbidden & set(trained.feature_importance)


def test_a_protected_attribute_is_an_input_only_when_allowed_by_name(gold):
    from fraud_assets.features import PROTECTED_SOURCES, ProtectedInputError, forbidden_inputs

    train, _ = split_gold(gold)
    forbidden = forbidden_inputs(PROTECTED_SOURCES)
    # Named in allowed_protected_inputs, one attribute becomes an input; the others stay out.
    allowed = training.feature_spec(train, "xgboost", allowed=["geographic_region"])
    assert "geographic_region" in allowed.categorical
    assert not (forbidden - {"geographic_region"}) & set(allowed.columns)
    model = train_model(
        train, model_type="xgboost", params=SMALL, allowed_protected=["geographic_region"]
    )
    assert "geographic_region" in model.spec.columns

    # A feature list edited by mistake (a protected source as a feature) is refused.
    import fraud_assets.features as features

    leaked = [*features.NUMERIC_FEATURES, "patient_age"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(features, "NUMERIC_FEATURES", leaked)
        with pytest.raises(ProtectedInputError, match="patient_age"):
            training.feature_spec(train, "xgboost")
    # Only a protected column of claim_features can be allowed.
    with pytest.raises(ProtectedInputError, match="claim_amount"):
        training.feature_spec(train, "xgboost", allowed=["claim_amount"])
    with pytest.raises(ProtectedInputError, match="patient_age"):
        training.feature_spec(train, "xgboost", allowed=["patient_age"])


def test_the_allowance_is_a_setting_and_reaches_the_train_step(monkeypatch):
    from fraud_assets.settings import get_settings

    assert get_settings().allowed_protected_inputs == []
    monkeypatch.setenv("FRAUD_ALLOWED_PROTECTED_INPUTS", '["geographic_region"]')
    assert get_settings().allowed_protected_inputs == ["geographic_region"]


WARM_UP_FEATURES = [
    "provider_claim_count",
    "provider_unique_patients",
    "patient_claim_count",
    "patient_provider_count",
]


def _activity_psi(reference: pd.DataFrame, current: pd.DataFrame) -> float:
    report = psi_report(
        reference,
        current,
        numeric_features=WARM_UP_FEATURES,
        categorical_features=[],
        score_column=None,
        bins=10,
        epsilon=1e-4,
        warn=0.1,
        error=0.2,
        min_bucket_count=10,
    )
    return float(report["psi"].max())


@pytest.mark.parametrize("seed", range(5))
def test_psi_reference_leaves_out_the_first_months_cut_short_counts(seed):
    # Four months of claims: the first month's provider and patient counts have no earlier
    # claims to count, so against them the holdout's full counts read as drift.
    claims = generate_claims(5000, seed=seed, period_days=120)
    gold = build_claim_features_pandas(claims, split=SplitPolicy(0.2, 42))
    train, holdout = gold[gold["split"] == "train"], gold[gold["split"] == "holdout"]
    assert _activity_psi(train, holdout) > 0.2  # every training row: "major drift"
    warm = training.reference_rows(train, history_starts=min(gold["claim_date"]))
    assert pd.to_datetime(warm["claim_date"]).min() >= pd.Timestamp(
        min(gold["claim_date"])
    ) + pd.Timedelta(days=ACTIVITY_DAYS)
    assert _activity_psi(warm, holdout) < 0.2


def test_a_short_table_keeps_every_training_row_in_the_reference(gold):
    train, _ = split_gold(gold)
    # Every claim of the table is in its first month: nothing is warmed up.
    latest = max(train["claim_date"])
    assert len(training.reference_rows(train, history_starts=latest)) == len(train)
    earliest = min(train["claim_date"])
    warm = training.reference_rows(train, history_starts=earliest)
    assert training.REFERENCE_MIN_ROWS <= len(warm) < len(train)


def test_reference_sample_draws_from_the_warmed_up_rows(gold):
    train, _ = split_gold(gold)
    trained = train_model(train, model_type="catboost", params=SMALL)
    earliest = min(train["claim_date"])
    reference = training.reference_sample(train, trained, seed=1, history_starts=earliest)
    assert len(reference) == len(training.reference_rows(train, history_starts=earliest))


@needs_auto_insurance_file
def test_the_auto_insurance_files_first_run_shows_no_activity_drift():
    landed = read_source(AUTO_INSURANCE_FILE, load_mapping("auto_insurance_claims"))
    records = landed.records
    claims = pd.DataFrame(
        {
            **{name: records[name] for name in records.columns},
            "claim_date": pd.to_datetime(records["claim_date"]).dt.date,
            "service_date": pd.to_datetime(records["service_date"]).dt.date,
            "claim_amount": records["claim_amount"].astype(float),
            "num_procedures": records["num_procedures"].astype(int),
            "length_of_stay": records["length_of_stay"].astype(int),
            "patient_age": records["patient_age"].astype(int),
            "is_fraud": records["is_fraud"].astype(int),
        }
    )
    gold = build_claim_features_pandas(claims, split=SplitPolicy(0.2, 42))
    train, holdout = gold[gold["split"] == "train"], gold[gold["split"] == "holdout"]
    assert _activity_psi(train, holdout) > 1.0  # measured 1.39 before the warm-up rule
    warm = training.reference_rows(train, history_starts=min(gold["claim_date"]))
    assert _activity_psi(warm, holdout) < 0.1


@pytest.mark.parametrize("model_type", ["catboost", "xgboost"])
def test_the_same_claims_in_another_row_order_train_the_same_model(gold, model_type):
    # A Delta table read back has no guaranteed row order (Spark writes several files).
    shuffled = gold.sample(frac=1.0, random_state=7).reset_index(drop=True)
    scores = []
    for frame in (gold, shuffled):
        train, holdout = split_gold(frame)
        trained = train_model(train, model_type=model_type, params=SMALL)
        scores.append(
            pd.Series(trained.predict_proba(holdout), index=holdout["claim_id"]).sort_index()
        )
    np.testing.assert_allclose(scores[0], scores[1], rtol=1e-12)
