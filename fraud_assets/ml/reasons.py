"""Reason codes: why a claim got its score, from the booster's own per-feature contributions.

Both boosters split a prediction's margin (log-odds) exactly into one signed contribution
per input plus a bias: the contributions along each tree's decision path (Saabas' tree
interpreter), which both compute natively, CatBoost as its approximate ``ShapValues`` and
XGBoost as ``pred_contribs`` with ``approx_contribs``. Exact TreeSHAP would cost 5 ms per
call (CatBoost) or 1.5 ms per claim (XGBoost): too slow for real time or a million claims.
No explainer library is needed, and the sum is the model's own margin, which
``test_ml_reasons.py`` checks for both. A claim's reasons are its ``REASON_COUNT`` largest
contributions by size, each in words an adjudicator reads ("amount 3.4x the procedure's
mean") and with its sign: positive raises the score.

Works on any version logged as ``FraudProbabilityModel``, older ones included: it needs
only the booster and the feature spec the pyfunc loaded, never the logged code.
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from fraud_assets.features import ACTIVITY_DAYS, FIRST_CLAIM_GAP_DAYS
from fraud_assets.ml.booster_input import BoosterInput
from fraud_assets.ml.pyfunc import FeatureSpec, FraudProbabilityModel, validate_feature_frame

if TYPE_CHECKING:
    from mlflow.pyfunc import PyFuncModel

# Three reasons fit an adjudicator's screen and cover most of a score's margin.
REASON_COUNT = 3

REASON_TYPE = pa.struct(
    [
        pa.field("feature", pa.string()),
        pa.field("contribution", pa.float64()),  # log-odds; positive raises the score
        pa.field("reason", pa.string()),
    ]
)
REASONS_TYPE = pa.list_(REASON_TYPE)
REASONS_COLUMN = "reasons"


@dataclass(frozen=True)
class Reason:
    """One feature's signed share of a claim's margin, and what it means in words."""

    feature: str
    contribution: float
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"feature": self.feature, "contribution": self.contribution, "reason": self.reason}


@dataclass(frozen=True)
class Contributions:
    """Per claim and input column, its contribution to the margin; plus the bias."""

    columns: list[str]
    values: np.ndarray  # claims x columns, log-odds
    bias: np.ndarray  # one per claim

    @property
    def margin(self) -> np.ndarray:
        """The model's raw margin (log-odds of fraud) these contributions add up to."""
        return np.asarray(self.values.sum(axis=1) + self.bias, dtype="float64")


def contributions(booster: Any, frame: pd.DataFrame, spec: FeatureSpec) -> Contributions:
    """The per-feature contributions of a CatBoost model or an XGBoost booster."""
    if len(frame) == 0:
        return Contributions(spec.columns, np.empty((0, len(spec.columns))), np.empty(0))
    validate_feature_frame(frame, spec)
    model = BoosterInput(booster, spec)
    return split_contributions(model.contributions(model.data(frame)), spec)


def split_contributions(raw: np.ndarray, spec: FeatureSpec) -> Contributions:
    """A booster's contributions matrix (inputs, then the bias) as ``Contributions``."""
    return Contributions(spec.columns, raw[:, :-1], raw[:, -1])


def logged_fraud_model(model: PyFuncModel) -> tuple[Any, FeatureSpec] | None:
    """The ``FraudProbabilityModel`` inside a loaded pyfunc (its ``booster`` scores and
    explains) and its feature spec, or None for any other model, which has no reasons.

    Matched by class name: MLflow loads the logged copy of ``fraud_assets.ml.pyfunc`` as a
    module of its own, so neither its class nor its spec is the one this package defines.
    """
    from mlflow.exceptions import MlflowException

    try:
        wrapped = model.unwrap_python_model()
    except MlflowException:  # a flavour's own pyfunc, not a PythonModel
        return None
    if type(wrapped).__name__ != FraudProbabilityModel.__name__:
        return None
    return wrapped, FeatureSpec.from_json(wrapped.spec.to_json())


