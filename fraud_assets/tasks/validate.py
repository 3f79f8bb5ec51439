"""Validate step: bronze ``raw_claims`` → silver ``claims`` + ``claims_quarantine`` (PySpark).

A run validates the ``batch_id`` parameter's batch, else every bronze batch not published
yet (not validated, or cut short between its commits; oldest first), else the latest loaded
again. A batch is published, its silver and quarantine rows visible together, by a row in
the ``claims_batches`` ledger written after both commits; readers read the versions it
names. When bronze holds only those batches' rows (a synthetic full refresh) silver and
quarantine are rebuilt; otherwise each batch's rows are replaced in both, so re-validating
is idempotent and a claim id already in silver from another batch is quarantined as a
duplicate. The checks read back the tables as written and reconcile the batch.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pyarrow as pa

from fraud_assets import keys
from fraud_assets.checks import (
    CHECK_NULL_RATES,
    CHECK_QUARANTINE_RATE,
    CHECK_RECONCILES,
    CHECK_SCHEMA,
    CHECK_UNIQUE_CLAIM_ID,
    CHECK_VALUE_RANGES,
)
from fraud_assets.claims.schema import (
    BATCH_ID_COLUMN,
    ID_COLUMN,
    LOADED_AT_COLUMN,
    SILVER_SCHEMA,
)
from fraud_assets.claims.validation import (
    CheckVerdict,
    null_rates,
    quarantine_rate,
    quarantine_rows,
    reason_counts,
    reconcile,
    schema_matches,
    silver_rows,
    unique_claim_ids,
    validate_batch,
    value_ranges,
)
from fraud_assets.features.online import HISTORY_COLUMNS, ClaimsHistoryView
from fraud_assets.lakehouse import (
    CLAIMS,
    CLAIMS_QUARANTINE,
    RAW_CLAIMS,
    SILVER_LEDGER,
    TableStore,
    table_store,
)
from fraud_assets.spark import get_spark
from fraud_assets.tasks._runtime import (
    CheckOutcome,
    Materialization,
    TaskContext,
    TaskResult,
    run_task,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from fraud_assets.settings import FraudSettings

SILVER_ASSET = keys.CLAIMS
QUARANTINE_ASSET = keys.CLAIMS_QUARANTINE


def validate(ctx: TaskContext) -> TaskResult:
    """Type, validate and deduplicate bronze batches into silver and quarantine."""
    from pyspark.sql import functions as F

    settings = ctx.settings
    thresholds = settings.thresholds
    store = table_store(settings)
    spark = get_spark(settings=settings)

    bronze_all = store.read_spark(spark, RAW_CLAIMS)
    batches = _batches_by_load_time(bronze_all)
    batch_ids = (
        [str(ctx.param("batch_id"))]
        if ctx.param("batch_id")
        else _pending(store, spark, batches)
        or [_latest(list(batches), bronze_version=store.version(RAW_CLAIMS))]
    )
    # Bronze holds nothing but this one batch: a synthetic full refresh.
    full_refresh = len(batch_ids) == 1 and set(batches) == set(batch_ids)
    silver_version = quarantine_version = -1
    for batch_id in batch_ids:
        in_one = F.col(BATCH_ID_COLUMN) == batch_id
        known_ids = None
        if not full_refresh and store.exists(CLAIMS):
            known_ids = (
                store.read_spark(spark, CLAIMS).filter(~in_one).select(ID_COLUMN, BATCH_ID_COLUMN)
            )
        validated = validate_batch(
            bronze_all.filter(in_one), thresholds=thresholds, known_ids=known_ids
        ).cache()
        silver_version, quarantine_version = _write(
            store, silver_rows(validated), quarantine_rows(validated), batch_id, full_refresh
        )
        validated.unpersist()
        _publish(store, batch_id, silver_version, quarantine_version, full_refresh)

    # The checks judge every batch this run validated, together.
    in_batch = F.col(BATCH_ID_COLUMN).isin(batch_ids)
    batch_id = ", ".join(batch_ids)
    bronze = bronze_all.filter(in_batch).cache()
    silver_table = store.read_spark(spark, CLAIMS)
    silver_batch = silver_table.filter(in_batch)
    quarantine_table = store.read_spark(spark, CLAIMS_QUARANTINE)
    quarantine_batch = quarantine_table.filter(in_batch).cache()
    reconciled = reconcile(bronze, silver_batch, quarantine_batch)
    bronze_count = int(reconciled.metadata["bronze_rows"])
    silver_count = int(reconciled.metadata["silver_rows"])
    quarantine_count = int(reconciled.metadata["quarantined_rows"])
    reasons = reason_counts(quarantine_batch)
    unique_ids = unique_claim_ids(silver_table)
    verdicts: list[tuple[str, CheckVerdict]] = [
        (CHECK_RECONCILES, reconciled),
        (CHECK_UNIQUE_CLAIM_ID, unique_ids),
        (
            CHECK_SCHEMA,
            schema_matches(store.table_schema(CLAIMS), SILVER_SCHEMA, typed_extras=True),
        ),
        (
            CHECK_QUARANTINE_RATE,
            quarantine_rate(
                bronze_rows=bronze_count,
                quarantined_rows=quarantine_count,
                reasons=reasons,
                thresholds=thresholds,
            ),
        ),
        (CHECK_VALUE_RANGES, value_ranges(silver_batch, thresholds=thresholds)),
        (CHECK_NULL_RATES, null_rates(bronze, thresholds=thresholds)),
    ]
    silver_total = int(unique_ids.metadata["rows"])
    quarantine_total = quarantine_table.count()
    bronze.unpersist()
    quarantine_batch.unpersist()
    online: dict[str, int] = {}
    if settings.compute == "local":
        online["online_view_rows"] = _update_online_view(
            settings, silver_batch, full_refresh=full_refresh
        )

    ctx.log.info(
        "batch %s: %d bronze rows -> %d silver + %d quarantined (%s)",
        batch_id,
        bronze_count,
        silver_count,
        quarantine_count,
        "full refresh" if full_refresh else "append",
    )
    shared = {
        "batch_id": batch_id,
        "batch_ids": batch_ids,
        "load_mode": "full_refresh" if full_refresh else "append",
    }
    materializations = [
        Materialization(
            SILVER_ASSET,
            {
                **shared,
                "row_count": silver_total,
                "batch_row_count": silver_count,
                "bronze_batch_rows": bronze_count,
                "delta_version": silver_version,
                "table_location": store.location(CLAIMS),
                **online,
            },
        ),
        Materialization(
            QUARANTINE_ASSET,
            {
                **shared,
                "row_count": quarantine_total,
                "batch_row_count": quarantine_count,
                "quarantine_rate": round(quarantine_count / bronze_count, 6)
                if bronze_count
                else 0.0,
                "reasons": reasons,
                "delta_version": quarantine_version,
                "table_location": store.location(CLAIMS_QUARANTINE),
            },
        ),
    ]
    checks = [
        CheckOutcome.declared(
            SILVER_ASSET,
            name,
            passed=verdict.passed,
            metadata={**verdict.metadata, "batch_id": batch_id, "summary": verdict.description},
            description=verdict.description,
        )
        for name, verdict in verdicts
    ]
    return TaskResult(materializations=materializations, checks=checks)


def _update_online_view(
    settings: FraudSettings, silver_batch: DataFrame, *, full_refresh: bool
) -> int:
    """Add the batch's published silver rows to the local online view, so real-time
    scoring sees them as history; returns the rows the view holds. Only the batch's
    history columns are collected, never all of silver."""
    rows = silver_batch.select(*HISTORY_COLUMNS).toArrow()
    return ClaimsHistoryView.for_settings(settings).update(rows, full_refresh=full_refresh)


def _batches_by_load_time(bronze: DataFrame) -> dict[str, int]:
    """Every batch in bronze and its row count, the most recently loaded first (one small
    Spark job)."""
    from pyspark.sql import functions as F

    rows = (
        bronze.groupBy(BATCH_ID_COLUMN)
        .agg(F.max(LOADED_AT_COLUMN).alias("loaded_at"), F.count("*").alias("rows"))
        .orderBy(F.desc("loaded_at"))
        .collect()
    )
    return {str(row[BATCH_ID_COLUMN]): int(row["rows"]) for row in rows}


def _pending(store: TableStore, spark: SparkSession, batches: dict[str, int]) -> list[str]:
    """The bronze batches not published or not all in silver or quarantine, oldest first.

    That is a batch not validated yet, or one whose validate died before its ledger row (see
    ``fraud_assets.lakehouse.SILVER_LEDGER``). Two batches landed before one validate are both
    validated, in the order they landed, so a claim id re-sent in the later one is the one
    quarantined. Silver written before the ledger existed is judged by its row counts.
    """
    silver = _rows_per_batch(store, spark, CLAIMS)
    quarantine = _rows_per_batch(store, spark, CLAIMS_QUARANTINE)
    published = (
        set(store.read_arrow(SILVER_LEDGER).column(BATCH_ID_COLUMN).to_pylist())
        if store.exists(SILVER_LEDGER)
        else None
    )
    return [
        batch
        for batch, rows in reversed(batches.items())
        if silver.get(batch, 0) + quarantine.get(batch, 0) != rows
        or (published is not None and batch not in published)
    ]


def _rows_per_batch(store: TableStore, spark: SparkSession, table: str) -> dict[str, int]:
    if not store.exists(table):
        return {}
    rows = store.read_spark(spark, table).groupBy(BATCH_ID_COLUMN).count().collect()
    return {str(row[BATCH_ID_COLUMN]): int(row["count"]) for row in rows}


def _latest(batches: list[str], *, bronze_version: int) -> str:
    if not batches:
        # The table exists (it was just read), so an ingest ran and landed nothing.
        raise ValueError(
            f"raw_claims holds no rows: its latest load (Delta version {bronze_version}) "
            "was a file with a header but no records, or with none at all (see the "
            "raw_claims.raw_not_empty check); land a file with records, then validate"
        )
    return batches[0]


def _write(
    store: TableStore,
    silver: DataFrame,
    quarantine: DataFrame,
    batch_id: str,
    full_refresh: bool,
) -> tuple[int, int]:
    if full_refresh:
        return (
            store.write_spark(silver, CLAIMS, mode="overwrite"),
            store.write_spark(quarantine, CLAIMS_QUARANTINE, mode="overwrite"),
        )
    return (
        store.replace_rows_spark(silver, CLAIMS, column=BATCH_ID_COLUMN, value=batch_id),
        store.replace_rows_spark(
            quarantine, CLAIMS_QUARANTINE, column=BATCH_ID_COLUMN, value=batch_id
        ),
    )


def _publish(
    store: TableStore,
    batch_id: str,
    silver_version: int,
    quarantine_version: int,
    full_refresh: bool,
) -> None:
    """Make the batch's silver and quarantine rows visible to readers, together."""
    row = pa.table(
        {
            BATCH_ID_COLUMN: pa.array([batch_id], pa.string()),
            "silver_version": pa.array([silver_version], pa.int64()),
            "quarantine_version": pa.array([quarantine_version], pa.int64()),
            "published_at": pa.array([datetime.now(UTC)], pa.timestamp("us", tz="UTC")),
        }
    )
    if full_refresh:
        store.write_arrow(row, SILVER_LEDGER, mode="overwrite")
    else:
        store.replace_rows(row, SILVER_LEDGER, column=BATCH_ID_COLUMN, value=batch_id)


def main(argv: list[str] | None = None) -> None:
    run_task(validate, argv, name="validate")


if __name__ == "__main__":
    main()
