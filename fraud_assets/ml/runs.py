"""Training runs in MLflow: log one with its evidence, and find the latest one per model.

A run records the booster as a probability pyfunc with a signature and an input example,
its parameters and holdout metrics, feature importance, the Delta version of the gold
table it learned from, the git commit and the pipeline run id, and the PSI reference
sample (``reference/reference.parquet``) that drift monitoring compares against.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.data.delta_dataset_source import DeltaDatasetSource
from mlflow.data.pandas_dataset import PandasDataset, from_pandas
from mlflow.models import infer_signature

from fraud_assets.features import LABEL_COLUMN
from fraud_assets.lakehouse import CLAIM_FEATURES
from fraud_assets.ml import pyfunc
from fraud_assets.ml.pyfunc import MODEL_TYPES, ModelType
from fraud_assets.ml.tracking import mlflow_client
from fraud_assets.ml.training import TrainedModel, library_versions
from fraud_assets.settings import on_databricks_runtime

log = logging.getLogger(__name__)

MODEL_ARTIFACT = "model"
REFERENCE_DIR = "reference"
REFERENCE_ARTIFACT = f"{REFERENCE_DIR}/reference.parquet"
# Every claim the model trained on: drift monitoring leaves them out of the current window.
TRAINING_CLAIMS_ARTIFACT = f"{REFERENCE_DIR}/training_claims.parquet"
IMPORTANCE_ARTIFACT = "feature_importance.json"
INPUT_EXAMPLE_ROWS = 5

# Run tags the later steps search on.
TAG_MODEL_TYPE = "fraud.model_type"
TAG_MODEL_URI = "fraud.model_uri"
TAG_PIPELINE_RUN = "fraud.pipeline_run_id"
TAG_TRAINING_VERSION = "fraud.training_delta_version"
TAG_GIT_COMMIT = "mlflow.source.git.commit"

# MLflow warns that integer columns cannot hold nulls; gold integer features are never null
# (the blocking features_complete check stops a table where one is).
_NON_NULL_INTEGERS_HINT = "Hint: Inferred schema contains integer"


@dataclass(frozen=True)
class TrainingData:
    """The exact gold data a model learned from."""

    location: str
    delta_version: int
    frame: pd.DataFrame


@dataclass(frozen=True)
class TrainingRun:
    """A finished training run and the URI of its logged pyfunc model."""

    run_id: str
    model_type: ModelType
    model_uri: str
    pipeline_run_id: str
    training_delta_version: int


def log_training_run(
    trained: TrainedModel,
    *,
    data: TrainingData,
    reference: pd.DataFrame,
    pipeline_run_id: str,
    git_commit: str,
    params: Mapping[str, Any],
    metrics: Mapping[str, float],
) -> TrainingRun:
    """Log one trained model and its evidence as an MLflow run in the current experiment."""
    spec = trained.spec
    example = _widened(reference[spec.columns].head(INPUT_EXAMPLE_ROWS), spec.numeric)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_NON_NULL_INTEGERS_HINT)
        signature = infer_signature(example, trained.predict_proba(example))
    tags = {
        TAG_MODEL_TYPE: trained.model_type,
        TAG_PIPELINE_RUN: pipeline_run_id,
        TAG_TRAINING_VERSION: str(data.delta_version),
        TAG_GIT_COMMIT: git_commit,
    }
    run_params = {
        **params,
        **trained.library_params,
        "model": trained.model_type,
        "run_id": pipeline_run_id,
        "git_commit": git_commit,
        "training_table": data.location,
        "training_delta_version": data.delta_version,
        "training_rows": trained.training_rows,
        "training_fraud_rate": round(trained.fraud_rate, 6),
        "feature_count": len(spec.columns),
    }
    importance_metrics = {f"importance.{k}": v for k, v in trained.feature_importance.items()}
    dataset = _training_dataset(data)
    with tempfile.TemporaryDirectory(prefix="fraud_model_") as scratch:
        directory = Path(scratch)
        booster_path = trained.save_booster(directory)
        spec_path = directory / "feature_spec.json"
        spec_path.write_text(spec.to_json(), encoding="utf-8")
        reference_path = directory / "reference.parquet"
        reference.to_parquet(reference_path, index=False)
        claims_path = directory / Path(TRAINING_CLAIMS_ARTIFACT).name
        data.frame[["claim_id"]].to_parquet(claims_path, index=False)
        with mlflow.start_run(
            run_name=f"{trained.model_type}-{pipeline_run_id[:8]}", tags=tags
        ) as run:
            mlflow.log_params(run_params)
            mlflow.log_metrics(
                {**metrics, **importance_metrics, "training_seconds": trained.training_seconds}
            )
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=_NON_NULL_INTEGERS_HINT)
                mlflow.log_input(
                    dataset, context="training", tags={"delta_version": str(data.delta_version)}
                )
            mlflow.log_dict(
                {"measure": _importance_measure(trained.model_type), **trained.feature_importance},
                IMPORTANCE_ARTIFACT,
            )
            mlflow.log_artifact(str(reference_path), artifact_path=REFERENCE_DIR)
            mlflow.log_artifact(str(claims_path), artifact_path=REFERENCE_DIR)
            info = mlflow.pyfunc.log_model(
                name=MODEL_ARTIFACT,
                python_model=str(_model_code_file(directory)),
                artifacts={"booster": str(booster_path), "feature_spec": str(spec_path)},
                signature=signature,
                input_example=example,
                pip_requirements=[
                    f"{name}=={version}"
                    for name, version in library_versions(trained.model_type).items()
                ],
            )
            mlflow.set_tag(TAG_MODEL_URI, info.model_uri)
    log.info("logged %s as run %s (%s)", trained.model_type, run.info.run_id, info.model_uri)
    return TrainingRun(
        run_id=run.info.run_id,
        model_type=trained.model_type,
        model_uri=info.model_uri,
        pipeline_run_id=pipeline_run_id,
        training_delta_version=data.delta_version,
    )


def _training_dataset(data: TrainingData) -> PandasDataset:
    """The gold table at its Delta version, as MLflow dataset lineage for the run."""
    if on_databricks_runtime():
        source = DeltaDatasetSource(
            delta_table_name=data.location, delta_table_version=data.delta_version
        )
    else:
        source = DeltaDatasetSource(path=data.location, delta_table_version=data.delta_version)
    return from_pandas(data.frame, source=source, name=CLAIM_FEATURES, targets=LABEL_COLUMN)


def _importance_measure(model_type: ModelType) -> str:
    return "PredictionValuesChange share" if model_type == "catboost" else "total_gain share"


def _widened(frame: pd.DataFrame, numeric: list[str]) -> pd.DataFrame:
    # The signature declares integer features as long and the rest as double: MLflow
    # upcasts int32 to long but refuses int64 for a double column and floats for a long one.
    widened = {
        c: "int64" if pd.api.types.is_integer_dtype(frame[c]) else "float64" for c in numeric
    }
    return frame.astype(widened).reset_index(drop=True)


_SET_MODEL = """

