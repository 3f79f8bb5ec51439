"""Adjudications: the labels that arrive weeks after a claim was scored.

A claims feed carries no outcome: a claim is scored when it lands, and its investigation
closes later. The outcome arrives as an adjudications file in the ``adjudications`` folder
of the landing folder (``<landing>/adjudications/``; on Databricks in the landing Volume):
``*.csv`` or ``*.parquet`` with the columns

- ``claim_id`` (required): the claim the outcome is for;
- ``is_fraud`` (required): ``1``/``0`` (``true``/``false`` are read too);
- ``adjudicated_at`` (optional): when the case closed, an ISO date or timestamp (UTC when it
  names no zone); it orders two outcomes of one claim (an appeal that reverses a finding).

Other columns are kept in the file, not in the table. Each file lands once through the
``landed_files`` ledger, like a claim file, as one batch of the ``adjudications`` Delta table;
a file with a bad row is quarantined whole, and the reason names the file, column, row and
value. The label a claim gets (``latest_labels``) is its latest outcome, else its own label
in silver; the time it became known (``labelled_at``) is when its first label landed. Gold
(``claim_features``) takes its labels this way, so adjudicated claims train the next model,
and the champion's audit judges each decision whose label landed after it.
"""

from __future__ import annotations

import posixpath
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow as pa

