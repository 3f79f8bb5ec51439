"""The Databricks serving endpoint follows the registry's aliases after every move.

Against the loopback emulator's serving-endpoints API: promotion and rollback re-point the
champion, a distinct challenger gets its share, an absent endpoint is a logged skip, and an
endpoint that does not take the update fails the step with both states named.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from databricks.sdk import WorkspaceClient

from fraud_assets.databricks.serving_endpoint import (
    EndpointSyncError,
    default_endpoint_name,
    serving_plan,
    sync_endpoint,
)
from fraud_assets.ml import registry
from fraud_assets.ml.tracking import configure_mlflow, mlflow_client
from fraud_assets.settings import get_settings
from fraud_assets.tasks import promote
from fraud_assets.tasks._runtime import run_task
from fraud_assets_tests.emulator import DatabricksEmulator
from fraud_assets_tests.emulator.fixtures import SENTINEL_TOKEN
from fraud_assets_tests.gold_frames import use_migrated_mlflow_store

pytest_plugins = ["fraud_assets_tests.emulator.fixtures"]

MODEL = "fraud_detector"
ENDPOINT = default_endpoint_name("dev")
CONFIG_PATH = f"/api/2.0/serving-endpoints/{ENDPOINT}/config"


def _entity(name: str, version: str, *, scale_to_zero: bool = True) -> dict[str, Any]:
    return {
        "name": name,
        "entity_name": MODEL,
        "entity_version": version,
        "workload_size": "Small",
        "scale_to_zero_enabled": scale_to_zero,
    }


def _deploy_endpoint(emulator: DatabricksEmulator, version: str) -> None:
    """The endpoint as deploy/serving creates it: champion and an idle challenger."""
    emulator.create_serving_endpoint(
        ENDPOINT,
        {
            "served_entities": [
                _entity("champion", version, scale_to_zero=False),
                _entity("challenger", version),
            ],
            "traffic_config": {
                "routes": [
                    {"served_entity_name": "champion", "traffic_percentage": 100},
                    {"served_entity_name": "challenger", "traffic_percentage": 0},
                ]
            },
        },
    )


def _served(emulator: DatabricksEmulator) -> dict[str, tuple[str, int]]:
    return {
        name: (served.version, served.traffic_percentage)
        for name, served in emulator.served_versions(ENDPOINT).items()
    }


@pytest.fixture
def workspace(emulator: DatabricksEmulator) -> WorkspaceClient:
    return WorkspaceClient(host=emulator.host, token=SENTINEL_TOKEN)


def _sync(workspace: WorkspaceClient, aliases: dict[str, str], **kwargs: Any) -> Any:
    return sync_endpoint(
        workspace,
        endpoint_name=ENDPOINT,
        model_full_name=MODEL,
        aliases=aliases,
        challenger_share=kwargs.pop("challenger_share", 0.1),
        timeout=kwargs.pop("timeout", timedelta(seconds=30)),
    )


def test_a_new_champion_is_served_and_the_entities_keep_their_settings(emulator, workspace):
    _deploy_endpoint(emulator, "1")
    outcome = _sync(workspace, {"champion": "2", "challenger": "2"})
    assert outcome.status == "updated"
    assert _served(emulator) == {"champion": ("2", 100), "challenger": ("2", 0)}
    (update,) = emulator.calls("PUT", CONFIG_PATH)
    sent = pd.json_normalize(json.loads(update.body)["served_entities"])
    assert sent.set_index("name")["scale_to_zero_enabled"].to_dict() == {
        "champion": False,
        "challenger": True,
    }
    assert set(sent["workload_size"]) == {"Small"}


def test_a_distinct_challenger_gets_its_share_and_an_unchanged_plan_sends_nothing(
    emulator, workspace
):
    _deploy_endpoint(emulator, "1")
    _sync(workspace, {"champion": "1", "challenger": "3"}, challenger_share=0.25)
    assert _served(emulator) == {"champion": ("1", 75), "challenger": ("3", 25)}
    again = _sync(workspace, {"champion": "1", "challenger": "3"}, challenger_share=0.25)
    assert again.status == "unchanged"
    assert len(emulator.calls("PUT", CONFIG_PATH)) == 1


def test_no_endpoint_yet_is_a_logged_skip(emulator, workspace, caplog):
    with caplog.at_level(logging.WARNING):
        outcome = _sync(workspace, {"champion": "1"})
    assert outcome.status == "skipped"
    assert f"serving endpoint {ENDPOINT} does not exist yet" in caplog.text
    assert "champion v1 at 100%" in caplog.text
    assert emulator.calls("PUT", "/api/2.0/serving-endpoints") == []


def test_an_update_the_platform_fails_raises_with_both_states(emulator, workspace):
    _deploy_endpoint(emulator, "1")
    emulator.fail_next_endpoint_update(ENDPOINT)
    with pytest.raises(EndpointSyncError) as error:
        _sync(workspace, {"champion": "2"})
    message = str(error.value)
    assert "did not apply champion v2 at 100%" in message
    assert "UPDATE_FAILED" in message
    assert "--action sync" in message
    assert _served(emulator) == {"champion": ("1", 100), "challenger": ("1", 0)}


def test_an_update_the_api_refuses_raises(emulator, workspace):
    _deploy_endpoint(emulator, "1")
    emulator.fail_http(CONFIG_PATH, 400, method="PUT")
    with pytest.raises(EndpointSyncError, match="refused the update to champion v2"):
        _sync(workspace, {"champion": "2"})


def test_an_update_in_flight_is_waited_for_before_the_next(emulator, workspace):
    _deploy_endpoint(emulator, "1")
    emulator.endpoint_update_seconds = 0.5
    assert _sync(workspace, {"champion": "2"}, timeout=None).status == "sent"
    # Without waiting, the second update would be the API's 409.
    assert _sync(workspace, {"champion": "3"}).status == "updated"
    assert _served(emulator) == {"champion": ("3", 100), "challenger": ("3", 0)}


def test_deploy_and_the_sync_share_one_plan():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    import deploy

    assert deploy.serving_plan is serving_plan


# --- the tasks that move aliases, with Databricks compute ---------------------------------


def _gated_versions(count: int) -> list[str]:
    """Registered versions that passed their gates; alias moves never read the artifact."""
    configure_mlflow(get_settings())
    client = mlflow_client()
    client.create_registered_model(MODEL)
    versions = []
    for _ in range(count):
        version = client.create_model_version(MODEL, source="s3://models/fraud_detector/model")
        client.set_model_version_tag(MODEL, version.version, registry.TAG_GATES_PASSED, "true")
        versions.append(str(version.version))
    return versions


@pytest.fixture
def databricks_registry(databricks_env: DatabricksEmulator, fraud_home: Path) -> list[str]:
    """Three gated versions in the local registry; compute is the emulator's workspace."""
    use_migrated_mlflow_store(fraud_home)
    return _gated_versions(3)


