"""Sensor: every new claim file in the landing folder starts one ingestion run.

The run's ingest step lands the file through the ``landed_files`` ledger, so a file the
ledger holds is not landed again even if this sensor's cursor is reset, and a file whose run
failed is landed by the daily schedule's sweep of the folder.
"""

from __future__ import annotations

from collections.abc import Callable

from dagster import (
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from fraud_assets import keys
from fraud_assets.claims.landing import landing_location, list_landing_folder
from fraud_assets.resources.workspace import DatabricksWorkspace
from fraud_assets.sensors._automation import launching_sensor_status
from fraud_assets.sensors.landing import (
    LandedFile,
    VolumeClient,
    dump_seen,
    list_volume_landing,
    load_seen,
    new_claim_files,
    next_seen,
)
from fraud_assets.settings import FraudSettings, get_settings

NEW_CLAIMS_SENSOR = "new_claims_sensor"
# The file version a sensor run ingests (path@size:mtime), so the daily sweep can tell which
# files a successful sensor run already took (fraud_assets.schedules).
FILE_VERSION_TAG = "fraud_assets/source_file_version"

VolumeClientFactory = Callable[[FraudSettings], VolumeClient]


def list_landing(
    settings: FraudSettings, volume_client: VolumeClientFactory
) -> list[LandedFile] | None:
    """The landing folder's files and its adjudications folder's, or None when a local
    folder does not exist yet."""
    location = landing_location(settings)
    if settings.compute == "databricks":
        return list_volume_landing(volume_client(settings), location)
    return list_landing_folder(str(settings.landing_path))


def build_new_claims_sensor(
    *,
    volume_client: VolumeClientFactory | None = None,
    settings: FraudSettings | None = None,
) -> SensorDefinition:
    """The new-claims sensor. On Databricks it lists the Volume through the ``databricks``
    resource's client; tests may pass a fake ``volume_client`` instead."""

    @sensor(
        name=NEW_CLAIMS_SENSOR,
        job_name=keys.INGESTION_JOB,
        minimum_interval_seconds=60,
        default_status=launching_sensor_status(settings or get_settings()),
        description=(
            "Start ingestion_job for each new *.csv / *.parquet claim file in the landing "
            "folder (FRAUD_LANDING_DIR; a UC Volume on Databricks). A sidecar "
            "<file>.mapping.yaml, else FRAUD_LANDING_MAPPING, maps it onto the claim schema. "
            "The landed_files ledger lands each file version once."
        ),
    )
    def new_claims_sensor(
        context: SensorEvaluationContext, databricks: DatabricksWorkspace
    ) -> SensorResult | SkipReason:
        settings = get_settings()
        listing = list_landing(
            settings, volume_client or (lambda s: databricks.workspace_client(s.databricks))
        )
        if listing is None:
            return SkipReason(f"landing folder {settings.landing_path} does not exist yet")
        seen = load_seen(context.cursor)
        pending = list(new_claim_files(listing, seen, default_mapping=settings.landing_mapping))
        cursor = dump_seen(next_seen(listing, seen, pending))
        if not pending:
            return SensorResult(
                skip_reason=f"no new claim files in {landing_location(settings)}", cursor=cursor
            )
        requests = []
        for claim_file in pending:
            context.log.info(
                "new claim file %s (%d bytes), mapping %s",
                claim_file.file.path,
                claim_file.file.size,
                claim_file.mapping or "none (canonical columns)",
            )
            requests.append(
                RunRequest(
                    run_key=claim_file.file.run_key,
                    run_config={
                        "ops": {
                            "raw_claims": {
                                "config": {
                                    "source_path": claim_file.file.path,
                                    "mapping": claim_file.mapping,
                                }
                            }
                        }
                    },
                    tags={
                        "fraud_assets/trigger": NEW_CLAIMS_SENSOR,
                        "fraud_assets/source_file": claim_file.file.name,
                        FILE_VERSION_TAG: claim_file.file.run_key,
                    },
                )
            )
        return SensorResult(run_requests=requests, cursor=cursor)

    return new_claims_sensor
