"""Map external claim files (CSV or Parquet) onto the canonical schema with a YAML mapping.

A mapping says, for every canonical column, where its value comes from: a source column
(``from``), a ``template`` over source columns, a ``constant`` or a derivation
(``derive: age_group``), with optional value maps, date formats and missing-value tokens.
A mapping may also declare extra ``features:`` (numeric or categorical source columns the
canonical schema lacks, or protected attributes such as race), each a column rule plus its
kind; they land as ``xn_``/``xc_``/``xp_`` columns beside the canonical ones.
The result is the bronze view of a file: every canonical column as a string (``None`` when
missing), the record's position in the file (``_row_number``) and what went wrong while
reading or mapping it (``_parse_error``). Nothing is dropped here: a record that cannot be
read or mapped keeps its row with the reason, and validation quarantines it.

Rules over several columns (``compute``) and files joined to the claims (``joins``) are
carried out in ``transforms``.

A file-level problem (missing columns, an empty or unreadable file) is a ``SourceError``
naming the file, the column and the problem. A broken mapping is a ``MappingError``.
"""

from __future__ import annotations

import codecs
import csv
import io
import logging
import string
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

from fraud_assets.claims import transforms
from fraud_assets.claims.errors import EmptySourceError, MappingError, SourceError
from fraud_assets.claims.schema import (
    BATCH_ID_COLUMN,
    BRONZE_SCHEMA,
    CLAIM_COLUMNS,
    CLAIM_SCHEMA,
    EXTRA_NAME,
    LOADED_AT_COLUMN,
    PARSE_ERROR_COLUMN,
    ROW_NUMBER_COLUMN,
    SOURCE_COLUMN,
    age_groups,
    extra_column,
    extra_columns,
)

log = logging.getLogger(__name__)

_DATE_COLUMNS = [f.name for f in CLAIM_SCHEMA if pa.types.is_date(f.type)]

Scalar = StrictStr | StrictInt | StrictFloat


class ColumnRule(BaseModel):
    """How one canonical column is filled from a source record."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    source: str | list[str] | None = Field(
        default=None, alias="from", description="Source column to read (a list for compute)"
    )
    template: str | None = Field(
        default=None,
        description="Python format string over source columns, e.g. 'AUTO-{policy_number}'",
    )
    constant: Scalar | None = Field(default=None, description="The same value for every record")
    derive: Literal["age_group"] | None = Field(
        default=None, description="A value computed from the ``from`` column"
    )
    compute: transforms.ComputeFunction | None = Field(
        default=None, description="A value computed from several source columns (transforms.py)"
    )
    parts: transforms.DateParts | None = Field(
        default=None, description="date_from_parts: the columns holding year, month, day..."
    )
    not_before: str | None = Field(
        default=None,
        description="date_from_parts: a date whose month this one's may not precede (the year "
        "rolls forward): a canonical date column or a source column",
    )
    end_before_start: Literal["error", "keep"] | None = Field(
        default=None, description="days_between: an end before the start (default: error)"
    )
    values: dict[StrictStr, Scalar] | None = Field(
        default=None,
        description="Value map applied after missing tokens, e.g. {MALE: M, FEMALE: F}",
    )
    other_values: Literal["error", "keep"] = Field(
        default="error", description="What to do with a value the map does not list"
    )
    date_format: str | dict[str, str] | None = Field(
        default=None, description="strptime format, e.g. '%m/%d/%Y' (compute: per column)"
    )
    missing_values: list[str] | None = Field(
        default=None, description="Tokens read as missing in this column (default: the mapping's)"
    )
    fill_missing: Scalar | None = Field(
        default=None, description="Value used where the source is missing"
    )
    optional: bool = Field(
        default=False, description="A missing source column gives nulls, not an error"
    )

    @model_validator(mode="after")
    def _one_origin(self) -> ColumnRule:
        origins = [
            name
            for name, value in (
                ("from", self.source),
                ("template", self.template),
                ("constant", self.constant),
                ("parts", self.parts),
            )
            if value is not None
        ]
        if len(origins) != 1:
            raise ValueError(
                f"give exactly one of from / template / constant / parts, got {origins or 'none'}"
            )
        transforms.check_rule(self)
        if self.derive is not None and self.source is None:
            raise ValueError("derive needs a 'from' column to derive from")
        if self.template is not None:
            try:
                fields = _template_fields(self.template)
            except ValueError as err:
                raise ValueError(
                    f"template {self.template!r} is not a format string: {err}"
                ) from err
            if not fields:
                raise ValueError(f"template {self.template!r} uses no source column")
        return self

    def source_columns(self) -> list[str]:
        if self.compute is not None:
            return transforms.rule_inputs(self)
        if isinstance(self.source, str):
            return [self.source]
        if self.template is not None:
            return _template_fields(self.template)
        return []


class ExtraFeature(ColumnRule):
    """A source column beyond the canonical schema that reaches gold: a model input
    (``kind``), or with ``protected: true`` a group of the fairness report, never an input."""

    kind: Literal["numeric", "categorical"] = Field(
        description="numeric: parsed as a decimal number in silver; categorical: text"
    )
    protected: bool = Field(
        default=False, description="A protected attribute: reported on, never a model input"
    )

    @model_validator(mode="after")
    def _protected_is_a_group(self) -> ExtraFeature:
        if self.protected and self.kind != "categorical":
            raise ValueError("a protected attribute names groups: give it kind: categorical")
        return self

    def column(self, name: str) -> str:
        """The column this extra is stored in, in every layer."""
        return extra_column(name, "protected" if self.protected else self.kind)


class SourceCheck(BaseModel):
    """A rule on a source column the canonical schema does not carry; failures are reasons."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    column: str
    min: float | None = None
    max: float | None = None
    allowed: list[str] | None = None
    reason: str | None = Field(
        default=None, description="Why this rule exists, shown in the reason"
    )

    @model_validator(mode="after")
    def _has_rule(self) -> SourceCheck:
        if self.min is None and self.max is None and self.allowed is None:
            raise ValueError(f"source check on {self.column!r} needs min, max or allowed")
        return self


