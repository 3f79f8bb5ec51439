"""Every file in the bad-input corpus: each row ends in silver or in quarantine with its reason."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from fraud_assets.claims.mapping import (
    EmptySourceError,
    SourceError,
    bronze_table,
    load_mapping,
    read_source,
)
from fraud_assets.claims.schema import REASON_COLUMN, ROW_NUMBER_COLUMN
from fraud_assets.claims.validation import validate_batch
from fraud_assets.settings import Thresholds

BAD = Path(__file__).parent / "data" / "bad_inputs"
GOOD_ROWS: dict[int, str | None] = {1: None, 2: None, 3: None}

EXPECTED: dict[str, dict[int, str | None]] = {
    "crlf.csv": GOOD_ROWS,
    "bom.csv": GOOD_ROWS,
    "wrong_types.csv": {
        **GOOD_ROWS,
        4: "claim_amount 'abc' is not a finite number",
        5: "num_procedures 'two' is not a whole number",
        6: "patient_age '40.5' is not a whole number",
        7: "is_fraud 'maybe' is not 0 or 1",
        8: "claim_amount 'NaN' is not a finite number",
    },
    "bad_dates.csv": {
        **GOOD_ROWS,
        4: "service_date '2024-13-45' is not a date (YYYY-MM-DD)",
        5: "claim_date '03/05/2024' is not a date (YYYY-MM-DD)",
        6: "claim_date '2024-02-30' is not a date (YYYY-MM-DD)",
        7: "service_date 2024-04-01 is after claim_date 2024-03-05",
        # Issue 14: year 0 parsed, landed in silver and made it unreadable for delta-rs.
        8: "claim_date 0000-01-01 is before 1900-01-01; "
        "service_date 0000-01-01 is before 1900-01-01",
        9: "service_date 1899-12-31 is before 1900-01-01",
        10: "claim_date 2100-01-01 is after 2099-12-31",
    },
    "negative_amounts.csv": {
        **GOOD_ROWS,
        4: "claim_amount -50.0 is below 0",
        5: "length_of_stay -1 is below 0",
        6: "num_procedures -2 is below 0",
    },
    "duplicate_ids.csv": {
        **GOOD_ROWS,
        4: "duplicate claim_id in this batch (kept row 1)",
        5: "duplicate claim_id in this batch (kept row 2)",
        6: "claim_amount -1.0 is below 0; duplicate claim_id in this batch (kept row 7)",
        7: None,
    },
    "truncated.csv": {
        **GOOD_ROWS,
        4: "record has 5 fields, the header has 16 (truncated?); "
        "service_date '2024-03-0' is not a date (YYYY-MM-DD); claim_amount is missing; "
        "num_procedures is missing; length_of_stay is missing; procedure_code is missing; "
        "diagnosis_code is missing; provider_specialty is missing; patient_age is missing; "
        "patient_gender is missing; patient_age_group is missing; geographic_region is missing",
    },
    "unterminated_quote.csv": {
        **GOOD_ROWS,
        4: "record has 10 fields, the header has 16 (truncated?); "
        "the file ends inside a quoted field (truncated last record?); "
        "provider_specialty is missing; patient_age is missing; patient_gender is missing; "
        "patient_age_group is missing; geographic_region is missing",
    },
    "tokens.csv": {
        **GOOD_ROWS,
        4: None,  # provider_specialty 'None' is a real category
        5: "provider_id is missing",
        6: "diagnosis_code is missing",
    },
    "header_only.csv": {},
}
MAPPINGS = {"tokens.csv": "tokens.mapping.yaml"}


def _verdicts(spark: Any, name: str) -> dict[int, str | None]:
    mapping = load_mapping(BAD / MAPPINGS[name]) if name in MAPPINGS else None
    landed = read_source(BAD / name, mapping)
    bronze = bronze_table(
        landed.records, source=landed.source, loaded_at=datetime.now(UTC), batch_id="b"
    )
    validated = validate_batch(
        spark.createDataFrame(bronze), thresholds=Thresholds.model_validate({})
    )
    rows = validated.select(ROW_NUMBER_COLUMN, REASON_COLUMN).collect()
    # Nothing is lost or doubled on the way: one verdict per landed record.
    assert len(rows) == bronze.num_rows
    return {int(r[ROW_NUMBER_COLUMN]): r[REASON_COLUMN] for r in rows}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_bad_file_lands_every_row_with_its_verdict(spark: Any, name: str) -> None:
    assert _verdicts(spark, name) == EXPECTED[name]


def test_the_corpus_is_fully_covered() -> None:
    errors_instead_of_rows = {"empty.csv", "missing_columns.csv"}
    files = {p.name for p in BAD.glob("*.csv")}
    assert files == set(EXPECTED) | errors_instead_of_rows


def test_an_empty_file_is_a_clear_error() -> None:
    with pytest.raises(EmptySourceError, match=r"bad_inputs/empty\.csv: the file is empty"):
        read_source(BAD / "empty.csv")


def test_missing_required_columns_are_a_clear_error() -> None:
    with pytest.raises(
        SourceError,
        match=r"missing_columns\.csv: mapping 'canonical' needs column\(s\) \['claim_amount'\]",
    ):
        read_source(BAD / "missing_columns.csv")
