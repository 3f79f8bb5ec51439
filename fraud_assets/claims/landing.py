"""The landing folder and its ledger: which claim files landed in bronze, each exactly once.

A claim file is ``*.csv`` or ``*.parquet`` directly in the landing folder. Names starting
with ``.`` or ``_`` are in-flight or bookkeeping files (writers land a file under a dot-name
and rename it when complete) and are ignored. A file version is its path, size and
modification time; a file replaced in place is a new version.

The ``landed_files`` ledger holds one row per file version that ingest took:
``landed`` (its rows are in bronze as batch ``batch_id``) or ``quarantined`` (it could not be
read or mapped, and nothing of it is in bronze; ``reason`` says why). A landing file's batch
id is derived from its version, so ingest writes bronze first and the ledger second: a
process killed between the two lands the file again as the same batch, which replaces it
rather than adding it twice. A version in the ledger as landed is never taken again; a
quarantined one is taken again only with another mapping (a fixed sidecar, say).

Each file is mapped onto the canonical schema with a sidecar ``<file>.mapping.yaml`` beside
it, else the ``FRAUD_LANDING_MAPPING`` setting, else none (canonical column names).

The folder's ``adjudications/`` subfolder holds the claims' outcomes that arrive later
(``fraud_assets.claims.adjudications``); its files go through the same ledger, take no
mapping, and land in the ``adjudications`` table instead of bronze.
"""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

import pyarrow as pa

from fraud_assets.claims.adjudications import ADJUDICATIONS_FOLDER, adjudications_location
from fraud_assets.databricks.pipes import local_path
from fraud_assets.lakehouse import LANDED_FILES, TableStore
from fraud_assets.settings import FraudSettings

# The bundle's landing Volume in <catalog>.<schema> (resources/storage-resource.yml).
LANDING_VOLUME = "landing"
CLAIM_SUFFIXES = (".csv", ".parquet")
MAPPING_SUFFIX = ".mapping.yaml"
LANDED: Literal["landed"] = "landed"
QUARANTINED: Literal["quarantined"] = "quarantined"
Status = Literal["landed", "quarantined"]
# The ledger's mapping of an adjudications file: its layout is fixed.
ADJUDICATIONS_MAPPING = "adjudications"