_GZIP_MAGIC = b"\x1f\x8b"


class CsvOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    delimiter: str = Field(default=",", min_length=1, max_length=1)
    quote_char: str = Field(default='"', min_length=1, max_length=1)
    encoding: str = "utf-8"

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(
                f"unknown encoding {value!r} (Python codec names: utf-8, latin-1, cp1252, ...)"
            ) from None
        return value


class JoinSpec(BaseModel):
    """Another file whose columns join the claims on a key (left join: every claim stays)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    file: str = Field(description="Path; relative paths start at the claims file's folder")
    on: dict[str, str] = Field(
        min_length=1, description="Key columns: {claims column: this file's column}"
    )
    columns: list[str] | dict[str, str] = Field(
        min_length=1, description="Columns to take, or {column: new name}"
    )
    prefix: str = Field(default="", description="Prepended to every taken column's name")
    file_format: Literal["csv", "parquet"] | None = Field(
        default=None, alias="format", description="Default: from the file suffix"
    )
    csv: CsvOptions | None = Field(default=None, description="Default: the mapping's")
    missing_values: list[str] | None = Field(default=None, description="Default: the mapping's")

    @model_validator(mode="before")
    @classmethod
    def _on_is_a_key(cls, data: Any) -> Any:
        # YAML 1.1 reads a bare `on:` key as the boolean true; `on` is what SQL calls it.
        if isinstance(data, dict) and any(key is True for key in data) and "on" not in data:
            data = {("on" if key is True else key): value for key, value in data.items()}
        return data

    def taken(self) -> dict[str, str]:
        """This file's columns to take, each with the name it lands under."""
        names = self.columns if isinstance(self.columns, dict) else {c: c for c in self.columns}
        return {column: self.prefix + name for column, name in names.items()}


