"""Is the fairness gate a stable, correct decision? Ours beside fairlearn's bootstrap.

The gate fails an attribute when the whole simultaneous 95% interval of its figure lies
beyond the threshold. Measured here, on data shaped like real claims, in one run:

1. seed stability on finding 1's shape (43 unequal states, flag rates 3%..25%, true
   disparate impact 0.12) and a violation near the line (true DI 0.75 over 43 states):
   our interval over 20 runs, and fairlearn's ``MetricFrame(n_boot).ratio_ci()`` (a
   percentile bootstrap, the peer) on the same data with 20 bootstrap seeds: how often the
   verdict changes with nothing but the seed;
2. fails what it must: the share of 20 data seeds failed at true DI 0.12 and 0.2, per
   holdout size (the power curve);
3. passes fair models: 20 data seeds with 2, 5 and 43 groups (and how often a point-estimate
   rule would have failed them);
4. the false-fail rate of a model exactly at the 0.8 boundary (nominal: 2.5%);
5. why MOVER-Wilson: fail rates at the boundary and at a true ratio of 0.5 beside
   statsmodels' adjusted-log interval, at the same Bonferroni level;
6. attribute invariance: a state's interval alone and beside gender and age bands;
7. time: our report (all slices, analytic) against fairlearn's MetricFrame with 200
   bootstrap resamples (one attribute) on the same 20,000 claims;
8. clustered claims: decisions whose errors cluster by provider (each state's few providers
   flag honest claims at their own rates), fair and with a real disparity, judged by
   intervals that count claims as independent and by the patient/provider-clustered ones;
9. the project's own model on the realistic synthetic claims: how many of 30 data seeds a
   fair model fails, independent vs clustered, and of 10 a model that falsely accuses women.

Writes bench/results/fairness_gate.json.

    .venv/bin/python bench/bench_fairness_gate.py
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from fairlearn.metrics import MetricFrame, false_positive_rate, selection_rate

from fraud_assets.claims.synthetic import REALISTIC_SHAPE
from fraud_assets.governance import (
    FairnessPolicy,
    compute_fairness_report,
    fairness_gates,
    fairness_report_under,
    figure_interval,
    pinned_policy,
)
from fraud_assets_tests.fairness_cases import provider_clustered, realistic_holdout

log = logging.getLogger("bench_fairness_gate")
RESULTS = Path(__file__).parent / "results" / "fairness_gate.json"
STATES = [f"S{i:02d}" for i in range(43)]
ATTRIBUTES = ("patient_gender", "patient_age_group", "geographic_region")
SEEDS = 20
POLICY = FairnessPolicy(
    attributes=ATTRIBUTES,
    gates={"disparate_impact_ratio": 0.8, "false_positive_rate_ratio": 0.8},
    confidence_level=0.95,
    min_group_size=30,
)


def claims(seed: int, n: int, *, state_flag_rates: np.ndarray | None = None) -> pd.DataFrame:
    """Holdout decisions over 43 unequal states (Dirichlet sizes); fair unless rates are given."""
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


def our_verdicts(frame: pd.DataFrame, attributes: tuple[str, ...] = ATTRIBUTES) -> dict[str, Any]:
    policy = POLICY.model_copy(update={"attributes": attributes})
    report = compute_fairness_report(
        frame,
        protected_attributes=attributes,
        min_group_size=policy.min_group_size,
        confidence_level=policy.confidence_level,
    )
    gates = fairness_gates(report, policy=policy, pinned=policy)
    single = report.figures.loc[~report.figures["intersection"]]
    return {
        "passed": {name: v.passed for name, v in gates.verdicts.items()},
        "region_di": report.interval("geographic_region", "disparate_impact_ratio"),
        "lowest_point_ratio": float(
            single[["disparate_impact_ratio", "false_positive_rate_ratio"]].min().min()
        ),
    }


def fairlearn_region_di(frame: pd.DataFrame, seed: int, n_boot: int) -> tuple[float, float]:
    """fairlearn's percentile-bootstrap interval of the selection-rate ratio over states."""
    sizes = frame["geographic_region"].value_counts()
    judged = frame.loc[frame["geographic_region"].isin(sizes[sizes >= 30].index)]
    frame_ci = MetricFrame(
        metrics=selection_rate,
        y_true=judged["is_fraud"],
        y_pred=judged["decision"],
        sensitive_features=judged["geographic_region"],
        n_boot=n_boot,
        ci_quantiles=[0.025, 0.975],
        random_state=seed,
    )
    low, high = frame_ci.ratio_ci()
    return float(low), float(high)


