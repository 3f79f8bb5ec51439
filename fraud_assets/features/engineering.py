"""Gold claim features in PySpark: silver claims in, one feature row per claim out.

A pure DataFrame → DataFrame function with no I/O, shared by the features step and batch
scoring. Feature meanings and fills are documented in ``fraud_assets.features``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fraud_assets.claims.schema import extra_columns
from fraud_assets.features import (
    ACTIVITY_DAYS,
    CATEGORICAL_FEATURES,
    EXCLUDED,
    FIRST_CLAIM_GAP_DAYS,
    HOLDOUT,
    INPUT_COLUMNS,
    LABEL_COLUMN,
    LOOKBACK_DAYS,
    MISSING_CATEGORY,
    SPLIT_BUCKETS,
    SPLIT_COLUMN,
    TRAIN,
    UNLABELLED,
    ZERO_SPREAD,
    SplitPolicy,
    claim_features_schema,
    out_of_time_cutoff,
    require_input_columns,
)

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, WindowSpec


def build_claim_features(claims: DataFrame, *, split: SplitPolicy) -> DataFrame:
    """Engineer the gold features and the train/holdout split for every claim in ``claims``.

    Aggregates are point-in-time (see ``fraud_assets.features``): a claim's history is
    itself and the claims of ``claims`` filed on the ``LOOKBACK_DAYS`` (for a provider's
    or patient's own activity, ``ACTIVITY_DAYS``) days before it. To
    score a batch, pass it together with silver, then keep the batch's rows: the features
    are those a claim of the same history had in training.

    Args:
        claims: silver claims (``CLAIM_SCHEMA`` columns; lineage columns are ignored).
        split: how labelled claims are split into train and holdout (``SplitPolicy``).

    Returns:
        One row per input row with exactly the ``CLAIM_FEATURES_SCHEMA`` columns, then the
        silver extras copied per claim (``claim_features_schema``).
    """
    from pyspark.sql import functions as F

    require_input_columns(claims.columns, source="claims DataFrame")
    extras = extra_columns(claims.columns)
    text_extras = extra_columns(extras, "categorical", "protected")

    base = (
        claims.select(*INPUT_COLUMNS, *extras)
        .fillna(MISSING_CATEGORY, subset=[*CATEGORICAL_FEATURES, *text_extras])
        .withColumn(_DAY, F.datediff("claim_date", F.lit("1970-01-01")))
    )
    amount = F.col("claim_amount").cast("double")

    provider_recent = _history("provider_id", days=ACTIVITY_DAYS)
    patient_recent = _history("patient_id", days=ACTIVITY_DAYS)
    provider_mean = _mean_with_self(amount, provider_recent)
    specialty_mean, specialty_std = _stats_with_self(amount, _history("provider_specialty"))
    procedure_mean, procedure_std = _stats_with_self(amount, _history("procedure_code"))
    latest_service = F.max("service_date").over(patient_recent)
    duplicates = F.count(F.lit(1)).over(
        _history("patient_id", "provider_id", "procedure_code", "service_date")
    )

    features = base.select(
        "*",
        _split_column(claims, split).alias(SPLIT_COLUMN),
        (amount / F.greatest(F.col("num_procedures"), F.lit(1))).alias("amount_per_procedure"),
        F.datediff("claim_date", "service_date").alias("service_to_claim_days"),
        (F.count(F.lit(1)).over(provider_recent) + 1).alias("provider_claim_count"),
        _distinct_with_self("patient_id", provider_recent).alias("provider_unique_patients"),
        provider_mean.alias("provider_avg_amount"),
        _zscore(provider_mean, specialty_mean, specialty_std).alias("provider_amount_peer_zscore"),
        (F.count(F.lit(1)).over(patient_recent) + 1).alias("patient_claim_count"),
        _distinct_with_self("provider_id", patient_recent).alias("patient_provider_count"),
        # greatest() skips nulls, so the first claim is decided before it.
        F.when(latest_service.isNull(), F.lit(FIRST_CLAIM_GAP_DAYS))
        .otherwise(F.greatest(F.datediff("service_date", latest_service), F.lit(0)))
        .alias("days_since_prev_patient_claim"),
        F.when(procedure_mean == 0, F.lit(1.0))
        .otherwise(amount / procedure_mean)
        .alias("amount_vs_procedure_mean"),
        _zscore(amount, procedure_mean, procedure_std).alias("amount_procedure_zscore"),
        duplicates.alias("duplicate_claim_count"),
        (duplicates > 0).cast("int").alias("is_duplicate_claim"),
    )
    return features.select(*_typed_output_columns(claims.columns))


_DAY = "_claim_day"  # claim_date as days since the epoch: the order of every history window


def _history(*keys: str, days: int = LOOKBACK_DAYS) -> WindowSpec:
    """The claims of the same ``keys`` filed on the ``days`` days before this one."""
    from pyspark.sql import Window

    return Window.partitionBy(*keys).orderBy(_DAY).rangeBetween(-days, -1)


def _mean_with_self(value: Column, window: WindowSpec) -> Column:
    from pyspark.sql import functions as F

    return (F.coalesce(F.sum(value).over(window), F.lit(0.0)) + value) / (
        F.count(F.lit(1)).over(window) + 1
    )


def _stats_with_self(value: Column, window: WindowSpec) -> tuple[Column, Column]:
    """Mean and population std of the history plus this claim's own value.

    The history's mean and variance come from Spark's stable aggregates; adding one value
    uses Chan's update (no sum-of-squares cancellation).
    """
    from pyspark.sql import functions as F

    n = F.count(F.lit(1)).over(window)
    history_mean = F.coalesce(F.avg(value).over(window), value)
    history_m2 = F.coalesce(F.var_pop(value).over(window) * n, F.lit(0.0))
    delta = value - history_mean
    mean = history_mean + delta / (n + 1)
    variance = (history_m2 + delta * delta * n / (n + 1)) / (n + 1)
    return mean, F.sqrt(variance)


def _distinct_with_self(column: str, window: WindowSpec) -> Column:
    from pyspark.sql import functions as F

    earlier = F.coalesce(F.collect_set(column).over(window), F.array().cast("array<string>"))
    return F.size(F.array_union(earlier, F.array(F.col(column))))


def _zscore(value: Column, mean: Column, std: Column) -> Column:
    from pyspark.sql import functions as F

    return F.when(std.isNull() | (std < ZERO_SPREAD), F.lit(0.0)).otherwise((value - mean) / std)


def _typed_output_columns(silver_columns: list[str]) -> list[Column]:
    """The gold columns in contract order, cast to the contract's types."""
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_type

    return [
        F.col(field.name).cast(from_arrow_type(field.type)).alias(field.name)
        for field in claim_features_schema(silver_columns)
    ]


def _split_column(claims: DataFrame, split: SplitPolicy) -> Column:
    """``SplitPolicy`` as a column; the out-of-time cutoff is found once, on the driver."""
    from pyspark.sql import functions as F

    labelled = F.col(LABEL_COLUMN).isNotNull()
    unit_hash = F.md5(F.concat(F.lit(f"{split.seed}:"), F.col(split.unit_column)))
    bucket = F.conv(F.substring(unit_hash, 1, 8), 16, 10).cast("long") % SPLIT_BUCKETS
    in_group = bucket < F.lit(split.bucket_limit)
    if split.strategy == "random":
        decided = F.when(in_group, F.lit(HOLDOUT)).otherwise(F.lit(TRAIN))
    else:
        counts = claims.filter(labelled).groupBy("claim_date").count().collect()
        cutoff = out_of_time_cutoff({row[0]: int(row[1]) for row in counts}, split.time_fraction)
        late = F.lit(False) if cutoff is None else F.col("claim_date") >= F.lit(cutoff)
        if split.grouped_in_time:
            decided = (
                F.when(in_group & late, F.lit(HOLDOUT))
                .when(~in_group & ~late, F.lit(TRAIN))
                .otherwise(F.lit(EXCLUDED))
            )
        else:
            decided = F.when(late, F.lit(HOLDOUT)).otherwise(F.lit(TRAIN))
    return F.when(~labelled, F.lit(UNLABELLED)).otherwise(decided)
