"""Ingest step: land claims in bronze ``raw_claims``, exactly as they arrived.

The source is, in order:

1. a file named by the ``source_path`` parameter (with ``mapping``; the new-claims sensor
   names each new landing file this way), else by ``FRAUD_SOURCE_PATH`` /
   ``FRAUD_SOURCE_MAPPING``;
2. synthetic claims, only where asked for: dev (the laptop demo) or
   ``FRAUD_SYNTHETIC_CLAIMS=true``. A synthetic load replaces bronze (a full refresh);
3. otherwise (staging and prod, where the daily schedule runs) every claim file in the
   landing folder (``FRAUD_LANDING_DIR``; the bundle's ``landing`` Volume on Databricks) that
   the ``landed_files`` ledger does not hold yet, oldest first, each as its own batch.

The landing folder's ``adjudications/`` files (claim outcomes that arrive after the claims,
``fraud_assets.claims.adjudications``) land the same way, each once, in the
``adjudications`` table: the sweep takes them with the claim files, and a run named one of
them by the sensor lands that one.

Every file goes through the ledger (``fraud_assets.claims.landing``): a file version already
landed is skipped, so neither a fixed ``FRAUD_SOURCE_PATH`` nor a sensor and a schedule
firing together land it twice. A landing-folder file's batch id comes from its version and
the ledger row is written after bronze, so a retry after a crash between the two replaces
the batch instead of appending it again; a landing file that cannot be read or mapped is
quarantined whole (a ledger row with the reason) and the other files still land. A file
named from outside the landing folder is a one-off load: batch id = run id, and a file that
cannot be ingested fails the step, writing nothing. Staging and prod never synthesize: with
no landing folder, or nothing ever landed and nothing to land, the step fails and says why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from fraud_assets import keys
from fraud_assets.checks import CHECK_NO_FILE_QUARANTINED, CHECK_RAW_NOT_EMPTY, CHECK_RAW_SCHEMA
from fraud_assets.claims import landing
from fraud_assets.claims.adjudications import (
    AdjudicationFileError,
    adjudications_location,
    read_adjudications,
)
from fraud_assets.claims.landing import ClaimFile, LandedFile, LedgerEntry
from fraud_assets.claims.mapping import bronze_table, load_mapping, read_source
from fraud_assets.claims.schema import BATCH_ID_COLUMN, BRONZE_SCHEMA, PARSE_ERROR_COLUMN
from fraud_assets.claims.synthetic import SHAPES, generate_claims, to_arrow
from fraud_assets.claims.validation import schema_matches
from fraud_assets.lakehouse import ADJUDICATIONS, LANDED_FILES, RAW_CLAIMS, TableStore, table_store
from fraud_assets.settings import FraudSettings
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


@dataclass
class _Landing:
    """What one run did with the files it considered."""

    landed: list[tuple[ClaimFile, int]] = field(default_factory=list)
    quarantined: list[tuple[ClaimFile, str]] = field(default_factory=list)
    skipped: list[tuple[ClaimFile, LedgerEntry]] = field(default_factory=list)
    parse_errors: int = 0
    notes: dict[str, Any] = field(default_factory=dict)
    # Adjudications files landed (file, rows), in the adjudications table, not bronze.
    outcomes: list[tuple[LandedFile, int]] = field(default_factory=list)

    def merge(self, other: _Landing) -> None:
        """Add an adjudications landing's files to this claims landing."""
        self.quarantined += other.quarantined
        self.skipped += other.skipped
        self.outcomes += other.outcomes


