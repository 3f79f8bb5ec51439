"""ROC and precision-recall curves of one or more models on the same holdout, as one PNG."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure
from numpy.typing import ArrayLike
from sklearn import metrics as skm

from fraud_assets.governance.charts import figure_png
from fraud_assets.ml.metrics import flag

_COLORS = ("#4C72B0", "#DD8452", "#55A868", "#8172B3")


@dataclass(frozen=True)
class ScoredHoldout:
    """One model's scores on the holdout, with the labels they are judged against."""

    y_true: ArrayLike
    y_score: ArrayLike


def roc_pr_chart(models: Mapping[str, ScoredHoldout], *, threshold: float) -> bytes:
    """ROC and PR curves, one line per model; a dot marks each model's operating point.

    The PR panel's dotted line is the fraud prevalence: the precision of a model with no skill.
    """
    if not models:
        raise ValueError("no model to chart")
    fig = Figure(figsize=(9, 3.8), layout="constrained")
    roc_ax, pr_ax = fig.subplots(1, 2)
    prevalence = 0.0
    for color, (name, scored) in zip(_COLORS * 2, models.items(), strict=False):
        truth = np.asarray(scored.y_true, dtype="int64")
        score = np.asarray(scored.y_score, dtype="float64")
        prevalence = float(truth.mean())
        flagged = flag(score, threshold=threshold) == 1
        positives = max(int(truth.sum()), 1)
        negatives = max(len(truth) - int(truth.sum()), 1)
        tpr_at = float((flagged & (truth == 1)).sum()) / positives
        fpr_at = float((flagged & (truth == 0)).sum()) / negatives
        precision_at = float((flagged & (truth == 1)).sum()) / max(int(flagged.sum()), 1)

        fpr, tpr, _ = skm.roc_curve(truth, score)
        auc = skm.roc_auc_score(truth, score)
        roc_ax.plot(fpr, tpr, color=color, label=f"{name} (AUC {auc:.3f})")
        roc_ax.plot([fpr_at], [tpr_at], "o", color=color)

        precision, recall, _ = skm.precision_recall_curve(truth, score)
        average_precision = skm.average_precision_score(truth, score)
        pr_ax.plot(recall, precision, color=color, label=f"{name} (AP {average_precision:.3f})")
        pr_ax.plot([tpr_at], [precision_at], "o", color=color)
    roc_ax.plot([0, 1], [0, 1], color="#999999", linestyle=":", label="no skill")
    roc_ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    pr_ax.axhline(prevalence, color="#999999", linestyle=":", label="no skill (prevalence)")
    pr_ax.set(xlabel="recall", ylabel="precision", title="Precision-recall", ylim=(0, 1.02))
    for ax in (roc_ax, pr_ax):
        ax.legend(loc="lower right" if ax is roc_ax else "lower left", fontsize="small")
    fig.suptitle(f"Holdout curves (dot: operating threshold {threshold:g})", fontsize="medium")
    return figure_png(fig)
