"""Keep the Databricks serving endpoint on the versions the registry's aliases name.

The registry is the source of truth: ``champion`` and ``challenger`` move first (by
``register``'s gated promotion, or ``promote``'s promote and rollback), then
:func:`sync_endpoint` re-points the endpoint of ``deploy/serving`` with
``serving_endpoints.update_config``. The same :func:`serving_plan` gives
``scripts/deploy.py`` its serving bundle variables, so a deploy and a promotion agree on what
the endpoint should serve.

- No endpoint yet (the first deploy creates it once a champion exists): the sync is skipped
  with a warning, and the alias move stands.
- An update in flight is waited for before a new one is sent (the API refuses a second).
- After ``update_config`` the sync waits until the endpoint has applied it, up to
  ``timeout``; an update the platform fails or cancels, or one not applied in time, raises
  :class:`EndpointSyncError` naming the aliases and what the endpoint serves, so the step
  fails loudly instead of leaving serving behind the registry. ``timeout=None`` only sends it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.service.serving import (
        EndpointCoreConfigOutput,
        EndpointPendingConfig,
        ServingEndpointDetailed,
    )

    from fraud_assets.settings import DatabricksSettings

log = logging.getLogger(__name__)

# The served entity names of deploy/serving/databricks.yml; routes refer to them.
CHAMPION_ENTITY = "champion"
CHALLENGER_ENTITY = "challenger"
ENTITIES = (CHAMPION_ENTITY, CHALLENGER_ENTITY)
# deploy/serving/databricks.yml names the endpoint ${var.endpoint_name}-${bundle.target}.
DEFAULT_ENDPOINT_PREFIX = "fraud-detector"
RETRY_HINT = (
    "re-point it with `python -m fraud_assets.tasks.promote --action sync` (the promotion "
    "job with action=sync) or `python scripts/deploy.py --target <target> --only serving`"
)

SyncStatus = Literal["updated", "sent", "unchanged", "skipped"]


class EndpointSyncError(RuntimeError):
    """The endpoint could not be brought to the aliases; the message names both states."""


@dataclass(frozen=True)
class ServingPlan:
    """What the endpoint serves: versions behind the aliases and the challenger's share."""

    champion_version: str
    challenger_version: str
    challenger_traffic_percentage: int

    @property
    def champion_traffic_percentage(self) -> int:
        return 100 - self.challenger_traffic_percentage

    def describe(self) -> str:
        return (
            f"champion v{self.champion_version} at {self.champion_traffic_percentage}%, "
            f"challenger v{self.challenger_version} at {self.challenger_traffic_percentage}%"
        )


@dataclass(frozen=True)
class SyncOutcome:
    """What one sync did; ``serving`` is the endpoint's configuration when it was read."""

    endpoint_name: str
    status: SyncStatus
    message: str
    plan: ServingPlan | None = None
    serving: ServingPlan | None = None

    def metadata(self) -> dict[str, str]:
        """Plain metadata for the step that moved the aliases."""
        return {
            "serving_endpoint": self.endpoint_name,
            "serving_endpoint_sync": self.status,
            "serving_endpoint_detail": self.message,
        }


def serving_plan(aliases: Mapping[str, str], *, challenger_share: float) -> ServingPlan | None:
    """The endpoint's entities and split, or ``None`` while no version is champion."""
    champion = aliases.get("champion")
    if champion is None:
        return None
    challenger = aliases.get("challenger")
    if challenger is None or challenger == champion:
        # Same version twice, no traffic to the second: it scales to zero and costs nothing.
        return ServingPlan(champion, champion, 0)
    share = round(min(max(challenger_share, 0.0), 1.0) * 100)
    return ServingPlan(champion, challenger, share)


def default_endpoint_name(target: str) -> str:
    """The serving bundle's endpoint name for ``target`` (production-mode targets).

    A development-mode deploy (dev) prefixes it with the deploying user, so dev names the
    endpoint with ``FRAUD_SERVING__ENDPOINT_NAME``.
    """
    return f"{DEFAULT_ENDPOINT_PREFIX}-{target}"


def runtime_workspace_client(settings: DatabricksSettings) -> WorkspaceClient:
    """A client for the workspace this step runs in, with the project's API retries.

    On a cluster the SDK authenticates as the run's identity (runtime auth); elsewhere it
    reads the standard ``DATABRICKS_*`` variables or profile.
    """
    from fraud_assets.databricks.credentials import workspace_client

    return workspace_client(None, settings)


def served_plan(
    config: EndpointCoreConfigOutput | EndpointPendingConfig | None, *, model_full_name: str
) -> ServingPlan | None:
    """The plan a configuration carries out, or ``None`` when it serves anything else."""
    if config is None:
        return None
    entities = {e.name: e for e in config.served_entities or []}
    routes = {
        r.served_entity_name or r.served_model_name: r.traffic_percentage or 0
        for r in (config.traffic_config.routes if config.traffic_config else None) or []
    }
    champion, challenger = (entities.get(name) for name in ENTITIES)
    if champion is None or challenger is None or set(entities) != set(ENTITIES):
        return None
    if {champion.entity_name, challenger.entity_name} != {model_full_name}:
        return None
    if routes.get(CHAMPION_ENTITY, 0) + routes.get(CHALLENGER_ENTITY, 0) != 100:
        return None
    return ServingPlan(
        str(champion.entity_version),
        str(challenger.entity_version),
        int(routes.get(CHALLENGER_ENTITY, 0)),
    )


