"""Score the latest claims batch with the champion and log it for drift monitoring.

Features come from ``build_claim_features`` over all of silver (point-in-time, so each
claim sees its own history as in training); then the latest ``_batch_id`` is kept.
Both output tables are built and validated before either is written.
"""

from __future__ import annotations

from datetime import UTC, datetime

import mlflow.pyfunc

from fraud_assets import keys
from fraud_assets.features import SplitPolicy
from fraud_assets.features.engineering import build_claim_features
from fraud_assets.lakehouse import CLAIMS, FRAUD_SCORES, INFERENCE_LOG, read_published, table_store
from fraud_assets.ml import registry
from fraud_assets.ml.reasons import flag_drivers, flag_drivers_markdown
from fraud_assets.ml.scoring import ScoringModel, inference_log_rows, latest_batch, score_batch
from fraud_assets.ml.tracking import configure_mlflow, mlflow_client
from fraud_assets.spark import get_spark
from fraud_assets.tasks._runtime import Materialization, TaskContext, TaskResult, run_task


def score(ctx: TaskContext) -> TaskResult:
    settings = ctx.settings
    configure_mlflow(settings)
    name = settings.registered_model_name
    # Before Spark starts: no champion is the most common reason this step cannot run.
    client = mlflow_client()
    champion = registry.champion_version(client, name)
    # The threshold chosen on the holdout when the champion was trained, not a global 0.5.
    threshold = registry.recorded_threshold(
        client, champion.run_id, default=settings.thresholds.operating_threshold
    )
    scoring = ScoringModel(
        model=mlflow.pyfunc.load_model(f"models:/{name}/{champion.version}"),
        name=name,
        version=str(champion.version),
        alias=registry.CHAMPION,
    )

    store = table_store(settings)
    spark = get_spark(settings=settings)
    claims = read_published(store, spark, CLAIMS)
    batch_id, batch_ids = latest_batch(claims)
    features = build_claim_features(claims, split=SplitPolicy.from_settings(settings))
    ctx.log.info("building features of batch %s over all of silver (Spark)", batch_id)
    batch = features.join(batch_ids, on="claim_id", how="left_semi").toArrow()
    ctx.log.info(
        "scoring %d claims of batch %s with %s version %s",
        batch.num_rows,
        batch_id,
        name,
        scoring.version,
    )

    scored_at = datetime.now(UTC)
    scored = score_batch(
        batch,
        scoring=scoring,
        threshold=threshold,
        scored_at=scored_at,
        batch_id=batch_id,
    )
    fraud_scores, scores = scored.rows, scored.scores
    log_rows = inference_log_rows(
        batch,
        scored,
        scoring=scoring,
        threshold=threshold,
        scored_at=scored_at,
        window_id=ctx.run_id,
    )
    version = store.write_arrow(fraud_scores, FRAUD_SCORES)
    log_version = store.write_arrow(log_rows, INFERENCE_LOG, mode="append")

    decisions = fraud_scores.column("decision").to_numpy()
    flagged = int(decisions.sum())
    drivers = None if scored.reasons is None else flag_drivers(scored.reasons, decisions)
    return TaskResult(
        materializations=[
            Materialization(
                keys.FRAUD_SCORES,
                {
                    "row_count": fraud_scores.num_rows,
                    "flagged": flagged,
                    "flagged_rate": round(flagged / max(fraud_scores.num_rows, 1), 4),
                    "operating_threshold": threshold,
                    "mean_fraud_score": round(float(scores.mean()), 4) if len(scores) else 0.0,
                    "batch_id": batch_id,
                    "model_name": name,
                    "model_version": scoring.version,
                    "model_alias": scoring.alias,
                    "delta_version": version,
                    "table_location": store.location(FRAUD_SCORES),
                    "inference_log_version": log_version,
                    "window_id": ctx.run_id,
                    # Which reasons drive this batch's flags.
                    "flag_reasons": {
                        "raw_value": "The model logged no booster to explain its scores."
                        if drivers is None
                        else flag_drivers_markdown(drivers),
                        "type": "md",
                    },
                    "top_flag_reason": drivers[0][0] if drivers else "none",
                },
            )
        ]
    )


def main(argv: list[str] | None = None) -> None:
    try:
        run_task(score, argv, name="score")
    except registry.NoChampionError as exc:
        # The expected state before the first promotion: one line, not a traceback.
        raise SystemExit(f"score: {exc}") from None


if __name__ == "__main__":
    main()
