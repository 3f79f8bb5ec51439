"""Gold features: the columns of ``claim_features`` and the ones the models see.

Protected attributes are kept in the gold table for fairness reporting but are never model
inputs, and neither are the silver columns they are derived from (``PROTECTED_SOURCES``:
``patient_age``, the source of ``patient_age_group``, stays in silver).
``build_claim_features`` (PySpark) lives in ``fraud_assets.features.engineering``;
``fraud_assets_tests.pandas_peer`` (a test and benchmark oracle, not shipped) computes
the same table in plain pandas.

Feature meanings. Aggregates are point-in-time: a claim's **history** is itself plus the
claims of the same key (provider, patient, specialty, procedure, bill) filed on one of the
``LOOKBACK_DAYS`` (365) days before its ``claim_date``; for a provider's or patient's own
activity, on one of the ``ACTIVITY_DAYS`` (30) days before it. Claims filed later, or on
the same day, are never seen, so a feature means the same in training, in batch scoring
(the batch built together with silver) and in real time; fixed windows keep the features
stationary, so PSI does not fire merely because history grows.

- ``amount_per_procedure``: claim amount / num_procedures, with 0 procedures counted as 1.
- ``service_to_claim_days``: days from service date to claim (submission) date.
- ``provider_claim_count``, ``provider_unique_patients``, ``provider_avg_amount``: the
  billing provider's claims, distinct patients and average claim amount in its history.
- ``provider_amount_peer_zscore``: ``provider_avg_amount`` as a z-score among the claims
  billed under the claim's specialty in the specialty's history (population std); 0 when
  they have no spread.
- ``patient_claim_count``, ``patient_provider_count``: the patient's claims and distinct
  providers in its history.
- ``days_since_prev_patient_claim``: days from the latest service date among the patient's
  earlier-filed claims in its history to this claim's service date (0 when that one is
  later); ``FIRST_CLAIM_GAP_DAYS`` (-1) when the history has none.
- ``amount_vs_procedure_mean``: claim amount / the procedure code's mean amount in its
  history; 1.0 when that mean is 0 (no norm to compare against).
- ``amount_procedure_zscore``: claim amount as a z-score within its procedure code's history
  (population std); 0 when the history has no spread.
- ``duplicate_claim_count``: earlier-filed claims with the same patient, provider, procedure
  and service date (the same bill).
- ``is_duplicate_claim``: 1 when there is such an earlier claim: the re-bill an analyst would
  question, not the original. A re-bill filed the same day as its original is not seen.
- Categorical nulls become ``MISSING_CATEGORY``; numeric inputs are non-null by the silver
  contract, and the blocking ``features_complete`` check stops anything that slips through.

Extra columns a source mapping declares (``features:``) are copied per claim from silver,
after the columns above: numeric ones (``xn_*``) as float64 that may be null (both boosters
read NaN as missing), categorical ones (``xc_*``) with nulls as ``MISSING_CATEGORY``; both
are model inputs (``extra_inputs``). Protected ones (``xp_*``) are context for the fairness
report, like ``patient_gender``, and never inputs. A gold table without extras is exactly
``CLAIM_FEATURES_SCHEMA``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

import pyarrow as pa

from fraud_assets.claims.schema import extra_columns

if TYPE_CHECKING:
    from fraud_assets.settings import FraudSettings, LabelUnit, SplitStrategy

ID_COLUMN = "claim_id"
LABEL_COLUMN = "is_fraud"
SPLIT_COLUMN = "split"  # see SplitPolicy
AMOUNT_COLUMN = "claim_amount"
TRAIN = "train"
HOLDOUT = "holdout"
UNLABELLED = "unlabelled"  # no label yet (not adjudicated): scored and monitored, not trained on
EXCLUDED = "excluded"  # labelled, but on the wrong side of the cutoff for its entity's group
SPLITS = (TRAIN, HOLDOUT, UNLABELLED, EXCLUDED)
# The column of a claim that identifies each label unit.
UNIT_COLUMNS: dict[str, str] = {
    "claim": "claim_id",
    "provider": "provider_id",
    "patient": "patient_id",
}

# How far back a claim's history reaches (see the module docstring); part of every model's
# feature definitions, so a constant rather than a setting that could differ between runs.
LOOKBACK_DAYS = 365
# A provider's or patient's own activity (counts, distinct counts, average amount, gap) looks
# back a month. Such a feature changes with the window's fill: with a year-long window the
# first year of data (all of many files) has smaller counts and noisier averages than later
# claims, which PSI reads as drift and an out-of-time holdout as a shift. The specialty and
# procedure norms and duplicate bills pool many claims, so they keep the year.
ACTIVITY_DAYS = 30
# A patient's first claim has no previous claim; -1 keeps the column non-null and sortable.
FIRST_CLAIM_GAP_DAYS = -1
MISSING_CATEGORY = "__missing__"
# Amounts are dollars: a spread below a billionth of one is no spread, so the z-score is 0.
ZERO_SPREAD = 1e-9
# The split hashes md5(f"{seed}:{unit id}"); its first 8 hex digits mod this give a bucket.
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
    "amount_vs_procedure_mean",
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

# Kept beside the features for fairness reporting and time-based monitoring, never trained on;
# the patient and provider ids let the fairness intervals account for claims that cluster.
CONTEXT_COLUMNS: list[str] = [
    "claim_date",
    "patient_id",
    "provider_id",
    "patient_gender",
    "patient_age_group",
    "geographic_region",
]


class ProtectedInputError(ValueError):
    """A protected attribute, or a column it is derived from, would reach a model."""


def extra_inputs(columns: Iterable[str]) -> tuple[list[str], list[str]]:
    """The numeric (``xn_*``) and categorical (``xc_*``) extra model inputs among ``columns``
    (a gold table's), in their order; protected extras (``xp_*``) are never among them."""
    names = list(columns)
    return extra_columns(names, "numeric"), extra_columns(names, "categorical")


def protected_extras(columns: Iterable[str]) -> list[str]:
    """The protected extra attributes (``xp_*``) among ``columns``: reported on, never inputs."""
    return extra_columns(columns, "protected")


def forbidden_inputs(protected: Iterable[str], *, allowed: Iterable[str] = ()) -> set[str]:
    """Columns no model may see: the protected attributes and their sources, less ``allowed``."""
    columns: set[str] = set()
    for name in protected:
        columns.update(PROTECTED_SOURCES.get(name, (name,)))
    return columns - set(allowed)


def model_inputs(
    protected: Iterable[str], *, allowed: Sequence[str] = (), columns: Iterable[str] = ()
) -> tuple[list[str], list[str]]:
    """The numeric and categorical model inputs: ``MODEL_FEATURES``, the extra inputs among
    ``columns`` (the gold table's, see ``extra_inputs``), and allowed attributes.

    An allowed protected attribute must be one of ``PROTECTED_SOURCES`` (a gold column); it
    joins the categorical inputs. Raises ``ProtectedInputError`` when a protected column would be an
    input without being allowed (a guard against a feature list edited by mistake), and a
    protected extra (``xp_*``) can never be allowed.
    """
    extra_numeric, extra_categorical = extra_inputs(columns)
    numeric = [*NUMERIC_FEATURES, *extra_numeric]
    categorical = [*CATEGORICAL_FEATURES, *extra_categorical]
    for name in allowed:
        if name not in PROTECTED_SOURCES:
            raise ProtectedInputError(
                f"allowed_protected_inputs names {name!r}, which is not a protected column of "
                f"claim_features; allow one of {sorted(PROTECTED_SOURCES)}"
            )
        if name not in categorical:
            categorical.append(name)
    forbidden = forbidden_inputs(protected, allowed=allowed) | set(protected_extras(columns))
    leaked = sorted(forbidden & {*numeric, *categorical})
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
    "amount_vs_procedure_mean": pa.float64(),
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
        pa.field("patient_id", pa.string(), nullable=False),
        pa.field("provider_id", pa.string(), nullable=False),
        pa.field("patient_gender", pa.string(), nullable=False),
        pa.field("patient_age_group", pa.string(), nullable=False),
        pa.field("geographic_region", pa.string(), nullable=False),
        *(pa.field(name, _NUMERIC_TYPES[name], nullable=False) for name in NUMERIC_FEATURES),
        *(pa.field(name, pa.string(), nullable=False) for name in CATEGORICAL_FEATURES),
    ]
)


