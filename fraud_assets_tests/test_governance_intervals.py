"""The fairness gate's intervals as statistics: equal to statsmodels, honest, stable, powerful.

A gate is a statistical decision. These tests show, on data shaped like real claims (two
genders, five age bands, 43 unequal states), that the verdict
- is the same for every seed (nothing is resampled) and whatever other attributes are judged,
- fails what it must fail: a 43-state disparity of ~0.1 on 20 of 20 data seeds,
- passes fair models: 20 of 20 data seeds, with two, five and 43 groups,
- keeps the false-fail rate of a model exactly at the 0.8 boundary under its nominal 2.5%.
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint

from fraud_assets.governance import (
    FairnessPolicy,
    compute_fairness_report,
    fairness_gates,
    figure_interval,
    mover_ratio_interval,
    newcombe_difference_interval,
    wilson_interval,
)

SEEDS = range(20)
STATES = [f"S{i:02d}" for i in range(43)]
DI_POLICY = FairnessPolicy(
    attributes=("patient_gender", "patient_age_group", "geographic_region"),
    gates={"disparate_impact_ratio": 0.8, "false_positive_rate_ratio": 0.8},
    confidence_level=0.95,
    min_group_size=30,
)


def _claims(seed: int, n: int, *, state_flag_rates: np.ndarray | None = None) -> pd.DataFrame:
    """Holdout decisions over 43 unequal states; flag rates per state, else fair everywhere."""
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.full(len(STATES), 3.0))
    state = rng.choice(len(STATES), n, p=weights)
    fraud = rng.random(n) < 0.06
    if state_flag_rates is None:
        flagged = np.where(fraud, rng.random(n) < 0.7, rng.random(n) < 0.03)
    else:
        flagged = rng.random(n) < state_flag_rates[state]
    return pd.DataFrame(
        {
            "patient_gender": rng.choice(["F", "M"], n, p=[0.52, 0.48]),
            "patient_age_group": rng.choice(["0-17", "18-34", "35-49", "50-64", "65+"], n),
            "geographic_region": np.array(STATES)[state],
            "is_fraud": fraud.astype(int),
            "decision": flagged.astype(int),
        }
    )


def _verdicts(frame: pd.DataFrame, policy: FairnessPolicy = DI_POLICY) -> dict[str, bool]:
    report = compute_fairness_report(
        frame,
        protected_attributes=policy.attributes,
        min_group_size=policy.min_group_size,
        confidence_level=policy.confidence_level,
    )
    gates = fairness_gates(report, policy=policy, pinned=policy)
    return {name: verdict.passed for name, verdict in gates.verdicts.items()}


# --- equal to the library -----------------------------------------------------------------


def test_wilson_and_newcombe_intervals_equal_statsmodels() -> None:
    rng = np.random.default_rng(0)
    n1, n2 = rng.integers(1, 400, 500).astype(float), rng.integers(1, 400, 500).astype(float)
    x1, x2 = np.floor(rng.random(500) * (n1 + 1)), np.floor(rng.random(500) * (n2 + 1))
    for alpha in (0.05, 0.01, 1e-5):
        z = NormalDist().inv_cdf(1 - alpha / 2)
        low, high = wilson_interval(x1, n1, z=z)
        expected_low, expected_high = proportion_confint(x1, n1, alpha=alpha, method="wilson")
        np.testing.assert_allclose(low, expected_low, atol=1e-12)
        np.testing.assert_allclose(high, expected_high, atol=1e-12)
        low, high = newcombe_difference_interval(x1, n1, x2, n2, z=z)
        expected_low, expected_high = confint_proportions_2indep(
            x1, n1, x2, n2, method="newcomb", compare="diff", alpha=alpha
        )
        np.testing.assert_allclose(low, expected_low, atol=1e-12)
        np.testing.assert_allclose(high, expected_high, atol=1e-12)


def test_mover_ratio_interval_agrees_with_the_log_interval_on_large_counts() -> None:
    """statsmodels has no MOVER ratio; with many events both are the same normal theory."""
    x1, n1 = np.array([4_000.0, 900.0, 2_500.0]), np.array([40_000.0, 30_000.0, 10_000.0])
    x2, n2 = np.array([5_000.0, 1_800.0, 2_400.0]), np.array([41_000.0, 29_000.0, 12_000.0])
    z = NormalDist().inv_cdf(0.975)
    low, high = mover_ratio_interval(x1, n1, x2, n2, z=z)
    expected_low, expected_high = confint_proportions_2indep(
        x1, n1, x2, n2, method="log", compare="ratio", alpha=0.05
    )
    np.testing.assert_allclose(low, expected_low, rtol=2e-3)
    np.testing.assert_allclose(high, expected_high, rtol=2e-3)


@pytest.mark.parametrize(("n1", "p1", "n2", "p2"), [(30, 0.03, 40, 0.1), (60, 0.3, 50, 0.2)])
def test_mover_ratio_interval_covers_the_true_ratio(n1: int, p1: float, n2: int, p2: float) -> None:
    """Close to nominal coverage even with a handful of events (and zeros)."""
    rng = np.random.default_rng(1)
    x1 = rng.binomial(n1, p1, 20_000).astype(float)
    x2 = rng.binomial(n2, p2, 20_000).astype(float)
    low, high = mover_ratio_interval(x1, np.full(20_000, n1), x2, np.full(20_000, n2), z=1.96)
    covered = (low <= p1 / p2) & (p1 / p2 <= high)
    assert covered.mean() >= 0.93


def test_zero_rates_give_defined_bounds() -> None:
    low, high = mover_ratio_interval(
        np.array([0.0, 3.0, 0.0]),
        np.array([50.0, 50.0, 50.0]),
        np.array([4.0, 0.0, 0.0]),
        np.array([60.0, 60.0, 60.0]),
        z=2.5,
    )
    assert low[0] == 0.0 and np.isfinite(high[0])
    assert low[1] > 0.0 and high[1] == np.inf
    assert low[2] == 0.0 and high[2] == np.inf
    # All groups at zero: nothing says one is treated worse.
    assert figure_interval([0, 0, 0], [40, 50, 60], kind="ratio", confidence_level=0.95) == (
        0.0,
        1.0,
    )


# --- the decisions --------------------------------------------------------------------------


def test_a_many_state_disparity_fails_on_every_data_seed() -> None:
    """Finding 1's shape: 43 unequal states, flag rates 3%..25% (true DI 0.12).

    10,000 holdout claims (about 230 per state). Power falls with group size: at about 70
    claims per state a few seeds in 20 pass (bench/bench_fairness_gate.py has the curve).
    """
    rates = np.linspace(0.03, 0.25, len(STATES))
    for seed in SEEDS:
        verdicts = _verdicts(_claims(seed, 10_000, state_flag_rates=rates))
        assert verdicts["disparate_impact_ratio"] is False, seed


def test_a_many_state_disparity_of_one_fifth_fails_on_every_data_seed() -> None:
    rates = np.where(np.arange(len(STATES)) < 20, 0.04, 0.20)  # true DI 0.2
    for seed in SEEDS:
        verdicts = _verdicts(_claims(seed, 10_000, state_flag_rates=rates))
        assert verdicts["disparate_impact_ratio"] is False, seed


@pytest.mark.parametrize("n", [2_000, 4_000, 20_000])
def test_fair_models_pass_on_every_data_seed(n: int) -> None:
    for seed in SEEDS:
        verdicts = _verdicts(_claims(seed, n))
        assert all(verdicts.values()), (seed, verdicts)


def test_the_verdict_of_an_attribute_ignores_the_other_attributes() -> None:
    rates = np.linspace(0.05, 0.12, len(STATES))
    for seed in range(5):
        frame = _claims(seed, 4_000, state_flag_rates=rates)
        alone = compute_fairness_report(
            frame,
            protected_attributes=["geographic_region"],
            min_group_size=30,
            confidence_level=0.95,
        )
        together = compute_fairness_report(
            frame,
            protected_attributes=["patient_gender", "patient_age_group", "geographic_region"],
            min_group_size=30,
            confidence_level=0.95,
        )
        for figure in ("disparate_impact_ratio", "false_positive_rate_ratio"):
            assert alone.interval("geographic_region", figure) == together.interval(
                "geographic_region", figure
            )
        assert compute_fairness_report(
            frame,
            protected_attributes=["geographic_region"],
            min_group_size=30,
            confidence_level=0.95,
        ).figures.equals(alone.figures), "the same data give the same report"


@pytest.mark.parametrize(("groups", "n_per_group"), [(2, 1_000), (5, 400), (43, 100)])
def test_a_model_at_the_boundary_fails_no_more_often_than_the_nominal_level(
    groups: int, n_per_group: int
) -> None:
    """Half the groups flag at p, half at 0.8 p: true DI is exactly 0.8, so a fail is false."""
    rng = np.random.default_rng(groups)
    rates = np.where(np.arange(groups) < groups // 2, 0.2, 0.16)
    totals = np.full(groups, float(n_per_group))
    fails = 0
    trials = 1_000
    for _ in range(trials):
        flagged = rng.binomial(n_per_group, rates).astype(float)
        _, high = figure_interval(flagged, totals, kind="ratio", confidence_level=0.95)
        fails += high < 0.8
    # One-sided error of a 95% two-sided interval is 2.5%; allow Monte Carlo error (3 sd).
    assert fails / trials <= 0.025 + 3 * np.sqrt(0.025 * 0.975 / trials)
