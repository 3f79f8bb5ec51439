"""The SparkSession for task code: the cluster's on Databricks, a small local one elsewhere."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from fraud_assets.settings import FraudSettings, get_settings, on_databricks_runtime

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

# Spark's own variable: a SparkSession builder connects to this URL instead of starting Spark.
SPARK_REMOTE = "SPARK_REMOTE"


def session_confs(settings: FraudSettings) -> dict[str, str]:
    """The SQL settings of every local session, its own or a shared server's."""
    return {
        "spark.sql.shuffle.partitions": "4",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
    }


def get_spark(
    app_name: str = "fraud_assets", *, settings: FraudSettings | None = None
) -> SparkSession:
    """Return the active session, creating a local one tuned for a laptop when needed.

    With ``SPARK_REMOTE`` set (a local run's shared server, ``fraud_assets.local.spark_server``)
    it is a Spark Connect session to that server instead. ``settings`` size the local session
    (``FRAUD_SPARK_MASTER``, ``FRAUD_SPARK_DRIVER_MEMORY``); without them they are read from
    the environment.
    """
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    if on_databricks_runtime():
        return SparkSession.builder.getOrCreate()
    settings = settings or get_settings()
    remote = os.environ.get(SPARK_REMOTE)
    if remote:
        # A local run's shared Spark Connect server (fraud_assets.local.spark_server).
        builder = SparkSession.builder.remote(remote)
        for key, value in session_confs(settings).items():
            builder = builder.config(key, value)
        return builder.getOrCreate()
    # Spark's Python workers otherwise pick the system interpreter, not this venv's.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = (
        SparkSession.builder.master(settings.spark_master)
        .appName(app_name)
        .config("spark.driver.memory", settings.spark_driver_memory)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
    )
    for key, value in session_confs(settings).items():
        builder = builder.config(key, value)
    return builder.getOrCreate()