def bench_seed_stability(n_boot: int) -> dict[str, Any]:
    """Our interval over 20 runs, and fairlearn's bootstrap interval over 20 seeds."""
    near = np.full(len(STATES), 0.10)
    near[:3] = 0.075  # true DI 0.75: a violation close to the line
    cases = {
        "finding_1_di_0.12_3000_claims": (np.linspace(0.03, 0.25, len(STATES)), 3_000),
        "fair_di_1.0_20000_claims": (np.full(len(STATES), 0.10), 20_000),
        "di_0.75_20000_claims": (near, 20_000),
    }
    out: dict[str, Any] = {"bootstrap_resamples": n_boot}
    for name, (rates, n) in cases.items():
        frame = claims(0, n, state_flag_rates=rates)
        ours = [our_verdicts(frame)["region_di"] for _ in range(SEEDS)]
        theirs = [fairlearn_region_di(frame, seed, n_boot) for seed in range(SEEDS)]
        out[name] = {
            "ours_distinct_intervals_over_20_runs": len(set(ours)),
            "ours_interval": list(ours[0]),
            "ours_fails": f"{sum(high < 0.8 for _, high in ours)}/{SEEDS}",
            "fairlearn_upper_bound_range_over_20_seeds": [
                min(h for _, h in theirs),
                max(h for _, h in theirs),
            ],
            "fairlearn_fails": f"{sum(high < 0.8 for _, high in theirs)}/{SEEDS}",
        }
        log.info("seed stability, %s: %s", name, out[name])
    return out


def bench_power() -> dict[str, Any]:
    shapes = {
        "di_0.12_linear": np.linspace(0.03, 0.25, len(STATES)),
        "di_0.2_two_levels": np.where(np.arange(len(STATES)) < 20, 0.04, 0.20),
        "di_0.5_two_levels": np.where(np.arange(len(STATES)) < 20, 0.10, 0.20),
    }
    out: dict[str, Any] = {}
    for name, rates in shapes.items():
        for n in (3_000, 10_000, 30_000):
            fails = sum(
                not our_verdicts(claims(seed, n, state_flag_rates=rates))["passed"][
                    "disparate_impact_ratio"
                ]
                for seed in range(SEEDS)
            )
            out[f"{name}_holdout_{n}"] = f"{fails}/{SEEDS}"
            log.info("power %s, %d claims: fails %d of %d data seeds", name, n, fails, SEEDS)
    return out


def bench_fair_models() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for n in (2_000, 4_000, 20_000):
        gate_fails = point_fails = 0
        for seed in range(SEEDS):
            result = our_verdicts(claims(seed, n))
            gate_fails += not all(result["passed"].values())
            point_fails += result["lowest_point_ratio"] < 0.8
        out[f"holdout_{n}"] = {
            "gate_fails": f"{gate_fails}/{SEEDS}",
            "point_estimate_rule_fails": f"{point_fails}/{SEEDS}",
        }
        log.info("fair models, %d claims: %s", n, out[f"holdout_{n}"])
    return out


