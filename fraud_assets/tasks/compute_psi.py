"""Drift of the latest scored window against the champion's training snapshot (PSI).

The reference is ``reference/reference.parquet`` on the MLflow run behind the registered
model version with alias ``champion``: the data that model learned from, with its own
scores. The current sample is the latest window of ``inference_log`` (batch scores, and the
local scoring service's real-time rows), plus the claims the Databricks serving endpoint
answered since the window started, read from its inference table (``fraud_endpoint_payload``,
absent until an endpoint is deployed and logs a request). Every model feature and the score
get a PSI and a drift level; the report is appended to ``psi_report``, with the rows of each
source in its metadata.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from fraud_assets import keys
from fraud_assets.checks import CHECK_FEATURE_DRIFT, CHECK_SCORE_DRIFT
from fraud_assets.features import CATEGORICAL_FEATURES, NUMERIC_FEATURES, extra_inputs
from fraud_assets.governance import (
    GateVerdict,
    ScoredWindow,
    drift_gates,
    endpoint_window_rows,
    latest_scored_window,
    psi_report,
)
from fraud_assets.governance.charts import png_data_uri, psi_chart
from fraud_assets.lakehouse import (
    ENDPOINT_PAYLOAD,
    INFERENCE_LOG,
    PSI_REPORT,
    TableStore,
    table_store,
)
from fraud_assets.settings import FraudSettings
from fraud_assets.tasks._runtime import (
    CheckOutcome,
    Materialization,
    TaskContext,
    TaskResult,
    run_task,
)

log = logging.getLogger(__name__)

SCORE_COLUMN = "fraud_score"
CHAMPION_ALIAS = "champion"


class DriftInputMissing(LookupError):
    """There is nothing to compare yet: no champion, or no scored window."""


@dataclass(frozen=True)
class ChampionReference:
    """The champion's training snapshot, the claims it trained on, and its model version.

    ``training_claims`` is None for a run logged before the claims were recorded.
    """

    model_name: str
    version: str
    run_id: str
    frame: pd.DataFrame
    training_claims: pd.Index | None = None


def compute_psi(ctx: TaskContext) -> TaskResult:
    settings = ctx.settings
    t = settings.thresholds
    asset_key = keys.PSI_REPORT

    champion = champion_reference(settings)
    store = table_store(settings)
    if not store.exists(INFERENCE_LOG):
        raise DriftInputMissing(
            f"no scored window yet: {store.location(INFERENCE_LOG)} does not exist; "
            "materialize fraud_scores (or send real-time traffic) first"
        )
    log_version = store.version(INFERENCE_LOG)
    window_rows, window = latest_scored_window(
        store.read_pandas(INFERENCE_LOG, version=log_version)
    )
    endpoint_rows, endpoint_metadata = endpoint_claims(store, window)
    if not endpoint_rows.empty:
        window_rows = pd.concat([window_rows, endpoint_rows], ignore_index=True)
    current = without_training_claims(window_rows, champion, window.window_id)
    scores, score_versions = champion_scores(current, champion.version)
    numeric, categorical = monitored_features(champion.frame, current)
    ctx.log.info(
        "PSI of window %s (%d rows) against champion v%s (%d reference rows)",
        window.window_id,
        len(current),
        champion.version,
        len(champion.frame),
    )
    report = psi_report(
        champion.frame,
        current,
        numeric_features=numeric,
        categorical_features=categorical,
        score_column=SCORE_COLUMN,
        current_scores=scores,
        bins=t.psi_bins,
        epsilon=t.psi_epsilon,
        warn=t.psi_warn,
        error=t.psi_error,
        min_bucket_count=t.psi_min_bucket_count,
    )
    gates = drift_gates(report, warn=t.psi_warn, error=t.psi_error)
    evaluated_at = datetime.now(UTC)

    table = report.copy()
    table.insert(0, "run_id", ctx.run_id)
    table.insert(1, "evaluated_at", evaluated_at)
    table.insert(2, "window_id", window.window_id)
    table.insert(3, "champion_version", champion.version)
    table.insert(4, "reference_run_id", champion.run_id)
    table.insert(5, "inference_log_version", log_version)
    version = store.write_pandas(table, PSI_REPORT, mode="append")

    chart = psi_chart(report, warn=t.psi_warn, error=t.psi_error)
    metadata: dict[str, Any] = {
        "row_count": len(table),
        "delta_version": version,
        "table_location": store.location(PSI_REPORT),
        "max_psi": round(gates.max_psi, 6),
        "drift_level": gates.drift_level,
        "drifted_features": {"raw_value": gates.drifted_features, "type": "json"},
        "window_id": window.window_id,
        "window_started_at": window.started_at.isoformat(),
        "reference_rows": len(champion.frame),
        "psi_min_bucket_count": t.psi_min_bucket_count,
        "current_rows": len(current),
        "excluded_training_rows": len(window_rows) - len(current),
        "current_batch_rows": window.batch_rows,
        "current_realtime_rows": window.realtime_rows,
        **endpoint_metadata,
        "score_rows": len(scores),
        "score_model_versions": {"raw_value": score_versions, "type": "json"},
        "champion_version": champion.version,
        "reference_run_id": champion.run_id,
        "inference_log_version": log_version,
        "psi": {
            "raw_value": {
                str(feature): {"psi": round(float(psi), 6), "drift_level": str(level)}
                for feature, psi, level in zip(
                    report["feature"], report["psi"], report["drift_level"], strict=True
                )
            },
            "type": "json",
        },
        "chart": {"raw_value": f"![PSI per feature]({png_data_uri(chart)})", "type": "md"},
    }
    return TaskResult(
        materializations=[Materialization(asset_key, metadata)],
        checks=[
            _check(asset_key, CHECK_FEATURE_DRIFT, gates.feature_drift),
            _check(asset_key, CHECK_SCORE_DRIFT, gates.score_drift),
        ],
    )


def champion_reference(settings: FraudSettings) -> ChampionReference:
    """The training snapshot logged with the model version that holds the champion alias."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from fraud_assets.ml.runs import REFERENCE_ARTIFACT, REFERENCE_DIR, TRAINING_CLAIMS_ARTIFACT
    from fraud_assets.ml.tracking import configure_mlflow, mlflow_client

    configure_mlflow(settings)
    name = settings.registered_model_name
    client = mlflow_client()
    try:
        version = client.get_model_version_by_alias(name, CHAMPION_ALIAS)
    except MlflowException as exc:
        if exc.error_code not in (
            "RESOURCE_DOES_NOT_EXIST",
            "INVALID_PARAMETER_VALUE",
            "NOT_FOUND",
        ):
            raise
        raise DriftInputMissing(
            f"no champion to measure drift against: model {name!r} has no version with alias "
            f"{CHAMPION_ALIAS!r} ({exc.error_code}); run the fraud_pipeline job to promote one"
        ) from None
    if not version.run_id:
        raise DriftInputMissing(
            f"champion {name!r} v{version.version} has no MLflow run, so no training snapshot"
        )
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(
            mlflow.artifacts.download_artifacts(
                run_id=version.run_id, artifact_path=REFERENCE_DIR, dst_path=tmp
            )
        )
        frame = pd.read_parquet(local / Path(REFERENCE_ARTIFACT).name)
        claims_file = local / Path(TRAINING_CLAIMS_ARTIFACT).name
        claims = (
            pd.Index(pd.read_parquet(claims_file)["claim_id"]) if claims_file.exists() else None
        )
    if frame.empty:
        raise ValueError(f"{REFERENCE_ARTIFACT} of run {version.run_id} has no rows")
    return ChampionReference(
        model_name=name,
        version=str(version.version),
        run_id=version.run_id,
        frame=frame,
        training_claims=claims,
    )


