"""Computed fields, dates from parts with a rolling year, and joined files in source mappings."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from fraud_assets.claims.mapping import (
    MappingError,
    SourceError,
    apply_mapping,
    parse_mapping,
    read_source,
)
from fraud_assets.claims.schema import PARSE_ERROR_COLUMN, ROW_NUMBER_COLUMN

# Every required canonical column, so a test mapping only spells the rules it is about.
_FILLER = {
    "claim_id": "{from: id}",
    "patient_id": "{constant: P1}",
    "provider_id": "{constant: PRV1}",
    "claim_date": "{constant: '2024-03-05'}",
    "service_date": "{constant: '2024-03-01'}",
    "claim_amount": "{constant: 10}",
    "num_procedures": "{constant: 1}",
    "length_of_stay": "{constant: 0}",
    "procedure_code": "{constant: X}",
    "diagnosis_code": "{constant: I10}",
    "provider_specialty": "{constant: gp}",
    "patient_age": "{constant: 40}",
    "patient_gender": "{constant: F}",
    "patient_age_group": "{constant: 35-49}",
    "geographic_region": "{constant: West}",
}


def _mapping_text(**rules: str) -> str:
    lines = [f"  {column}: {rule}" for column, rule in {**_FILLER, **rules}.items()]
    return "name: test\ncolumns:\n" + "\n".join(lines) + "\n"


def _frame(**columns: list[str | None]) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    return pd.DataFrame({"id": [f"C{i}" for i in range(1, n + 1)], **columns}, dtype=object)


# --- compute: days_between ---------------------------------------------------------------------


def test_days_between_two_dates_gives_whole_days() -> None:
    mapping = parse_mapping(
        _mapping_text(
            length_of_stay="{compute: days_between, from: [admitted, discharged], "
            "date_format: '%Y-%m-%d', fill_missing: 0}"
        )
    )
    records = apply_mapping(
        _frame(
            admitted=["2024-01-30", "2024-02-28", None, "2023-12-31"],
            discharged=["2024-02-02", "2024-03-01", None, "2023-12-31"],
        ),
        mapping,
    )
    # 2024 is a leap year: Feb 28 to Mar 1 is two days. No admission: an outpatient claim.
    assert records["length_of_stay"].tolist() == ["3", "2", "0", "0"]
    assert records[PARSE_ERROR_COLUMN].isna().all()


def test_days_between_names_column_and_value_of_a_bad_date_and_a_reversed_range() -> None:
    mapping = parse_mapping(
        _mapping_text(
            length_of_stay="{compute: days_between, from: [admitted, discharged], "
            "date_format: {admitted: '%Y-%m-%d', discharged: '%d/%m/%Y'}}"
        )
    )
    records = apply_mapping(
        _frame(
            admitted=["2024-01-30", "2024-02-31", "2024-03-10"],
            discharged=["02/02/2024", "01/03/2024", "05/03/2024"],
        ),
        mapping,
    )
    assert records["length_of_stay"].tolist() == ["3", None, None]
    assert records.loc[1, PARSE_ERROR_COLUMN] == (
        "length_of_stay (from admitted): '2024-02-31' is not a date in format %Y-%m-%d"
    )
    assert records.loc[2, PARSE_ERROR_COLUMN] == (
        "length_of_stay: discharged '05/03/2024' is before admitted '2024-03-10'"
    )
    assert records[ROW_NUMBER_COLUMN].tolist() == [1, 2, 3]
    keep = parse_mapping(
        _mapping_text(
            length_of_stay="{compute: days_between, from: [admitted, discharged], "
            "end_before_start: keep}"
        )
    )
    kept = apply_mapping(_frame(admitted=["2024-03-10"], discharged=["2024-03-05"]), keep)
    assert kept["length_of_stay"].tolist() == ["-5"]
    assert kept[PARSE_ERROR_COLUMN].isna().all()


# --- compute: age_at ---------------------------------------------------------------------------


def test_age_at_counts_whole_years_and_derives_the_age_group() -> None:
    mapping = parse_mapping(
        _mapping_text(
            patient_age="{compute: age_at, from: [born, seen]}",
            patient_age_group="{compute: age_at, from: [born, seen], derive: age_group}",
        )
    )
    records = apply_mapping(
        _frame(
            born=["1980-03-05", "1980-03-06", "2008-02-29", "1950-12-31"],
            seen=["2024-03-05", "2024-03-05", "2023-02-28", "2024-01-01"],
        ),
        mapping,
    )
    # The day before a birthday is still the old age; a 29 February birthday falls on
    # 1 March in other years.
    assert records["patient_age"].tolist() == ["44", "43", "14", "73"]
    assert records["patient_age_group"].tolist() == ["35-49", "35-49", "0-17", "65+"]
    assert records[PARSE_ERROR_COLUMN].isna().all()


def test_age_at_a_birth_after_the_date_or_a_bad_date_is_a_row_reason() -> None:
    mapping = parse_mapping(
        _mapping_text(patient_age="{compute: age_at, from: [born, seen], date_format: '%Y%m%d'}")
    )
    records = apply_mapping(
        _frame(born=["20250101", "19801301", "19800101"], seen=["20240101", "20240101", None]),
        mapping,
    )
    assert records["patient_age"].tolist() == [None, None, None]
    assert records[PARSE_ERROR_COLUMN].tolist() == [
        "patient_age: born '20250101' is after seen '20240101'",
        "patient_age (from born): '19801301' is not a date in format %Y%m%d",
        None,  # a missing date is a missing age, which validation names
    ]


# --- compute: count_present --------------------------------------------------------------------


def test_count_present_counts_the_filled_columns() -> None:
    mapping = parse_mapping(
        "missing_values: ['', NA]\n"
        + _mapping_text(num_procedures="{compute: count_present, from: [proc1, proc2, proc3]}")
    )
    records = apply_mapping(
        _frame(
            proc1=["4019", "4019", None, "NA"],
            proc2=["2724", None, None, " "],
            proc3=["9904", None, None, "NA"],
        ),
        mapping,
    )
    assert records["num_procedures"].tolist() == ["3", "1", "0", "0"]


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("{compute: median, from: [a, b]}", r"compute: Input should be 'days_between'"),
        (
            "{compute: days_between, from: [a, b, c]}",
            r"compute days_between takes 2 from columns \(start, end\), got 3: \['a', 'b', 'c'\]",
        ),
        ("{compute: age_at, from: born}", r"compute age_at takes 2 from columns"),
        ("{compute: count_present, from: []}", r"compute count_present takes at least 1"),
        ("{from: [a, b]}", r"a list of from columns needs compute"),
        (
            "{compute: days_between, from: [a, b], date_format: {c: '%Y'}}",
            r"date_format names \['c'\], which are not among the from columns \['a', 'b'\]",
        ),
        ("{from: a, date_format: {a: '%Y'}}", r"a date_format per column needs compute"),
        ("{from: a, end_before_start: keep}", r"end_before_start applies to compute days_between"),
        (
            "{compute: count_present, from: [a, b], date_format: '%Y'}",
            r"compute count_present reads no dates",
        ),
        ("{compute: date_from_parts, from: [a]}", r"compute date_from_parts takes parts"),
        (
            "{compute: date_from_parts, parts: {year: y, month: m}}",
            r"parts need day, or week_of_month and day_of_week",
        ),
        ("{from: a, not_before: b}", r"not_before applies to compute date_from_parts"),
    ],
)
def test_a_wrong_compute_rule_is_a_mapping_error(rule: str, message: str) -> None:
    with pytest.raises(MappingError, match=rf"broken\.yaml.*columns\.length_of_stay.*{message}"):
        parse_mapping(_mapping_text(length_of_stay=rule), origin="broken.yaml")


# --- joins -------------------------------------------------------------------------------------

JOIN_MAPPING = """
name: joined
missing_values: ["", NA]
joins:
  - file: members.csv
    on: {member: member_id}
    columns: {birth: birth_date, sex: gender, region: region}
  - file: labels/providers.csv
    on: {provider: provider}
    columns: [fraud]
    prefix: provider_
    csv: {delimiter: ";"}
    missing_values: ["?"]
