"""Gold claim features in PySpark: silver claims in, one feature row per claim out.

A pure DataFrame → DataFrame function with no I/O, shared by the features step and batch
scoring. Feature meanings and fills are documented in ``fraud_assets.features``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fraud_assets.features import (
    CATEGORICAL_FEATURES,
    CLAIM_FEATURES_SCHEMA,
    EXCLUDED,
    FIRST_CLAIM_GAP_DAYS,
    HOLDOUT,
    INPUT_COLUMNS,
    LABEL_COLUMN,
    MISSING_CATEGORY,
    SPLIT_BUCKETS,
    SPLIT_COLUMN,
    TRAIN,
    UNLABELLED,
    ZERO_SPREAD,
    SplitPolicy,
    out_of_time_cutoff,
    require_input_columns,
)

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame


def build_claim_features(claims: DataFrame, *, split: SplitPolicy) -> DataFrame:
    """Engineer the gold features and the train/holdout split for every claim in ``claims``.

    Aggregates (provider, patient, procedure, duplicates) are computed over ``claims`` itself.
    To score a small batch consistently with training, pass the batch together with the
    history it should be compared against, then keep the batch's rows.

    Args:
        claims: silver claims (``CLAIM_SCHEMA`` columns; lineage columns are ignored).
        split: how labelled claims are split into train and holdout (``SplitPolicy``).

    Returns:
        One row per input row with exactly the ``CLAIM_FEATURES_SCHEMA`` columns.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    require_input_columns(claims.columns, source="claims DataFrame")

    base = claims.select(*INPUT_COLUMNS).fillna(MISSING_CATEGORY, subset=CATEGORICAL_FEATURES)

    provider = base.groupBy("provider_id").agg(
        F.count(F.lit(1)).alias("provider_claim_count"),
        F.countDistinct("patient_id").alias("provider_unique_patients"),
        F.avg("claim_amount").alias("provider_avg_amount"),
        F.collect_set("provider_specialty").alias("_specialties"),
    )
    # A provider is a peer in every specialty it bills under, with its overall average.
    provider_in_specialty = provider.select(
        "provider_id",
        "provider_avg_amount",
        F.explode("_specialties").alias("provider_specialty"),
    )
    specialty = provider_in_specialty.groupBy("provider_specialty").agg(
        F.avg("provider_avg_amount").alias("_peer_mean"),
        F.stddev_pop("provider_avg_amount").alias("_peer_std"),
    )
    peer_zscore = provider_in_specialty.join(specialty, "provider_specialty").select(
        "provider_id",
        "provider_specialty",
        _zscore(F.col("provider_avg_amount"), F.col("_peer_mean"), F.col("_peer_std")).alias(
            "provider_amount_peer_zscore"
        ),
    )
    # Exact median (not percentile_approx) so the norm is reproducible by any engine.
    procedure = base.groupBy("procedure_code").agg(
        F.median("claim_amount").alias("_procedure_median"),
        F.avg("claim_amount").alias("_procedure_mean"),
        F.stddev_pop("claim_amount").alias("_procedure_std"),
    )

    by_patient = Window.partitionBy("patient_id")
    patient_history = by_patient.orderBy("service_date", "claim_date", "claim_id")
    same_bill = Window.partitionBy("patient_id", "provider_id", "procedure_code", "service_date")
    previous_service = F.lag("service_date").over(patient_history)

    amount = F.col("claim_amount").cast("double")
    procedure_median = F.col("_procedure_median")

    # Left joins: a claim is never dropped; a null key (outside the silver contract) yields
    # null aggregates, which the blocking features_complete check reports.
    features = (
        base.join(provider.drop("_specialties"), "provider_id", "left")
        .join(peer_zscore, ["provider_id", "provider_specialty"], "left")
        .join(procedure, "procedure_code", "left")
        .select(
            "*",
            _split_column(claims, split).alias(SPLIT_COLUMN),
            (amount / F.greatest(F.col("num_procedures"), F.lit(1))).alias("amount_per_procedure"),
            F.datediff("claim_date", "service_date").alias("service_to_claim_days"),
            F.count(F.lit(1)).over(by_patient).alias("patient_claim_count"),
            F.size(F.collect_set("provider_id").over(by_patient)).alias("patient_provider_count"),
            F.coalesce(
                F.datediff("service_date", previous_service), F.lit(FIRST_CLAIM_GAP_DAYS)
            ).alias("days_since_prev_patient_claim"),
            F.when(procedure_median == 0, F.lit(1.0))
            .otherwise(amount / procedure_median)
            .alias("amount_vs_procedure_median"),
            _zscore(amount, F.col("_procedure_mean"), F.col("_procedure_std")).alias(
                "amount_procedure_zscore"
            ),
            (F.count(F.lit(1)).over(same_bill) - 1).alias("duplicate_claim_count"),
            (F.row_number().over(same_bill.orderBy("claim_date", "claim_id")) > 1)
            .cast("int")
            .alias("is_duplicate_claim"),
        )
    )
    return features.select(*_typed_output_columns())


def _zscore(value: Column, mean: Column, std: Column) -> Column:
    from pyspark.sql import functions as F

    return F.when(std.isNull() | (std < ZERO_SPREAD), F.lit(0.0)).otherwise((value - mean) / std)


def _typed_output_columns() -> list[Column]:
    """The gold columns in contract order, cast to the contract's types."""
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_type

    return [
        F.col(field.name).cast(from_arrow_type(field.type)).alias(field.name)
        for field in CLAIM_FEATURES_SCHEMA
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