def claim_features_schema(columns: Iterable[str] = ()) -> pa.Schema:
    """The gold schema for silver ``columns``: ``CLAIM_FEATURES_SCHEMA`` plus their extras
    (numeric ones float64 and nullable, categorical and protected ones text, never null)."""
    extras = extra_columns(columns)
    return pa.schema(
        [
            *CLAIM_FEATURES_SCHEMA,
            *(
                pa.field(name, pa.float64(), nullable=True)
                if name in extra_columns([name], "numeric")
                else pa.field(name, pa.string(), nullable=False)
                for name in extras
            ),
        ]
    )


def split_bucket(unit_id: str, *, seed: int) -> int:
    """The unit's split bucket in [0, SPLIT_BUCKETS): md5 of ``f"{seed}:{unit_id}"``."""
    digest = hashlib.md5(f"{seed}:{unit_id}".encode(), usedforsecurity=False).hexdigest()
    return int(digest[:8], 16) % SPLIT_BUCKETS


@dataclass(frozen=True)
class SplitPolicy:
    """How labelled claims are split into ``train`` and ``holdout``, honestly.

    Claims with no label are ``unlabelled`` whatever the strategy (recent claims not yet
    adjudicated: scored and monitored, never trained or evaluated on). The label belongs to
    a claim, a provider or a patient (``label_unit``); a split never puts one entity of that
    unit on both sides.

    - ``random`` (the settings' default): a unit is in the holdout when its hash bucket
      (``split_bucket`` of its id) is below ``holdout_fraction`` of ``SPLIT_BUCKETS``; all
      its labelled claims follow it.
    - ``out_of_time`` (this class's default): the holdout is the most recent labelled
      claims. For claim labels, the claims on or after the cutoff date that leaves
      ``holdout_fraction`` of the labelled claims on or after it (``out_of_time_cutoff``).
      For provider or patient labels both rules hold at once: a hashed ``sqrt(fraction)``
      of the entities is held out, and the holdout is their claims on or after a cutoff that leaves
      ``sqrt(fraction)`` of the claims after it; training is the other entities' claims
      before it. That keeps the holdout near ``fraction`` and trains on the most rows an
      honest split allows, ``(1 - sqrt(fraction))**2``; the other labelled claims are
      ``excluded`` (scored and monitored, never trained or evaluated on).
    """

    holdout_fraction: float
    seed: int
    strategy: SplitStrategy = "out_of_time"
    label_unit: LabelUnit = "claim"

    def __post_init__(self) -> None:
        if not 0.0 <= self.holdout_fraction < 1.0:
            raise ValueError(f"holdout_fraction must be in [0, 1), got {self.holdout_fraction}")

    @classmethod
    def from_settings(cls, settings: FraudSettings) -> SplitPolicy:
        return cls(
            holdout_fraction=settings.holdout_fraction,
            seed=settings.seed,
            strategy=settings.split_strategy,
            label_unit=label_unit(settings),
        )

    @property
    def unit_column(self) -> str:
        return UNIT_COLUMNS[self.label_unit]

    @property
    def grouped_in_time(self) -> bool:
        return self.strategy == "out_of_time" and self.label_unit != "claim"

    @property
    def group_fraction(self) -> float:
        """The share of units hashed into the holdout group."""
        if self.strategy == "random":
            return self.holdout_fraction
        return math.sqrt(self.holdout_fraction) if self.grouped_in_time else 1.0

    @property
    def time_fraction(self) -> float:
        """The share of labelled claims on or after the cutoff."""
        if self.grouped_in_time:
            return math.sqrt(self.holdout_fraction)
        return self.holdout_fraction

    @property
    def bucket_limit(self) -> int:
        """Units whose split bucket is below this number are in the holdout group."""
        return round(self.group_fraction * SPLIT_BUCKETS)

    def describe(self) -> dict[str, object]:
        return {
            "split_strategy": self.strategy,
            "label_unit": self.label_unit,
            "holdout_fraction": self.holdout_fraction,
            "split_seed": self.seed,
        }


