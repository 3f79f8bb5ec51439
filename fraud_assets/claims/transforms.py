"""Computed fields and joined files: the parts of a source mapping that combine columns.

``mapping`` declares the rules (pydantic) and reads files; this module carries out the rules
that take several source columns (``compute``) or several files (``joins``). Everything is
vectorised over the records, whose values are text or ``None``, and follows the mapping's
habit: a value that cannot be computed is ``None`` plus a reason in that record's
``_parse_error`` (naming the column and the value), never an exception; a joined file that
cannot be used at all is a ``SourceError`` naming the file.

``mapping`` imports this module, so this module never imports ``mapping`` at run time: the
reading and text cleaning it needs are passed in as functions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, model_validator

from fraud_assets.claims.errors import EmptySourceError, SourceError
from fraud_assets.claims.schema import (
    CLAIM_COLUMNS,
    DATE_COLUMNS,
    EARLIEST_DATE,
    LATEST_DATE,
    ROW_NUMBER_COLUMN,
)

if TYPE_CHECKING:
    from fraud_assets.claims.mapping import ColumnRule, JoinSpec

log = logging.getLogger(__name__)

ComputeFunction = Literal["days_between", "age_at", "count_present", "date_from_parts"]
ISO_DATE = "%Y-%m-%d"

# What each function takes in ``from``: (name of the inputs, how many; None = one or more).
_INPUTS: dict[str, tuple[str, int | None]] = {
    "days_between": ("(start, end)", 2),
    "age_at": ("(birth date, date)", 2),
    "count_present": ("", None),
}
# English names spelled out here: the calendar module's follow the process locale.
_MONTH_NAMES = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
]
_WEEKDAY_NAMES = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
_MONTHS = {
    spelling: number
    for number, name in enumerate(_MONTH_NAMES, start=1)
    for spelling in (name, name[:3], str(number), f"{number:02d}")
}
_WEEKDAYS = {
    spelling: number for number, name in enumerate(_WEEKDAY_NAMES) for spelling in (name, name[:3])
}
_MAX_WEEK_OF_MONTH = 6  # a 31-day month starting on a Sunday touches six Monday-to-Sunday weeks


class DateParts(BaseModel):
    """Source columns holding the pieces of one date (``compute: date_from_parts``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    year: str
    month: str
    day: str | None = None
    week_of_month: str | None = None
    day_of_week: str | None = None

    @model_validator(mode="after")
    def _one_day(self) -> DateParts:
        by_week = (self.week_of_month is not None, self.day_of_week is not None)
        if (self.day is not None and any(by_week)) or (self.day is None and not all(by_week)):
            raise ValueError("parts need day, or week_of_month and day_of_week (not both)")
        return self

    def columns(self) -> list[str]:
        parts = (self.year, self.month, self.day, self.week_of_month, self.day_of_week)
        return [column for column in parts if column is not None]


# --- declaring rules -----------------------------------------------------------------------------


def check_rule(rule: ColumnRule) -> None:
    """Raise ``ValueError`` when a rule's compute fields do not fit together."""
    if rule.compute is None:
        if isinstance(rule.source, list):
            raise ValueError(
                "a list of from columns needs compute (days_between, age_at, count_present)"
            )
        if isinstance(rule.date_format, dict):
            raise ValueError("a date_format per column needs compute (days_between or age_at)")
    if rule.end_before_start is not None and rule.compute != "days_between":
        raise ValueError("end_before_start applies to compute days_between only")
    if rule.not_before is not None and rule.compute != "date_from_parts":
        raise ValueError("not_before applies to compute date_from_parts only")
    if rule.parts is not None and rule.compute != "date_from_parts":
        raise ValueError("parts apply to compute date_from_parts only")
    if rule.compute is None:
        return
    if rule.compute == "date_from_parts":
        if rule.parts is None or rule.source is not None:
            raise ValueError("compute date_from_parts takes parts (year, month, ...), not from")
        if isinstance(rule.date_format, dict):
            raise ValueError("compute date_from_parts takes one date_format (for not_before)")
        return
    inputs = [rule.source] if isinstance(rule.source, str) else list(rule.source or [])
    what, count = _INPUTS[rule.compute]
    if count is not None and len(inputs) != count:
        raise ValueError(
            f"compute {rule.compute} takes {count} from columns {what}, got {len(inputs)}: {inputs}"
        )
    if count is None and not inputs:
        raise ValueError(f"compute {rule.compute} takes at least 1 from column, got none")
    if rule.compute == "count_present" and rule.date_format is not None:
        raise ValueError("compute count_present reads no dates: drop date_format")
    if isinstance(rule.date_format, dict):
        unknown = sorted(set(rule.date_format) - set(inputs))
        if unknown:
            raise ValueError(
                f"date_format names {unknown}, which are not among the from columns {inputs}"
            )


def rule_inputs(rule: ColumnRule) -> list[str]:
    """The source columns a compute rule reads (``not_before`` only when not canonical)."""
    if rule.parts is not None:
        columns = rule.parts.columns()
        if rule.not_before is not None and rule.not_before not in CLAIM_COLUMNS:
            columns.append(rule.not_before)
        return columns
    return [rule.source] if isinstance(rule.source, str) else list(rule.source or [])


def check_references(rules: Mapping[str, ColumnRule]) -> None:
    """A ``not_before`` naming a canonical column names a date column computed without one."""
    for column, rule in rules.items():
        other = rule.not_before
        if other is None or other not in CLAIM_COLUMNS:
            continue
        if other not in DATE_COLUMNS:
            raise ValueError(
                f"{column}: not_before names canonical column {other!r}, which is not a date "
                f"column {list(DATE_COLUMNS)}"
            )
        if other == column or other not in rules:
            raise ValueError(f"{column}: not_before names {other!r}, which has no other rule")
        if rules[other].not_before in CLAIM_COLUMNS:
            raise ValueError(
                f"{column}: not_before names {other!r}, whose own rule has a not_before on a "
                "canonical column: at most one date may depend on another"
            )


def rule_order(columns: Sequence[str], rules: Mapping[str, ColumnRule]) -> list[str]:
    """``columns`` with every rule whose ``not_before`` names another column moved last."""
    depends = {c for c in columns if c in rules and rules[c].not_before in columns}
    return [c for c in columns if c not in depends] + [c for c in columns if c in depends]


# --- computing values ------------------------------------------------------------------------


def compute(
    column: str,
    rule: ColumnRule,
    *,
    read: Callable[[str], pd.Series],
    computed: Mapping[str, pd.Series],
    add_reasons: Callable[[pd.Series], None],
) -> pd.Series:
    """The text values of a compute rule; ``read`` gives a source column's cleaned text."""
    if rule.compute == "date_from_parts":
        assert rule.parts is not None  # guaranteed by check_rule
        return _date_from_parts(
            column, rule, rule.parts, read=read, computed=computed, add_reasons=add_reasons
        )
    inputs = rule_inputs(rule)
    if rule.compute == "count_present":
        present = sum((read(name).notna().astype(np.int64) for name in inputs), start=0)
        return pd.Series(present, dtype=np.int64).astype(str).astype(object)
    pair = _DatePair(
        column,
        (inputs[0], inputs[1]),
        (read(inputs[0]), read(inputs[1])),
        (_format_of(rule, inputs[0]), _format_of(rule, inputs[1])),
        add_reasons=add_reasons,
    )
    if rule.compute == "days_between":
        return pair.days_between(end_before_start=rule.end_before_start or "error")
    return pair.age_at()


class _DatePair:
    """Two date columns of one record set, parsed once; bad dates are reasons on the rows."""

    def __init__(
        self,
        column: str,
        names: tuple[str, str],
        texts: tuple[pd.Series, pd.Series],
        formats: tuple[str, str],
        *,
        add_reasons: Callable[[pd.Series], None],
    ) -> None:
        self.column, self.names, self.texts = column, names, texts
        self.add_reasons = add_reasons
        self.first = _dates(column, names[0], texts[0], formats[0], add_reasons)
        self.second = _dates(column, names[1], texts[1], formats[1], add_reasons)
        self.both = self.first.notna() & self.second.notna()

    def reason(self, verb: str, where: pd.Series, *, order: tuple[int, int] = (0, 1)) -> None:
        """``<column>: <a> '<value>' <verb> <b> '<value>'`` on the rows ``where`` holds."""
        a, b = order
        self.add_reasons(
            _only_where(
                f"{self.column}: {self.names[a]} '"
                + self.texts[a]
                + f"' {verb} {self.names[b]} '"
                + self.texts[b]
                + "'",
                where,
            )
        )

    def days_between(self, *, end_before_start: str) -> pd.Series:
        # One date of a pair is a broken record, not a missing value: fill_missing (0 days
        # for an outpatient claim with neither date) must not hide it.
        one_only = self.texts[0].isna() != self.texts[1].isna()
        for a, b in ((0, 1), (1, 0)):
            self.add_reasons(
                _only_where(
                    f"{self.column}: {self.names[a]} '"
                    + self.texts[a]
                    + f"' has no {self.names[b]}",
                    one_only & self.texts[a].notna(),
                )
            )
        days = (self.second - self.first).dt.days
        keep = self.both
        if end_before_start == "error":
            reversed_ = self.both & (days < 0)
            self.reason("is before", reversed_, order=(1, 0))
            keep = keep & ~reversed_
        return _int_text(days, keep)

    def age_at(self) -> pd.Series:
        """Whole years, one more on each birthday (a 29 February birthday counts from
        1 March in other years, when (month, day) first passes (2, 29))."""
        born, at = self.first, self.second
        birthday_to_come = (at.dt.month < born.dt.month) | (
            (at.dt.month == born.dt.month) & (at.dt.day < born.dt.day)
        )
        years = at.dt.year - born.dt.year - birthday_to_come.astype(np.int64)
        born_after = self.both & (born > at)
        self.reason("is after", born_after)
        return _int_text(years, self.both & ~born_after)


def _format_of(rule: ColumnRule, name: str) -> str:
    if isinstance(rule.date_format, dict):
        return rule.date_format.get(name, ISO_DATE)
    return rule.date_format or ISO_DATE


def _dates(
    column: str,
    source: str,
    text: pd.Series,
    date_format: str,
    add_reasons: Callable[[pd.Series], None],
) -> pd.Series:
    parsed = pd.to_datetime(text, format=date_format, errors="coerce")
    bad = text.notna() & parsed.isna()
    add_reasons(
        _only_where(
            f"{column} (from {source}): '" + text + f"' is not a date in format {date_format}",
            bad,
        )
    )
    return pd.Series(parsed, index=text.index)


def _date_from_parts(
    column: str,
    rule: ColumnRule,
    parts: DateParts,
    *,
    read: Callable[[str], pd.Series],
    computed: Mapping[str, pd.Series],
    add_reasons: Callable[[pd.Series], None],
) -> pd.Series:
    """A date from year, month and day, or from year, month, week of month and weekday.

    Week 1 of a month is the Monday-to-Sunday week holding its 1st; the date is the given
    weekday of the given week, clamped into the month (Monday of week 1 in a month starting
    on a Wednesday is the 1st; Friday of week 5 in a month ending on a Tuesday is its last
    day). With ``not_before``, the year rolls forward by one when the date's month would
    come before that date's month: a January claim on a December accident is next year's.
    """

    def part(
        name: str, names: Mapping[str, int] | None, low: int, high: int, what: str
    ) -> pd.Series:
        return _part(column, read(name), name, names, (low, high), what, add_reasons)

    low, high = EARLIEST_DATE.year, LATEST_DATE.year
    year = part(parts.year, None, low, high, f"a year in {low}..{high}")
    month = part(parts.month, _MONTHS, 1, 12, "a month (Jan..Dec, January..December or 1..12)")
    weekday: pd.Series | None = None
    if parts.day is not None:
        day = part(parts.day, None, 1, 31, "a day of the month (1..31)")
    else:
        assert parts.week_of_month is not None and parts.day_of_week is not None
        weeks = f"a week of the month (1..{_MAX_WEEK_OF_MONTH})"
        day = part(parts.week_of_month, None, 1, _MAX_WEEK_OF_MONTH, weeks)
        weekdays = "a day of the week (Mon..Sun or Monday..Sunday)"
        weekday = part(parts.day_of_week, _WEEKDAYS, 0, 6, weekdays)
    dates = _assemble(year, month, day, weekday)
    if parts.day is not None:
        impossible = year.notna() & month.notna() & day.notna() & dates.isna()
        add_reasons(
            _only_where(
                f"{column}: day '"
                + read(parts.day)
                + f"' ({parts.day}) is not in "
                + year.astype("Int64").astype(str)
                + "-"
                + month.astype("Int64").astype(str),
                impossible,
            )
        )
    if rule.not_before is not None:
        other = _not_before_dates(column, rule, rule.not_before, read, computed, add_reasons)
        earlier_month = (year * 12 + month) < (other.dt.year * 12 + other.dt.month)
        rolls = dates.notna() & other.notna() & earlier_month
        if rolls.any():
            dates = dates.where(~rolls, _assemble(year + 1, month, day, weekday))
        # Without the other date the year is a guess: say so rather than land a guess.
        unknown_year = dates.notna() & other.isna()
        add_reasons(
            _only_where(
                pd.Series(
                    f"{column}: without {rule.not_before} the year is unknown",
                    index=dates.index,
                ),
                unknown_year,
            )
        )
        dates = dates.where(~unknown_year)
    return _only_where(dates.dt.strftime(ISO_DATE), dates.notna())


def _part(
    column: str,
    text: pd.Series,
    name: str,
    names: Mapping[str, int] | None,
    bounds: tuple[int, int],
    what: str,
    add_reasons: Callable[[pd.Series], None],
) -> pd.Series:
    """One date part as a number (by name through ``names``, else a whole number) in bounds."""
    if names is not None:
        values = text.str.lower().map(names).astype(float)
    else:
        values = pd.to_numeric(text, errors="coerce")
        values = values.where(values == np.floor(values))
    values = values.where((values >= bounds[0]) & (values <= bounds[1]))
    add_reasons(
        _only_where(
            f"{column} (from {name}): '" + text + f"' is not {what}", text.notna() & values.isna()
        )
    )
    return values


def _assemble(
    year: pd.Series, month: pd.Series, day: pd.Series, weekday: pd.Series | None
) -> pd.Series:
    """Dates from numeric parts; ``day`` is a week of the month when ``weekday`` is given."""
    known = year.notna() & month.notna() & day.notna()
    if weekday is not None:
        known &= weekday.notna()
    # Placeholder parts where a part is unknown keep the arithmetic vectorised; those rows
    # are masked out at the end.
    year, month, day = year.where(known, 2000), month.where(known, 1), day.where(known, 1)
    if weekday is None:
        dates = pd.to_datetime(
            pd.DataFrame({"year": year, "month": month, "day": day}), errors="coerce"
        )
    else:
        first = pd.to_datetime(pd.DataFrame({"year": year, "month": month, "day": 1}))
        wanted = 1 + (day - 1) * 7 + (weekday.where(known, 0) - first.dt.weekday)
        clamped = np.minimum(wanted.clip(lower=1), first.dt.days_in_month)
        dates = first + pd.to_timedelta(clamped - 1, unit="D")
    return dates.where(known)


def _not_before_dates(
    column: str,
    rule: ColumnRule,
    name: str,
    read: Callable[[str], pd.Series],
    computed: Mapping[str, pd.Series],
    add_reasons: Callable[[pd.Series], None],
) -> pd.Series:
    """The dates a rolling year must not fall before: a canonical column's mapped (ISO) text,
    whose own rule already reported bad values, or a source column read with date_format."""
    if name in computed:
        return pd.to_datetime(computed[name], format=ISO_DATE, errors="coerce")
    fmt = rule.date_format if isinstance(rule.date_format, str) else ISO_DATE
    return _dates(column, name, read(name), fmt, add_reasons)


def _int_text(numbers: pd.Series, keep: pd.Series) -> pd.Series:
    whole = numbers.where(keep).astype("Int64").astype(str)
    return _only_where(whole, keep)


def _only_where(values: pd.Series, keep: pd.Series | np.ndarray) -> pd.Series:
    """``values`` where ``keep`` holds and None elsewhere, as an object Series."""
    kept = values.to_numpy(dtype=object, copy=True)
    kept[~np.asarray(keep, dtype=bool)] = None
    return pd.Series(kept, index=values.index, dtype=object)


# --- joining files -------------------------------------------------------------------------------

JOIN_UNMATCHED_NOTE = "join_unmatched_rows"


def join_files(
    claims: pd.DataFrame,
    claim_errors: pd.Series,
    joins: Sequence[JoinSpec],
    *,
    claims_path: Path,
    tokens: Collection[str],
    read: Callable[[Path, JoinSpec], tuple[pd.DataFrame, pd.Series]],
    clean: Callable[[pd.Series, set[str]], pd.Series],
) -> tuple[pd.DataFrame, pd.Series, dict[str, dict[str, int]]]:
    """The claims with each join's columns added (left join: every claim stays, in order).

    ``read`` reads a joined file (text values, ``_row_number``, its record errors); ``clean``
    trims text and turns missing tokens into None. A claim that matches no row gets None in
    the joined columns. A matched row's own read error is added to the claim's errors, so a
    malformed member record cannot pass silently. Returns the frame, the errors and, per
    joined file, how many claims matched nothing.
    """
    frame = claims.reset_index(drop=True)
    errors = claim_errors.reset_index(drop=True)
    unmatched: dict[str, int] = {}
    for position, join in enumerate(joins):
        path = Path(join.file) if Path(join.file).is_absolute() else claims_path.parent / join.file
        where = f"joins[{position}] of the mapping, joined to {claims_path.name}"
        if not path.is_file():
            raise SourceError(f"join file {path} ({where}) does not exist or is not a file")
        try:
            right, right_errors = read(path, join)
        except EmptySourceError as err:
            # Empty means "no claims" for the claims file; here it is a broken join.
            raise SourceError(f"join file {path} ({where}) is empty") from err
        _check_join_columns(frame, right, join, path=path, claims_path=claims_path, where=where)
        keys = [f"__key_{i}" for i in range(len(join.on))]
        join_tokens = set(join.missing_values if join.missing_values is not None else tokens)
        left = pd.DataFrame(
            {
                key: clean(frame[column], set(tokens))
                for key, column in zip(keys, join.on, strict=True)
            }
        )
        other = pd.DataFrame(
            {
                **{
                    key: clean(right[column], join_tokens)
                    for key, column in zip(keys, join.on.values(), strict=True)
                },
                **{
                    landed: clean(right[column], join_tokens)
                    for column, landed in join.taken().items()
                },
                "__row": right[ROW_NUMBER_COLUMN].to_numpy(),
                "__error": right_errors.to_numpy(dtype=object),
            }
        ).dropna(subset=keys)
        _refuse_duplicate_keys(other, keys, join, path=path)
        merged = left.merge(other, how="left", on=keys, sort=False, indicator="__matched")
        if len(merged) != len(frame):  # _refuse_duplicate_keys makes this impossible
            raise AssertionError(f"joining {path} changed the number of claims")
        matched = (merged["__matched"] == "both").to_numpy()
        for landed in join.taken().values():
            frame[landed] = _only_where(merged[landed], merged[landed].notna()).to_numpy()
        row_errors = _only_where(
            f"{join.file} row "
            + merged["__row"].astype("Int64").astype(str)
            + ": "
            + merged["__error"].astype(object),
            matched & merged["__error"].notna().to_numpy(),
        )
        errors = _joined(errors, row_errors)
        unmatched[join.file] = int((~matched).sum())
        if unmatched[join.file]:
            log.warning(
                "%s: %d of %d claims match no row of %s on %s; their joined columns are missing",
                claims_path,
                unmatched[join.file],
                len(frame),
                path,
                ", ".join(join.on),
            )
    return frame, errors, {JOIN_UNMATCHED_NOTE: unmatched}


def _check_join_columns(
    frame: pd.DataFrame,
    right: pd.DataFrame,
    join: JoinSpec,
    *,
    path: Path,
    claims_path: Path,
    where: str,
) -> None:
    needed = [*join.on.values(), *join.taken()]
    lacking = [c for c in dict.fromkeys(needed) if c not in right.columns]
    if lacking:
        have = [c for c in right.columns if c != ROW_NUMBER_COLUMN]
        raise SourceError(f"{path}: {where} needs column(s) {lacking} that it lacks; it has {have}")
    keys = [c for c in join.on if c not in frame.columns]
    if keys:
        raise SourceError(
            f"{claims_path}: {where} joins on column(s) {keys}, which the claims lack"
        )
    clashes = [landed for landed in join.taken().values() if landed in frame.columns]
    if clashes:
        raise SourceError(
            f"{path}: {where} would add column(s) {clashes}, which the claims already have: "
            "rename them (columns: {name: new_name}) or set a prefix"
        )


def _refuse_duplicate_keys(
    other: pd.DataFrame, keys: list[str], join: JoinSpec, *, path: Path
) -> None:
    """A key on two rows would repeat every claim that matches it: name the first such key."""
    repeated = other.duplicated(subset=keys, keep=False)
    if not repeated.any():
        return
    first = other.loc[repeated].iloc[0]
    same = (other[keys] == first[keys]).all(axis=1)
    rows = [str(row) for row in other.loc[same, "__row"].head(6)]
    shown = ", ".join(rows[:5]) + (", ..." if len(rows) > 5 else "")
    repeated_keys = len(other.loc[repeated, keys].drop_duplicates())
    more = f" ({repeated_keys} keys are on more than one row)" if repeated_keys > 1 else ""
    columns = ", ".join(join.on.values())
    value = ", ".join(repr(first[key]) for key in keys)
    raise SourceError(
        f"{path}: {columns} {value} is on rows [{shown}]{more}: a joined file needs one row "
        "per key, or every claim with that key would be repeated"
    )


def _joined(first: pd.Series, second: pd.Series) -> pd.Series:
    """Two series of reasons joined with '; ' where both have one."""
    a, b = first.to_numpy(dtype=object), second.to_numpy(dtype=object)
    both = pd.notna(a) & pd.notna(b)
    combined = np.where(pd.notna(b), b, a)
    combined[both] = a[both] + "; " + b[both]
    return pd.Series(combined, dtype=object)