def ingest(ctx: TaskContext) -> TaskResult:
    """Land the run's source in bronze with its lineage columns, through the ledger."""
    settings = ctx.settings
    # A source given to this run (e.g. by the new-claims sensor) comes with its own mapping,
    # where none means canonical columns; only without one do the settings apply.
    source_path: str | None
    if ctx.param("source_path"):
        source_path, mapping_name = str(ctx.param("source_path")), ctx.param("mapping")
    else:
        source_path, mapping_name = settings.source_path, settings.source_mapping
    store = table_store(settings)
    location = landing.landing_location(settings)

    if source_path and landing.in_folder(source_path, adjudications_location(location)):
        outcome = _land_adjudications(ctx, store, [landing.stat_file(source_path)])
        metadata = {"source": source_path}
    elif source_path and landing.in_folder(source_path, location):
        listing = {f.path: f for f in landing.list_landing_folder(location) or []}
        named = ClaimFile(landing.stat_file(source_path), mapping_name)
        outcome = _land_files(ctx, store, [named], listing)
        metadata = {"source": source_path}
    elif source_path:
        return _one_off(ctx, store, source_path, mapping_name)
    elif mapping_name:
        raise ValueError(
            f"mapping {mapping_name!r} is set but no source path is: set FRAUD_SOURCE_PATH "
            "(or the source_path config) too, or unset the mapping"
        )
    elif settings.synthetic_claims_allowed:
        return _synthetic(ctx, store)
    else:
        listed = landing.list_landing_folder(location)
        if listed is None:
            raise _refused(settings, f"the landing folder {location} does not exist")
        listing = {f.path: f for f in listed}
        files = landing.claim_files(listed, default_mapping=settings.landing_mapping)
        outcome = _land_files(ctx, store, files, listing)
        outcome.merge(_land_adjudications(ctx, store, landing.adjudication_files(listed)))
        if not outcome.landed and not outcome.quarantined and not store.exists(RAW_CLAIMS):
            raise _refused(
                settings,
                f"nothing has landed yet and the landing folder {location} holds no claim "
                f"file to land ({len(outcome.skipped)} already quarantined)",
            )
        metadata = {"source": location}
    return _result(ctx, store, outcome, metadata)


def _refused(settings: FraudSettings, why: str) -> SyntheticClaimsRefused:
    return SyntheticClaimsRefused(
        f"no claims to ingest for target {settings.target!r}: {why}. Land *.csv or *.parquet "
        "claim files there (FRAUD_LANDING_DIR; on Databricks the bundle's landing Volume), or "
        "set FRAUD_SOURCE_PATH (or the source_path config) to one claims file. Synthetic "
        "claims would replace everything in raw_claims, so only dev generates them, or set "
        "FRAUD_SYNTHETIC_CLAIMS=true to ask for them"
    )


def _land_files(
    ctx: TaskContext,
    store: TableStore,
    files: list[ClaimFile],
    listing: dict[str, LandedFile],
) -> _Landing:
    """Land each file the ledger does not settle, as its own batch; quarantine the ones that
    cannot be read or mapped."""
    outcome = _Landing()
    ledger = landing.read_ledger(store)
    for claim_file in files:
        file = claim_file.file
        mapping = landing.mapping_version(claim_file.mapping, listing)
        done = landing.is_done(file, mapping, ledger)
        if done is not None:
            outcome.skipped.append((claim_file, done))
            continue
        loaded_at = datetime.now(UTC)
        try:
            landed = read_source(landing.local_path(file.path), load_mapping(claim_file.mapping))
        except ValueError as error:  # SourceError, MappingError, a parser's own ValueError
            reason = f"{file.path}: {error}"
            ctx.log.warning("quarantined claim file %s: %s", file.path, error)
            landing.record(store, _entry(ctx, file, mapping, "quarantined", reason, 0, loaded_at))
            outcome.quarantined.append((claim_file, reason))
            continue
        bronze = bronze_table(
            landed.records, source=file.path, loaded_at=loaded_at, batch_id=file.batch_id
        )
        # Bronze first, the ledger second: a crash between them re-lands the same batch id.
        store.replace_rows(bronze, RAW_CLAIMS, column="_batch_id", value=file.batch_id)
        landing.record(
            store, _entry(ctx, file, mapping, "landed", None, bronze.num_rows, loaded_at)
        )
        ctx.log.info("landed %d rows of %s as batch %s", bronze.num_rows, file.path, file.batch_id)
        outcome.landed.append((claim_file, bronze.num_rows))
        outcome.parse_errors += bronze.num_rows - bronze.column(PARSE_ERROR_COLUMN).null_count
        outcome.notes[file.name] = {"mapping": landed.mapping, **landed.notes}
    return outcome


