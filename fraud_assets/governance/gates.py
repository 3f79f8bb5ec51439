"""Verdicts of the fairness gates and the drift checks, computed from the reports.

What is gated, and why (docs/governance.md has the long form):

- Which fairness figures gate promotion, at what threshold, over which attributes, at what
  confidence, is the fairness policy (``fraud_assets.governance.policy``), pinned per target.
  Every gateable figure is judged on every single protected attribute; a figure the policy
  gates fails with severity ERROR (it blocks promotion), one it only reports with WARN.
- An attribute fails a figure only when the figure's whole simultaneous interval lies beyond
  the threshold: the data must show the violation at the policy's confidence. A point estimate
  alone would fail a fair model most of the time at a few thousand holdout claims, because
  the min/max over groups of noisy rates sits below 0.8 by chance.
- Intersections are reported with the same figures and intervals but never gated: with
  dozens of groups of a hundred claims and a handful of frauds each, their intervals say
  little. Their confident violations are listed in the check metadata as advisories.
- A gated figure that cannot be computed (fewer than two sufficient groups with a defined
  rate) does not pass: a gate that cannot be evaluated is not evidence of fairness.
- ``policy_at_least_pinned`` fails when the policy in force is weaker than the target's
  pinned policy; registration re-checks the policy recorded with each verdict on its own.
- Every fairness verdict's metadata records the policy it was computed under.
- Drift: PSI below ``psi_warn`` passes; from ``psi_warn`` it fails with severity WARN; from
  ``psi_error`` with severity ERROR.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from fraud_assets.checks import CHECK_FAIRNESS_POLICY, CHECK_MIN_GROUP_SIZE, Severity
from fraud_assets.governance._fairness import STATUS_OK, FairnessReport, compute_fairness_report
from fraud_assets.governance._psi import DriftLevel, drift_level
from fraud_assets.governance.policy import GATEABLE_FIGURES, FairnessPolicy

MIN_GROUP_SIZE_CHECK = CHECK_MIN_GROUP_SIZE
POLICY_CHECK = CHECK_FAIRNESS_POLICY


@dataclass(frozen=True)
class GateVerdict:
    """One check's verdict with a sentence a reviewer can act on."""

    passed: bool
    description: str
    severity: Severity = "ERROR"
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FairnessGates:
    """Every fairness check's verdict (by check name) and the policy they were judged under."""

    verdicts: dict[str, GateVerdict]
    policy: FairnessPolicy

    def __getitem__(self, check_name: str) -> GateVerdict:
        return self.verdicts[check_name]

    @property
    def blocking_failures(self) -> list[str]:
        return [name for name, v in self.verdicts.items() if not v.passed and v.severity == "ERROR"]


@dataclass(frozen=True)
class DriftGates:
    feature_drift: GateVerdict
    score_drift: GateVerdict
    max_psi: float
    drift_level: DriftLevel
    drifted_features: list[str]


def fairness_report_under(frame: pd.DataFrame, policy: FairnessPolicy) -> FairnessReport:
    """The fairness report of ``frame`` as ``policy`` asks for it: its attributes, minimum
    group size, confidence level and clusters."""
    return compute_fairness_report(
        frame,
        protected_attributes=policy.attributes,
        min_group_size=policy.min_group_size,
        confidence_level=policy.confidence_level,
        clusters=policy.clusters,
    )


def fairness_gates(
    report: FairnessReport, *, policy: FairnessPolicy, pinned: FairnessPolicy
) -> FairnessGates:
    """The fairness verdicts of ``report`` under ``policy``, and whether it is at least ``pinned``.

    ``report`` must have been computed with the policy's minimum group size and confidence.
    Every limit a verdict applies (thresholds, which figures gate, confidence, group size,
    attributes) is read from ``policy``; the report's own parameters are only checked
    against it.
    """
    for name in ("min_group_size", "confidence_level"):
        if report.parameters.get(name) != getattr(policy, name):
            raise ValueError(
                f"the report was computed with {name}={report.parameters.get(name)}, "
                f"the policy says {getattr(policy, name)}"
            )
    figures = report.figures
    judged = figures.loc[~figures["intersection"] & figures["slice"].isin(policy.attributes)]
    intersections = figures.loc[figures["intersection"]]
    recorded = {"policy": policy.to_dict(), "policy_fingerprint": policy.fingerprint}
    verdicts: dict[str, GateVerdict] = {}
    for figure in GATEABLE_FIGURES:
        verdict = _figure_gate(judged, intersections, figure=figure, policy=policy)
        verdicts[figure] = _with_policy(verdict, recorded)
    verdicts[MIN_GROUP_SIZE_CHECK] = _with_policy(_group_size_gate(report, policy), recorded)
    verdicts[POLICY_CHECK] = _with_policy(_policy_gate(policy, pinned), recorded)
    return FairnessGates(verdicts=verdicts, policy=policy)


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


