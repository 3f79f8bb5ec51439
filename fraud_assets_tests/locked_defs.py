"""A one-step job on the project's executor, for the run-lock tests."""

import os
import time
from pathlib import Path

from dagster import AssetExecutionContext, Definitions, asset, define_asset_job

from fraud_assets.executor import fraud_home_executor

# No `from __future__ import annotations`: Dagster inspects the context annotation at runtime.


@asset
def marker(context: AssetExecutionContext) -> None:
    """Record when the step ran, in the file the test names."""
    Path(os.environ["LOCKED_DEFS_MARKER"]).write_text(f"{time.time()}\n", encoding="utf-8")
    context.log.info("marker written")


marker_job = define_asset_job("marker_job", selection=[marker], executor_def=fraud_home_executor)

defs = Definitions(assets=[marker], jobs=[marker_job])
