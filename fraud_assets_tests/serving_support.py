"""A real MLflow registry for the serving tests: XGBoost probability pyfuncs, two versions.

Models are trained on the small synthetic gold frames of ``gold_frames`` and logged
exactly as the training step logs them (``fraud_assets.ml.runs.log_training_run``), so the
service is tested against the artifact it serves in production. The registry fixtures and
the request and inference-log helpers here are shared by the ``test_serving_*`` modules.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from fraud_assets.features import MODEL_FEATURES
from fraud_assets.lakehouse import INFERENCE_LOG, table_store
from fraud_assets.ml import registry
from fraud_assets.ml.pyfunc import ModelType
from fraud_assets.ml.runs import TrainingData, log_training_run
from fraud_assets.ml.tracking import configure_mlflow, local_tracking_uri, mlflow_client
from fraud_assets.ml.training import TrainingParams, reference_sample, split_gold, train_model
from fraud_assets.settings import FraudSettings, ServingSettings
from fraud_assets_tests.gold_frames import make_gold_frame

FAST = TrainingParams(boosting_rounds=15, max_depth=3, seed=7)


def gold_frame(seed: int, n_rows: int = 600, *, extras: bool = False) -> pd.DataFrame:
    """Small gold claims; with ``extras``, a mapping's extra inputs as well: a number that is
    sometimes blank (``xn_deductible``) and a code (``xc_hobby``)."""
    frame = make_gold_frame(n_rows, seed=seed, fraud_rate=0.15, holdout_fraction=0.3)
    if extras:
        rng = np.random.default_rng(seed)
        deductible = rng.choice([500.0, 1000.0, 2000.0], n_rows)
        deductible[rng.random(n_rows) < 0.2] = np.nan
        frame["xn_deductible"] = deductible
        frame["xc_hobby"] = np.where(
            frame["is_fraud"].to_numpy() == 1, "chess", rng.choice(["golf", "reading"], n_rows)
        )
    return frame


def register_version(
    settings: FraudSettings,
    *,
    seed: int,
    threshold: float | None = None,
    allowed_protected: Sequence[str] = (),
    model_type: ModelType = "xgboost",
    extras: bool = False,
) -> str:
    """Train, log and register one model version; returns its version number.

    ``threshold`` is logged as the run's chosen operating threshold, as training does;
    ``allowed_protected`` names protected attributes the model may take as inputs.
    """
    configure_mlflow(settings)
    train, _ = split_gold(gold_frame(seed, extras=extras))
    trained = train_model(
        train, model_type=model_type, params=FAST, allowed_protected=allowed_protected
    )
    run = log_training_run(
        trained,
        data=TrainingData(location=str(settings.fraud_home / "gold"), delta_version=0, frame=train),
        reference=reference_sample(train, trained, seed=seed, max_rows=50),
        pipeline_run_id=f"serving-test-{seed}",
        git_commit="test",
        params={} if threshold is None else {"operating_threshold": threshold},
        metrics={},
    )
    version = registry.register_version(
        mlflow_client(),
        name=settings.registered_model_name,
        model_uri=run.model_uri,
        run_id=run.run_id,
        description=f"serving test model, seed {seed}",
    )
    return str(version.version)


def set_alias(settings: FraudSettings, alias: str, version: str) -> None:
    """Move an alias the way the pipeline does (the champion move records its predecessor)."""
    configure_mlflow(settings)
    name = settings.registered_model_name
    if alias == registry.CHAMPION:
        registry.move_champion(mlflow_client(), name=name, version=version, actor="serving-tests")
    elif alias == registry.CHALLENGER:
        registry.set_challenger(mlflow_client(), name=name, version=version)
    else:
        raise ValueError(f"unknown alias {alias!r}")


# The operating threshold each registered version recorded at training.
THRESHOLDS = {"1": 0.3, "2": 0.6}


@pytest.fixture(scope="session")
def empty_mlflow_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow SQLite store with its schema migrated: copying it saves ~10 s per registry."""
    home = tmp_path_factory.mktemp("mlflow_template")
    MlflowClient(tracking_uri=local_tracking_uri(settings_at(home))).search_experiments()
    return home / "mlflow.db"


def with_empty_registry(home: Path, template: Path) -> Path:
    shutil.copyfile(template, home / "mlflow.db")
    return home


@contextmanager
def two_version_registry(home: Path, template: Path, aliases: dict[str, str]) -> Iterator[Path]:
    """``home`` with a registry holding versions 1 and 2 (seeds 1 and 2) and these aliases."""
    home = with_empty_registry(home, template)
    with pytest.MonkeyPatch.context() as patch:
        for name in [n for n in os.environ if n.startswith("FRAUD_")]:
            patch.delenv(name)
        settings = settings_at(home)
        # Each version decides at the threshold chosen when it was trained.
        assert register_version(settings, seed=1, threshold=THRESHOLDS["1"]) == "1"
        assert register_version(settings, seed=2, threshold=THRESHOLDS["2"]) == "2"
        # Both passed every gate, as the register task records, so the challenger decides.
        configure_mlflow(settings)
        for version in ("1", "2"):
            registry.tag_version(
                mlflow_client(),
                settings.registered_model_name,
                version,
                {registry.TAG_GATES_PASSED: "true"},
            )
        for alias, version in aliases.items():
            set_alias(settings, alias, version)
        yield home


@pytest.fixture(scope="module")
def registry_home(
    tmp_path_factory: pytest.TempPathFactory, empty_mlflow_db: Path
) -> Iterator[Path]:
    """A FRAUD_HOME whose registry has version 1 as champion and 2 as challenger."""
    with two_version_registry(
        tmp_path_factory.mktemp("serving_registry"),
        empty_mlflow_db,
        {"champion": "1", "challenger": "2"},
    ) as home:
        yield home


def settings_at(home: Path, **values: Any) -> FraudSettings:
    return FraudSettings(**{"home": home, **values})


def serving_settings(home: Path, **serving: Any) -> FraudSettings:
    # Long flush interval: rows reach the table at shutdown, which these tests rely on. No
    # registry poll unless a test asks for one: the tests move aliases when they choose.
    # Requests carry the gold features unless a test sends canonical claims.
    options = {
        "log_flush_seconds": 300.0,
        "log_flush_rows": 100_000,
        "reload_seconds": 0,
        "request_shape": "features",
    } | serving
    return settings_at(home, serving=ServingSettings(**options))


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    rows = frame[["claim_id", *MODEL_FEATURES]].to_dict(orient="records")
    return [{str(column): value for column, value in row.items()} for row in rows]


def pyfunc_scores(settings: FraudSettings, alias: str, frame: pd.DataFrame) -> np.ndarray:
    """The registered pyfunc's own scores, loaded independently of the service."""
    configure_mlflow(settings)
    model = mlflow.pyfunc.load_model(f"models:/{settings.registered_model_name}@{alias}")
    return np.asarray(model.predict(frame[MODEL_FEATURES].reset_index(drop=True)))


def inference_log(settings: FraudSettings, *answers: httpx.Response) -> pd.DataFrame:
    """The logged rows of these answers' requests (the module's tests share one table)."""
    logged = table_store(settings).read_pandas(INFERENCE_LOG)
    request_ids = {answer.json()["request_id"] for answer in answers}
    return logged[logged["request_id"].isin(request_ids)].reset_index(drop=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