class SourceMapping(BaseModel):
    """A declarative mapping from one kind of source file to the canonical claim schema."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    file_format: Literal["csv", "parquet"] | None = Field(
        default=None, alias="format", description="Default: from the file suffix"
    )
    csv: CsvOptions = CsvOptions()
    missing_values: list[str] = Field(
        default_factory=lambda: [""], description="Tokens read as missing in every column"
    )
    joins: list[JoinSpec] = Field(
        default_factory=list, description="Files joined to the claims; their columns are source"
    )
    columns: dict[str, ColumnRule]
    features: dict[str, ExtraFeature] = Field(
        default_factory=dict,
        description="Extra source columns that flow to gold: name -> rule with kind (and "
        "protected: true for an attribute reported on, never a model input)",
    )
    source_checks: list[SourceCheck] = Field(default_factory=list)
    label_unit: Literal["claim", "provider", "patient"] = Field(
        default="claim",
        description="Who the fraud label belongs to: one claim, or every claim of a provider "
        "or a patient (the split then never puts one on both sides)",
    )

    @model_validator(mode="after")
    def _covers_the_schema(self) -> SourceMapping:
        unknown = sorted(set(self.columns) - set(CLAIM_COLUMNS))
        if unknown:
            raise ValueError(f"columns {unknown} are not in the canonical schema {CLAIM_COLUMNS}")
        required = [f.name for f in CLAIM_SCHEMA if not f.nullable]
        missing = [c for c in required if c not in self.columns]
        if missing:
            raise ValueError(f"no rule for required canonical columns {missing}")
        transforms.check_references(self.columns)
        from fraud_assets.features import CLAIM_FEATURES_COLUMNS

        for name in self.features:
            if not EXTRA_NAME.match(name):
                raise ValueError(f"feature name {name!r} is not lowercase snake_case")
            if name in CLAIM_COLUMNS or name in CLAIM_FEATURES_COLUMNS:
                raise ValueError(f"feature name {name!r} is already a canonical or gold column")
        return self

    @field_validator("joins")
    @classmethod
    def _joins_add_distinct_columns(cls, joins: list[JoinSpec]) -> list[JoinSpec]:
        names = [name for join in joins for name in join.taken().values()]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"more than one join adds column(s) {repeated}: rename or prefix them")
        return joins

    def extra_columns(self) -> dict[str, ExtraFeature]:
        """Each declared extra by the column it is stored in."""
        return {rule.column(name): rule for name, rule in self.features.items()}

    def required_source_columns(self) -> list[str]:
        """Source columns the file must have for this mapping to apply."""
        needed: list[str] = []
        for rule in [*self.columns.values(), *self.features.values()]:
            if not rule.optional:
                needed.extend(rule.source_columns())
        needed.extend(check.column for check in self.source_checks)
        return list(dict.fromkeys(needed))

    @classmethod
    def canonical(cls) -> SourceMapping:
        """The identity mapping for files already in canonical columns; is_fraud is optional."""
        return cls.model_validate(
            {
                "name": "canonical",
                "description": "Files whose columns already are the canonical claim columns",
                "columns": {f.name: {"from": f.name, "optional": f.nullable} for f in CLAIM_SCHEMA},
            }
        )


@dataclass
class LandedRecords:
    """A source file read and mapped: the rows bronze stores, plus what was noticed."""

    records: pd.DataFrame  # CLAIM_COLUMNS as str/None, _row_number, _parse_error
    source: str
    mapping: str
    source_columns: list[str]
    unmapped_columns: list[str]
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def row_count(self) -> int:
        return len(self.records)


def load_mapping(name_or_path: str | Path | None) -> SourceMapping:
    """A mapping by packaged name (``auto_insurance_claims``) or by YAML path; None = canonical."""
    if name_or_path is None or str(name_or_path) in ("", "canonical"):
        return SourceMapping.canonical()
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise MappingError(f"mapping file {path} does not exist")
        text = path.read_text(encoding="utf-8")
        origin = str(path)
    else:
        packaged = _mappings_folder() / f"{name_or_path}.yaml"
        if not packaged.is_file():
            raise MappingError(
                f"no mapping named {str(name_or_path)!r}; packaged mappings: {packaged_mappings()}"
                " (or give the path of a .yaml file)"
            )
        text = packaged.read_text(encoding="utf-8")
        origin = f"{name_or_path} (packaged)"
    return parse_mapping(text, origin=origin)


def parse_mapping(text: str, *, origin: str = "<string>") -> SourceMapping:
    """Parse and check a mapping's YAML text; every problem names the mapping and the key."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise MappingError(f"mapping {origin} is not valid YAML: {err}") from err
    if not isinstance(raw, dict):
        raise MappingError(
            f"mapping {origin} must be a YAML mapping of keys, got {type(raw).__name__}"
        )
    try:
        return SourceMapping.model_validate(raw)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<top>'}: "
            f"{e['msg'].removeprefix('Value error, ')}"
            for e in err.errors()
        )
        raise MappingError(f"mapping {origin} is invalid: {problems}{_quoting_hint(raw)}") from err