from mlflow.models import set_model  # noqa: E402

set_model(FraudProbabilityModel())
"""


def _model_code_file(directory: Path) -> Path:
    """The pyfunc as an MLflow "model from code" file: the module plus one ``set_model``.

    Nothing is pickled, so the model loads wherever its pip requirements are installed.
    """
    source = Path(pyfunc.__file__).read_text(encoding="utf-8")
    path = directory / "fraud_probability_model.py"
    path.write_text(source + _SET_MODEL, encoding="utf-8")
    return path


def latest_training_run(
    model_type: ModelType, *, experiment_id: str, pipeline_run_id: str | None
) -> TrainingRun:
    """The model's run from this pipeline run if there is one, else its latest finished run."""
    client = mlflow_client()
    base = f"tags.`{TAG_MODEL_TYPE}` = '{model_type}' and attributes.status = 'FINISHED'"
    queries = [base]
    if pipeline_run_id:
        queries.insert(0, f"{base} and tags.`{TAG_PIPELINE_RUN}` = '{pipeline_run_id}'")
    for query in queries:
        found = client.search_runs(
            [experiment_id],
            filter_string=query,
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        if found:
            run = found[0]
            return TrainingRun(
                run_id=run.info.run_id,
                model_type=model_type,
                model_uri=run.data.tags[TAG_MODEL_URI],
                pipeline_run_id=run.data.tags.get(TAG_PIPELINE_RUN, ""),
                training_delta_version=int(run.data.tags[TAG_TRAINING_VERSION]),
            )
    raise LookupError(
        f"no finished {model_type} training run in MLflow experiment {experiment_id}: "
        f"materialize {model_type}_model first"
    )


def latest_training_runs(*, experiment_id: str, pipeline_run_id: str | None) -> list[TrainingRun]:
    """One run per model type: the models model evaluation compares."""
    return [
        latest_training_run(m, experiment_id=experiment_id, pipeline_run_id=pipeline_run_id)
        for m in MODEL_TYPES
    ]
