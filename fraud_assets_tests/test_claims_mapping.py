"""Declarative source mappings: every rule, every bad file, and the real auto-insurance file."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fraud_assets.claims.mapping import (
    EmptySourceError,
    MappingError,
    SourceError,
    SourceMapping,
    apply_mapping,
    load_mapping,
    packaged_mappings,
    parse_mapping,
    read_source,
)
from fraud_assets.claims.schema import CLAIM_COLUMNS, PARSE_ERROR_COLUMN, ROW_NUMBER_COLUMN
from fraud_assets.claims.synthetic import generate_claims, write_claims_file
from fraud_assets_tests.conftest import AUTO_INSURANCE_FILE, needs_auto_insurance_file

BAD = Path(__file__).parent / "data" / "bad_inputs"
AUTO_FILE = AUTO_INSURANCE_FILE

POLICY_MAPPING = """
name: policies
missing_values: ["?", ""]
columns:
  claim_id: {template: "AUTO-{policy}-{when}"}
  patient_id: {from: policy}
  provider_id: {template: "SHOP-{city}"}
  claim_date: {from: when, date_format: "%m/%d/%Y"}
  service_date: {from: when, date_format: "%m/%d/%Y"}
  claim_amount: {from: total}
  num_procedures: {constant: 1}
  length_of_stay: {constant: 0}
  procedure_code: {from: kind, fill_missing: unknown}
  diagnosis_code: {from: severity}
  provider_specialty: {from: authority}
  patient_age: {from: age}
  patient_gender: {from: sex, values: {MALE: M, FEMALE: F}}
  patient_age_group: {from: age, derive: age_group}
  geographic_region: {from: state}
  is_fraud: {from: fraud, values: {"Y": 1, "N": 0}}
source_checks:
  - {column: limit, min: 0, reason: limits are never negative}
