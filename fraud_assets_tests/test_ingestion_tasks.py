"""The ingest and validate steps in-process: load semantics, idempotence and their checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fraud_assets.checks import (
    CHECK_QUARANTINE_RATE,
    CHECK_RAW_NOT_EMPTY,
    CHECK_RAW_SCHEMA,
    CHECK_RECONCILES,
    CHECK_UNIQUE_CLAIM_ID,
    CHECK_VALUE_RANGES,
)
from fraud_assets.claims.mapping import SourceError
from fraud_assets.claims.schema import REASON_COLUMN
from fraud_assets.claims.synthetic import generate_claims, write_claims_file
from fraud_assets.features.online import ClaimsHistoryView
from fraud_assets.lakehouse import LocalDeltaStore
from fraud_assets.settings import get_settings
from fraud_assets.tasks._runtime import CheckOutcome, TaskResult
from fraud_assets.tasks.ingest import ingest
from fraud_assets.tasks.validate import validate
from fraud_assets_tests.conftest import AUTO_INSURANCE_FILE, needs_auto_insurance_file
from fraud_assets_tests.task_support import task_context

BAD = Path(__file__).parent / "data" / "bad_inputs"
AUTO_FILE = AUTO_INSURANCE_FILE


def _checks(result: TaskResult) -> dict[str, CheckOutcome]:
    return {c.check_name: c for c in result.checks}


def _metadata(result: TaskResult, asset: str) -> dict[str, Any]:
    return next(m.metadata for m in result.materializations if m.asset_key == asset)


@pytest.fixture
def small_synthetic(fraud_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FRAUD_SYNTHETIC_ROWS", "400")
    return fraud_home


def test_synthetic_refresh_file_appends_and_revalidation(
    small_synthetic: Path, spark: Any, tmp_path: Path
) -> None:
    store = LocalDeltaStore(small_synthetic)

    landed = ingest(task_context("r1"))
    assert _metadata(landed, "raw_claims")["load_mode"] == "full_refresh"
    assert all(c.passed for c in landed.checks)
    first = validate(task_context("r1"))
    assert all(c.passed for c in first.checks), [c for c in first.checks if not c.passed]
    assert _metadata(first, "claims")["row_count"] == 400
    assert _metadata(first, "claims_quarantine")["row_count"] == 0

    # A file re-sending claims already in silver: appended to bronze, all quarantined.
    resent = write_claims_file(generate_claims(3, seed=42), tmp_path / "resent.csv")
    ingest(task_context("r2", source_path=str(resent)))
    second = validate(task_context("r2"))  # no batch_id: the latest batch in bronze
    silver_meta = _metadata(second, "claims")
    quarantine_meta = _metadata(second, "claims_quarantine")
    assert silver_meta["batch_id"] == "r2"
    assert silver_meta["load_mode"] == "append"
    assert (silver_meta["row_count"], silver_meta["batch_row_count"]) == (400, 0)
    assert quarantine_meta["reasons"] == {"claim_id already in silver …": 3}
    checks = _checks(second)
    assert checks[CHECK_RECONCILES].passed
    assert checks[CHECK_UNIQUE_CLAIM_ID].passed
    # Everything quarantined: the quarantine-rate limit fails as an ERROR (it blocks), and
    # says why the rows went.
    rate = checks[CHECK_QUARANTINE_RATE]
    assert not rate.passed and rate.severity == "ERROR"
    assert rate.metadata["quarantine_rate"] == 1.0
    assert rate.metadata["top_reasons"] == {"claim_id already in silver …": 3}
    assert "claim_id already in silver … (3 rows)" in (rate.description or "")
    assert checks[CHECK_VALUE_RANGES].passed

    # Validating the same batch again changes nothing: its rows are replaced, not added.
    again = validate(task_context("r2-retry", batch_id="r2"))
    assert _metadata(again, "claims")["row_count"] == 400
    assert _metadata(again, "claims_quarantine")["row_count"] == 3
    assert _checks(again)[CHECK_RECONCILES].passed

    ingest(task_context("r3", source_path=str(BAD / "duplicate_ids.csv")))
    third = validate(task_context("r3", batch_id="r3"))
    assert _metadata(third, "claims")["row_count"] == 404  # G1, G2, G3 and the good DUP
    assert _metadata(third, "claims")["online_view_rows"] == 404
    assert _metadata(third, "claims_quarantine")["row_count"] == 6
    reconciled = _checks(third)[CHECK_RECONCILES]
    assert reconciled.passed
    assert reconciled.metadata["bronze_rows"] == 7
    assert len(store.read_arrow("raw_claims")) == 400 + 3 + 7

    # A synthetic load is a full refresh again: silver and quarantine mirror bronze.
    ingest(task_context("r4"))
    fourth = validate(task_context("r4"))
    assert _metadata(fourth, "claims")["row_count"] == 400
    assert _metadata(fourth, "claims_quarantine")["row_count"] == 0
    # The online view mirrors silver: rebuilt with it, not added to.
    assert _metadata(fourth, "claims")["online_view_rows"] == 400
    assert len(store.read_arrow("raw_claims")) == 400
    assert store.version("claims") == _metadata(fourth, "claims")["delta_version"]


def test_two_batches_landed_before_one_validate_both_reach_silver(
    small_synthetic: Path, spark: Any, tmp_path: Path
) -> None:
    # Issue 14, finding 7: the first of two batches ended in neither silver nor quarantine
    # while the reconciliation check passed.
    store = LocalDeltaStore(small_synthetic)
    ingest(task_context("r1"))
    validate(task_context("r1"))
    first = write_claims_file(generate_claims(5, seed=1, id_prefix="A"), tmp_path / "a.csv")
    second = write_claims_file(generate_claims(4, seed=2, id_prefix="B"), tmp_path / "b.csv")
    ingest(task_context("r2", source_path=str(first)))
    ingest(task_context("r3", source_path=str(second)))

    result = validate(task_context("r4"))  # no batch_id: every batch not validated yet
    silver = store.read_pandas("claims")
    assert len(silver) == 400 + 5 + 4
    assert silver.groupby("_batch_id").size().to_dict() == {"r1": 400, "r2": 5, "r3": 4}
    silver_meta = _metadata(result, "claims")
    assert silver_meta["batch_ids"] == ["r2", "r3"]
    assert silver_meta["batch_row_count"] == 9
    # Each validated batch's silver rows reach the local online view that real-time
    # scoring reads history from.
    view = ClaimsHistoryView.for_settings(get_settings())
    assert silver_meta["online_view_rows"] == view.row_count() == 409
    reconciled = _checks(result)[CHECK_RECONCILES]
    assert reconciled.passed
    assert reconciled.metadata["bronze_rows"] == 9

    # With nothing left to validate, the latest batch is validated again (idempotent).
    again = validate(task_context("r5"))
    assert _metadata(again, "claims")["batch_ids"] == ["r3"]
    assert len(store.read_pandas("claims")) == 409
    assert _metadata(again, "claims")["online_view_rows"] == view.row_count() == 409


class _Killed(Exception):
    """Stands in for the process dying between the silver and the quarantine commit."""


def test_a_batch_cut_short_between_its_two_commits_is_finished_by_the_next_validate(
    small_synthetic: Path, spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issue 14, finding 8: a kill between the silver and the quarantine commit left the
    # batch's quarantined rows in neither table, and a later validate never went back to it.
    store = LocalDeltaStore(small_synthetic)
    ingest(task_context("r1"))
    validate(task_context("r1"))
    ingest(task_context("r2", source_path=str(BAD / "duplicate_ids.csv")))
    later = write_claims_file(generate_claims(4, seed=2, id_prefix="B"), tmp_path / "b.csv")
    ingest(task_context("r3", source_path=str(later)))

    real = LocalDeltaStore.replace_rows_spark

    def killed(self: LocalDeltaStore, df: Any, name: str, *, column: str, value: str) -> int:
        if name == "claims_quarantine" and value == "r2":
            raise _Killed
        return real(self, df, name, column=column, value=value)

    monkeypatch.setattr(LocalDeltaStore, "replace_rows_spark", killed)
    with pytest.raises(_Killed):
        validate(task_context("r4"))
    monkeypatch.setattr(LocalDeltaStore, "replace_rows_spark", real)

    result = validate(task_context("r5"))
    assert _metadata(result, "claims")["batch_ids"] == ["r2", "r3"]
    assert _checks(result)[CHECK_RECONCILES].passed
    counts = {
        table: store.read_pandas(table).groupby("_batch_id").size().to_dict()
        for table in ("raw_claims", "claims", "claims_quarantine")
    }
    for batch in ("r2", "r3"):
        assert counts["raw_claims"][batch] == counts["claims"].get(batch, 0) + counts[
            "claims_quarantine"
        ].get(batch, 0)
    assert counts["claims_quarantine"]["r2"] > 0


def test_a_retried_ingest_replaces_its_batch(small_synthetic: Path) -> None:
    path = str(BAD / "crlf.csv")
    ingest(task_context("r1", source_path=path))
    ingest(task_context("r1", source_path=path))  # a step retry within the same run
    bronze = LocalDeltaStore(small_synthetic).read_pandas("raw_claims")
    assert bronze["claim_id"].tolist() == ["G1", "G2", "G3"]


def test_a_claim_dated_year_zero_is_quarantined_and_silver_stays_readable(
    small_synthetic: Path, spark: Any
) -> None:
    """Issue 14: one row dated 0000-01-01 passed validation, and silver could never be read
    back (``ValueError: year 0 is out of range``), so every later run failed."""
    ingest(task_context("r1", source_path=str(BAD / "bad_dates.csv")))
    validate(task_context("r1", batch_id="r1"))
    store = LocalDeltaStore(small_synthetic)
    silver = store.read_pandas("claims")
    assert sorted(silver["claim_id"]) == ["G1", "G2", "G3"]
    quarantine = store.read_pandas("claims_quarantine").set_index("claim_id")
    assert "claim_date 0000-01-01 is before 1900-01-01" in quarantine.loc["D5", REASON_COLUMN]


def test_a_header_only_file_lands_an_empty_batch(small_synthetic: Path, spark: Any) -> None:
    landed = ingest(task_context("r1", source_path=str(BAD / "header_only.csv")))
    not_empty = _checks(landed)[CHECK_RAW_NOT_EMPTY]
    assert not not_empty.passed
    assert (
        not_empty.description is not None and "has a header but no records" in not_empty.description
    )
    assert _checks(landed)[CHECK_RAW_SCHEMA].passed
    validated = validate(task_context("r1", batch_id="r1"))
    assert _checks(validated)[CHECK_RECONCILES].passed
    assert _metadata(validated, "claims")["batch_row_count"] == 0
    # Without a batch id the step said "materialize raw_claims first", which it just was.
    with pytest.raises(ValueError, match="raw_claims holds no rows: its latest load") as error:
        validate(task_context("r2"))
    assert "header but no records" in str(error.value)


def test_files_that_cannot_be_ingested_fail_the_step_and_write_nothing(
    small_synthetic: Path,
) -> None:
    with pytest.raises(SourceError, match=r"missing_columns\.csv.*claim_amount"):
        ingest(task_context("r1", source_path=str(BAD / "missing_columns.csv")))
    with pytest.raises(SourceError, match=r"empty\.csv: the file is empty"):
        ingest(task_context("r1", source_path=str(BAD / "empty.csv")))
    assert not LocalDeltaStore(small_synthetic).exists("raw_claims")


def test_a_mapping_without_a_source_is_refused(
    small_synthetic: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FRAUD_SOURCE_MAPPING", "auto_insurance_claims")
    with pytest.raises(ValueError, match="no source path is"):
        ingest(task_context("r1"))


def test_a_source_given_to_the_run_brings_its_own_mapping(
    small_synthetic: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The sensor passes a canonical file with no mapping: the settings' mapping must not apply.
    monkeypatch.setenv("FRAUD_SOURCE_MAPPING", "auto_insurance_claims")
    landed = ingest(task_context("r1", source_path=str(BAD / "bom.csv")))
    assert _metadata(landed, "raw_claims")["mapping"] == "canonical"
    assert _metadata(landed, "raw_claims")["row_count"] == 3


@needs_auto_insurance_file
def test_the_real_auto_insurance_file_end_to_end(
    small_synthetic: Path, spark: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FRAUD_SOURCE_PATH", str(AUTO_FILE))
    monkeypatch.setenv("FRAUD_SOURCE_MAPPING", "auto_insurance_claims")
    landed = ingest(task_context("auto"))
    assert _metadata(landed, "raw_claims")["row_count"] == 1000
    validated = validate(task_context("auto"))
    assert all(c.passed for c in validated.checks), [c for c in validated.checks if not c.passed]
    assert _metadata(validated, "claims")["row_count"] == 999
    quarantine = LocalDeltaStore(small_synthetic).read_pandas("claims_quarantine")
    assert quarantine["_reason"].tolist() == [
        "umbrella_limit: -1000000 is below 0 "
        "(an umbrella limit is a coverage amount and cannot be negative)"
    ]
    silver = LocalDeltaStore(small_synthetic).read_pandas("claims")
    assert silver["is_fraud"].sum() == 247 - int(quarantine["is_fraud"].astype(int).sum())
    assert (silver["provider_specialty"] == "None").sum() >= 90
