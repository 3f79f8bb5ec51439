"""Which landed claim files are new to the sensor: listing a UC Volume, and the cursor.

What a claim file is, its version and its mapping are ``fraud_assets.claims.landing``'s.
The cursor only keeps the sensor from requesting a run per file on every tick; whether a
file lands is the ``landed_files`` ledger's decision, taken by the ingest step: a file the
ledger holds is not landed again, even when the cursor is reset or a run is requested twice.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

from fraud_assets.claims.adjudications import adjudications_location
from fraud_assets.claims.landing import (
    CLAIM_SUFFIXES,
    MAPPING_SUFFIX,
    ClaimFile,
    LandedFile,
    is_claim_file,
    list_local_folder,
    mapping_of,
)

__all__ = [
    "CLAIM_SUFFIXES",
    "MAPPING_SUFFIX",
    "ClaimFile",
    "LandedFile",
    "VolumeClient",
    "dump_seen",
    "is_claim_file",
    "list_local_folder",
    "list_volume_folder",
    "list_volume_landing",
    "load_seen",
    "new_claim_files",
    "next_seen",
]


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


def list_volume_folder(client: VolumeClient, volume_path: str) -> list[LandedFile]:
    """Files directly inside a UC Volume folder, through the Files API."""
    return _list_volume(client, volume_path)[0]


def list_volume_landing(client: VolumeClient, volume_path: str) -> list[LandedFile]:
    """The landing folder's files and, when it has one, its adjudications folder's."""
    listing, folders = _list_volume(client, volume_path)
    outcomes = adjudications_location(volume_path)
    if outcomes.rstrip("/") in folders:
        listing += list_volume_folder(client, outcomes)
    return listing


def _list_volume(client: VolumeClient, volume_path: str) -> tuple[list[LandedFile], set[str]]:
    listing, folders = [], set()
    for entry in client.files.list_directory_contents(volume_path):
        if not entry.path:
            continue
        if entry.is_directory:
            folders.add(entry.path.rstrip("/"))
        else:
            listing.append(LandedFile(entry.path, entry.file_size or 0, entry.last_modified or 0))
    return listing, folders


def new_claim_files(
    listing: Sequence[LandedFile], seen: Mapping[str, str], *, default_mapping: str | None
) -> Iterator[ClaimFile]:
    """Claim files not yet seen with this size and mtime, oldest first, with their mapping."""
    paths = {f.path for f in listing}
    for landed in sorted(listing, key=lambda f: (f.modified_ms, f.path)):
        if not is_claim_file(landed.name) or seen.get(landed.path) == landed.signature:
            continue
        yield ClaimFile(landed, mapping_of(landed.path, paths, default_mapping))


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
