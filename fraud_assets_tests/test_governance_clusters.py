"""Fairness intervals when claims are not independent (issue 12): patients and providers.

A provider's honest claims share its averages, so a model flags them together; a fair model
then shows state-to-state differences in its false-positive rate that come from which few
providers a state has, not from the state. Intervals that count claims as independent fail
such a fair model on most data seeds. The report divides each group rate's counts by its
design effect, 1 + (m - 1) * rho (``fraud_assets.governance._fairness``); these tests show
the estimate equal to the textbook ANOVA, and the gate passing fair clustered models while
still failing a disparity the clustered data show.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import f_oneway

from fraud_assets.governance import (
    FairnessPolicy,
    compute_fairness_report,
    fairness_gates,
    fairness_report_under,
    intraclass_correlation,
)
from fraud_assets.governance.policy import pinned_policy, policy_in_force
from fraud_assets.settings import FraudSettings
from fraud_assets_tests.fairness_cases import STATES, provider_clustered

SEEDS = range(20)
REGION_POLICY = FairnessPolicy(
    attributes=("geographic_region",),
    gates={"false_positive_rate_ratio": 0.8},
    confidence_level=0.95,
    min_group_size=30,
    clusters=("provider_id",),
)


def _fails(frame: pd.DataFrame, policy: FairnessPolicy) -> bool:
    report = fairness_report_under(frame, policy)
    return (
        not fairness_gates(report, policy=policy, pinned=policy)
        .verdicts["false_positive_rate_ratio"]
        .passed
    )


def _independent(policy: FairnessPolicy) -> FairnessPolicy:
    return policy.model_copy(update={"clusters": ()})


# --- the estimate -----------------------------------------------------------------------------


def test_intraclass_correlation_equals_the_one_way_anova_from_scipy() -> None:
    rng = np.random.default_rng(0)
    cluster = rng.integers(0, 60, 3_000)
    flagged = (rng.random(3_000) < rng.beta(1.0, 15.0, 60)[cluster]).astype(int)
    members = [flagged[cluster == k] for k in np.unique(cluster)]
    sizes = np.array([len(m) for m in members], dtype=float)
    f_statistic = f_oneway(*members).statistic
    m0 = (sizes.sum() - (sizes**2).sum() / sizes.sum()) / (len(sizes) - 1)
    expected = (f_statistic - 1) / (f_statistic + m0 - 1)
    assert intraclass_correlation(flagged, cluster) == pytest.approx(expected, rel=1e-12)
    assert expected > 0.03  # a real clustering, not a clipped zero


def test_a_real_difference_between_groups_is_not_taken_for_clustering() -> None:
    """Providers nested in states: the states' own rates differ, within a state none do."""
    rng = np.random.default_rng(1)
    state = rng.integers(0, 10, 20_000)
    provider = state * 20 + rng.integers(0, 20, 20_000)
    flagged = (rng.random(20_000) < np.where(state < 3, 0.2, 0.02)).astype(int)
    assert intraclass_correlation(flagged, provider) > 0.02
    assert intraclass_correlation(flagged, provider, state) < 0.002


def test_claims_that_are_their_own_clusters_change_no_interval() -> None:
    frame = provider_clustered(3, n=6_000, providers_per_state=5, concentration=10.0)
    arguments = {
        "protected_attributes": ["patient_gender", "geographic_region"],
        "min_group_size": 30,
        "confidence_level": 0.95,
    }
    independent = compute_fairness_report(frame, **arguments)
    own_clusters = compute_fairness_report(frame, **arguments, clusters=["claim_id"])
    pd.testing.assert_frame_equal(independent.figures, own_clusters.figures)
    assert (own_clusters.groups["false_positive_rate_design_effect"] == 1.0).all()
    clustered = compute_fairness_report(frame, **arguments, clusters=["provider_id"])
    assert (clustered.groups["false_positive_rate_design_effect"] > 1.0).any()


def test_a_claim_without_a_cluster_id_is_a_cluster_of_its_own() -> None:
    frame = provider_clustered(4, n=6_000, providers_per_state=5, concentration=10.0)
    missing = frame.assign(provider_id=None)
    report = compute_fairness_report(
        missing,
        protected_attributes=["geographic_region"],
        min_group_size=30,
        confidence_level=0.95,
        clusters=["provider_id"],
    )
    assert (report.groups["false_positive_rate_design_effect"] == 1.0).all()


# --- the verdicts -----------------------------------------------------------------------------


def test_a_fair_model_on_provider_clustered_claims_passes_on_every_seed() -> None:
    """Intervals that count claims as independent fail this fair model on most seeds."""
    frames = [
        provider_clustered(seed, n=10_000, providers_per_state=5, concentration=10.0)
        for seed in SEEDS
    ]
    assert sum(_fails(frame, _independent(REGION_POLICY)) for frame in frames) >= 15
    assert sum(_fails(frame, REGION_POLICY) for frame in frames) == 0


def test_a_disparity_the_clustered_claims_show_fails_on_every_seed() -> None:
    """Five states' honest claims flagged at 10%, the others' at 1%, 20 providers each."""
    state_rates = np.where(np.arange(len(STATES)) < 5, 0.10, 0.01)
    failed = [
        _fails(
            provider_clustered(
                seed,
                n=20_000,
                providers_per_state=20,
                concentration=30.0,
                state_rates=state_rates,
            ),
            REGION_POLICY,
        )
        for seed in SEEDS
    ]
    assert all(failed)


def test_the_clustered_verdict_of_an_attribute_ignores_the_other_attributes() -> None:
    frame = provider_clustered(5, n=10_000, providers_per_state=5, concentration=10.0)
    alone = fairness_report_under(frame, REGION_POLICY)
    beside = fairness_report_under(
        frame,
        REGION_POLICY.model_copy(
            update={"attributes": ("patient_gender", "patient_age_group", "geographic_region")}
        ),
    )
    for figure in ("false_positive_rate_ratio", "equal_opportunity_difference"):
        assert alone.interval("geographic_region", figure) == beside.interval(
            "geographic_region", figure
        )


# --- the policy -------------------------------------------------------------------------------


def test_the_pinned_policy_clusters_by_patient_and_provider() -> None:
    for target in ("dev", "staging", "prod"):
        assert pinned_policy(target).clusters == ("patient_id", "provider_id")


def test_a_verdict_under_clusters_the_policy_does_not_pin_is_weaker() -> None:
    pinned = pinned_policy("dev")
    wider = pinned.model_copy(update={"clusters": (*pinned.clusters, "provider_specialty")})
    assert any("provider_specialty" in problem for problem in wider.weaker_than(pinned))
    # Fewer clusters give narrower intervals, which fail more: never weaker.
    assert pinned.model_copy(update={"clusters": ()}).weaker_than(pinned) == []


def test_a_run_can_cluster_by_fewer_columns_which_is_never_weaker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FRAUD_FAIRNESS__CLUSTERS", '["patient_id"]')
    policy = policy_in_force(FraudSettings())
    assert policy.clusters == ("patient_id",)
    assert policy.weaker_than(pinned_policy("dev")) == []
