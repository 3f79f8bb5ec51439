"""Model evaluation: score every model on one holdout, pick the candidate, judge the gates.

The candidate is the model with the best PR AUC (ties go to ROC AUC): with a few percent
fraud, precision in the top of the ranking is what investigators feel. The quality gates
compare it with fixed floors and with the current champion scored on the same rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import numpy as np
import pandas as pd

from fraud_assets.features import AMOUNT_COLUMN, ID_COLUMN, LABEL_COLUMN
from fraud_assets.ml.metrics import HoldoutMetrics, flag, holdout_metrics
from fraud_assets.settings import Thresholds

ModelRole = Literal["candidate", "runner_up", "champion"]


@dataclass(frozen=True)
class EvaluatedModel:
    """One model's scores and metrics on the holdout."""

    model: str  # "catboost", "xgboost", or the registered name for the champion
    role: ModelRole
    model_uri: str
    mlflow_run_id: str | None
    model_version: str | None
    scores: np.ndarray = field(repr=False)
    metrics: HoldoutMetrics


@dataclass(frozen=True)
class Verdict:
    """A gate's outcome, with the numbers behind it."""

    passed: bool
    description: str
    metadata: dict[str, Any]


def evaluate_scores(
    holdout: pd.DataFrame,
    scores: np.ndarray,
    *,
    model: str,
    role: ModelRole,
    model_uri: str,
    mlflow_run_id: str | None,
    model_version: str | None,
    threshold: float,
) -> EvaluatedModel:
    """Holdout metrics of one model's scores."""
    return EvaluatedModel(
        model=model,
        role=role,
        model_uri=model_uri,
        mlflow_run_id=mlflow_run_id,
        model_version=model_version,
        scores=np.asarray(scores, dtype="float64"),
        metrics=holdout_metrics(
            holdout[LABEL_COLUMN].to_numpy(),
            scores,
            amounts=holdout[AMOUNT_COLUMN].to_numpy(),
            threshold=threshold,
        ),
    )


def rank_candidates(evaluated: Sequence[EvaluatedModel]) -> list[EvaluatedModel]:
    """Best first: highest PR AUC, then highest ROC AUC; the first is the candidate."""
    if not evaluated:
        raise ValueError("no trained model to evaluate")
    ordered = sorted(evaluated, key=lambda e: (e.metrics.pr_auc, e.metrics.roc_auc), reverse=True)
    return [
        EvaluatedModel(
            model=e.model,
            role="candidate" if i == 0 else "runner_up",
            model_uri=e.model_uri,
            mlflow_run_id=e.mlflow_run_id,
            model_version=e.model_version,
            scores=e.scores,
            metrics=e.metrics,
        )
        for i, e in enumerate(ordered)
    ]


def roc_auc_floor(candidate: HoldoutMetrics, *, thresholds: Thresholds) -> Verdict:
    floor = thresholds.roc_auc_min
    return Verdict(
        passed=candidate.roc_auc >= floor,
        description=f"candidate ROC AUC {candidate.roc_auc:.4f} vs floor {floor}",
        metadata={"roc_auc": round(candidate.roc_auc, 6), "roc_auc_min": floor},
    )


def pr_auc_floor(candidate: HoldoutMetrics, *, thresholds: Thresholds) -> Verdict:
    """PR AUC must beat the no-skill level (the prevalence) by the configured lift in odds.

    The floor is the precision whose odds are ``pr_auc_lift_min`` times the prevalence's:
    k*p / (1 - p + k*p). It is about k*p for rare fraud (k*p itself passes 1 from p = 1/k,
    which no model can meet) and always lies between p and 1.
    """
    k, prevalence = thresholds.pr_auc_lift_min, candidate.prevalence
    floor = k * prevalence / (1.0 - prevalence + k * prevalence)
    return Verdict(
        passed=candidate.pr_auc >= floor,
        description=(
            f"candidate PR AUC {candidate.pr_auc:.4f} vs odds {k} x prevalence "
            f"{prevalence:.4f}'s = {floor:.4f}"
        ),
        metadata={
            "pr_auc": round(candidate.pr_auc, 6),
            "prevalence": round(candidate.prevalence, 6),
            "pr_auc_lift_min": thresholds.pr_auc_lift_min,
            "pr_auc_min": round(floor, 6),
        },
    )


def no_regression(
    candidate: HoldoutMetrics, champion: HoldoutMetrics | None, *, thresholds: Thresholds
) -> Verdict:
    """The candidate's ROC AUC may trail the champion's by at most the tolerance."""
    tolerance = thresholds.regression_tolerance
    if champion is None:
        return Verdict(
            passed=True,
            description="no champion yet: nothing to regress against",
            metadata={"champion": "none", "regression_tolerance": tolerance},
        )
    delta = candidate.roc_auc - champion.roc_auc
    return Verdict(
        passed=delta >= -tolerance,
        description=(
            f"candidate ROC AUC {candidate.roc_auc:.4f} vs champion {champion.roc_auc:.4f} "
            f"(change {delta:+.4f}, tolerance {tolerance})"
        ),
        metadata={
            "candidate_roc_auc": round(candidate.roc_auc, 6),
            "champion_roc_auc": round(champion.roc_auc, 6),
            "roc_auc_change": round(delta, 6),
            "regression_tolerance": tolerance,
        },
    )


def evaluation_rows(
    evaluated: Sequence[EvaluatedModel],
    *,
    run_id: str,
    evaluated_at: datetime,
    training_delta_version: int,
) -> pd.DataFrame:
    """The ``model_evaluation`` table: one row per evaluated model."""
    rows = [
        {
            "model": e.model,
            "model_role": e.role,
            "model_uri": e.model_uri,
            "mlflow_run_id": e.mlflow_run_id,
            "model_version": e.model_version,
            **e.metrics.as_dict(),
            "training_delta_version": training_delta_version,
            "run_id": run_id,
            "evaluated_at": evaluated_at,
        }
        for e in evaluated
    ]
    frame = pd.DataFrame(rows)
    frame["rows"] = frame["rows"].astype("int64")
    return frame


def holdout_prediction_rows(
    holdout: pd.DataFrame,
    evaluated: Sequence[EvaluatedModel],
    *,
    protected_attributes: Sequence[str],
    clusters: Sequence[str] = (),
) -> pd.DataFrame:
    """Per-claim scores of the candidate and the champion: the fairness report's input.

    Each model's decision is taken at its own operating threshold (``metrics.threshold``);
    the protected attributes and the cluster columns (patient, provider) come along.
    """
    parts = []
    for e in evaluated:
        if e.role not in ("candidate", "champion"):
            continue
        part = holdout[[ID_COLUMN, LABEL_COLUMN]].copy()
        part["fraud_score"] = e.scores
        part["decision"] = flag(e.scores, threshold=e.metrics.threshold)
        part["operating_threshold"] = e.metrics.threshold
        part["model"] = e.model
        part["model_role"] = e.role
        part[AMOUNT_COLUMN] = holdout[AMOUNT_COLUMN].to_numpy()
        for column in dict.fromkeys([*protected_attributes, *clusters]):
            part[column] = holdout[column].to_numpy()
        parts.append(part)
    return pd.concat(parts, ignore_index=True)
