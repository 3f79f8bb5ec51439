"""The drift sensor: major drift on psi_report starts one retraining run per episode."""

import json
import time

import pytest
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetSelection,
    Config,
    DagsterInstance,
    Definitions,
    MaterializeResult,
    RunRequest,
    SensorResult,
    asset,
    build_sensor_context,
    define_asset_job,
    materialize,
)

from fraud_assets import keys
from fraud_assets.checks import CHECK_FEATURE_DRIFT, CHECK_SCORE_DRIFT
from fraud_assets.sensors.drift import DRIFT_SENSOR, drift_retraining_sensor
from fraud_assets.sensors.drift_policy import DriftCursor


class PsiConfig(Config):
    max_psi: float
    drift_level: str


@asset(
    key=keys.PSI_REPORT,
    check_specs=[
        AssetCheckSpec(CHECK_FEATURE_DRIFT, asset=keys.PSI_REPORT),
        AssetCheckSpec(CHECK_SCORE_DRIFT, asset=keys.PSI_REPORT),
    ],
)
def psi_report(config: PsiConfig) -> MaterializeResult:
    """Stand-in for the governance asset, with its metadata and WARN/ERROR drift checks."""
    severity = AssetCheckSeverity.ERROR if config.max_psi >= 0.2 else AssetCheckSeverity.WARN
    return MaterializeResult(
        metadata={"max_psi": config.max_psi, "drift_level": config.drift_level},
        check_results=[
            AssetCheckResult(
                check_name=name,
                passed=config.max_psi < 0.1,
                severity=severity,
                metadata={"max_psi": config.max_psi},
            )
            for name in (CHECK_FEATURE_DRIFT, CHECK_SCORE_DRIFT)
        ],
    )


@asset(key=keys.CLAIM_FEATURES)
def claim_features() -> None:
    """Stand-in target of the retraining job."""


DEFS = Definitions(
    assets=[psi_report, claim_features],
    jobs=[define_asset_job(keys.RETRAINING_JOB, AssetSelection.assets(keys.CLAIM_FEATURES))],
    sensors=[drift_retraining_sensor],
)


def _psi_run(instance: DagsterInstance, max_psi: float, drift_level: str) -> str:
    config = {"max_psi": max_psi, "drift_level": drift_level}
    result = materialize(
        [psi_report], instance=instance, run_config={"ops": {"psi_report": {"config": config}}}
    )
    return result.run_id


def _evaluate(instance: DagsterInstance, cursor: str | None) -> SensorResult:
    context = build_sensor_context(instance=instance, cursor=cursor, definitions=DEFS)
    result = drift_retraining_sensor(context)
    assert isinstance(result, SensorResult)
    return result


def _skip(result: SensorResult) -> str:
    assert not result.run_requests, f"unexpected run requests {result.run_requests}"
    assert result.skip_reason is not None
    return result.skip_reason.skip_message or ""


def test_sensor_targets_the_retraining_job_in_a_valid_repository() -> None:
    sensor = DEFS.get_repository_def().get_sensor_def(DRIFT_SENSOR)

    assert sensor.job_name == keys.RETRAINING_JOB


def test_no_psi_report_yet_requests_nothing(
    dagster_instance: DagsterInstance, fraud_home: object
) -> None:
    assert "never been materialized" in _skip(_evaluate(dagster_instance, None))


def test_major_drift_requests_one_retraining_run_per_episode(
    dagster_instance: DagsterInstance, fraud_home: object
) -> None:
    _psi_run(dagster_instance, 0.05, "none")
    calm = _evaluate(dagster_instance, None)
    assert "drift_level=none" in _skip(calm)

    drift_run = _psi_run(dagster_instance, 0.34, "major")
    first = _evaluate(dagster_instance, calm.cursor)
    again = _evaluate(dagster_instance, first.cursor)

    (request,) = first.run_requests or []
    assert isinstance(request, RunRequest)
    storage_id = json.loads(first.cursor or "{}")["last_storage_id"]
    assert request.run_key == f"psi_report:{storage_id}"
    assert request.tags["fraud_assets/psi_run_id"] == drift_run
    assert request.tags["fraud_assets/max_psi"] == "0.3400"
    assert "no psi_report materialization since" in _skip(again)

    # Drift monitoring measures again while retraining runs: the cooldown holds.
    _psi_run(dagster_instance, 0.31, "major")
    during = _evaluate(dagster_instance, again.cursor)
    assert "cooldown until" in _skip(during)


def test_after_the_cooldown_a_new_major_measurement_retrains_again(
    dagster_instance: DagsterInstance, fraud_home: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FRAUD_RETRAIN_COOLDOWN_MINUTES", "30")
    _psi_run(dagster_instance, 0.4, "major")
    requested_31_minutes_ago = DriftCursor(
        last_storage_id=0, last_requested_at=time.time() - 31 * 60, last_run_key="psi_report:1"
    )

    result = _evaluate(dagster_instance, requested_31_minutes_ago.dump())

    assert len(result.run_requests or []) == 1


def test_minor_drift_never_retrains(dagster_instance: DagsterInstance, fraud_home: object) -> None:
    _psi_run(dagster_instance, 0.15, "minor")  # WARN checks fail: not a retraining trigger

    assert "drift_level=minor" in _skip(_evaluate(dagster_instance, None))


def test_a_failed_error_drift_check_is_major_even_without_drift_level(
    dagster_instance: DagsterInstance, fraud_home: object
) -> None:
    _psi_run(dagster_instance, 0.25, "unknown")

    result = _evaluate(dagster_instance, None)

    (request,) = result.run_requests or []
    assert isinstance(request, RunRequest)
    assert request.tags["fraud_assets/drift_level"] == "unknown"


def test_a_corrupt_cursor_is_a_clear_error(
    dagster_instance: DagsterInstance, fraud_home: object
) -> None:
    with pytest.raises(ValueError, match="drift sensor cursor is not a DriftCursor"):
        _evaluate(dagster_instance, '{"files": {}}')
