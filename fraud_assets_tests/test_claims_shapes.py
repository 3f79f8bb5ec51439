"""Claims shaped like real files (issue 12): each shape option, and the gates run on them.

The gates were first shown only on the easy default generator; here they run on the shapes
real payers' files have: provider-level labels, 43 states, ~2,100 diagnosis codes,
prevalence from 1% to 60%, minors, inpatient claims with no procedure code, late labels,
and fraud that is not all obvious. The model is the project's own (CatBoost on the gold
features, out-of-time holdout, threshold chosen by the default operating point).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from fraud_assets.claims.schema import age_groups
from fraud_assets.claims.synthetic import (
    BIAS_ATTRIBUTE,
    BIAS_GROUP,
    REALISTIC_SHAPE,
    ClaimShape,
    generate_claims,
    generate_claims_with_patterns,
    to_arrow,
)
from fraud_assets.features import CATEGORICAL_FEATURES, NUMERIC_FEATURES, SplitPolicy
from fraud_assets.governance import fairness_gates, fairness_report_under, pinned_policy
from fraud_assets.governance import psi_report as build_psi_report
from fraud_assets.ml.evaluation import pr_auc_floor, roc_auc_floor
from fraud_assets.ml.metrics import HoldoutMetrics, holdout_metrics
from fraud_assets.ml.training import TrainingParams, split_gold, train_model
from fraud_assets.settings import FraudSettings
from fraud_assets_tests.fairness_cases import ROWS, realistic_holdout
from fraud_assets_tests.pandas_peer import build_claim_features_pandas

# --- each option does what it says ------------------------------------------------------------


def test_the_default_shape_is_the_documented_easy_one() -> None:
    claims = generate_claims(5_000, seed=3)
    assert claims["geographic_region"].nunique() == 5
    assert claims["diagnosis_code"].nunique() <= 32
    assert claims["is_fraud"].notna().all()
    assert (claims["patient_age"] >= 18).all()


def test_realistic_shape_has_states_a_long_code_tail_minors_and_late_labels() -> None:
    claims = generate_claims(ROWS, seed=3, shape=REALISTIC_SHAPE)
    regions = claims["geographic_region"].value_counts()
    assert len(regions) == 43
    assert regions.iloc[0] > 10 * regions.iloc[-1]  # a few big states, many small ones
    assert claims["diagnosis_code"].nunique() > 1_000
    minors = claims["patient_age"] < 18
    assert 0.10 < minors.mean() < 0.20
    assert (age_groups(claims.loc[minors, "patient_age"].to_numpy()) == "0-17").all()
    inpatient = claims["length_of_stay"] > 0
    assert 0.3 < (claims.loc[inpatient, "num_procedures"] == 0).mean() < 0.5
    assert (claims.loc[~inpatient, "num_procedures"] > 0).all()
    # The last 30 days of filings are not adjudicated yet; everything before is.
    last = claims["claim_date"].max()
    recent = claims["claim_date"] > last - pd.Timedelta(days=30)
    assert claims.loc[recent, "is_fraud"].isna().all()
    assert claims.loc[~recent, "is_fraud"].notna().all()
    assert to_arrow(claims).column("is_fraud").null_count == int(recent.sum())


def test_hidden_fraud_is_billed_like_an_ordinary_claim() -> None:
    claims, pattern = generate_claims_with_patterns(ROWS, seed=6)
    key = ["patient_id", "provider_id", "procedure_code", "service_date", "claim_amount"]
    rebills = claims[(pattern == "duplicate_billing").to_numpy()]
    originals = claims[(pattern == "none").to_numpy()]
    paired = rebills.merge(originals, on=key, suffixes=("", "_original"))
    has_original = rebills["claim_id"].isin(paired["claim_id"])
    # 30% of re-bills are hidden: ordinary claims with a fraud label and no original.
    assert has_original.mean() == pytest.approx(0.7, abs=0.08)
    assert (rebills["is_fraud"] == 1).all()


@pytest.mark.parametrize("prevalence", [0.01, 0.075, 0.3, 0.6])
def test_prevalence_is_what_was_asked(prevalence: float) -> None:
    shape = ClaimShape(prevalence=prevalence)
    claims = generate_claims(ROWS, seed=5, shape=shape)
    assert claims["is_fraud"].mean() == pytest.approx(prevalence, abs=0.01 + 0.05 * prevalence)


def test_provider_labels_make_every_claim_of_a_flagged_provider_fraud() -> None:
    shape = ClaimShape(provider_labels=True, prevalence=0.1)
    claims, patterns = generate_claims_with_patterns(ROWS, seed=5, shape=shape)
    purity = claims.groupby("provider_id")["is_fraud"].agg(["min", "max"])
    assert (purity["min"] == purity["max"]).all()
    assert purity["max"].mean() == pytest.approx(0.1, abs=0.02)
    assert claims["is_fraud"].mean() == pytest.approx(0.1, abs=0.03)
    # Fraud is what the flagged providers do: every pattern claim is billed by one of them.
    assert (claims.loc[(patterns != "none").to_numpy(), "is_fraud"] == 1).all()


@pytest.mark.parametrize(
    "change",
    [
        {"prevalence": 0.0},
        {"prevalence": 0.7},
        {"minor_share": 1.5},
        {"honest_outliers": 0.5},
        {"regions": -1},
        {"diagnosis_codes": 10},
    ],
)
def test_impossible_shapes_are_refused(change: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(change))):
        ClaimShape(**change)  # type: ignore[arg-type]


# --- the gates on these shapes ----------------------------------------------------------------


def _fairness(holdout: pd.DataFrame, *, clusters: bool = True) -> dict[str, Any]:
    policy = pinned_policy("dev")
    judged = policy if clusters else policy.model_copy(update={"clusters": ()})
    report = fairness_report_under(holdout, judged)
    return dict(fairness_gates(report, policy=policy, pinned=policy).verdicts)


def _quality(holdout: pd.DataFrame) -> HoldoutMetrics:
    return holdout_metrics(
        holdout["is_fraud"].to_numpy(int),
        holdout["fraud_score"].to_numpy(),
        amounts=holdout["claim_amount"].to_numpy(),
        threshold=float(holdout.loc[holdout["decision"] == 1, "fraud_score"].min()),
    )


@pytest.mark.parametrize(
    "shape",
    [
        REALISTIC_SHAPE,
        dataclasses.replace(REALISTIC_SHAPE, prevalence=0.01),
        dataclasses.replace(REALISTIC_SHAPE, prevalence=0.6),
    ],
    ids=["realistic", "prevalence-1%", "prevalence-60%"],
)
def test_a_fair_good_model_passes_every_blocking_gate_on_real_shapes(shape: ClaimShape) -> None:
    holdout = realistic_holdout(shape, seed=11)
    quality = _quality(holdout)
    thresholds = FraudSettings().thresholds
    assert roc_auc_floor(quality, thresholds=thresholds).passed, quality
    assert pr_auc_floor(quality, thresholds=thresholds).passed, quality
    policy = pinned_policy("dev")
    for name, verdict in _fairness(holdout).items():
        if name in policy.gates or name == "min_group_size":
            assert verdict.passed, (name, verdict.description)


def test_provider_labels_a_model_that_only_knows_seen_providers_is_blocked() -> None:
    """With provider labels, a per-claim split reports the leak as skill; the grouped
    out-of-time split shows that claim features do not find unseen fraudulent providers,
    and the ROC AUC floor blocks that model."""
    shape = dataclasses.replace(REALISTIC_SHAPE, provider_labels=True, prevalence=0.1)
    honest = _quality(realistic_holdout(shape, seed=11))
    claims = generate_claims(ROWS, seed=11, shape=shape)
    gold = build_claim_features_pandas(claims, split=SplitPolicy(0.2, 11, "random"))
    train, holdout = split_gold(gold)
    model = train_model(
        train, model_type="catboost", params=TrainingParams(boosting_rounds=150, seed=11)
    )
    leaked = roc_auc_score(holdout["is_fraud"], model.predict_proba(holdout))
    assert leaked > honest.roc_auc + 0.15, (leaked, honest.roc_auc)
    assert not roc_auc_floor(honest, thresholds=FraudSettings().thresholds).passed


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_default_signal_is_realistic_not_trivial(seed: int) -> None:
    """A good model on the default claims reaches a real-world ROC AUC, not 0.998."""
    quality = _quality(realistic_holdout(ClaimShape(), seed=seed))
    assert 0.80 <= quality.roc_auc <= 0.92, quality


@pytest.mark.parametrize("seed", [33, 52])
def test_a_fair_model_whose_errors_cluster_by_provider_passes(seed: int) -> None:
    """Seeds where intervals that count claims as independent failed a fair model: one small
    state's few providers had 5 of 64 honest claims flagged, where the provider mix, not the
    state, drives the rate. Of 30 data seeds (30-59) that blind interval failed 2, the
    patient- and provider-clustered one none (docs/governance.md)."""
    holdout = realistic_holdout(REALISTIC_SHAPE, seed=seed)
    assert not _fairness(holdout, clusters=False)["false_positive_rate_ratio"].passed
    assert _fairness(holdout)["false_positive_rate_ratio"].passed


@pytest.mark.parametrize("seed", [4, 5])
def test_false_accusations_fail_the_gate_on_gender_among_43_states_and_minors(seed: int) -> None:
    holdout = realistic_holdout(REALISTIC_SHAPE, seed=seed, bias=1.0)
    gate = _fairness(holdout)["false_positive_rate_ratio"]
    assert not gate.passed
    # Gender always, among patient- and provider-clustered intervals.
    assert BIAS_ATTRIBUTE in gate.metadata["failing_attributes"]
    legit = holdout.loc[holdout["is_fraud"] == 0]
    fpr = legit.groupby(BIAS_ATTRIBUTE)["decision"].mean()
    assert fpr[BIAS_GROUP] > 2 * fpr.drop(BIAS_GROUP).max()


def test_psi_stays_quiet_between_two_halves_of_a_realistic_file() -> None:
    claims = generate_claims(ROWS, seed=8, shape=REALISTIC_SHAPE)
    gold = build_claim_features_pandas(claims, split=SplitPolicy(0.2, 8, "random"))
    gold["fraud_score"] = np.random.default_rng(8).beta(1.0, 12.0, len(gold))
    half = np.random.default_rng(9).permutation(len(gold)) < len(gold) // 2
    t = FraudSettings().thresholds
    report = build_psi_report(
        gold[half],
        gold[~half],
        numeric_features=NUMERIC_FEATURES,
        categorical_features=CATEGORICAL_FEATURES,
        score_column="fraud_score",
        bins=t.psi_bins,
        epsilon=t.psi_epsilon,
        warn=t.psi_warn,
        error=t.psi_error,
        min_bucket_count=t.psi_min_bucket_count,
    )
    assert report["psi"].max() < 0.1, report.sort_values("psi").tail(3)
