"""Benchmark: the governance reports beside peer libraries doing the same work.

    python bench/bench_governance.py                     # 1M rows (about 10-20 minutes)
    python bench/bench_governance.py --rows 200000       # a quicker look

PSI: ``psi_report`` on gold features of ``--rows`` synthetic claims (reference: drift 0,
current: another seed at drift 0.5) beside Evidently's ``psi`` stat test computing the same
PSI. Evidently bins numeric columns its own way (Sturges equal-width bins over both samples),
so the peer is handed this project's buckets: numeric values cut with pandas at the
reference's deciles, current-only categories mapped to one "unseen" label, missing values
to a "missing" label; the cutting is timed as part of the peer's work.

Fairness: ``compute_fairness_report`` (three protected attributes, their pairs and full
intersection, four group rates, analytic intervals) beside fairlearn's ``MetricFrame`` with
the same metrics and ``n_boot=--resamples`` bootstrap intervals (fairlearn's only interval).
fairlearn needs about as long per resample as for the point estimate (a Python-level pass
over every row per metric), so at 1M rows its bootstrap cannot run here in reasonable time:
it is timed in full on ``--fairlearn-rows`` rows for one attribute, and at ``--rows`` its
point estimate and one resample are timed and the full bootstrap extrapolated (reported as
an estimate). The gate's statistics (seed stability, power, false fails) are measured in
``bench/bench_fairness_gate.py``.

Results go to ``bench/results/governance.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from fraud_assets.claims.synthetic import generate_claims
from fraud_assets.features import (
    CATEGORICAL_FEATURES,
    MODEL_FEATURES,
    NUMERIC_FEATURES,
    SplitPolicy,
)
from fraud_assets.governance import (
    compute_fairness_report,
    pinned_policy,
    psi_report,
    quantile_edges,
)
from fraud_assets.settings import get_settings
from fraud_assets_tests.pandas_peer import build_claim_features_pandas

log = logging.getLogger("bench.governance")
RESULTS = Path(__file__).resolve().parent / "results" / "governance.json"
ATTRIBUTES = ["patient_gender", "patient_age_group", "geographic_region"]
SCORE = "fraud_score"
T = TypeVar("T")


def timed(step: str, fn: Callable[[], T]) -> tuple[T, float]:
    started = time.perf_counter()
    value = fn()
    seconds = time.perf_counter() - started
    log.info("  %-52s %8.2f s", step, seconds)
    return value, seconds


# --- PSI -------------------------------------------------------------------------------------


def gold_sample(rows: int, *, seed: int, drift: float) -> pd.DataFrame:
    """Gold features of synthetic claims plus a score that depends on them."""
    claims = generate_claims(rows, seed=seed, drift=drift)
    gold = build_claim_features_pandas(claims, split=SplitPolicy(0.2, seed))
    signal = 1.2 * np.log(gold["amount_vs_procedure_mean"].clip(lower=1e-3)) + 0.35 * (
        gold["num_procedures"] - 2
    )
    gold[SCORE] = 1.0 / (1.0 + np.exp(-(signal - 2.0)))
    return gold[[*MODEL_FEATURES, SCORE]]


def peer_buckets(
    reference: pd.DataFrame, current: pd.DataFrame, *, bins: int
) -> dict[str, tuple[pd.Series, pd.Series]]:
    """Each column as integer bucket codes, cut with pandas the way ``psi_report`` buckets it.

    Numeric: pandas deciles of the reference, right-closed, open-ended; categorical: the
    reference's categories, one code for unseen values; missing values get their own code.
    """
    missing, unseen = -1, -2
    out: dict[str, tuple[pd.Series, pd.Series]] = {}
    for column in [*NUMERIC_FEATURES, *CATEGORICAL_FEATURES, SCORE]:
        ref, cur = reference[column], current[column]
        if column in CATEGORICAL_FEATURES:
            known = pd.Index(ref.dropna().unique())
            ref_index = known.get_indexer(pd.Index(ref))
            cur_index = known.get_indexer(pd.Index(cur))
            ref_codes = np.where(ref.notna().to_numpy(), ref_index, missing)
            cur_codes = np.where(
                cur.notna().to_numpy(), np.where(cur_index >= 0, cur_index, unseen), missing
            )
        else:
            cuts = ref.dropna().quantile([k / bins for k in range(1, bins)]).unique()
            edges = [-np.inf, *sorted(cuts), np.inf]
            ref_codes = pd.cut(ref, edges, right=True, labels=False).fillna(missing).to_numpy()
            cur_codes = pd.cut(cur, edges, right=True, labels=False).fillna(missing).to_numpy()
        out[column] = (pd.Series(ref_codes.astype(np.int64)), pd.Series(cur_codes.astype(np.int64)))
    return out


def evidently_psi(buckets: dict[str, tuple[pd.Series, pd.Series]]) -> dict[str, float]:
    """Evidently's PSI stat test (its categorical path) on the bucket codes."""
    from evidently.legacy.calculations.stattests import psi_stat_test
    from evidently.legacy.core import ColumnType

    return {
        column: float(psi_stat_test(ref, cur, ColumnType.Categorical, 0.1).drift_score)
        for column, (ref, cur) in buckets.items()
    }