columns:
  claim_id: {from: id}
  patient_id: {from: member}
  provider_id: {from: provider}
  claim_date: {from: filed}
  service_date: {from: filed}
  claim_amount: {from: amount}
  num_procedures: {constant: 1}
  length_of_stay: {constant: 0}
  procedure_code: {constant: X}
  diagnosis_code: {constant: I10}
  provider_specialty: {constant: gp}
  patient_age: {compute: age_at, from: [birth_date, filed]}
  patient_gender: {from: gender, values: {"1": M, "2": F}}
  patient_age_group: {compute: age_at, from: [birth_date, filed], derive: age_group}
  geographic_region: {template: "STATE-{region}"}
  is_fraud: {from: provider_fraud, values: {"Yes": 1, "No": 0}}
"""


def _write_joined_files(folder: Path, *, members: str | None = None) -> Path:
    (folder / "labels").mkdir(exist_ok=True)
    claims = folder / "claims.csv"
    claims.write_text(
        "id,member,provider,filed,amount,note\n"
        "C1,M1,P1,2024-03-05,100,a\n"
        "C2,M2,P2,2024-03-06,200,b\n"
        "C3,M9,P1,2024-03-07,300,c\n"
        "C4,NA,P3,2024-03-08,400,d\n",
        encoding="utf-8",
    )
    (folder / "members.csv").write_text(
        members
        or "member_id,birth,sex,region,plan\nM2,1950-06-01,2,39,gold\nM1,1980-03-05,1,NA,basic\n",
        encoding="utf-8",
    )
    (folder / "labels" / "providers.csv").write_text(
        "provider;fraud\nP1;Yes\nP2;No\nP3;?\n", encoding="utf-8"
    )
    return claims


def test_joined_columns_feed_every_rule_like_claims_columns(tmp_path: Path) -> None:
    landed = read_source(_write_joined_files(tmp_path), parse_mapping(JOIN_MAPPING))
    records = landed.records
    # A left join: every claim stays, in file order; unmatched keys give missing values.
    assert records["claim_id"].tolist() == ["C1", "C2", "C3", "C4"]
    assert records[ROW_NUMBER_COLUMN].tolist() == [1, 2, 3, 4]
    assert records["patient_gender"].tolist() == ["M", "F", None, None]
    assert records["patient_age"].tolist() == ["44", "73", None, None]
    assert records["patient_age_group"].tolist() == ["35-49", "65+", None, None]
    # 'NA' is missing in members.csv (the mapping's tokens), so the template is missing too.
    assert records["geographic_region"].tolist() == [None, "STATE-39", None, None]
    # providers.csv has its own delimiter and its own missing token.
    assert records["is_fraud"].tolist() == ["1", "0", "1", None]
    assert records[PARSE_ERROR_COLUMN].isna().all()
    assert landed.notes["join_unmatched_rows"] == {"members.csv": 2, "labels/providers.csv": 0}
    assert {"birth_date", "gender", "region", "provider_fraud"} <= set(landed.source_columns)
    assert landed.unmapped_columns == ["note"]


def test_a_claim_matching_a_malformed_joined_row_carries_that_rows_reason(
    tmp_path: Path,
) -> None:
    members = "member_id,birth,sex,region\nM1,1980-03-05,1,39,extra\nM2,1950-06-01,2,39\n"
    landed = read_source(
        _write_joined_files(tmp_path, members=members), parse_mapping(JOIN_MAPPING)
    )
    assert landed.records[PARSE_ERROR_COLUMN].tolist() == [
        "members.csv row 1: record has 5 fields, the header has 4 (extra fields dropped)",
        None,
        None,
        None,
    ]


def test_a_repeated_key_in_a_joined_file_names_file_column_rows_and_value(
    tmp_path: Path,
) -> None:
    members = (
        "member_id,birth,sex,region\nM1,1980-03-05,1,39\nM2,1950-06-01,2,39\nM1,1981-01-01,2,4\n"
    )
    claims = _write_joined_files(tmp_path, members=members)
    with pytest.raises(
        SourceError,
        match=r"members\.csv: member_id 'M1' is on rows \[1, 3\]: a joined file needs one row "
        r"per key, or every claim with that key would be repeated",
    ):
        read_source(claims, parse_mapping(JOIN_MAPPING))


def test_joined_files_that_are_missing_or_lack_columns_are_named(tmp_path: Path) -> None:
    claims = _write_joined_files(tmp_path)
    (tmp_path / "labels" / "providers.csv").unlink()
    with pytest.raises(
        SourceError,
        match=r"join file .*labels/providers\.csv \(joins\[1\] of the mapping, joined to "
        r"claims\.csv\) does not exist",
    ):
        read_source(claims, parse_mapping(JOIN_MAPPING))
    claims = _write_joined_files(tmp_path, members="member_id,birth,region\nM1,1980-03-05,39\n")
    with pytest.raises(
        SourceError, match=r"members\.csv: joins\[0\] .* needs column\(s\) \['sex'\]"
    ):
        read_source(claims, parse_mapping(JOIN_MAPPING))
    claims = _write_joined_files(tmp_path)
    absent_key = JOIN_MAPPING.replace("{member: member_id}", "{absent: member_id}")
    with pytest.raises(
        SourceError, match=r"claims\.csv: joins\[0\] .* joins on column\(s\) \['absent'\]"
    ):
        read_source(claims, parse_mapping(absent_key))


def test_a_joined_column_may_not_replace_a_claims_column(tmp_path: Path) -> None:
    claims = _write_joined_files(tmp_path)
    clashing = JOIN_MAPPING.replace("region: region}", "region: note}")
    with pytest.raises(
        SourceError,
        match=r"members\.csv: joins\[0\] .* would add column\(s\) \['note'\], which the claims "
        r"already have: rename them",
    ):
        read_source(claims, parse_mapping(clashing))


def test_a_parquet_claims_file_keeps_its_join_key_column(tmp_path: Path) -> None:
    claims = _write_joined_files(tmp_path)
    parquet = tmp_path / "claims.parquet"
    pd.read_csv(claims, dtype=str).to_parquet(parquet)
    landed = read_source(parquet, parse_mapping(JOIN_MAPPING))
    assert landed.records["patient_gender"].tolist() == ["M", "F", None, None]


@pytest.mark.parametrize(
    ("joins", "message"),
    [
        (
            "[{file: a.csv, on: {k: k}, columns: [x]}, {file: b.csv, on: {k: k}, columns: [x]}]",
            r"joins: more than one join adds column\(s\) \['x'\]",
        ),
        ("[{file: a.csv, on: {}, columns: [x]}]", r"joins\.0\.on: .*at least 1"),
        ("[{file: a.csv, on: {k: k}, columns: []}]", r"joins\.0\.columns: .*at least 1"),
        ("[{file: a.csv, on: {k: k}, columns: [x], how: inner}]", r"joins\.0\.how: Extra inputs"),
    ],
)
def test_a_wrong_join_is_a_mapping_error(joins: str, message: str) -> None:
    with pytest.raises(MappingError, match=rf"broken\.yaml is invalid: {message}"):
        parse_mapping(f"joins: {joins}\n" + _mapping_text(), origin="broken.yaml")
