"""The Dagster wiring on small frames, every step in this process (``InProcessCompute``).

Blocking gates stop ``registered_model``, the champion alias moves only behind passing
gates, and the sensors act on what these runs wrote. The same scenarios run once for real,
in subprocesses, in the slow tier (test_training_pipeline, test_governance_assets,
test_demo_scenarios).
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
from dagster import (
    AssetCheckSeverity,
    AssetKey,
    DagsterInstance,
    RunRequest,
    SensorResult,
    build_sensor_context,
    materialize,
)
from dagster._core.execution.stats import StepEventStatus

from fraud_assets import keys
from fraud_assets.assets.features import claim_features
from fraud_assets.assets.governance import psi_report
from fraud_assets.assets.ingestion import raw_claims, validate_claims
from fraud_assets.assets.registry import rollback_champion_job
from fraud_assets.checks import (
    CHECK_FEATURE_DRIFT,
    CHECK_MIN_GROUP_SIZE,
    CHECK_QUARANTINE_RATE,
    CHECK_ROC_AUC_FLOOR,
)
from fraud_assets.claims.synthetic import generate_claims, write_claims_file
from fraud_assets.ml import registry
from fraud_assets.ml.tracking import mlflow_client
from fraud_assets.resources.alerts import AlertResource
from fraud_assets.resources.inprocess_compute import InProcessCompute
from fraud_assets.sensors import drift_retraining_sensor, failed_check_alert_sensor
from fraud_assets.settings import get_settings
from fraud_assets_tests.gold_frames import use_migrated_mlflow_store
from fraud_assets_tests.inprocess_support import (
    champion,
    failed_checks,
    gold_claims,
    inflated,
    log_scored_window,
    model_versions,
    plain,
    step_statuses,
    train_and_register,
    write_claim_features,
)


@pytest.fixture
def small_home(fraud_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """FRAUD_HOME with a migrated MLflow store and a group-size floor a 180-claim holdout meets."""
    use_migrated_mlflow_store(fraud_home)
    monkeypatch.setenv("FRAUD_FAIRNESS__MIN_GROUP_SIZE", "20")
    return fraud_home


def _defs() -> object:
    from fraud_assets.definitions import defs

    return defs


def test_a_failed_fairness_gate_stops_registered_model_and_alerts(
    small_home: Path, dagster_instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_claim_features()
    # No group can be this large: the blocking group-size check fails with ERROR.
    monkeypatch.setenv("FRAUD_FAIRNESS__MIN_GROUP_SIZE", "100000")

    result = train_and_register(dagster_instance)

    assert not result.success
    failed = {e.check_name: e for e in result.get_asset_check_evaluations() if not e.passed}
    assert CHECK_MIN_GROUP_SIZE in failed
    assert all(e.asset_key == AssetKey(keys.FAIRNESS_REPORT) for e in failed.values())
    assert failed[CHECK_MIN_GROUP_SIZE].severity == AssetCheckSeverity.ERROR
    steps = step_statuses(dagster_instance, result.run_id)
    assert steps["model_evaluation"] == StepEventStatus.SUCCESS
    assert steps["fairness_report"] == StepEventStatus.FAILURE
    assert "registered_model" not in steps
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert AssetKey(keys.FAIRNESS_REPORT) in materialized
    assert AssetKey(keys.REGISTERED_MODEL) not in materialized
    assert model_versions() == [] and champion() is None

    with build_sensor_context(
        instance=dagster_instance,
        definitions=_defs(),  # type: ignore[arg-type]
        resources={"alerts": AlertResource(sink="log")},
    ) as context:
        tick = failed_check_alert_sensor(context)
    assert isinstance(tick, SensorResult) and tick.skip_reason is not None
    alerted = sorted(
        f"fairness_report.{name}"
        for name, e in failed.items()
        if e.severity == AssetCheckSeverity.ERROR
    )
    assert tick.skip_reason.skip_message == (
        f"{len(alerted)} failed ERROR check(s) alerted, {len(alerted)} delivered to log: "
        + ", ".join(alerted)
    )


def test_the_champion_moves_only_when_every_gate_passes(
    small_home: Path, dagster_instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_claim_features()

    passing = train_and_register(dagster_instance)

    assert passing.success, failed_checks(passing)
    [registered] = passing.asset_materializations_for_node("registered_model")
    assert plain(registered.metadata)["promoted"] is True
    assert champion() == "1"

    # No model can reach this floor: the blocking quality gate fails.
    monkeypatch.setenv("FRAUD_THRESHOLDS__ROC_AUC_MIN", "1.01")
    failing = train_and_register(dagster_instance)

    assert f"model_evaluation.{CHECK_ROC_AUC_FLOOR}" in failed_checks(failing)
    steps = step_statuses(dagster_instance, failing.run_id)
    assert steps["model_evaluation"] == StepEventStatus.FAILURE
    assert "fairness_report" not in steps and "registered_model" not in steps
    assert failing.asset_materializations_for_node("registered_model") == []
    assert champion() == "1" and model_versions() == ["1"]

    # An operator promotes another version by hand; the rollback job (an op) moves it back.
    name = get_settings().registered_model_name
    second = mlflow.register_model(str(plain(registered.metadata)["model_uri"]), name)
    registry.move_champion(mlflow_client(), name=name, version=second.version, actor="test")
    assert champion() == str(second.version)
    rollback = rollback_champion_job.execute_in_process(
        resources={"compute": InProcessCompute()}, instance=dagster_instance
    )
    assert rollback.success and champion() == "1"
    latest = dagster_instance.get_latest_materialization_event(AssetKey(keys.REGISTERED_MODEL))
    assert latest is not None and latest.run_id == rollback.run_id


def test_major_drift_on_psi_report_requests_retraining(
    small_home: Path, dagster_instance: DagsterInstance
) -> None:
    write_claim_features()
    assert train_and_register(dagster_instance).success
    # New claims (another seed: none the champion trained on), billed at inflated amounts.
    log_scored_window(inflated(gold_claims(seed=6)), window_id="drifted-window")

    monitoring = materialize(
        [psi_report], resources={"compute": InProcessCompute()}, instance=dagster_instance
    )

    [report] = monitoring.asset_materializations_for_node("psi_report")
    assert plain(report.metadata)["drift_level"] == "major"
    drift = {e.check_name: e for e in monitoring.get_asset_check_evaluations()}
    assert not drift[CHECK_FEATURE_DRIFT].passed
    assert drift[CHECK_FEATURE_DRIFT].severity == AssetCheckSeverity.ERROR
    context = build_sensor_context(instance=dagster_instance, definitions=_defs())  # type: ignore[arg-type]
    tick = drift_retraining_sensor(context)
    assert isinstance(tick, SensorResult)
    (request,) = tick.run_requests or []
    assert isinstance(request, RunRequest)
    assert request.job_name in (None, keys.RETRAINING_JOB)
    assert request.tags["fraud_assets/psi_run_id"] == monitoring.run_id


def test_a_failed_blocking_ingestion_check_stops_the_features(
    fraud_home: Path,
    dagster_instance: DagsterInstance,
    spark: object,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    landed = write_claims_file(generate_claims(300, seed=3), tmp_path / "batch.csv")
    # Every claim is billed above this limit: the whole batch is quarantined.
    monkeypatch.setenv("FRAUD_THRESHOLDS__MAX_CLAIM_AMOUNT", "1")

    result = materialize(
        [raw_claims, validate_claims, claim_features],
        resources={"compute": InProcessCompute()},
        instance=dagster_instance,
        run_config={"ops": {"raw_claims": {"config": {"source_path": str(landed)}}}},
        raise_on_error=False,
    )

    assert f"claims.{CHECK_QUARANTINE_RATE}" in failed_checks(result)
    steps = step_statuses(dagster_instance, result.run_id)
    assert steps["raw_claims"] == StepEventStatus.SUCCESS
    assert steps["validate_claims"] == StepEventStatus.FAILURE
    assert "claim_features" not in steps
    quarantined = {
        m.asset_key.to_user_string(): plain(m.metadata)["row_count"]
        for m in result.asset_materializations_for_node("validate_claims")
    }
    assert quarantined == {keys.CLAIMS: 0, keys.CLAIMS_QUARANTINE: 300}
