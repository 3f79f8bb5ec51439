"""Sensors: new claim files, major drift, failed ERROR checks and failed runs."""

from __future__ import annotations

from dagster import SensorDefinition

from fraud_assets.sensors.check_failures import FAILED_CHECK_SENSOR, failed_check_alert_sensor
from fraud_assets.sensors.drift import DRIFT_SENSOR, drift_retraining_sensor
from fraud_assets.sensors.new_claims import NEW_CLAIMS_SENSOR, build_new_claims_sensor
from fraud_assets.sensors.run_failures import RUN_FAILURE_SENSOR, run_failure_alert_sensor

new_claims_sensor = build_new_claims_sensor()

SENSORS: list[SensorDefinition] = [
    new_claims_sensor,
    drift_retraining_sensor,
    failed_check_alert_sensor,
    run_failure_alert_sensor,
]

__all__ = [
    "DRIFT_SENSOR",
    "FAILED_CHECK_SENSOR",
    "NEW_CLAIMS_SENSOR",
    "RUN_FAILURE_SENSOR",
    "SENSORS",
    "build_new_claims_sensor",
    "drift_retraining_sensor",
    "failed_check_alert_sensor",
    "new_claims_sensor",
    "run_failure_alert_sensor",
]