def endpoint_claims(store: TableStore, window: ScoredWindow) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Claims the serving endpoint answered since ``window`` started, and metadata saying so.

    The inference table is absent until an endpoint exists and has logged a request (and
    always locally): drift is then measured on the other sources, and the metadata says why.
    """
    location = store.location(ENDPOINT_PAYLOAD)
    if not store.exists(ENDPOINT_PAYLOAD):
        log.info("no endpoint inference table at %s: no endpoint rows in this window", location)
        return pd.DataFrame(), {
            "current_endpoint_rows": 0,
            "endpoint_inference_table": f"{location} (absent: no endpoint request logged yet)",
        }
    found = endpoint_window_rows(store.read_pandas(ENDPOINT_PAYLOAD), since=window.started_at)
    for request_id, why in list(found.skipped.items())[:20]:
        log.warning("endpoint request %s in %s left out of PSI: %s", request_id, location, why)
    return found.rows, {
        "current_endpoint_rows": len(found.rows),
        "endpoint_inference_table": location,
        "endpoint_requests": found.requests,
        "endpoint_requests_skipped": len(found.skipped),
    }


def monitored_features(
    reference: pd.DataFrame, current: pd.DataFrame
) -> tuple[list[str], list[str]]:
    """The numeric and categorical features PSI watches: ``MODEL_FEATURES`` and the
    champion's extra inputs (``xn_*``, ``xc_*`` in its reference) that the window logged.

    An extra the window lacks (rows logged before the champion, or by a scorer that does not
    log extras) is left out rather than read as every value missing.
    """
    extra_numeric, extra_categorical = extra_inputs(reference.columns)
    logged = set(current.columns)
    skipped = sorted(c for c in [*extra_numeric, *extra_categorical] if c not in logged)
    if skipped:
        log.warning("the scored window did not log extra input(s) %s: no PSI for them", skipped)
    return (
        [*NUMERIC_FEATURES, *(c for c in extra_numeric if c in logged)],
        [*CATEGORICAL_FEATURES, *(c for c in extra_categorical if c in logged)],
    )


def without_training_claims(
    window_rows: pd.DataFrame, champion: ChampionReference, window_id: str
) -> pd.DataFrame:
    """The window minus the claims the champion trained on: drift is about claims it never saw.

    The first scoring run scores all of silver, training claims included; compared with
    themselves they would read as no drift by construction.
    """
    if champion.training_claims is None:
        return window_rows
    current = window_rows.loc[~window_rows["claim_id"].isin(champion.training_claims)]
    if current.empty:
        raise DriftInputMissing(
            f"all {len(window_rows)} claims of window {window_id} are in champion "
            f"v{champion.version}'s training data (logged with MLflow run {champion.run_id}): "
            "no new claims to measure drift on yet"
        )
    return current.reset_index(drop=True)


def champion_scores(current: pd.DataFrame, champion_version: str) -> tuple[pd.Series, list[str]]:
    """Scores the champion itself produced; other versions (a challenger's share) would blur it.

    When no current row came from the champion (it was just promoted), every score is used
    and the versions are reported.
    """
    versions = current["model_version"].astype("string")
    present = sorted(str(v) for v in versions.dropna().unique())
    own = current.loc[(versions == champion_version).fillna(False), SCORE_COLUMN]
    if own.empty:
        return current[SCORE_COLUMN], present
    return own, [champion_version]


def _check(asset_key: str, name: str, verdict: GateVerdict) -> CheckOutcome:
    return CheckOutcome.declared(
        asset_key,
        name,
        passed=verdict.passed,
        severity=verdict.severity,
        metadata={**verdict.metadata, "why": verdict.description},
        description=verdict.description,
    )


def main(argv: list[str] | None = None) -> None:
    run_task(compute_psi, argv, name="psi")


if __name__ == "__main__":
    main()