def _land_adjudications(ctx: TaskContext, store: TableStore, files: list[LandedFile]) -> _Landing:
    """Land each adjudications file the ledger does not settle as its own batch of the
    ``adjudications`` table; quarantine a file with a bad row whole."""
    outcome = _Landing()
    ledger = landing.read_ledger(store)
    for file in files:
        as_claim_file = ClaimFile(file, None)
        done = landing.is_done(file, landing.ADJUDICATIONS_MAPPING, ledger)
        if done is not None:
            outcome.skipped.append((as_claim_file, done))
            continue
        loaded_at = datetime.now(UTC)
        try:
            table = read_adjudications(
                landing.local_path(file.path),
                source=file.path,
                batch_id=file.batch_id,
                loaded_at=loaded_at,
            )
        except AdjudicationFileError as error:
            ctx.log.warning("quarantined adjudications file %s: %s", file.path, error)
            entry = _entry(
                ctx, file, landing.ADJUDICATIONS_MAPPING, "quarantined", str(error), 0, loaded_at
            )
            landing.record(store, entry)
            outcome.quarantined.append((as_claim_file, str(error)))
            continue
        # The table first, the ledger second, as for claims: a retry replaces the batch.
        store.replace_rows(table, ADJUDICATIONS, column=BATCH_ID_COLUMN, value=file.batch_id)
        landing.record(
            store,
            _entry(
                ctx, file, landing.ADJUDICATIONS_MAPPING, "landed", None, table.num_rows, loaded_at
            ),
        )
        ctx.log.info(
            "landed %d adjudications of %s as batch %s", table.num_rows, file.path, file.batch_id
        )
        outcome.outcomes.append((file, table.num_rows))
    return outcome


def _entry(
    ctx: TaskContext,
    file: LandedFile,
    mapping: str,
    status: landing.Status,
    reason: str | None,
    rows: int,
    loaded_at: datetime,
    batch_id: str | None = None,
) -> LedgerEntry:
    return LedgerEntry(
        path=file.path,
        size=file.size,
        modified_ms=file.modified_ms,
        signature=file.signature,
        mapping=mapping,
        batch_id=batch_id or file.batch_id,
        status=status,
        reason=reason,
        rows=rows,
        landed_at=loaded_at,
        run_id=ctx.run_id,
    )


def _result(
    ctx: TaskContext, store: TableStore, outcome: _Landing, metadata: dict[str, Any]
) -> TaskResult:
    batch_ids = [c.file.batch_id for c, _ in outcome.landed]
    row_count = sum(rows for _, rows in outcome.landed)
    quarantined = [{"file": c.file.path, "reason": reason} for c, reason in outcome.quarantined]
    metadata.update(
        load_mode="append",
        files_landed=len(outcome.landed),
        files_quarantined=len(quarantined),
        files_already_in_ledger=len(outcome.skipped),
        landed_files=[
            {"file": c.file.path, "batch_id": c.file.batch_id, "rows": rows}
            for c, rows in outcome.landed
        ],
        quarantined_files=quarantined,
        batch_ids=batch_ids,
        row_count=row_count,
        rows_with_parse_errors=outcome.parse_errors,
        ledger_location=store.location(LANDED_FILES),
        table_location=store.location(RAW_CLAIMS),
        adjudication_files_landed=[
            {"file": f.path, "batch_id": f.batch_id, "rows": rows} for f, rows in outcome.outcomes
        ],
        adjudications_landed=sum(rows for _, rows in outcome.outcomes),
    )
    if store.exists(ADJUDICATIONS):
        metadata["adjudications_location"] = store.location(ADJUDICATIONS)
    if len(batch_ids) == 1:
        metadata["batch_id"] = batch_ids[0]
        metadata.update(outcome.notes[outcome.landed[0][0].file.name])
    if store.exists(RAW_CLAIMS):
        metadata["delta_version"] = store.version(RAW_CLAIMS)
    ctx.log.info(
        "%d claim file(s) landed (%d rows), %d adjudications file(s) landed, %d quarantined, "
        "%d already in the ledger",
        len(outcome.landed),
        row_count,
        len(outcome.outcomes),
        len(quarantined),
        len(outcome.skipped),
    )
    empty = [c.file.path for c, rows in outcome.landed if rows == 0]
    not_empty = (
        f"{row_count} rows landed from {len(outcome.landed)} file(s)"
        if outcome.landed
        else "no new claim file to land"
        + (f" ({len(outcome.outcomes)} adjudications file(s) landed)" if outcome.outcomes else "")
    )
    checks = [
        _schema_check(store),
        CheckOutcome.declared(
            ASSET,
            CHECK_RAW_NOT_EMPTY,
            passed=not empty,
            metadata={"row_count": row_count, "empty_files": empty, "summary": not_empty},
            description=(f"{', '.join(empty)} has a header but no records" if empty else not_empty),
        ),
        _quarantine_check(quarantined),
    ]
    return TaskResult(materializations=[Materialization(ASSET, metadata)], checks=checks)


