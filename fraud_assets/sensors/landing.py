"""Which landed claim files are new: listing a local folder or a UC Volume, and the cursor.

A claim file is ``*.csv`` or ``*.parquet`` directly in the landing folder. Names starting
with ``.`` or ``_`` are in-flight or bookkeeping files (writers land a file under a dot-name
and rename it when complete) and are ignored. A file is new when its path, size and
modification time have not been seen before, so a file replaced in place is ingested again.

Each file is ingested with a mapping onto the canonical schema, chosen in this order:
a sidecar ``<file>.mapping.yaml`` beside it, else the default mapping setting, else none
(the file already uses canonical column names).
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

CLAIM_SUFFIXES = (".csv", ".parquet")
MAPPING_SUFFIX = ".mapping.yaml"


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


@dataclass(frozen=True)
class ClaimFile:
    """A new claim file and the mapping to ingest it with."""

    file: LandedFile
    mapping: str | None


class _DirectoryEntry(Protocol):
    path: str | None
    file_size: int | None
    last_modified: int | None
    is_directory: bool | None


class _FilesAPI(Protocol):
    def list_directory_contents(self, directory_path: str) -> Iterable[_DirectoryEntry]: ...


class VolumeClient(Protocol):
    """The part of ``databricks.sdk.WorkspaceClient`` used to list a UC Volume folder."""

    @property
    def files(self) -> _FilesAPI: ...


def list_local_folder(folder: Path) -> list[LandedFile]:
    """Files directly inside ``folder`` (not recursive)."""
    listing = []
    for entry in folder.iterdir():
        if entry.is_file():
            stat = entry.stat()
            listing.append(LandedFile(str(entry), stat.st_size, stat.st_mtime_ns // 1_000_000))
    return listing


def list_volume_folder(client: VolumeClient, volume_path: str) -> list[LandedFile]:
    """Files directly inside a UC Volume folder, through the Files API."""
    listing = []
    for entry in client.files.list_directory_contents(volume_path):
        if entry.is_directory or not entry.path:
            continue
        listing.append(LandedFile(entry.path, entry.file_size or 0, entry.last_modified or 0))
    return listing


def is_claim_file(name: str) -> bool:
    return not name.startswith((".", "_")) and name.lower().endswith(CLAIM_SUFFIXES)


def new_claim_files(
    listing: Sequence[LandedFile], seen: Mapping[str, str], *, default_mapping: str | None
) -> Iterator[ClaimFile]:
    """Claim files not yet seen with this size and mtime, oldest first, with their mapping."""
    paths = {f.path for f in listing}
    for landed in sorted(listing, key=lambda f: (f.modified_ms, f.path)):
        if not is_claim_file(landed.name) or seen.get(landed.path) == landed.signature:
            continue
        sidecar = landed.path + MAPPING_SUFFIX
        yield ClaimFile(landed, sidecar if sidecar in paths else default_mapping)


def next_seen(
    listing: Sequence[LandedFile], seen: Mapping[str, str], requested: Iterable[ClaimFile]
) -> dict[str, str]:
    """The cursor after this evaluation: requested files added, files gone from the folder
    dropped so the cursor does not grow forever."""
    present = {f.path for f in listing}
    updated = {path: sig for path, sig in seen.items() if path in present}
    updated.update({c.file.path: c.file.signature for c in requested})
    return updated


def load_seen(cursor: str | None) -> dict[str, str]:
    if not cursor:
        return {}
    data: Any = json.loads(cursor)
    if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
        raise ValueError(
            f"new-claims sensor cursor is not {{'files': {{path: signature}}}}: {cursor[:200]!r}"
        )
    return {str(k): str(v) for k, v in data["files"].items()}


def dump_seen(seen: Mapping[str, str]) -> str:
    return json.dumps({"files": dict(sorted(seen.items()))}, separators=(",", ":"))
