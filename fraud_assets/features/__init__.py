"""Gold features: the columns of ``claim_features`` and the ones the models see.

Protected attributes are kept in the gold table for fairness reporting but are never model
inputs, and neither are the silver columns they are derived from (``PROTECTED_SOURCES``:
``patient_age``, the source of ``patient_age_group``, stays in silver).
``build_claim_features`` (PySpark) lives in ``fraud_assets.features.engineering``;
``fraud_assets.features.pandas_peer`` computes the same table in plain pandas.

Feature meanings (all aggregates are over the frame passed in, e.g. the whole silver table):

- ``amount_per_procedure``: claim amount / num_procedures, with 0 procedures counted as 1.
- ``service_to_claim_days``: days from service date to claim (submission) date.
- ``provider_claim_count``, ``provider_unique_patients``, ``provider_avg_amount``: the
  billing provider's volume, patient reach and average claim amount.
- ``provider_amount_peer_zscore``: the provider's average amount as a z-score among the
  providers billing under the claim's specialty (population std); 0 when the specialty has
  a single provider or no spread.
- ``patient_claim_count``, ``patient_provider_count``: the patient's claims and distinct
  providers.
- ``days_since_prev_patient_claim``: days between this claim's service date and the
  patient's previous claim's (ordered by service date, claim date, claim_id);
  ``FIRST_CLAIM_GAP_DAYS`` (-1) for a patient's first claim.
- ``amount_vs_procedure_median``: claim amount / the procedure code's median amount; 1.0
  when that median is 0 (no norm to compare against).
- ``amount_procedure_zscore``: claim amount as a z-score within its procedure code
  (population std); 0 when the procedure has no spread.
- ``duplicate_claim_count``: other claims with the same patient, provider, procedure and
  service date.
- ``is_duplicate_claim``: 1 for every such claim after the first submitted (by claim date,
  then claim_id): the re-bill an analyst would question, not the original.
- Categorical nulls become ``MISSING_CATEGORY``; numeric inputs are non-null by the silver
  contract, and the blocking ``features_complete`` check stops anything that slips through.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pyarrow as pa

ID_COLUMN = "claim_id"
LABEL_COLUMN = "is_fraud"
SPLIT_COLUMN = "split"  # "train" or "holdout", deterministic from claim_id
AMOUNT_COLUMN = "claim_amount"
TRAIN = "train"
HOLDOUT = "holdout"

# A patient's first claim has no previous claim; -1 keeps the column non-null and sortable.
FIRST_CLAIM_GAP_DAYS = -1
MISSING_CATEGORY = "__missing__"
# Amounts are dollars: a spread below a billionth of one is no spread, so the z-score is 0.
ZERO_SPREAD = 1e-9
# The split hashes md5(f"{seed}:{claim_id}"); its first 8 hex digits mod this give a bucket.
SPLIT_BUCKETS = 10_000

NUMERIC_FEATURES: list[str] = [
    "claim_amount",
    "num_procedures",
    "length_of_stay",
    "amount_per_procedure",
    "service_to_claim_days",
    "provider_claim_count",
    "provider_unique_patients",
    "provider_avg_amount",
    "provider_amount_peer_zscore",
    "patient_claim_count",
    "patient_provider_count",
    "days_since_prev_patient_claim",
    "amount_vs_procedure_median",
    "amount_procedure_zscore",
    "duplicate_claim_count",
    "is_duplicate_claim",
]
CATEGORICAL_FEATURES: list[str] = ["procedure_code", "diagnosis_code", "provider_specialty"]
MODEL_FEATURES: list[str] = NUMERIC_FEATURES + CATEGORICAL_FEATURES

# Each protected attribute and the silver columns it is derived from: none is a model input.
PROTECTED_SOURCES: dict[str, tuple[str, ...]] = {
    "patient_gender": ("patient_gender",),
    "patient_age_group": ("patient_age_group", "patient_age"),
    "geographic_region": ("geographic_region",),
}

# Kept beside the features for fairness reporting and time-based monitoring, never trained on.
CONTEXT_COLUMNS: list[str] = [
    "claim_date",
    "patient_gender",
    "patient_age_group",
    "geographic_region",
]


class ProtectedInputError(ValueError):
    """A protected attribute, or a column it is derived from, would reach a model."""


def forbidden_inputs(protected: Iterable[str], *, allowed: Iterable[str] = ()) -> set[str]:
    """Columns no model may see: the protected attributes and their sources, less ``allowed``."""
    columns: set[str] = set()
    for name in protected:
        columns.update(PROTECTED_SOURCES.get(name, (name,)))
    return columns - set(allowed)


def model_inputs(
    protected: Iterable[str], *, allowed: Sequence[str] = ()
) -> tuple[list[str], list[str]]:
    """The numeric and categorical model inputs: ``MODEL_FEATURES`` plus allowed attributes.

    An allowed protected attribute must be a gold column (``CONTEXT_COLUMNS``); it joins the
    categorical inputs. Raises ``ProtectedInputError`` when a protected column would be an
    input without being allowed (a guard against a feature list edited by mistake).
    """
    numeric, categorical = list(NUMERIC_FEATURES), list(CATEGORICAL_FEATURES)
    for name in allowed:
        if name not in CONTEXT_COLUMNS or name == "claim_date":
            raise ProtectedInputError(
                f"allowed_protected_inputs names {name!r}, which is not a protected column of "
                f"claim_features; allow one of {sorted(PROTECTED_SOURCES)}"
            )
        if name not in categorical:
            categorical.append(name)
    leaked = sorted(forbidden_inputs(protected, allowed=allowed) & {*numeric, *categorical})
    if leaked:
        raise ProtectedInputError(
            f"protected column(s) {leaked} would be model inputs; remove them from the "
            "features or name them in allowed_protected_inputs (FRAUD_ALLOWED_PROTECTED_INPUTS)"
        )
    return numeric, categorical


CLAIM_FEATURES_COLUMNS: list[str] = [
    ID_COLUMN,
    LABEL_COLUMN,
    SPLIT_COLUMN,
    *CONTEXT_COLUMNS,
    *MODEL_FEATURES,
]

_NUMERIC_TYPES: dict[str, pa.DataType] = {
    "claim_amount": pa.float64(),
    "num_procedures": pa.int32(),
    "length_of_stay": pa.int32(),
    "amount_per_procedure": pa.float64(),
    "service_to_claim_days": pa.int32(),
    "provider_claim_count": pa.int64(),
    "provider_unique_patients": pa.int64(),
    "provider_avg_amount": pa.float64(),
    "provider_amount_peer_zscore": pa.float64(),
    "patient_claim_count": pa.int64(),
    "patient_provider_count": pa.int64(),
    "days_since_prev_patient_claim": pa.int32(),
    "amount_vs_procedure_median": pa.float64(),
    "amount_procedure_zscore": pa.float64(),
    "duplicate_claim_count": pa.int64(),
    "is_duplicate_claim": pa.int32(),
}

# The gold table's schema: both implementations produce exactly this.
CLAIM_FEATURES_SCHEMA = pa.schema(
    [
        pa.field(ID_COLUMN, pa.string(), nullable=False),
        pa.field(LABEL_COLUMN, pa.int32(), nullable=True),
        pa.field(SPLIT_COLUMN, pa.string(), nullable=False),
        pa.field("claim_date", pa.date32(), nullable=False),
        pa.field("patient_gender", pa.string(), nullable=False),
        pa.field("patient_age_group", pa.string(), nullable=False),
        pa.field("geographic_region", pa.string(), nullable=False),
        *(pa.field(name, _NUMERIC_TYPES[name], nullable=False) for name in NUMERIC_FEATURES),
        *(pa.field(name, pa.string(), nullable=False) for name in CATEGORICAL_FEATURES),
    ]
)


def holdout_bucket_limit(holdout_fraction: float) -> int:
    """Claims whose split bucket is below this number form the holdout set."""
    if not 0.0 <= holdout_fraction < 1.0:
        raise ValueError(f"holdout_fraction must be in [0, 1), got {holdout_fraction}")
    return round(holdout_fraction * SPLIT_BUCKETS)


# Silver columns the features are built from (lineage and other columns are ignored).
INPUT_COLUMNS: list[str] = [
    "claim_id",
    "patient_id",
    "provider_id",
    "claim_date",
    "service_date",
    "claim_amount",
    "num_procedures",
    "length_of_stay",
    "procedure_code",
    "diagnosis_code",
    "provider_specialty",
    "patient_age",
    "patient_gender",
    "patient_age_group",
    "geographic_region",
    "is_fraud",
]


def require_input_columns(columns: Iterable[str], *, source: str = "claims") -> None:
    """Raise a clear error naming every silver column the features need but ``source`` lacks."""
    present = set(columns)
    missing = [name for name in INPUT_COLUMNS if name not in present]
    if missing:
        raise ValueError(
            f"{source} is missing column(s) {missing} needed to build claim features; "
            f"it has {sorted(present)}"
        )


__all__ = [
    "AMOUNT_COLUMN",
    "CATEGORICAL_FEATURES",
    "CLAIM_FEATURES_COLUMNS",
    "CLAIM_FEATURES_SCHEMA",
    "CONTEXT_COLUMNS",
    "FIRST_CLAIM_GAP_DAYS",
    "HOLDOUT",
    "ID_COLUMN",
    "INPUT_COLUMNS",
    "LABEL_COLUMN",
    "MISSING_CATEGORY",
    "MODEL_FEATURES",
    "NUMERIC_FEATURES",
    "SPLIT_BUCKETS",
    "SPLIT_COLUMN",
    "TRAIN",
    "ZERO_SPREAD",
    "holdout_bucket_limit",
    "require_input_columns",
]
