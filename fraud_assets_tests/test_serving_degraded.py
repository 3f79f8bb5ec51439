"""Serving with a registry that is not all healthy: ungated challengers and broken versions.

The module's registry holds four versions: 1 and 2 passed every gate, 3 passed them but its
artifact is corrupt, 4 failed the fairness gate (``gates_passed=false``). Each test sets
the aliases it needs first; the registry poll is off, so aliases apply on start and on
``POST /reload``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from fraud_assets.ml import registry
from fraud_assets.ml.tracking import configure_mlflow, mlflow_client
from fraud_assets.serving.app import create_app
from fraud_assets.serving.models import error_summary
from fraud_assets.settings import FraudSettings
from fraud_assets_tests.serving_support import (
    free_port,
    gold_frame,
    inference_log,
    pyfunc_scores,
    records,
    register_version,
    serving_settings,
    set_alias,
    settings_at,
    with_empty_registry,
)

BROKEN = "3"
UNGATED = "4"


def tag_gates(settings: FraudSettings, version: str, *, passed: bool) -> None:
    configure_mlflow(settings)
    registry.tag_version(
        mlflow_client(),
        settings.registered_model_name,
        version,
        {registry.TAG_GATES_PASSED: str(passed).lower()},
    )


def corrupt_artifact(settings: FraudSettings, version: str) -> None:
    """Overwrite the version's MLmodel file, as a truncated upload would leave it."""
    configure_mlflow(settings)
    uri = mlflow_client().get_model_version_download_uri(settings.registered_model_name, version)
    path = Path(uri.removeprefix("file://")) / "MLmodel"
    assert path.is_file(), path
    path.write_text("flavors: [not yaml\n")


@pytest.fixture(scope="module")
def mixed_home(
    tmp_path_factory: pytest.TempPathFactory,
    empty_mlflow_db: Path,
) -> Iterator[Path]:
    home = with_empty_registry(tmp_path_factory.mktemp("serving_degraded"), empty_mlflow_db)
    with pytest.MonkeyPatch.context() as patch:
        for name in [n for n in os.environ if n.startswith("FRAUD_")]:
            patch.delenv(name)
        settings = settings_at(home)
        for seed, gated in ((1, True), (2, True), (3, True), (4, False)):
            version = register_version(settings, seed=seed, threshold=0.5)
            tag_gates(settings, version, passed=gated)
        corrupt_artifact(settings, BROKEN)
        yield home


def aliases(settings: FraudSettings, *, champion: str, challenger: str | None) -> None:
    set_alias(settings, "champion", champion)
    configure_mlflow(settings)
    client = mlflow_client()
    name = settings.registered_model_name
    if challenger is None:
        if registry.alias_version(client, name, "challenger") is not None:
            client.delete_registered_model_alias(name, "challenger")
    else:
        set_alias(settings, "challenger", challenger)


def metric_samples(text: str, name: str) -> list[dict[str, str]]:
    return [
        sample.labels
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and sample.value == 1
    ]


# Finding 2: a challenger that has not passed every gate never decides a live claim.


def test_an_ungated_challenger_is_only_shadowed(mixed_home: Path) -> None:
    settings = serving_settings(mixed_home, challenger_traffic=0.5)
    aliases(settings, champion="1", challenger=UNGATED)
    claims = gold_frame(seed=31, n_rows=400)
    with TestClient(create_app(settings)) as client:
        answer = client.post("/invocations", json={"dataframe_records": records(claims)})
        served = client.get("/models").json()
        ready = client.get("/ready").json()
    assert answer.status_code == 200, answer.text
    scores = pd.DataFrame(answer.json()["scores"])
    assert set(scores["model_alias"]) == {"champion"} and set(scores["model_version"]) == {"1"}
    np.testing.assert_allclose(
        scores["fraud_score"], pyfunc_scores(settings, "champion", claims), atol=1e-12
    )
    assert served["challenger"]["version"] == UNGATED
    assert served["challenger"]["gates_passed"] is False
    assert served["traffic"]["effective_challenger_share"] == 0.0
    assert served["traffic"]["shadow"] is True
    assert ready["challenger_version"] == UNGATED and ready["challenger_decides"] is False

    # Its share of claims is scored in shadow: logged with its version, never returned.
    logged = inference_log(settings, answer)
    realtime = logged[logged["source"] == "realtime"]
    shadow = logged[logged["source"] == "shadow"]
    assert len(realtime) == 400 and set(realtime["model_version"]) == {"1"}
    assert 100 < len(shadow) < 300
    assert set(shadow["model_version"]) == {UNGATED} and set(shadow["model_alias"]) == {
        "challenger"
    }


def test_a_challenger_with_no_gate_record_is_only_shadowed(mixed_home: Path) -> None:
    """A version whose alias was set by hand, with no gates_passed tag at all."""
    settings = serving_settings(mixed_home, challenger_traffic=1.0)
    configure_mlflow(settings)
    untagged = register_version(settings, seed=5, threshold=0.5)
    aliases(settings, champion="1", challenger=untagged)
    claims = gold_frame(seed=32, n_rows=50)
    with TestClient(create_app(settings)) as client:
        answer = client.post("/invocations", json={"dataframe_records": records(claims)})
        # Once the gates are recorded as passed, the challenger decides its share.
        tag_gates(settings, untagged, passed=True)
        reloaded = client.post("/reload").json()
        after = client.post("/invocations", json={"dataframe_records": records(claims)})
    assert {s["model_version"] for s in answer.json()["scores"]} == {"1"}
    assert reloaded["changed"] is True and reloaded["challenger"]["gates_passed"] is True
    assert {s["model_version"] for s in after.json()["scores"]} == {untagged}