def latest_max_feature_psi(psi_reports: pd.DataFrame) -> float | None:
    """The largest feature PSI (the score excluded) of the latest report appended to
    ``psi_report``, or None when no report has been written yet."""
    if psi_reports.empty:
        return None
    evaluated_at = pd.to_datetime(psi_reports["evaluated_at"], utc=True)
    latest = psi_reports.loc[evaluated_at == evaluated_at.max()]
    features = latest.loc[latest["kind"] != "score", "psi"]
    return None if features.empty else float(features.max())


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
    policy: FairnessPolicy,
) -> GateVerdict:
    threshold = policy.threshold(figure)
    fails_below = GATEABLE_FIGURES[figure].fails_below
    gated = figure in policy.gates
    confidence_level = policy.confidence_level
    # The "policy decides" severity of fraud_assets.checks: ERROR when gated, else WARN.
    severity: Severity = "ERROR" if gated else "WARN"
    role = "gates promotion" if gated else "reported, not gated"
    if threshold is None:
        return GateVerdict(
            True,
            f"{figure}: {role}; the policy sets no threshold for it",
            severity=severity,
            metadata={"gated": False},
        )
    low_col, high_col = f"{figure}_ci_low", f"{figure}_ci_high"
    metadata: dict[str, Any] = {
        "threshold": threshold,
        "gated": gated,
        "confidence_level": confidence_level,
    }
    failing: list[str] = []
    undefined: list[str] = []
    notes: list[str] = []
    beyond = "below" if fails_below else "above"
    for row in single.itertuples(index=False):
        name = str(row.slice)
        point, low, high = (float(getattr(row, c)) for c in (figure, low_col, high_col))
        metadata[f"{name}.{figure}"] = _json_float(point)
        metadata[f"{name}.ci_low"] = _json_float(low)
        metadata[f"{name}.ci_high"] = _json_float(high)
        metadata[f"{name}.groups_compared"] = int(getattr(row, f"{figure}_groups_compared"))
        shown = f"{name}: {point:.3f} (CI {low:.3f}-{high:.3f})"
        if math.isnan(point) or math.isnan(low) or math.isnan(high):
            undefined.append(name)
            notes.append(f"{name}: cannot be computed (fewer than two sufficient groups)")
        elif (high < threshold) if fails_below else (low > threshold):
            failing.append(name)
            notes.append(f"{shown} is {beyond} {threshold:g}")
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
    # An advisory figure that cannot be computed is no finding; a gate that cannot be is.
    passed = not failing and not (gated and undefined)
    verdict = "pass" if passed else ("FAIL" if gated else "advisory FAIL")
    text = f"{figure} {verdict} ({role}): " + "; ".join(notes)
    return GateVerdict(passed, text, severity=severity, metadata=metadata)


def _group_size_gate(report: FairnessReport, policy: FairnessPolicy) -> GateVerdict:
    groups = report.groups.loc[
        ~report.groups["intersection"] & report.groups["slice"].isin(policy.attributes)
    ]
    minimum = policy.min_group_size
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


def _policy_gate(policy: FairnessPolicy, pinned: FairnessPolicy) -> GateVerdict:
    weaker = policy.weaker_than(pinned)
    metadata: dict[str, Any] = {
        "pinned_policy": pinned.to_dict(),
        "pinned_policy_fingerprint": pinned.fingerprint,
        "weaker_than_pinned": weaker,
    }
    if not weaker:
        text = f"the policy in force ({policy.fingerprint}) is at least the pinned one"
        if policy != pinned:
            text += f" ({pinned.fingerprint}), and stricter"
        return GateVerdict(True, text, metadata=metadata)
    text = "policy_at_least_pinned FAIL: weaker than the pinned policy: " + "; ".join(weaker)
    return GateVerdict(False, text, metadata=metadata)


def _with_policy(verdict: GateVerdict, recorded: dict[str, Any]) -> GateVerdict:
    return GateVerdict(
        verdict.passed,
        verdict.description,
        severity=verdict.severity,
        metadata={**verdict.metadata, **recorded},
    )


def _json_float(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 6)
