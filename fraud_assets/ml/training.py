"""Fit the two fraud classifiers on the gold training split.

Both boosters handle the rare fraud class by reweighting (CatBoost's balanced class
weights, XGBoost's ``scale_pos_weight``) and are seeded, so a re-run on the same Delta
version reproduces the same model.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fraud_assets.features import (
    ACTIVITY_DAYS,
    CATEGORICAL_FEATURES,
    HOLDOUT,
    ID_COLUMN,
    LABEL_COLUMN,
    NUMERIC_FEATURES,
    PROTECTED_SOURCES,
    SPLIT_COLUMN,
    SPLITS,
    TRAIN,
    model_inputs,
)
from fraud_assets.ml.pyfunc import (
    BOOSTER_FILES,
    MODEL_TYPES,
    FeatureSpec,
    ModelType,
    model_matrix,
    predict_fraud_probability,
)

log = logging.getLogger(__name__)

CLAIM_DATE_COLUMN = "claim_date"

REFERENCE_MAX_ROWS = 50_000
# A warmed-up PSI reference needs ten rows in each of the default ten bins; with fewer the
# reference falls back to every training row.
REFERENCE_MIN_ROWS = 100
PROGRESS_REPORTS = 6


class TrainingDataError(ValueError):
    """The gold table cannot train a model: missing columns, labels or a class."""


@dataclass(frozen=True)
class TrainingParams:
    """Booster settings shared by both libraries; the seed makes a run reproducible."""

    boosting_rounds: int = 300
    learning_rate: float = 0.08
    max_depth: int = 6
    seed: int = 42


@dataclass
class TrainedModel:
    """A fitted booster with what is needed to score, save and describe it."""

    model_type: ModelType
    booster: Any  # CatBoostClassifier, or the xgboost.Booster inside the XGBClassifier
    spec: FeatureSpec
    library_params: dict[str, Any]
    feature_importance: dict[str, float]
    training_rows: int
    fraud_rate: float
    training_seconds: float

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """P(fraud) per row, exactly as the logged pyfunc computes it."""
        return predict_fraud_probability(self.booster, frame, self.spec)

    def save_booster(self, directory: Path) -> Path:
        """Write the booster in its library's native format (stable across versions)."""
        path = directory / BOOSTER_FILES[self.model_type]
        self.booster.save_model(str(path))
        return path


def parse_model_type(value: object) -> ModelType:
    for model_type in MODEL_TYPES:
        if value == model_type:
            return model_type
    raise ValueError(f"unknown model {value!r}; expected one of {', '.join(MODEL_TYPES)}")