def _quoting_hint(raw: Any) -> str:
    """Why a key YAML did not read as text may be the problem, and how to quote it."""
    keys = _yaml_keys(raw)
    if any(isinstance(k, bool) for k in keys):
        return " (YAML reads unquoted yes/no/on/off as booleans: quote them)"
    numbers = [k for k in keys if isinstance(k, int | float)]
    if numbers:
        shown = ", ".join(str(k) for k in numbers[:3])
        return f" (YAML reads unquoted {shown} as numbers: quote them ('{numbers[0]}': M))"
    return ""


def packaged_mappings() -> list[str]:
    """Names of the mappings shipped in ``fraud_assets/claims/mappings/``."""
    folder = _mappings_folder()
    return sorted(
        p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml")
    )


def read_source(path: str | Path, mapping: SourceMapping | None = None) -> LandedRecords:
    """Read a CSV or Parquet claims file and map it onto the canonical columns."""
    mapping = mapping or SourceMapping.canonical()
    source = Path(path)
    if source.is_dir():
        raise SourceError(f"source {source} is a directory, not a file: name one claims file")
    if not source.is_file():
        raise SourceError(f"source file {source} does not exist")
    with source.open("rb") as handle:
        if handle.read(2) == _GZIP_MAGIC:
            raise SourceError(
                f"{source}: is gzip-compressed: decompress it first (gunzip -k {source.name})"
            )
    file_format = mapping.file_format or _format_of(source)
    used = set(mapping.required_source_columns()) | {
        c
        for rule in [*mapping.columns.values(), *mapping.features.values()]
        for c in rule.source_columns()
    }
    used |= {column for join in mapping.joins for column in join.on}
    if file_format == "csv":
        raw, errors, notes = _read_csv(source, mapping.csv)
    else:
        raw, errors, notes = _read_parquet(source, used=used)
    if mapping.joins:
        raw, errors, join_notes = transforms.join_files(
            raw,
            errors,
            mapping.joins,
            claims_path=source,
            tokens=mapping.missing_values,
            read=lambda path, join: _read_join(path, join, default_csv=mapping.csv),
            clean=_clean,
        )
        notes.update(join_notes)
    records = apply_mapping(raw, mapping, source_name=str(source), record_errors=errors)
    unmapped = [c for c in raw.columns if c not in used and c != ROW_NUMBER_COLUMN]
    log.info(
        "read %d records from %s with mapping %s (%d with parse errors)",
        len(records),
        source,
        mapping.name,
        int(records[PARSE_ERROR_COLUMN].notna().sum()),
    )
    return LandedRecords(
        records=records,
        source=str(source.resolve()),
        mapping=mapping.name,
        source_columns=[c for c in raw.columns if c != ROW_NUMBER_COLUMN],
        unmapped_columns=unmapped,
        notes=notes,
    )


def apply_mapping(
    raw: pd.DataFrame,
    mapping: SourceMapping,
    *,
    source_name: str = "<frame>",
    record_errors: pd.Series | None = None,
) -> pd.DataFrame:
    """Map source records (all values strings or None) onto the canonical columns.

    ``raw`` may carry ``_row_number``; otherwise records are numbered from 1. Errors found
    while reading (``record_errors``, aligned with ``raw``) come first in ``_parse_error``.
    """
    missing = [c for c in mapping.required_source_columns() if c not in raw.columns]
    if missing:
        raise SourceError(
            f"{source_name}: mapping {mapping.name!r} needs column(s) {missing} "
            f"that the file lacks; the file has {_data_columns(raw)}"
            f"{_delimiter_hint(_data_columns(raw), mapping.csv.delimiter)}"
        )
    n = len(raw)
    index = pd.RangeIndex(n)
    raw = raw.reset_index(drop=True)
    errors = _ErrorLog(n)
    if record_errors is not None:
        errors.add(record_errors.reset_index(drop=True))

    out: dict[str, pd.Series] = {}
    for column in transforms.rule_order(CLAIM_COLUMNS, mapping.columns):
        rule = mapping.columns.get(column)
        if rule is None:
            out[column] = pd.Series([None] * n, index=index, dtype=object)
            continue
        tokens = set(
            rule.missing_values if rule.missing_values is not None else mapping.missing_values
        )
        out[column] = _apply_rule(column, rule, raw, tokens, errors, computed=out)
    for column, extra in mapping.extra_columns().items():
        tokens = set(
            extra.missing_values if extra.missing_values is not None else mapping.missing_values
        )
        out[column] = _apply_rule(column, extra, raw, tokens, errors, computed=out)
    for check in mapping.source_checks:
        _apply_check(check, raw, set(mapping.missing_values), errors)

    stored = [*CLAIM_COLUMNS, *mapping.extra_columns()]
    records = pd.DataFrame({column: out[column] for column in stored}, index=index)
    if ROW_NUMBER_COLUMN in raw.columns:
        records[ROW_NUMBER_COLUMN] = raw[ROW_NUMBER_COLUMN].astype("int64").to_numpy()
    else:
        records[ROW_NUMBER_COLUMN] = np.arange(1, n + 1, dtype=np.int64)
    records[PARSE_ERROR_COLUMN] = errors.joined()
    return records


