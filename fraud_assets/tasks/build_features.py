"""Features step: silver ``claims`` → gold ``claim_features``, with its completeness check.

Run by Dagster through Pipes, by a bundle job as ``fraud-features``, or by hand with
``python -m fraud_assets.tasks.build_features``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fraud_assets import keys
from fraud_assets.checks import CHECK_FEATURES_COMPLETE, CHECK_HOLDOUT_SEPARATED
from fraud_assets.claims.adjudications import with_adjudications
from fraud_assets.features import (
    HOLDOUT,
    ID_COLUMN,
    LABEL_COLUMN,
    MODEL_FEATURES,
    SPLIT_COLUMN,
    SPLITS,
    TRAIN,
    UNIT_COLUMNS,
    SplitPolicy,
    extra_inputs,
    protected_extras,
)
from fraud_assets.features.engineering import build_claim_features
from fraud_assets.lakehouse import (
    ADJUDICATIONS,
    CLAIM_FEATURES,
    CLAIMS,
    read_published,
    table_store,
)
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

FEATURES_ASSET = keys.CLAIM_FEATURES


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
    # Per label unit: the share of holdout claims whose entity also has training claims.
    holdout_shared: dict[str, float]

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

    # Numeric extras may be null (a source leaves them blank; the boosters read NaN as
    # missing); categorical and protected extras are filled, so a null there is a bug.
    _, categorical_extras = extra_inputs(features.columns)
    checked = [
        ID_COLUMN,
        SPLIT_COLUMN,
        *MODEL_FEATURES,
        *categorical_extras,
        *protected_extras(features.columns),
    ]
    in_split = {split: F.col(SPLIT_COLUMN) == split for split in SPLITS}
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
            for split in (TRAIN, HOLDOUT)
        },
        holdout_shared=_holdout_shared(features, claims),
    )


def _holdout_shared(features: DataFrame, claims: DataFrame) -> dict[str, float]:
    """Per label unit, the share of holdout claims whose entity is also in training."""
    from pyspark.sql import functions as F

    units = claims.select(*dict.fromkeys(UNIT_COLUMNS.values()))
    split = features.select(ID_COLUMN, SPLIT_COLUMN).join(units, ID_COLUMN).cache()
    holdout = split.filter(F.col(SPLIT_COLUMN) == HOLDOUT)
    holdout_n = holdout.count()
    shares: dict[str, float] = {}
    for unit, column in UNIT_COLUMNS.items():
        trained = split.filter(F.col(SPLIT_COLUMN) == TRAIN).select(column).distinct()
        shared = holdout.join(trained, column, "left_semi").count()
        shares[unit] = round(shared / holdout_n, 6) if holdout_n else 0.0
    split.unpersist()
    return shares


def label_purity(claims: DataFrame) -> dict[str, float | None]:
    """Per entity unit, how entity-level the labels look.

    Among the providers (patients) with at least two labelled claims and one fraud label,
    the share whose labelled claims are all fraud: near 1 when the label belongs to the
    entity, near 0 for claim labels (``None`` when there is no such entity).
    """
    from pyspark.sql import functions as F

    purity: dict[str, float | None] = {}
    labelled = claims.filter(F.col(LABEL_COLUMN).isNotNull())
    for unit in ("provider", "patient"):
        per_entity = (
            labelled.groupBy(UNIT_COLUMNS[unit])
            .agg(F.count(F.lit(1)).alias("n"), F.sum(LABEL_COLUMN).alias("frauds"))
            .filter((F.col("n") >= 2) & (F.col("frauds") > 0))
            .agg(
                F.count(F.lit(1)).alias("with_fraud"),
                F.count(F.when(F.col("frauds") == F.col("n"), 1)).alias("all_fraud"),
            )
            .first()
        )
        assert per_entity is not None
        with_fraud = int(per_entity["with_fraud"])
        purity[unit] = round(int(per_entity["all_fraud"]) / with_fraud, 6) if with_fraud else None
    return purity


# Labels this entity-level (see label_purity) belong to the entity, whatever was declared.
ENTITY_LABEL_PURITY = 0.9


def build_features(ctx: TaskContext) -> TaskResult:
    """Rebuild ``claim_features`` from silver ``claims`` and check it is complete."""
    settings = ctx.settings
    spark = get_spark(settings=settings)
    store = table_store(settings)
    # Outcomes that landed after their claims label them here, so they train the next model.
    outcomes = store.read_spark(spark, ADJUDICATIONS) if store.exists(ADJUDICATIONS) else None
    claims = with_adjudications(read_published(store, spark, CLAIMS), outcomes)
    policy = SplitPolicy.from_settings(settings)
    features = build_claim_features(claims, split=policy)
    ctx.log.info(
        "building claim_features from silver claims (%s split by %s) and writing it (Spark)",
        policy.strategy,
        policy.label_unit,
    )
    version = store.write_spark(features, CLAIM_FEATURES, mode="overwrite")
    ctx.log.info("wrote claim_features version %d; profiling it against silver", version)
    # Profile what was committed, not the plan that produced it.
    written = store.read_spark(spark, CLAIM_FEATURES)
    profile = profile_feature_table(written, claims)
    extra_numeric, extra_categorical = extra_inputs(written.columns)

    metadata: dict[str, Any] = {
        "row_count": profile.row_count,
        **{f"{split}_count": profile.split_counts[split] for split in SPLITS},
        "fraud_rate_train": profile.fraud_rates[TRAIN],
        "fraud_rate_holdout": profile.fraud_rates[HOLDOUT],
        **policy.describe(),
        "feature_count": len(MODEL_FEATURES) + len(extra_numeric) + len(extra_categorical),
        "extra_features": ", ".join([*extra_numeric, *extra_categorical]) or "none",
        "protected_extras": ", ".join(protected_extras(written.columns)) or "none",
        "delta_version": version,
        "table_location": store.location(CLAIM_FEATURES),
        "labels_from": store.location(ADJUDICATIONS) + " over silver's own"
        if outcomes is not None
        else "silver claims (no adjudications landed)",
    }
    nulls = {name: n for name, n in profile.null_counts.items() if n}
    check = CheckOutcome.declared(
        FEATURES_ASSET,
        CHECK_FEATURES_COMPLETE,
        passed=profile.complete,
        metadata={
            "silver_row_count": profile.silver_row_count,
            "feature_row_count": profile.row_count,
            "silver_claims_missing": profile.silver_claims_missing,
            "claims_with_repeated_rows": profile.claims_with_repeated_rows,
            "rows_not_in_silver": profile.rows_not_in_silver,
            "columns_with_nulls": ", ".join(f"{k}={v}" for k, v in nulls.items()) or "none",
        },
    )
    separated = _separation_check(policy, profile, label_purity(claims))
    return TaskResult(
        materializations=[Materialization(FEATURES_ASSET, metadata)], checks=[check, separated]
    )


def _separation_check(
    policy: SplitPolicy, profile: FeatureTableProfile, purity: dict[str, float | None]
) -> CheckOutcome:
    """WARN when holdout and train share entities of the label's unit: the declared one, or
    a provider or patient unit the labels themselves show (all-fraud entities)."""
    shared = profile.holdout_shared
    units: set[str] = {policy.label_unit}
    units.update(unit for unit, p in purity.items() if p is not None and p >= ENTITY_LABEL_PURITY)
    leaking = sorted(unit for unit in units if shared[unit] > 0.0)
    undeclared = sorted(units - {policy.label_unit})
    if leaking:
        note = (
            f"holdout claims share {', '.join(leaking)} entities with train; set label_unit "
            f"(FRAUD_LABEL_UNIT) to the label's unit so the split groups by it"
        )
    elif profile.split_counts[HOLDOUT] == 0:
        note = "the holdout is empty"
    else:
        note = f"train and holdout share no {', '.join(sorted(units))}"
    return CheckOutcome.declared(
        FEATURES_ASSET,
        CHECK_HOLDOUT_SEPARATED,
        passed=not leaking and profile.split_counts[HOLDOUT] > 0,
        metadata={
            "label_unit": policy.label_unit,
            "split_strategy": policy.strategy,
            "holdout_count": profile.split_counts[HOLDOUT],
            "labels_look_entity_level": ", ".join(undeclared) or "no",
            **{f"label_purity_{unit}": p for unit, p in purity.items()},
            **{f"holdout_share_{unit}_in_train": share for unit, share in shared.items()},
            "finding": note,
        },
    )


def _rate(frauds: Any, labelled: Any) -> float | None:
    return round(float(frauds) / labelled, 6) if labelled else None


def main(argv: list[str] | None = None) -> None:
    run_task(build_features, argv, name="features")


if __name__ == "__main__":
    main()
