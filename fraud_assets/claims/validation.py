"""Bronze to silver: type, validate and deduplicate a batch of claims with PySpark.

Every rule is a Spark Column that yields a reason (or null), so the same code runs on a
laptop and on a Databricks cluster. A bronze row ends in exactly one place: silver
``claims`` (typed, ``CLAIM_SCHEMA``) or ``claims_quarantine`` (as landed, with ``_reason``).

The data-quality checks are computed here too, from the tables as written, so a check
reports what readers will actually see.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from fraud_assets.claims.schema import (
    AGE_GROUPS,
    BATCH_ID_COLUMN,
    BRONZE_SCHEMA,
    CLAIM_COLUMNS,
    CLAIM_SCHEMA,
    CONTROL_CHARACTERS,
    DATE_COLUMNS,
    EARLIEST_DATE,
    ID_COLUMN,
    LATEST_DATE,
    MAX_TEXT_LENGTH,
    PARSE_ERROR_COLUMN,
    REASON_COLUMN,
    REQUIRED_COLUMNS,
    ROW_NUMBER_COLUMN,
    SILVER_LINEAGE,
    extra_columns,
    extra_kind,
    extra_type,
)
from fraud_assets.settings import Thresholds

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

_ISO_DATE = r"^\d{4}-\d{2}-\d{2}$"
# A decimal number, as a CSV writer spells one. Spark's casts also take Java literals (12d,
# 12f, 0x1p3), which no claims system means as numbers.
_NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
_CONTROL = f"[{CONTROL_CHARACTERS}]"
_INT32_MAX = 2**31 - 1


def validate_batch(
    bronze: DataFrame, *, thresholds: Thresholds, known_ids: DataFrame | None = None
) -> DataFrame:
    """Bronze rows with their typed canonical values and ``_reason`` (null when the row is good).

    ``known_ids`` holds ``claim_id`` and ``_batch_id`` of claims already in silver from other
    batches; a claim id seen there is a duplicate. Within the batch, the first good row of a
    claim id (lowest ``_row_number``) wins and later ones are duplicates.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    extras = extra_columns(bronze.columns)
    text = {name: _text(name) for name in [*CLAIM_COLUMNS, *extras]}
    typed = {name: _typed(name, text[name]) for name in CLAIM_COLUMNS}
    typed.update({name: _typed_extra(name, text[name]) for name in extras})
    reasons: list[Column] = [F.col(PARSE_ERROR_COLUMN)]
    for f in CLAIM_SCHEMA:
        name = f.name
        if not f.nullable:
            reasons.append(F.when(text[name].isNull(), F.lit(f"{name} is missing")))
        if not pa.types.is_string(f.type):
            reasons.append(
                F.when(text[name].isNotNull() & typed[name].isNull(), _not_a(name, f.type))
            )
    reasons.extend(_range_rules(typed, thresholds))
    # A declared extra may be missing (null in silver, NaN to the boosters); a value that is
    # there must parse, like the canonical numbers.
    for name in extras:
        if extra_kind(name) == "numeric":
            reasons.append(
                F.when(
                    text[name].isNotNull() & typed[name].isNull(),
                    F.concat(F.lit(f"{name} '"), text[name], F.lit("' is not a finite number")),
                )
            )
        else:
            reasons.extend(_bounded_text(name, typed[name]))

    frame = bronze.select(
        "*", *[typed[name].alias(f"__typed_{name}") for name in [*CLAIM_COLUMNS, *extras]]
    ).withColumn("__reason", F.concat_ws("; ", *reasons))

    # The first good row of each claim id is kept; every other row of that id is a duplicate.
    by_id = Window.partitionBy(F.col(f"__typed_{ID_COLUMN}")).orderBy(
        (F.col("__reason") != "").cast("int"), F.col(ROW_NUMBER_COLUMN)
    )
    frame = frame.withColumn("__rank", F.row_number().over(by_id)).withColumn(
        "__first_row", F.first(ROW_NUMBER_COLUMN).over(by_id)
    )
    duplicate = F.when(
        F.col(f"__typed_{ID_COLUMN}").isNotNull() & (F.col("__rank") > 1),
        F.concat(
            F.lit("duplicate claim_id in this batch (kept row "), F.col("__first_row"), F.lit(")")
        ),
    )
    reason_parts = [F.col("__reason"), duplicate]
    if known_ids is not None:
        known = known_ids.select(
            F.col(ID_COLUMN).alias("__known_id"), F.col(BATCH_ID_COLUMN).alias("__known_batch")
        ).dropDuplicates(["__known_id"])
        frame = frame.join(known, F.col(f"__typed_{ID_COLUMN}") == F.col("__known_id"), "left")
        reason_parts.append(
            F.when(
                F.col("__known_id").isNotNull(),
                F.concat(
                    F.lit("claim_id already in silver (batch "), F.col("__known_batch"), F.lit(")")
                ),
            )
        )
    reason = F.concat_ws("; ", *[F.when(part != "", part) for part in reason_parts])
    return frame.withColumn(REASON_COLUMN, F.when(reason != "", reason)).drop(
        "__reason", "__rank", "__first_row", "__known_id", "__known_batch"
    )