# Finding 3: one unloadable version must not stop serving.


def test_a_load_error_summary_holds_no_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABRICKS_TOKEN", "dapi-not-a-real-token")
    error = OSError(
        "could not read https://svc:hunter2@store.example/m/MLmodel?X-Amz-Signature=abc123 "
        "with dapi-not-a-real-token\nsecond line"
    )
    summary = error_summary(error)
    assert summary.startswith("OSError: could not read https://")
    for secret in ("hunter2", "abc123", "dapi-not-a-real-token", "second line"):
        assert secret not in summary
    assert len(error_summary(ValueError("x" * 5000))) <= 200


def test_a_broken_challenger_is_reported_and_skipped(mixed_home: Path) -> None:
    settings = serving_settings(mixed_home, challenger_traffic=0.5)
    aliases(settings, champion="1", challenger=BROKEN)
    claims = gold_frame(seed=33, n_rows=100)
    with TestClient(create_app(settings)) as client:
        answer = client.post("/invocations", json={"dataframe_records": records(claims)})
        ready = client.get("/ready")
        metrics = client.get("/metrics").text
        # A champion move still applies while the challenger stays broken (a rollback).
        set_alias(settings, "champion", "2")
        reloaded = client.post("/reload")
        moved = client.post("/invocations", json={"dataframe_records": records(claims)})
    assert answer.status_code == 200
    assert {s["model_version"] for s in answer.json()["scores"]} == {"1"}
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "degraded" and body["champion_version"] == "1"
    [broken] = body["broken_versions"]
    assert broken["alias"] == "challenger" and broken["version"] == BROKEN
    assert broken["model_name"] == settings.registered_model_name and broken["error"]
    [labels] = metric_samples(metrics, "fraud_serving_model_version_broken")
    assert labels["alias"] == "challenger" and labels["model_version"] == BROKEN
    assert labels["error"] == broken["error"]

    # /reload applied the champion move and says, as JSON, that a version failed to load.
    assert reloaded.status_code == 503
    assert reloaded.headers["content-type"] == "application/json"
    assert reloaded.json()["error_code"] == "MODEL_VERSION_UNLOADABLE"
    assert f"version {BROKEN}" in reloaded.json()["message"]
    assert {s["model_version"] for s in moved.json()["scores"]} == {"2"}


def test_a_broken_champion_keeps_the_last_good_one_serving(mixed_home: Path) -> None:
    settings = serving_settings(mixed_home, challenger_traffic=0.0)
    aliases(settings, champion="1", challenger=None)
    claims = gold_frame(seed=34, n_rows=20)
    with TestClient(create_app(settings)) as client:
        set_alias(settings, "champion", BROKEN)
        reloaded = client.post("/reload")
        answer = client.post("/invocations", json={"dataframe_records": records(claims)})
        ready = client.get("/ready")
        metrics = client.get("/metrics").text
        # Rolling back to a healthy version clears the report.
        set_alias(settings, "champion", "2")
        assert client.post("/reload").status_code == 200
        healthy = client.get("/ready").json()
    assert reloaded.status_code == 503
    assert reloaded.json()["error_code"] == "MODEL_VERSION_UNLOADABLE"
    assert {s["model_version"] for s in answer.json()["scores"]} == {"1"}
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "degraded" and body["champion_version"] == "1"
    assert "still serving version 1" in body["message"]
    assert [(b["alias"], b["version"]) for b in body["broken_versions"]] == [("champion", BROKEN)]
    assert metric_samples(metrics, "fraud_serving_model_version_broken")[0]["alias"] == "champion"
    assert healthy["status"] == "ready" and healthy["champion_version"] == "2"
    assert healthy["broken_versions"] == []


def test_a_broken_champion_at_start_is_503_not_a_crash(mixed_home: Path) -> None:
    settings = serving_settings(mixed_home, challenger_traffic=0.5)
    aliases(settings, champion=BROKEN, challenger="2")
    claims = gold_frame(seed=35, n_rows=5)
    with TestClient(create_app(settings)) as client:
        ready = client.get("/ready")
        refused = client.post("/invocations", json={"dataframe_records": records(claims)})
    assert ready.status_code == 503 and ready.json()["status"] == "no_champion"
    assert [b["version"] for b in ready.json()["broken_versions"]] == [BROKEN]
    assert refused.status_code == 503 and refused.json()["error_code"] == "NO_CHAMPION"


def test_the_run_command_starts_with_a_broken_challenger(mixed_home: Path) -> None:
    """``python -m fraud_assets.serving`` used to exit 3 when any version failed to load."""
    settings = settings_at(mixed_home)
    aliases(settings, champion="1", challenger=BROKEN)
    port = free_port()
    env = {name: value for name, value in os.environ.items() if not name.startswith("FRAUD_")}
    env |= {"FRAUD_HOME": str(mixed_home), "FRAUD_SERVING__PORT": str(port)}
    server = subprocess.Popen(
        [sys.executable, "-m", "fraud_assets.serving"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.communicate()[0]
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1)
                if ready.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the service did not become ready in 60 s"
            time.sleep(0.2)
    finally:
        server.terminate()
        server.communicate(timeout=60)
    assert ready.json()["status"] == "degraded"
    assert [b["version"] for b in ready.json()["broken_versions"]] == [BROKEN]
