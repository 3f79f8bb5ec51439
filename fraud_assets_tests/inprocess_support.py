"""The real training assets run in this process (``InProcessCompute``) on small gold frames.

A few hundred claims written without Spark, two small boosters: the Dagster wiring (blocking
checks, the champion alias, sensors) is tested in seconds, not in subprocesses.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import mlflow.pyfunc
import pandas as pd
import pyarrow as pa
from dagster import DagsterInstance, ExecuteInProcessResult, materialize
from dagster._core.execution.stats import StepEventStatus

from fraud_assets.assets.evaluation import model_evaluation
from fraud_assets.assets.governance import fairness_report
from fraud_assets.assets.registry import registered_model
from fraud_assets.assets.training import catboost_model, xgboost_model
from fraud_assets.lakehouse import table_store
from fraud_assets.ml import registry
from fraud_assets.ml.scoring import ScoringModel, inference_log_rows, score_batch
from fraud_assets.ml.tracking import configure_mlflow, mlflow_client
from fraud_assets.resources.inprocess_compute import InProcessCompute
from fraud_assets.settings import get_settings
from fraud_assets_tests.gold_frames import make_gold_frame

CLAIMS = 600
# Clear fraud patterns: a 600-claim holdout of 180 still clears the quality floors.
SIGNAL = 0.8
SMALL = {"config": {"boosting_rounds": 30, "max_depth": 4}}
RUN_CONFIG = {"ops": {"catboost_model": SMALL, "xgboost_model": SMALL}}
TRAINING_ASSETS = [
    catboost_model,
    xgboost_model,
    model_evaluation,
    fairness_report,
    registered_model,
]


def gold_claims(*, seed: int) -> pd.DataFrame:
    """A few hundred ``claim_features`` rows with a clear fraud signal."""
    return make_gold_frame(CLAIMS, seed=seed, signal=SIGNAL)


def write_claim_features(*, seed: int = 5) -> None:
    """A small, learnable ``claim_features`` table for the current FRAUD_HOME."""
    table_store(get_settings()).write_pandas(gold_claims(seed=seed), "claim_features")


def train_and_register(instance: DagsterInstance) -> ExecuteInProcessResult:
    """Train both models, gate them and register the winner, every step in this process."""
    return materialize(
        TRAINING_ASSETS,
        resources={"compute": InProcessCompute()},
        instance=instance,
        run_config=RUN_CONFIG,
        raise_on_error=False,
    )


def champion() -> str | None:
    """The version holding the champion alias, if any."""
    configure_mlflow(get_settings())
    version = registry.alias_version(
        mlflow_client(), get_settings().registered_model_name, registry.CHAMPION
    )
    return None if version is None else str(version.version)


def model_versions() -> list[str]:
    configure_mlflow(get_settings())
    name = get_settings().registered_model_name
    return sorted(str(v.version) for v in mlflow_client().search_model_versions(f"name='{name}'"))


def step_statuses(instance: DagsterInstance, run_id: str) -> dict[str, StepEventStatus]:
    """The steps a run started, with how each ended (a step Dagster skipped is absent)."""
    return {
        stat.step_key: stat.status
        for stat in instance.get_run_step_stats(run_id)
        if stat.status is not None
    }


def failed_checks(result: ExecuteInProcessResult) -> set[str]:
    return {
        f"{e.asset_key.to_user_string()}.{e.check_name}"
        for e in result.get_asset_check_evaluations()
        if not e.passed
    }


def inflated(frame: pd.DataFrame) -> pd.DataFrame:
    """The same claims billed at three times the amounts: drift the champion never saw."""
    drifted = frame.copy()
    for column in ("claim_amount", "amount_per_procedure", "provider_avg_amount"):
        drifted[column] = drifted[column] * 3.0
    return drifted


def log_scored_window(features: pd.DataFrame, *, window_id: str) -> None:
    """Score ``features`` with the champion and append them to ``inference_log``, as the
    score step logs a batch (without its Spark feature build)."""
    settings = get_settings()
    configure_mlflow(settings)
    client = mlflow_client()
    name = settings.registered_model_name
    version = registry.champion_version(client, name)
    scoring = ScoringModel(
        model=mlflow.pyfunc.load_model(f"models:/{name}/{version.version}"),
        name=name,
        version=str(version.version),
        alias=registry.CHAMPION,
    )
    threshold = registry.recorded_threshold(
        client, version.run_id, default=settings.thresholds.operating_threshold
    )
    batch = pa.Table.from_pandas(features, preserve_index=False)
    scored_at = datetime.now(UTC)
    scored = score_batch(
        batch, scoring=scoring, threshold=threshold, scored_at=scored_at, batch_id=window_id
    )
    rows = inference_log_rows(
        batch,
        scored,
        scoring=scoring,
        threshold=threshold,
        scored_at=scored_at,
        window_id=window_id,
    )
    table_store(settings).write_arrow(rows, "inference_log", mode="append")


def plain(metadata: Any) -> dict[str, Any]:
    """Metadata values as plain Python values."""
    return {name: getattr(value, "value", value) for name, value in metadata.items()}
