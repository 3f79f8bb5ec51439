"""The fairness policy pinned for a target is the one promotion enforces.

Issue 12: a rerun of the fairness step with fewer protected attributes (or a loosened
threshold), followed by ``register``, promoted the model. Registration must refuse a
verdict computed under a weaker policy than the target's pinned one.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fraud_assets.lakehouse import table_store
from fraud_assets.ml import registry
from fraud_assets.ml.tracking import mlflow_client
from fraud_assets.settings import get_settings
from fraud_assets.tasks import evaluate, fairness, register, train
from fraud_assets.tasks._runtime import run_task
from fraud_assets_tests.test_ml_support import make_gold_frame, use_migrated_mlflow_store


@pytest.fixture
def evaluated_home(fraud_home: Path) -> Path:
    """Both models trained and evaluated: the candidate awaits its fairness verdict."""
    use_migrated_mlflow_store(fraud_home)
    table_store(get_settings()).write_pandas(make_gold_frame(2_500, seed=5), "claim_features")
    for model in ("catboost", "xgboost"):
        run_task(
            train.train,
            ["--model", model, "--boosting_rounds", "20", "--run_id", "run-1"],
            name="train",
        )
    run_task(evaluate.evaluate, ["--run_id", "run-1"], name="evaluate")
    return fraud_home


def _fairness_then_register() -> dict[str, object]:
    run_task(fairness.fairness, ["--run_id", "run-1"], name="fairness")
    result = run_task(register.register, ["--run_id", "run-1"], name="register")
    return result.materializations[0].metadata


def test_a_verdict_under_fewer_protected_attributes_cannot_promote(
    evaluated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FRAUD_PROTECTED_ATTRIBUTES", json.dumps(["patient_gender"]))
    registered = _fairness_then_register()
    assert registered["promoted"] is False
    assert registry.alias_version(mlflow_client(), "fraud_detector", registry.CHAMPION) is None
