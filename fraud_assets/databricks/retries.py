"""Which launch failures are transient: worth launching the step again, unchanged.

Plain code with no Dagster imports; ``fraud_assets.resources.compute`` turns the verdict
into Dagster's retry behaviour.
"""

from __future__ import annotations

import requests
from databricks.sdk.errors import (
    DeadlineExceeded,
    InternalError,
    RequestLimitExceeded,
    TemporarilyUnavailable,
    TooManyRequests,
)

from fraud_assets.databricks.runs import DatabricksRunFailed

# 5xx, 429 and rate limits that outlasted the HTTP layer's own retries (databricks/http.py).
TRANSIENT_API_ERRORS = (
    InternalError,
    TemporarilyUnavailable,
    DeadlineExceeded,
    TooManyRequests,
    RequestLimitExceeded,
)


def is_transient_launch_failure(error: BaseException) -> bool:
    """True for a failure of the platform around the task, never for the task's own failure.

    Transient: a Databricks API answer 5xx or 429, a dropped connection or read timeout, and
    a run the platform ended ``INTERNAL_ERROR`` (its cluster failed to start). Everything
    else (a task that raised, a refused input, a timed-out or cancelled run, a bad launch
    spec) would fail the same way again.
    """
    if isinstance(error, TRANSIENT_API_ERRORS):
        return True
    if isinstance(error, requests.ConnectionError | requests.Timeout):
        return True
    return isinstance(error, DatabricksRunFailed) and error.platform_failure
