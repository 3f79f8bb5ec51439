"""Alias moves under traffic, a registry with no challenger, and the Prometheus metrics.

The module's registry holds versions 1 and 2 with only ``champion`` set (to 1): the state
a registry is in before the first challenger is evaluated.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from mlflow.exceptions import MlflowException
from prometheus_client.parser import text_string_to_metric_families

from fraud_assets.features import MODEL_FEATURES
from fraud_assets.governance import latest_scored_window
from fraud_assets.lakehouse import INFERENCE_LOG, table_store
from fraud_assets.ml import registry
from fraud_assets.ml.tracking import configure_mlflow, mlflow_client
from fraud_assets.serving.app import create_app
from fraud_assets.settings import FraudSettings
from fraud_assets.tasks._runtime import run_task
from fraud_assets.tasks.compute_psi import compute_psi
from fraud_assets_tests.serving_support import (
    gold_frame,
    records,
    serving_settings,
    set_alias,
    settings_at,
    two_version_registry,
)


@pytest.fixture(scope="module")
def champion_only_home(
    tmp_path_factory: pytest.TempPathFactory,
    empty_mlflow_db: Path,
) -> Iterator[Path]:
    """A FRAUD_HOME whose registry has versions 1 and 2, version 1 champion, no challenger."""
    with two_version_registry(
        tmp_path_factory.mktemp("serving_reload"), empty_mlflow_db, {"champion": "1"}
    ) as home:
        yield home


def logged_rows(settings: FraudSettings, request_ids: set[str]) -> pd.DataFrame:
    logged = table_store(settings).read_pandas(INFERENCE_LOG)
    return logged[logged["request_id"].isin(request_ids)].reset_index(drop=True)


def test_a_missing_challenger_alias_is_none_not_an_error(champion_only_home: Path) -> None:
    settings = settings_at(champion_only_home)
    configure_mlflow(settings)
    client = mlflow_client()
    name = settings.registered_model_name
    # The SQLite registry answers a missing alias with INVALID_PARAMETER_VALUE, the same
    # code as a real mistake, which is why alias_version reads the alias map instead.
    with pytest.raises(MlflowException) as raised:
        client.get_model_version_by_alias(name, registry.CHALLENGER)
    assert raised.value.error_code == "INVALID_PARAMETER_VALUE"
    assert registry.alias_version(client, name, registry.CHALLENGER) is None
    assert registry.alias_version(client, "no_such_model", registry.CHAMPION) is None
    champion = registry.alias_version(client, name, registry.CHAMPION)
    assert champion is not None and str(champion.version) == "1"


def test_without_a_challenger_shadow_mode_shadows_nothing(champion_only_home: Path) -> None:
    settings = serving_settings(champion_only_home, challenger_traffic=0.5, shadow=True)
    claims = gold_frame(seed=21, n_rows=200)
    with TestClient(create_app(settings)) as client:
        answer = client.post("/invocations", json={"dataframe_records": records(claims)})
        served = client.get("/models").json()
    assert answer.status_code == 200, answer.text
    assert served["challenger"] is None and served["champion"]["version"] == "1"
    assert served["traffic"]["effective_challenger_share"] == 0.0
    assert {s["model_alias"] for s in answer.json()["scores"]} == {"champion"}
    logged = logged_rows(settings, {answer.json()["request_id"]})
    assert len(logged) == 200 and set(logged["source"]) == {"realtime"}


def test_an_alias_move_is_picked_up_by_the_poll_while_requests_flow(
    champion_only_home: Path,
) -> None:
    """Clients keep scoring while champion moves 1 -> 2: no failure, no step back."""
    settings = serving_settings(champion_only_home, reload_seconds=0.2, challenger_traffic=0.0)
    set_alias(settings, "champion", "1")
    claims = records(gold_frame(seed=22, n_rows=400))
    seen: dict[int, list[tuple[int, str, str]]] = {k: [] for k in range(4)}
    moved = threading.Event()
    stop = threading.Event()

    def keep_scoring(client: TestClient, k: int) -> None:
        i = k
        while not stop.is_set():
            answer = client.post("/invocations", json={"dataframe_records": [claims[i % 400]]})
            body = answer.json()
            version = body["scores"][0]["model_version"] if answer.status_code == 200 else ""
            seen[k].append((answer.status_code, version, body.get("request_id", "")))
            if version == "2":
                moved.set()
            i += 4

    with TestClient(create_app(settings)) as client:
        threads = [threading.Thread(target=keep_scoring, args=(client, k)) for k in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(1.0)
        set_alias(settings, "champion", "2")
        promoted_at = time.monotonic()
        assert moved.wait(timeout=30), "the poll never served version 2"
        picked_up_after = time.monotonic() - promoted_at
        time.sleep(0.5)
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        metrics = client.get("/metrics").text

    answers = [answer for per_client in seen.values() for answer in per_client]
    assert {status for status, _, _ in answers} == {200}, "a request failed during the move"
    for per_client in seen.values():
        versions = [version for _, version, _ in per_client]
        assert versions == sorted(versions), "a client went back to the old version"
    assert {version for _, version, _ in answers} == {"1", "2"}
    assert picked_up_after < 10
    reloads = {
        (sample.labels["trigger"], sample.labels["result"]): sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
        if sample.name == "fraud_serving_alias_reloads_total"
    }
    assert reloads[("poll", "changed")] == 1

    # Every answered request left exactly one row, with the version that answered it.
    logged = logged_rows(settings, {request_id for _, _, request_id in answers})
    assert len(logged) == len(answers)
    assert logged["request_id"].is_unique
    answered_by = {request_id: version for _, version, request_id in answers}
    assert (logged["model_version"] == logged["request_id"].map(answered_by)).all()


def test_metrics_are_prometheus_text(champion_only_home: Path) -> None:
    settings = serving_settings(champion_only_home, challenger_traffic=0.0, log_flush_rows=1)
    set_alias(settings, "champion", "1")
    claims = gold_frame(seed=23, n_rows=5)
    with TestClient(create_app(settings)) as client:
        for _ in range(3):
            assert client.post(
                "/invocations", json={"dataframe_records": records(claims)}
            ).is_success
        assert client.post("/invocations", content=b"{").status_code == 422
        client.get("/health")
        scraped = client.get("/metrics")
    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain")
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(scraped.text)
        for sample in family.samples
    }

    def value(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted(labels.items())))]

    assert value("fraud_serving_http_requests_total", path="/invocations", status="200") == 3
    assert value("fraud_serving_http_requests_total", path="/invocations", status="422") == 1
    assert value("fraud_serving_http_requests_total", path="/health", status="200") == 1
    assert value("fraud_serving_scored_claims_total", route="champion", model_version="1") == 15
    assert value("fraud_serving_http_request_duration_seconds_count", path="/invocations") == 4
    assert (
        value(
            "fraud_serving_model_version_info",
            model_name=settings.registered_model_name,
            alias="champion",
            model_version="1",
        )
        == 1
    )
    assert value("fraud_serving_ready") == 1
    assert value("fraud_serving_batch_requests_sum") == 3
    log_rows = value("fraud_serving_inference_log_written_rows_total") + value(
        "fraud_serving_inference_log_buffered_rows"
    )
    assert log_rows == 15
    assert value("fraud_serving_inference_log_failed_writes_total") == 0


def test_real_time_traffic_is_the_current_window_of_psi_report(
    champion_only_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The drift task reads the service's rows as its current sample, with nothing else."""
    settings = serving_settings(champion_only_home, challenger_traffic=0.0)
    set_alias(settings, "champion", "1")
    claims = gold_frame(seed=24, n_rows=400)
    with TestClient(create_app(settings)) as client:
        answers = [
            client.post("/invocations", json={"dataframe_records": records(claims.iloc[i::4])})
            for i in range(4)
        ]
    assert all(answer.status_code == 200 for answer in answers)
    logged = table_store(settings).read_pandas(INFERENCE_LOG)
    current, window = latest_scored_window(logged)
    # With no batch window, the latest real-time window is the current sample, every row of it.
    latest = logged[logged["window_id"] == logged["window_id"].max()]
    assert window.window_id == latest["window_id"].iloc[0]
    assert len(current) == len(latest) and set(current["source"]) == {"realtime"}
    mine = current[current["request_id"].isin({a.json()["request_id"] for a in answers})]
    assert sorted(mine["claim_id"]) == sorted(claims["claim_id"])

    monkeypatch.setenv("FRAUD_HOME", str(champion_only_home))
    result = run_task(compute_psi, ["--run_id", "serving-psi"], name="psi")
    metadata = result.materializations[0].metadata
    assert metadata["window_id"] == window.window_id
    assert metadata["current_rows"] == len(current)
    assert metadata["current_realtime_rows"] == 0  # they are the window, not extra rows
    assert set(metadata["psi"]["raw_value"]) == {*MODEL_FEATURES, "fraud_score"}