def _mappings_folder() -> Traversable:
    return resources.files("fraud_assets.claims") / "mappings"


def bronze_table(
    records: pa.Table | pd.DataFrame, *, source: str, loaded_at: datetime, batch_id: str
) -> pa.Table:
    """Records in ``BRONZE_SCHEMA``: canonical columns as text, plus source and load time.

    ``records`` holds the canonical columns (any type: typed synthetic claims or mapped text)
    and optionally ``_row_number`` (default: 1..n) and ``_parse_error`` (default: none).
    Declared extra columns (``xn_``/``xc_``/``xp_``) follow the lineage columns, as text.
    """
    table = (
        records
        if isinstance(records, pa.Table)
        else pa.Table.from_pandas(records, preserve_index=False)
    )
    n = table.num_rows
    columns: dict[str, pa.ChunkedArray | pa.Array] = {}
    for name in CLAIM_COLUMNS:
        if name not in table.column_names:
            columns[name] = pa.nulls(n, pa.string())
        else:
            columns[name] = _as_strings(table.column(name))
    columns[SOURCE_COLUMN] = pa.repeat(pa.scalar(source, pa.string()), n)
    columns[LOADED_AT_COLUMN] = pa.repeat(pa.scalar(loaded_at, pa.timestamp("us", tz="UTC")), n)
    columns[ROW_NUMBER_COLUMN] = (
        table.column(ROW_NUMBER_COLUMN).cast(pa.int64())
        if ROW_NUMBER_COLUMN in table.column_names
        else pa.array(np.arange(1, n + 1, dtype=np.int64))
    )
    columns[BATCH_ID_COLUMN] = pa.repeat(pa.scalar(batch_id, pa.string()), n)
    columns[PARSE_ERROR_COLUMN] = (
        table.column(PARSE_ERROR_COLUMN).cast(pa.string())
        if PARSE_ERROR_COLUMN in table.column_names
        else pa.nulls(n, pa.string())
    )
    extras = extra_columns(table.column_names)
    for name in extras:
        columns[name] = _as_strings(table.column(name))
    schema = pa.schema([*BRONZE_SCHEMA, *(pa.field(name, pa.string()) for name in extras)])
    return pa.table(columns, schema=schema)


# --- mapping rules ---------------------------------------------------------------------------


class _ErrorLog:
    """Per-record error messages, joined with '; ' (vectorised: no per-row Python loop)."""

    def __init__(self, n: int) -> None:
        self._joined = pd.Series([None] * n, dtype=object)

    def add(self, messages: pd.Series) -> None:
        old = self._joined.to_numpy()
        new = messages.to_numpy(dtype=object)
        has_old = pd.notna(old)
        has_new = pd.notna(new)
        combined = np.where(has_new, new, old)
        both = has_old & has_new
        combined[both] = old[both] + "; " + new[both]
        self._joined = pd.Series(combined, dtype=object)

    def joined(self) -> pd.Series:
        return self._joined


def _clean(values: pd.Series, tokens: set[str]) -> pd.Series:
    """Strip whitespace and turn missing tokens into None; 'None' stays a value unless listed."""
    # pyarrow's string kernels: ~20x faster than pandas' per-element str.strip on a million rows.
    text = pc.utf8_trim_whitespace(
        pa.array(values.to_numpy(dtype=object), type=pa.string(), from_pandas=True)
    )
    token = pc.is_in(text, value_set=pa.array(sorted(tokens), type=pa.string()))
    cleaned = pc.if_else(pc.fill_null(token, False), pa.scalar(None, pa.string()), text)
    return pd.Series(cleaned.to_numpy(zero_copy_only=False), index=values.index, dtype=object)


