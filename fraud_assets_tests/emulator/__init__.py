"""A loopback Databricks workspace for tests, and what Databricks-mode tests need around it.

- ``server``: ``DatabricksEmulator``, the HTTP server, its test controls and routing;
- ``jobs``, ``dbfs``, ``files``: the Jobs 2.2, DBFS 2.0 and Files 2.0 (Volumes) API areas;
- ``core``: errors, recorded requests, HTTP faults and constants they share;
- ``fixtures``: pytest fixtures (a running emulator, the environment that targets it);
- ``bundle``: the bundle's jobs deployed into the emulator;
- ``probe`` and ``probe_job``: a small workload and the Dagster job that launches it.
"""

from fraud_assets_tests.emulator.core import USER_NAME, HttpFault, RecordedRequest, RunFault
from fraud_assets_tests.emulator.jobs import EmulatedRun, EmulatedTask
from fraud_assets_tests.emulator.server import DatabricksEmulator

__all__ = [
    "USER_NAME",
    "DatabricksEmulator",
    "EmulatedRun",
    "EmulatedTask",
    "HttpFault",
    "RecordedRequest",
    "RunFault",
]