def silver_rows(validated: DataFrame) -> DataFrame:
    """The good rows, typed to ``CLAIM_SCHEMA``, with their lineage, then any typed extras."""
    from pyspark.sql import functions as F

    return validated.filter(F.col(REASON_COLUMN).isNull()).select(
        *[F.col(f"__typed_{name}").alias(name) for name in CLAIM_COLUMNS],
        *SILVER_LINEAGE,
        *[F.col(f"__typed_{name}").alias(name) for name in extra_columns(validated.columns)],
    )


def quarantine_rows(validated: DataFrame) -> DataFrame:
    """The rejected rows exactly as they landed, with every reason found."""
    from pyspark.sql import functions as F

    return validated.filter(F.col(REASON_COLUMN).isNotNull()).select(
        *BRONZE_SCHEMA.names, REASON_COLUMN, *extra_columns(validated.columns)
    )


def reason_counts(quarantine: DataFrame) -> dict[str, int]:
    """How many quarantined rows carry each kind of reason (values stripped, so kinds group)."""
    from pyspark.sql import functions as F

    kinds = quarantine.select(
        F.explode(F.split(F.col(REASON_COLUMN), "; ")).alias("reason")
    ).select(
        F.regexp_replace("reason", r"'[^']*'|-?\d+(\.\d+)?(E-?\d+)?|\(.*\)", "…").alias("kind")
    )
    rows = kinds.groupBy("kind").count().orderBy(F.desc("count")).collect()
    return {str(row["kind"]): int(row["count"]) for row in rows}


# --- checks on the written tables --------------------------------------------------------------


@dataclass
class CheckVerdict:
    """A data-quality check's outcome, before it becomes a Dagster check result."""

    passed: bool
    metadata: dict[str, Any] = field(default_factory=dict)
    description: str = ""


def reconcile(bronze: DataFrame, silver: DataFrame, quarantine: DataFrame) -> CheckVerdict:
    """Every bronze row of the batch is in silver or quarantine, exactly once (one Spark job)."""
    from pyspark.sql import functions as F

    def tally(frame: DataFrame, name: str) -> DataFrame:
        return frame.groupBy(ROW_NUMBER_COLUMN).agg(F.count(F.lit(1)).alias(name))

    joined = (
        tally(bronze, "b")
        .join(tally(silver, "s"), ROW_NUMBER_COLUMN, "full_outer")
        .join(tally(quarantine, "q"), ROW_NUMBER_COLUMN, "full_outer")
        .select(*[F.coalesce(F.col(c), F.lit(0)).alias(c) for c in ("b", "s", "q")])
    )
    placed = F.col("s") + F.col("q")
    row = joined.agg(
        F.sum("b").alias("bronze_rows"),
        F.sum("s").alias("silver_rows"),
        F.sum("q").alias("quarantined_rows"),
        F.sum(F.when((F.col("b") > 0) & (placed == 0), 1).otherwise(0)).alias("rows_lost"),
        F.sum(F.when(placed > F.greatest(F.col("b"), F.lit(1)), 1).otherwise(0)).alias(
            "rows_doubled"
        ),
        F.sum(F.when((F.col("b") == 0) & (placed > 0), 1).otherwise(0)).alias("rows_not_in_bronze"),
    ).first()
    assert row is not None
    counts = {key: int(value or 0) for key, value in row.asDict().items()}
    passed = (
        counts["bronze_rows"] == counts["silver_rows"] + counts["quarantined_rows"]
        and counts["rows_lost"] == 0
        and counts["rows_doubled"] == 0
        and counts["rows_not_in_bronze"] == 0
    )
    return CheckVerdict(
        passed,
        counts,
        f"bronze {counts['bronze_rows']} = silver {counts['silver_rows']}"
        f" + quarantine {counts['quarantined_rows']}",
    )


