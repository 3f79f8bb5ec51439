"""The champion's fairness on its own production decisions, once their labels have arrived.

The promotion gate judges a candidate on its frozen training holdout; this audit judges the
model that is actually deciding, on the claims it decided:

- **Decisions**: ``fraud_scores`` rows scored by the champion version, plus ``inference_log``
  rows it answered (``source`` batch or realtime; a shadow score was never returned to
  anyone), with ``scored_at`` in the audit window. A claim decided more than once keeps its
  **first** decision: that is the one a reviewer acted on; later re-scores of the same claim
  change nothing that happened. At equal times a real-time answer wins over a batch row.
- **Adjudications**: the ``adjudications`` table's outcomes (files landed after the claims),
  else silver ``claims`` rows whose ``is_fraud`` is set. A claim's label is its latest
  outcome; it arrived at the ``_loaded_at`` of the claim's first label of either kind.
- **Labelled decisions**: a decision whose adjudication landed *after* the decision. A claim
  that was already labelled when it was scored was not a decision anyone waited on, so it is
  counted (``labelled_before_decision``) but not judged.

The figures and verdicts are the promotion gate's own (``fairness_report_under`` and
``fairness_gates`` under the same policy), computed on the decisions as they were taken,
at the threshold the champion used then. Too few labelled decisions to judge is its own
verdict, never a pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import pandas as pd

from fraud_assets.checks import CHECK_FAIRNESS_POLICY, CHECK_MIN_GROUP_SIZE
from fraud_assets.claims.adjudications import LABELLED_AT, latest_labels
from fraud_assets.claims.schema import ID_COLUMN, LABEL_COLUMN, LOADED_AT_COLUMN
from fraud_assets.governance._fairness import FairnessReport
from fraud_assets.governance.gates import FairnessGates, fairness_gates, fairness_report_under
from fraud_assets.governance.policy import FairnessPolicy

Verdict = Literal["pass", "fail", "insufficient labels"]
PASS: Verdict = "pass"
FAIL: Verdict = "fail"
INSUFFICIENT_LABELS: Verdict = "insufficient labels"

# Where a decision came from; inference_log's shadow rows are not decisions.
DECISION_SOURCES = ("realtime", "batch")
FRAUD_SCORES_SOURCE = "batch"
DECIDED_AT = "decided_at"


@dataclass(frozen=True)
class AuditWindow:
    """Decisions taken in ``[start, end)``."""

    start: datetime
    end: datetime

    @classmethod
    def ending(cls, end: datetime, *, days: int) -> AuditWindow:
        if end.tzinfo is None:
            raise ValueError("the audit window's end must be timezone-aware")
        if days < 1:
            raise ValueError(f"the audit window must span at least one day, got {days}")
        return cls(start=end - timedelta(days=days), end=end)


@dataclass(frozen=True)
class ChampionAudit:
    """The verdict on the champion's labelled decisions, and the evidence behind it."""

    verdict: Verdict
    reason: str
    window: AuditWindow
    counts: dict[str, int]
    label_coverage: float | None
    thresholds: list[float]
    report: FairnessReport | None
    gates: FairnessGates | None

    def evidence(self) -> dict[str, Any]:
        """Window, counts and coverage as a reader sees them (report, MLflow, metadata)."""
        coverage = "n/a" if self.label_coverage is None else f"{self.label_coverage:.1%}"
        return {
            "window start": self.window.start.isoformat(),
            "window end": self.window.end.isoformat(),
            **{name.replace("_", " "): n for name, n in self.counts.items()},
            "label coverage": coverage,
            "decision thresholds": ", ".join(f"{t:g}" for t in self.thresholds) or "unknown",
        }


