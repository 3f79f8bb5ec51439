"""The new-claims sensor: local landing folder and UC Volume listing (fake client)."""

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from dagster import RunRequest, SensorResult, SkipReason, build_sensor_context
from databricks.sdk.service.files import DirectoryEntry

from fraud_assets import keys
from fraud_assets.resources.workspace import DatabricksWorkspace
from fraud_assets.sensors.new_claims import NEW_CLAIMS_SENSOR, build_new_claims_sensor
from fraud_assets.settings import FraudSettings


def _no_workspace(settings: FraudSettings) -> Any:
    raise AssertionError("the local branch must not build a Databricks client")


SENSOR = build_new_claims_sensor(volume_client=_no_workspace)


def _evaluate(cursor: str | None, sensor: Any = SENSOR) -> SensorResult | SkipReason:
    # The sensor only lists files: it needs no instance, only the workspace resource.
    workspace = DatabricksWorkspace.from_env()
    return sensor(build_sensor_context(cursor=cursor, resources={"databricks": workspace}))


def _requests(result: SensorResult | SkipReason) -> list[RunRequest]:
    assert isinstance(result, SensorResult)
    return [r for r in result.run_requests or [] if isinstance(r, RunRequest)]


def _raw_config(request: RunRequest) -> dict[str, Any]:
    return request.run_config["ops"]["raw_claims"]["config"]


def _write(path: Path, text: str = "claim_id,claim_amount\nC1,10.5\n") -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_missing_landing_folder_skips_with_its_path(fraud_home: Path) -> None:
    result = _evaluate(None)

    assert isinstance(result, SkipReason)
    assert str(fraud_home / "landing") in (result.skip_message or "")