def bench_boundary(trials: int) -> dict[str, Any]:
    out: dict[str, Any] = {"trials": trials, "nominal_one_sided": 0.025}
    rng = np.random.default_rng(7)
    for groups, per_group in ((2, 300), (2, 1_000), (5, 400), (43, 100), (43, 300)):
        rates = np.where(np.arange(groups) < groups // 2, 0.2, 0.16)
        totals = np.full(groups, float(per_group))
        fails = 0
        for _ in range(trials):
            flagged = rng.binomial(per_group, rates).astype(float)
            fails += figure_interval(flagged, totals, kind="ratio", confidence_level=0.95)[1] < 0.8
        out[f"groups_{groups}_x_{per_group}"] = fails / trials
        log.info(
            "boundary DI=0.8, %d groups of %d: false fails %.4f", groups, per_group, fails / trials
        )
    return out


def bench_method_choice(trials: int) -> dict[str, Any]:
    """Why MOVER-Wilson: its power and boundary error beside statsmodels' adjusted-log interval."""
    from statsmodels.stats.proportion import confint_proportions_2indep

    def log_adjusted_upper(x: np.ndarray, n: np.ndarray) -> float:
        groups = len(x)
        pairs = groups * (groups - 1) / 2
        i, j = np.nonzero(~np.eye(groups, dtype=bool))
        _, high = confint_proportions_2indep(
            x[i], n[i], x[j], n[j], method="log-adjusted", compare="ratio", alpha=0.05 / pairs
        )
        return float(min(np.nanmin(high), 1.0))

    out: dict[str, Any] = {"trials": trials}
    rng = np.random.default_rng(11)
    for groups, per_group in ((2, 300), (5, 100), (43, 100)):
        for name, low_rate in (("boundary_di_0.8", 0.24), ("di_0.5", 0.15)):
            rates = np.where(np.arange(groups) < groups // 2, 0.3, low_rate)
            totals = np.full(groups, float(per_group))
            ours = theirs = 0
            for _ in range(trials):
                x = rng.binomial(per_group, rates).astype(float)
                ours += figure_interval(x, totals, kind="ratio", confidence_level=0.95)[1] < 0.8
                theirs += log_adjusted_upper(x, totals) < 0.8
            key = f"{name}_groups_{groups}_x_{per_group}"
            out[key] = {"mover_wilson_fails": ours / trials, "log_adjusted_fails": theirs / trials}
            log.info("method choice %s: %s", key, out[key])
    return out


def bench_invariance() -> dict[str, Any]:
    gaps = []
    for seed in range(SEEDS):
        frame = claims(seed, 4_000, state_flag_rates=np.linspace(0.05, 0.12, len(STATES)))
        alone = our_verdicts(frame, ("geographic_region",))["region_di"]
        together = our_verdicts(frame)["region_di"]
        gaps.append(max(abs(a - b) for a, b in zip(alone, together, strict=True)))
    out = {"max_abs_interval_difference_over_20_seeds": max(gaps)}
    log.info("attribute invariance: %s", out)
    return out


def bench_time(n_boot: int) -> dict[str, Any]:
    frame = claims(1, 20_000)
    started = time.perf_counter()
    compute_fairness_report(
        frame, protected_attributes=ATTRIBUTES, min_group_size=30, confidence_level=0.95
    )
    ours = time.perf_counter() - started
    started = time.perf_counter()
    MetricFrame(
        metrics={"selection_rate": selection_rate, "false_positive_rate": false_positive_rate},
        y_true=frame["is_fraud"],
        y_pred=frame["decision"],
        sensitive_features=frame["patient_gender"],
        n_boot=n_boot,
        ci_quantiles=[0.025, 0.975],
        random_state=0,
    )
    theirs = time.perf_counter() - started
    out = {
        "rows": len(frame),
        "ours_seconds_all_slices": round(ours, 4),
        "fairlearn_seconds_one_attribute": round(theirs, 3),
        "ratio": round(theirs / ours, 1),
    }
    log.info("time: %s", out)
    return out


def _blocking_failures(frame: pd.DataFrame, policy: FairnessPolicy) -> list[str]:
    gates = fairness_gates(fairness_report_under(frame, policy), policy=policy, pinned=policy)
    return [name for name in policy.gates if not gates.verdicts[name].passed]


def bench_clustered() -> dict[str, Any]:
    """Fail counts over 20 data seeds when a provider's claims are flagged together."""
    region = FairnessPolicy(
        attributes=("geographic_region",),
        gates={"false_positive_rate_ratio": 0.8},
        confidence_level=0.95,
        min_group_size=30,
        clusters=("provider_id",),
    )
    disparity = np.where(np.arange(len(STATES)) < 5, 0.10, 0.01)
    cases = {
        "fair_5_providers_per_state_icc_0.09": dict(
            n=10_000, providers_per_state=5, concentration=10.0
        ),
        "fair_10_providers_per_state_icc_0.03": dict(
            n=10_000, providers_per_state=10, concentration=30.0
        ),
        "fpr_ratio_0.1_20_providers_per_state_icc_0.03": dict(
            n=20_000, providers_per_state=20, concentration=30.0, state_rates=disparity
        ),
    }
    out: dict[str, Any] = {}
    for name, kwargs in cases.items():
        frames = [provider_clustered(seed, **kwargs) for seed in range(SEEDS)]  # type: ignore[arg-type]
        out[name] = {
            "independent_fails": sum(
                bool(_blocking_failures(f, region.model_copy(update={"clusters": ()})))
                for f in frames
            ),
            "clustered_fails": sum(bool(_blocking_failures(f, region)) for f in frames),
            "seeds": SEEDS,
        }
        log.info("clustered claims, %s: %s", name, out[name])
    return out


def bench_realistic_model(fair_seeds: range, biased_seeds: range) -> dict[str, Any]:
    """The project's CatBoost on REALISTIC_SHAPE claims, judged by the pinned dev policy."""
    pinned = pinned_policy("dev")
    independent = pinned.model_copy(update={"clusters": ()})
    out: dict[str, Any] = {"policy": pinned.to_dict()}
    for label, seeds, bias in (("fair", fair_seeds, 0.0), ("accuses_women", biased_seeds, 1.0)):
        failed: dict[str, dict[int, list[str]]] = {"independent": {}, "clustered": {}}
        for seed in seeds:
            holdout = realistic_holdout(REALISTIC_SHAPE, seed=seed, bias=bias)
            for kind, policy in (("independent", independent), ("clustered", pinned)):
                failures = _blocking_failures(holdout, policy)
                if failures:
                    failed[kind][seed] = failures
        out[label] = {
            "seeds": [seeds.start, seeds.stop - 1],
            **{f"{kind}_fails": len(seeds_failed) for kind, seeds_failed in failed.items()},
            "failed_seeds": failed,
        }
        log.info("realistic model, %s: %s", label, out[label])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--boundary-trials", type=int, default=2_000)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    warnings.filterwarnings("ignore", module="fairlearn")
    load_before = list(os.getloadavg())
    started = datetime.now(UTC).isoformat()
    results: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "seed_stability": bench_seed_stability(args.bootstrap),
        "power": bench_power(),
        "fair_models": bench_fair_models(),
        "boundary_false_fail_rate": bench_boundary(args.boundary_trials),
        "method_choice": bench_method_choice(500),
        "attribute_invariance": bench_invariance(),
        "time": bench_time(args.bootstrap),
        "clustered_claims": bench_clustered(),
        "realistic_model": bench_realistic_model(range(30, 60), range(4, 14)),
    }
    results["measured"] = {
        "started_at": started,
        "load_average_before": load_before,
        "load_average_after": list(os.getloadavg()),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    log.info("wrote %s", args.output)


if __name__ == "__main__":
    main()