def top_reasons(
    found: Contributions, frame: pd.DataFrame, *, count: int = REASON_COUNT
) -> list[list[Reason]]:
    """Per claim, its ``count`` largest contributions by size, largest first, in words."""
    n, k = found.values.shape
    if n == 0:
        return []
    count = min(count, k)
    # argpartition finds each row's top entries in O(k), then only those are sorted.
    size = np.abs(found.values)
    top = np.argpartition(-size, count - 1, axis=1)[:, :count]
    order = np.take_along_axis(size, top, axis=1).argsort(axis=1)[:, ::-1]
    top = np.take_along_axis(top, order, axis=1)
    names = np.asarray(found.columns, dtype=object)[top].tolist()
    sizes = np.take_along_axis(found.values, top, axis=1).tolist()
    # One object matrix of the inputs, so each reason's value is one array lookup.
    values = np.take_along_axis(frame[found.columns].to_numpy(dtype=object), top, axis=1)
    return [
        [
            Reason(feature=name, contribution=size, reason=describe(name, value))
            for name, size, value in zip(row_names, row_sizes, row_values, strict=True)
        ]
        for row_names, row_sizes, row_values in zip(names, sizes, values.tolist(), strict=True)
    ]


def reasons_array(reasons: Sequence[Sequence[Reason]]) -> pa.Array:
    """Reasons as a ``REASONS_TYPE`` column (one list per claim) for a Delta table, built
    column by column (a million claims' dicts would cost more than their contributions)."""
    flat = [reason for row in reasons for reason in row]
    offsets = np.zeros(len(reasons) + 1, dtype=np.int32)
    np.cumsum([len(row) for row in reasons], out=offsets[1:])
    items = pa.StructArray.from_arrays(
        [
            pa.array([r.feature for r in flat], pa.string()),
            pa.array([r.contribution for r in flat], pa.float64()),
            pa.array([r.reason for r in flat], pa.string()),
        ],
        fields=list(REASON_TYPE),
    )
    return pa.ListArray.from_arrays(pa.array(offsets), items, type=REASONS_TYPE)


def model_reasons(model: PyFuncModel, frame: pd.DataFrame) -> list[list[Reason]] | None:
    """Reasons for every row of ``frame`` under a loaded pyfunc, or None when its model is
    not one this project logged (no booster to ask)."""
    inner = logged_fraud_model(model)
    if inner is None:
        return None
    wrapped, spec = inner
    return top_reasons(contributions(wrapped.booster, frame, spec), frame)


def flag_drivers(
    reasons: Sequence[Sequence[Reason]], decisions: np.ndarray
) -> list[tuple[str, int, float]]:
    """Which reasons drive this batch's flags: per feature, the flagged claims whose
    strongest score-raising reason it is, and that reason's mean contribution; most first."""
    counts: Counter[str] = Counter()
    totals: dict[str, float] = {}
    for row, flagged in zip(reasons, decisions.tolist(), strict=True):
        if not flagged:
            continue
        raising = [r for r in row if r.contribution > 0]
        if not raising:
            continue
        strongest = raising[0]  # rows are sorted by size, so the first positive is largest
        counts[strongest.feature] += 1
        totals[strongest.feature] = totals.get(strongest.feature, 0.0) + strongest.contribution
    return [
        (feature, n, round(totals[feature] / n, 4))
        for feature, n in sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    ]


def flag_drivers_markdown(drivers: Sequence[tuple[str, int, float]]) -> str:
    """``flag_drivers`` as the Markdown table shown in the Dagster UI."""
    if not drivers:
        return "No claim was flagged by a score-raising reason in this batch."
    lines = [
        "| Top reason of flagged claims | Flagged claims | Mean contribution (log-odds) |",
        "|---|---:|---:|",
    ]
    lines += [f"| {feature} | {n} | {mean:+.3f} |" for feature, n, mean in drivers]
    return "\n".join(lines)