def unique_claim_ids(silver: DataFrame) -> CheckVerdict:
    """``claim_id`` is unique across the whole silver table (one Spark job)."""
    from pyspark.sql import functions as F

    per_id = silver.groupBy(ID_COLUMN).agg(F.count(F.lit(1)).alias("n"))
    row = per_id.agg(
        F.sum("n").alias("rows"),
        F.sum(F.when(F.col("n") > 1, 1).otherwise(0)).alias("duplicated"),
        F.slice(F.collect_list(F.when(F.col("n") > 1, F.col(ID_COLUMN))), 1, 5).alias("examples"),
    ).first()
    assert row is not None
    n_duplicated = int(row["duplicated"] or 0)
    return CheckVerdict(
        n_duplicated == 0,
        {
            "rows": int(row["rows"] or 0),
            "duplicated_claim_ids": n_duplicated,
            "examples": [str(x) for x in row["examples"] or []],
        },
        "claim_id is unique in silver" if n_duplicated == 0 else "claim_id repeats in silver",
    )


def schema_matches(
    actual: pa.Schema, expected: pa.Schema, *, typed_extras: bool = False
) -> CheckVerdict:
    """Same column names in order and the same logical types (string/large_string alike).

    Declared extra columns (``xn_``/``xc_``/``xp_``) may follow; they are text, except numeric
    ones once typed (``typed_extras``: silver), which are float64.
    """
    problems = []
    extras = extra_columns(actual.names)
    core = [n for n in actual.names if n not in extras]
    if core != expected.names:
        missing = [n for n in expected.names if n not in core]
        extra = [n for n in core if n not in expected.names]
        problems.append(f"columns differ: missing {missing}, unexpected {extra}")
    for f in expected:
        if f.name in actual.names and not _same_type(actual.field(f.name).type, f.type):
            problems.append(f"{f.name} is {actual.field(f.name).type}, expected {f.type}")
    for name in extras:
        kind = extra_type(name, typed=typed_extras)
        if not _same_type(actual.field(name).type, kind):
            problems.append(f"{name} is {actual.field(name).type}, expected {kind}")
    return CheckVerdict(
        not problems,
        {"problems": problems, "columns": len(actual.names)},
        "; ".join(problems) or "schema matches the contract",
    )


TOP_REASONS = 3


def quarantine_rate(
    *, bronze_rows: int, quarantined_rows: int, reasons: dict[str, int], thresholds: Thresholds
) -> CheckVerdict:
    """Few enough of the batch's rows were quarantined; the message names the top reasons.

    A model trained on the rest would learn from a silently biased sample (a mapping that
    drops every inpatient claim, say), so the check blocks: its severity is ERROR.
    """
    rate = quarantined_rows / bronze_rows if bronze_rows else 0.0
    limit = thresholds.max_quarantine_rate
    top = dict(sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_REASONS])
    why = "; ".join(f"{reason} ({n} rows)" for reason, n in top.items())
    return CheckVerdict(
        rate <= limit,
        {
            "quarantine_rate": round(rate, 6),
            "max_quarantine_rate": limit,
            "quarantined_rows": quarantined_rows,
            "bronze_rows": bronze_rows,
            "top_reasons": top,
        },
        f"{rate:.1%} of the batch quarantined (limit {limit:.0%})"
        + (f"; top reasons: {why}" if why else "")
        + (
            "; fix the source or its mapping, or raise FRAUD_THRESHOLDS__MAX_QUARANTINE_RATE"
            if rate > limit
            else ""
        ),
    )