def _apply_rule(
    column: str,
    rule: ColumnRule,
    raw: pd.DataFrame,
    tokens: set[str],
    errors: _ErrorLog,
    *,
    computed: dict[str, pd.Series] | None = None,
) -> pd.Series:
    n = len(raw)

    def read(name: str) -> pd.Series:
        if name not in raw.columns:  # an optional column the file does not have
            return pd.Series([None] * n, dtype=object)
        return _clean(raw[name], tokens)

    if rule.constant is not None:
        return pd.Series([str(rule.constant)] * n, dtype=object)
    if rule.compute is not None:
        values = transforms.compute(
            column, rule, read=read, computed=computed or {}, add_reasons=errors.add
        )
        label = column
    elif rule.template is not None:
        values = _render_template(rule.template, raw, tokens)
        label = column
    else:
        assert isinstance(rule.source, str)  # guaranteed by ColumnRule._one_origin
        values = read(rule.source)
        label = column if rule.source == column else f"{column} (from {rule.source})"

    if rule.derive == "age_group":
        ages = pd.to_numeric(values, errors="coerce")
        values = _masked(pd.Series(age_groups(ages.to_numpy()), dtype=object), ages.notna())
    if rule.values is not None:
        mapped = values.map({k: str(v) for k, v in rule.values.items()})
        unknown = values.notna() & mapped.isna()
        if rule.other_values == "keep":
            mapped = pd.Series(np.where(unknown, values, mapped), dtype=object)
        elif unknown.any():
            allowed = ", ".join(rule.values)
            errors.add(_masked(f"{label}: '" + values + f"' is not one of {allowed}", unknown))
        values = _masked(mapped, mapped.notna())
    if isinstance(rule.date_format, str) and rule.compute is None:
        parsed = pd.to_datetime(values, format=rule.date_format, errors="coerce")
        bad = values.notna() & parsed.isna()
        if bad.any():
            errors.add(
                _masked(
                    f"{label}: '" + values + f"' is not a date in format {rule.date_format}", bad
                )
            )
        values = _masked(parsed.dt.strftime("%Y-%m-%d"), parsed.notna())
    if rule.fill_missing is not None:
        values = pd.Series(np.where(values.notna(), values, str(rule.fill_missing)), dtype=object)
    return values.astype(object)


def _render_template(template: str, raw: pd.DataFrame, tokens: set[str]) -> pd.Series:
    """A format string over source columns; missing when any field it uses is missing."""
    result = pd.Series([""] * len(raw), dtype=object)
    missing = pd.Series(False, index=raw.index)
    for literal, field_name, _, _ in string.Formatter().parse(template):
        if literal:
            result = result + literal
        if field_name:
            values = _clean(raw[field_name], tokens)
            missing |= values.isna()
            result = result + values.fillna("")
    return _masked(result, ~missing)


_OTHER_DELIMITERS = (";", "\t", "|", ",")


def _delimiter_hint(columns: list[str], delimiter: str) -> str:
    """A header read as one or a few columns full of another delimiter: say how to set it."""
    for other in _OTHER_DELIMITERS:
        if other != delimiter and any(column.count(other) >= 2 for column in columns):
            # YAML spells a tab only inside double quotes.
            quoted = '"\\t"' if other == "\t" else f"'{other}'"
            return (
                f"; the header looks delimited by {quoted}: set csv: {{delimiter: {quoted}}} "
                "in the mapping"
            )
    return ""


def _data_columns(raw: pd.DataFrame) -> list[str]:
    return [str(c) for c in raw.columns if c != ROW_NUMBER_COLUMN]


def _masked(values: pd.Series, keep: pd.Series | np.ndarray) -> pd.Series:
    """``values`` where ``keep`` holds and None elsewhere, as an object Series."""
    drop = ~np.asarray(keep, dtype=bool)
    if not drop.any():
        return values if values.dtype == object else values.astype(object)
    kept = values.to_numpy(dtype=object, copy=True)
    kept[drop] = None
    return pd.Series(kept, index=values.index, dtype=object)


