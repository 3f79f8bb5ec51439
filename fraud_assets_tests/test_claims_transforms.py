"""Computed fields, dates from parts with a rolling year, and joined files in source mappings."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from fraud_assets.claims.mapping import (
    MappingError,
    SourceError,
    apply_mapping,
    bronze_table,
    load_mapping,
    packaged_mappings,
    parse_mapping,
    read_source,
)
from fraud_assets.claims.schema import (
    PARSE_ERROR_COLUMN,
    REASON_COLUMN,
    ROW_NUMBER_COLUMN,
    SILVER_SCHEMA,
    age_group,
)
from fraud_assets.claims.validation import schema_matches, silver_rows, validate_batch
from fraud_assets.settings import Thresholds
from fraud_assets_tests.multi_file_claims import PROCEDURE_COLUMNS, write_multi_file_claims

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


def test_days_between_with_only_one_date_is_a_row_reason_not_a_filled_zero() -> None:
    mapping = parse_mapping(
        _mapping_text(
            length_of_stay="{compute: days_between, from: [admitted, discharged], fill_missing: 0}"
        )
    )
    records = apply_mapping(
        _frame(admitted=["2024-01-30", None], discharged=[None, "2024-02-02"]), mapping
    )
    assert records[PARSE_ERROR_COLUMN].tolist() == [
        "length_of_stay: admitted '2024-01-30' has no discharged",
        "length_of_stay: discharged '2024-02-02' has no admitted",
    ]


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
    # Many repeats: the first key's first rows, and how many keys repeat.
    rows = [f"M{i % 3},1980-03-05,1,39" for i in range(20)]
    claims = _write_joined_files(tmp_path, members="member_id,birth,sex,region\n" + "\n".join(rows))
    with pytest.raises(
        SourceError,
        match=r"members\.csv: member_id 'M0' is on rows \[1, 4, 7, 10, 13, \.\.\.\] \(3 keys "
        r"are on more than one row\)",
    ):
        read_source(claims, parse_mapping(JOIN_MAPPING))


def test_joined_files_that_are_missing_empty_unreadable_or_lacking_columns_are_named(
    tmp_path: Path,
) -> None:
    claims = _write_joined_files(tmp_path)
    (tmp_path / "labels" / "providers.csv").unlink()
    with pytest.raises(
        SourceError,
        match=r"join file .*labels/providers\.csv \(joins\[1\] of the mapping, joined to "
        r"claims\.csv\) does not exist",
    ):
        read_source(claims, parse_mapping(JOIN_MAPPING))
    claims = _write_joined_files(tmp_path, members="\n")
    with pytest.raises(SourceError, match=r"join file .*members\.csv \(joins\[0\] .*\) is empty"):
        read_source(claims, parse_mapping(JOIN_MAPPING))
    claims = _write_joined_files(tmp_path)
    (tmp_path / "members.csv").write_bytes(
        "member_id,birth,sex,region\nM1,1980,1,Zürich\n".encode("latin-1")
    )
    with pytest.raises(SourceError, match=r"members\.csv: .*not utf-8"):
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


def test_parquet_claims_and_parquet_joined_files_join_like_csv(tmp_path: Path) -> None:
    claims = _write_joined_files(tmp_path)
    parquet = tmp_path / "claims.parquet"
    # The key column is read from Parquet although no rule reads it (only the join does).
    pd.read_csv(claims, dtype=str, keep_default_na=False).to_parquet(parquet)
    members = pd.read_csv(tmp_path / "members.csv", dtype=str, keep_default_na=False)
    members.to_parquet(tmp_path / "members.parquet")
    mapping = parse_mapping(
        JOIN_MAPPING.replace("file: members.csv", "file: members.parquet").replace(
            "patient_id: {from: member}", "patient_id: {from: id}"
        )
    )
    landed = read_source(parquet, mapping)
    assert landed.records["patient_gender"].tolist() == ["M", "F", None, None]
    assert landed.records["geographic_region"].tolist() == [None, "STATE-39", None, None]


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


# --- compute: date_from_parts and the rolling year ---------------------------------------------

VEHICLE_RULES = {
    "service_date": "{compute: date_from_parts, parts: {year: Year, month: Month, "
    "week_of_month: WeekOfMonth, day_of_week: DayOfWeek}}",
    "claim_date": "{compute: date_from_parts, parts: {year: Year, month: MonthClaimed, "
    "week_of_month: WeekOfMonthClaimed, day_of_week: DayOfWeekClaimed}, not_before: service_date}",
}


def _vehicle_claims(rows: Sequence[tuple[str, ...]]) -> pd.DataFrame:
    """A vehicle-claims-style frame: the accident by year, month, week and weekday, the claim
    by month, week and weekday only (no claim year)."""
    names = ["Year", "Month", "WeekOfMonth", "DayOfWeek"]
    names += ["MonthClaimed", "WeekOfMonthClaimed", "DayOfWeekClaimed"]
    frame = pd.DataFrame(rows, columns=names, dtype=object)
    return frame.assign(id=[f"V{i}" for i in range(1, len(frame) + 1)])


def test_a_claim_month_before_the_accident_month_rolls_into_the_next_year() -> None:
    mapping = parse_mapping(_mapping_text(**VEHICLE_RULES))
    records = apply_mapping(
        _vehicle_claims(
            [
                ("1994", "Dec", "5", "Monday", "Jan", "2", "Tuesday"),  # over New Year
                ("1994", "Mar", "2", "Wednesday", "Mar", "3", "Friday"),  # same month
                ("1994", "Jan", "1", "Sunday", "Feb", "5", "Friday"),  # later month, clamped
                ("1995", "Mar", "3", "Monday", "Mar", "1", "Monday"),  # same month, earlier week
            ]
        ),
        mapping,
    )
    assert records["service_date"].tolist() == [
        "1994-12-26",
        "1994-03-09",
        "1994-01-02",
        "1995-03-13",
    ]
    # Feb 1994 ends on a Monday: Friday of week 5 is clamped to the 28th. Within one month
    # the year never rolls (that claim's date is before its accident: validation says so).
    assert records["claim_date"].tolist() == [
        "1995-01-03",
        "1994-03-18",
        "1994-02-28",
        "1995-03-01",
    ]
    assert records[PARSE_ERROR_COLUMN].isna().all()


def test_week_of_month_is_the_monday_to_sunday_week_holding_the_first() -> None:
    mapping = parse_mapping(_mapping_text(**VEHICLE_RULES))
    days = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
    rows = [("2024", "May", str(week), day, "May", "1", "Mon") for week in (1, 5) for day in days]
    dates = apply_mapping(_vehicle_claims(rows), mapping)["service_date"].tolist()
    # 1 May 2024 is a Wednesday: week 1 runs Mon 29 Apr to Sun 5 May, clamped at the 1st;
    # week 5 runs Mon 27 May to Sun 2 June, clamped at the 31st.
    assert dates[:7] == ["2024-05-01"] * 3 + [
        "2024-05-02",
        "2024-05-03",
        "2024-05-04",
        "2024-05-05",
    ]
    assert dates[7:] == [f"2024-05-{day}" for day in (27, 28, 29, 30, 31, 31, 31)]


def test_bad_date_parts_are_row_reasons_naming_column_and_value() -> None:
    mapping = parse_mapping(_mapping_text(**VEHICLE_RULES))
    records = apply_mapping(
        _vehicle_claims(
            [
                ("1994", "Dec", "5", "Monday", "Jane", "2", "Tuesday"),
                ("1994", "Dec", "7", "Funday", "Jan", "2", "Tuesday"),
                ("94", "Dec", "1", "Monday", "Jan", "2", "Tuesday"),
            ]
        ),
        mapping,
    )
    assert records["claim_date"].tolist() == [None, None, None]
    assert records[ROW_NUMBER_COLUMN].tolist() == [1, 2, 3]
    assert records[PARSE_ERROR_COLUMN].tolist() == [
        "claim_date (from MonthClaimed): 'Jane' is not a month (Jan..Dec, January..December "
        "or 1..12)",
        # Without its accident date a claim's year is unknown: no guess lands.
        "service_date (from WeekOfMonth): '7' is not a week of the month (1..6); "
        "service_date (from DayOfWeek): 'Funday' is not a day of the week (Mon..Sun or "
        "Monday..Sunday); claim_date: without service_date the year is unknown",
        "service_date (from Year): '94' is not a year in 1900..2099; "
        "claim_date (from Year): '94' is not a year in 1900..2099",
    ]


def test_date_parts_with_a_day_and_a_not_before_source_column() -> None:
    mapping = parse_mapping(
        _mapping_text(
            claim_date="{compute: date_from_parts, parts: {year: y, month: m, day: d}, "
            "not_before: accident, date_format: '%d/%m/%Y'}"
        )
    )
    records = apply_mapping(
        pd.DataFrame(
            {
                "id": ["A", "B", "C", "D"],
                "y": ["2023", "2023", "2023", "2023"],
                "m": ["1", "02", "Feb", "6"],
                "d": ["15", "28", "30", "1"],
                "accident": ["20/12/2023", "01/02/2023", "01/02/2023", "2023-05-01"],
            },
            dtype=object,
        ),
        mapping,
    )
    assert records["claim_date"].tolist() == ["2024-01-15", "2023-02-28", None, None]
    assert records[PARSE_ERROR_COLUMN].tolist() == [
        None,
        None,
        "claim_date: day '30' (d) is not in 2023-2",
        "claim_date (from accident): '2023-05-01' is not a date in format %d/%m/%Y; "
        "claim_date: without accident the year is unknown",
    ]


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        (
            {"claim_date": VEHICLE_RULES["claim_date"].replace("service_date}", "claim_amount}")},
            r"claim_date: not_before names canonical column 'claim_amount', which is not a date",
        ),
        (
            {
                "claim_date": VEHICLE_RULES["claim_date"],
                "service_date": VEHICLE_RULES["claim_date"].replace("service_date}", "claim_date}"),
            },
            r"not_before names '(claim|service)_date', whose own rule has a not_before",
        ),
    ],
)
def test_not_before_must_name_an_independent_date_column(
    rules: dict[str, str], message: str
) -> None:
    with pytest.raises(MappingError, match=message):
        parse_mapping(_mapping_text(**rules), origin="broken.yaml")


# --- the packaged multi-file mapping, end to end -----------------------------------------------


def _age(born: date, on: date) -> int:
    """The reference: whole years, counted the way people count birthdays."""
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def test_the_multi_file_mapping_joins_members_and_provider_labels(tmp_path: Path) -> None:
    files = write_multi_file_claims(tmp_path, n_claims=60, seed=7)
    landed = read_source(files.claims_path, load_mapping("multi_file_claims"))
    records = landed.records.set_index("claim_id")
    assert "multi_file_claims" in packaged_mappings()
    assert landed.row_count == 60
    assert records[PARSE_ERROR_COLUMN].isna().all()
    assert landed.notes["join_unmatched_rows"] == {
        "beneficiaries.csv": 0,
        "provider_labels.csv": 0,
    }

    members: dict[Any, dict[Any, Any]] = files.beneficiaries.set_index("BeneID").to_dict("index")
    labels: dict[str, str] = dict(files.provider_labels.itertuples(index=False, name=None))
    claims: list[dict[Any, Any]] = files.claims.to_dict("records")
    for claim in claims:
        got = records.loc[claim["ClaimID"]]
        member = members[claim["BeneID"]]
        age = _age(date.fromisoformat(member["DOB"]), date.fromisoformat(claim["ClaimEndDt"]))
        admitted, discharged = claim["AdmissionDt"], claim["DischargeDt"]
        stay = (
            (date.fromisoformat(discharged) - date.fromisoformat(admitted)).days if admitted else 0
        )
        filled = sum(bool(claim[column]) for column in PROCEDURE_COLUMNS)
        assert got["patient_gender"] == {"1": "M", "2": "F"}[member["Gender"]]
        assert got["geographic_region"] == f"STATE-{member['State']}"
        assert got["patient_age"] == str(age)
        assert got["patient_age_group"] == age_group(age)
        assert got["length_of_stay"] == str(stay)
        assert got["num_procedures"] == str(filled)
        assert got["is_fraud"] == {"Yes": "1", "No": "0"}[labels[claim["Provider"]]]
        assert got["service_date"] == claim["ClaimStartDt"]
    # The fixture's edge cases are really there: born 29 February 1952 and claimed on
    # 28 February 2009, still 56 (that birthday counts from 1 March); stays and outpatients;
    # 0 to 3 procedure codes.
    assert records.iloc[0]["patient_age"] == "56"
    assert set(records["num_procedures"]) == {"0", "1", "2", "3"}
    stays = records["length_of_stay"].astype(int)
    assert (stays == 0).any() and (stays > 0).any()
    assert set(records["is_fraud"]) == {"0", "1"}


def test_multi_file_claims_pass_batch_validation_into_silver(tmp_path: Path, spark: Any) -> None:
    files = write_multi_file_claims(tmp_path, n_claims=60, seed=11)
    landed = read_source(files.claims_path, load_mapping("multi_file_claims"))
    bronze = bronze_table(
        landed.records, source=landed.source, loaded_at=datetime.now(UTC), batch_id="multi"
    )
    validated = validate_batch(
        spark.createDataFrame(bronze), thresholds=Thresholds.model_validate({})
    )
    reasons = validated.select(REASON_COLUMN).collect()
    assert [r[REASON_COLUMN] for r in reasons] == [None] * 60
    silver = silver_rows(validated).toArrow()
    assert schema_matches(silver.schema, SILVER_SCHEMA).passed
    assert silver.num_rows == 60


def test_a_composite_key_joins_on_every_column_of_it(tmp_path: Path) -> None:
    (tmp_path / "claims.csv").write_text(
        "id,member,year\nC1,M1,2023\nC2,M1,2024\nC3,M2,2024\n", encoding="utf-8"
    )
    (tmp_path / "plans.csv").write_text(
        "member_id,plan_year,state\nM1,2023,OH\nM1,2024,IN\nM2,2023,IL\n", encoding="utf-8"
    )
    text = (
        "joins:\n"
        "  - {file: plans.csv, on: {member: member_id, year: plan_year}, columns: [state]}\n"
    )
    mapping = parse_mapping(text + _mapping_text(geographic_region="{from: state}"))
    landed = read_source(tmp_path / "claims.csv", mapping)
    assert landed.records["geographic_region"].tolist() == ["OH", "IN", None]
    assert landed.notes["join_unmatched_rows"] == {"plans.csv": 1}
    (tmp_path / "plans.csv").write_text(
        "member_id,plan_year,state\nM1,2023,OH\nM1,2023,IN\n", encoding="utf-8"
    )
    with pytest.raises(
        SourceError, match=r"plans\.csv: member_id, plan_year 'M1', '2023' is on rows \[1, 2\]"
    ):
        read_source(tmp_path / "claims.csv", mapping)


def test_a_rule_on_a_column_no_join_brings_is_a_missing_source_column(tmp_path: Path) -> None:
    claims = _write_joined_files(tmp_path)
    mapping = parse_mapping(JOIN_MAPPING.replace("{from: gender,", "{from: plan,"))
    # The joined columns are listed among the columns the file has; 'plan' was not taken.
    with pytest.raises(
        SourceError,
        match=r"claims\.csv: mapping 'joined' needs column\(s\) \['plan'\] that the file lacks; "
        r"the file has \[.*'birth_date', 'gender', 'region', 'provider_fraud'\]",
    ):
        read_source(claims, mapping)
