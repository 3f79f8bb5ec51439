"""The resources a deployment gets, chosen from its settings (no import of either compute's
module unless it is the one chosen)."""

from __future__ import annotations

from typing import Any

from fraud_assets.resources.alerts import default_alerts
from fraud_assets.resources.compute import FraudCompute, LocalPipesCompute
from fraud_assets.resources.workspace import DatabricksWorkspace
from fraud_assets.settings import FraudSettings


def default_compute(settings: FraudSettings, workspace: DatabricksWorkspace) -> FraudCompute:
    """Databricks compute on ``workspace`` when ``FRAUD_COMPUTE=databricks``, else local."""
    if settings.compute == "databricks":
        from fraud_assets.resources.compute.databricks import DatabricksPipesCompute

        return DatabricksPipesCompute.from_settings(settings, workspace)
    return LocalPipesCompute()


def default_resources(settings: FraudSettings) -> dict[str, Any]:
    """Compute, alerts and the Databricks workspace that compute and sensors share."""
    workspace = DatabricksWorkspace.from_env()
    return {
        "compute": default_compute(settings, workspace),
        "alerts": default_alerts(),
        "databricks": workspace,
    }
