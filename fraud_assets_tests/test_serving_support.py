"""A real MLflow registry for the serving tests: XGBoost probability pyfuncs, two versions.

Models are trained on the small synthetic gold frames of ``gold_frames`` and logged
exactly as the training step logs them (``fraud_assets.ml.runs.log_training_run``), so the
service is tested against the artifact it serves in production.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from fraud_assets.ml import registry
from fraud_assets.ml.pyfunc import ModelType
from fraud_assets.ml.runs import TrainingData, log_training_run
from fraud_assets.ml.tracking import configure_mlflow, mlflow_client
from fraud_assets.ml.training import TrainingParams, reference_sample, split_gold, train_model
from fraud_assets.settings import FraudSettings
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
