"""Local compute: each heavy step runs as a subprocess of the Dagster step."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

from dagster import AssetExecutionContext, OpExecutionContext, PipesSubprocessClient

from fraud_assets.resources.compute.base import (
    FraudCompute,
    TaskResults,
    task_extras,
    transient_failures_retried,
)
from fraud_assets.settings import get_settings
from fraud_assets.tasks import task_spec


class LocalPipesCompute(FraudCompute):
    """Runs each step as a local subprocess through ``PipesSubprocessClient``."""

    def run_task(
        self,
        *,
        context: AssetExecutionContext | OpExecutionContext,
        task: str,
        params: Mapping[str, Any] | None = None,
    ) -> TaskResults:
        spec = task_spec(task)
        settings = get_settings()
        env = {
            # Spark's Python workers must use this interpreter, not the system one.
            "PYSPARK_PYTHON": os.environ.get("PYSPARK_PYTHON", sys.executable),
            "FRAUD_HOME": str(settings.fraud_home),
        }
        # A subprocess on this machine has no transient launch failure: nothing is retried.
        with transient_failures_retried():
            invocation = PipesSubprocessClient(env=env).run(
                context=context,
                command=[sys.executable, "-m", spec.module],
                extras=task_extras(context, settings, params),
            )
        return list(invocation.get_results())