def _promote(*args: str) -> dict[str, Any]:
    result = run_task(promote.promote, list(args), name="promote")
    return result.materializations[0].metadata if result.materializations else {}


def test_promotion_and_rollback_re_point_the_endpoint(databricks_env, databricks_registry):
    v1, v2, _ = databricks_registry
    _promote("--action", "promote", "--version", v1)
    _deploy_endpoint(databricks_env, v1)

    promoted = _promote("--action", "promote", "--version", v2)
    assert promoted["serving_endpoint_sync"] == "updated"
    assert _served(databricks_env)["champion"] == (v2, 100)

    rolled = _promote("--action", "rollback")
    assert rolled["champion_version"] == v1
    assert _served(databricks_env)["champion"] == (v1, 100)


def test_a_challenger_alias_is_served_with_its_share(databricks_env, databricks_registry):
    v1, v2, _ = databricks_registry
    _promote("--action", "promote", "--version", v1)
    _deploy_endpoint(databricks_env, v1)
    registry.set_challenger(mlflow_client(), name=MODEL, version=v2)
    _promote("--action", "sync")
    assert _served(databricks_env) == {"champion": (v1, 90), "challenger": (v2, 10)}


def test_a_promotion_before_the_first_endpoint_deploy_moves_the_alias(
    databricks_env, databricks_registry, caplog
):
    v1, *_ = databricks_registry
    with caplog.at_level(logging.WARNING):
        metadata = _promote("--action", "promote", "--version", v1)
    assert str(registry.champion_version(mlflow_client(), MODEL).version) == v1
    assert metadata["serving_endpoint_sync"] == "skipped"
    assert "does not exist yet" in caplog.text