from fraud_assets.claims.errors import SourceError
from fraud_assets.claims.schema import (
    BATCH_ID_COLUMN,
    ID_COLUMN,
    LABEL_COLUMN,
    LOADED_AT_COLUMN,
    SOURCE_COLUMN,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

# The subfolder of the landing folder (or Volume) adjudication files land in.
ADJUDICATIONS_FOLDER = "adjudications"
ADJUDICATED_AT = "adjudicated_at"
LABELLED_AT = "labelled_at"
REQUIRED_COLUMNS = (ID_COLUMN, LABEL_COLUMN)
_TRUE = {"1", "true", "yes"}
_FALSE = {"0", "false", "no"}

SCHEMA = pa.schema(
    [
        pa.field(ID_COLUMN, pa.string(), nullable=False),
        pa.field(LABEL_COLUMN, pa.int32(), nullable=False),
        pa.field(ADJUDICATED_AT, pa.timestamp("us", tz="UTC")),
        pa.field(SOURCE_COLUMN, pa.string(), nullable=False),
        pa.field(BATCH_ID_COLUMN, pa.string(), nullable=False),
        pa.field(LOADED_AT_COLUMN, pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)


class AdjudicationFileError(SourceError):
    """An adjudications file that cannot land: unreadable, a missing column or a bad row."""


def adjudications_location(landing_location: str) -> str:
    """The adjudications folder inside the landing folder ``landing_location``."""
    return posixpath.join(landing_location.rstrip("/"), ADJUDICATIONS_FOLDER)


def read_adjudications(
    path: Path, *, source: str, batch_id: str, loaded_at: datetime, now: datetime | None = None
) -> pa.Table:
    """The file's outcomes as rows of the ``adjudications`` table; raises
    ``AdjudicationFileError`` naming file, column, row and value for the first bad row."""
    raw = _read(path, source)
    missing = [c for c in REQUIRED_COLUMNS if c not in raw.columns]
    if missing:
        raise AdjudicationFileError(
            f"{source}: an adjudications file needs the columns {list(REQUIRED_COLUMNS)}; "
            f"{missing} missing, it has {list(raw.columns)}"
        )
    ids = raw[ID_COLUMN].str.strip()
    labels = raw[LABEL_COLUMN].str.strip().str.lower()
    when = raw[ADJUDICATED_AT].str.strip() if ADJUDICATED_AT in raw.columns else None
    row_offset = 2 if path.suffix.lower() == ".csv" else 1  # the CSV header is line 1
    latest = now or datetime.now(UTC)
    parsed_when: list[datetime | None] = []
    values: list[int] = []
    first_row: dict[str, int] = {}
    for i in range(len(raw)):
        row = i + row_offset

        def bad(column: str, value: object, why: str, row: int = row) -> AdjudicationFileError:
            return AdjudicationFileError(f"{source}: column {column!r}, row {row}: {value!r} {why}")

        if not ids.iloc[i]:
            raise bad(ID_COLUMN, raw[ID_COLUMN].iloc[i], "is empty; every outcome names its claim")
        if ids.iloc[i] in first_row:
            raise bad(
                ID_COLUMN,
                ids.iloc[i],
                f"repeats row {first_row[ids.iloc[i]]}; one outcome per claim and file",
            )
        first_row[ids.iloc[i]] = row
        if labels.iloc[i] in _TRUE:
            values.append(1)
        elif labels.iloc[i] in _FALSE:
            values.append(0)
        else:
            raise bad(LABEL_COLUMN, raw[LABEL_COLUMN].iloc[i], "is not 1 or 0 (true or false)")
        parsed_when.append(None)
        if when is not None and when.iloc[i]:
            try:
                stamp = pd.Timestamp(when.iloc[i])
            except ValueError:
                raise bad(ADJUDICATED_AT, when.iloc[i], "is not an ISO date or timestamp") from None
            stamp = stamp.tz_localize(UTC) if stamp.tzinfo is None else stamp.tz_convert(UTC)
            if stamp > pd.Timestamp(latest):
                raise bad(ADJUDICATED_AT, when.iloc[i], f"is after now ({latest.isoformat()})")
            parsed_when[-1] = stamp.to_pydatetime()
    n = len(raw)
    return pa.table(
        {
            ID_COLUMN: pa.array(ids.tolist(), pa.string()),
            LABEL_COLUMN: pa.array(values, pa.int32()),
            ADJUDICATED_AT: pa.array(parsed_when, pa.timestamp("us", tz="UTC")),
            SOURCE_COLUMN: pa.array([source] * n, pa.string()),
            BATCH_ID_COLUMN: pa.array([batch_id] * n, pa.string()),
            LOADED_AT_COLUMN: pa.array([loaded_at] * n, pa.timestamp("us", tz="UTC")),
        },
        schema=SCHEMA,
    )


def _read(path: Path, source: str) -> pd.DataFrame:
    """Every cell as stripped-able text ('' for a blank), whatever the format."""
    try:
        if path.suffix.lower() == ".parquet":
            frame = pd.read_parquet(path)
            return frame.astype("string").fillna("").astype(object)
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError, pa.ArrowException) as error:
        raise AdjudicationFileError(f"{source}: cannot be read as adjudications: {error}") from None


def latest_labels(claims: pd.DataFrame, adjudications: pd.DataFrame | None) -> pd.DataFrame:
    """One row per labelled claim: ``claim_id``, ``is_fraud`` and ``labelled_at``.

    The label is the claim's latest adjudication (by ``adjudicated_at``, then by when it
    landed), else its own label in silver ``claims``; ``labelled_at`` is when its first label
    of either kind landed (``_loaded_at``).
    """
    parts = []
    own = claims.loc[claims[LABEL_COLUMN].notna(), [ID_COLUMN, LABEL_COLUMN, LOADED_AT_COLUMN]]
    own = own.assign(_rank=0)
    own[ADJUDICATED_AT] = pd.NaT
    parts.append(own)
    if adjudications is not None and not adjudications.empty:
        outcome = adjudications[[ID_COLUMN, LABEL_COLUMN, ADJUDICATED_AT, LOADED_AT_COLUMN]]
        parts.append(outcome.assign(_rank=1))
    labels = pd.concat(parts, ignore_index=True)
    labels[LOADED_AT_COLUMN] = pd.to_datetime(labels[LOADED_AT_COLUMN], utc=True)
    labels[ADJUDICATED_AT] = pd.to_datetime(labels[ADJUDICATED_AT], utc=True)
    first = labels.groupby(ID_COLUMN, sort=False)[LOADED_AT_COLUMN].min()
    # An adjudication outranks the claim's own label; among adjudications the latest wins.
    ordered = labels.sort_values(
        ["_rank", ADJUDICATED_AT, LOADED_AT_COLUMN], kind="stable", na_position="first"
    )
    latest = ordered.drop_duplicates(ID_COLUMN, keep="last").set_index(ID_COLUMN)
    out = latest[[LABEL_COLUMN]].astype("int64")
    out[LABELLED_AT] = first
    out.index = out.index.astype(str)
    return out.reset_index()


def with_adjudications(claims: DataFrame, adjudications: DataFrame | None) -> DataFrame:
    """Silver ``claims`` with each adjudicated claim's latest outcome as its label (Spark; the
    same order as ``latest_labels``). Claims nobody adjudicated keep their own label."""
    if adjudications is None:
        return claims
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    order = Window.partitionBy(ID_COLUMN).orderBy(
        F.col(ADJUDICATED_AT).desc_nulls_last(), F.col(LOADED_AT_COLUMN).desc()
    )
    latest = (
        adjudications.withColumn("__n", F.row_number().over(order))
        .filter(F.col("__n") == 1)
        .select(F.col(ID_COLUMN), F.col(LABEL_COLUMN).alias("__adjudicated"))
    )
    label_type = claims.schema[LABEL_COLUMN].dataType
    return (
        claims.join(latest, on=ID_COLUMN, how="left")
        .withColumn(
            LABEL_COLUMN,
            F.coalesce(F.col("__adjudicated").cast(label_type), F.col(LABEL_COLUMN)),
        )
        .drop("__adjudicated")
        .select(*claims.columns)
    )
