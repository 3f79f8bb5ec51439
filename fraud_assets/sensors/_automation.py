"""Whether the sensors that launch jobs start running: see ``FraudSettings.automation_running``."""

from __future__ import annotations

from dagster import DefaultSensorStatus

from fraud_assets.settings import FraudSettings


def launching_sensor_status(settings: FraudSettings) -> DefaultSensorStatus:
    """Running in a deployed target Dagster orchestrates, else stopped until turned on."""
    if settings.automation_running:
        return DefaultSensorStatus.RUNNING
    return DefaultSensorStatus.STOPPED
