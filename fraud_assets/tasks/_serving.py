"""Re-point the Databricks serving endpoint after a task moved the registry's aliases.

Called by ``register`` (gated promotion) and ``promote`` (promote, rollback, sync) once the
alias lock is released. Only when compute is Databricks: locally there is no endpoint, and
the scoring service (``fraud_assets.serving``) polls the aliases itself.
"""

from __future__ import annotations

from datetime import timedelta

from mlflow import MlflowClient

from fraud_assets.databricks.serving_endpoint import (
    SyncOutcome,
    default_endpoint_name,
    runtime_workspace_client,
    sync_endpoint,
)
from fraud_assets.ml import registry
from fraud_assets.settings import FraudSettings


def registry_aliases(client: MlflowClient, name: str) -> dict[str, str]:
    """``{alias: version}`` of the champion and challenger, as the registry says now."""
    aliases = {}
    for alias in (registry.CHAMPION, registry.CHALLENGER):
        version = registry.alias_version(client, name, alias)
        if version is not None:
            aliases[alias] = str(version.version)
    return aliases


def endpoint_name(settings: FraudSettings) -> str:
    return settings.serving.endpoint_name or default_endpoint_name(settings.target)


def sync_serving_endpoint(settings: FraudSettings, client: MlflowClient) -> SyncOutcome | None:
    """Bring the endpoint to the aliases read now; ``None`` when compute is local.

    Raises ``EndpointSyncError`` when the endpoint does not take them: the aliases stay
    where they are (the registry is the source of truth) and the step fails, naming both.
    """
    if settings.compute != "databricks":
        return None
    name = settings.registered_model_name
    wait = settings.serving.endpoint_update_timeout_seconds
    return sync_endpoint(
        runtime_workspace_client(settings.databricks),
        endpoint_name=endpoint_name(settings),
        model_full_name=name,
        aliases=registry_aliases(client, name),
        challenger_share=settings.serving.challenger_traffic,
        timeout=timedelta(seconds=wait) if wait > 0 else None,
    )
