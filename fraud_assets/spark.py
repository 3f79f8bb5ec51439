"""The SparkSession for task code: the cluster's on Databricks, a small local one elsewhere."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from fraud_assets.settings import FraudSettings, get_settings, on_databricks_runtime

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def get_spark(
    app_name: str = "fraud_assets", *, settings: FraudSettings | None = None
) -> SparkSession:
    """Return the active session, creating a local one tuned for a laptop when needed.

    ``settings`` size the local session (``FRAUD_SPARK_MASTER``, ``FRAUD_SPARK_DRIVER_MEMORY``);
    without them they are read from the environment.
    """
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    if on_databricks_runtime():
        return SparkSession.builder.getOrCreate()
    settings = settings or get_settings()
    # Spark's Python workers otherwise pick the system interpreter, not this venv's.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    return (
        SparkSession.builder.master(settings.spark_master)
        .appName(app_name)
        .config("spark.driver.memory", settings.spark_driver_memory)
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
