"""Scheduled ingestion lands the landing folder's files incrementally (issue 16).

The daily schedule used to replace bronze with synthetic claims in staging and prod, or
re-land one fixed file every day. Now ingest lands each landing-folder file version not in
the ``landed_files`` ledger, exactly once, quarantines a file that cannot be mapped whole,
and replaces nothing already landed. No Spark here: ingest writes bronze through delta-rs.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from dagster import RunRequest, SensorResult, build_sensor_context

from fraud_assets.checks import CHECK_NO_FILE_QUARANTINED, CHECK_RAW_NOT_EMPTY, declared
from fraud_assets.claims import landing
from fraud_assets.claims.synthetic import generate_claims, write_claims_file
from fraud_assets.lakehouse import LANDED_FILES, LocalDeltaStore
from fraud_assets.resources.workspace import DatabricksWorkspace
from fraud_assets.sensors.new_claims import build_new_claims_sensor
from fraud_assets.tasks._runtime import TaskResult
from fraud_assets.tasks.ingest import SyntheticClaimsRefused, ingest
from fraud_assets_tests.task_support import task_context

BAD = Path(__file__).parent / "data" / "bad_inputs"


@pytest.fixture
def staging(fraud_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Staging on a laptop: its landing folder, where no synthetic claims are made."""
    monkeypatch.setenv("FRAUD_TARGET", "staging")
    folder = fraud_home / "landing"
    folder.mkdir()
    return folder


def _drop(folder: Path, name: str, rows: int, *, seed: int, at: int) -> Path:
    """A claims file landed at ``at`` seconds (its mtime orders the files)."""
    prefix = name.split(".")[0].upper() + "-"
    path = write_claims_file(generate_claims(rows, seed=seed, id_prefix=prefix), folder / name)
    os.utime(path, (1_700_000_000 + at, 1_700_000_000 + at))
    return path


def _bronze(home: Path) -> dict[str, int]:
    """Rows per source file in bronze."""
    store = LocalDeltaStore(home)
    if not store.exists("raw_claims"):
        return {}
    frame = store.read_pandas("raw_claims")
    return {Path(k).name: int(v) for k, v in frame.groupby("_source").size().items()}


def _ledger(home: Path) -> list[tuple[str, str, int]]:
    return [
        (Path(e.path).name, e.status, e.rows) for e in landing.read_ledger(LocalDeltaStore(home))
    ]


def _check(result: TaskResult, name: str) -> Any:
    return next(c for c in result.checks if c.check_name == name)


def _meta(result: TaskResult) -> dict[str, Any]:
    return result.materializations[0].metadata


def test_each_landing_file_lands_once_as_its_own_batch_oldest_first(
    fraud_home: Path, staging: Path
) -> None:
    _drop(staging, "b.csv", 4, seed=2, at=20)
    _drop(staging, "a.csv", 3, seed=1, at=10)
    (staging / ".c.csv.tmp").write_text("half written", encoding="utf-8")

    first = ingest(task_context("day1"))

    assert _bronze(fraud_home) == {"a.csv": 3, "b.csv": 4}
    assert _ledger(fraud_home) == [("a.csv", "landed", 3), ("b.csv", "landed", 4)]
    assert [Path(f["file"]).name for f in _meta(first)["landed_files"]] == ["a.csv", "b.csv"]
    batches = LocalDeltaStore(fraud_home).read_pandas("raw_claims").groupby("_source")
    assert {Path(k).name: set(v["_batch_id"]) for k, v in batches} == {
        "a.csv": {landing.stat_file(str(staging / "a.csv")).batch_id},
        "b.csv": {landing.stat_file(str(staging / "b.csv")).batch_id},
    }
    assert all(c.passed for c in first.checks), [c for c in first.checks if not c.passed]

    # The next day: nothing new, nothing replaced or added; a new file lands alone.
    version = LocalDeltaStore(fraud_home).version("raw_claims")
    second = ingest(task_context("day2"))
    assert _meta(second)["files_landed"] == 0
    assert _meta(second)["files_already_in_ledger"] == 2
    assert LocalDeltaStore(fraud_home).version("raw_claims") == version
    assert _check(second, CHECK_RAW_NOT_EMPTY).passed

    _drop(staging, "c.csv", 2, seed=3, at=30)
    third = ingest(task_context("day3"))
    assert _meta(third)["batch_ids"] == [landing.stat_file(str(staging / "c.csv")).batch_id]
    assert _bronze(fraud_home) == {"a.csv": 3, "b.csv": 4, "c.csv": 2}
    assert len(_ledger(fraud_home)) == 3


