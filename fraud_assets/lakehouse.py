"""Where tables live: delta-rs folders under FRAUD_HOME locally, Unity Catalog on Databricks.

Task code names a table by its logical name (``"claims"``) and never builds a path or a
three-level name itself, so the same task runs in both places.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import pandas as pd
import pyarrow as pa

from fraud_assets.settings import FraudSettings, on_databricks_runtime

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

Layer = Literal["bronze", "silver", "gold", "monitoring"]
WriteMode = Literal["overwrite", "append"]


@dataclass(frozen=True)
class Table:
    """A logical table and the medallion layer it belongs to."""

    name: str
    layer: Layer


# Every table's logical name, for task, serving and bench code to import rather than spell.
RAW_CLAIMS = "raw_claims"
# One row per landing-folder file version ingest took, landed or quarantined (claims/landing.py).
LANDED_FILES = "landed_files"
# Claim outcomes that land after the claims, one batch per adjudications file
# (claims/adjudications.py).
ADJUDICATIONS = "adjudications"
CLAIMS = "claims"
CLAIMS_QUARANTINE = "claims_quarantine"
CLAIMS_BATCHES = "claims_batches"
CLAIM_FEATURES = "claim_features"
MODEL_EVALUATION = "model_evaluation"
HOLDOUT_PREDICTIONS = "holdout_predictions"
FRAUD_SCORES = "fraud_scores"
FAIRNESS_REPORT = "fairness_report"
PSI_REPORT = "psi_report"
INFERENCE_LOG = "inference_log"
CHECK_HISTORY = "check_history"
# Written by Databricks, not by us: the serving endpoint's AI Gateway inference table
# (deploy/serving/databricks.yml, table_name_prefix fraud_endpoint), read by drift monitoring.
ENDPOINT_PAYLOAD = "fraud_endpoint_payload"

TABLES: dict[str, Table] = {
    t.name: t
    for t in [
        Table(RAW_CLAIMS, "bronze"),
        Table(LANDED_FILES, "bronze"),
        Table(ADJUDICATIONS, "bronze"),
        Table(CLAIMS, "silver"),
        Table(CLAIMS_QUARANTINE, "silver"),
        Table(CLAIMS_BATCHES, "silver"),
        Table(CLAIM_FEATURES, "gold"),
        Table(MODEL_EVALUATION, "gold"),
        Table(HOLDOUT_PREDICTIONS, "gold"),
        Table(FRAUD_SCORES, "gold"),
        Table(FAIRNESS_REPORT, "monitoring"),
        Table(PSI_REPORT, "monitoring"),
        Table(INFERENCE_LOG, "monitoring"),
        Table(CHECK_HISTORY, "monitoring"),
        Table(ENDPOINT_PAYLOAD, "monitoring"),
    ]
}


def table(name: str) -> Table:
    """Look up a logical table by name, with a clear error for a typo."""
    try:
        return TABLES[name]
    except KeyError:
        raise KeyError(f"unknown table {name!r}; known tables: {sorted(TABLES)}") from None


class TableStore(ABC):
    """Reads and writes the project's Delta tables; every write returns the new version."""

    @abstractmethod
    def location(self, name: str) -> str:
        """Human-readable location: a path or a three-level name."""

    @abstractmethod
    def exists(self, name: str) -> bool: ...

    @abstractmethod
    def version(self, name: str) -> int:
        """Latest committed Delta version; raises if the table does not exist."""

    @abstractmethod
    def read_arrow(self, name: str, version: int | None = None) -> pa.Table: ...

    @abstractmethod
    def write_arrow(self, data: pa.Table, name: str, mode: WriteMode = "overwrite") -> int: ...

    @abstractmethod
    def read_spark(
        self, spark: SparkSession, name: str, version: int | None = None
    ) -> DataFrame: ...

    @abstractmethod
    def write_spark(self, df: DataFrame, name: str, mode: WriteMode = "overwrite") -> int: ...

    def read_pandas(self, name: str, version: int | None = None) -> pd.DataFrame:
        return self.read_arrow(name, version).to_pandas()

    def write_pandas(self, frame: pd.DataFrame, name: str, mode: WriteMode = "overwrite") -> int:
        return self.write_arrow(pa.Table.from_pandas(frame, preserve_index=False), name, mode)

    @abstractmethod
    def table_schema(self, name: str) -> pa.Schema:
        """The table's current schema, without reading its data."""

    @abstractmethod
    def replace_rows(self, data: pa.Table, name: str, *, column: str, value: str) -> int:
        """Atomically swap the rows where ``column == value`` for ``data`` (Delta replaceWhere).

        Re-running a batch then replaces it instead of appending it twice. Creates the table
        when it does not exist yet.
        """

    @abstractmethod
    def replace_rows_spark(self, df: DataFrame, name: str, *, column: str, value: str) -> int:
        """``replace_rows`` for a Spark DataFrame."""

    def _missing(self, name: str) -> FileNotFoundError:
        return FileNotFoundError(
            f"table {name!r} does not exist at {self.location(name)}; "
            "materialize its upstream asset first"
        )


