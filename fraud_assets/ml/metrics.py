"""Holdout metrics for a fraud score: ranking quality, the operating point, and dollars caught.

Signatures follow scikit-learn: ``(y_true, y_score, *, options)``. Ranking metrics are
scikit-learn's own; the operating-point and dollar metrics add what a claims payer reads.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from sklearn import metrics as skm


class MetricError(ValueError):
    """The data cannot support the metric (for example, a holdout with one class)."""


def _arrays(y_true: ArrayLike, y_score: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    truth = np.asarray(y_true)
    score = np.asarray(y_score, dtype="float64")
    if truth.shape != score.shape or truth.ndim != 1:
        raise MetricError(f"y_true {truth.shape} and y_score {score.shape} must be equal 1-d")
    if np.isnan(score).any():
        raise MetricError(f"y_score holds {int(np.isnan(score).sum())} NaN value(s)")
    return truth.astype("int64"), score


def _two_classes(truth: np.ndarray) -> None:
    positives = int(truth.sum())
    if positives == 0 or positives == len(truth):
        raise MetricError(
            f"holdout has {len(truth)} rows and {positives} fraud: both classes are needed "
            "to rank; add data or raise holdout_fraction"
        )


def roc_auc(y_true: ArrayLike, y_score: ArrayLike) -> float:
    """Area under the ROC curve: the chance a fraud claim outranks a legitimate one."""
    truth, score = _arrays(y_true, y_score)
    _two_classes(truth)
    return float(skm.roc_auc_score(truth, score))


def pr_auc(y_true: ArrayLike, y_score: ArrayLike) -> float:
    """Average precision: the PR AUC summary, whose no-skill level is the fraud prevalence."""
    truth, score = _arrays(y_true, y_score)
    _two_classes(truth)
    return float(skm.average_precision_score(truth, score))


def brier_score(y_true: ArrayLike, y_score: ArrayLike) -> float:
    """Mean squared error of the probability: calibration and sharpness together."""
    truth, score = _arrays(y_true, y_score)
    return float(skm.brier_score_loss(truth, score))


def flag(y_score: ArrayLike, *, threshold: float | np.ndarray) -> np.ndarray:
    """1 where a claim is flagged for review: score at or above the operating threshold.

    ``threshold`` may hold one threshold per claim (several model versions answering).
    """
    return (np.asarray(y_score, dtype="float64") >= threshold).astype("int64")


def precision_at_threshold(y_true: ArrayLike, y_score: ArrayLike, *, threshold: float) -> float:
    """Share of flagged claims that are fraud (0 when nothing is flagged)."""
    truth, score = _arrays(y_true, y_score)
    return float(skm.precision_score(truth, flag(score, threshold=threshold), zero_division=0))


def recall_at_threshold(y_true: ArrayLike, y_score: ArrayLike, *, threshold: float) -> float:
    """Share of fraud claims that are flagged (0 when there is no fraud)."""
    truth, score = _arrays(y_true, y_score)
    return float(skm.recall_score(truth, flag(score, threshold=threshold), zero_division=0))


def fraud_dollars_caught(
    y_true: ArrayLike, y_score: ArrayLike, *, amounts: ArrayLike, threshold: float
) -> tuple[float, float]:
    """Claimed dollars of flagged fraud, and their share of all fraud dollars (0 if none)."""
    truth, score = _arrays(y_true, y_score)
    dollars = np.asarray(amounts, dtype="float64")
    if dollars.shape != truth.shape:
        raise MetricError(f"amounts {dollars.shape} must match y_true {truth.shape}")
    fraud = truth == 1
    caught = float(dollars[fraud & (flag(score, threshold=threshold) == 1)].sum())
    total = float(dollars[fraud].sum())
    return caught, (caught / total if total > 0 else 0.0)


@dataclass(frozen=True)
class HoldoutMetrics:
    """Everything model evaluation reports for one model on one holdout."""

    roc_auc: float
    pr_auc: float
    precision: float
    recall: float
    brier: float
    fraud_dollars_caught: float
    fraud_dollars_share: float
    prevalence: float
    flagged_rate: float
    threshold: float
    rows: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def holdout_metrics(
    y_true: ArrayLike, y_score: ArrayLike, *, amounts: ArrayLike, threshold: float
) -> HoldoutMetrics:
    """All holdout metrics at the operating threshold."""
    truth, score = _arrays(y_true, y_score)
    caught, share = fraud_dollars_caught(truth, score, amounts=amounts, threshold=threshold)
    return HoldoutMetrics(
        roc_auc=roc_auc(truth, score),
        pr_auc=pr_auc(truth, score),
        precision=precision_at_threshold(truth, score, threshold=threshold),
        recall=recall_at_threshold(truth, score, threshold=threshold),
        brier=brier_score(truth, score),
        fraud_dollars_caught=caught,
        fraud_dollars_share=share,
        prevalence=float(truth.mean()) if len(truth) else 0.0,
        flagged_rate=float(flag(score, threshold=threshold).mean()) if len(truth) else 0.0,
        threshold=threshold,
        rows=len(truth),
    )


@dataclass(frozen=True)
class OperatingChoice:
    """The flagging threshold a policy chose on the holdout, and what it gives there."""

    kind: str
    target: float
    threshold: float
    flagged_rate: float
    precision: float
    met: bool  # False when no threshold reaches a minimum-precision target

    def as_params(self) -> dict[str, Any]:
        return {
            "operating_threshold": self.threshold,
            "operating_point": self.kind,
            "operating_target": self.target,
        }


def choose_threshold(
    y_true: ArrayLike,
    y_score: ArrayLike,
    *,
    kind: str,
    flag_rate: float,
    min_precision: float,
    fixed_threshold: float,
) -> OperatingChoice:
    """The threshold a declared policy picks on the holdout (a score at or above it is flagged).

    - ``flag_rate``: the investigators' capacity. The lowest threshold that flags at most
      that share of claims (ties at the cut are all flagged or none).
    - ``min_precision``: the lowest threshold whose precision reaches the target (the most
      fraud caught at that precision); when none does, the most precise one, with ``met``
      False.
    - ``fixed``: ``fixed_threshold`` as given.
    """
    truth, score = _arrays(y_true, y_score)
    if kind == "fixed":
        threshold, target = float(fixed_threshold), float(fixed_threshold)
    elif kind == "flag_rate":
        target = float(flag_rate)
        candidates = np.unique(score)  # ascending
        flagged_share = (len(score) - np.searchsorted(np.sort(score), candidates)) / len(score)
        within = candidates[flagged_share <= target]
        threshold = float(within[0]) if within.size else float(np.nextafter(score.max(), 2.0))
    elif kind == "min_precision":
        target = float(min_precision)
        _two_classes(truth)
        precision, _, cuts = skm.precision_recall_curve(truth, score)
        reaching = np.flatnonzero(precision[:-1] >= target)
        best = reaching[0] if reaching.size else int(np.argmax(precision[:-1]))
        threshold = float(cuts[best])
    else:
        raise ValueError(f"unknown operating point kind {kind!r}")
    flagged = flag(score, threshold=threshold)
    precision_here = float(skm.precision_score(truth, flagged, zero_division=0))
    return OperatingChoice(
        kind=kind,
        target=target,
        threshold=threshold,
        flagged_rate=float(flagged.mean()) if len(score) else 0.0,
        precision=precision_here,
        met=kind != "min_precision" or precision_here >= target,
    )
