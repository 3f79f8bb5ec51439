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


def flag(y_score: ArrayLike, *, threshold: float) -> np.ndarray:
    """1 where a claim is flagged for review: score at or above the operating threshold."""
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