class LocalDeltaStore(TableStore):
    """delta-rs tables under ``FRAUD_HOME/<layer>/<name>``: no JVM needed to read or write."""

    def __init__(self, home: Path) -> None:
        self.home = Path(home)

    def location(self, name: str) -> str:
        t = table(name)
        return str(self.home / t.layer / t.name)

    def exists(self, name: str) -> bool:
        from deltalake import DeltaTable

        return DeltaTable.is_deltatable(self.location(name))

    def version(self, name: str) -> int:
        from deltalake import DeltaTable

        if not self.exists(name):
            raise self._missing(name)
        return int(DeltaTable(self.location(name)).version())

    def read_arrow(self, name: str, version: int | None = None) -> pa.Table:
        from deltalake import DeltaTable

        if not self.exists(name):
            raise self._missing(name)
        dt = DeltaTable(self.location(name), version=version)
        return dt.to_pyarrow_table()

    def write_arrow(self, data: pa.Table, name: str, mode: WriteMode = "overwrite") -> int:
        from deltalake import DeltaTable, write_deltalake

        path = self.location(name)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        # A Delta commit is atomic: if this raises, readers still see the previous version.
        write_deltalake(
            path,
            data,
            mode=mode,
            schema_mode="overwrite" if mode == "overwrite" else "merge",
        )
        return int(DeltaTable(path).version())

    def read_spark(self, spark: SparkSession, name: str, version: int | None = None) -> DataFrame:
        data = self.read_arrow(name, version)
        if data.num_rows == 0:
            # A Spark Connect session cannot infer a schema from no rows; give it the table's.
            from pyspark.sql.pandas.types import from_arrow_schema

            return spark.createDataFrame([], schema=from_arrow_schema(data.schema))
        return spark.createDataFrame(data)

    def write_spark(self, df: DataFrame, name: str, mode: WriteMode = "overwrite") -> int:
        return self.write_arrow(df.toArrow(), name, mode)

    def table_schema(self, name: str) -> pa.Schema:
        from deltalake import DeltaTable

        if not self.exists(name):
            raise self._missing(name)
        return pa.schema(DeltaTable(self.location(name)).schema().to_arrow())

    def replace_rows(self, data: pa.Table, name: str, *, column: str, value: str) -> int:
        from deltalake import DeltaTable, write_deltalake

        if not self.exists(name):
            return self.write_arrow(data, name, "append")
        path = self.location(name)
        write_deltalake(
            path, data, mode="overwrite", predicate=_equals(column, value), schema_mode="merge"
        )
        return int(DeltaTable(path).version())

    def replace_rows_spark(self, df: DataFrame, name: str, *, column: str, value: str) -> int:
        return self.replace_rows(df.toArrow(), name, column=column, value=value)


