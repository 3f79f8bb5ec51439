"""The compute resource: one call per heavy step, the same entry point in every mode.

- ``base``: the abstract ``FraudCompute``, ``TaskResults``, ``task_extras``, and the retry
  of transient launch failures (``launch_retry_policy``, ``transient_failures_retried``);
- ``local``: ``LocalPipesCompute``, a subprocess per step;
- ``databricks``: ``DatabricksPipesCompute``, a Databricks run per step. It is imported from
  its module, not from here, so local mode never imports dagster-databricks.
"""

from fraud_assets.resources.compute.base import (
    APPROVAL_URL_TAG,
    APPROVED_BY_TAG,
    DEPLOYED_BY_TAG,
    FraudCompute,
    TaskResults,
    launch_retry_policy,
    task_extras,
    transient_failures_retried,
)
from fraud_assets.resources.compute.local import LocalPipesCompute

__all__ = [
    "APPROVAL_URL_TAG",
    "APPROVED_BY_TAG",
    "DEPLOYED_BY_TAG",
    "FraudCompute",
    "LocalPipesCompute",
    "TaskResults",
    "launch_retry_policy",
    "task_extras",
    "transient_failures_retried",
]
