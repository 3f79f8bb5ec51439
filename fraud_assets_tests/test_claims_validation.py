"""Spark validation rules and data-quality checks, on small hand-made frames."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pyarrow as pa

from fraud_assets.claims.mapping import bronze_table
from fraud_assets.claims.schema import (
    CLAIM_COLUMNS,
    REASON_COLUMN,
    ROW_NUMBER_COLUMN,
    SILVER_SCHEMA,
    age_group,
)
from fraud_assets.claims.validation import (
    null_rates,
    quarantine_rate,
    quarantine_rows,
    reason_counts,
    reconcile,
    schema_matches,
    silver_rows,
    unique_claim_ids,
    validate_batch,
    value_ranges,
)
from fraud_assets.settings import Thresholds

DEFAULTS = Thresholds.model_validate({})


def _thresholds(**overrides: float) -> Thresholds:
    return Thresholds.model_validate(overrides)


GOOD: dict[str, str | None] = {
    "claim_id": "C1",
    "patient_id": "PAT1",
    "provider_id": "PRV1",
    "claim_date": "2024-03-05",
    "service_date": "2024-03-01",
    "claim_amount": "120.50",
    "num_procedures": "1",
    "length_of_stay": "0",
    "procedure_code": "99213",
    "diagnosis_code": "I10",
    "provider_specialty": "general_practice",
    "patient_age": "40",
    "patient_gender": "F",
    "patient_age_group": "35-49",
    "geographic_region": "West",
    "is_fraud": "0",
}


def _bronze(spark: Any, rows: list[dict[str, str | None]], batch_id: str = "b1") -> Any:
    records = pd.DataFrame([{**GOOD, **row} for row in rows], columns=CLAIM_COLUMNS)
    table = bronze_table(
        records, source="test.csv", loaded_at=datetime(2024, 1, 1, tzinfo=UTC), batch_id=batch_id
    )
    return spark.createDataFrame(table)


def _reasons(validated: Any) -> dict[int, str | None]:
    rows = validated.select(ROW_NUMBER_COLUMN, REASON_COLUMN).collect()
    return {int(r[ROW_NUMBER_COLUMN]): r[REASON_COLUMN] for r in rows}


def test_a_good_row_becomes_a_typed_silver_row(spark: Any) -> None:
    validated = validate_batch(
        _bronze(spark, [{"num_procedures": "3.0", "is_fraud": None, "claim_amount": " 7 "}]),
        thresholds=DEFAULTS,
    )
    silver = silver_rows(validated).toArrow()
    assert schema_matches(silver.schema, SILVER_SCHEMA).passed
    row = silver.to_pylist()[0]
    assert row["num_procedures"] == 3
    assert row["claim_amount"] == 7.0
    assert row["is_fraud"] is None  # unlabelled claims are valid: they are scored, not trained
    assert str(row["claim_date"]) == "2024-03-05"
    assert quarantine_rows(validated).count() == 0


RULE_CASES: list[tuple[dict[str, str | None], str]] = [
    ({"claim_amount": "abc"}, "claim_amount 'abc' is not a finite number"),
    ({"claim_amount": "Infinity"}, "claim_amount 'Infinity' is not a finite number"),
    ({"num_procedures": "2.5"}, "num_procedures '2.5' is not a whole number"),
    ({"patient_age": "9999999999"}, "patient_age '9999999999' is not a whole number"),
    ({"is_fraud": "2"}, "is_fraud '2' is not 0 or 1"),
    ({"service_date": "2024-3-1"}, "service_date '2024-3-1' is not a date (YYYY-MM-DD)"),
    ({"claim_date": "2023-02-29"}, "claim_date '2023-02-29' is not a date (YYYY-MM-DD)"),
    ({"patient_id": "  "}, "patient_id is missing"),
    ({"claim_id": None}, "claim_id is missing"),
    ({"claim_amount": "-0.01"}, "claim_amount -0.01 is below 0"),
    ({"claim_amount": "2000000"}, "claim_amount 2000000.0 is above 1e+06"),
    ({"patient_age": "121", "patient_age_group": "65+"}, "patient_age 121 is above 120"),
    ({"length_of_stay": "400"}, "length_of_stay 400 is above 365"),
    ({"num_procedures": "-1"}, "num_procedures -1 is below 0"),
    (
        {"service_date": "2024-03-06"},
        "service_date 2024-03-06 is after claim_date 2024-03-05",
    ),
    (
        {"patient_age_group": "65+"},
        "patient_age_group '65+' does not match patient_age 40",
    ),
    # Issue 12 finding 5: a minor was silently banded 18-34.
    (
        {"patient_age": "10", "patient_age_group": "18-34"},
        "patient_age_group '18-34' does not match patient_age 10",
    ),
]


def test_minors_and_claims_without_procedures_are_valid_by_default(spark: Any) -> None:
    rows = [
        {"claim_id": "M1", "patient_age": "10", "patient_age_group": "0-17"},
        {"claim_id": "M2", "patient_age": "0", "patient_age_group": "0-17"},
        {"claim_id": "I1", "num_procedures": "0", "length_of_stay": "4"},
    ]
    validated = validate_batch(_bronze(spark, rows), thresholds=DEFAULTS)
    assert quarantine_rows(validated).count() == 0
    assert [age_group(a) for a in (0, 17, 18, 34, 35, 64, 65, 120)] == [
        "0-17",
        "0-17",
        "18-34",
        "18-34",
        "35-49",
        "50-64",
        "65+",
        "65+",
    ]


def test_each_rule_names_the_column_the_value_and_the_limit(spark: Any) -> None:
    # One batch holds every case (each under its own claim id): one Spark job, not sixteen.
    rows = [{"claim_id": f"R{i}", **override} for i, (override, _) in enumerate(RULE_CASES)]
    reasons = _reasons(validate_batch(_bronze(spark, rows), thresholds=DEFAULTS))
    assert reasons == {i + 1: reason for i, (_, reason) in enumerate(RULE_CASES)}


def test_every_problem_of_a_row_is_listed(spark: Any) -> None:
    validated = validate_batch(
        _bronze(spark, [{"claim_amount": "-5", "patient_gender": None, "claim_date": "x"}]),
        thresholds=DEFAULTS,
    )
    assert _reasons(validated)[1] == (
        "claim_date 'x' is not a date (YYYY-MM-DD); patient_gender is missing; "
        "claim_amount -5.0 is below 0"
    )


def test_thresholds_come_from_settings(spark: Any) -> None:
    strict = _thresholds(max_claim_amount=100.0)
    validated = validate_batch(_bronze(spark, [{}]), thresholds=strict)
    assert _reasons(validated) == {1: "claim_amount 120.5 is above 100"}


def test_the_first_good_row_of_a_claim_id_wins(spark: Any) -> None:
    rows: list[dict[str, str | None]] = [
        {"claim_id": "A", "claim_amount": "-1"},  # bad: loses to the good row after it
        {"claim_id": "A"},
        {"claim_id": "A"},
        {"claim_id": "B"},
    ]
    reasons = _reasons(validate_batch(_bronze(spark, rows), thresholds=DEFAULTS))
    assert reasons == {
        1: "claim_amount -1.0 is below 0; duplicate claim_id in this batch (kept row 2)",
        2: None,
        3: "duplicate claim_id in this batch (kept row 2)",
        4: None,
    }


def test_claim_ids_already_in_silver_are_duplicates(spark: Any) -> None:
    known = spark.createDataFrame(
        pd.DataFrame({"claim_id": ["A", "Z"], "_batch_id": ["older", "older"]})
    )
    rows: list[dict[str, str | None]] = [{"claim_id": "A"}, {"claim_id": "B"}]
    reasons = _reasons(validate_batch(_bronze(spark, rows), thresholds=DEFAULTS, known_ids=known))
    assert reasons == {1: "claim_id already in silver (batch older)", 2: None}


def test_parse_errors_from_landing_quarantine_the_row(spark: Any) -> None:
    records = pd.DataFrame([GOOD], columns=CLAIM_COLUMNS)
    records["_parse_error"] = ["record has 5 fields, the header has 16 (truncated?)"]
    table = bronze_table(records, source="t", loaded_at=datetime.now(UTC), batch_id="b")
    validated = validate_batch(spark.createDataFrame(table), thresholds=DEFAULTS)
    assert _reasons(validated) == {1: "record has 5 fields, the header has 16 (truncated?)"}
    quarantined = quarantine_rows(validated).toArrow()
    assert quarantined.column("claim_id").to_pylist() == ["C1"]  # the row as it landed


def test_reason_counts_group_reasons_by_kind(spark: Any) -> None:
    rows: list[dict[str, str | None]] = [
        {"claim_id": "A", "claim_amount": "-1"},
        {"claim_id": "B", "claim_amount": "-2", "patient_id": None},
        {"claim_id": "C", "claim_amount": "x"},
        {"claim_id": "D"},
    ]
    counts = reason_counts(
        quarantine_rows(validate_batch(_bronze(spark, rows), thresholds=DEFAULTS))
    )
    assert counts == {
        "claim_amount … is below …": 2,
        "patient_id is missing": 1,
        "claim_amount … is not a finite number": 1,
    }


# --- checks ------------------------------------------------------------------------------------


def _numbers(spark: Any, numbers: list[int]) -> Any:
    return spark.createDataFrame([(n,) for n in numbers], schema=f"{ROW_NUMBER_COLUMN} long")


def test_reconcile_passes_only_when_each_row_lands_exactly_once(spark: Any) -> None:
    bronze = _numbers(spark, [1, 2, 3, 4])
    good = reconcile(bronze, _numbers(spark, [1, 2]), _numbers(spark, [3, 4]))
    assert good.passed
    assert good.metadata == {
        "bronze_rows": 4,
        "silver_rows": 2,
        "quarantined_rows": 2,
        "rows_lost": 0,
        "rows_doubled": 0,
        "rows_not_in_bronze": 0,
    }
    lost = reconcile(bronze, _numbers(spark, [1, 2]), _numbers(spark, [3]))
    assert not lost.passed and lost.metadata["rows_lost"] == 1
    # Counts alone would balance here: 4 = 2 + 2, but row 4 is missing and row 3 is doubled.
    doubled = reconcile(bronze, _numbers(spark, [1, 3]), _numbers(spark, [2, 3]))
    assert not doubled.passed
    assert doubled.metadata["rows_doubled"] == 1 and doubled.metadata["rows_lost"] == 1
    stray = reconcile(bronze, _numbers(spark, [1, 2, 9]), _numbers(spark, [3, 4]))
    assert not stray.passed and stray.metadata["rows_not_in_bronze"] == 1
    empty = reconcile(_numbers(spark, []), _numbers(spark, []), _numbers(spark, []))
    assert empty.passed and empty.metadata["bronze_rows"] == 0


def test_unique_claim_ids_reports_examples(spark: Any) -> None:
    silver = spark.createDataFrame(pd.DataFrame({"claim_id": ["A", "B", "B", "C", "C", "C"]}))
    verdict = unique_claim_ids(silver)
    assert not verdict.passed
    assert verdict.metadata["rows"] == 6
    assert verdict.metadata["duplicated_claim_ids"] == 2
    assert sorted(verdict.metadata["examples"]) == ["B", "C"]
    assert unique_claim_ids(spark.createDataFrame(pd.DataFrame({"claim_id": ["A", "B"]}))).passed


def test_schema_check_names_the_offending_column() -> None:
    assert schema_matches(SILVER_SCHEMA, SILVER_SCHEMA).passed
    wider = pa.schema(
        [pa.field(f.name, pa.large_string()) if f.type == pa.string() else f for f in SILVER_SCHEMA]
    )
    assert schema_matches(wider, SILVER_SCHEMA).passed
    wrong = SILVER_SCHEMA.set(
        SILVER_SCHEMA.get_field_index("patient_age"), pa.field("patient_age", pa.string())
    )
    verdict = schema_matches(wrong, SILVER_SCHEMA)
    assert not verdict.passed
    assert verdict.metadata["problems"] == ["patient_age is string, expected int32"]
    missing = schema_matches(SILVER_SCHEMA.remove(0), SILVER_SCHEMA)
    assert not missing.passed
    assert "missing ['claim_id']" in missing.description


def test_null_rates_flag_the_worst_required_column(spark: Any) -> None:
    rows: list[dict[str, str | None]] = [{"provider_id": None}, *[{} for _ in range(9)]]
    verdict = null_rates(_bronze(spark, rows), thresholds=DEFAULTS)
    assert not verdict.passed
    assert verdict.metadata["worst_column"] == "provider_id"
    assert verdict.metadata["null_rates"]["provider_id"] == 0.1
    assert null_rates(_bronze(spark, rows), thresholds=_thresholds(max_null_rate=0.1)).passed


def test_a_quarantine_rate_over_the_limit_blocks_with_its_top_reasons() -> None:
    # Issue 12 finding 5: 43% of inpatient claims quarantined and training went ahead with a
    # WARN. The default limit is 5%, the severity ERROR (blocking), the reasons in the message.
    reasons = {"num_procedures … below …": 430, "claim_amount not a number": 12, "a": 3, "b": 1}
    limit = DEFAULTS.max_quarantine_rate
    assert limit == 0.05
    at_limit = quarantine_rate(
        bronze_rows=1_000, quarantined_rows=50, reasons=reasons, thresholds=DEFAULTS
    )
    assert at_limit.passed
    over = quarantine_rate(
        bronze_rows=1_000, quarantined_rows=446, reasons=reasons, thresholds=DEFAULTS
    )
    assert not over.passed
    assert over.metadata["quarantine_rate"] == 0.446
    assert over.metadata["top_reasons"] == {
        "num_procedures … below …": 430,
        "claim_amount not a number": 12,
        "a": 3,
    }
    assert over.description.startswith("44.6% of the batch quarantined (limit 5%)")
    assert "num_procedures … below … (430 rows)" in over.description
    empty = quarantine_rate(bronze_rows=0, quarantined_rows=0, reasons={}, thresholds=DEFAULTS)
    assert empty.passed


def test_value_ranges_judge_the_silver_rows(spark: Any) -> None:
    validated = validate_batch(_bronze(spark, [{}, {"claim_id": "C2"}]), thresholds=DEFAULTS)
    silver = silver_rows(validated)
    assert value_ranges(silver, thresholds=DEFAULTS).passed
    # A silver row that breaks a range rule (written by something else) fails the check.
    strict = value_ranges(silver, thresholds=_thresholds(max_claim_amount=100.0))
    assert not strict.passed
    assert strict.metadata["silver_rows_out_of_range"] == 2


def test_numbers_are_strict_and_text_is_bounded(spark: Any) -> None:
    """Issue 14, finding 9: Spark's casts accepted Java literals (12d, 12f, 0x1p3), and a NUL
    byte or a 200,000-character id went into silver."""
    rows = [
        {"claim_amount": "12d"},
        {"claim_amount": "12f"},
        {"claim_amount": "0x1p3"},
        {"num_procedures": "3d"},
        {"is_fraud": "1d"},
        {"claim_id": "C\x00NUL"},
        {"claim_id": "C" * 200_000},
        {"claim_amount": "-0", "num_procedures": "+2", "length_of_stay": "1e1"},
    ]
    for i, row in enumerate(rows):
        row.setdefault("claim_id", f"S{i}")
    validated = validate_batch(_bronze(spark, rows), thresholds=DEFAULTS)
    reasons = _reasons(validated)
    assert reasons[1] == "claim_amount '12d' is not a finite number"
    assert reasons[2] == "claim_amount '12f' is not a finite number"
    assert reasons[3] == "claim_amount '0x1p3' is not a finite number"
    assert reasons[4] == "num_procedures '3d' is not a whole number"
    assert reasons[5] == "is_fraud '1d' is not 0 or 1"
    assert reasons[6] == "claim_id holds a control character"
    assert reasons[7] == "claim_id has 200000 characters; the limit is 256"
    assert reasons[8] is None
    [kept] = silver_rows(validated).filter("claim_id = 'S7'").collect()
    assert (kept["claim_amount"], kept["num_procedures"], kept["length_of_stay"]) == (0.0, 2, 10)
    assert str(kept["claim_amount"]) == "0.0"  # not -0.0