def split_gold(gold: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train and holdout rows of ``claim_features`` in claim-id order, with a clear error
    for a bad table."""
    required = [ID_COLUMN, LABEL_COLUMN, SPLIT_COLUMN, *NUMERIC_FEATURES, *CATEGORICAL_FEATURES]
    missing = [c for c in required if c not in gold.columns]
    if missing:
        raise TrainingDataError(f"claim_features is missing column(s): {', '.join(missing)}")
    splits = set(gold[SPLIT_COLUMN].dropna().unique())
    if not splits <= set(SPLITS):
        raise TrainingDataError(
            f"claim_features.split holds {sorted(splits)}; expected values among {list(SPLITS)}"
        )
    # A Delta table read back has no guaranteed row order and the boosters' fits depend on
    # it: ordered by claim id, the same claims always train the same model.
    labelled = gold[gold[LABEL_COLUMN].notna()].sort_values(ID_COLUMN, kind="stable")
    train = labelled[labelled[SPLIT_COLUMN] == TRAIN].reset_index(drop=True)
    holdout = labelled[labelled[SPLIT_COLUMN] == HOLDOUT].reset_index(drop=True)
    for name, part in (("train", train), ("holdout", holdout)):
        frauds = int(part[LABEL_COLUMN].sum())
        if frauds == 0 or frauds == len(part):
            raise TrainingDataError(
                f"the {name} split has {len(part)} labelled rows and {frauds} fraud: "
                "a classifier needs both classes"
            )
    return train, holdout


def feature_spec(
    train: pd.DataFrame,
    model_type: ModelType,
    *,
    protected: Sequence[str] = tuple(PROTECTED_SOURCES),
    allowed: Sequence[str] = (),
) -> FeatureSpec:
    """The model's input contract, with the training vocabulary of each categorical column.

    The inputs are ``model_inputs(protected, allowed=allowed)`` plus the extra inputs of the
    gold table ``train`` comes from (its ``xn_*`` and ``xc_*`` columns): no protected
    attribute, protected extra or column derived from one, unless ``allowed`` names it
    (``ProtectedInputError`` if so).
    """
    numeric, categorical = model_inputs(protected, allowed=allowed, columns=train.columns)
    categories = {c: sorted(str(v) for v in train[c].dropna().unique()) for c in categorical}
    return FeatureSpec(
        model_type=model_type,
        numeric=numeric,
        categorical=categorical,
        categories=categories,
    )


class TrainingProgress:
    """Logs every ``1/PROGRESS_REPORTS`` of the boosting rounds, with the elapsed time."""

    def __init__(self, logger: logging.Logger, model_type: ModelType, rounds: int) -> None:
        self.logger = logger
        self.model_type = model_type
        self.rounds = rounds
        self.every = max(1, rounds // PROGRESS_REPORTS)
        self.started = time.perf_counter()

    def round_done(self, done: int) -> None:
        """``done`` rounds have finished."""
        if done % self.every == 0 or done == self.rounds:
            self.logger.info(
                "%s: round %d/%d (%.0f%%) after %.1fs",
                self.model_type,
                done,
                self.rounds,
                100 * done / self.rounds,
                time.perf_counter() - self.started,
            )


def train_model(
    train: pd.DataFrame,
    *,
    model_type: ModelType,
    params: TrainingParams,
    progress: logging.Logger | None = None,
    protected: Sequence[str] = tuple(PROTECTED_SOURCES),
    allowed_protected: Sequence[str] = (),
) -> TrainedModel:
    """Fit one booster on the training split; ``progress`` receives a line per sixth of it.

    ``protected`` and ``allowed_protected`` decide the inputs (see ``feature_spec``).
    """
    spec = feature_spec(train, model_type, protected=protected, allowed=allowed_protected)
    features = model_matrix(train, spec)
    labels = train[LABEL_COLUMN].to_numpy(dtype="int64")
    tracker = TrainingProgress(progress or log, model_type, params.boosting_rounds)
    started = time.perf_counter()
    if model_type == "catboost":
        booster, library_params, importance = _fit_catboost(features, labels, spec, params, tracker)
    else:
        booster, library_params, importance = _fit_xgboost(features, labels, spec, params, tracker)
    seconds = time.perf_counter() - started
    (progress or log).info("trained %s on %d rows in %.1fs", model_type, len(train), seconds)
    return TrainedModel(
        model_type=model_type,
        booster=booster,
        spec=spec,
        library_params=library_params,
        feature_importance=_shares(importance, spec.columns),
        training_rows=len(train),
        fraud_rate=float(labels.mean()),
        training_seconds=seconds,
    )


def _threads() -> int:
    return max(1, os.cpu_count() or 1)


class _CatBoostProgress:
    def __init__(self, tracker: TrainingProgress) -> None:
        self.tracker = tracker

    def after_iteration(self, info: Any) -> bool:
        self.tracker.round_done(int(info.iteration))  # CatBoost counts from 1
        return True  # keep training


def _fit_catboost(
    features: pd.DataFrame,
    labels: np.ndarray,
    spec: FeatureSpec,
    params: TrainingParams,
    tracker: TrainingProgress,
) -> tuple[Any, dict[str, Any], dict[str, float]]:
    from catboost import CatBoostClassifier

    library_params: dict[str, Any] = {
        "iterations": params.boosting_rounds,
        "learning_rate": params.learning_rate,
        "depth": params.max_depth,
        "loss_function": "Logloss",
        "auto_class_weights": "Balanced",
        "random_seed": params.seed,
        "thread_count": _threads(),
    }
    model = CatBoostClassifier(
        **library_params,
        cat_features=spec.categorical,
        verbose=False,
        allow_writing_files=False,
    )
    model.fit(features, labels, callbacks=[_CatBoostProgress(tracker)])
    importance = dict(zip(model.feature_names_, model.get_feature_importance(), strict=True))
    return model, library_params, importance


def _fit_xgboost(
    features: pd.DataFrame,
    labels: np.ndarray,
    spec: FeatureSpec,
    params: TrainingParams,
    tracker: TrainingProgress,
) -> tuple[Any, dict[str, Any], dict[str, float]]:
    from xgboost import XGBClassifier
    from xgboost.callback import TrainingCallback

    class Progress(TrainingCallback):
        def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
            tracker.round_done(epoch + 1)  # XGBoost counts from 0
            return False  # keep training

    positives = int(labels.sum())
    library_params: dict[str, Any] = {
        "n_estimators": params.boosting_rounds,
        "learning_rate": params.learning_rate,
        "max_depth": params.max_depth,
        "objective": "binary:logistic",
        "tree_method": "hist",
        "enable_categorical": True,
        "scale_pos_weight": round((len(labels) - positives) / positives, 6),
        "random_state": params.seed,
        "n_jobs": _threads(),
    }
    model = XGBClassifier(**library_params, callbacks=[Progress()])
    model.fit(features, labels)
    booster = model.get_booster()
    gains = booster.get_score(importance_type="total_gain")
    return booster, library_params, {k: float(v) for k, v in gains.items() if isinstance(v, float)}


def _shares(importance: dict[str, float], columns: list[str]) -> dict[str, float]:
    """Importance as each feature's share of the total, so both libraries read alike."""
    values = {c: max(float(importance.get(c, 0.0)), 0.0) for c in columns}
    total = sum(values.values())
    return {c: round(v / total, 6) if total > 0 else 0.0 for c, v in values.items()}


def warmed_up(rows: pd.DataFrame, *, history_starts: date) -> pd.DataFrame:
    """The rows whose activity windows were full: claimed ``ACTIVITY_DAYS`` or more after
    ``history_starts``, the first claim date of the table they were built from.

    A provider's or patient's counts over the first month of a table are cut short (there
    are no earlier claims to count), so they run lower than on every later claim.
    """
    warm_from = pd.Timestamp(history_starts) + pd.Timedelta(days=ACTIVITY_DAYS)
    return rows[pd.to_datetime(rows[CLAIM_DATE_COLUMN]) >= warm_from]


def reference_rows(train: pd.DataFrame, *, history_starts: date | None) -> pd.DataFrame:
    """The training rows a PSI reference is drawn from: the warmed-up ones.

    A reference that kept the first month would compare cut-short counts with the full ones
    of every later window: on the public auto-insurance file (two months of claims) that
    scored ``provider_claim_count`` PSI 1.39 between the training claims and the holdout,
    "major drift" in the very first run. When fewer than ``REFERENCE_MIN_ROWS`` training
    rows are warmed up (a table shorter than about a month plus its holdout) the reference is
    every training row, as it was.
    """
    if history_starts is None:
        return train
    warm = warmed_up(train, history_starts=history_starts)
    return warm if len(warm) >= REFERENCE_MIN_ROWS else train


def reference_sample(
    train: pd.DataFrame,
    trained: TrainedModel,
    *,
    seed: int,
    history_starts: date | None = None,
    max_rows: int = REFERENCE_MAX_ROWS,
) -> pd.DataFrame:
    """The PSI reference: the model features of (at most ``max_rows``) warmed-up training
    rows (``reference_rows``) and the model's own score on them."""
    pool = reference_rows(train, history_starts=history_starts)
    sample = pool.sample(n=min(max_rows, len(pool)), random_state=seed)
    reference = sample[trained.spec.columns].reset_index(drop=True)
    reference["fraud_score"] = trained.predict_proba(reference)
    return reference


# The import name and the distributions that provide it (xgboost-cpu is the slim CPU wheel).
_DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "catboost": ("catboost",),
    "xgboost": ("xgboost", "xgboost-cpu"),
}


def library_versions(model_type: ModelType) -> dict[str, str]:
    """Pinned pip requirements for the logged pyfunc (distribution names as installed)."""
    from importlib import metadata

    import mlflow

    requirements = {"mlflow": mlflow.__version__, "pandas": pd.__version__, "numpy": np.__version__}
    for distribution in _DISTRIBUTIONS[model_type]:
        try:
            requirements[distribution] = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            continue
        return requirements
    raise RuntimeError(f"{model_type} is imported but no installed distribution provides it")
