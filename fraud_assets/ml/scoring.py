"""Batch scoring: the latest claims batch through the champion's pyfunc.

Features are built in PySpark over all of silver (provider and patient aggregates must see
the history, as in training) and the latest batch is kept; the model itself is small, so
prediction runs in pandas on the driver. Input is validated against the model's signature
before anything is written, so a bad frame fails with the columns named and leaves no
partial table behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from fraud_assets.claims.schema import extra_columns
from fraud_assets.features import ID_COLUMN, MODEL_FEATURES
from fraud_assets.ml.metrics import flag
from fraud_assets.ml.pyfunc import FeatureFrameError
from fraud_assets.ml.reasons import (
    REASONS_COLUMN,
    REASONS_TYPE,
    Reason,
    model_reasons,
    reasons_array,
)

if TYPE_CHECKING:
    from mlflow.pyfunc import PyFuncModel
    from mlflow.types import Schema
    from pyspark.sql import DataFrame

BATCH_COLUMN = "_batch_id"
LOADED_AT_COLUMN = "_loaded_at"

_INTEGER_TYPES = {"long", "integer"}
_FLOAT_TYPES = {"double", "float"}
_TEXT_TYPES = {"string"}

FRAUD_SCORES_SCHEMA = pa.schema(
    [
        pa.field(ID_COLUMN, pa.string(), nullable=False),
        pa.field("fraud_score", pa.float64(), nullable=False),
        pa.field("decision", pa.int64(), nullable=False),
        pa.field("model_name", pa.string(), nullable=False),
        pa.field("model_version", pa.string(), nullable=False),
        pa.field("model_alias", pa.string(), nullable=False),
        pa.field("scored_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("batch_id", pa.string(), nullable=False),
        # Null only for a model this project did not log (no booster to ask for reasons).
        pa.field(REASONS_COLUMN, REASONS_TYPE),
    ]
)


class ModelOutputError(RuntimeError):
    """The model returned something other than one probability per claim."""


@dataclass(frozen=True)
class ScoringModel:
    """A loaded registry version and the names it is known by."""

    model: PyFuncModel
    name: str
    version: str
    alias: str


def input_schema(scoring: ScoringModel) -> Schema:
    schema = scoring.model.metadata.get_input_schema()
    if schema is None:
        raise FeatureFrameError(
            f"{scoring.name} version {scoring.version} has no input signature to validate against"
        )
    return schema


def model_inputs(features: pa.Table, schema: Schema) -> pd.DataFrame:
    """The signature's input columns as pandas, validated, with every bad column named.

    Only the model's inputs leave Arrow: ids and other pass-through columns stay columnar,
    and the frame handed to the model needs no further selection (no copy, no warning).
    """
    names = [str(name) for name in schema.input_names()]
    missing = [name for name in names if name not in features.column_names]
    if missing:
        raise FeatureFrameError(
            f"scoring frame is missing {len(missing)} model input column(s): {', '.join(missing)}"
        )
    frame = features.select(names).to_pandas()
    validate_against_signature(frame, schema)
    return frame


def validate_against_signature(frame: pd.DataFrame, schema: Schema) -> None:
    """Raise ``FeatureFrameError`` naming every missing or wrongly typed signature input.

    MLflow's own enforcement stops at the first bad column; an operator needs them all.
    """
    names = [str(name) for name in schema.input_names()]
    missing = [name for name in names if name not in frame.columns]
    if missing:
        raise FeatureFrameError(
            f"scoring frame is missing {len(missing)} model input column(s): {', '.join(missing)}"
        )
    problems = []
    for spec in schema.inputs:
        column = frame[spec.name]
        declared = getattr(spec.type, "name", str(spec.type))
        if declared in _INTEGER_TYPES and not pd.api.types.is_integer_dtype(column):
            problems.append(f"{spec.name} is {column.dtype}, expected integers ({declared})")
        elif declared in _FLOAT_TYPES and not _is_number(column):
            problems.append(f"{spec.name} is {column.dtype}, expected numbers ({declared})")
        elif declared in _TEXT_TYPES and not _is_text(column):
            problems.append(f"{spec.name} is {column.dtype}, expected text")
    if problems:
        raise FeatureFrameError("scoring frame has wrongly typed columns: " + "; ".join(problems))


def _is_number(column: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)


def _is_text(column: pd.Series) -> bool:
    if pd.api.types.is_object_dtype(column):
        return pd.api.types.infer_dtype(column, skipna=True) in ("string", "empty")
    return pd.api.types.is_string_dtype(column)


def predict_scores(scoring: ScoringModel, inputs: pd.DataFrame) -> np.ndarray:
    """P(fraud) per row of validated inputs, checked to be one probability per claim."""
    if inputs.empty:
        return np.empty(0, dtype="float64")
    return checked_scores(
        scoring.model.predict(inputs),
        claims=len(inputs),
        model=scoring.name,
        version=scoring.version,
    )


def checked_scores(raw: Any, *, claims: int, model: str, version: str) -> np.ndarray:
    """A model's output as float64 scores, or ``ModelOutputError`` unless it is exactly one
    probability per claim."""
    scores = np.asarray(raw, dtype="float64").reshape(-1)
    if len(scores) != claims:
        raise ModelOutputError(
            f"{model} version {version} returned {len(scores)} scores for {claims} claims"
        )
    if not np.all((scores >= 0.0) & (scores <= 1.0)):
        raise ModelOutputError(
            f"{model} version {version} returned values outside [0, 1]: "
            "it is not a probability model"
        )
    return scores


def fraud_score_rows(
    claim_ids: pa.Array | pa.ChunkedArray,
    scores: np.ndarray,
    *,
    scoring: ScoringModel,
    threshold: float,
    scored_at: datetime,
    batch_id: str,
    reasons: pa.Array | None = None,
) -> pa.Table:
    """The ``fraud_scores`` rows for one scored batch (``reasons``: one list per claim)."""
    n = len(claim_ids)
    return pa.Table.from_pydict(
        {
            ID_COLUMN: claim_ids.cast(pa.string()),
            "fraud_score": pa.array(scores, pa.float64()),
            "decision": pa.array(flag(scores, threshold=threshold), pa.int64()),
            "model_name": _constant(scoring.name, n),
            "model_version": _constant(scoring.version, n),
            "model_alias": _constant(scoring.alias, n),
            "scored_at": _constant(scored_at, n, pa.timestamp("us", tz="UTC")),
            "batch_id": _constant(batch_id, n),
            REASONS_COLUMN: pa.nulls(n, REASONS_TYPE) if reasons is None else reasons,
        },
        schema=FRAUD_SCORES_SCHEMA,
    )


def _constant(value: object, n: int, type_: pa.DataType | None = None) -> pa.Array:
    # pa.repeat builds the column in C; a Python list of n copies costs more than predict.
    return pa.repeat(pa.scalar(value, type_ or pa.string()), n)


@dataclass(frozen=True)
class ScoredBatch:
    """A batch's scores, reason codes (None for a model without them) and ``fraud_scores``
    rows."""

    scores: np.ndarray
    reasons: list[list[Reason]] | None
    rows: pa.Table

    @property
    def reasons_column(self) -> pa.Array | None:
        return self.rows.column(REASONS_COLUMN).combine_chunks() if self.reasons else None


def score_batch(
    features: pa.Table,
    *,
    scoring: ScoringModel,
    threshold: float,
    scored_at: datetime,
    batch_id: str,
) -> ScoredBatch:
    """The score step's scoring path: validate, predict, explain, and shape the
    ``fraud_scores`` rows."""
    if ID_COLUMN not in features.column_names:
        raise FeatureFrameError(f"scoring frame has no {ID_COLUMN} column")
    inputs = model_inputs(features, input_schema(scoring))
    scores = predict_scores(scoring, inputs)
    reasons = model_reasons(scoring.model, inputs)
    rows = fraud_score_rows(
        features.column(ID_COLUMN),
        scores,
        scoring=scoring,
        threshold=threshold,
        scored_at=scored_at,
        batch_id=batch_id,
        reasons=None if reasons is None else reasons_array(reasons),
    )
    return ScoredBatch(scores=scores, reasons=reasons, rows=rows)


def inference_log_rows(
    features: pa.Table,
    scored: ScoredBatch,
    *,
    scoring: ScoringModel,
    threshold: float,
    scored_at: datetime,
    window_id: str,
) -> pa.Table:
    """Batch rows for ``inference_log`` in the real-time service's schema, so both append:
    the scored claims' features, scores and reason codes.

    The model's extra inputs (``xn_*``, ``xc_*``: in its signature, not in ``MODEL_FEATURES``)
    follow, so PSI watches them too; the Delta append adds them to the table's schema.
    """
    from fraud_assets.serving.inference_log import BATCH, INFERENCE_LOG_SCHEMA

    n = features.num_rows
    scores, reasons = scored.scores, scored.reasons_column
    table = features.select([ID_COLUMN, *MODEL_FEATURES])
    extra = {
        "fraud_score": pa.array(scores, pa.float64()),
        "decision": pa.array(flag(scores, threshold=threshold), pa.int64()),
        "operating_threshold": _constant(threshold, n, pa.float64()),
        "model_version": _constant(scoring.version, n),
        "source": _constant(BATCH, n),
        "window_id": _constant(window_id, n),
        "scored_at": _constant(scored_at, n, pa.timestamp("us", tz="UTC")),
        "model_alias": _constant(scoring.alias, n),
        "request_id": pa.nulls(n, pa.string()),
        REASONS_COLUMN: pa.nulls(n, REASONS_TYPE) if reasons is None else reasons,
    }
    for name, values in extra.items():
        table = table.append_column(name, values)
    logged = table.select(INFERENCE_LOG_SCHEMA.names).cast(INFERENCE_LOG_SCHEMA)
    inputs = [str(name) for name in input_schema(scoring).input_names()]
    for name in extra_columns(inputs, "numeric", "categorical"):
        logged = logged.append_column(name, features.column(name))
    return logged.replace_schema_metadata(None)


def latest_batch(claims: DataFrame) -> tuple[str, DataFrame]:
    """The id of the most recently loaded batch in silver, and its claim ids."""
    from pyspark.sql import functions as F

    columns = set(claims.columns)
    if BATCH_COLUMN in columns:
        if LOADED_AT_COLUMN in columns:
            order: list[Any] = [F.col(LOADED_AT_COLUMN).desc(), F.col(BATCH_COLUMN).desc()]
        else:
            order = [F.col(BATCH_COLUMN).desc()]
        row = (
            claims.select(
                BATCH_COLUMN, *([LOADED_AT_COLUMN] if LOADED_AT_COLUMN in columns else [])
            )
            .orderBy(*order)
            .first()
        )
        if row is None:
            raise LookupError("silver claims is empty: nothing to score")
        batch_id = str(row[BATCH_COLUMN])
        ids = claims.where(F.col(BATCH_COLUMN) == row[BATCH_COLUMN]).select(ID_COLUMN)
        return batch_id, ids
    if LOADED_AT_COLUMN in columns:
        newest = claims.agg(F.max(LOADED_AT_COLUMN).alias("newest")).first()
        if newest is None or newest["newest"] is None:
            raise LookupError("silver claims is empty: nothing to score")
        ids = claims.where(F.col(LOADED_AT_COLUMN) == newest["newest"]).select(ID_COLUMN)
        return str(newest["newest"]), ids
    raise FeatureFrameError(
        f"silver claims has neither {BATCH_COLUMN} nor {LOADED_AT_COLUMN}: "
        "cannot tell which claims are the latest batch"
    )
