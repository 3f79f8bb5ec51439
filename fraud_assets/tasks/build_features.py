"""Features step: silver ``claims`` → gold ``claim_features``, with its completeness check.

Run by Dagster through Pipes, by a bundle job as ``fraud-features``, or by hand with
``python -m fraud_assets.tasks.build_features``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fraud_assets import keys
from fraud_assets.features import (
    HOLDOUT,
    ID_COLUMN,
    LABEL_COLUMN,
    MODEL_FEATURES,
    SPLIT_COLUMN,
    TRAIN,
)
from fraud_assets.features.engineering import build_claim_features
from fraud_assets.lakehouse import table_store
from fraud_assets.spark import get_spark
from fraud_assets.tasks._runtime import (
    CheckOutcome,
    Materialization,
    TaskContext,
    TaskResult,
    run_task,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

FEATURES_ASSET = keys.CLAIM_FEATURES.to_user_string()


@dataclass(frozen=True)
class FeatureTableProfile:
    """What the written gold table holds, reconciled claim by claim with its silver source."""

    row_count: int
    silver_row_count: int
    silver_claims_missing: int
    claims_with_repeated_rows: int
    rows_not_in_silver: int
    null_counts: dict[str, int]
    split_counts: dict[str, int]
    fraud_rates: dict[str, float | None]

    @property
    def complete(self) -> bool:
        """No nulls in model features or split, and exactly one row per silver claim."""
        return (
            not any(self.null_counts.values())
            and self.silver_claims_missing == 0
            and self.claims_with_repeated_rows == 0
            and self.rows_not_in_silver == 0
        )


def profile_feature_table(features: DataFrame, claims: DataFrame) -> FeatureTableProfile:
    """Nulls, split sizes and fraud rates of ``features``, and its reconciliation with silver.

    Two passes: one aggregate over the gold table, one full outer join of per-claim row
    counts (so a claim_id repeated in silver or in gold shows up, not just a missing one).
    """
    from pyspark.sql import functions as F

    checked = [ID_COLUMN, SPLIT_COLUMN, *MODEL_FEATURES]
    in_split = {split: F.col(SPLIT_COLUMN) == split for split in (TRAIN, HOLDOUT)}
    totals = features.agg(
        *(F.sum(F.col(name).isNull().cast("long")).alias(name) for name in checked),
        *(F.count(F.when(cond, 1)).alias(f"{split}_rows") for split, cond in in_split.items()),
        *(
            F.count(F.when(cond, F.col(LABEL_COLUMN))).alias(f"{split}_labelled")
            for split, cond in in_split.items()
        ),
        *(
            F.sum(F.when(cond, F.col(LABEL_COLUMN))).alias(f"{split}_frauds")
            for split, cond in in_split.items()
        ),
    ).first()

    silver_rows = claims.groupBy(ID_COLUMN).agg(F.count(F.lit(1)).alias("silver_rows"))
    gold_rows = features.groupBy(ID_COLUMN).agg(F.count(F.lit(1)).alias("gold_rows"))
    silver_n, gold_n = F.col("silver_rows"), F.col("gold_rows")
    reconciled = (
        silver_rows.join(gold_rows, ID_COLUMN, "full_outer")
        .agg(
            F.sum(silver_n).alias("silver_row_count"),
            F.sum(gold_n).alias("row_count"),
            F.count(F.when(gold_n.isNull(), 1)).alias("missing"),
            F.count(F.when(gold_n > 1, 1)).alias("repeated"),
            F.sum(F.when(silver_n.isNull(), gold_n)).alias("not_in_silver"),
        )
        .first()
    )
    assert totals is not None and reconciled is not None
    return FeatureTableProfile(
        row_count=int(reconciled["row_count"] or 0),
        silver_row_count=int(reconciled["silver_row_count"] or 0),
        silver_claims_missing=int(reconciled["missing"]),
        claims_with_repeated_rows=int(reconciled["repeated"]),
        rows_not_in_silver=int(reconciled["not_in_silver"] or 0),
        null_counts={name: int(totals[name] or 0) for name in checked},
        split_counts={split: int(totals[f"{split}_rows"]) for split in in_split},
        fraud_rates={
            split: _rate(totals[f"{split}_frauds"], totals[f"{split}_labelled"])
            for split in in_split
        },
    )


def build_features(ctx: TaskContext) -> TaskResult:
    """Rebuild ``claim_features`` from silver ``claims`` and check it is complete."""
    settings = ctx.settings
    spark = get_spark()
    store = table_store(settings)
    claims = store.read_spark(spark, "claims")
    features = build_claim_features(
        claims, holdout_fraction=settings.holdout_fraction, seed=settings.seed
    )
    ctx.log.info("building claim_features from silver claims and writing it (Spark)")
    version = store.write_spark(features, "claim_features", mode="overwrite")
    ctx.log.info("wrote claim_features version %d; profiling it against silver", version)
    # Profile what was committed, not the plan that produced it.
    profile = profile_feature_table(store.read_spark(spark, "claim_features"), claims)

    metadata: dict[str, Any] = {
        "row_count": profile.row_count,
        "train_count": profile.split_counts[TRAIN],
        "holdout_count": profile.split_counts[HOLDOUT],
        "fraud_rate_train": profile.fraud_rates[TRAIN],
        "fraud_rate_holdout": profile.fraud_rates[HOLDOUT],
        "holdout_fraction": settings.holdout_fraction,
        "split_seed": settings.seed,
        "feature_count": len(MODEL_FEATURES),
        "delta_version": version,
        "table_location": store.location("claim_features"),
    }
    nulls = {name: n for name, n in profile.null_counts.items() if n}
    check = CheckOutcome(
        FEATURES_ASSET,
        keys.CHECK_FEATURES_COMPLETE,
        passed=profile.complete,
        metadata={
            "silver_row_count": profile.silver_row_count,
            "feature_row_count": profile.row_count,
            "silver_claims_missing": profile.silver_claims_missing,
            "claims_with_repeated_rows": profile.claims_with_repeated_rows,
            "rows_not_in_silver": profile.rows_not_in_silver,
            "columns_with_nulls": ", ".join(f"{k}={v}" for k, v in nulls.items()) or "none",
        },
        description="No nulls in model features and exactly one feature row per silver claim",
    )
    return TaskResult(materializations=[Materialization(FEATURES_ASSET, metadata)], checks=[check])


def _rate(frauds: Any, labelled: Any) -> float | None:
    return round(float(frauds) / labelled, 6) if labelled else None


def main(argv: list[str] | None = None) -> None:
    run_task(build_features, argv, name="features")


if __name__ == "__main__":
    main()