def value_ranges(silver_batch: DataFrame, *, thresholds: Thresholds) -> CheckVerdict:
    """No silver value breaks a range rule (one written by something other than validate)."""
    from pyspark.sql import functions as F

    typed = {name: F.col(name) for name in CLAIM_COLUMNS}
    rules = _range_rules(typed, thresholds)
    violations = silver_batch.filter(F.concat_ws("; ", *rules) != "").count() if rules else 0
    return CheckVerdict(
        violations == 0,
        {"silver_rows_out_of_range": violations},
        f"{violations} silver row(s) break a range rule",
    )


def null_rates(bronze: DataFrame, *, thresholds: Thresholds) -> CheckVerdict:
    """Share of landed rows missing each required column, against ``max_null_rate``."""
    from pyspark.sql import functions as F

    aggregates = [F.sum(_text(name).isNull().cast("long")).alias(name) for name in REQUIRED_COLUMNS]
    row = bronze.agg(F.count(F.lit(1)).alias("__rows"), *aggregates).first()
    assert row is not None
    total = int(row["__rows"])
    if total == 0:
        return CheckVerdict(True, {"rows": 0}, "empty batch: nothing to measure")
    rates = {name: round(int(row[name] or 0) / total, 6) for name in REQUIRED_COLUMNS}
    worst = max(rates, key=lambda name: rates[name])
    return CheckVerdict(
        rates[worst] <= thresholds.max_null_rate,
        {"null_rates": rates, "worst_column": worst, "max_null_rate": thresholds.max_null_rate},
        f"worst: {worst} {rates[worst]:.2%} missing (limit {thresholds.max_null_rate:.0%})",
    )


# --- rules ---------------------------------------------------------------------------------------


def _text(name: str) -> Column:
    """The landed text, trimmed, with an empty string read as missing."""
    from pyspark.sql import functions as F

    trimmed = F.trim(F.col(name).cast("string"))
    return F.when(trimmed != "", trimmed)


def _typed(name: str, text: Column) -> Column:
    """The value cast to its contract type; null when it does not parse (never an error)."""
    from pyspark.sql import functions as F

    kind = CLAIM_SCHEMA.field(name).type
    if pa.types.is_date(kind):
        return F.when(text.rlike(_ISO_DATE), text.try_cast("date"))
    if pa.types.is_floating(kind):
        return _decimal(text)
    if pa.types.is_integer(kind):
        # "3" and "3.0" are both the whole number 3; "3.5" and "3e12" are not int32.
        number = F.when(text.rlike(_NUMBER), text.try_cast("double"))
        whole = (number == F.round(number, 0)) & (F.abs(number) <= _INT32_MAX)
        typed = F.when(whole, number.cast("int"))
        if name == "is_fraud":
            return F.when(typed.isin(0, 1), typed)
        return typed
    return text


def _decimal(text: Column) -> Column:
    """A finite decimal number as a double; null when the text is not one."""
    from pyspark.sql import functions as F

    number = F.when(text.rlike(_NUMBER), text.try_cast("double"))
    # + 0.0 turns -0.0 into 0.0: "-0" is the amount 0.
    return F.when(~F.isnan(number) & (F.abs(number) != float("inf")), number + F.lit(0.0))


def _typed_extra(name: str, text: Column) -> Column:
    """A declared extra typed: numeric ones as doubles (null when not a number), else text."""
    return _decimal(text) if extra_kind(name) == "numeric" else text


def _not_a(name: str, kind: pa.DataType) -> Column:
    from pyspark.sql import functions as F

    if pa.types.is_date(kind):
        problem = "is not a date (YYYY-MM-DD)"
    elif pa.types.is_floating(kind):
        problem = "is not a finite number"
    elif name == "is_fraud":
        problem = "is not 0 or 1"
    else:
        problem = "is not a whole number"
    return F.concat(F.lit(f"{name} '"), _text(name), F.lit(f"' {problem}"))


