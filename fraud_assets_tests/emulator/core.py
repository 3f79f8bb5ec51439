"""What every API area of the emulator shares: errors, recorded requests, faults, constants."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

RunFault = Literal["hang", "cancel_externally", "internal_error"]
FUSE_ROOT_VAR = "FRAUD_DATABRICKS_FUSE_ROOT"
PACKAGE_NAME = "fraud_assets"
USER_NAME = "emulator@example.com"
# The workspace's one cluster policy, named as the bundle looks it up ("Job Compute").
CLUSTER_POLICY_ID = "E0123456789ABCDE"
MAX_DBFS_READ = 1024 * 1024
MAX_LOG_BYTES = 1024 * 1024
TERMINAL = {"TERMINATED", "SKIPPED", "INTERNAL_ERROR"}
JOBS_PATH = r"/api/2\.[12]/jobs"


class ApiError(Exception):
    """An error answer in the Databricks format."""

    def __init__(self, status: int, error_code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message


def not_found(what: str) -> ApiError:
    return ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"{what} does not exist.")


@dataclass
class HttpFault:
    """Answer the next ``times`` matching requests with ``status`` instead of serving them."""

    path: str
    status: int
    times: int
    method: str | None = None
    retry_after: int | None = None
    body: str | None = None
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        return (
            self.hits < self.times
            and path.startswith(self.path)
            and (self.method is None or self.method == method)
        )


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    status: int = 0


def now_ms() -> int:
    return int(time.time() * 1000)
