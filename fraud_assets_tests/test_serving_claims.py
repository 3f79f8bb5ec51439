"""A claims system sends the claim itself; the service computes its features online.

The request carries a canonical claim (silver's columns). Its features come from the
online view, point-in-time, and must be the ones ``build_claim_features`` gives the same
claim in gold, and its score the one batch scoring gives it (the champion's pyfunc on the
gold row). A bad claim is a 422 naming the field, and the view is never written by a
request.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from fraud_assets.claims.synthetic import REALISTIC_SHAPE, generate_claims, to_arrow
from fraud_assets.features import MODEL_FEATURES, SplitPolicy
from fraud_assets.features.engineering import build_claim_features
from fraud_assets.features.online import LATE_CLAIM_DAYS, ClaimsHistoryView
from fraud_assets.ml.tracking import configure_mlflow
from fraud_assets.serving.app import create_app
from fraud_assets.settings import FraudSettings
from fraud_assets_tests.serving_support import (
    inference_log,
    register_version,
    serving_settings,
    set_alias,
    with_empty_registry,
)

# The latest claims are sent as requests: their history is in the view, and so are they
# and every later claim, which point-in-time features must ignore. The history spans less
# than the view keeps (a year and LATE_CLAIM_DAYS), so none of it is pruned.
REQUEST_CLAIMS = 300


@pytest.fixture(scope="module")
def claims_home(
    tmp_path_factory: pytest.TempPathFactory, empty_mlflow_db: Path, spark: Any
) -> Iterator[dict[str, Any]]:
    """A champion, an online view holding all of silver, and gold built by Spark."""
    with pytest.MonkeyPatch.context() as env:
        for name in [n for n in os.environ if n.startswith("FRAUD_")]:
            env.delenv(name)
        home = with_empty_registry(tmp_path_factory.mktemp("claims_home"), empty_mlflow_db)
        settings = FraudSettings(home=home)
        set_alias(settings, "champion", register_version(settings, seed=3))
        frame = generate_claims(
            2_500, seed=29, period_days=LATE_CLAIM_DAYS + 300, shape=REALISTIC_SHAPE
        )
        silver = to_arrow(frame)
        ClaimsHistoryView.for_settings(settings).update(silver)
        gold = build_claim_features(
            spark.createDataFrame(silver), split=SplitPolicy(0.2, 7, "random")
        ).toPandas()
        requests = frame.sort_values("claim_date", kind="stable").tail(REQUEST_CLAIMS)
        yield {
            "home": home,
            "silver": silver,
            "requests": requests.reset_index(drop=True),
            "gold": gold.set_index("claim_id"),
        }


def canonical(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Claims as a claims system sends them: silver's columns, dates as ISO text."""
    rows = []
    for row in frame.drop(columns=["is_fraud"]).to_dict(orient="records"):
        for column in ("claim_date", "service_date"):
            row[column] = pd.Timestamp(row[column]).date().isoformat()
        rows.append({str(k): (None if _missing(v) else v) for k, v in row.items()})
    return rows


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def test_online_features_and_scores_equal_gold_and_batch_scoring(
    claims_home: dict[str, Any],
) -> None:
    settings = serving_settings(claims_home["home"], request_shape="claim", max_records=1000)
    requests, gold = claims_home["requests"], claims_home["gold"]
    assert requests["claim_date"].nunique() > 20
    with TestClient(create_app(settings)) as client:
        answers = [
            client.post("/invocations", json={"dataframe_records": canonical(part)})
            for part in np.array_split(requests, 3)
        ]
        one = client.post("/invocations", json={"instances": canonical(requests.iloc[[5]])})
    assert [a.status_code for a in answers] == [200, 200, 200]
    scores = pd.DataFrame([s for a in answers for s in a.json()["scores"]])
    assert scores["claim_id"].tolist() == requests["claim_id"].tolist()

    # The features the model saw (logged) are gold's, claim by claim, to 1e-9.
    logged = inference_log(settings, *answers).set_index("claim_id").loc[requests["claim_id"]]
    expected = gold.loc[requests["claim_id"]]
    for name in MODEL_FEATURES:
        if pd.api.types.is_numeric_dtype(expected[name]):
            np.testing.assert_allclose(
                logged[name].to_numpy(dtype="float64"),
                expected[name].to_numpy(dtype="float64"),
                rtol=1e-9,
                atol=1e-9,
                err_msg=name,
            )
        else:
            assert logged[name].tolist() == expected[name].tolist(), name
    # Point-in-time features differ from what today's whole history would give.
    assert (expected["provider_claim_count"] > 1).mean() > 0.5

    # The score is the one batch scoring gives the gold row: the champion's pyfunc.
    configure_mlflow(settings)
    champion = mlflow.pyfunc.load_model(f"models:/{settings.registered_model_name}@champion")
    batch = np.asarray(champion.predict(expected[MODEL_FEATURES].reset_index(drop=True)))
    np.testing.assert_allclose(scores["fraud_score"], batch, rtol=1e-9, atol=1e-12)
    assert one.json()["scores"][0]["fraud_score"] == pytest.approx(batch[5], abs=1e-12)
    assert len(scores["reasons"].iloc[0]) == 3