def sync_endpoint(
    client: WorkspaceClient,
    *,
    endpoint_name: str,
    model_full_name: str,
    aliases: Mapping[str, str],
    challenger_share: float,
    timeout: timedelta | None,
) -> SyncOutcome:
    """Point ``endpoint_name`` at the versions ``aliases`` names, if it serves anything else.

    Raises:
        EndpointSyncError: the update was refused, failed, or not applied within ``timeout``.
    """
    from databricks.sdk.errors import NotFound
    from databricks.sdk.service.serving import EndpointStateConfigUpdate

    plan = serving_plan(aliases, challenger_share=challenger_share)
    if plan is None:
        message = f"{model_full_name} has no champion: endpoint {endpoint_name} left as it is"
        log.warning(message)
        return SyncOutcome(endpoint_name, "skipped", message)
    try:
        endpoint = client.serving_endpoints.get(endpoint_name)
    except NotFound:
        message = (
            f"serving endpoint {endpoint_name} does not exist yet, so it was not re-pointed; "
            f"the registry now says {plan.describe()}. The serving step of "
            "`scripts/deploy.py` creates it (set FRAUD_SERVING__ENDPOINT_NAME if the "
            "endpoint has another name)"
        )
        log.warning(message)
        return SyncOutcome(endpoint_name, "skipped", message, plan=plan)
    in_flight = EndpointStateConfigUpdate.IN_PROGRESS
    if endpoint.state is not None and endpoint.state.config_update == in_flight:
        # The API refuses a second update meanwhile. Whether that one succeeds or fails,
        # what the endpoint serves afterwards is compared with the plan below.
        log.info("endpoint %s is applying an update; waiting for it first", endpoint_name)
        endpoint = _settled(client, endpoint_name, plan, timeout or timedelta(minutes=20))
    serving = served_plan(endpoint.config, model_full_name=model_full_name)
    if serving == plan:
        message = f"endpoint {endpoint_name} already serves {plan.describe()}"
        log.info(message)
        return SyncOutcome(endpoint_name, "unchanged", message, plan=plan, serving=serving)
    _update(client, endpoint, plan, model_full_name=model_full_name)
    before = serving.describe() if serving is not None else "another configuration"
    if timeout is None:
        message = f"endpoint {endpoint_name}: update to {plan.describe()} sent (was {before})"
        log.info(message)
        return SyncOutcome(endpoint_name, "sent", message, plan=plan, serving=serving)
    _wait(client, endpoint_name, plan, timeout)
    message = f"endpoint {endpoint_name} now serves {plan.describe()} (was {before})"
    log.info(message)
    return SyncOutcome(endpoint_name, "updated", message, plan=plan, serving=serving)


def _update(
    client: WorkspaceClient,
    endpoint: ServingEndpointDetailed,
    plan: ServingPlan,
    *,
    model_full_name: str,
) -> None:
    from databricks.sdk.errors import DatabricksError
    from databricks.sdk.service.serving import (
        Route,
        ServedEntityInput,
        TrafficConfig,
    )

    name = str(endpoint.name)
    config = endpoint.config
    current = {e.name: e for e in (config.served_entities if config else None) or []}
    missing = [entity for entity in ENTITIES if entity not in current]
    if missing:
        raise EndpointSyncError(
            f"serving endpoint {name} has no served entity named {missing} (it has "
            f"{sorted(str(n) for n in current)}): it was not deployed from deploy/serving; "
            f"the registry says {plan.describe()}"
        )
    versions = {CHAMPION_ENTITY: plan.champion_version, CHALLENGER_ENTITY: plan.challenger_version}
    accepted = set(ServedEntityInput.__dataclass_fields__)
    entities = []
    for entity in ENTITIES:
        # Keep each entity's size, scale-to-zero and environment; change only what it serves.
        kept = {k: v for k, v in current[entity].as_dict().items() if k in accepted}
        kept |= {"name": entity, "entity_name": model_full_name, "entity_version": versions[entity]}
        entities.append(ServedEntityInput.from_dict(kept))
    routes = [
        Route(
            served_entity_name=CHAMPION_ENTITY,
            traffic_percentage=plan.champion_traffic_percentage,
        ),
        Route(
            served_entity_name=CHALLENGER_ENTITY,
            traffic_percentage=plan.challenger_traffic_percentage,
        ),
    ]
    try:
        client.serving_endpoints.update_config(
            name, served_entities=entities, traffic_config=TrafficConfig(routes=routes)
        )
    except DatabricksError as exc:
        raise EndpointSyncError(
            f"serving endpoint {name} refused the update to {plan.describe()}: {exc}. "
            f"The registry's aliases stand; {RETRY_HINT}"
        ) from exc


def _settled(
    client: WorkspaceClient, name: str, plan: ServingPlan, timeout: timedelta
) -> ServingEndpointDetailed:
    """The endpoint once no update is in flight, however the one in flight ended."""
    from databricks.sdk.errors import OperationFailed

    try:
        return _wait(client, name, plan, timeout)
    except EndpointSyncError as exc:
        if isinstance(exc.__cause__, OperationFailed):
            return client.serving_endpoints.get(name)
        raise


def _wait(
    client: WorkspaceClient, name: str, plan: ServingPlan, timeout: timedelta
) -> ServingEndpointDetailed:
    from databricks.sdk.errors import OperationFailed

    try:
        return client.serving_endpoints.wait_get_serving_endpoint_not_updating(
            name, timeout=timeout
        )
    except (OperationFailed, TimeoutError) as exc:
        raise EndpointSyncError(
            f"serving endpoint {name} did not apply {plan.describe()}: {exc}. It keeps "
            f"serving its previous configuration while the registry's aliases have moved; "
            f"{RETRY_HINT}"
        ) from exc
