"""The logged model: an MLflow pyfunc that returns fraud probabilities, never labels.

The stock XGBoost and CatBoost pyfunc flavours return class labels, but every consumer
(thresholds, PSI on the score, fairness rates, ranking for investigators) needs the
probability. This module is copied into each logged model, so it imports nothing from
fraud_assets: a serving endpoint loads the model without the project's wheel.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from mlflow.pyfunc.model import PythonModel, PythonModelContext

ModelType = Literal["catboost", "xgboost"]
MODEL_TYPES: tuple[ModelType, ...] = ("catboost", "xgboost")

# CatBoost rejects nulls in categorical columns; an explicit level keeps them scoreable.
MISSING_CATEGORY = "__missing__"

BOOSTER_FILES: dict[str, str] = {"catboost": "model.cbm", "xgboost": "model.ubj"}


class FeatureFrameError(ValueError):
    """A frame handed to the model lacks feature columns or holds them with the wrong type."""


@dataclass(frozen=True)
class FeatureSpec:
    """What the model was trained on: column order, types, and the categorical vocabulary."""

    model_type: ModelType
    numeric: list[str]
    categorical: list[str]
    # Training levels per categorical column. XGBoost splits on category codes, so scoring
    # must encode with exactly these levels; unseen levels become missing.
    categories: dict[str, list[str]] = field(default_factory=dict)

    @property
    def columns(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> FeatureSpec:
        return cls(**json.loads(text))


def validate_feature_frame(frame: pd.DataFrame, spec: FeatureSpec) -> None:
    """Raise ``FeatureFrameError`` naming every missing or wrongly typed feature column."""
    _checked_text_columns(frame, spec)


def _checked_text_columns(frame: pd.DataFrame, spec: FeatureSpec) -> dict[str, bool]:
    """Validate ``frame``; return, per categorical column, whether it is plain strings."""
    missing = [c for c in spec.columns if c not in frame.columns]
    if missing:
        raise FeatureFrameError(
            f"feature frame is missing {len(missing)} model column(s): {', '.join(missing)}"
        )
    problems = [
        f"{c} is {frame[c].dtype}, expected a number"
        for c in spec.numeric
        if not _is_numeric(frame[c])
    ]
    plain = {c: _plain_strings(frame[c]) for c in spec.categorical}
    problems += [
        f"{c} is {frame[c].dtype}, expected text"
        for c in spec.categorical
        if not (plain[c] or _is_text(frame[c]))
    ]
    if problems:
        raise FeatureFrameError("feature frame has wrongly typed columns: " + "; ".join(problems))
    return plain


def _is_numeric(column: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)


def _is_text(column: pd.Series) -> bool:
    if isinstance(column.dtype, pd.CategoricalDtype):
        return True
    if pd.api.types.is_string_dtype(column.dtype) and not pd.api.types.is_object_dtype(column):
        return True
    if pd.api.types.is_object_dtype(column):
        # An object column may hold anything; only strings (and nulls) are valid codes.
        return pd.api.types.infer_dtype(column, skipna=True) in ("string", "empty")
    return False


def _plain_strings(column: pd.Series) -> bool:
    """Object column of strings only, no nulls: one C-level pass, cheaper than isna."""
    return pd.api.types.is_object_dtype(column) and (
        pd.api.types.infer_dtype(column, skipna=False) == "string"
    )


def model_matrix(frame: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """The frame the booster sees: validated, in training column order, with training types."""
    plain = _checked_text_columns(frame, spec)
    columns: dict[str, Any] = {}
    for c in spec.numeric:
        # One float64 block (NaN for nulls, also from nullable types): CatBoost builds its
        # pool from a consolidated block noticeably faster than from one block per dtype.
        columns[c] = frame[c].to_numpy(dtype="float64", na_value=np.nan)
    for c in spec.categorical:
        text = frame[c]
        if spec.model_type == "xgboost":
            columns[c] = pd.Categorical(text, categories=spec.categories[c])
        elif plain[c]:
            columns[c] = text
        else:
            columns[c] = text.astype("object").fillna(MISSING_CATEGORY)
    return pd.DataFrame(columns, index=frame.index)


def predict_fraud_probability(booster: Any, frame: pd.DataFrame, spec: FeatureSpec) -> np.ndarray:
    """Probability that each claim is fraud, from a CatBoost model or an XGBoost booster."""
    matrix = model_matrix(frame, spec)
    if len(matrix) == 0:
        return np.empty(0, dtype="float64")
    if spec.model_type == "catboost":
        return np.asarray(booster.predict_proba(matrix)[:, 1], dtype="float64")
    return np.asarray(booster.inplace_predict(matrix), dtype="float64")


def load_booster(model_type: ModelType, path: str | Path) -> Any:
    """Load a booster saved in its library's native format."""
    if model_type == "catboost":
        from catboost import CatBoostClassifier

        model = CatBoostClassifier()
        model.load_model(str(path))
        return model
    if model_type == "xgboost":
        import xgboost

        booster = xgboost.Booster()
        booster.load_model(str(path))
        return booster
    raise ValueError(f"unknown model type {model_type!r}; expected one of {MODEL_TYPES}")


class FraudProbabilityModel(PythonModel):
    """Pyfunc wrapper: ``predict`` returns P(fraud) in [0, 1] for each row of claim features."""

    def load_context(self, context: PythonModelContext) -> None:
        self.spec = FeatureSpec.from_json(
            Path(context.artifacts["feature_spec"]).read_text(encoding="utf-8")
        )
        self.booster = load_booster(self.spec.model_type, context.artifacts["booster"])

    def predict(
        self,
        context: PythonModelContext,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> np.ndarray:
        return predict_fraud_probability(self.booster, model_input, self.spec)
