"""Task-side Pipes I/O on Databricks: the context and message files on DBFS or a UC Volume.

dagster-databricks writes the context file and reads message chunks through the REST API
(DBFS for job clusters, Files for Volumes). The task sees the same files through the
workspace's FUSE mounts: DBFS under ``/dbfs``, Volumes under ``/Volumes``. The loopback
emulator mirrors that layout under a temporary folder and says where through
``FRAUD_DATABRICKS_FUSE_ROOT``; on a Databricks runtime the root is ``/``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from dagster_pipes import (
    PipesBlobStoreMessageWriter,
    PipesBufferedFilesystemMessageWriterChannel,
    PipesContextData,
    PipesContextLoader,
    PipesParams,
)

from fraud_assets.settings import on_databricks_runtime

FUSE_ROOT_VAR = "FRAUD_DATABRICKS_FUSE_ROOT"


def fuse_root() -> Path | None:
    """Where DBFS and Volumes are mounted for this process, or None off Databricks."""
    configured = os.environ.get(FUSE_ROOT_VAR)
    if configured:
        return Path(configured)
    if on_databricks_runtime():
        return Path("/")
    return None


def fuse_path(remote: str, root: Path) -> Path:
    """The local path of a DBFS path (``/tmp/x``, ``dbfs:/tmp/x``) or a Volume path."""
    path = PurePosixPath(remote.removeprefix("dbfs:"))
    if not path.is_absolute() or ".." in path.parts:
        raise ValueError(f"Pipes path {remote!r} is not an absolute DBFS or Volume path")
    relative = path.relative_to("/")
    if relative.parts[:1] == ("Volumes",):
        return root / relative
    return root / "dbfs" / relative


def local_path(location: str) -> Path:
    """Where this process reads or writes ``location``: a ``/Volumes`` path through the FUSE
    mount on a cluster (the loopback emulator mounts it elsewhere), any other path as is."""
    if location.startswith("/Volumes/"):
        root = fuse_root()
        if root is not None:
            return fuse_path(location, root)
    return Path(location)


def _path_param(params: PipesParams, owner: str) -> str:
    path = params.get("path")
    if not isinstance(path, str):
        raise ValueError(f"{owner} expects a 'path' Pipes parameter, got {sorted(params)}")
    return path


class FuseContextLoader(PipesContextLoader):
    """Reads the context file Dagster uploaded to DBFS or a Volume, through the FUSE mount."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @contextmanager
    def load_context(self, params: PipesParams) -> Iterator[PipesContextData]:
        path = fuse_path(_path_param(params, type(self).__name__), self.root)
        with open(path, encoding="utf-8") as f:
            yield json.load(f)


class FuseMessageWriter(PipesBlobStoreMessageWriter[PipesBufferedFilesystemMessageWriterChannel]):
    """Writes numbered message chunks into the directory Dagster polls on DBFS or a Volume.

    Unlike ``PipesDbfsMessageWriter`` it needs no SparkSession to open (steps such as train
    do not start one); stdout and stderr reach Dagster as messages instead of cluster logs.
    """

    def __init__(self, root: Path, *, interval: float = 10) -> None:
        super().__init__(interval=interval)
        self.root = root

    def make_channel(self, params: PipesParams) -> PipesBufferedFilesystemMessageWriterChannel:
        path = fuse_path(_path_param(params, type(self).__name__), self.root)
        return PipesBufferedFilesystemMessageWriterChannel(path=str(path), interval=self.interval)
