"""Retries for every Databricks REST call, including the DBFS and Files calls Pipes makes.

The SDK retries 429 and 503 answers itself (sleeping for ``Retry-After``, up to
``retry_timeout_seconds``) and connection errors, but not 500, 502 or 504. Those are retried
here, at the HTTP layer under the SDK, so the Jobs calls and the DBFS/Files calls that
dagster-databricks makes through the same client are all covered.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

if TYPE_CHECKING:
    from databricks.sdk import WorkspaceClient

SERVER_ERRORS = frozenset({500, 502, 504})


def server_error_retry(*, attempts: int, backoff_factor: float = 1.0) -> Retry:
    """urllib3's retry policy for 500/502/504: exponential backoff with jitter, any method.

    Every method is retried because the calls are idempotent: runs/submit and run-now carry an
    idempotency token, DBFS put and Files upload overwrite, deletes and mkdirs are repeatable.
    urllib3 rewinds a seekable request body before each retry.
    """
    return Retry(
        total=attempts,
        connect=0,
        read=0,
        redirect=0,
        status=attempts,
        other=0,
        status_forcelist=SERVER_ERRORS,
        allowed_methods=None,
        backoff_factor=backoff_factor,
        backoff_jitter=0.5,
        respect_retry_after_header=True,
        # The last 5xx answer goes back to the SDK, which turns it into its usual error.
        raise_on_status=False,
    )


def retry_server_errors(
    client: WorkspaceClient, *, attempts: int, backoff_factor: float = 1.0
) -> None:
    """Mount the 5xx retry policy on the client's HTTP session (https and loopback http)."""
    # The SDK has no public hook for its requests.Session; fail loudly if that ever moves.
    session = getattr(getattr(client.api_client, "_api_client", None), "_session", None)
    if not isinstance(session, requests.Session):
        raise RuntimeError(
            "databricks-sdk no longer exposes its HTTP session where fraud_assets expects it; "
            "5xx answers would not be retried. Pin databricks-sdk<0.61 or update "
            "fraud_assets.databricks.http."
        )
    adapter = HTTPAdapter(
        max_retries=server_error_retry(attempts=attempts, backoff_factor=backoff_factor),
        pool_connections=20,
        pool_maxsize=20,
        pool_block=True,
    )
    session.mount("https://", adapter)
    session.mount("http://", adapter)