class UnityCatalogStore(TableStore):
    """Managed Delta tables ``{catalog}.{schema}.{name}`` through the cluster's SparkSession."""

    def __init__(self, catalog: str, schema: str) -> None:
        self.catalog = catalog
        self.schema = schema

    def location(self, name: str) -> str:
        return f"{self.catalog}.{self.schema}.{table(name).name}"

    def _identifier(self, name: str) -> str:
        # Quoted, so catalog or schema names with a hyphen still parse in SQL and readers.
        parts = (self.catalog, self.schema, table(name).name)
        return ".".join(f"`{part.replace('`', '``')}`" for part in parts)

    def _spark(self) -> SparkSession:
        from fraud_assets.spark import get_spark

        return get_spark()

    def exists(self, name: str) -> bool:
        return bool(self._spark().catalog.tableExists(self._identifier(name)))

    def version(self, name: str) -> int:
        if not self.exists(name):
            raise self._missing(name)
        row = self._spark().sql(f"DESCRIBE HISTORY {self._identifier(name)} LIMIT 1").first()
        assert row is not None
        return int(row["version"])

    def read_arrow(self, name: str, version: int | None = None) -> pa.Table:
        spark = self._spark()
        if not self.exists(name):
            raise self._missing(name)
        reader = spark.read
        if version is not None:
            reader = reader.option("versionAsOf", version)
        return reader.table(self._identifier(name)).toArrow()

    def write_arrow(self, data: pa.Table, name: str, mode: WriteMode = "overwrite") -> int:
        return self.write_spark(self._spark().createDataFrame(data), name, mode)

    def read_spark(self, spark: SparkSession, name: str, version: int | None = None) -> DataFrame:
        if not self.exists(name):
            raise self._missing(name)
        reader = spark.read
        if version is not None:
            reader = reader.option("versionAsOf", version)
        return reader.table(self._identifier(name))

    def write_spark(self, df: DataFrame, name: str, mode: WriteMode = "overwrite") -> int:
        writer = df.write.format("delta").mode(mode)
        writer = writer.option("overwriteSchema" if mode == "overwrite" else "mergeSchema", "true")
        writer.saveAsTable(self._identifier(name))
        return self.version(name)

    def table_schema(self, name: str) -> pa.Schema:
        if not self.exists(name):
            raise self._missing(name)
        return self._spark().read.table(self._identifier(name)).limit(0).toArrow().schema

    def replace_rows(self, data: pa.Table, name: str, *, column: str, value: str) -> int:
        return self.replace_rows_spark(
            self._spark().createDataFrame(data), name, column=column, value=value
        )

    def replace_rows_spark(self, df: DataFrame, name: str, *, column: str, value: str) -> int:
        if not self.exists(name):
            return self.write_spark(df, name, "append")
        # mergeSchema: a batch may bring a mapping's extra columns the table does not have yet.
        writer = df.write.format("delta").mode("overwrite").option("mergeSchema", "true")
        writer.option("replaceWhere", _equals(column, value)).saveAsTable(self._identifier(name))
        return self.version(name)


# Silver and quarantine are two Delta tables, so a batch is written in two commits. Validate
# publishes the batch by a third, a row of this ledger holding the versions both tables
# reached; readers read the versions the ledger last published, so a process killed between
# the commits leaves the batch visible in neither table (issue 14, finding 8).
SILVER_LEDGER = CLAIMS_BATCHES
LEDGER_VERSION_COLUMNS = {CLAIMS: "silver_version", CLAIMS_QUARANTINE: "quarantine_version"}


def published_version(store: TableStore, name: str) -> int | None:
    """The version of silver ``claims`` or ``claims_quarantine`` that readers see: the one the
    ledger last published, or None (the latest) when no validate has written a ledger."""
    column = LEDGER_VERSION_COLUMNS[name]
    if not store.exists(SILVER_LEDGER):
        return None
    versions = store.read_arrow(SILVER_LEDGER).column(column).to_pylist()
    return max(versions) if versions else None


def read_published(store: TableStore, spark: SparkSession, name: str) -> DataFrame:
    """Silver ``claims`` or ``claims_quarantine`` as validate last published it."""
    return store.read_spark(spark, name, version=published_version(store, name))


def _equals(column: str, value: str) -> str:
    """A SQL predicate ``column = 'value'`` with the value's quotes escaped."""
    escaped = value.replace("'", "''")
    return f"`{column}` = '{escaped}'"


def table_store(settings: FraudSettings) -> TableStore:
    """The store for where this process runs: UC on a Databricks runtime, delta-rs elsewhere."""
    if on_databricks_runtime():
        if not settings.catalog or not settings.schema_name:
            raise ValueError("catalog and schema must be set to use Unity Catalog tables")
        return UnityCatalogStore(settings.catalog, settings.schema_name)
    return LocalDeltaStore(settings.fraud_home)