def test_a_failed_sync_fails_the_step_and_keeps_the_alias(
    databricks_env, databricks_registry, capsys
):
    v1, v2, _ = databricks_registry
    _promote("--action", "promote", "--version", v1)
    _deploy_endpoint(databricks_env, v1)
    databricks_env.fail_next_endpoint_update(ENDPOINT)
    with pytest.raises(SystemExit) as exited:
        promote.main(["--action", "promote", "--version", v2])
    assert "did not apply champion v2" in str(exited.value.code)
    # The registry is the source of truth: the alias stays, the endpoint is named behind.
    assert str(registry.champion_version(mlflow_client(), MODEL).version) == v2
    assert _served(databricks_env)["champion"] == (v1, 100)
    _promote("--action", "sync")
    assert _served(databricks_env)["champion"] == (v2, 100)


def test_local_compute_calls_no_endpoint(fraud_home, emulator, monkeypatch):
    use_migrated_mlflow_store(fraud_home)
    (version,) = _gated_versions(1)
    monkeypatch.setenv("DATABRICKS_HOST", emulator.host)
    monkeypatch.setenv("DATABRICKS_TOKEN", SENTINEL_TOKEN)
    metadata = _promote("--action", "promote", "--version", version)
    assert "serving_endpoint_sync" not in metadata
    assert emulator.requests == []


def test_an_update_in_flight_that_fails_is_followed_by_ours(emulator, workspace):
    _deploy_endpoint(emulator, "1")
    emulator.endpoint_update_seconds = 0.5
    emulator.fail_next_endpoint_update(ENDPOINT)
    assert _sync(workspace, {"champion": "2"}, timeout=None).status == "sent"
    assert _sync(workspace, {"champion": "3"}).status == "updated"
    assert _served(emulator)["champion"] == ("3", 100)


def test_an_update_in_flight_to_the_same_plan_is_not_sent_twice(emulator, workspace):
    _deploy_endpoint(emulator, "1")
    emulator.endpoint_update_seconds = 0.5
    _sync(workspace, {"champion": "2"}, timeout=None)
    assert _sync(workspace, {"champion": "2"}).status == "unchanged"
    assert len(emulator.calls("PUT", CONFIG_PATH)) == 1


def test_the_emulated_endpoint_refuses_what_the_platform_refuses(emulator, workspace):
    from databricks.sdk.errors import InvalidParameterValue, ResourceConflict
    from databricks.sdk.service.serving import Route, ServedEntityInput, TrafficConfig

    _deploy_endpoint(emulator, "1")
    entities = [
        ServedEntityInput(name=n, entity_name=MODEL, entity_version="2")
        for n in ("champion", "challenger")
    ]
    half = TrafficConfig(routes=[Route(served_entity_name="champion", traffic_percentage=50)])
    with pytest.raises(InvalidParameterValue, match="add up to 100"):
        workspace.serving_endpoints.update_config(
            ENDPOINT, served_entities=entities, traffic_config=half
        )
    emulator.endpoint_update_seconds = 5
    full = TrafficConfig(routes=[Route(served_entity_name="champion", traffic_percentage=100)])
    workspace.serving_endpoints.update_config(
        ENDPOINT, served_entities=entities, traffic_config=full
    )
    with pytest.raises(ResourceConflict, match="currently being updated"):
        workspace.serving_endpoints.update_config(
            ENDPOINT, served_entities=entities, traffic_config=full
        )
    assert _served(emulator)["champion"] == ("1", 100), "nothing applied before it is due"
