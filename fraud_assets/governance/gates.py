"""Verdicts of the fairness gates and the drift checks, computed from the reports.

What is gated, and why (docs/governance.md has the long form):

- Fairness gates judge each single protected attribute. An attribute fails disparate impact
  only when its whole confidence interval lies below ``disparate_impact_min`` (the data
  show the violation at the configured confidence), and equal opportunity only when its
  whole interval lies above ``equal_opportunity_max``. A point estimate alone would fail a
  fair model most of the time at a few thousand holdout claims: the min/max over groups of
  noisy rates sits below 0.8 by chance.
- Intersections are reported with the same figures and intervals but never gated: with
  dozens of groups of a hundred claims and a handful of frauds each, even simultaneous
  intervals fail a fair model about one run in seven (measured on the synthetic data).
  Their confident violations are listed in the check metadata as advisories.
- A figure that cannot be computed (fewer than two sufficient groups, nobody flagged) does
  not pass: a gate that cannot be evaluated is not evidence of fairness.
- Drift: PSI below ``psi_warn`` passes; from ``psi_warn`` it fails with severity WARN; from
  ``psi_error`` with severity ERROR.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd

from fraud_assets.governance._fairness import STATUS_OK, FairnessReport
from fraud_assets.governance._psi import DriftLevel, drift_level

Severity = Literal["ERROR", "WARN"]


@dataclass(frozen=True)
class GateVerdict:
    """One check's verdict with a sentence a reviewer can act on."""

    passed: bool
    description: str
    severity: Severity = "ERROR"
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FairnessGates:
    disparate_impact: GateVerdict
    equal_opportunity: GateVerdict
    min_group_size: GateVerdict


@dataclass(frozen=True)
class DriftGates:
    feature_drift: GateVerdict
    score_drift: GateVerdict
    max_psi: float
    drift_level: DriftLevel
    drifted_features: list[str]


def fairness_gates(
    report: FairnessReport, *, disparate_impact_min: float, equal_opportunity_max: float
) -> FairnessGates:
    """The three blocking fairness verdicts, judged on single protected attributes."""
    figures = report.figures
    single = figures.loc[~figures["intersection"]]
    intersections = figures.loc[figures["intersection"]]
    level = report.parameters.get("confidence_level", float("nan"))
    return FairnessGates(
        disparate_impact=_figure_gate(
            single,
            intersections,
            figure="disparate_impact_ratio",
            threshold=disparate_impact_min,
            fails_below=True,
            confidence_level=level,
        ),
        equal_opportunity=_figure_gate(
            single,
            intersections,
            figure="equal_opportunity_difference",
            threshold=equal_opportunity_max,
            fails_below=False,
            confidence_level=level,
        ),
        min_group_size=_group_size_gate(report),
    )


def drift_gates(report: pd.DataFrame, *, warn: float, error: float) -> DriftGates:
    """Feature and score drift verdicts from a PSI report (rows of kind "score" are the score)."""
    features = report.loc[report["kind"] != "score"]
    score = report.loc[report["kind"] == "score"]
    if features.empty:
        raise ValueError("the PSI report has no feature rows")
    if score.empty:
        raise ValueError("the PSI report has no score row")
    worst = features.loc[features["psi"].idxmax()]
    max_psi = float(report["psi"].max())
    drifted = features.loc[features["drift_level"] != "none"].sort_values("psi", ascending=False)
    feature_verdict = _psi_verdict(
        float(worst["psi"]),
        warn=warn,
        error=error,
        subject=f"feature {worst['feature']!r} (largest of {len(features)})",
        metadata={
            "max_feature_psi": float(worst["psi"]),
            "worst_feature": str(worst["feature"]),
            "drifted_features": list(drifted["feature"]),
        },
    )
    score_psi = float(score["psi"].iloc[0])
    score_verdict = _psi_verdict(
        score_psi,
        warn=warn,
        error=error,
        subject=f"score {score['feature'].iloc[0]!r}",
        metadata={"score_psi": score_psi},
    )
    return DriftGates(
        feature_drift=feature_verdict,
        score_drift=score_verdict,
        max_psi=max_psi,
        drift_level=drift_level(max_psi, warn=warn, error=error),
        drifted_features=list(drifted["feature"]),
    )


