"""DBFS 2.0 in the emulator: mkdirs, put, create, add-block, close, read, get-status, delete,
list."""

from __future__ import annotations

import base64
import shutil
from pathlib import Path, PurePosixPath
from typing import Any

from fraud_assets_tests.emulator.core import (
    MAX_DBFS_READ,
    ApiError,
    not_found,
)


class DbfsApi:
    """The DBFS endpoints over ``<root>/dbfs``; mixed into ``DatabricksEmulator``."""

    def _dbfs_path(self, path: str | None) -> Path:
        if not path:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", "Path must be given.")
        posix = PurePosixPath(str(path).removeprefix("dbfs:"))
        if not posix.is_absolute() or ".." in posix.parts:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Path {path} must be absolute.")
        return self.dbfs_root / posix.relative_to("/")

    def _dbfs_info(self, local: Path) -> dict[str, Any]:
        stat = local.stat()
        return {
            "path": "/" + local.relative_to(self.dbfs_root).as_posix(),
            "is_dir": local.is_dir(),
            "file_size": 0 if local.is_dir() else stat.st_size,
            "modification_time": int(stat.st_mtime * 1000),
        }

    def _dbfs_mkdirs(self, payload: dict[str, Any]) -> dict[str, Any]:
        local = self._dbfs_path(payload.get("path"))
        if local.is_file():
            raise ApiError(400, "RESOURCE_ALREADY_EXISTS", f"{payload['path']} is a file.")
        local.mkdir(parents=True, exist_ok=True)
        return {}

    def _dbfs_put(self, payload: dict[str, Any]) -> dict[str, Any]:
        local = self._dbfs_path(payload.get("path"))
        data = base64.b64decode(payload.get("contents") or "")
        if len(data) > MAX_DBFS_READ:
            raise ApiError(400, "MAX_BLOCK_SIZE_EXCEEDED", "put accepts at most 1 MB.")
        self._dbfs_write(local, data, overwrite=bool(payload.get("overwrite")))
        return {}

    def _dbfs_write(self, local: Path, data: bytes, *, overwrite: bool) -> None:
        if local.exists() and not overwrite:
            raise ApiError(400, "RESOURCE_ALREADY_EXISTS", f"{local.name} already exists.")
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(data)

    def _dbfs_create(self, payload: dict[str, Any]) -> dict[str, Any]:
        local = self._dbfs_path(payload.get("path"))
        if local.exists() and not payload.get("overwrite"):
            raise ApiError(400, "RESOURCE_ALREADY_EXISTS", f"{payload['path']} already exists.")
        with self._lock:
            handle = next(self._ids)
            self._handles[handle] = (local, bytearray())
        return {"handle": handle}

    def _dbfs_add_block(self, payload: dict[str, Any]) -> dict[str, Any]:
        entry = self._handles.get(int(payload.get("handle") or 0))
        if entry is None:
            raise not_found(f"Handle {payload.get('handle')}")
        entry[1].extend(base64.b64decode(payload.get("data") or ""))
        return {}

    def _dbfs_close(self, payload: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            entry = self._handles.pop(int(payload.get("handle") or 0), None)
        if entry is None:
            raise not_found(f"Handle {payload.get('handle')}")
        self._dbfs_write(entry[0], bytes(entry[1]), overwrite=True)
        return {}

    def _dbfs_read(self, args: dict[str, Any]) -> dict[str, Any]:
        local = self._dbfs_path(args.get("path"))
        if not local.exists():
            raise not_found(f"Path {args.get('path')}")
        if local.is_dir():
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"{args.get('path')} is a directory.")
        offset = int(args.get("offset") or 0)
        length = min(int(args.get("length") or 512 * 1024), MAX_DBFS_READ)
        with open(local, "rb") as f:
            f.seek(offset)
            data = f.read(length)
        return {"bytes_read": len(data), "data": base64.b64encode(data).decode()}

    def _dbfs_get_status(self, args: dict[str, Any]) -> dict[str, Any]:
        local = self._dbfs_path(args.get("path"))
        if not local.exists():
            raise not_found(f"Path {args.get('path')}")
        return self._dbfs_info(local)

    def _dbfs_delete(self, payload: dict[str, Any]) -> dict[str, Any]:
        local = self._dbfs_path(payload.get("path"))
        if not local.exists():
            raise not_found(f"Path {payload.get('path')}")
        if local.is_dir():
            if any(local.iterdir()) and not payload.get("recursive"):
                raise ApiError(400, "IO_ERROR", f"{payload['path']} is a non-empty directory.")
            shutil.rmtree(local)
        else:
            local.unlink()
        return {}

    def _dbfs_list(self, args: dict[str, Any]) -> dict[str, Any]:
        local = self._dbfs_path(args.get("path"))
        if not local.exists():
            raise not_found(f"Path {args.get('path')}")
        if local.is_file():
            return {"files": [self._dbfs_info(local)]}
        return {"files": [self._dbfs_info(child) for child in sorted(local.iterdir())]}