def _template_fields(template: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


def _apply_check(
    check: SourceCheck, raw: pd.DataFrame, tokens: set[str], errors: _ErrorLog
) -> None:
    values = _clean(raw[check.column], tokens)
    why = f" ({check.reason})" if check.reason else ""
    if check.allowed is not None:
        bad = values.notna() & ~values.isin(check.allowed)
        errors.add(
            _masked(
                f"{check.column}: '" + values + f"' is not one of {', '.join(check.allowed)}{why}",
                bad,
            )
        )
    if check.min is None and check.max is None:
        return
    numbers = pd.to_numeric(values, errors="coerce")
    not_number = values.notna() & numbers.isna()
    errors.add(_masked(f"{check.column}: '" + values + "' is not a number", not_number))
    if check.min is not None:
        low = numbers < check.min
        errors.add(_masked(f"{check.column}: " + values + f" is below {check.min:g}{why}", low))
    if check.max is not None:
        high = numbers > check.max
        errors.add(_masked(f"{check.column}: " + values + f" is above {check.max:g}{why}", high))


# --- reading files ---------------------------------------------------------------------------


def _format_of(path: Path) -> Literal["csv", "parquet"]:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    raise SourceError(
        f"cannot tell the format of {path}: name it .csv or .parquet, "
        "or set 'format' in the mapping"
    )


def _read_csv(path: Path, options: CsvOptions) -> tuple[pd.DataFrame, pd.Series, dict[str, Any]]:
    """All values as strings; malformed records kept (padded) with the reason in the errors."""
    header = _csv_header(path, options)
    dupes = sorted({c for c in header if header.count(c) > 1})
    if dupes:
        raise SourceError(f"{path}: the header repeats column name(s) {dupes}")
    malformed: list[tuple[int, str, int]] = []

    def keep_malformed(row: Any) -> str:
        malformed.append((row.number, row.text, row.actual_columns))
        return "skip"

    try:
        # Single-threaded so every malformed record gets its record number from the parser.
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(use_threads=False, encoding=options.encoding),
            parse_options=pacsv.ParseOptions(
                delimiter=options.delimiter,
                quote_char=options.quote_char,
                newlines_in_values=True,
                invalid_row_handler=keep_malformed,
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={name: pa.string() for name in header},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError) as err:
        raise SourceError(f"{path}: cannot be parsed as {options.encoding} CSV: {err}") from err

    # pyarrow numbers records from 1 at the header, skipping blank lines; a data record's
    # position is that number minus one, so well-formed rows fill the numbers left over.
    total = table.num_rows + len(malformed)
    if any(number is None for number, _, _ in malformed):
        raise SourceError(f"{path}: the CSV parser could not number a malformed record")
    is_good = np.ones(total + 1, dtype=bool)
    is_good[0] = False
    is_good[[number - 1 for number, _, _ in malformed]] = False
    good_numbers = np.flatnonzero(is_good).astype(np.int64)
    frame = table.to_pandas()
    frame[ROW_NUMBER_COLUMN] = good_numbers
    errors = pd.Series([None] * len(frame), dtype=object)

    if malformed:
        rows, messages = [], []
        for number, text, actual in malformed:
            fields = next(csv.reader(io.StringIO(text), delimiter=options.delimiter), [])
            padded = (fields + [None] * len(header))[: len(header)]
            rows.append([*padded, number - 1])
            problem = "truncated?" if actual < len(header) else "extra fields dropped"
            messages.append(f"record has {actual} fields, the header has {len(header)} ({problem})")
        extra = pd.DataFrame(rows, columns=[*header, ROW_NUMBER_COLUMN])
        frame = pd.concat([frame, extra], ignore_index=True)
        errors = pd.concat([errors, pd.Series(messages, dtype=object)], ignore_index=True)

    notes: dict[str, Any] = {"malformed_records": len(malformed)}
    if _ends_inside_quotes(path, options.quote_char) and total > 0:
        last = frame[ROW_NUMBER_COLUMN] == total
        errors = errors.astype(object)
        message = "the file ends inside a quoted field (truncated last record?)"
        errors[last] = np.where(errors[last].isna(), message, errors[last] + "; " + message)
        notes["ends_inside_quotes"] = True
    order = np.argsort(frame[ROW_NUMBER_COLUMN].to_numpy(), kind="stable")
    frame = frame.iloc[order].reset_index(drop=True)
    errors = errors.iloc[order].reset_index(drop=True)
    return frame, errors, notes


def _read_join(
    path: Path, join: JoinSpec, *, default_csv: CsvOptions
) -> tuple[pd.DataFrame, pd.Series]:
    """A joined file read like a claims file, with its own format and CSV options."""
    if (join.file_format or _format_of(path)) == "csv":
        frame, errors, _ = _read_csv(path, join.csv or default_csv)
    else:
        used = {*join.on.values(), *join.taken()}
        frame, errors, _ = _read_parquet(path, used=used)
    return frame, errors


def _csv_header(path: Path, options: CsvOptions) -> list[str]:
    encoding = (
        "utf-8-sig"
        if options.encoding.replace("_", "-").lower() in ("utf-8", "utf8")
        else options.encoding
    )
    try:
        with path.open(encoding=encoding, newline="") as handle:
            reader = csv.reader(handle, delimiter=options.delimiter, quotechar=options.quote_char)
            for row in reader:
                if any(cell.strip() for cell in row):
                    return row
    except UnicodeDecodeError as err:
        raise SourceError(f"{path}: is not {options.encoding} text ({err})") from err
    raise EmptySourceError(f"{path}: the file is empty (no header, no records)")


def _ends_inside_quotes(path: Path, quote_char: str) -> bool:
    """RFC 4180 quotes come in pairs (escaped quotes are doubled), so an odd count means EOF
    fell inside a quoted field: the last record was cut off."""
    quote = quote_char.encode()
    count = 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 24):
            count += chunk.count(quote)
    return count % 2 == 1


