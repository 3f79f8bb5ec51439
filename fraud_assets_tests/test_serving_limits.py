"""Request size limits and parsing off the event loop (issue 14, finding 5)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from fraud_assets.claims.synthetic import generate_claims
from fraud_assets.features import MODEL_FEATURES
from fraud_assets.serving import app as serving_app
from fraud_assets.serving.app import create_app
from fraud_assets.settings import ServingSettings
from fraud_assets_tests.serving_support import gold_frame, records, serving_settings


def test_the_default_limit_admits_the_largest_allowed_request() -> None:
    defaults = ServingSettings()
    features = gold_frame(seed=3, n_rows=defaults.max_records)[["claim_id", *MODEL_FEATURES]]
    claims = generate_claims(defaults.max_records, seed=3).drop(columns=["is_fraud"])
    for column in ("claim_date", "service_date"):
        claims[column] = claims[column].dt.strftime("%Y-%m-%d")
    for shaped in (records(features), claims.to_dict(orient="records")):
        body = json.dumps({"dataframe_records": shaped}).encode()
        assert len(body) < defaults.max_request_bytes / 2  # a margin for longer ids and codes


def test_a_body_over_the_limit_is_413_before_it_is_read(registry_home: Path) -> None:
    settings = serving_settings(registry_home, max_request_bytes=10_000)
    claims = gold_frame(seed=4, n_rows=40)
    body = json.dumps({"dataframe_records": records(claims)}).encode()
    assert len(body) > 10_000
    with TestClient(create_app(settings)) as client:
        sized = client.post(
            "/invocations", content=body, headers={"content-type": "application/json"}
        )

        def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer
            for start in range(0, len(body), 1000):
                yield body[start : start + 1000]

        chunked = client.post(
            "/invocations", content=chunks(), headers={"content-type": "application/json"}
        )
        small = client.post("/invocations", json={"dataframe_records": records(claims[:2])})
    for answer in (sized, chunked):
        assert answer.status_code == 413, answer.text
        assert answer.json()["error_code"] == "REQUEST_TOO_LARGE"
        assert "10000 bytes" in answer.json()["message"]
        assert "FRAUD_SERVING__MAX_REQUEST_BYTES" in answer.json()["message"]
    assert small.is_success, small.text


def test_a_large_body_is_parsed_off_the_event_loop(
    registry_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed_on: list[str] = []
    real = serving_app.parse_invocation

    def recording(raw: bytes, **kwargs: object) -> object:
        parsed_on.append(threading.current_thread().name)
        return real(raw, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(serving_app, "parse_invocation", recording)
    claims = gold_frame(seed=5, n_rows=200)
    body = {"dataframe_records": records(claims)}
    assert len(json.dumps(body)) > serving_app.INLINE_PARSE_BYTES
    with TestClient(create_app(serving_settings(registry_home))) as client:
        loop_thread = client.portal.call(lambda: threading.current_thread().name)  # type: ignore[union-attr]
        assert client.post("/invocations", json=body).is_success
        assert client.post("/invocations", json={"dataframe_records": records(claims[:1])})
    large, small = parsed_on
    assert large != loop_thread, "a large body was parsed on the event loop"
    assert small == loop_thread, "a one-claim body should not pay for a thread hop"
