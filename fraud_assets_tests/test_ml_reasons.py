"""Reason codes are the boosters' own exact contributions, in words, largest first."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fraud_assets.features import FIRST_CLAIM_GAP_DAYS, MODEL_FEATURES
from fraud_assets.ml.pyfunc import ModelType, model_matrix, predict_fraud_probability
from fraud_assets.ml.reasons import (
    REASON_COUNT,
    REASONS_TYPE,
    Reason,
    contributions,
    describe,
    flag_drivers,
    flag_drivers_markdown,
    reasons_array,
    top_reasons,
)
from fraud_assets.ml.training import TrainedModel, split_gold, train_model
from fraud_assets_tests.serving_support import FAST, gold_frame


@pytest.fixture(scope="module", params=["xgboost", "catboost"])
def trained(request: pytest.FixtureRequest) -> TrainedModel:
    model_type: ModelType = request.param
    train, _ = split_gold(gold_frame(seed=4, extras=True))
    return train_model(train, model_type=model_type, params=FAST)


def _claims() -> pd.DataFrame:
    claims = gold_frame(seed=12, n_rows=400, extras=True).reset_index(drop=True)
    claims.loc[0, "procedure_code"] = "NEVER-SEEN"
    return claims


def _margin(trained: TrainedModel, claims: pd.DataFrame) -> np.ndarray:
    matrix = model_matrix(claims, trained.spec)
    if trained.model_type == "catboost":
        raw = trained.booster.predict(matrix, prediction_type="RawFormulaVal")
    else:
        raw = trained.booster.inplace_predict(matrix, predict_type="margin")
    return np.asarray(raw, dtype="float64")


def test_contributions_plus_the_bias_are_the_models_margin(trained: TrainedModel) -> None:
    claims = _claims()
    found = contributions(trained.booster, claims, trained.spec)
    assert found.values.shape == (len(claims), len(trained.spec.columns))
    assert found.columns == trained.spec.columns
    np.testing.assert_allclose(found.margin, _margin(trained, claims), rtol=1e-6, atol=1e-6)
    # ... and the margin is the probability the pyfunc answers.
    probability = predict_fraud_probability(trained.booster, claims, trained.spec)
    np.testing.assert_allclose(1 / (1 + np.exp(-found.margin)), probability, atol=1e-6)
    # Not a constant split: the features really carry the score.
    assert np.abs(found.values).sum(axis=1).min() > 0


def test_top_reasons_are_the_largest_contributions_by_size(trained: TrainedModel) -> None:
    claims = _claims()
    found = contributions(trained.booster, claims, trained.spec)
    reasons = top_reasons(found, claims)
    assert len(reasons) == len(claims)
    for i in (0, 1, 57, 399):
        row = reasons[i]
        assert len(row) == REASON_COUNT
        sizes = [abs(r.contribution) for r in row]
        assert sizes == sorted(sizes, reverse=True)
        expected = np.sort(np.abs(found.values[i]))[::-1][:REASON_COUNT]
        np.testing.assert_allclose(sizes, expected)
        for reason in row:
            column = found.columns.index(reason.feature)
            assert reason.contribution == found.values[i, column]
            assert reason.reason == describe(reason.feature, claims.loc[i, reason.feature])


def test_an_empty_frame_has_no_reasons(trained: TrainedModel) -> None:
    found = contributions(trained.booster, _claims().iloc[:0], trained.spec)
    assert found.values.shape == (0, len(trained.spec.columns))
    assert top_reasons(found, _claims().iloc[:0]) == []


@pytest.mark.parametrize(
    ("feature", "value", "words"),
    [
        ("amount_vs_procedure_mean", 3.42, "amount 3.4x the procedure's mean"),
        ("amount_procedure_zscore", -2.04, "amount -2.0 SD from the procedure's mean"),
        ("duplicate_claim_count", 2, "2 earlier claims for the same bill"),
        ("duplicate_claim_count", 1, "1 earlier claim for the same bill"),
        ("is_duplicate_claim", 1, "a re-bill of an earlier claim"),
        ("days_since_prev_patient_claim", FIRST_CLAIM_GAP_DAYS, "patient's first claim in 30 days"),
        ("days_since_prev_patient_claim", 4, "4 days since the patient's previous service"),
        ("provider_claim_count", 41, "provider filed 41 claims in 30 days"),
        ("procedure_code", "99215", "procedure code 99215"),
        ("xn_deductible", 500.0, "deductible 500"),
        ("xn_deductible", float("nan"), "deductible missing"),
        ("xc_hobby", "chess", "hobby chess"),
    ],
)
def test_reasons_read_as_words(feature: str, value: object, words: str) -> None:
    assert describe(feature, value) == words


def test_every_model_feature_has_its_own_words() -> None:
    generic = {"procedure_code", "diagnosis_code", "provider_specialty"}
    for feature in MODEL_FEATURES:
        text = describe(feature, "X" if feature in generic else 2)
        assert feature not in text, f"{feature} has no words of its own: {text!r}"


def test_flag_drivers_count_the_strongest_raising_reason_of_flagged_claims() -> None:
    raise_amount = Reason("amount_vs_procedure_mean", 1.5, "amount 4.0x the procedure's mean")
    raise_dup = Reason("duplicate_claim_count", 0.9, "1 earlier claim for the same bill")
    lower = Reason("provider_claim_count", -2.0, "provider filed 3 claims in 30 days")
    reasons = [
        [lower, raise_amount, raise_dup],  # flagged: the amount is its strongest raise
        [raise_dup, raise_amount],  # flagged: the duplicate
        [raise_amount],  # not flagged: not counted
        [lower],  # flagged, but nothing raised it
        [raise_amount, raise_dup],
    ]
    drivers = flag_drivers(reasons, np.array([1, 1, 0, 1, 1]))
    assert drivers == [("amount_vs_procedure_mean", 2, 1.5), ("duplicate_claim_count", 1, 0.9)]
    table = flag_drivers_markdown(drivers)
    assert "| amount_vs_procedure_mean | 2 | +1.500 |" in table
    assert "No claim" in flag_drivers_markdown([])


def test_reasons_make_a_delta_ready_column() -> None:
    column = reasons_array([[Reason("claim_amount", 0.5, "claim amount 10.00")], []])
    assert column.type == REASONS_TYPE
    assert column.to_pylist()[0] == [
        {"feature": "claim_amount", "contribution": 0.5, "reason": "claim amount 10.00"}
    ]
