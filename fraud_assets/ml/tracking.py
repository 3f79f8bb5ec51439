"""Where MLflow tracks runs and registers models, and the provenance every run records.

Locally, tracking and registry share ``sqlite:///$FRAUD_HOME/mlflow.db`` with artifacts under
``$FRAUD_HOME/mlartifacts``. On a Databricks runtime, tracking is the workspace and the
registry is Unity Catalog. Nothing is configured at import time: tasks call
``configure_mlflow`` first.
"""

from __future__ import annotations

import fcntl
import getpass
import logging
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow
from mlflow import MlflowClient

from fraud_assets.settings import FraudSettings, on_databricks_runtime

log = logging.getLogger(__name__)

DEFAULT_EXPERIMENT = "fraud_detector"
UNKNOWN = "unknown"


def local_tracking_uri(settings: FraudSettings) -> str:
    """The SQLite store that holds both runs and the model registry on one machine."""
    return f"sqlite:///{settings.fraud_home / 'mlflow.db'}"


def local_artifact_root(settings: FraudSettings) -> Path:
    return settings.fraud_home / "mlartifacts"


def experiment_name(settings: FraudSettings) -> str:
    return settings.experiment_name or DEFAULT_EXPERIMENT


def configure_mlflow(settings: FraudSettings) -> str:
    """Point MLflow at this mode's tracking server and registry; return the experiment id."""
    name = experiment_name(settings)
    if on_databricks_runtime():
        mlflow.set_tracking_uri("databricks")
        mlflow.set_registry_uri("databricks-uc")
        return str(mlflow.set_experiment(name).experiment_id)

    settings.fraud_home.mkdir(parents=True, exist_ok=True)
    uri = local_tracking_uri(settings)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    # The two training steps start in parallel: without the lock both would create the
    # SQLite schema and the experiment at once, and one of them would fail.
    with _exclusive_lock(settings.fraud_home / ".mlflow.lock"):
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            experiment_id = client.create_experiment(
                name, artifact_location=local_artifact_root(settings).as_uri()
            )
            log.info("created MLflow experiment %r in %s", name, uri)
        else:
            experiment_id = experiment.experiment_id
            if experiment.lifecycle_stage == "deleted":
                client.restore_experiment(experiment_id)
    mlflow.set_experiment(experiment_id=experiment_id)
    return str(experiment_id)


def mlflow_client() -> MlflowClient:
    """A client on the URIs ``configure_mlflow`` set."""
    return MlflowClient(
        tracking_uri=mlflow.get_tracking_uri(), registry_uri=mlflow.get_registry_uri()
    )


@contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _launched_by_dagster() -> bool:
    # Pipes bootstraps through env vars (subprocess, job cluster) or task arguments
    # (serverless, run-now); only presence matters here, so argv is not parsed.
    from dagster_pipes import PipesEnvVarParamsLoader

    return PipesEnvVarParamsLoader().is_dagster_pipes_process() or any(
        arg.startswith("--dagster-pipes-context") for arg in sys.argv
    )


def deployed_by(settings: FraudSettings, launched_by: str | None = None) -> str:
    """Who or what moved a model: the run's launcher, else ``FRAUD_DEPLOYED_BY``, else
    "dagster", else user@host.

    ``launched_by`` is the run's ``fraud_assets/deployed_by`` tag (a CI launch names its
    GitHub actor), which reaches a task as its ``deployed_by`` parameter.
    """
    named = (launched_by or "").strip() or settings.deployed_by
    if named:
        return named
    if _launched_by_dagster():
        return "dagster"
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        # Containers often run as a uid with no passwd entry.
        user = UNKNOWN
    return f"{user}@{socket.gethostname()}"


def mlflow_ui_base(settings: FraudSettings) -> str | None:
    """Where a person opens MLflow: the workspace on Databricks, else ``make mlflow-ui``."""
    if on_databricks_runtime():
        from mlflow.utils.databricks_utils import get_workspace_url

        host = os.environ.get("DATABRICKS_HOST") or get_workspace_url()
        if not host:
            return None
        return (host if host.startswith("http") else f"https://{host}").rstrip("/")
    return settings.mlflow_ui_url.rstrip("/")


def run_url(settings: FraudSettings, run_id: str) -> str | None:
    """A link to the run's page in the MLflow UI (``configure_mlflow`` must have run)."""
    base = mlflow_ui_base(settings)
    if base is None:
        return None
    experiment_id = mlflow_client().get_run(run_id).info.experiment_id
    if on_databricks_runtime():
        return f"{base}/ml/experiments/{experiment_id}/runs/{run_id}"
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}"


def model_version_url(settings: FraudSettings, name: str, version: str) -> str | None:
    """A link to a registered model version: Catalog Explorer on Databricks, else MLflow."""
    base = mlflow_ui_base(settings)
    if base is None:
        return None
    if on_databricks_runtime():
        return f"{base}/explore/data/models/{name.replace('.', '/')}/version/{version}"
    return f"{base}/#/models/{name}/versions/{version}"