LEDGER_SCHEMA = pa.schema(
    [
        pa.field("path", pa.string(), nullable=False),
        pa.field("size", pa.int64(), nullable=False),
        pa.field("modified_ms", pa.int64(), nullable=False),
        pa.field("signature", pa.string(), nullable=False),
        pa.field("mapping", pa.string()),
        pa.field("batch_id", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("reason", pa.string()),
        pa.field("rows", pa.int64(), nullable=False),
        pa.field("landed_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
    ]
)


@dataclass(frozen=True)
class LandedFile:
    """One file in the landing folder: full path, size in bytes, modification time in ms."""

    path: str
    size: int
    modified_ms: int

    @property
    def name(self) -> str:
        return posixpath.basename(self.path)

    @property
    def signature(self) -> str:
        return f"{self.size}:{self.modified_ms}"

    @property
    def run_key(self) -> str:
        """One ingestion run per version of a file: Dagster drops a repeated run key."""
        return f"{self.path}@{self.signature}"

    @property
    def batch_id(self) -> str:
        """The bronze batch of this file version: the same on every attempt to land it."""
        digest = hashlib.sha256(self.run_key.encode("utf-8")).hexdigest()[:16]
        return f"file-{digest}"


@dataclass(frozen=True)
class ClaimFile:
    """A claim file to land and the mapping to land it with (None: canonical columns)."""

    file: LandedFile
    mapping: str | None


@dataclass(frozen=True)
class LedgerEntry:
    """One row of ``landed_files``."""

    path: str
    size: int
    modified_ms: int
    signature: str
    mapping: str | None
    batch_id: str
    status: Status
    reason: str | None
    rows: int
    landed_at: datetime
    run_id: str


def landing_location(settings: FraudSettings) -> str:
    """The landing folder: a local path, or a UC Volume path when compute is Databricks."""
    if settings.compute == "databricks":
        if settings.landing_dir is not None:
            return settings.landing_dir.as_posix()
        return f"/Volumes/{settings.catalog}/{settings.schema_name}/{LANDING_VOLUME}"
    return str(settings.landing_path)


def list_local_folder(folder: Path, *, as_location: str | None = None) -> list[LandedFile]:
    """Files directly inside ``folder`` (not recursive), named under ``as_location`` (the
    folder's logical path, e.g. on a Volume) when given."""
    listing = []
    for entry in folder.iterdir():
        if entry.is_file():
            stat = entry.stat()
            path = str(entry) if as_location is None else f"{as_location}/{entry.name}"
            listing.append(LandedFile(path, stat.st_size, stat.st_mtime_ns // 1_000_000))
    return listing


def list_landing_folder(location: str) -> list[LandedFile] | None:
    """The files in the landing folder and its adjudications folder, or None when the landing
    folder does not exist."""
    folder = local_path(location)
    if not folder.is_dir():
        return None
    listing = list_local_folder(folder, as_location=location)
    outcomes = folder / ADJUDICATIONS_FOLDER
    if outcomes.is_dir():
        listing += list_local_folder(outcomes, as_location=adjudications_location(location))
    return listing


def stat_file(location: str) -> LandedFile:
    """The version of one file, named by its logical path."""
    stat = local_path(location).stat()
    return LandedFile(location, stat.st_size, stat.st_mtime_ns // 1_000_000)


def is_claim_file(name: str) -> bool:
    """A claim or adjudications file by its name (not in flight, a data format we read)."""
    return not name.startswith((".", "_")) and name.lower().endswith(CLAIM_SUFFIXES)


def is_adjudications_file(path: str) -> bool:
    """Whether ``path`` lies in a landing folder's adjudications folder."""
    return posixpath.basename(posixpath.dirname(path.rstrip("/"))) == ADJUDICATIONS_FOLDER


def in_folder(path: str, location: str) -> bool:
    """Whether ``path`` lies directly in the landing folder ``location``."""
    return posixpath.dirname(path.rstrip("/")) == location.rstrip("/")


def claim_files(listing: Sequence[LandedFile], *, default_mapping: str | None) -> list[ClaimFile]:
    """The claim files in a listing, oldest first, each with its mapping (adjudications files
    are not claim files)."""
    paths = {f.path: f for f in listing}
    files = []
    for landed in sorted(listing, key=lambda f: (f.modified_ms, f.path)):
        if is_claim_file(landed.name) and not is_adjudications_file(landed.path):
            files.append(ClaimFile(landed, mapping_of(landed.path, paths, default_mapping)))
    return files


def adjudication_files(listing: Sequence[LandedFile]) -> list[LandedFile]:
    """The adjudications files in a listing, oldest first."""
    found = [f for f in listing if is_claim_file(f.name) and is_adjudications_file(f.path)]
    return sorted(found, key=lambda f: (f.modified_ms, f.path))


def mapping_of(
    path: str, listing: Mapping[str, LandedFile] | Iterable[str], default: str | None
) -> str | None:
    """The sidecar ``<file>.mapping.yaml`` when the listing holds one, else ``default``; an
    adjudications file has a fixed layout and no mapping."""
    if is_adjudications_file(path):
        return None
    sidecar = path + MAPPING_SUFFIX
    return sidecar if sidecar in listing else default


def mapping_version(mapping: str | None, listing: Mapping[str, LandedFile]) -> str:
    """The mapping as the ledger records it: a sidecar with its own version, so fixing a
    sidecar makes a quarantined file eligible again."""
    if mapping is None:
        return "canonical"
    sidecar = listing.get(mapping)
    return f"{mapping}@{sidecar.signature}" if sidecar is not None else mapping


def read_ledger(store: TableStore) -> list[LedgerEntry]:
    """Every row of ``landed_files``, in the order they were written (empty when none)."""
    if not store.exists(LANDED_FILES):
        return []
    rows = store.read_arrow(LANDED_FILES).to_pylist()
    entries = [LedgerEntry(**{f.name: row.get(f.name) for f in LEDGER_SCHEMA}) for row in rows]
    return sorted(entries, key=lambda e: (e.landed_at, e.path))


def is_done(file: LandedFile, mapping: str, ledger: Iterable[LedgerEntry]) -> LedgerEntry | None:
    """The ledger row that settles this file version: landed (with any mapping), or
    quarantined with this same mapping. None: land it."""
    for entry in ledger:
        if entry.path != file.path or entry.signature != file.signature:
            continue
        if entry.status == LANDED or entry.mapping == mapping:
            return entry
    return None


def record(store: TableStore, entry: LedgerEntry) -> int:
    """Write ``entry``, replacing any row of the same batch (a quarantined attempt, or a
    half-finished one); returns the ledger's new version."""
    row = pa.Table.from_pylist([asdict(entry)], schema=LEDGER_SCHEMA)
    return store.replace_rows(row, LANDED_FILES, column="batch_id", value=entry.batch_id)


def reset(store: TableStore) -> int:
    """Empty the ledger: a synthetic full refresh replaced everything in bronze."""
    return store.write_arrow(LEDGER_SCHEMA.empty_table(), LANDED_FILES, mode="overwrite")