def bench_psi(rows: int, repeats: int) -> dict[str, Any]:
    log.info("PSI on %d reference and %d current rows", rows, rows)
    settings = get_settings()
    t = settings.thresholds
    reference, _ = timed(
        "gold features, reference (drift 0)", lambda: gold_sample(rows, seed=1, drift=0.0)
    )
    current, _ = timed(
        "gold features, current (drift 0.5)", lambda: gold_sample(rows, seed=2, drift=0.5)
    )

    def ours() -> pd.DataFrame:
        return psi_report(
            reference,
            current,
            numeric_features=NUMERIC_FEATURES,
            categorical_features=CATEGORICAL_FEATURES,
            score_column=SCORE,
            bins=t.psi_bins,
            epsilon=t.psi_epsilon,
            warn=t.psi_warn,
            error=t.psi_error,
        )

    # Imported before timing: Evidently takes seconds to import, which is not PSI work.
    timed("import evidently (not counted)", lambda: evidently_psi({}))
    ours_runs = [timed(f"psi_report (run {i + 1})", ours) for i in range(repeats)]
    peer_runs: list[tuple[dict[str, float], float, float]] = []
    for i in range(repeats):
        buckets, cut_s = timed(
            f"pandas buckets for the peer (run {i + 1})",
            lambda: peer_buckets(reference, current, bins=t.psi_bins),
        )
        values, psi_s = timed(
            f"evidently psi on those buckets (run {i + 1})", partial(evidently_psi, buckets)
        )
        peer_runs.append((values, cut_s, psi_s))
    report = ours_runs[0][0].set_index("feature")["psi"]
    peer = pd.Series(peer_runs[0][0])
    diff = (report - peer.reindex(report.index)).abs()
    merged = [
        c
        for c in NUMERIC_FEATURES
        if len(quantile_edges(reference[c], bins=t.psi_bins)) < t.psi_bins - 1
    ]
    ours_seconds = float(np.median([s for _, s in ours_runs]))
    cut_seconds = float(np.median([c for _, c, _ in peer_runs]))
    evidently_seconds = float(np.median([p for _, _, p in peer_runs]))
    peer_seconds = cut_seconds + evidently_seconds
    log.info(
        "  max |ours - evidently| = %.3g; speed ratio %.1fx",
        diff.max(),
        peer_seconds / ours_seconds,
    )
    return {
        "rows_reference": rows,
        "rows_current": rows,
        "columns": len(report),
        "peer": "pandas bucketing + evidently.legacy...psi_stat_test (categorical path)",
        "ours_seconds_median": round(ours_seconds, 3),
        "peer_seconds_median": round(peer_seconds, 3),
        "peer_bucketing_seconds_median": round(cut_seconds, 3),
        "peer_evidently_psi_seconds_median": round(evidently_seconds, 3),
        "speed_ratio_peer_over_ours": round(peer_seconds / ours_seconds, 2),
        "max_abs_difference": float(diff.max()),
        "repeats": repeats,
        "psi": {k: round(float(v), 6) for k, v in report.items()},
        "drift_levels": ours_runs[0][0].set_index("feature")["drift_level"].to_dict(),
        # Ties merge decile edges, so these columns have fewer than psi_bins buckets.
        "columns_with_merged_edges": merged,
    }