def label_unit(settings: FraudSettings) -> LabelUnit:
    """The unit the label belongs to: the setting, else the source mapping's, else claim."""
    if settings.label_unit is not None:
        return settings.label_unit
    if settings.source_path and settings.source_mapping:
        from fraud_assets.claims.mapping import load_mapping

        return load_mapping(settings.source_mapping).label_unit
    return "claim"


def out_of_time_cutoff(date_counts: Mapping[date, int], time_fraction: float) -> date | None:
    """The first holdout date: the latest date with at least ``time_fraction`` of the
    labelled claims on or after it. ``None`` (no holdout by time) when the fraction is 0 or
    there are no labelled claims."""
    total = sum(date_counts.values())
    if time_fraction <= 0.0 or total == 0:
        return None
    after = 0
    for day in sorted(date_counts, reverse=True):
        after += date_counts[day]
        if after >= time_fraction * total - 1e-9:
            return day
    return min(date_counts)


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
    "ACTIVITY_DAYS",
    "AMOUNT_COLUMN",
    "CATEGORICAL_FEATURES",
    "CLAIM_FEATURES_COLUMNS",
    "CLAIM_FEATURES_SCHEMA",
    "CONTEXT_COLUMNS",
    "EXCLUDED",
    "FIRST_CLAIM_GAP_DAYS",
    "HOLDOUT",
    "ID_COLUMN",
    "INPUT_COLUMNS",
    "LABEL_COLUMN",
    "LOOKBACK_DAYS",
    "MISSING_CATEGORY",
    "MODEL_FEATURES",
    "NUMERIC_FEATURES",
    "SPLITS",
    "SPLIT_BUCKETS",
    "SPLIT_COLUMN",
    "TRAIN",
    "UNIT_COLUMNS",
    "UNLABELLED",
    "ZERO_SPREAD",
    "SplitPolicy",
    "claim_features_schema",
    "extra_inputs",
    "label_unit",
    "out_of_time_cutoff",
    "protected_extras",
    "require_input_columns",
    "split_bucket",
]
