"""A governed FRAUD_HOME for the fairness and PSI tests: a migrated MLflow store, a
candidate's run and evaluation row, and holdout predictions with or without bias."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from fraud_assets.lakehouse import MODEL_EVALUATION, table_store
from fraud_assets.ml.tracking import configure_mlflow
from fraud_assets.settings import FraudSettings
from fraud_assets.tasks._runtime import TaskResult, run_task
from fraud_assets.tasks.fairness import fairness


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow SQLite database with its schema migrated once: migrations take ~10 s."""
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as TrackingStore

    folder = tmp_path_factory.mktemp("mlflow_template")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    tracking = TrackingStore(uri, str(folder / "unused-artifacts"))
    RegistryStore(uri)
    tracking.engine.dispose()
    return folder / "mlflow.db"


@pytest.fixture
def governed_home(fraud_home: Path, mlflow_template: Path) -> Path:
    """An empty FRAUD_HOME whose MLflow database already has its schema."""
    shutil.copy(mlflow_template, fraud_home / "mlflow.db")
    return fraud_home


def holdout_predictions(
    *, n: int = 4_000, seed: int = 0, bias: bool = False, base_rates: bool = False
) -> pd.DataFrame:
    """Candidate rows and champion rows that are biased (the champion must never be judged).

    ``bias``: the candidate falsely accuses honest women far more often than honest men.
    ``base_rates``: fraud is far more common among women, and the candidate is equally
    accurate for both: it flags more women, yet accuses no honest claimant more than another.
    """
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "claim_id": [f"C{i:06d}" for i in range(n)],
            "patient_id": [f"PAT{i:06d}" for i in rng.integers(0, n // 2, n)],
            "provider_id": [f"PRV{i:04d}" for i in rng.integers(0, n // 20, n)],
            "patient_gender": rng.choice(["F", "M"], n),
            "patient_age_group": rng.choice(["18-34", "35-49", "50-64", "65+"], n),
            "geographic_region": rng.choice(["Northeast", "South", "West"], n),
            "claim_amount": rng.lognormal(6, 1, n),
        }
    )
    female = (frame["patient_gender"] == "F").to_numpy()
    rate = np.where(female, 0.14, 0.01) if base_rates else np.full(n, 0.075)
    frame["is_fraud"] = (rng.random(n) < rate).astype("int32")
    caught = rng.random(n) < 0.8
    false_alarm = rng.random(n) < (np.where(female, 0.10, 0.01) if bias else 0.02)
    frame["decision"] = np.where(frame["is_fraud"] == 1, caught, false_alarm).astype("int32")
    frame["fraud_score"] = np.clip(frame["decision"] * 0.6 + rng.random(n) * 0.4, 0, 1)
    frame["model"] = "xgboost"
    frame["model_role"] = "candidate"
    champion = frame.copy()
    champion["model"] = "fraud_detector"
    champion["model_role"] = "champion"
    champion["decision"] = female.astype("int32")  # wildly unfair: must never be judged
    return pd.concat([frame, champion], ignore_index=True)


def candidate_run(settings: FraudSettings) -> str:
    configure_mlflow(settings)
    with mlflow.start_run(run_name="xgboost-training") as run:
        mlflow.log_param("model_type", "xgboost")
    return run.info.run_id


def write_evaluation(settings: FraudSettings, run_id: str) -> None:
    table_store(settings).write_pandas(
        pd.DataFrame(
            {
                "model": ["xgboost", "catboost"],
                "model_role": ["candidate", "runner_up"],
                "model_uri": [f"runs:/{run_id}/model", "runs:/other/model"],
                "mlflow_run_id": [run_id, "other"],
                "evaluated_at": [datetime.now(UTC)] * 2,
            }
        ),
        MODEL_EVALUATION,
    )


def run_fairness(argv: list[str]) -> TaskResult:
    return run_task(fairness, argv, name="fairness")
