"""Model Serving endpoints in the emulator: create, get and update_config, with their states.

An endpoint keeps its live ``config`` and, while an update is applied, ``pending_config`` with
``state.config_update`` IN_PROGRESS, as the platform does: a second update meanwhile is 409,
and a failed update leaves the live config as it was with UPDATE_FAILED. Updates apply after
``endpoint_update_seconds`` (0: at the next read); ``fail_next_endpoint_update`` makes the
next one fail. :meth:`ServingEndpointsApi.served_versions` reads what an endpoint serves.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fraud_assets_tests.emulator.core import ApiError, not_found

if TYPE_CHECKING:
    import threading

SERVING_PATH = "/api/2.0/serving-endpoints"


@dataclass
class EmulatedEndpoint:
    name: str
    config: dict[str, Any]
    config_version: int = 1
    pending: dict[str, Any] | None = None
    apply_at: float = 0.0
    fail_pending: bool = False
    config_update: str = "NOT_UPDATING"


@dataclass(frozen=True)
class ServedVersion:
    """One served entity as callers reach it: the version and its share of traffic."""

    entity_name: str
    version: str
    traffic_percentage: int


class ServingEndpointsApi:
    """The serving-endpoints endpoints; mixed into ``DatabricksEmulator``."""

    _lock: threading.RLock
    _endpoints: dict[str, EmulatedEndpoint]
    _endpoint_update_failures: list[str]
    endpoint_update_seconds: float

    # ------------------------------------------------------------------ test controls

    def create_serving_endpoint(self, name: str, config: dict[str, Any]) -> None:
        """Create an endpoint as ``databricks bundle deploy`` of deploy/serving would."""
        with self._lock:
            if name in self._endpoints:
                raise ApiError(409, "RESOURCE_ALREADY_EXISTS", f"Endpoint {name} exists.")
            self._endpoints[name] = EmulatedEndpoint(name, _checked_config(name, config))

    def fail_next_endpoint_update(self, name: str) -> None:
        """The next update of ``name`` is accepted, then fails while it is applied."""
        with self._lock:
            self._endpoint_update_failures.append(name)

    def served_versions(self, name: str) -> dict[str, ServedVersion]:
        """What endpoint ``name`` serves now, per served entity name (pending updates applied
        when due)."""
        with self._lock:
            endpoint = self._endpoint(name)
            routes = {
                r["served_entity_name"]: int(r["traffic_percentage"])
                for r in endpoint.config["traffic_config"]["routes"]
            }
            return {
                e["name"]: ServedVersion(
                    e["entity_name"], str(e["entity_version"]), routes.get(e["name"], 0)
                )
                for e in endpoint.config["served_entities"]
            }

    # ------------------------------------------------------------------ HTTP

    def _serving(self, method: str, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        rest = path[len(SERVING_PATH) :].strip("/")
        name, _, tail = rest.partition("/")
        if method == "POST" and not rest:
            self.create_serving_endpoint(str(payload.get("name")), payload.get("config") or {})
            return self._detailed(str(payload.get("name")))
        if method == "GET" and name and not tail:
            return self._detailed(name)
        if method == "PUT" and name and tail == "config":
            return self._update_config(name, payload)
        raise ApiError(404, "ENDPOINT_NOT_FOUND", f"No API found for '{method} {path}'")

    def _endpoint(self, name: str) -> EmulatedEndpoint:
        endpoint = self._endpoints.get(name)
        if endpoint is None:
            raise not_found(f"Serving endpoint {name}")
        if endpoint.pending is not None and time.monotonic() >= endpoint.apply_at:
            if endpoint.fail_pending:
                endpoint.config_update = "UPDATE_FAILED"
            else:
                endpoint.config = endpoint.pending
                endpoint.config_version += 1
                endpoint.config_update = "NOT_UPDATING"
            endpoint.pending = None
        return endpoint

    def _update_config(self, name: str, payload: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            endpoint = self._endpoint(name)
            if endpoint.config_update == "IN_PROGRESS":
                raise ApiError(
                    409,
                    "RESOURCE_CONFLICT",
                    f"Endpoint {name} is currently being updated. Please wait for the "
                    "update to finish before sending another one.",
                )
            endpoint.pending = _checked_config(name, payload)
            endpoint.fail_pending = name in self._endpoint_update_failures
            if endpoint.fail_pending:
                self._endpoint_update_failures.remove(name)
            endpoint.apply_at = time.monotonic() + self.endpoint_update_seconds
            endpoint.config_update = "IN_PROGRESS"
        return self._detailed(name)

    def _detailed(self, name: str) -> dict[str, Any]:
        with self._lock:
            endpoint = self._endpoint(name)
            answer: dict[str, Any] = {
                "name": name,
                "id": f"emu-{name}",
                "config": _output(endpoint.config, endpoint.config_version),
                "state": {"ready": "READY", "config_update": endpoint.config_update},
            }
            if endpoint.pending is not None:
                answer["pending_config"] = _output(endpoint.pending, endpoint.config_version + 1)
            return answer


def _checked_config(name: str, config: dict[str, Any]) -> dict[str, Any]:
    """The config as the API would accept it, or the API's 400."""
    entities = config.get("served_entities") or []
    routes = (config.get("traffic_config") or {}).get("routes") or []
    names = [e.get("name") for e in entities]
    for entity in entities:
        if not entity.get("name") or not entity.get("entity_name"):
            raise _invalid(f"{name}: every served entity needs a name and an entity_name")
        if not entity.get("entity_version"):
            raise _invalid(f"{name}: served entity {entity['name']} names no entity_version")
    if not entities or len(set(names)) != len(names):
        raise _invalid(f"{name}: served entity names must be present and unique: {names}")
    if any(r.get("served_entity_name") not in names for r in routes):
        raise _invalid(f"{name}: a route names a served entity the config lacks")
    if sum(int(r.get("traffic_percentage") or 0) for r in routes) != 100:
        raise _invalid(f"{name}: traffic percentages must add up to 100")
    return copy.deepcopy({"served_entities": entities, "traffic_config": {"routes": routes}})


def _invalid(message: str) -> ApiError:
    return ApiError(400, "INVALID_PARAMETER_VALUE", message)


def _output(config: dict[str, Any], version: int) -> dict[str, Any]:
    entities = [
        {**e, "state": {"deployment": "DEPLOYMENT_READY"}} for e in config["served_entities"]
    ]
    return {**copy.deepcopy(config), "served_entities": entities, "config_version": version}
