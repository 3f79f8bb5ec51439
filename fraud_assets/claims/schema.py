"""The canonical claim schema: the one contract every source is mapped onto."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa

CLAIM_SCHEMA = pa.schema(
    [
        pa.field("claim_id", pa.string(), nullable=False),
        pa.field("patient_id", pa.string(), nullable=False),
        pa.field("provider_id", pa.string(), nullable=False),
        pa.field("claim_date", pa.date32(), nullable=False),
        pa.field("service_date", pa.date32(), nullable=False),
        pa.field("claim_amount", pa.float64(), nullable=False),
        pa.field("num_procedures", pa.int32(), nullable=False),
        pa.field("length_of_stay", pa.int32(), nullable=False),
        pa.field("procedure_code", pa.string(), nullable=False),
        pa.field("diagnosis_code", pa.string(), nullable=False),
        pa.field("provider_specialty", pa.string(), nullable=False),
        pa.field("patient_age", pa.int32(), nullable=False),
        pa.field("patient_gender", pa.string(), nullable=False),
        pa.field("patient_age_group", pa.string(), nullable=False),
        pa.field("geographic_region", pa.string(), nullable=False),
        # Null for claims not yet adjudicated: they are scored, never trained on.
        pa.field("is_fraud", pa.int32(), nullable=True),
    ]
)

CLAIM_COLUMNS: list[str] = CLAIM_SCHEMA.names
REQUIRED_COLUMNS: list[str] = [f.name for f in CLAIM_SCHEMA if not f.nullable]
LABEL_COLUMN = "is_fraud"
ID_COLUMN = "claim_id"
DATE_COLUMNS = ("claim_date", "service_date")
# The dates a claim may carry. Spark parses "0000-01-01", which no Python, pandas or delta-rs
# reader can read back (year 0; pandas' nanoseconds end at 1677 and 2262), so one such row
# made silver unreadable; no claim predates 1900 or is filed after 2099.
EARLIEST_DATE = date(1900, 1, 1)
LATEST_DATE = date(2099, 12, 31)
# Ids and codes: at most this many characters, and none of these control characters (a NUL
# byte breaks downstream tools; tab, newline and carriage return may sit in a quoted CSV
# value). A regex character-class body; batch validation and the scoring service both use it.
MAX_TEXT_LENGTH = 256
CONTROL_CHARACTERS = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f"

# Lineage columns carried from bronze to silver.
SOURCE_COLUMN = "_source"
LOADED_AT_COLUMN = "_loaded_at"
ROW_NUMBER_COLUMN = "_row_number"
REASON_COLUMN = "_reason"
BATCH_ID_COLUMN = "_batch_id"
PARSE_ERROR_COLUMN = "_parse_error"

BRONZE_LINEAGE = pa.schema(
    [
        pa.field(SOURCE_COLUMN, pa.string(), nullable=False),
        pa.field(LOADED_AT_COLUMN, pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field(ROW_NUMBER_COLUMN, pa.int64(), nullable=False),
        pa.field(BATCH_ID_COLUMN, pa.string(), nullable=False),
        pa.field(PARSE_ERROR_COLUMN, pa.string(), nullable=True),
    ]
)
# Bronze keeps every canonical column as the text that landed, plus where and when.
BRONZE_SCHEMA = pa.schema(
    [*(pa.field(name, pa.string(), nullable=True) for name in CLAIM_COLUMNS), *BRONZE_LINEAGE]
)
# Silver is the typed contract plus the lineage that ties each row to its bronze row.
SILVER_LINEAGE = [SOURCE_COLUMN, LOADED_AT_COLUMN, ROW_NUMBER_COLUMN, BATCH_ID_COLUMN]
SILVER_SCHEMA = pa.schema([*CLAIM_SCHEMA, *(BRONZE_LINEAGE.field(name) for name in SILVER_LINEAGE)])
# Quarantine keeps the rejected bronze row as it landed and every reason it was rejected.
QUARANTINE_SCHEMA = pa.schema(
    [*BRONZE_SCHEMA, pa.field(REASON_COLUMN, pa.string(), nullable=False)]
)

# Extra columns a mapping declares in its ``features:`` travel beside the canonical ones
# through bronze, silver and gold. Their kind is in their name, so silver's types, the gold
# fills, the model inputs and PSI all follow from a table's schema alone, with no mapping or
# column list passed between steps (and a Delta, Parquet or MLflow schema keeps names, not
# field metadata). Protected extras are group labels for fairness reports, never inputs.
ExtraKind = Literal["numeric", "categorical", "protected"]
EXTRA_PREFIXES: dict[ExtraKind, str] = {
    "numeric": "xn_",
    "categorical": "xc_",
    "protected": "xp_",
}
EXTRA_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def extra_column(name: str, kind: ExtraKind) -> str:
    """The stored column of a declared extra: ``xn_``/``xc_``/``xp_`` plus its name."""
    return EXTRA_PREFIXES[kind] + name


def extra_kind(column: str) -> ExtraKind | None:
    """The kind of an extra column by its prefix; None for every other column."""
    for kind, prefix in EXTRA_PREFIXES.items():
        if column.startswith(prefix) and EXTRA_NAME.match(column[len(prefix) :]):
            return kind
    return None


def extra_columns(columns: Iterable[str], *kinds: ExtraKind) -> list[str]:
    """The extra columns among ``columns``, in their order (of ``kinds``, default all)."""
    wanted = set(kinds or EXTRA_PREFIXES)
    return [c for c in columns if extra_kind(c) in wanted]


def extra_type(column: str, *, typed: bool) -> pa.DataType:
    """An extra's type: text as landed (bronze, quarantine), float64 for numbers once typed."""
    return pa.float64() if typed and extra_kind(column) == "numeric" else pa.string()


# Every age from 0 has exactly one band; minors are their own band, not folded into adults.
AGE_GROUPS: list[tuple[str, int, int]] = [
    ("0-17", 0, 17),
    ("18-34", 18, 34),
    ("35-49", 35, 49),
    ("50-64", 50, 64),
    ("65+", 65, 200),
]


def age_group(age: int) -> str:
    """The age band used as a protected attribute."""
    for label, low, high in AGE_GROUPS:
        if low <= age <= high:
            return label
    raise ValueError(f"age {age} is outside every age group")


def age_groups(ages: np.ndarray | pd.Series) -> np.ndarray:
    """``age_group`` for many ages at once; ``None`` where an age is outside every band."""
    values = np.asarray(ages, dtype=np.float64)
    groups = np.full(values.shape, None, dtype=object)
    for label, low, high in AGE_GROUPS:
        groups[(values >= low) & (values <= high)] = label
    return groups