def _quarantine_check(quarantined: list[dict[str, str]]) -> CheckOutcome:
    summary = (
        f"{len(quarantined)} file(s) quarantined whole: "
        + "; ".join(q["reason"] for q in quarantined)
        if quarantined
        else "no claim or adjudications file was quarantined"
    )
    return CheckOutcome.declared(
        ASSET,
        CHECK_NO_FILE_QUARANTINED,
        passed=not quarantined,
        metadata={"quarantined_files": quarantined, "summary": summary[:2000]},
        description=summary[:2000],
    )


def _schema_check(store: TableStore) -> CheckOutcome:
    if not store.exists(RAW_CLAIMS):
        description = "raw_claims does not exist: nothing has landed yet"
        return CheckOutcome.declared(
            ASSET,
            CHECK_RAW_SCHEMA,
            passed=False,
            metadata={"summary": description},
            description=description,
        )
    schema = schema_matches(store.table_schema(RAW_CLAIMS), BRONZE_SCHEMA)
    return CheckOutcome.declared(
        ASSET,
        CHECK_RAW_SCHEMA,
        passed=schema.passed,
        metadata={**schema.metadata, "summary": schema.description},
        description=schema.description,
    )


def _one_off(
    ctx: TaskContext, store: TableStore, source_path: str, mapping_name: str | None
) -> TaskResult:
    """A file named from outside the landing folder: one batch, batch id = run id, so a
    retry within the run replaces it. A version already landed is not landed again."""
    try:
        file: LandedFile | None = landing.stat_file(source_path)
    except OSError:
        file = None  # read_source names the missing file
    mapping = landing.mapping_version(mapping_name, {})
    if file is not None:
        done = landing.is_done(file, mapping, landing.read_ledger(store))
        if done is not None and done.status == landing.LANDED and done.batch_id != ctx.run_id:
            ctx.log.info(
                "%s (this version) already landed as batch %s on %s: nothing to land",
                source_path,
                done.batch_id,
                done.landed_at.isoformat(),
            )
            return _result(
                ctx,
                store,
                _Landing(skipped=[(ClaimFile(file, mapping_name), done)]),
                {"source": source_path, "already_landed_as": done.batch_id},
            )
    loaded_at = datetime.now(UTC)
    batch_id = ctx.run_id
    landed = read_source(landing.local_path(source_path), load_mapping(mapping_name))
    bronze = bronze_table(
        landed.records, source=landed.source, loaded_at=loaded_at, batch_id=batch_id
    )
    version = store.replace_rows(bronze, RAW_CLAIMS, column="_batch_id", value=batch_id)
    if file is not None:
        landing.record(
            store,
            _entry(ctx, file, mapping, "landed", None, bronze.num_rows, loaded_at, batch_id),
        )
    metadata: dict[str, Any] = {
        "batch_id": batch_id,
        "source": landed.source,
        "mapping": landed.mapping,
        "unmapped_source_columns": landed.unmapped_columns,
        **landed.notes,
    }
    return _loaded(ctx, store, bronze, version, metadata, full_refresh=False)


def _synthetic(ctx: TaskContext, store: TableStore) -> TaskResult:
    """Synthetic claims replace bronze (and empty the ledger): the laptop demo only."""
    settings = ctx.settings
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
        to_arrow(claims), source=source, loaded_at=datetime.now(UTC), batch_id=ctx.run_id
    )
    version = store.write_arrow(bronze, RAW_CLAIMS, mode="overwrite")
    if store.exists(LANDED_FILES):
        landing.reset(store)
    metadata: dict[str, Any] = {"batch_id": ctx.run_id, "source": source, "mapping": "synthetic"}
    return _loaded(ctx, store, bronze, version, metadata, full_refresh=True)


def _loaded(
    ctx: TaskContext,
    store: TableStore,
    bronze: pa.Table,
    version: int,
    metadata: dict[str, Any],
    *,
    full_refresh: bool,
) -> TaskResult:
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
    checks = [
        _schema_check(store),
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
        _quarantine_check([]),
    ]
    return TaskResult(materializations=[Materialization(ASSET, metadata)], checks=checks)


def main(argv: list[str] | None = None) -> None:
    run_task(ingest, argv, name="ingest")


if __name__ == "__main__":
    main()