def _psi_verdict(
    psi: float, *, warn: float, error: float, subject: str, metadata: dict[str, Any]
) -> GateVerdict:
    level = drift_level(psi, warn=warn, error=error)
    meta = {**metadata, "drift_level": level, "psi_warn": warn, "psi_error": error}
    if level == "none":
        text = f"PSI of {subject} is {psi:.4f}, below {warn:g}: no drift"
        return GateVerdict(True, text, severity="WARN", metadata=meta)
    if level == "minor":
        text = f"PSI of {subject} is {psi:.4f}, between {warn:g} and {error:g}: minor drift"
        return GateVerdict(False, text, severity="WARN", metadata=meta)
    text = f"PSI of {subject} is {psi:.4f}, at or above {error:g}: major drift"
    return GateVerdict(False, text, severity="ERROR", metadata=meta)


def _figure_gate(
    single: pd.DataFrame,
    intersections: pd.DataFrame,
    *,
    figure: str,
    threshold: float,
    fails_below: bool,
    confidence_level: float,
) -> GateVerdict:
    low_col, high_col = f"{figure}_ci_low", f"{figure}_ci_high"
    metadata: dict[str, Any] = {"threshold": threshold, "confidence_level": confidence_level}
    failing: list[str] = []
    undefined: list[str] = []
    notes: list[str] = []
    for row in single.itertuples(index=False):
        name = str(row.slice)
        point, low, high = (float(getattr(row, c)) for c in (figure, low_col, high_col))
        metadata[f"{name}.{figure}"] = _json_float(point)
        metadata[f"{name}.ci_low"] = _json_float(low)
        metadata[f"{name}.ci_high"] = _json_float(high)
        shown = f"{name}: {point:.3f} (CI {low:.3f}-{high:.3f})"
        if math.isnan(point) or math.isnan(low) or math.isnan(high):
            undefined.append(name)
            notes.append(f"{name}: cannot be computed (fewer than two sufficient groups)")
        elif (high < threshold) if fails_below else (low > threshold):
            failing.append(name)
            notes.append(f"{shown} is {'below' if fails_below else 'above'} {threshold:g}")
        elif (point < threshold) if fails_below else (point > threshold):
            notes.append(f"{shown} crosses {threshold:g} but the interval includes it")
        else:
            notes.append(shown)
    advisory = [
        str(r.slice)
        for r in intersections.itertuples(index=False)
        if (getattr(r, high_col) < threshold if fails_below else getattr(r, low_col) > threshold)
    ]
    metadata["failing_attributes"] = failing
    metadata["undefined_attributes"] = undefined
    metadata["intersections_confidently_beyond_threshold"] = advisory
    passed = not failing and not undefined
    verdict = "pass" if passed else "FAIL"
    return GateVerdict(passed, f"{figure} {verdict}: " + "; ".join(notes), metadata=metadata)


def _group_size_gate(report: FairnessReport) -> GateVerdict:
    groups = report.groups.loc[~report.groups["intersection"]]
    minimum = report.parameters.get("min_group_size")
    metadata: dict[str, Any] = {"min_group_size": minimum}
    short: list[str] = []
    notes: list[str] = []
    for name, data in groups.groupby("slice", sort=False):
        sufficient = data.loc[data["status"] == STATUS_OK]
        insufficient = [
            f"{g} (n={n})"
            for g, n, s in zip(data["group"], data["size"], data["status"], strict=True)
            if s != STATUS_OK
        ]
        metadata[f"{name}.sufficient_groups"] = len(sufficient)
        metadata[f"{name}.insufficient_groups"] = insufficient
        if len(sufficient) < 2:
            short.append(str(name))
            notes.append(f"{name}: only {len(sufficient)} group(s) of at least {minimum} claims")
        elif insufficient:
            notes.append(f"{name}: insufficient data for {', '.join(insufficient)}")
    metadata["attributes_without_two_sufficient_groups"] = short
    passed = not short
    if passed:
        text = f"every attribute has at least two groups of at least {minimum} claims"
        text += "".join(f"; {note}" for note in notes)
    else:
        text = "min_group_size FAIL: " + "; ".join(notes)
    return GateVerdict(passed, text, metadata=metadata)


def _json_float(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 6)
