"""The fraud_assets code location."""

from __future__ import annotations

from dagster import Definitions, load_asset_checks_from_modules, load_assets_from_modules

from fraud_assets.assets import (
    evaluation,
    features,
    governance,
    ingestion,
    registry,
    scoring,
    training,
)
from fraud_assets.catalog import catalog_assets
from fraud_assets.executor import fraud_home_executor
from fraud_assets.jobs import ASSET_JOBS
from fraud_assets.resources.defaults import default_resources
from fraud_assets.schedules import SCHEDULES
from fraud_assets.sensors import SENSORS
from fraud_assets.settings import get_settings

_MODULES = [ingestion, features, training, evaluation, governance, registry, scoring]
_SETTINGS = get_settings()

defs = Definitions(
    # Owners, the databricks kind and code links are set here, by the deployment's settings.
    assets=catalog_assets(load_assets_from_modules(_MODULES), _SETTINGS),
    asset_checks=load_asset_checks_from_modules(_MODULES),
    jobs=[*ASSET_JOBS, registry.rollback_champion_job, registry.promote_champion_job],
    schedules=SCHEDULES,
    sensors=SENSORS,
    # The launch style, Volume and job ids are the compute's config, from the settings now.
    resources=default_resources(_SETTINGS),
    # Dagster's multiprocess executor, one run at a time per FRAUD_HOME.
    executor=fraud_home_executor,
)
