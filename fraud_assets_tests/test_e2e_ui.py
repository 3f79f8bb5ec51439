"""End to end: the README's main job on a fresh FRAUD_HOME, then `dagster dev` over its runs.

The pipeline runs once per module through the same command `make demo` runs; the UI is then
driven through its GraphQL API and rendered in headless Chromium.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from fraud_assets import keys
from fraud_assets.lakehouse import LocalDeltaStore
from fraud_assets_tests.test_definitions import EXPECTED_ASSETS

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def demo_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment of a user who just cloned the repository and ran the main job."""
    home = tmp_path_factory.mktemp("e2e") / "fraud_home"
    dagster_home = home / "dagster_home"
    dagster_home.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FRAUD_", "DATABRICKS_"))}
    env.update(
        FRAUD_HOME=str(home),
        DAGSTER_HOME=str(dagster_home),
        PYSPARK_PYTHON=sys.executable,
    )
    completed = subprocess.run(
        [
            str(BIN / "dagster"),
            "job",
            "execute",
            "-m",
            "fraud_assets.definitions",
            "-j",
            "fraud_pipeline",
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout[-4000:] + completed.stderr[-4000:]
    return env


def test_main_job_leaves_every_layer_and_a_champion(demo_env: dict[str, str]) -> None:
    store = LocalDeltaStore(Path(demo_env["FRAUD_HOME"]))
    for table in ("raw_claims", "claims", "claims_quarantine", "claim_features", "fraud_scores"):
        assert store.exists(table), table
    bronze = store.read_arrow("raw_claims").num_rows
    silver = store.read_arrow("claims").num_rows
    quarantined = store.read_arrow("claims_quarantine").num_rows
    assert bronze == silver + quarantined > 0
    for layer in ("bronze", "silver", "gold", "monitoring"):
        assert (Path(demo_env["FRAUD_HOME"]) / layer).is_dir(), layer

    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(f"sqlite:///{demo_env['FRAUD_HOME']}/mlflow.db")
    client = MlflowClient(registry_uri=f"sqlite:///{demo_env['FRAUD_HOME']}/mlflow.db")
    champion = client.get_model_version_by_alias("fraud_detector", "champion")
    assert champion.tags  # the evidence tags of the audit log
    scores = store.read_pandas("fraud_scores")
    assert set(scores["model_version"].astype(str)) == {str(champion.version)}


@pytest.fixture(scope="module")
def dagster_dev(demo_env: dict[str, str]) -> Iterator[str]:
    """`dagster dev` on the workspace, over the instance the main job just wrote to."""
    port = _free_port()
    process = subprocess.Popen(
        [str(BIN / "dagster"), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=REPO_ROOT,
        env=demo_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{url}/server_info", timeout=2).ok and _graphql(
                    url, "{ workspaceOrError { __typename } }"
                ):
                    break
            except requests.ConnectionError:
                pass
            assert process.poll() is None, "dagster dev exited early"
            time.sleep(1)
        else:
            pytest.fail("dagster dev did not answer within 180 s")
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def _graphql(url: str, query: str) -> dict:
    response = requests.post(f"{url}/graphql", json={"query": query}, timeout=30)
    response.raise_for_status()
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


ASSET_QUERY = """
{
  assetNodes {
    assetKey { path }
    groupName
    assetChecksOrError {
      ... on AssetChecks {
        checks { name blocking executionForLatestMaterialization { status } }
      }
    }
  }
}
"""


def _asset_nodes(url: str) -> dict[str, dict]:
    deadline = time.monotonic() + 120
    while True:
        nodes = _graphql(url, ASSET_QUERY)["assetNodes"]
        if nodes or time.monotonic() > deadline:
            return {"/".join(node["assetKey"]["path"]): node for node in nodes}
        time.sleep(2)


def test_ui_shows_the_asset_graph_with_passing_checks(dagster_dev: str) -> None:
    nodes = _asset_nodes(dagster_dev)
    assert set(nodes) == set(EXPECTED_ASSETS)
    statuses: dict[tuple[str, str], str] = {}
    for name, node in nodes.items():
        for check in node["assetChecksOrError"].get("checks", []):
            execution = check["executionForLatestMaterialization"]
            statuses[(name, check["name"])] = execution["status"] if execution else "NONE"
    gates = {
        (asset.to_user_string(), check)
        for asset, checks in keys.PROMOTION_GATES.items()
        for check in checks
    }
    for gate in gates:
        assert statuses[gate] == "SUCCEEDED", (gate, statuses[gate])
    blocking_data_checks = [
        ("claims", keys.CHECK_UNIQUE_CLAIM_ID),
        ("claims", keys.CHECK_RECONCILES),
        ("claim_features", keys.CHECK_FEATURES_COMPLETE),
    ]
    for check in blocking_data_checks:
        assert statuses[check] == "SUCCEEDED", (check, statuses[check])
    # the scored claims come from the distribution the champion was trained on
    assert statuses[("psi_report", keys.CHECK_FEATURE_DRIFT)] == "SUCCEEDED"


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)"
)
def test_asset_graph_renders_in_headless_chromium(dagster_dev: str, tmp_path: Path) -> None:
    assert CHROMIUM is not None
    dom = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=30000",
            "--window-size=1600,1000",
            "--dump-dom",
            f"{dagster_dev}/assets",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    ).stdout
    for name in ("claim_features", "fraud_scores", "registered_model", "psi_report"):
        assert name in dom, f"{name} not rendered in the asset catalog"