def production_decisions(
    *,
    fraud_scores: pd.DataFrame | None,
    inference_log: pd.DataFrame | None,
    model_name: str,
    model_version: str,
    window: AuditWindow,
    batch_threshold: float | None = None,
) -> pd.DataFrame:
    """The version's decisions in ``window``, one per claim (its first).

    Columns: ``claim_id``, ``fraud_score``, ``decision``, ``decided_at``, ``source`` and
    ``operating_threshold``. ``fraud_scores`` records no threshold: its rows get
    ``batch_threshold``, the one the version's run recorded and batch scoring applied.
    """
    parts: list[pd.DataFrame] = []
    if fraud_scores is not None and not fraud_scores.empty:
        _require(fraud_scores, "fraud_scores", ["model_name", "model_version"])
        rows = fraud_scores.loc[
            (fraud_scores["model_name"] == model_name)
            & (fraud_scores["model_version"].astype(str) == model_version)
        ]
        batch = _decisions(rows, "fraud_scores", source=FRAUD_SCORES_SOURCE)
        if batch_threshold is not None:
            batch["operating_threshold"] = batch_threshold
        parts.append(batch)
    if inference_log is not None and not inference_log.empty:
        _require(inference_log, "inference_log", ["model_version", "source"])
        rows = inference_log.loc[
            (inference_log["model_version"].astype(str) == model_version)
            & inference_log["source"].isin(DECISION_SOURCES)
        ]
        parts.append(_decisions(rows, "inference_log", source=None))
    columns = [ID_COLUMN, "fraud_score", "decision", DECIDED_AT, "source", "operating_threshold"]
    if not parts:
        return pd.DataFrame(columns=columns)
    decisions = pd.concat(parts, ignore_index=True)
    decided_at = decisions[DECIDED_AT]
    decisions = decisions.loc[(decided_at >= window.start) & (decided_at < window.end)]
    # First decision per claim; at equal times the real-time answer (what a caller got).
    priority = decisions["source"].map({s: i for i, s in enumerate(DECISION_SOURCES)})
    ordered = decisions.assign(_priority=priority).sort_values(
        [DECIDED_AT, "_priority"], kind="stable"
    )
    first = ordered.drop_duplicates(ID_COLUMN, keep="first").drop(columns="_priority")
    return first[columns].reset_index(drop=True)


def adjudications(
    claims: pd.DataFrame,
    outcomes: pd.DataFrame | None = None,
    *,
    attributes: Sequence[str],
) -> pd.DataFrame:
    """One row per labelled claim: its label, when the label landed, and ``attributes``
    (the policy's protected attributes and cluster columns, read from silver).

    ``outcomes`` are rows of the ``adjudications`` table: a claim's latest outcome is its
    label, else its own label in silver; it was labelled when its first label of either kind
    landed (``fraud_assets.claims.adjudications.latest_labels``).
    """
    _require(claims, "claims", [ID_COLUMN, LABEL_COLUMN, LOADED_AT_COLUMN, *attributes])
    if outcomes is not None:
        _require(outcomes, "adjudications", [ID_COLUMN, LABEL_COLUMN, LOADED_AT_COLUMN])
    labels = latest_labels(claims, outcomes)
    groups = claims.drop_duplicates(ID_COLUMN)[[ID_COLUMN, *dict.fromkeys(attributes)]]
    labelled = labels.merge(groups.astype({ID_COLUMN: str}), on=ID_COLUMN, how="inner")
    keep = [ID_COLUMN, LABEL_COLUMN, LABELLED_AT, *dict.fromkeys(attributes)]
    return labelled[keep].reset_index(drop=True)


