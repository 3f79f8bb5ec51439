"""Ingest step: land claims in bronze ``raw_claims``, exactly as they arrived.

The source is, in order: the ``source_path`` parameter (with ``mapping``), then settings
``FRAUD_SOURCE_PATH`` / ``FRAUD_SOURCE_MAPPING``, then synthetic claims, which only dev (the
laptop demo) or ``FRAUD_SYNTHETIC_CLAIMS=true`` allows. A synthetic load replaces bronze (a
full refresh), so in staging and prod, where the daily schedule runs, a run without a source
fails instead of destroying what landed. A file is appended as one batch, ``_batch_id`` =
run id, and re-running the same run replaces that batch instead of appending it twice.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fraud_assets import keys
from fraud_assets.checks import CHECK_RAW_NOT_EMPTY, CHECK_RAW_SCHEMA
from fraud_assets.claims.mapping import bronze_table, load_mapping, read_source
from fraud_assets.claims.schema import BRONZE_SCHEMA, PARSE_ERROR_COLUMN
from fraud_assets.claims.synthetic import SHAPES, generate_claims, to_arrow
from fraud_assets.claims.validation import schema_matches
from fraud_assets.lakehouse import RAW_CLAIMS, table_store
from fraud_assets.tasks._runtime import (
    CheckOutcome,
    Materialization,
    TaskContext,
    TaskResult,
    run_task,
)

ASSET = keys.RAW_CLAIMS


class SyntheticClaimsRefused(RuntimeError):
    """No source is set, and this target does not generate synthetic claims."""


def ingest(ctx: TaskContext) -> TaskResult:
    """Read the configured source and write it to bronze with its lineage columns."""
    settings = ctx.settings
    # A source given to this run (e.g. by the new-claims sensor) comes with its own mapping,
    # where none means canonical columns; only without one do the settings apply.
    if ctx.param("source_path"):
        source_path, mapping_name = ctx.param("source_path"), ctx.param("mapping")
    else:
        source_path, mapping_name = settings.source_path, settings.source_mapping
    loaded_at = datetime.now(UTC)
    batch_id = ctx.run_id
    metadata: dict[str, Any] = {"batch_id": batch_id}

    if source_path:
        landed = read_source(source_path, load_mapping(mapping_name))
        bronze = bronze_table(
            landed.records, source=landed.source, loaded_at=loaded_at, batch_id=batch_id
        )
        full_refresh = False
        metadata.update(
            source=landed.source,
            mapping=landed.mapping,
            unmapped_source_columns=landed.unmapped_columns,
            **landed.notes,
        )
    else:
        if mapping_name:
            raise ValueError(
                f"mapping {mapping_name!r} is set but no source path is: set FRAUD_SOURCE_PATH "
                "(or the source_path config) too, or unset the mapping for synthetic claims"
            )
        if not settings.synthetic_claims_allowed:
            raise SyntheticClaimsRefused(
                f"no claims source is set for target {settings.target!r}, and synthetic claims "
                "would replace everything in raw_claims: set FRAUD_SOURCE_PATH (or the "
                "source_path config, as the landing sensor does) to a claims file; synthetic "
                "claims are for dev, or set FRAUD_SYNTHETIC_CLAIMS=true to ask for them"
            )
        source = (
            f"synthetic://claims?rows={settings.synthetic_rows}&seed={settings.seed}"
            f"&drift={settings.inject_drift:g}&bias={settings.inject_bias:g}"
            f"&shape={settings.synthetic_shape}"
        )
        claims = generate_claims(
            settings.synthetic_rows,
            seed=settings.seed,
            drift=settings.inject_drift,
            bias=settings.inject_bias,
            shape=SHAPES[settings.synthetic_shape],
        )
        bronze = bronze_table(
            to_arrow(claims), source=source, loaded_at=loaded_at, batch_id=batch_id
        )
        full_refresh = True
        metadata.update(source=source, mapping="synthetic")

    store = table_store(settings)
    if full_refresh:
        version = store.write_arrow(bronze, RAW_CLAIMS, mode="overwrite")
    else:
        version = store.replace_rows(bronze, RAW_CLAIMS, column="_batch_id", value=batch_id)
    row_count = bronze.num_rows
    parse_errors = row_count - bronze.column(PARSE_ERROR_COLUMN).null_count
    ctx.log.info(
        "landed %d rows from %s in %s (version %d)",
        row_count,
        metadata["source"],
        RAW_CLAIMS,
        version,
    )
    metadata.update(
        row_count=row_count,
        rows_with_parse_errors=parse_errors,
        load_mode="full_refresh" if full_refresh else "append",
        delta_version=version,
        table_location=store.location(RAW_CLAIMS),
    )

    schema = schema_matches(store.table_schema(RAW_CLAIMS), BRONZE_SCHEMA)
    checks = [
        CheckOutcome.declared(
            ASSET,
            CHECK_RAW_SCHEMA,
            passed=schema.passed,
            metadata={**schema.metadata, "summary": schema.description},
            description=schema.description,
        ),
        CheckOutcome.declared(
            ASSET,
            CHECK_RAW_NOT_EMPTY,
            passed=row_count > 0,
            metadata={
                "row_count": row_count,
                "source": metadata["source"],
                "summary": f"{row_count} rows landed",
            },
            description=(
                f"{row_count} rows landed"
                if row_count
                else f"{metadata['source']} has a header but no records"
            ),
        ),
    ]
    return TaskResult(materializations=[Materialization(ASSET, metadata)], checks=checks)


def main(argv: list[str] | None = None) -> None:
    run_task(ingest, argv, name="ingest")


if __name__ == "__main__":
    main()