def describe(feature: str, value: Any) -> str:
    """A feature's value in an adjudicator's words."""
    label = _LABELS.get(feature) or _plain_name(feature)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return f"{label} missing"
    phrase = _PHRASES.get(feature)
    if phrase is not None:
        return phrase(value)
    if isinstance(value, _NUMBERS):
        return f"{label} {float(value):g}"
    return f"{label} {value}"


_NUMBERS = (int, float, np.number)


@functools.lru_cache(maxsize=256)
def _plain_name(feature: str) -> str:
    """A mapping's extra column (``xn_deductible``) as the source called it: "deductible"."""
    return re.sub(r"^x[ncp]_", "", feature).replace("_", " ")


def _count(value: Any, one: str, many: str) -> str:
    n = int(value)
    return (one if n == 1 else many).format(n=n)


def _gap(value: Any) -> str:
    if int(value) == FIRST_CLAIM_GAP_DAYS:
        return f"patient's first claim in {ACTIVITY_DAYS} days"
    return _count(
        value,
        "1 day since the patient's previous service",
        "{n} days since the patient's previous service",
    )


_PHRASES: Mapping[str, Callable[[Any], str]] = {
    "claim_amount": lambda v: f"claim amount {float(v):,.2f}",
    "num_procedures": lambda v: _count(v, "1 procedure billed", "{n} procedures billed"),
    "length_of_stay": lambda v: _count(v, "1-day stay", "{n}-day stay"),
    "amount_per_procedure": lambda v: f"{float(v):,.2f} per procedure",
    "service_to_claim_days": lambda v: _count(
        v, "filed 1 day after the service", "filed {n} days after the service"
    ),
    "provider_claim_count": lambda v: _count(
        v,
        f"provider's only claim in {ACTIVITY_DAYS} days",
        f"provider filed {{n}} claims in {ACTIVITY_DAYS} days",
    ),
    "provider_unique_patients": lambda v: _count(
        v,
        f"provider billed 1 patient in {ACTIVITY_DAYS} days",
        f"provider billed {{n}} patients in {ACTIVITY_DAYS} days",
    ),
    "provider_avg_amount": lambda v: (
        f"provider's average claim {float(v):,.2f} over {ACTIVITY_DAYS} days"
    ),
    "provider_amount_peer_zscore": lambda v: (
        f"provider's average amount {float(v):+.1f} SD from its specialty's"
    ),
    "patient_claim_count": lambda v: _count(
        v,
        f"patient's only claim in {ACTIVITY_DAYS} days",
        f"patient had {{n}} claims in {ACTIVITY_DAYS} days",
    ),
    "patient_provider_count": lambda v: _count(
        v,
        f"patient saw 1 provider in {ACTIVITY_DAYS} days",
        f"patient saw {{n}} providers in {ACTIVITY_DAYS} days",
    ),
    "days_since_prev_patient_claim": _gap,
    "amount_vs_procedure_mean": lambda v: f"amount {float(v):.1f}x the procedure's mean",
    "amount_procedure_zscore": lambda v: f"amount {float(v):+.1f} SD from the procedure's mean",
    "duplicate_claim_count": lambda v: _count(
        v,
        "1 earlier claim for the same bill",
        "{n} earlier claims for the same bill",
    ),
    "is_duplicate_claim": lambda v: (
        "a re-bill of an earlier claim" if int(v) else "not a re-bill of an earlier claim"
    ),
}
_LABELS: Mapping[str, str] = {
    "procedure_code": "procedure code",
    "diagnosis_code": "diagnosis code",
    "provider_specialty": "provider specialty",
    "patient_gender": "patient gender",
    "patient_age_group": "patient age group",
    "geographic_region": "region",
    "claim_amount": "claim amount",
    "num_procedures": "procedures billed",
    "length_of_stay": "length of stay",
}
