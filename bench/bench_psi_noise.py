"""Does PSI mean drift? Pooled PSI beside the unpooled one and a chi-square test, same data.

On gold features of synthetic claims given the cardinality of the public claims files
(~2,100 diagnosis codes with a long tail, 43 states), measured in one run:

1. noise: two random halves of the same claims at n = 2,000 / 5,000 / 10,000 (halves of
   n / 2), 20 seeds each. For every feature and the score: the largest PSI and the share of
   features at or above 0.1 and 0.2, for ``psi_report`` with ``min_bucket_count`` 50 (ours,
   the default) and with 0 (every category its own bucket: the project's earlier PSI, which
   bench_governance.py shows equal to Evidently's ``psi`` stat test on the same buckets);
   beside them the share of features scipy's chi-square test of homogeneity calls different
   at p < 0.01 on the raw categories (a sample-size-calibrated test: the peer a statistician
   would reach for);
2. shift: the same halves with the current half's amounts x1.3, or a new procedure code on
   a fifth of its claims: how often the feature-drift gate (a feature at PSI >= 0.2) fires
   (for the unpooled PSI it fires on noise too, so its figure there says nothing);
3. time: ``psi_report`` pooled and unpooled on the largest size.

Writes bench/results/psi_noise.json.

    .venv/bin/python bench/bench_psi_noise.py              # about a minute
    .venv/bin/python bench/bench_psi_noise.py --seeds 5    # a quick look
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import chi2_contingency

from fraud_assets.claims.synthetic import ClaimShape, generate_claims
from fraud_assets.features import CATEGORICAL_FEATURES, NUMERIC_FEATURES, SplitPolicy
from fraud_assets.governance import psi_report
from fraud_assets.settings import Thresholds
from fraud_assets_tests.pandas_peer import build_claim_features_pandas

log = logging.getLogger("bench_psi_noise")
RESULTS = Path(__file__).parent / "results" / "psi_noise.json"
SIZES = (2_000, 5_000, 10_000)
# The generator's long tail of diagnosis codes (Zipf) and 43 unequal states.
SHAPE = ClaimShape(regions=43, diagnosis_codes=2_100)
T = Thresholds()


def claim_halves(
    n: int, seed: int, *, amount_factor: float = 1.0, new_code_share: float = 0.0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Gold features of ``n`` claims with real-file cardinality, split into random halves.

    A shift is applied to the current half's claims before the features are computed over
    all of them, as scoring computes them over the whole history.
    """
    rng = np.random.default_rng(seed)
    claims = generate_claims(n, seed=seed, shape=SHAPE)
    current = rng.permutation(n) < n // 2
    claims.loc[current, "claim_amount"] = (
        claims.loc[current, "claim_amount"] * amount_factor
    ).round(2)
    claims.loc[current & (rng.random(n) < new_code_share), "procedure_code"] = "G9999"
    features = build_claim_features_pandas(claims, split=SplitPolicy(0.2, seed))
    features["fraud_score"] = rng.beta(1.0, 12.0, n)
    in_current = features["claim_id"].isin(claims.loc[current, "claim_id"])
    return (
        features[~in_current].reset_index(drop=True),
        features[in_current].reset_index(drop=True),
    )


def report(reference: pd.DataFrame, current: pd.DataFrame, min_bucket_count: int) -> pd.Series:
    table = psi_report(
        reference,
        current,
        numeric_features=NUMERIC_FEATURES,
        categorical_features=CATEGORICAL_FEATURES,
        score_column="fraud_score",
        bins=T.psi_bins,
        epsilon=T.psi_epsilon,
        warn=T.psi_warn,
        error=T.psi_error,
        min_bucket_count=min_bucket_count,
    )
    return table.set_index("feature")["psi"]


