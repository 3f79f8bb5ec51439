"""The booster input built without pandas gives the logged pyfunc's answers to the last bit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fraud_assets.ml.booster_input import BoosterInput
from fraud_assets.ml.pyfunc import ModelType, model_matrix, predict_fraud_probability
from fraud_assets.ml.training import TrainedModel, split_gold, train_model
from fraud_assets_tests.serving_support import FAST, gold_frame


@pytest.fixture(scope="module", params=["xgboost", "catboost"])
def trained(request: pytest.FixtureRequest) -> TrainedModel:
    model_type: ModelType = request.param
    train, _ = split_gold(gold_frame(seed=6, n_rows=1500, extras=True))
    return train_model(train, model_type=model_type, params=FAST)


def _claims() -> pd.DataFrame:
    """Scored claims with what the input must carry over: unseen and null codes, blank
    numbers, and columns in another order than training's."""
    claims = gold_frame(seed=14, n_rows=2000, extras=True).reset_index(drop=True)
    claims.loc[0, "procedure_code"] = "NEVER-SEEN"
    claims.loc[1, "xc_hobby"] = None
    claims.loc[2, "xn_deductible"] = np.nan
    return claims[list(reversed(claims.columns))]


def test_probabilities_are_the_pyfunc_ones_to_the_last_bit(trained: TrainedModel) -> None:
    claims = _claims()
    model = BoosterInput(trained.booster, trained.spec)
    expected = predict_fraud_probability(trained.booster, claims, trained.spec)
    np.testing.assert_array_equal(model.probability(model.data(claims)), expected)
    for row in (0, 1, 2, 1999):
        one = claims.iloc[[row]]
        np.testing.assert_array_equal(model.probability(model.data(one)), expected[[row]])


def test_contributions_add_up_to_the_margin(trained: TrainedModel) -> None:
    claims = _claims()
    model = BoosterInput(trained.booster, trained.spec)
    raw = model.contributions(model.data(claims))
    assert raw.shape == (len(claims), len(trained.spec.columns) + 1)
    matrix = model_matrix(claims, trained.spec)
    if trained.model_type == "catboost":
        margin = trained.booster.predict(matrix, prediction_type="RawFormulaVal")
    else:
        margin = trained.booster.inplace_predict(matrix, predict_type="margin")
    np.testing.assert_allclose(raw.sum(axis=1), margin, rtol=1e-6, atol=1e-6)