def _read_parquet(path: Path, *, used: set[str]) -> tuple[pd.DataFrame, pd.Series, dict[str, Any]]:
    """The file's columns as text; a column the mapping does not read stays unread (all
    null), so a list, struct or binary column beside the claims cannot reject the file."""
    if path.stat().st_size == 0:
        raise EmptySourceError(f"{path}: the file is empty (zero bytes)")
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as err:
        raise SourceError(f"{path}: cannot be read as Parquet: {err}") from err
    columns = {}
    for name, column in zip(table.column_names, table.columns, strict=True):
        if name not in used:
            columns[name] = pa.nulls(table.num_rows, pa.string())
            continue
        try:
            columns[name] = _as_strings(column)
        except pa.ArrowNotImplementedError as err:
            raise SourceError(
                f"{path}: column {name!r} of type {column.type} cannot be read as text"
            ) from err
        except pa.ArrowInvalid as err:
            raise SourceError(
                f"{path}: column {name!r} of type {column.type} cannot be read as text: "
                f"{_first_undecodable(column)}"
            ) from err
    frame = pa.table(columns).to_pandas() if columns else pd.DataFrame()
    frame[ROW_NUMBER_COLUMN] = np.arange(1, table.num_rows + 1, dtype=np.int64)
    return frame, pd.Series([None] * table.num_rows, dtype=object), {}


def _first_undecodable(column: pa.ChunkedArray) -> str:
    """Where a binary column stops being UTF-8 text: its first such row and value."""
    for row, value in enumerate(column.to_pylist(), start=1):
        if isinstance(value, bytes):
            try:
                value.decode("utf-8")
            except UnicodeDecodeError:
                return f"row {row} holds {value[:40]!r}, which is not UTF-8"
    return "a value is not UTF-8 text"


def _as_strings(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Typed Parquet values in the text form a CSV of the same data would carry."""
    kind = column.type
    if pa.types.is_timestamp(kind):
        return _timestamp_text(column)
    if pa.types.is_boolean(kind):
        return pc.if_else(column, "1", "0")
    # Dates cast to ISO text, numbers to their shortest round-tripping text.
    return column.cast(pa.string())


def _timestamp_text(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """A timestamp column as text: a date where every value is midnight (pandas writes dates
    as datetime64), else date and time to the second, with a fraction only if one exists."""
    kind = column.type
    if pc.all(pc.equal(column, pc.floor_temporal(column, unit="day"))).as_py() is not False:
        return pc.strftime(column, format="%Y-%m-%d")
    if pc.all(pc.equal(column, pc.floor_temporal(column, unit="second"))).as_py() is not False:
        seconds = column.cast(pa.timestamp("s", tz=kind.tz), safe=False)
        return pc.strftime(seconds, format="%Y-%m-%d %H:%M:%S")
    return pc.strftime(column, format="%Y-%m-%d %H:%M:%S")


def _yaml_keys(raw: Any) -> list[Any]:
    keys: list[Any] = []
    if isinstance(raw, dict):
        for key, value in raw.items():
            keys.append(key)
            keys.extend(_yaml_keys(value))
    elif isinstance(raw, list):
        for item in raw:
            keys.extend(_yaml_keys(item))
    return keys
