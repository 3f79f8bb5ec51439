"""The daily ingestion sweep behind the new-claims sensor: it skips a tick whose every claim
file a successful sensor run already ingested, and runs when any file is untaken."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from dagster import (
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    RunRequest,
    SkipReason,
    build_schedule_context,
    instance_for_test,
)

from fraud_assets import keys
from fraud_assets.claims.landing import list_local_folder
from fraud_assets.resources.workspace import DatabricksWorkspace
from fraud_assets.schedules import INGESTION_SCHEDULE, build_schedules
from fraud_assets.sensors.new_claims import FILE_VERSION_TAG
from fraud_assets.settings import get_settings


@pytest.fixture
def landing(fraud_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Staging's landing folder (no source, no synthetic claims), with no file yet."""
    folder = fraud_home / "landing"
    folder.mkdir()
    monkeypatch.setenv("FRAUD_TARGET", "staging")
    monkeypatch.setenv("FRAUD_LANDING_DIR", str(folder))
    return folder


def _tick(instance: DagsterInstance) -> RunRequest | SkipReason:
    (sweep,) = [s for s in build_schedules(get_settings()) if s.name == INGESTION_SCHEDULE]
    with build_schedule_context(
        instance=instance, resources={"databricks": DatabricksWorkspace.from_env()}
    ) as context:
        result = sweep.evaluate_tick(context)
    if result.skip_message is not None:
        return SkipReason(result.skip_message)
    (request,) = result.run_requests or []
    return request


def _sensor_run(instance: DagsterInstance, file: Path, status: DagsterRunStatus) -> None:
    (landed,) = [f for f in list_local_folder(file.parent) if f.path == str(file)]
    instance.add_run(
        DagsterRun(
            job_name=keys.INGESTION_JOB,
            run_id=str(uuid.uuid4()),
            tags={FILE_VERSION_TAG: landed.run_key},
            status=status,
        )
    )


def test_the_sweep_skips_only_when_a_successful_sensor_run_took_every_file(
    landing: Path,
) -> None:
    with instance_for_test() as instance:
        # Nothing landed yet: the sweep runs (and the step says the folder is empty).
        assert isinstance(_tick(instance), RunRequest)

        first = landing / "claims_1.csv"
        first.write_text("claim_id\n1\n")
        assert isinstance(_tick(instance), RunRequest)

        # The sensor's run of this file failed: the sweep must land it.
        _sensor_run(instance, first, DagsterRunStatus.FAILURE)
        assert isinstance(_tick(instance), RunRequest)

        _sensor_run(instance, first, DagsterRunStatus.SUCCESS)
        skipped = _tick(instance)
        assert isinstance(skipped, SkipReason)
        assert "already ingested by a successful new_claims_sensor run" in str(skipped.skip_message)

        # A new file, or a new version of a taken one, is untaken until its run succeeds.
        second = landing / "claims_2.csv"
        second.write_text("claim_id\n2\n")
        assert isinstance(_tick(instance), RunRequest)
        _sensor_run(instance, second, DagsterRunStatus.SUCCESS)
        assert isinstance(_tick(instance), SkipReason)
        first.write_text("claim_id\n1\n3\n")
        assert isinstance(_tick(instance), RunRequest)

        # Files that are not claim files (in flight, sidecars) are never waited for.
        _sensor_run(instance, first, DagsterRunStatus.SUCCESS)
        (landing / ".claims_3.csv").write_text("claim_id\n")
        (landing / "claims_2.csv.mapping.yaml").write_text("columns: {}\n")
        assert isinstance(_tick(instance), SkipReason)


def test_the_sweep_always_runs_a_configured_source_or_synthetic_claims(
    landing: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with instance_for_test() as instance:
        taken = landing / "claims_1.csv"
        taken.write_text("claim_id\n1\n")
        _sensor_run(instance, taken, DagsterRunStatus.SUCCESS)
        assert isinstance(_tick(instance), SkipReason)

        monkeypatch.setenv("FRAUD_SOURCE_PATH", str(taken))
        assert isinstance(_tick(instance), RunRequest)
        monkeypatch.delenv("FRAUD_SOURCE_PATH")
        monkeypatch.setenv("FRAUD_TARGET", "dev")
        assert isinstance(_tick(instance), RunRequest)