def labelled_decisions(
    decisions: pd.DataFrame, adjudicated: pd.DataFrame
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Decisions whose label landed after them, and how many decisions fell where."""
    joined = decisions.merge(adjudicated, on=ID_COLUMN, how="left")
    has_label = joined[LABEL_COLUMN].notna()
    after = has_label & (joined[LABELLED_AT] > joined[DECIDED_AT])
    counts = {
        "decisions": len(decisions),
        "realtime_decisions": int((decisions["source"] == "realtime").sum()),
        "batch_decisions": int((decisions["source"] == "batch").sum()),
        "labelled_decisions": int(after.sum()),
        "labelled_before_decision": int((has_label & ~after).sum()),
        "awaiting_label": int((~has_label).sum()),
    }
    judged = joined.loc[after].reset_index(drop=True)
    judged[LABEL_COLUMN] = judged[LABEL_COLUMN].astype("int64")
    judged["decision"] = judged["decision"].astype("int64")
    return judged, counts


def audit_champion(
    decisions: pd.DataFrame,
    adjudicated: pd.DataFrame,
    *,
    window: AuditWindow,
    policy: FairnessPolicy,
    pinned: FairnessPolicy,
) -> ChampionAudit:
    """The promotion gate's figures and verdicts on the labelled decisions.

    Fewer than ``2 * min_group_size`` labelled decisions cannot give any attribute two
    groups the policy would judge: the verdict is "insufficient labels" and nothing is
    computed. Otherwise the gate runs; a gated figure confidently beyond its threshold, or a
    policy weaker than the pinned one, is a fail; gates that fail only because groups are too
    small to judge (``min_group_size``, figures that cannot be computed) make the verdict
    "insufficient labels", never a pass.
    """
    judged, counts = labelled_decisions(decisions, adjudicated)
    thresholds = sorted({float(t) for t in decisions["operating_threshold"].dropna().unique()})
    coverage = counts["labelled_decisions"] / counts["decisions"] if counts["decisions"] else None
    minimum = 2 * policy.min_group_size

    def outcome(
        verdict: Verdict,
        reason: str,
        report: FairnessReport | None = None,
        gates: FairnessGates | None = None,
    ) -> ChampionAudit:
        return ChampionAudit(verdict, reason, window, counts, coverage, thresholds, report, gates)

    if counts["labelled_decisions"] < minimum:
        return outcome(
            INSUFFICIENT_LABELS,
            f"{counts['labelled_decisions']} labelled decisions in the window; judging needs at "
            f"least {minimum} (two groups of min_group_size {policy.min_group_size})",
        )
    report = fairness_report_under(judged, policy)
    gates = fairness_gates(report, policy=policy, pinned=pinned)
    failures = gates.blocking_failures
    confident = [
        name
        for name in failures
        if name == CHECK_FAIRNESS_POLICY or gates[name].metadata.get("failing_attributes")
    ]
    if confident:
        return outcome(FAIL, "failed: " + ", ".join(confident), report, gates)
    if failures:
        small = [n for n in failures if n != CHECK_MIN_GROUP_SIZE]
        return outcome(
            INSUFFICIENT_LABELS,
            "groups too small to judge: " + ", ".join([CHECK_MIN_GROUP_SIZE, *small]),
            report,
            gates,
        )
    return outcome(PASS, "every gated figure passes on the labelled decisions", report, gates)


def _decisions(rows: pd.DataFrame, table: str, *, source: str | None) -> pd.DataFrame:
    _require(rows, table, [ID_COLUMN, "fraud_score", "decision", "scored_at"])
    frame = pd.DataFrame(
        {
            ID_COLUMN: rows[ID_COLUMN].astype(str),
            "fraud_score": rows["fraud_score"].astype("float64"),
            "decision": rows["decision"],
            DECIDED_AT: pd.to_datetime(rows["scored_at"], utc=True),
            "source": source if source is not None else rows["source"],
            "operating_threshold": rows["operating_threshold"].astype("float64")
            if "operating_threshold" in rows.columns
            else float("nan"),
        }
    )
    bad = frame["decision"].isna() | ~frame["decision"].isin([0, 1])
    if bad.any():
        position = int(bad.to_numpy().argmax())
        raise ValueError(
            f"{table}: column 'decision' must be 0 or 1; row {rows.index[position]} "
            f"(claim {frame[ID_COLUMN].iloc[position]!r}) has {frame['decision'].iloc[position]!r}"
        )
    return frame


def _require(frame: pd.DataFrame, table: str, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{table} lacks columns {missing}; it has {list(frame.columns)}")