"""


def _policies(**overrides: list[str | None]) -> pd.DataFrame:
    rows: dict[str, list[str | None]] = {
        "policy": ["521585", "342868", "687698"],
        "when": ["1/25/2015", "2/3/2015", "12/31/2014"],
        "city": ["Columbus", "Riverwood", "Columbus"],
        "total": ["71610", "5070", "34650"],
        "kind": ["Single Vehicle Collision", "?", "Parked Car"],
        "severity": ["Major Damage", "Minor Damage", "Total Loss"],
        "authority": ["Police", "None", "Fire"],
        "age": ["48", "42", "29"],
        "sex": ["MALE", "FEMALE", " FEMALE "],
        "state": ["OH", "IN", "IL"],
        "fraud": ["Y", "N", "N"],
        "limit": ["0", "5000000", "0"],
    }
    rows.update(overrides)
    return pd.DataFrame(rows, dtype=object)


def test_every_rule_kind_maps_onto_the_canonical_columns() -> None:
    mapping = parse_mapping(POLICY_MAPPING)
    records = apply_mapping(_policies(), mapping)
    assert list(records.columns) == [*CLAIM_COLUMNS, ROW_NUMBER_COLUMN, PARSE_ERROR_COLUMN]
    first = records.iloc[0].to_dict()
    assert first["claim_id"] == "AUTO-521585-1/25/2015"
    assert first["provider_id"] == "SHOP-Columbus"
    assert first["claim_date"] == first["service_date"] == "2015-01-25"
    assert first["num_procedures"] == "1"
    assert first["length_of_stay"] == "0"
    assert first["patient_gender"] == "M"
    assert first["patient_age_group"] == "35-49"
    assert first["is_fraud"] == "1"
    assert records["patient_gender"].tolist() == ["M", "F", "F"]  # whitespace is trimmed
    assert records["claim_date"].tolist() == ["2015-01-25", "2015-02-03", "2014-12-31"]
    assert records["patient_age_group"].tolist() == ["35-49", "35-49", "18-34"]
    assert records[ROW_NUMBER_COLUMN].tolist() == [1, 2, 3]
    assert records[PARSE_ERROR_COLUMN].isna().all()


def test_question_mark_is_missing_but_none_is_a_category() -> None:
    records = apply_mapping(_policies(), parse_mapping(POLICY_MAPPING))
    assert records.loc[1, "provider_specialty"] == "None"
    assert records.loc[1, "procedure_code"] == "unknown"  # '?' then fill_missing
    no_fill = parse_mapping(POLICY_MAPPING.replace(", fill_missing: unknown", ""))
    assert apply_mapping(_policies(), no_fill).loc[1, "procedure_code"] is None


def test_pandas_default_na_handling_would_lose_the_none_category() -> None:
    # The trap the mapping avoids: pandas' read_csv reads "None" as missing by default.
    text = "authority\nPolice\nNone\n"
    naive = pd.read_csv(io.StringIO(text))
    assert naive["authority"].isna().sum() == 1


def test_values_outside_a_value_map_are_parse_errors_naming_column_and_value() -> None:
    records = apply_mapping(
        _policies(sex=["MALE", "X", "FEMALE"], fraud=["Y", "N", "maybe"]),
        parse_mapping(POLICY_MAPPING),
    )
    assert records.loc[1, "patient_gender"] is None
    assert records.loc[1, PARSE_ERROR_COLUMN] == (
        "patient_gender (from sex): 'X' is not one of MALE, FEMALE"
    )
    assert records.loc[2, PARSE_ERROR_COLUMN] == "is_fraud (from fraud): 'maybe' is not one of Y, N"
    keep = parse_mapping(
        POLICY_MAPPING.replace("{MALE: M, FEMALE: F}}", "{MALE: M, FEMALE: F}, other_values: keep}")
    )
    kept = apply_mapping(_policies(sex=["MALE", "X", "FEMALE"]), keep)
    assert kept["patient_gender"].tolist() == ["M", "X", "F"]
    assert kept[PARSE_ERROR_COLUMN].isna().all()


def test_unparseable_dates_and_failed_source_checks_accumulate_reasons() -> None:
    records = apply_mapping(
        _policies(when=["1/25/2015", "2015-02-03", "13/45/2015"], limit=["0", "-1000000", "x"]),
        parse_mapping(POLICY_MAPPING),
    )
    assert records.loc[1, "claim_date"] is None
    assert records.loc[1, PARSE_ERROR_COLUMN] == (
        "claim_date (from when): '2015-02-03' is not a date in format %m/%d/%Y; "
        "service_date (from when): '2015-02-03' is not a date in format %m/%d/%Y; "
        "limit: -1000000 is below 0 (limits are never negative)"
    )
    assert records.loc[2, PARSE_ERROR_COLUMN].endswith("limit: 'x' is not a number")
    # A template over a missing field is missing, not the literal text around it.
    assert records.loc[1, "claim_id"] == "AUTO-342868-2015-02-03"
    partial = apply_mapping(_policies(city=["?", "A", "B"]), parse_mapping(POLICY_MAPPING))
    assert partial.loc[0, "provider_id"] is None


def test_a_source_without_a_mapped_column_is_a_clear_error() -> None:
    with pytest.raises(
        SourceError, match=r"claims\.csv: mapping 'policies' needs column\(s\) \['sex'\]"
    ):
        apply_mapping(
            _policies().drop(columns=["sex"]),
            parse_mapping(POLICY_MAPPING),
            source_name="claims.csv",
        )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: x\ncolumns: {}\nsurprise: 1\n", r"surprise: Extra inputs are not permitted"),
        ("name: x\ncolumns:\n  claim_id: {from: a}\n", r"no rule for required canonical columns"),
        ("name: x\ncolumns:\n  claim_id: {from: a, constant: 1}\n", r"exactly one of from"),
        ("name: x\ncolumns:\n  nonsense: {from: a}\n", r"not in the canonical schema"),
        ("name: x\ncolumns:\n  claim_id: {template: 'ID'}\n", r"uses no source column"),
        (
            "name: x\ncolumns:\n  is_fraud: {from: f, values: {YES: 1, NO: 0}}\n",
            r"quote them",
        ),
        (
            "name: x\ncolumns:\n  patient_gender: {from: g, values: {1: M, 2: F}}\n",
            r"YAML reads unquoted 1, 2 as numbers: quote them \('1': M\)",
        ),
        ("[1, 2]", r"must be a YAML mapping"),
        ("name: [unclosed", r"not valid YAML"),
    ],
)
def test_broken_mappings_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(MappingError, match=message):
        parse_mapping(text, origin="broken.yaml")


def test_mappings_load_by_packaged_name_or_path(tmp_path: Path) -> None:
    assert "auto_insurance_claims" in packaged_mappings()
    assert load_mapping("auto_insurance_claims").name == "auto_insurance_claims"
    assert load_mapping(None).name == "canonical"
    path = tmp_path / "policies.yaml"
    path.write_text(POLICY_MAPPING, encoding="utf-8")
    assert load_mapping(str(path)).name == "policies"
    with pytest.raises(MappingError, match=r"no mapping named 'nope'.*auto_insurance_claims"):
        load_mapping("nope")
    with pytest.raises(MappingError, match="does not exist"):
        load_mapping(tmp_path / "missing.yaml")


# --- files -------------------------------------------------------------------------------------


def test_crlf_and_bom_files_parse_like_plain_ones() -> None:
    plain = read_source(BAD / "crlf.csv").records
    bom = read_source(BAD / "bom.csv").records
    assert "\ufeffclaim_id" not in read_source(BAD / "bom.csv").source_columns
    assert bom["claim_id"].tolist() == ["G1", "G2", "G3"]
    pd.testing.assert_frame_equal(plain, bom)
    assert not plain["is_fraud"].str.contains("\r", na=False).any()
    assert plain[PARSE_ERROR_COLUMN].isna().all()


def test_a_truncated_last_line_is_kept_with_its_reason() -> None:
    records = read_source(BAD / "truncated.csv").records
    assert len(records) == 4
    last = records.iloc[-1]
    assert last[ROW_NUMBER_COLUMN] == 4
    assert last["claim_id"] == "G9"
    assert last["service_date"] == "2024-03-0"
    assert last["claim_amount"] is None
    assert last[PARSE_ERROR_COLUMN] == "record has 5 fields, the header has 16 (truncated?)"
    assert records.iloc[:3][PARSE_ERROR_COLUMN].isna().all()


def test_a_file_ending_inside_quotes_marks_its_last_record() -> None:
    landed = read_source(BAD / "unterminated_quote.csv")
    records = landed.records
    assert len(records) == 4
    # The open quote swallowed the rest of the line, so the record is also short of fields.
    assert records[PARSE_ERROR_COLUMN].iloc[-1] == (
        "record has 10 fields, the header has 16 (truncated?); "
        "the file ends inside a quoted field (truncated last record?)"
    )
    assert records.iloc[:3][PARSE_ERROR_COLUMN].isna().all()
    assert landed.notes["ends_inside_quotes"] is True


def test_extra_fields_and_malformed_rows_mid_file_keep_their_place(tmp_path: Path) -> None:
    header = (BAD / "crlf.csv").read_bytes().split(b"\r\n")[0].decode()
    good = (BAD / "crlf.csv").read_bytes().split(b"\r\n")[1].decode()
    path = tmp_path / "mixed.csv"
    text = "\n".join(
        [
            header,
            good,
            "X1,too,few",
            "",
            good.replace("G1", "G5") + ",extra",
            good.replace("G1", "G6"),
        ]
    )
    path.write_text(text + "\n", encoding="utf-8")
    records = read_source(path).records
    # Blank lines are not records; every other record keeps its position in the file.
    assert records["claim_id"].tolist() == ["G1", "X1", "G5", "G6"]
    assert records[ROW_NUMBER_COLUMN].tolist() == [1, 2, 3, 4]
    errors = records[PARSE_ERROR_COLUMN].tolist()
    assert errors[0] is None and errors[3] is None
    assert errors[1] == "record has 3 fields, the header has 16 (truncated?)"
    assert errors[2] == "record has 17 fields, the header has 16 (extra fields dropped)"


def test_a_quoted_newline_does_not_shift_row_numbers(tmp_path: Path) -> None:
    lines = (BAD / "crlf.csv").read_bytes().decode().split("\r\n")
    header, first, second = lines[0], lines[1], lines[2]
    multi_line = first.replace("G1", "M1").replace("I10", '"I10\nsecond line"')
    path = tmp_path / "multiline.csv"
    path.write_text("\n".join([header, multi_line, "X1,few", second]) + "\n", encoding="utf-8")
    records = read_source(path).records
    assert records["claim_id"].tolist() == ["M1", "X1", "G2"]
    assert records[ROW_NUMBER_COLUMN].tolist() == [1, 2, 3]
    assert records.loc[0, "diagnosis_code"] == "I10\nsecond line"


def test_empty_and_header_only_files() -> None:
    with pytest.raises(EmptySourceError, match=r"empty\.csv: the file is empty"):
        read_source(BAD / "empty.csv")
    header_only = read_source(BAD / "header_only.csv")
    assert header_only.row_count == 0
    assert list(header_only.records.columns)[: len(CLAIM_COLUMNS)] == CLAIM_COLUMNS


def test_missing_required_columns_name_the_file_and_the_column() -> None:
    with pytest.raises(SourceError, match=r"missing_columns\.csv.*\['claim_amount'\]"):
        read_source(BAD / "missing_columns.csv")


def test_a_file_with_another_delimiter_is_told_about_csv_delimiter(tmp_path: Path) -> None:
    """Issue 13: a semicolon file said only which columns it lacks."""
    path = tmp_path / "semicolons.csv"
    path.write_text("claim_id;patient_id;claim_amount\nC1;P1;10.5\n", encoding="utf-8")
    with pytest.raises(
        SourceError,
        match=r"semicolons\.csv.*looks delimited by ';': set csv: \{delimiter: ';'\}",
    ):
        read_source(path)


def test_a_directory_a_gzip_file_and_an_unknown_encoding_say_what_they_are(
    tmp_path: Path,
) -> None:
    """Issue 14, finding 11: a directory 'does not exist', a gzip file 'is not utf-8 text',
    and a bogus encoding raised LookupError from the codec machinery."""
    with pytest.raises(SourceError, match=r"is a directory, not a file"):
        read_source(tmp_path)
    zipped = tmp_path / "claims.csv"
    zipped.write_bytes(gzip.compress((BAD / "crlf.csv").read_bytes()))
    with pytest.raises(SourceError, match=r"claims\.csv: is gzip-compressed: decompress it"):
        read_source(zipped)
    with pytest.raises(MappingError, match=r"csv\.encoding: unknown encoding 'utf-99'"):
        parse_mapping("name: x\ncsv: {encoding: utf-99}\ncolumns: {}\n", origin="enc.yaml")


def test_missing_files_and_unknown_formats_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        read_source(tmp_path / "nowhere.csv")
    odd = tmp_path / "claims.json"
    odd.write_text("{}", encoding="utf-8")
    with pytest.raises(SourceError, match=r"claims\.json.*\.csv or \.parquet"):
        read_source(odd)
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(SourceError, match=r"broken\.parquet: cannot be read as Parquet"):
        read_source(broken)


def test_tokens_mapping_keeps_none_and_blanks_question_marks() -> None:
    mapping = load_mapping(BAD / "tokens.mapping.yaml")
    records = read_source(BAD / "tokens.csv", mapping).records.set_index("claim_id")
    assert records.loc["K1", "provider_specialty"] == "None"
    assert records.loc["K2", "provider_id"] is None
    assert records.loc["K3", "diagnosis_code"] is None  # ' ? ' trimmed, then missing


def test_parquet_and_csv_of_the_same_claims_land_identically(tmp_path: Path) -> None:
    claims = generate_claims(300, seed=4)
    from_csv = read_source(write_claims_file(claims, tmp_path / "c.csv")).records
    parquet_path = write_claims_file(claims, tmp_path / "c.parquet")
    assert pq.read_metadata(parquet_path).num_rows == 300
    from_parquet = read_source(parquet_path).records
    # Amounts keep their value; only the text differs ("128.0" in CSV, "128" from Parquet).
    pd.testing.assert_series_equal(
        from_csv.pop("claim_amount").astype(float), from_parquet.pop("claim_amount").astype(float)
    )
    pd.testing.assert_frame_equal(from_csv, from_parquet)
    assert from_csv["claim_date"].str.fullmatch(r"\d{4}-\d{2}-\d{2}").all()


def test_unmapped_list_and_binary_parquet_columns_do_not_reject_the_file(
    tmp_path: Path,
) -> None:
    # Issue 14, finding 11: an unused list column rejected the whole file, and invalid UTF-8
    # in an unused binary column failed with an ArrowInvalid naming neither file nor column.
    claims = pa.Table.from_pandas(generate_claims(3, seed=4), preserve_index=False)
    extra = claims.append_column("attachments", pa.array([[1, 2], [], None])).append_column(
        "scan", pa.array([b"\xff\xfe", b"ok", None], pa.binary())
    )
    path = tmp_path / "extra.parquet"
    pq.write_table(extra, path)
    landed = read_source(path)
    assert len(landed.records) == 3
    assert {"attachments", "scan"} <= set(landed.unmapped_columns)
    assert landed.records[PARSE_ERROR_COLUMN].isna().all()


def test_a_mapped_binary_column_that_is_not_utf8_names_file_column_and_row(
    tmp_path: Path,
) -> None:
    claims = pa.Table.from_pandas(generate_claims(3, seed=4), preserve_index=False)
    index = claims.column_names.index("diagnosis_code")
    binary = pa.array([b"D1", b"\xff\xfeD2", b"D3"], pa.binary())
    path = tmp_path / "binary.parquet"
    pq.write_table(claims.set_column(index, "diagnosis_code", binary), path)
    with pytest.raises(SourceError) as error:
        read_source(path)
    message = str(error.value)
    assert "binary.parquet" in message and "'diagnosis_code'" in message
    assert "row 2 holds" in message and "not UTF-8" in message


def test_dates_pandas_wrote_as_datetimes_land_as_dates(tmp_path: Path) -> None:
    """Issue 14: a Parquet file from pandas with datetime64 dates was 100% quarantined
    ('2024-01-12 00:00:00' is not a date); a timestamp with a time of day stays a timestamp."""
    claims = generate_claims(50, seed=4)
    frame = claims.assign(
        claim_date=lambda f: pd.to_datetime(f["claim_date"]),
        service_date=lambda f: pd.to_datetime(f["service_date"]),
    )
    path = tmp_path / "pandas.parquet"
    frame.to_parquet(path)
    assert pq.read_schema(path).field("claim_date").type == pa.timestamp("ns")
    records = read_source(path).records
    expected = pd.to_datetime(claims["claim_date"]).dt.strftime("%Y-%m-%d").tolist()
    assert records["claim_date"].tolist() == expected
    assert records["service_date"].str.fullmatch(r"\d{4}-\d{2}-\d{2}").all()
    timed = frame.assign(claim_date=frame["claim_date"] + pd.Timedelta(hours=9, minutes=5))
    timed.to_parquet(path)
    assert (
        read_source(path).records["claim_date"].str.fullmatch(r"\d{4}-\d{2}-\d{2} 09:05:00").all()
    )


def test_canonical_files_may_omit_the_label() -> None:
    unlabeled = generate_claims(5, seed=1).drop(columns=["is_fraud"])
    records = apply_mapping(unlabeled.astype(str), SourceMapping.canonical())
    assert records["is_fraud"].isna().all()


@needs_auto_insurance_file
def test_the_real_auto_insurance_file_maps_cleanly() -> None:
    landed = read_source(AUTO_FILE, load_mapping("auto_insurance_claims"))
    records = landed.records
    assert landed.row_count == 1000
    assert records["claim_id"].is_unique
    assert records["claim_id"].str.fullmatch(r"AUTO-\d+").all()
    assert (records["provider_specialty"] == "None").sum() == 91
    assert records["is_fraud"].value_counts().to_dict() == {"0": 753, "1": 247}
    assert set(records["patient_gender"]) == {"M", "F"}
    assert set(records["geographic_region"]) == {"OH", "IL", "IN"}
    assert set(records["patient_age_group"]) == {"18-34", "35-49", "50-64"}
    assert records["claim_date"].str.fullmatch(r"\d{4}-\d{2}-\d{2}").all()
    assert records[CLAIM_COLUMNS].drop(columns=["is_fraud"]).notna().all().all()
    # The one negative umbrella_limit is the only record with a problem, and it is kept.
    flagged = records[records[PARSE_ERROR_COLUMN].notna()]
    assert len(flagged) == 1
    assert flagged[PARSE_ERROR_COLUMN].iloc[0].startswith("umbrella_limit: -1000000 is below 0")
    assert "_c39" in landed.unmapped_columns
    assert "\ufeffmonths_as_customer" not in landed.source_columns