# --- fairness --------------------------------------------------------------------------------


def holdout(rows: int, *, seed: int) -> pd.DataFrame:
    """Holdout-like rows: attributes with the synthetic mix, 7.5% fraud, a decent model."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "patient_gender": rng.choice(["F", "M"], rows, p=[0.52, 0.48]),
            "patient_age_group": rng.choice(
                ["18-34", "35-49", "50-64", "65+"], rows, p=[0.27, 0.25, 0.26, 0.22]
            ),
            "geographic_region": rng.choice(
                ["Northeast", "Southeast", "Midwest", "Southwest", "West"],
                rows,
                p=[0.18, 0.22, 0.20, 0.15, 0.25],
            ),
        }
    )
    frame["is_fraud"] = (rng.random(rows) < 0.075).astype("int64")
    frame["decision"] = np.where(
        frame["is_fraud"] == 1, rng.random(rows) < 0.8, rng.random(rows) < 0.02
    ).astype("int64")
    return frame


def fairlearn_frame(frame: pd.DataFrame, columns: list[str], n_boot: int | None) -> Any:
    from fairlearn.metrics import (
        MetricFrame,
        false_positive_rate,
        selection_rate,
        true_positive_rate,
    )
    from sklearn.metrics import precision_score

    precision = partial(precision_score, zero_division=np.nan)
    precision.__name__ = "precision"  # type: ignore[attr-defined]
    return MetricFrame(
        metrics={
            "selection_rate": selection_rate,
            "true_positive_rate": true_positive_rate,
            "false_positive_rate": false_positive_rate,
            "precision": precision,
        },
        y_true=frame["is_fraud"],
        y_pred=frame["decision"],
        sensitive_features=frame[columns[0]] if len(columns) == 1 else frame[columns],
        n_boot=n_boot,
        ci_quantiles=[0.025, 0.975] if n_boot else None,
        random_state=7 if n_boot else None,
    )


def group_differences(ours: pd.DataFrame, theirs: pd.DataFrame, slice_name: str) -> float:
    mine = ours.loc[ours["slice"] == slice_name].set_index("group")
    metrics = ["selection_rate", "true_positive_rate", "false_positive_rate", "precision"]
    return float((mine.loc[theirs.index, metrics] - theirs[metrics]).abs().to_numpy().max())


def bench_fairness(rows: int, fairlearn_rows: int, resamples: int) -> dict[str, Any]:
    policy = pinned_policy(get_settings().target)
    result: dict[str, Any] = {
        "fairlearn_resamples": resamples,
        "confidence_level": policy.confidence_level,
        "ours": "analytic intervals (MOVER-Wilson, Bonferroni over pairs): no resamples",
    }

    def ours(frame: pd.DataFrame, attributes: list[str]) -> Any:
        return compute_fairness_report(
            frame,
            protected_attributes=attributes,
            min_group_size=policy.min_group_size,
            confidence_level=policy.confidence_level,
        )

    # Equal work, run in full: one attribute, four rates, the same resamples.
    small = holdout(fairlearn_rows, seed=3)
    log.info(
        "fairness, equal work in full: %d rows, patient_gender, %d resamples",
        fairlearn_rows,
        resamples,
    )
    mine, mine_s = timed("compute_fairness_report", lambda: ours(small, ["patient_gender"]))
    theirs, theirs_s = timed(
        "fairlearn MetricFrame(n_boot)",
        lambda: fairlearn_frame(small, ["patient_gender"], resamples),
    )
    low, high = theirs.by_group_ci
    groups = mine.groups.set_index("group")
    widths = (groups["selection_rate_ci_high"] - groups["selection_rate_ci_low"]).mean()
    their_widths = (high["selection_rate"] - low["selection_rate"]).mean()
    result["equal_work"] = {
        "rows": fairlearn_rows,
        "slices": ["patient_gender"],
        "ours_seconds": round(mine_s, 3),
        "fairlearn_seconds": round(theirs_s, 3),
        "speed_ratio_fairlearn_over_ours": round(theirs_s / mine_s, 1),
        "max_abs_difference_group_rates": group_differences(
            mine.groups, theirs.by_group, "patient_gender"
        ),
        "mean_selection_rate_ci_width_ours_wilson": float(widths),
        "mean_selection_rate_ci_width_fairlearn_bootstrap": float(their_widths),
    }

    # At scale: ours in full; fairlearn's point estimate and one resample, then extrapolated.
    large = holdout(rows, seed=4)
    log.info("fairness at scale: %d rows, every slice (fairlearn: %d resamples)", rows, resamples)
    full, full_s = timed("compute_fairness_report, 7 slices", lambda: ours(large, ATTRIBUTES))
    point_seconds: dict[str, float] = {}
    point_gaps: dict[str, float] = {}
    figure_gaps: dict[str, float] = {}
    from fairlearn.metrics import demographic_parity_ratio, equal_opportunity_difference

    for attribute in ATTRIBUTES:
        frame_fl, seconds = timed(
            f"fairlearn MetricFrame point, {attribute}",
            partial(fairlearn_frame, large, [attribute], None),
        )
        point_seconds[attribute] = seconds
        point_gaps[attribute] = group_differences(full.groups, frame_fl.by_group, attribute)
        y, d, s = large["is_fraud"], large["decision"], large[attribute]
        figure_gaps[attribute] = max(
            abs(
                full.figure(attribute, "disparate_impact_ratio")
                - demographic_parity_ratio(y, d, sensitive_features=s)
            ),
            abs(
                full.figure(attribute, "equal_opportunity_difference")
                - equal_opportunity_difference(y, d, sensitive_features=s)
            ),
        )
    _, one_boot = timed(
        "fairlearn MetricFrame(n_boot=1), patient_gender",
        lambda: fairlearn_frame(large, ["patient_gender"], 1),
    )
    # n_boot=1 is the point estimate plus one resample of the same size: the same work
    # twice. Halving it is steadier on a loaded machine than subtracting two timings.
    per_resample = one_boot / 2
    # Pairs and the full intersection cost fairlearn at least what one attribute does.
    slices = 7
    estimate = slices * (resamples + 1) * per_resample
    result["at_scale"] = {
        "rows": rows,
        "slices": slices,
        "ours_seconds": round(full_s, 3),
        "fairlearn_point_seconds": {k: round(v, 2) for k, v in point_seconds.items()},
        "fairlearn_n_boot_1_seconds": round(one_boot, 2),
        "fairlearn_seconds_per_resample": round(per_resample, 2),
        "fairlearn_seconds_estimated": round(estimate, 1),
        "speed_ratio_fairlearn_over_ours_estimated": round(estimate / full_s, 1),
        "max_abs_difference_group_rates": point_gaps,
        "max_abs_difference_figures": figure_gaps,
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--fairlearn-rows", type=int, default=20_000)
    parser.add_argument("--resamples", type=int, default=200, help="fairlearn's n_boot")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--sections",
        nargs="+",
        choices=["psi", "fairness"],
        default=["psi", "fairness"],
        help="run only these; the others are kept from an existing results file",
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    warnings.filterwarnings("ignore", module="fairlearn")
    warnings.filterwarnings("ignore", category=FutureWarning)

    results: dict[str, Any] = {}
    if set(args.sections) != {"psi", "fairness"} and args.output.is_file():
        kept = json.loads(args.output.read_text(encoding="utf-8"))
        results = {name: kept[name] for name in ("psi", "fairness") if name in kept}
    results["machine"] = {"python": platform.python_version(), "cpus": os.cpu_count()}
    sections: dict[str, Callable[[], dict[str, Any]]] = {
        "psi": lambda: bench_psi(args.rows, args.repeats),
        "fairness": lambda: bench_fairness(args.rows, args.fairlearn_rows, args.resamples),
    }
    for name in args.sections:
        started = datetime.now(UTC).isoformat()
        load_before = list(os.getloadavg())
        section = sections[name]()
        # Every section records the load it ran under: a busy machine slows both sides.
        section["measured"] = {
            "started_at": started,
            "load_average_before": load_before,
            "load_average_after": list(os.getloadavg()),
        }
        results[name] = section
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    log.info("wrote %s", args.output)


if __name__ == "__main__":
    main()
