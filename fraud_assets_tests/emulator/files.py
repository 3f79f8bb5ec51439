"""Files 2.0 for Unity Catalog Volumes in the emulator: files and directories."""

from __future__ import annotations

from email.utils import formatdate
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from fraud_assets_tests.emulator.core import (
    ApiError,
    not_found,
)

if TYPE_CHECKING:
    from fraud_assets_tests.emulator.server import RequestHandler


class VolumesApi:
    """The Files endpoints over ``<root>/Volumes``; mixed into ``DatabricksEmulator``."""

    def _volume_path(self, path: str) -> Path:
        posix = PurePosixPath(path)
        parts = posix.parts
        if not posix.is_absolute() or ".." in parts or parts[1:2] != ("Volumes",):
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"{path} is not a /Volumes path.")
        if len(parts) < 5 or not (self.volumes_root / Path(*parts[2:5])).is_dir():
            raise not_found(f"Volume {'.'.join(parts[2:5])}")
        return self.volumes_root / Path(*parts[2:])

    def _files(
        self,
        handler: RequestHandler,
        method: str,
        path: str,
        query: dict[str, list[str]],
        body: bytes,
    ) -> int:
        local = self._volume_path(path)
        if method == "PUT":
            overwrite = (query.get("overwrite") or ["true"])[-1] != "false"
            if local.exists() and not overwrite:
                raise ApiError(409, "ALREADY_EXISTS", f"{path} already exists.")
            local.parent.mkdir(parents=True, exist_ok=True)
            local.write_bytes(body)
            handler.respond(204, b"", None)
            return 204
        if not local.is_file():
            raise not_found(f"File {path}")
        if method == "DELETE":
            local.unlink()
            handler.respond(204, b"", None)
            return 204
        headers = {
            "Last-Modified": formatdate(local.stat().st_mtime, usegmt=True),
        }
        data = local.read_bytes()
        if method == "HEAD":
            handler.respond(200, b"", "application/octet-stream", headers, length=len(data))
            return 200
        if method == "GET":
            handler.respond(200, data, "application/octet-stream", headers)
            return 200
        raise ApiError(405, "METHOD_NOT_ALLOWED", f"{method} is not supported on files.")

    def _directories(self, handler: RequestHandler, method: str, path: str) -> int:
        local = self._volume_path(path)
        if method == "PUT":
            if local.is_file():
                raise ApiError(409, "ALREADY_EXISTS", f"{path} is a file.")
            local.mkdir(parents=True, exist_ok=True)
            handler.respond(204, b"", None)
            return 204
        if not local.is_dir():
            raise not_found(f"Directory {path}")
        if method == "HEAD":
            handler.respond(200, b"", None)
            return 200
        if method == "DELETE":
            if any(local.iterdir()):
                raise ApiError(400, "DIRECTORY_NOT_EMPTY", f"{path} is not empty.")
            local.rmdir()
            handler.respond(204, b"", None)
            return 204
        if method == "GET":
            contents = [
                {
                    "path": f"{path}/{child.name}",
                    "name": child.name,
                    "is_directory": child.is_dir(),
                    "file_size": 0 if child.is_dir() else child.stat().st_size,
                    "last_modified": int(child.stat().st_mtime * 1000),
                }
                for child in sorted(local.iterdir())
            ]
            handler.respond_json(200, {"contents": contents} if contents else {})
            return 200
        raise ApiError(405, "METHOD_NOT_ALLOWED", f"{method} is not supported on directories.")
