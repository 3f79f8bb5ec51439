"""The SparkSession for task code: the cluster's on Databricks, a small local one elsewhere."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def get_spark(app_name: str = "fraud_assets") -> SparkSession:
    """Return the active session, creating a local one tuned for a laptop when needed."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    if "DATABRICKS_RUNTIME_VERSION" in os.environ:
        return SparkSession.builder.getOrCreate()
    # Spark's Python workers otherwise pick the system interpreter, not this venv's.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    return (
        SparkSession.builder.master(os.environ.get("FRAUD_SPARK_MASTER", "local[2]"))
        .appName(app_name)
        .config("spark.driver.memory", os.environ.get("FRAUD_SPARK_DRIVER_MEMORY", "4g"))
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