def test_a_claim_from_an_unknown_provider_and_patient_is_scored_as_a_first_claim(
    claims_home: dict[str, Any],
) -> None:
    settings = serving_settings(claims_home["home"], request_shape="claim")
    claim = canonical(claims_home["requests"].iloc[[0]])[0] | {
        "claim_id": "NEW-1",
        "provider_id": "NEVER-SEEN-PROVIDER",
        "patient_id": "NEVER-SEEN-PATIENT",
    }
    with TestClient(create_app(settings)) as client:
        answer = client.post("/invocations", json={"dataframe_records": [claim]})
    assert answer.status_code == 200, answer.text
    logged = inference_log(settings, answer).iloc[0]
    assert logged["provider_claim_count"] == 1 and logged["patient_claim_count"] == 1
    assert logged["provider_avg_amount"] == claim["claim_amount"]
    assert logged["days_since_prev_patient_claim"] == -1
    assert logged["duplicate_claim_count"] == 0


def test_an_allowed_protected_attribute_is_taken_from_the_claim(
    claims_home: dict[str, Any], tmp_path: Path, empty_mlflow_db: Path, monkeypatch: Any
) -> None:
    """A version trained with an allowed protected attribute reads it from the claim."""
    for name in [n for n in os.environ if n.startswith("FRAUD_")]:
        monkeypatch.delenv(name)
    home = with_empty_registry(tmp_path, empty_mlflow_db)
    settings = serving_settings(home, request_shape="claim")
    version = register_version(settings, seed=5, allowed_protected=["geographic_region"])
    set_alias(settings, "champion", version)
    ClaimsHistoryView.for_settings(settings).update(claims_home["silver"])
    requests = claims_home["requests"].iloc[:40]
    with TestClient(create_app(settings)) as client:
        answer = client.post("/invocations", json={"dataframe_records": canonical(requests)})
        missing = client.post(
            "/invocations",
            json={
                "dataframe_records": [
                    canonical(requests.iloc[[0]])[0] | {"geographic_region": None}
                ]
            },
        )
    assert answer.status_code == 200, answer.text
    inputs = [*MODEL_FEATURES, "geographic_region"]
    gold = claims_home["gold"].loc[requests["claim_id"], inputs].reset_index(drop=True)
    configure_mlflow(settings)
    model = mlflow.pyfunc.load_model(f"models:/{settings.registered_model_name}@champion")
    np.testing.assert_allclose(
        [s["fraud_score"] for s in answer.json()["scores"]],
        np.asarray(model.predict(gold)),
        rtol=1e-9,
        atol=1e-12,
    )
    # A model input, so the claim must carry it, as the features shape asks.
    assert missing.status_code == 422 and "geographic_region" in missing.json()["message"]


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"provider_id": None}, "provider_id"),
        ({"claim_amount": "120.00"}, "claim_amount"),
        ({"claim_amount": -5.0}, "claim_amount"),
        ({"claim_date": "2025-02-30"}, "claim_date"),
        ({"claim_date": 20250301}, "claim_date"),
        ({"num_procedures": 1.5}, "num_procedures"),
        ("future", "claim_date"),
        ("served after claimed", "service_date"),
        ("no provider", "provider_id"),
    ],
)
def test_a_bad_claim_is_a_422_naming_the_field_and_writes_nothing(
    claims_home: dict[str, Any], change: Any, named: str
) -> None:
    settings = serving_settings(claims_home["home"], request_shape="claim")
    claim = canonical(claims_home["requests"].iloc[[0]])[0] | {"claim_id": "BAD-1"}
    if change == "future":
        claim["claim_date"] = (datetime.now(UTC).date() + timedelta(days=3)).isoformat()
    elif change == "served after claimed":
        claim["service_date"] = (
            date.fromisoformat(claim["claim_date"]) + timedelta(days=2)
        ).isoformat()
    elif change == "no provider":
        del claim["provider_id"]
    else:
        claim |= change
    view = ClaimsHistoryView.for_settings(settings)
    before = (view.row_count(), view.path.stat().st_mtime_ns)
    with TestClient(create_app(settings)) as client:
        answer = client.post("/invocations", json={"dataframe_records": [claim]})
    assert answer.status_code == 422, answer.text
    assert named in answer.json()["message"]
    assert (view.row_count(), view.path.stat().st_mtime_ns) == before


def test_the_openapi_page_documents_the_claim_shape(claims_home: dict[str, Any]) -> None:
    settings = serving_settings(claims_home["home"], request_shape="claim")
    with TestClient(create_app(settings)) as client:
        schema = client.get("/openapi.json").json()["components"]["schemas"]
    claim = schema["CanonicalClaim"]
    assert {"claim_id", "provider_id", "claim_date", "claim_amount"} <= set(claim["required"])
    assert "provider_claim_count" not in claim["properties"]


def test_a_claim_table_has_the_shape_the_view_reads() -> None:
    # The contract's schema is what ClaimsHistoryView.features reads, column for column.
    from fraud_assets.features.online import REQUEST_COLUMNS
    from fraud_assets.serving.contract import claim_request_contract

    schema = claim_request_contract().schema
    assert set(REQUEST_COLUMNS) <= set(schema.names)
    assert pa.types.is_date32(schema.field("claim_date").type)