def column_ranges(t: Thresholds) -> dict[str, tuple[float, float]]:
    """The inclusive range of each bounded claim column: batch validation quarantines a value
    outside it, and the scoring service answers 422 (one contract, everywhere)."""
    return {
        "claim_amount": (t.min_claim_amount, t.max_claim_amount),
        "patient_age": (0, t.max_patient_age),
        "length_of_stay": (0, t.max_length_of_stay),
        "num_procedures": (t.min_num_procedures, t.max_num_procedures),
    }


def _range_rules(typed: dict[str, Column], t: Thresholds) -> list[Column]:
    """Rules on typed values; each yields a reason naming the column, value and limit."""
    from pyspark.sql import functions as F

    def bounded(name: str, low: float, high: float) -> list[Column]:
        value = typed[name]
        return [
            F.when(
                value < low,
                F.concat(F.lit(f"{name} "), value.cast("string"), F.lit(f" is below {low:g}")),
            ),
            F.when(
                value > high,
                F.concat(F.lit(f"{name} "), value.cast("string"), F.lit(f" is above {high:g}")),
            ),
        ]

    expected_group = F.lit(None).cast("string")
    for label, low, high in reversed(AGE_GROUPS):
        expected_group = F.when(typed["patient_age"].between(low, high), F.lit(label)).otherwise(
            expected_group
        )

    def dated(name: str) -> list[Column]:
        value = typed[name]
        return [
            F.when(
                value < F.lit(EARLIEST_DATE),
                F.concat(
                    F.lit(f"{name} "), value.cast("string"), F.lit(f" is before {EARLIEST_DATE}")
                ),
            ),
            F.when(
                value > F.lit(LATEST_DATE),
                F.concat(
                    F.lit(f"{name} "), value.cast("string"), F.lit(f" is after {LATEST_DATE}")
                ),
            ),
        ]

    def bounded_text(name: str) -> list[Column]:
        return _bounded_text(name, typed[name])

    return [
        *(
            rule
            for field in CLAIM_SCHEMA
            if pa.types.is_string(field.type)
            for rule in bounded_text(field.name)
        ),
        *(rule for name in DATE_COLUMNS for rule in dated(name)),
        *(
            rule
            for name, (low, high) in column_ranges(t).items()
            for rule in bounded(name, low, high)
        ),
        F.when(
            typed["service_date"] > typed["claim_date"],
            F.concat(
                F.lit("service_date "),
                typed["service_date"].cast("string"),
                F.lit(" is after claim_date "),
                typed["claim_date"].cast("string"),
            ),
        ),
        F.when(
            typed["patient_age_group"].isNotNull()
            & expected_group.isNotNull()
            & (typed["patient_age_group"] != expected_group),
            F.concat(
                F.lit("patient_age_group '"),
                typed["patient_age_group"],
                F.lit("' does not match patient_age "),
                typed["patient_age"].cast("string"),
            ),
        ),
    ]


def _bounded_text(name: str, value: Column) -> list[Column]:
    """No control character, and at most ``MAX_TEXT_LENGTH`` characters."""
    from pyspark.sql import functions as F

    return [
        F.when(value.rlike(_CONTROL), F.lit(f"{name} holds a control character")),
        F.when(
            F.length(value) > MAX_TEXT_LENGTH,
            F.concat(
                F.lit(f"{name} has "),
                F.length(value).cast("string"),
                F.lit(f" characters; the limit is {MAX_TEXT_LENGTH}"),
            ),
        ),
    ]


def _same_type(actual: pa.DataType, expected: pa.DataType) -> bool:
    def textual(t: pa.DataType) -> bool:
        return bool(
            pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)
        )

    if textual(expected):
        return textual(actual)
    if pa.types.is_timestamp(expected):
        return pa.types.is_timestamp(actual)
    return bool(actual.equals(expected))