def test_each_new_file_starts_one_ingestion_run_with_its_mapping(
    fraud_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FRAUD_LANDING_MAPPING", "canonical_v2")
    landing = fraud_home / "landing"
    landing.mkdir()
    csv = _write(landing / "claims_2025_01.csv")
    parquet = landing / "partner.parquet"
    parquet.write_bytes(b"PAR1 not really parquet; the sensor never opens files")
    sidecar = _write(landing / "partner.parquet.mapping.yaml", "columns: {}\n")
    _write(landing / ".claims_2025_02.csv.tmp123")  # still being written
    _write(landing / "_SUCCESS", "")
    _write(landing / "notes.txt", "not claims")
    os.utime(csv, ns=(1_700_000_000_000_000_000,) * 2)  # older: requested first

    requests = _requests(_evaluate(None))

    assert [_raw_config(r) for r in requests] == [
        {"source_path": str(csv), "mapping": "canonical_v2"},
        {"source_path": str(parquet), "mapping": str(sidecar)},
    ]
    assert requests[0].run_key == f"{csv}@{csv.stat().st_size}:1700000000000"
    assert requests[0].tags["fraud_assets/source_file"] == "claims_2025_01.csv"


def test_seen_files_are_not_requested_again_but_a_replaced_file_is(fraud_home: Path) -> None:
    landing = fraud_home / "landing"
    landing.mkdir()
    first = _write(landing / "a.csv")
    gone = _write(landing / "b.csv")

    result = _evaluate(None)
    assert isinstance(result, SensorResult)
    again = _evaluate(result.cursor)
    assert isinstance(again, SensorResult) and not again.run_requests
    assert again.skip_reason is not None

    _write(first, "claim_id,claim_amount\nC1,10.5\nC2,99.0\n")
    gone.unlink()
    replaced = _evaluate(again.cursor)

    (request,) = _requests(replaced)
    assert _raw_config(request) == {"source_path": str(first), "mapping": None}
    assert request.run_key != _requests(result)[0].run_key
    assert isinstance(replaced, SensorResult)
    # The cursor forgets files that left the folder, so it does not grow without bound.
    assert set(json.loads(replaced.cursor or "{}")["files"]) == {str(first)}


@dataclass
class FakeFiles:
    entries: list[DirectoryEntry]
    listed: list[str] = field(default_factory=list)

    def list_directory_contents(self, directory_path: str) -> list[DirectoryEntry]:
        self.listed.append(directory_path)
        return self.entries


@dataclass
class FakeWorkspace:
    files: FakeFiles


def test_databricks_mode_lists_the_uc_volume(
    fraud_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FRAUD_COMPUTE", "databricks")
    volume = "/Volumes/fraud_dev/claims/landing"
    workspace = FakeWorkspace(
        FakeFiles(
            [
                DirectoryEntry(
                    path=f"{volume}/jan.csv",
                    name="jan.csv",
                    file_size=120,
                    last_modified=1_736_000_000_000,
                    is_directory=False,
                ),
                DirectoryEntry(
                    path=f"{volume}/jan.csv.mapping.yaml",
                    name="jan.csv.mapping.yaml",
                    file_size=40,
                    last_modified=1_736_000_000_000,
                    is_directory=False,
                ),
                DirectoryEntry(path=f"{volume}/archive", name="archive", is_directory=True),
            ]
        )
    )
    built: list[FraudSettings] = []

    def factory(settings: FraudSettings) -> FakeWorkspace:
        built.append(settings)
        return workspace

    sensor = build_new_claims_sensor(volume_client=factory)
    result = _evaluate(None, sensor)

    # Unset FRAUD_LANDING_DIR on Databricks: the bundle's catalog and schema name the Volume.
    assert workspace.files.listed == [volume]
    (request,) = _requests(result)
    assert _raw_config(request) == {
        "source_path": f"{volume}/jan.csv",
        "mapping": f"{volume}/jan.csv.mapping.yaml",
    }
    assert request.run_key == f"{volume}/jan.csv@120:1736000000000"
    assert built and built[0].compute == "databricks"


def test_databricks_mode_honours_an_explicit_volume_folder(
    fraud_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FRAUD_COMPUTE", "databricks")
    monkeypatch.setenv("FRAUD_LANDING_DIR", "/Volumes/main/claims_raw/incoming/payer_a")
    workspace = FakeWorkspace(FakeFiles([]))

    result = _evaluate(None, build_new_claims_sensor(volume_client=lambda s: workspace))

    assert workspace.files.listed == ["/Volumes/main/claims_raw/incoming/payer_a"]
    assert isinstance(result, SensorResult) and result.skip_reason is not None
    assert "no new claim files in /Volumes/main/claims_raw/incoming/payer_a" in (
        result.skip_reason.skip_message or ""
    )


def test_sensor_identity(fraud_home: Path) -> None:
    assert SENSOR.name == NEW_CLAIMS_SENSOR
    assert SENSOR.job_name == keys.INGESTION_JOB


def test_default_sensor_lists_a_volume_through_the_sdk_against_the_emulator(
    fraud_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fraud_assets.sensors import new_claims_sensor
    from fraud_assets_tests.emulator import DatabricksEmulator

    token = "dapi-emulator-token"
    with DatabricksEmulator(tmp_path / "workspace", token=token) as workspace:
        volume = workspace.create_volume("fraud_dev.claims.landing")
        landing = workspace.volumes_root / "fraud_dev" / "claims" / "landing"
        _write(landing / "feb.parquet", "not parsed by the sensor")
        (landing / "nested").mkdir()
        monkeypatch.setenv("FRAUD_COMPUTE", "databricks")
        monkeypatch.setenv("DATABRICKS_HOST", workspace.host)
        monkeypatch.setenv("DATABRICKS_TOKEN", token)
        for name in ("DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET"):
            monkeypatch.delenv(name, raising=False)

        (request,) = _requests(_evaluate(None, new_claims_sensor))

    assert _raw_config(request) == {"source_path": f"{volume}/feb.parquet", "mapping": None}


def test_missing_databricks_credentials_fail_the_tick_not_the_import(
    fraud_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fraud_assets.databricks.credentials import DatabricksCredentialsError
    from fraud_assets.sensors import new_claims_sensor

    monkeypatch.setenv("FRAUD_COMPUTE", "databricks")
    for name in ("DATABRICKS_HOST", "DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    # What `import dagster_databricks` leaves behind when the token is unset.
    monkeypatch.setenv("DATABRICKS_TOKEN", "")

    with pytest.raises(DatabricksCredentialsError, match="DATABRICKS_HOST"):
        _evaluate(None, new_claims_sensor)