def chi_square_flags(reference: pd.DataFrame, current: pd.DataFrame) -> dict[str, bool]:
    """Chi-square test of homogeneity per categorical feature at p < 0.01 (scipy)."""
    out = {}
    for column in CATEGORICAL_FEATURES:
        table = pd.crosstab(
            pd.concat([reference[column], current[column]], ignore_index=True),
            np.repeat([0, 1], [len(reference), len(current)]),
        )
        out[column] = bool(chi2_contingency(table.to_numpy())[1] < 0.01)
    return out


def bench_noise(seeds: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for n in SIZES:
        rows = []
        for seed in range(seeds):
            reference, current = claim_halves(n, seed)
            pooled = report(reference, current, T.psi_min_bucket_count)
            unpooled = report(reference, current, 0)
            chi = chi_square_flags(reference, current)
            rows.append((pooled, unpooled, chi))
        out[str(n)] = {
            "seeds": seeds,
            "features": len(rows[0][0]),
            "ours_pooled": _summary(pd.concat([p for p, _, _ in rows])),
            "unpooled": _summary(pd.concat([u for _, u, _ in rows])),
            "unpooled_diagnosis_code_psi_median": round(
                float(np.median([u["diagnosis_code"] for _, u, _ in rows])), 4
            ),
            "chi_square_p_below_0_01_share_of_categoricals": round(
                float(np.mean([v for _, _, c in rows for v in c.values()])), 4
            ),
        }
        log.info("noise n=%d: %s", n, out[str(n)])
    return out


def _summary(psi: pd.Series) -> dict[str, Any]:
    return {
        "max_psi": round(float(psi.max()), 4),
        "share_at_least_0_1": round(float((psi >= T.psi_warn).mean()), 4),
        "share_at_least_0_2": round(float((psi >= T.psi_error).mean()), 4),
        "worst_feature": str(psi.groupby(level=0).max().idxmax()),
    }


SHIFTS = {"amounts_x1.3": {"amount_factor": 1.3}, "new_code_20pct": {"new_code_share": 0.2}}


def bench_shift(seeds: int) -> dict[str, Any]:
    """Share of seeds where the feature-drift gate fails (some feature at psi_error or more)."""
    out: dict[str, Any] = {}
    for shift, change in SHIFTS.items():
        for n in SIZES:
            fired: dict[str, list[bool]] = {"ours_pooled": [], "unpooled": []}
            top: list[str] = []
            for seed in range(seeds):
                reference, current = claim_halves(n, seed, **change)
                pooled = report(reference, current, T.psi_min_bucket_count).drop("fraud_score")
                unpooled = report(reference, current, 0).drop("fraud_score")
                fired["ours_pooled"].append(bool(pooled.max() >= T.psi_error))
                fired["unpooled"].append(bool(unpooled.max() >= T.psi_error))
                top.append(str(pooled.idxmax()))
            key = f"{shift} n={n}"
            out[key] = {
                **{k: round(float(np.mean(v)), 4) for k, v in fired.items()},
                "ours_top_feature": max(set(top), key=top.count),
            }
            log.info("shift %s detected: %s", key, out[key])
    return out


def bench_time() -> dict[str, Any]:
    reference, current = claim_halves(SIZES[-1] * 10, 0)
    timings = {}
    for name, m in (("ours_pooled", T.psi_min_bucket_count), ("unpooled", 0)):
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            report(reference, current, m)
            best = min(best, time.perf_counter() - started)
        timings[f"{name}_seconds"] = round(best, 4)
    timings["rows_per_sample"] = len(reference)
    log.info("time: %s", timings)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    load_before = list(os.getloadavg())
    started = datetime.now(UTC).isoformat()
    results: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "min_bucket_count": T.psi_min_bucket_count,
        "noise": bench_noise(args.seeds),
        "shift_detected_share": bench_shift(args.seeds),
        "time": bench_time(),
        "measured": {"started_at": started, "load_average_before": load_before},
    }
    results["measured"]["load_average_after"] = list(os.getloadavg())
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    log.info("wrote %s", args.output)


if __name__ == "__main__":
    main()
