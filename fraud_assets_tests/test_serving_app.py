"""The scoring service end to end against a real MLflow registry on SQLite.

One module-scoped registry holds two XGBoost versions (champion = 1, challenger = 2); tests
that move aliases build their own registry in ``fraud_home``.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from fraud_assets.features import MODEL_FEATURES
from fraud_assets.lakehouse import INFERENCE_LOG, table_store
from fraud_assets.ml.reasons import REASON_COUNT
from fraud_assets.serving.app import create_app
from fraud_assets.serving.inference_log import window_id
from fraud_assets.serving.router import TrafficSplit
from fraud_assets_tests.serving_support import (
    THRESHOLDS,
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


def test_traffic_split_scores_and_inference_log(registry_home: Path) -> None:
    settings = serving_settings(registry_home, challenger_traffic=0.3, max_records=1000)
    claims = gold_frame(seed=11, n_rows=2000)
    with TestClient(create_app(settings)) as client:
        answers = [
            client.post("/invocations", json={"dataframe_records": records(part)})
            for part in (claims.iloc[:1000], claims.iloc[1000:])
        ]
        assert [a.status_code for a in answers] == [200, 200]
        scores = pd.DataFrame([s for a in answers for s in a.json()["scores"]])
        predictions = [p for a in answers for p in a.json()["predictions"]]
        again = client.post("/invocations", json={"dataframe_records": records(claims.iloc[:50])})
    assert scores["claim_id"].tolist() == claims["claim_id"].tolist()
    assert predictions == scores["fraud_score"].tolist()

    # Both aliases answer, in the configured proportion, by the sticky hash rule.
    share = (scores["model_alias"] == "challenger").mean()
    # Four binomial standard deviations: a correct router fails this once in ~16,000 runs.
    assert share == pytest.approx(0.3, abs=4 * math.sqrt(0.3 * 0.7 / len(scores)))
    rule = TrafficSplit.from_settings(
        settings.serving, champion_version="1", challenger_version="2"
    )
    assert scores["model_alias"].tolist() == [rule.alias_for(c) for c in claims["claim_id"]]
    assert (
        scores["model_version"] == scores["model_alias"].map({"champion": "1", "challenger": "2"})
    ).all()
    resent = pd.DataFrame(again.json()["scores"])
    pd.testing.assert_frame_equal(resent, scores.iloc[:50])

    # Each claim's score is exactly its alias's pyfunc score on the same row.
    for alias in ("champion", "challenger"):
        routed = scores["model_alias"] == alias
        expected = pyfunc_scores(settings, alias, claims[routed.to_numpy()])
        np.testing.assert_allclose(scores.loc[routed, "fraud_score"], expected, rtol=0, atol=1e-12)
    other = pyfunc_scores(settings, "challenger", claims.iloc[:200])
    assert not np.allclose(other, pyfunc_scores(settings, "champion", claims.iloc[:200])), (
        "the two versions must differ, or routing mistakes would go unnoticed"
    )
    own_threshold = scores["model_version"].map(THRESHOLDS)
    expected_decision = (scores["fraud_score"] >= own_threshold).astype(int)
    assert scores["decision"].tolist() == expected_decision.tolist()
    # At the settings' 0.5 the decisions would differ: the per-version threshold is used.
    assert (scores["decision"] != (scores["fraud_score"] >= 0.5).astype(int)).any()
    assert 0 < scores["decision"].sum() < len(scores)

    # Shutdown wrote every scored claim to the inference log, as "realtime" rows.
    logged = inference_log(settings, *answers, again)
    assert len(logged) == 2050
    assert set(logged["source"]) == {"realtime"}
    first = logged.drop_duplicates("claim_id").set_index("claim_id").loc[claims["claim_id"]]
    np.testing.assert_array_equal(first["fraud_score"], scores["fraud_score"])
    assert first["model_version"].tolist() == scores["model_version"].tolist()
    assert first["model_alias"].tolist() == scores["model_alias"].tolist()
    assert first["decision"].tolist() == scores["decision"].tolist()

    # Every answer says why, and the log keeps the reasons the caller got.
    assert scores["reasons"].map(len).eq(REASON_COUNT).all()
    assert {"feature", "contribution", "reason"} == set(scores["reasons"].iloc[0][0])
    for position in (0, 1, 999, 1999):
        assert [dict(r) for r in first["reasons"].iloc[position]] == scores["reasons"].iloc[
            position
        ]
    assert (
        first["operating_threshold"] == scores["model_version"].map(THRESHOLDS).to_numpy()
    ).all()
    for name in MODEL_FEATURES:
        assert first[name].tolist() == claims[name].tolist(), name
    assert (logged["window_id"] == [window_id(t, minutes=60) for t in logged["scored_at"]]).all()
    assert logged["request_id"].nunique() == 3


def test_dataframe_split_and_instances_score_like_records(registry_home: Path) -> None:
    settings = serving_settings(registry_home)
    claims = gold_frame(seed=12, n_rows=20)[["claim_id", *MODEL_FEATURES]]
    split = {"columns": list(claims.columns), "data": claims.to_numpy().tolist()}
    with TestClient(create_app(settings)) as client:
        by_records = client.post("/invocations", json={"dataframe_records": records(claims)})
        by_split = client.post("/invocations", json={"dataframe_split": split})
        by_instances = client.post("/invocations", json={"instances": records(claims)})
    assert by_records.status_code == 200, by_records.text
    assert by_split.status_code == 200, by_split.text
    assert by_instances.status_code == 200, by_instances.text
    assert by_split.json()["scores"] == by_records.json()["scores"]
    assert by_instances.json()["scores"] == by_records.json()["scores"]


def bad_record(**changes: Any) -> dict[str, Any]:
    record = records(gold_frame(seed=13, n_rows=1))[0]
    for column, value in changes.items():
        if value is ...:
            del record[column]
        else:
            record[column] = value
    return record


@pytest.mark.parametrize(
    ("body", "missing", "invalid"),
    [
        (
            {"dataframe_records": [bad_record(claim_amount=..., length_of_stay=...)]},
            ["claim_amount", "length_of_stay"],
            [],
        ),
        ({"dataframe_records": [bad_record(claim_amount="12.5")]}, [], ["claim_amount"]),
        (
            {"dataframe_records": [bad_record(num_procedures=2.5, procedure_code=17)]},
            [],
            ["num_procedures", "procedure_code"],
        ),
        ({"dataframe_records": [bad_record(is_duplicate_claim=True)]}, [], ["is_duplicate_claim"]),
        ({"dataframe_records": [bad_record(procedure_code="9" * 300)]}, [], ["procedure_code"]),
        ({"dataframe_records": [bad_record(diagnosis_code="I1\x000")]}, [], ["diagnosis_code"]),
        ({"dataframe_records": [bad_record(claim_id=...)]}, ["claim_id"], []),
        (
            {
                "dataframe_records": [
                    bad_record(claim_amount=-5.0, num_procedures=-1, length_of_stay=-1)
                ]
            },
            [],
            ["claim_amount", "num_procedures", "length_of_stay"],
        ),
        ({"dataframe_records": []}, [], []),
        ({"instances": [[1, 2]]}, [], []),
    ],
    ids=[
        "missing",
        "text-for-number",
        "fraction-and-number-for-code",
        "bool",
        "overlong-code",
        "control-character",
        "no-claim-id",
        "out-of-range",
        "empty",
        "no-records",
    ],
)
def test_bad_input_is_422_naming_the_columns(
    registry_home: Path, body: dict[str, Any], missing: list[str], invalid: list[str]
) -> None:
    settings = serving_settings(registry_home, log_flush_rows=1)
    with TestClient(create_app(settings)) as client:
        before = client.get("/models").json()["inference_log"]
        answer = client.post("/invocations", json=body)
        after = client.get("/models").json()["inference_log"]
    assert answer.status_code == 422
    error = answer.json()
    assert error["error_code"] == "INVALID_PARAMETER_VALUE"
    assert (error["missing_columns"], error["invalid_columns"]) == (missing, invalid)
    for column in missing + invalid:
        assert column in error["message"]
    assert "12.5" not in error["message"], "request values are never echoed"
    assert (
        after["buffered_rows"] + after["written_rows"]
        == before["buffered_rows"] + before["written_rows"]
    )


def test_requests_over_the_record_limit_are_refused(registry_home: Path) -> None:
    settings = serving_settings(registry_home, max_records=3)
    claims = gold_frame(seed=14, n_rows=4)[["claim_id", *MODEL_FEATURES]]
    split = {"columns": list(claims.columns), "data": claims.to_numpy().tolist()}
    with TestClient(create_app(settings)) as client:
        answers = [
            client.post("/invocations", json={"dataframe_records": records(claims)}),
            client.post("/invocations", json={"instances": records(claims)}),
            client.post("/invocations", json={"dataframe_split": split}),
        ]
        assert client.post("/invocations", json={"instances": records(claims[:3])}).is_success
    for answer in answers:
        assert answer.status_code == 422
        assert "4 records in one request; the limit is 3" in answer.json()["message"]


ONE = {"claim_id": "C1"}


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (b"", "not valid JSON"),
        (b"{dataframe_records", "not valid JSON"),
        (b'{"dataframe_records": [\xff\xfe]}', "not valid JSON"),
        (b"[]", "JSON object"),
        (b'"dataframe_records"', "JSON object"),
        (b"null", "JSON object"),
        (b"42", "JSON object"),
        (b"{}", "keys found: none"),
        (b'{"inputs": [[1, 2]]}', "keys found: 'inputs'"),
        (b'{"dataframe_records": [], "instances": []}', "exactly one of"),
        (b'{"dataframe_records": {"claim_id": "C1"}}', "dataframe_records"),
        (b'{"dataframe_records": ["C1"]}', "dataframe_records.0"),
        (b'{"dataframe_records": null}', "dataframe_records"),
        (b'{"instances": [[1, 2]]}', "instances must be a list of objects"),
        (b'{"instances": []}', "instances is empty"),
        (b'{"instances": {"claim_id": "C1"}}', "instances must be a list of objects"),
        (b'{"dataframe_split": [[1, 2]]}', "needs a 'columns' list"),
        (b'{"dataframe_split": {"data": [[1]]}}', "needs a 'columns' list"),
        (b'{"dataframe_split": {"columns": [1], "data": [[1]]}}', "column names"),
        (b'{"dataframe_split": {"columns": ["a", "a"], "data": [[1, 2]]}}', "more than once"),
        (b'{"dataframe_split": {"columns": ["a"], "data": [[1, 2]]}}', "rows of 1 values"),
        (b'{"dataframe_split": {"columns": ["a"], "data": "x"}}', "rows of 1 values"),
        (b'{"dataframe_split": {"columns": ["a"], "data": []}}', "data is empty"),
    ],
)
def test_malformed_bodies_are_4xx_naming_the_problem(
    registry_home: Path, body: bytes, named: str
) -> None:
    with TestClient(create_app(serving_settings(registry_home))) as client:
        answer = client.post(
            "/invocations", content=body, headers={"content-type": "application/json"}
        )
    assert answer.status_code == 422, answer.text
    assert answer.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert named in answer.json()["message"]


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e400", "9" * 400])
def test_non_finite_and_huge_numbers_are_422(registry_home: Path, value: str) -> None:
    record = bad_record()
    body = json.dumps({"dataframe_records": [record]}).replace(
        json.dumps(record["claim_amount"]), value, 1
    )
    with TestClient(create_app(serving_settings(registry_home))) as client:
        answer = client.post(
            "/invocations", content=body, headers={"content-type": "application/json"}
        )
    assert answer.status_code == 422, answer.text
    assert answer.json()["invalid_columns"] == ["claim_amount"]


def test_a_body_with_a_byte_order_mark_is_read(registry_home: Path) -> None:
    """Issue 14, finding 11: a UTF-8 BOM got "expected value at line 1 column 1"."""
    body = "\ufeff" + json.dumps({"dataframe_records": [bad_record()]})
    with TestClient(create_app(serving_settings(registry_home))) as client:
        answer = client.post(
            "/invocations",
            content=body.encode("utf-8"),
            headers={"content-type": "application/json"},
        )
    assert answer.status_code == 200, answer.text


def test_a_body_sent_as_another_content_type_is_415(registry_home: Path) -> None:
    body = json.dumps({"dataframe_records": [bad_record()]})
    with TestClient(create_app(serving_settings(registry_home))) as client:
        refused = client.post("/invocations", content=body, headers={"content-type": "text/csv"})
        plain = client.post("/invocations", content=body, headers={"content-type": ""})
        charset = client.post(
            "/invocations",
            content=body,
            headers={"content-type": "application/json; charset=utf-8"},
        )
    assert refused.status_code == 415
    assert "'text/csv' is not supported" in refused.json()["message"]
    assert plain.status_code == 200 and charset.status_code == 200


def test_no_corruption_of_a_valid_body_is_ever_a_5xx(registry_home: Path) -> None:
    """Truncations, dropped and flipped bytes of a good request: only 200 or 4xx."""
    good = json.dumps({"dataframe_records": [bad_record(), bad_record(claim_id="C2")]}).encode()
    rng = random.Random(20)
    bodies = [good[:cut] for cut in range(0, len(good), 7)]
    for _ in range(150):
        mutated = bytearray(good)
        position = rng.randrange(len(mutated))
        if rng.random() < 0.5:
            del mutated[position]
        else:
            mutated[position] = rng.choice(b'{}[]",:0123456789.-eEtrufalsn \xff')
        bodies.append(bytes(mutated))
    with TestClient(create_app(serving_settings(registry_home))) as client:
        statuses = Counter(
            client.post(
                "/invocations", content=body, headers={"content-type": "application/json"}
            ).status_code
            for body in bodies
        )
    assert set(statuses) <= {200, 422}, statuses
    assert statuses[422] > len(bodies) // 2, statuses


def test_a_body_that_is_not_json_is_422(registry_home: Path) -> None:
    with TestClient(create_app(serving_settings(registry_home))) as client:
        answer = client.post(
            "/invocations",
            content=b"{dataframe_records",
            headers={"content-type": "application/json"},
        )
    assert answer.status_code == 422
    assert "not valid JSON" in answer.json()["message"]


def test_shadow_mode_answers_with_champion_and_logs_the_challenger(registry_home: Path) -> None:
    settings = serving_settings(registry_home, challenger_traffic=0.5, shadow=True)
    claims = gold_frame(seed=15, n_rows=200)
    with TestClient(create_app(settings)) as client:
        answer = client.post("/invocations", json={"dataframe_records": records(claims)})
        traffic = client.get("/models").json()["traffic"]
    scores = pd.DataFrame(answer.json()["scores"])
    assert set(scores["model_alias"]) == {"champion"}
    assert traffic["effective_challenger_share"] == 0.0 and traffic["shadow"] is True
    logged = inference_log(settings, answer)
    shadow = logged[logged["source"] == "shadow"]
    rule = TrafficSplit.from_settings(
        settings.serving, champion_version="1", challenger_version="2"
    )
    in_group = [c for c in claims["claim_id"] if rule.in_challenger_group(c)]
    assert sorted(shadow["claim_id"]) == sorted(in_group)
    assert set(shadow["model_version"]) == {"2"}
    expected = pyfunc_scores(
        settings, "challenger", claims.set_index("claim_id").loc[shadow["claim_id"]].reset_index()
    )
    np.testing.assert_allclose(shadow["fraud_score"], expected, rtol=0, atol=1e-12)
    assert (logged["source"] == "realtime").sum() == 200


def test_no_champion_is_503_until_a_promotion_and_reload(
    fraud_home: Path, empty_mlflow_db: Path
) -> None:
    settings = serving_settings(with_empty_registry(fraud_home, empty_mlflow_db))
    claims = gold_frame(seed=16, n_rows=30)
    with TestClient(create_app(settings)) as client:
        assert client.get("/health").json() == {"status": "alive"}
        ready = client.get("/ready")
        assert ready.status_code == 503 and ready.json()["status"] == "no_champion"
        assert client.get("/ping").status_code == 503
        refused = client.post("/invocations", json={"dataframe_records": records(claims)})
        assert refused.status_code == 503
        assert refused.json()["error_code"] == "NO_CHAMPION"
        assert (
            "'fraud_detector'" in refused.json()["message"]
            and "champion" in refused.json()["message"]
        )
        assert "Traceback" not in refused.text

        set_alias(settings, "champion", register_version(settings, seed=1))
        reloaded = client.post("/reload")
        assert reloaded.status_code == 200 and reloaded.json()["changed"] is True
        first = client.post("/invocations", json={"dataframe_records": records(claims)}).json()
        assert {s["model_version"] for s in first["scores"]} == {"1"}
        np.testing.assert_allclose(
            first["predictions"], pyfunc_scores(settings, "champion", claims), atol=1e-12
        )

        # A promotion: version 2 becomes champion; the running service follows on /reload.
        set_alias(settings, "champion", register_version(settings, seed=2))
        stale = client.post("/invocations", json={"dataframe_records": records(claims)}).json()
        assert stale["scores"] == first["scores"], "aliases are re-resolved on /reload only"
        promoted = client.post("/reload").json()
        assert promoted["changed"] is True and promoted["champion"]["version"] == "2"
        assert client.post("/reload").json()["changed"] is False
        second = client.post("/invocations", json={"dataframe_records": records(claims)}).json()
        assert {s["model_version"] for s in second["scores"]} == {"2"}
        np.testing.assert_allclose(
            second["predictions"], pyfunc_scores(settings, "champion", claims), atol=1e-12
        )
        assert client.get("/ready").json()["champion_version"] == "2"
    logged = table_store(settings).read_pandas(INFERENCE_LOG)
    assert sorted(logged["model_version"].unique()) == ["1", "2"]
    assert len(logged) == 3 * len(claims)  # first, stale and second answers


def test_the_run_command_serves_and_flushes_the_log_on_sigterm(registry_home: Path) -> None:
    """``python -m fraud_assets.serving`` with host/port from settings; SIGTERM loses no row."""
    port = free_port()
    env = {name: value for name, value in os.environ.items() if not name.startswith("FRAUD_")}
    env |= {
        "FRAUD_HOME": str(registry_home),
        "FRAUD_SERVING__PORT": str(port),
        "FRAUD_SERVING__LOG_FLUSH_SECONDS": "3600",
        "FRAUD_SERVING__REQUEST_SHAPE": "features",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "fraud_assets.serving"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.communicate()[0]
            try:
                if httpx.get(f"{base}/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the service did not become ready in 60 s"
            time.sleep(0.2)
        claims = gold_frame(seed=17, n_rows=5)
        answer = httpx.post(f"{base}/invocations", json={"dataframe_records": records(claims)})
        assert answer.status_code == 200
        assert answer.headers["x-request-id"] == answer.json()["request_id"]
    finally:
        server.send_signal(signal.SIGTERM)
        output = server.communicate(timeout=60)[0]
    # uvicorn re-raises the signal after its graceful shutdown, as a supervisor expects.
    assert server.returncode == -signal.SIGTERM, output
    assert "Application shutdown complete" in output
    logged = inference_log(settings_at(registry_home), answer)
    assert sorted(logged["claim_id"]) == sorted(claims["claim_id"])
    assert set(logged["source"]) == {"realtime"}


def test_a_failed_reload_keeps_serving_the_loaded_models(
    registry_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.exceptions import MlflowException

    from fraud_assets.serving.service import ScoringService

    settings = serving_settings(registry_home, challenger_traffic=0.0)
    service = ScoringService.from_settings(settings)
    claims = gold_frame(seed=18, n_rows=10)
    with TestClient(create_app(settings, service=service)) as client:

        def registry_down(name: str) -> None:
            raise MlflowException("(sqlite3.OperationalError) database is locked")

        monkeypatch.setattr(service.models._client, "get_registered_model", registry_down)
        failed = client.post("/reload")
        assert failed.status_code == 503
        assert failed.json()["error_code"] == "MODEL_REGISTRY_UNAVAILABLE"
        assert "database is locked" in failed.json()["message"]
        still = client.post("/invocations", json={"dataframe_records": records(claims)})
        assert still.status_code == 200
        assert {s["model_version"] for s in still.json()["scores"]} == {"1"}
        assert client.get("/ready").status_code == 200


def test_the_openapi_page_documents_the_request_formats(registry_home: Path) -> None:
    with TestClient(create_app(serving_settings(registry_home))) as client:
        spec = client.get("/openapi.json").json()
    body = spec["paths"]["/invocations"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/InvocationRequest"}
    schemas = spec["components"]["schemas"]
    assert "dataframe_records" in schemas["InvocationRequest"]["properties"]
    assert set(MODEL_FEATURES) <= set(schemas["ClaimRecord"]["properties"])
