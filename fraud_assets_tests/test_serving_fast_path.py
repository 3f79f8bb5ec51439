"""The service scores through the booster itself, with exactly the pyfunc's answers.

MLflow's pyfunc ``predict`` spends milliseconds per call on schema enforcement and frame
copies whatever the batch size; the service validates requests itself (the request contract,
then the model's own feature spec) and calls the booster the pyfunc wraps. These tests prove
the answers are the pyfunc's to the last bit, for both model types, and that the pyfunc's
``predict`` is not on the path.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from fraud_assets.features import MODEL_FEATURES
from fraud_assets.ml.pyfunc import FeatureFrameError, FeatureSpec, ModelType
from fraud_assets.ml.reasons import contributions, top_reasons
from fraud_assets.ml.tracking import configure_mlflow
from fraud_assets.serving.models import ServedModel
from fraud_assets.settings import FraudSettings
from fraud_assets_tests.serving_support import gold_frame, register_version


def _served(home: Path, model_type: ModelType) -> tuple[ServedModel, mlflow.pyfunc.PyFuncModel]:
    settings = FraudSettings(home=home)
    version = register_version(settings, seed=8, model_type=model_type)
    configure_mlflow(settings)
    uri = f"models:/{settings.registered_model_name}/{version}"
    served = ServedModel(
        alias="champion",
        name=settings.registered_model_name,
        version=version,
        run_id=None,
        source=None,
        loaded_at=datetime.now(UTC),
        model=mlflow.pyfunc.load_model(uri),
        threshold=0.5,
        gates_passed=True,
    )
    return served, mlflow.pyfunc.load_model(uri)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("FRAUD_")]:
        monkeypatch.delenv(name)


@pytest.mark.parametrize("model_type", ["xgboost", "catboost"])
def test_the_fast_path_answers_exactly_as_the_pyfunc(
    tmp_path: Path, clean_env: None, model_type: ModelType, monkeypatch: pytest.MonkeyPatch
) -> None:
    served, pyfunc = _served(tmp_path, model_type)
    claims = gold_frame(seed=31, n_rows=300)[MODEL_FEATURES].reset_index(drop=True)
    # A code no training row had, and columns in another order with one extra.
    claims.loc[0, "procedure_code"] = "NEVER-SEEN"
    shuffled = claims[list(reversed(MODEL_FEATURES))].assign(unused=1.0)
    expected = np.asarray(pyfunc.predict(claims), dtype="float64")

    # The pyfunc's own predict is not on the service's path.
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the service called the pyfunc's predict")

    monkeypatch.setattr(served.model, "predict", refuse)
    np.testing.assert_array_equal(served.predict(claims), expected)
    np.testing.assert_array_equal(served.predict(shuffled), expected)
    for row in (0, 1, 299):
        np.testing.assert_array_equal(served.predict(claims.iloc[[row]]), expected[[row]])
    assert served.predict(claims.iloc[:0]).shape == (0,)


@pytest.mark.parametrize("model_type", ["xgboost", "catboost"])
def test_served_reasons_are_the_boosters_contributions(
    tmp_path: Path, clean_env: None, model_type: ModelType
) -> None:
    served, pyfunc = _served(tmp_path, model_type)
    claims = gold_frame(seed=32, n_rows=50)[MODEL_FEATURES].reset_index(drop=True)
    claims.loc[3, "procedure_code"] = "NEVER-SEEN"
    scores, reasons = served.score(claims)
    assert reasons is not None and len(reasons) == 50
    np.testing.assert_array_equal(scores, np.asarray(pyfunc.predict(claims), dtype="float64"))
    wrapped = pyfunc.unwrap_python_model()
    found = contributions(wrapped.booster, claims, FeatureSpec.from_json(wrapped.spec.to_json()))
    # The contributions add up to the pyfunc's own score, in log-odds.
    np.testing.assert_allclose(1 / (1 + np.exp(-found.margin)), scores, atol=1e-6)
    assert reasons == top_reasons(found, claims)
    # One claim alone gets the score and reasons it gets in a batch.
    one_score, one_reason = served.score(claims.iloc[[7]])
    assert one_score.tolist() == [scores[7]] and one_reason == [reasons[7]]


def test_the_fast_path_still_refuses_a_frame_without_a_model_column(
    tmp_path: Path, clean_env: None
) -> None:
    served, _ = _served(tmp_path, "xgboost")
    claims = gold_frame(seed=32, n_rows=5)[MODEL_FEATURES]
    with pytest.raises(FeatureFrameError, match="provider_claim_count"):
        served.predict(claims.drop(columns=["provider_claim_count"]))
    with pytest.raises(FeatureFrameError, match="procedure_code"):
        served.predict(claims.assign(procedure_code=pd.Series([1.0] * 5, index=claims.index)))