class _Killed(Exception):
    """Stands in for the process dying between the bronze and the ledger commit."""


def test_a_crash_between_bronze_and_the_ledger_re_lands_the_same_batch(
    fraud_home: Path, staging: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _drop(staging, "a.csv", 3, seed=1, at=10)
    _drop(staging, "b.csv", 4, seed=2, at=20)
    real = landing.record

    def dies_on_b(store: Any, entry: landing.LedgerEntry) -> int:
        if entry.path.endswith("b.csv"):
            raise _Killed
        return real(store, entry)

    monkeypatch.setattr(landing, "record", dies_on_b)
    with pytest.raises(_Killed):
        ingest(task_context("killed"))
    # b's rows are in bronze, but the ledger does not know it.
    assert _bronze(fraud_home) == {"a.csv": 3, "b.csv": 4}
    assert _ledger(fraud_home) == [("a.csv", "landed", 3)]

    monkeypatch.setattr(landing, "record", real)
    ingest(task_context("restarted"))

    assert _bronze(fraud_home) == {"a.csv": 3, "b.csv": 4}  # replaced, not added again
    assert _ledger(fraud_home) == [("a.csv", "landed", 3), ("b.csv", "landed", 4)]
    claim_ids = LocalDeltaStore(fraud_home).read_pandas("raw_claims")["claim_id"]
    assert claim_ids.is_unique


def test_a_file_that_cannot_be_mapped_is_quarantined_whole_and_alerts_once(
    fraud_home: Path, staging: Path
) -> None:
    _drop(staging, "a.csv", 3, seed=1, at=10)
    bad = staging / "partner.csv"
    shutil.copy(BAD / "missing_columns.csv", bad)
    os.utime(bad, (1_700_000_015,) * 2)
    _drop(staging, "c.csv", 2, seed=3, at=30)

    result = ingest(task_context("day1"))

    assert _bronze(fraud_home) == {"a.csv": 3, "c.csv": 2}
    ledger = landing.read_ledger(LocalDeltaStore(fraud_home))
    (quarantined,) = [e for e in ledger if e.status == "quarantined"]
    assert quarantined.path == str(bad) and quarantined.rows == 0
    assert quarantined.reason is not None
    assert "partner.csv" in quarantined.reason and "claim_amount" in quarantined.reason
    check = _check(result, CHECK_NO_FILE_QUARANTINED)
    assert not check.passed and check.severity == "ERROR"
    assert not declared("raw_claims", CHECK_NO_FILE_QUARANTINED).blocking
    assert "partner.csv" in (check.description or "")
    assert check.metadata["quarantined_files"] == [{"file": str(bad), "reason": quarantined.reason}]

    # The next run does not retry it, so the failed check (and its alert) happens once.
    again = ingest(task_context("day2"))
    assert _check(again, CHECK_NO_FILE_QUARANTINED).passed
    assert _meta(again)["files_landed"] == 0

    # The partner sends a fixed file: a new version, so it lands.
    write_claims_file(generate_claims(5, seed=9, id_prefix="P-"), bad)
    fixed = ingest(task_context("day3"))
    assert _meta(fixed)["files_landed"] == 1
    assert _bronze(fraud_home) == {"a.csv": 3, "c.csv": 2, "partner.csv": 5}
    statuses = sorted(
        (Path(e.path).name, e.status) for e in landing.read_ledger(LocalDeltaStore(fraud_home))
    )
    assert statuses == [
        ("a.csv", "landed"),
        ("c.csv", "landed"),
        ("partner.csv", "landed"),
        ("partner.csv", "quarantined"),
    ]


def test_a_fixed_sidecar_mapping_retries_a_quarantined_file(
    fraud_home: Path, staging: Path
) -> None:
    data = _drop(staging, "partner.csv", 3, seed=1, at=10)
    sidecar = staging / "partner.csv.mapping.yaml"
    sidecar.write_text("name: broken\ncolumns: {claim_id: {from: nope}}\n", encoding="utf-8")
    ingest(task_context("day1"))
    assert _ledger(fraud_home) == [("partner.csv", "quarantined", 0)]

    sidecar.unlink()  # the file already has canonical columns
    ingest(task_context("day2"))
    (entry,) = landing.read_ledger(LocalDeltaStore(fraud_home))
    assert (entry.status, entry.rows, entry.batch_id) == (
        "landed",
        3,
        landing.stat_file(str(data)).batch_id,
    )


def test_the_sensor_and_the_schedule_together_land_a_file_once_even_after_a_cursor_reset(
    fraud_home: Path, staging: Path
) -> None:
    _drop(staging, "a.csv", 3, seed=1, at=10)
    sensor = build_new_claims_sensor(volume_client=lambda s: None)  # type: ignore[arg-type,return-value]

    def requests(cursor: str | None) -> list[RunRequest]:
        context = build_sensor_context(
            cursor=cursor, resources={"databricks": DatabricksWorkspace.from_env()}
        )
        result = sensor(context)
        assert isinstance(result, SensorResult)
        return [r for r in result.run_requests or [] if isinstance(r, RunRequest)]

    def run(request: RunRequest, run_id: str) -> TaskResult:
        config = request.run_config["ops"]["raw_claims"]["config"]
        return ingest(task_context(run_id, **{k: v for k, v in config.items() if v}))

    (request,) = requests(None)
    run(request, "sensor-run")
    ingest(task_context("daily-schedule"))  # the schedule's sweep fires too
    (again,) = requests(None)  # the cursor was lost
    replay = run(again, "after-reset")

    assert _meta(replay)["files_landed"] == 0
    assert _bronze(fraud_home) == {"a.csv": 3}
    assert _ledger(fraud_home) == [("a.csv", "landed", 3)]


def test_a_fixed_source_path_lands_once_not_every_day(
    fraud_home: Path, staging: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fixed = write_claims_file(generate_claims(4, seed=1, id_prefix="F"), tmp_path / "f.csv")
    monkeypatch.setenv("FRAUD_SOURCE_PATH", str(fixed))
    ingest(task_context("day1"))
    ingest(task_context("day1"))  # a retry within the run replaces its batch
    second = ingest(task_context("day2"))

    assert _meta(second)["already_landed_as"] == "day1"
    assert _meta(second)["files_landed"] == 0
    assert _bronze(fraud_home) == {"f.csv": 4}


def test_staging_without_a_landing_folder_or_anything_landed_fails_and_says_why(
    fraud_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FRAUD_TARGET", "staging")
    with pytest.raises(SyntheticClaimsRefused, match=r"landing folder .* does not exist") as err:
        ingest(task_context("scheduled"))
    assert "FRAUD_LANDING_DIR" in str(err.value) and "FRAUD_SYNTHETIC_CLAIMS" in str(err.value)

    (fraud_home / "landing").mkdir()
    with pytest.raises(SyntheticClaimsRefused, match="nothing has landed yet"):
        ingest(task_context("scheduled"))
    assert not LocalDeltaStore(fraud_home).exists("raw_claims")


def test_a_synthetic_refresh_empties_the_ledger(
    fraud_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FRAUD_SYNTHETIC_ROWS", "20")
    monkeypatch.setenv("FRAUD_SYNTHETIC_CLAIMS", "false")
    _drop(fraud_home / "landing", "a.csv", 3, seed=1, at=10)
    ingest(task_context("landed"))
    assert _ledger(fraud_home) == [("a.csv", "landed", 3)]

    monkeypatch.setenv("FRAUD_SYNTHETIC_CLAIMS", "true")
    ingest(task_context("demo"))  # bronze replaced: a.csv's rows are gone, so is its row
    assert landing.read_ledger(LocalDeltaStore(fraud_home)) == []
    assert LocalDeltaStore(fraud_home).exists(LANDED_FILES)


def test_on_databricks_the_landing_volume_is_read_through_its_mount(
    fraud_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cluster reads /Volumes/<catalog>/<schema>/landing through its FUSE mount; the
    loopback emulator mounts Volumes under FRAUD_DATABRICKS_FUSE_ROOT instead of /."""
    monkeypatch.setenv("FRAUD_TARGET", "staging")
    monkeypatch.setenv("FRAUD_COMPUTE", "databricks")
    monkeypatch.setenv("FRAUD_DATABRICKS_FUSE_ROOT", str(tmp_path / "fuse"))
    mounted = tmp_path / "fuse" / "Volumes" / "fraud_staging" / "claims" / "landing"
    _drop(mounted, "a.csv", 3, seed=1, at=10)

    result = ingest(task_context("cluster"))

    assert _meta(result)["source"] == "/Volumes/fraud_staging/claims/landing"
    (entry,) = landing.read_ledger(LocalDeltaStore(fraud_home))
    assert entry.path == "/Volumes/fraud_staging/claims/landing/a.csv"
    bronze = LocalDeltaStore(fraud_home).read_pandas("raw_claims")
    assert set(bronze["_source"]) == {"/Volumes/fraud_staging/claims/landing/a.csv"}


def test_the_bundles_landing_volume_on_the_emulator_lands_each_uploaded_file_once(
    fraud_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The staging bundle's landing Volume, deployed into the loopback emulator: files a
    partner uploads through the Files API are listed by the sensor through the SDK, and the
    ingest step reads them through the Volume mount (as a cluster does), each once."""
    from databricks.sdk import WorkspaceClient

    from fraud_assets.sensors import new_claims_sensor
    from fraud_assets_tests.emulator import DatabricksEmulator
    from fraud_assets_tests.emulator.bundle import deploy_volumes

    token = "dapi-emulator-token"
    with DatabricksEmulator(tmp_path / "workspace", token=token) as workspace:
        volumes = deploy_volumes(workspace, "staging")
        # Beside the release wheels' and the audit reports' Volumes.
        assert volumes["landing"] == "/Volumes/fraud_staging/claims/landing"
        assert volumes["pipes"] == "/Volumes/fraud_staging/claims/pipes"
        assert workspace.volume_grants["fraud_staging.claims.landing"] == [
            {"principal": "fraud-ml-engineers", "privileges": ["READ_VOLUME", "WRITE_VOLUME"]}
        ]
        client = WorkspaceClient(host=workspace.host, token=token)
        for name, seed in (("a.csv", 1), ("b.csv", 2)):
            local = write_claims_file(
                generate_claims(3, seed=seed, id_prefix=name[0].upper()), tmp_path / name
            )
            with local.open("rb") as data:
                client.files.upload(f"{volumes['landing']}/{name}", data, overwrite=True)
        for name, value in {
            "FRAUD_TARGET": "staging",
            "FRAUD_COMPUTE": "databricks",
            "DATABRICKS_HOST": workspace.host,
            "DATABRICKS_TOKEN": token,
            "FRAUD_DATABRICKS_FUSE_ROOT": str(workspace.fuse_root),
        }.items():
            monkeypatch.setenv(name, value)
        for name in ("DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET"):
            monkeypatch.delenv(name, raising=False)

        def sensor_runs() -> list[TaskResult]:
            context = build_sensor_context(
                cursor=None, resources={"databricks": DatabricksWorkspace.from_env()}
            )
            result = new_claims_sensor(context)
            assert isinstance(result, SensorResult)
            return [
                ingest(task_context(f"sensor-{i}", **r.run_config["ops"]["raw_claims"]["config"]))
                for i, r in enumerate(result.run_requests or [])
                if isinstance(r, RunRequest)
            ]

        first = sensor_runs()
        sweep = ingest(task_context("daily"))
        replay = sensor_runs()  # a reset cursor requests both files again

    assert [_meta(r)["files_landed"] for r in first] == [1, 1]
    assert _meta(sweep)["files_landed"] == 0
    assert [_meta(r)["files_landed"] for r in replay] == [0, 0]
    ledger = landing.read_ledger(LocalDeltaStore(fraud_home))
    assert sorted(e.path for e in ledger) == [
        "/Volumes/fraud_staging/claims/landing/a.csv",
        "/Volumes/fraud_staging/claims/landing/b.csv",
    ]
    assert _bronze(fraud_home) == {"a.csv": 3, "b.csv": 3}
