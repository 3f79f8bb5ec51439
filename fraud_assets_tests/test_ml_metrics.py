"""Holdout metrics equal scikit-learn's, and the gates decide at their exact boundaries."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from fraud_assets.ml import evaluation, metrics
from fraud_assets.ml.metrics import HoldoutMetrics, MetricError
from fraud_assets.settings import Thresholds


@pytest.fixture
def holdout() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    y_true = (rng.random(2_000) < 0.08).astype(int)
    y_score = np.clip(rng.normal(0.25 + 0.4 * y_true, 0.2), 0.0, 1.0)
    amounts = rng.lognormal(7.0, 1.0, 2_000)
    return y_true, y_score, amounts


def test_ranking_metrics_equal_scikit_learn(holdout):
    y_true, y_score, _ = holdout
    assert metrics.roc_auc(y_true, y_score) == pytest.approx(skm.roc_auc_score(y_true, y_score))
    assert metrics.pr_auc(y_true, y_score) == pytest.approx(
        skm.average_precision_score(y_true, y_score)
    )
    assert metrics.brier_score(y_true, y_score) == pytest.approx(
        skm.brier_score_loss(y_true, y_score)
    )


@pytest.mark.parametrize("threshold", [0.2, 0.5, 0.8])
def test_operating_point_equals_scikit_learn_on_thresholded_scores(holdout, threshold):
    y_true, y_score, _ = holdout
    flagged = (y_score >= threshold).astype(int)
    assert metrics.precision_at_threshold(y_true, y_score, threshold=threshold) == pytest.approx(
        skm.precision_score(y_true, flagged, zero_division=0)
    )
    assert metrics.recall_at_threshold(y_true, y_score, threshold=threshold) == pytest.approx(
        skm.recall_score(y_true, flagged, zero_division=0)
    )


def test_a_score_equal_to_the_threshold_is_flagged():
    assert metrics.flag([0.49, 0.5, 0.51], threshold=0.5).tolist() == [0, 1, 1]


def test_fraud_dollars_caught_matches_a_claim_by_claim_sum(holdout):
    y_true, y_score, amounts = holdout
    caught, share = metrics.fraud_dollars_caught(y_true, y_score, amounts=amounts, threshold=0.5)
    expected = sum(a for t, s, a in zip(y_true, y_score, amounts, strict=True) if t and s >= 0.5)
    total = sum(a for t, a in zip(y_true, amounts, strict=True) if t)
    assert caught == pytest.approx(expected)
    assert share == pytest.approx(expected / total)


def test_fraud_dollars_with_no_fraud_is_zero_not_a_division_error():
    assert metrics.fraud_dollars_caught([0, 0], [0.9, 0.1], amounts=[10, 20], threshold=0.5) == (
        0.0,
        0.0,
    )


def test_one_class_holdout_is_a_clear_error():
    with pytest.raises(MetricError, match="both classes are needed"):
        metrics.roc_auc([0, 0, 0], [0.1, 0.2, 0.3])


def test_nan_scores_are_refused():
    with pytest.raises(MetricError, match="NaN"):
        metrics.pr_auc([0, 1], [0.1, float("nan")])


def test_holdout_metrics_bundle_agrees_with_the_single_metrics(holdout):
    y_true, y_score, amounts = holdout
    bundle = metrics.holdout_metrics(y_true, y_score, amounts=amounts, threshold=0.5)
    assert bundle.roc_auc == metrics.roc_auc(y_true, y_score)
    assert bundle.prevalence == pytest.approx(y_true.mean())
    assert bundle.flagged_rate == pytest.approx((y_score >= 0.5).mean())
    assert bundle.rows == len(y_true)


def _metrics(roc_auc: float, pr_auc: float, prevalence: float = 0.1) -> HoldoutMetrics:
    return HoldoutMetrics(
        roc_auc=roc_auc,
        pr_auc=pr_auc,
        precision=0.5,
        recall=0.5,
        brier=0.1,
        fraud_dollars_caught=0.0,
        fraud_dollars_share=0.0,
        prevalence=prevalence,
        flagged_rate=0.1,
        threshold=0.5,
        rows=100,
    )


def _evaluated(model: str, roc_auc: float, pr_auc: float) -> evaluation.EvaluatedModel:
    return evaluation.EvaluatedModel(
        model=model,
        role="candidate",
        model_uri=f"models:/{model}",
        mlflow_run_id=model,
        model_version=None,
        scores=np.zeros(1),
        metrics=_metrics(roc_auc, pr_auc),
    )


def test_candidate_is_best_pr_auc_and_roc_auc_breaks_ties():
    ranked = evaluation.rank_candidates(
        [_evaluated("a", 0.90, 0.50), _evaluated("b", 0.80, 0.60), _evaluated("c", 0.85, 0.60)]
    )
    assert [e.model for e in ranked] == ["c", "b", "a"]
    assert [e.role for e in ranked] == ["candidate", "runner_up", "runner_up"]


def test_gates_decide_at_their_boundaries():
    thresholds = Thresholds.model_validate(
        {"roc_auc_min": 0.7, "pr_auc_lift_min": 2.0, "regression_tolerance": 0.02}
    )
    assert evaluation.roc_auc_floor(_metrics(0.7, 0.5), thresholds=thresholds).passed
    assert not evaluation.roc_auc_floor(_metrics(0.6999, 0.5), thresholds=thresholds).passed
    # PR AUC floor: odds twice the prevalence's: 2 x 0.1 / (0.9 + 0.2) = 0.1818.
    assert evaluation.pr_auc_floor(_metrics(0.8, 0.182), thresholds=thresholds).passed
    assert not evaluation.pr_auc_floor(_metrics(0.8, 0.181), thresholds=thresholds).passed
    champion = _metrics(0.85, 0.5)
    within = evaluation.no_regression(_metrics(0.835, 0.5), champion, thresholds=thresholds)
    beyond = evaluation.no_regression(_metrics(0.825, 0.5), champion, thresholds=thresholds)
    assert within.passed and not beyond.passed
    assert beyond.metadata["roc_auc_change"] == pytest.approx(-0.025)


@pytest.mark.parametrize("prevalence", [0.01, 0.05, 0.2, 0.5, 0.6, 0.9, 0.99])
def test_a_good_model_can_meet_the_pr_auc_floor_at_any_prevalence(prevalence: float) -> None:
    # Issue 12 finding 5: lift x prevalence exceeded 1 from a prevalence of 0.5, so no model
    # could pass. The floor is now the precision whose odds are lift x the prevalence's odds:
    # always between the prevalence (no skill) and 1.
    rng = np.random.default_rng(3)
    truth = (rng.random(20_000) < prevalence).astype(int)
    scores = np.clip(rng.normal(0.35 + 0.3 * truth, 0.15), 0, 1)  # ROC AUC about 0.92
    thresholds = Thresholds.model_validate({})
    good = _metrics(0.92, metrics.pr_auc(truth, scores), prevalence=float(truth.mean()))
    verdict = evaluation.pr_auc_floor(good, thresholds=thresholds)
    assert verdict.passed, verdict.description
    assert prevalence * 0.9 < verdict.metadata["pr_auc_min"] < 1.0
    no_skill = _metrics(0.5, float(truth.mean()), prevalence=float(truth.mean()))
    assert not evaluation.pr_auc_floor(no_skill, thresholds=thresholds).passed


def test_no_regression_passes_with_a_note_when_there_is_no_champion():
    verdict = evaluation.no_regression(
        _metrics(0.5, 0.1), None, thresholds=Thresholds.model_validate({})
    )
    assert verdict.passed
    assert "no champion" in verdict.description


def test_holdout_predictions_keep_candidate_and_champion_with_protected_attributes():
    holdout = pd.DataFrame(
        {
            "claim_id": ["a", "b"],
            "is_fraud": [1, 0],
            "claim_amount": [100.0, 50.0],
            "patient_gender": ["F", "M"],
            "patient_age_group": ["18-34", "65+"],
            "geographic_region": ["West", "South"],
        }
    )
    candidate = _evaluated("catboost", 0.9, 0.5)
    runner_up = evaluation.rank_candidates([candidate, _evaluated("xgboost", 0.8, 0.4)])[1]
    champion = evaluation.EvaluatedModel(
        model="fraud_detector",
        role="champion",
        model_uri="models:/fraud_detector/1",
        mlflow_run_id="r",
        model_version="1",
        scores=np.array([0.7, 0.2]),
        metrics=_metrics(0.8, 0.4),
    )
    candidate = evaluation.EvaluatedModel(**{**candidate.__dict__, "scores": np.array([0.4, 0.6])})
    rows = evaluation.holdout_prediction_rows(
        holdout,
        [candidate, runner_up, champion],
        protected_attributes=["patient_gender", "patient_age_group", "geographic_region"],
    )
    assert sorted(rows["model_role"].unique()) == ["candidate", "champion"]
    champion_rows = rows[rows["model_role"] == "champion"]
    assert champion_rows["decision"].tolist() == [1, 0]
    assert rows[rows["model_role"] == "candidate"]["decision"].tolist() == [0, 1]
    assert {"claim_amount", "patient_gender", "patient_age_group", "geographic_region"} <= set(
        rows.columns
    )


# --- the operating threshold (issue 12 finding 5: a fixed 0.5 flagged 29.7% of claims) -------


def _scored(prevalence: float, n: int = 20_000, seed: int = 4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = (rng.random(n) < prevalence).astype(int)
    # Balanced class weights push scores up: half the claims score above 0.5.
    scores = 1.0 / (1.0 + np.exp(-(rng.normal(0.0, 1.0, n) + 2.2 * truth)))
    return truth, scores


def _choose(truth: np.ndarray, scores: np.ndarray, **policy: Any) -> metrics.OperatingChoice:
    settings = {"kind": "flag_rate", "flag_rate": 0.05, "min_precision": 0.5}
    return metrics.choose_threshold(truth, scores, **{**settings, "fixed_threshold": 0.5, **policy})


@pytest.mark.parametrize("prevalence", [0.01, 0.053, 0.3, 0.6])
def test_the_flag_rate_policy_flags_what_investigators_can_review(prevalence: float) -> None:
    truth, scores = _scored(prevalence)
    assert metrics.flag(scores, threshold=0.5).mean() > 0.4  # the defect: a fixed 0.5
    choice = _choose(truth, scores)
    assert 0.0495 <= choice.flagged_rate <= 0.05
    assert choice.flagged_rate == metrics.flag(scores, threshold=choice.threshold).mean()
    # The lowest such threshold: one step lower flags more than the capacity.
    lower = np.max(scores[scores < choice.threshold])
    assert metrics.flag(scores, threshold=lower).mean() > 0.05
    assert choice.met and choice.as_params()["operating_threshold"] == choice.threshold


def test_ties_at_the_cut_are_never_split_past_the_capacity() -> None:
    scores = np.array([0.9, 0.8, 0.8, 0.8, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1])
    truth = np.array([1, 1, 0, 0, 0, 0, 0, 0, 0, 0])
    assert _choose(truth, scores, flag_rate=0.2).threshold == 0.9
    assert _choose(truth, scores, flag_rate=0.4).threshold == 0.8
    nothing = _choose(truth, scores, flag_rate=0.05)
    assert nothing.flagged_rate == 0.0 and nothing.threshold > 0.9


def test_the_precision_policy_catches_the_most_fraud_at_that_precision() -> None:
    truth, scores = _scored(0.1)
    choice = _choose(truth, scores, kind="min_precision", min_precision=0.5)
    assert choice.met and choice.precision >= 0.5
    flagged = metrics.flag(scores, threshold=choice.threshold)
    assert skm.precision_score(truth, flagged) == pytest.approx(choice.precision)
    lower = np.max(scores[scores < choice.threshold])
    assert metrics.precision_at_threshold(truth, scores, threshold=lower) < 0.5
    # No threshold reaches 0.9: the most precise one is used, and the choice says so.
    unreachable = _choose(
        np.array([0, 1, 0, 1]),
        np.array([0.9, 0.8, 0.8, 0.1]),
        kind="min_precision",
        min_precision=0.9,
    )
    assert not unreachable.met
    assert (unreachable.threshold, unreachable.precision) == (0.1, 0.5)


def test_the_fixed_policy_is_the_given_threshold() -> None:
    truth, scores = _scored(0.1)
    choice = _choose(truth, scores, kind="fixed", fixed_threshold=0.7)
    assert choice.threshold == 0.7 and choice.kind == "fixed"
