"""The service asks each request for the columns its loaded models take, not a fixed list.

A model trained with an allowed protected input (FRAUD_ALLOWED_PROTECTED_INPUTS) takes one
more column than ``MODEL_FEATURES``; the request contract follows the served versions'
signatures, so such a model can be served, and a request without that column is a 422
naming it, never a 500.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from fraud_assets.features import MODEL_FEATURES
from fraud_assets.lakehouse import INFERENCE_LOG, table_store
from fraud_assets.ml import registry
from fraud_assets.ml.tracking import configure_mlflow, mlflow_client
from fraud_assets.serving.app import create_app
from fraud_assets.serving.contract import REQUEST_SCHEMA, request_contract
from fraud_assets.settings import FraudSettings, ServingSettings
from fraud_assets_tests.serving_support import gold_frame, register_version, set_alias

ALLOWED = "geographic_region"


def _settings(home: Path) -> FraudSettings:
    serving = ServingSettings(
        log_flush_seconds=300.0, log_flush_rows=100_000, reload_seconds=0, request_shape="features"
    )
    return FraudSettings(home=home, serving=serving)


def _rows(frame: pd.DataFrame, columns: list[str]) -> list[dict[str, Any]]:
    rows = frame[columns].to_dict(orient="records")
    return [{str(column): value for column, value in row.items()} for row in rows]


def _gated_champion(home: Path, monkeypatch: pytest.MonkeyPatch, **training: Any) -> Path:
    """``home`` with a registry whose champion, trained as ``register_version(**training)``
    asks, passed every gate."""
    for name in [n for n in os.environ if n.startswith("FRAUD_")]:
        monkeypatch.delenv(name)
    settings = _settings(home)
    version = register_version(settings, threshold=0.4, **training)
    configure_mlflow(settings)
    gated = {registry.TAG_GATES_PASSED: "true"}
    registry.tag_version(mlflow_client(), settings.registered_model_name, version, gated)
    set_alias(settings, "champion", version)
    return home


def _champion(settings: FraudSettings) -> mlflow.pyfunc.PyFuncModel:
    """The champion's pyfunc, loaded independently of the service."""
    configure_mlflow(settings)
    return mlflow.pyfunc.load_model(f"models:/{settings.registered_model_name}@champion")


@pytest.fixture
def protected_input_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A registry whose champion was trained with ``geographic_region`` allowed as an input."""
    return _gated_champion(tmp_path, monkeypatch, seed=5, allowed_protected=[ALLOWED])


def test_a_model_with_an_allowed_protected_input_is_served(protected_input_home: Path) -> None:
    settings = _settings(protected_input_home)
    claims = gold_frame(seed=21, n_rows=40)
    columns = ["claim_id", *MODEL_FEATURES, ALLOWED]
    with TestClient(create_app(settings)) as client:
        answer = client.post("/invocations", json={"dataframe_records": _rows(claims, columns)})
        without = client.post(
            "/invocations", json={"dataframe_records": _rows(claims, columns[:-1])}
        )
    assert answer.status_code == 200, answer.text
    model = _champion(settings)
    expected = np.asarray(model.predict(claims[columns[1:]].reset_index(drop=True)))
    np.testing.assert_allclose(answer.json()["predictions"], expected, rtol=0, atol=1e-12)
    # The model needs the attribute: a request without it names the field.
    assert without.status_code == 422, without.text
    assert ALLOWED in without.text


def test_the_default_contract_is_the_model_features() -> None:
    assert REQUEST_SCHEMA.names == ["claim_id", *MODEL_FEATURES]
    contract = request_contract(("claim_id", *MODEL_FEATURES))
    assert contract.schema == REQUEST_SCHEMA
    wider = request_contract(("claim_id", *MODEL_FEATURES, ALLOWED))
    assert wider.schema.names[-1] == ALLOWED
    assert request_contract(("claim_id", *MODEL_FEATURES, ALLOWED)) is wider


@pytest.fixture
def extras_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A registry whose champion was trained on a mapping's extra inputs."""
    return _gated_champion(tmp_path, monkeypatch, seed=6, extras=True)


def test_a_model_with_extra_inputs_is_served_and_a_blank_extra_is_missing(
    extras_home: Path,
) -> None:
    settings = _settings(extras_home)
    claims = gold_frame(seed=22, n_rows=40, extras=True)
    columns = ["claim_id", *MODEL_FEATURES, "xn_deductible", "xc_hobby"]
    rows = _rows(claims, columns)
    for row in rows:  # JSON has no NaN: a blank number is null
        if row["xn_deductible"] != row["xn_deductible"]:
            row["xn_deductible"] = None
    without = [{k: v for k, v in row.items() if not k.startswith("x")} for row in rows]
    with TestClient(create_app(settings)) as client:
        answer = client.post("/invocations", json={"dataframe_records": rows})
        blank = client.post("/invocations", json={"dataframe_records": without})
        wrong = client.post(
            "/invocations", json={"dataframe_records": [{**rows[0], "xn_deductible": "500"}]}
        )
    assert answer.status_code == 200, answer.text
    model = _champion(settings)
    expected = np.asarray(model.predict(claims[columns[1:]].reset_index(drop=True)))
    np.testing.assert_allclose(answer.json()["predictions"], expected, rtol=0, atol=1e-12)
    # Extras may be blank, as in silver: the model scores them as missing.
    assert blank.status_code == 200, blank.text
    missing = claims[columns[1:]].assign(xn_deductible=np.nan, xc_hobby=None)
    np.testing.assert_allclose(
        blank.json()["predictions"],
        np.asarray(model.predict(missing.reset_index(drop=True))),
        rtol=0,
        atol=1e-12,
    )
    # A number sent as text is refused, naming the field.
    assert wrong.status_code == 422 and "xn_deductible" in wrong.text
    # The log holds the extras as received, so PSI watches them in real-time rows too.
    logged = table_store(settings).read_pandas(INFERENCE_LOG)
    answered = logged[logged["request_id"] == answer.json()["request_id"]]
    assert answered["xc_hobby"].tolist() == claims["xc_hobby"].tolist()
    np.testing.assert_array_equal(answered["xn_deductible"], claims["xn_deductible"])
