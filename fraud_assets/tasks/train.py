"""Train one fraud model (``--model catboost|xgboost``) on the gold training split.

Reads ``claim_features`` at a pinned Delta version, fits the booster, scores the holdout,
and logs everything to MLflow as one run.
"""

from __future__ import annotations

from fraud_assets import keys
from fraud_assets.checks import CHECK_MODEL_ROC_AUC
from fraud_assets.features import AMOUNT_COLUMN, LABEL_COLUMN, PROTECTED_SOURCES
from fraud_assets.governance.charts import markdown_image
from fraud_assets.governance.policy import protected_attributes
from fraud_assets.lakehouse import CLAIM_FEATURES, table_store
from fraud_assets.ml import metrics
from fraud_assets.ml.charts import ScoredHoldout, roc_pr_chart
from fraud_assets.ml.runs import TrainingData, log_training_run
from fraud_assets.ml.tracking import UNKNOWN, configure_mlflow, run_url
from fraud_assets.ml.training import (
    TrainingParams,
    parse_model_type,
    reference_sample,
    split_gold,
    train_model,
)
from fraud_assets.provenance import git_commit
from fraud_assets.tasks._runtime import (
    CheckOutcome,
    Materialization,
    TaskContext,
    TaskResult,
    link,
    markdown,
    run_task,
)


def train(ctx: TaskContext) -> TaskResult:
    settings = ctx.settings
    model_type = parse_model_type(ctx.param("model"))
    asset_key = keys.MODEL_ASSETS[model_type]
    defaults = TrainingParams(seed=settings.seed)
    params = TrainingParams(
        boosting_rounds=int(ctx.param("boosting_rounds", defaults.boosting_rounds)),
        learning_rate=float(ctx.param("learning_rate", defaults.learning_rate)),
        max_depth=int(ctx.param("max_depth", defaults.max_depth)),
        seed=int(ctx.param("seed", defaults.seed)),
    )

    store = table_store(settings)
    # Pin the version first so the logged version is exactly the data trained on.
    version = store.version(CLAIM_FEATURES)
    gold = store.read_pandas(CLAIM_FEATURES, version=version)
    train_rows, holdout_rows = split_gold(gold)
    history_starts = min(gold["claim_date"]) if len(gold) else None
    ctx.log.info(
        "training %s: %d rounds on %d claims (claim_features v%d)",
        model_type,
        params.boosting_rounds,
        len(train_rows),
        version,
    )
    trained = train_model(
        train_rows,
        model_type=model_type,
        params=params,
        progress=ctx.log,
        # Every known protected attribute, whatever the fairness report is narrowed to.
        protected=sorted({*PROTECTED_SOURCES, *protected_attributes(settings)}),
        allowed_protected=settings.allowed_protected_inputs,
    )

    holdout_scores = trained.predict_proba(holdout_rows)
    point = settings.operating_point
    # The threshold that flags a claim is chosen here, on the holdout, by the declared policy,
    # and travels with the model: evaluation, batch scoring and serving all read it back.
    choice = metrics.choose_threshold(
        holdout_rows[LABEL_COLUMN],
        holdout_scores,
        kind=point.kind,
        flag_rate=point.flag_rate,
        min_precision=point.min_precision,
        fixed_threshold=settings.thresholds.operating_threshold,
    )
    threshold = choice.threshold
    if not choice.met:
        ctx.log.warning(
            "%s: no threshold reaches precision %.2f on the holdout; using the most precise "
            "one, %.4f (precision %.3f)",
            model_type,
            choice.target,
            threshold,
            choice.precision,
        )
    holdout = metrics.holdout_metrics(
        holdout_rows[LABEL_COLUMN],
        holdout_scores,
        amounts=holdout_rows[AMOUNT_COLUMN],
        threshold=threshold,
    )
    # The PSI reference leaves out the first month's cut-short activity counts.
    reference = reference_sample(
        train_rows, trained, seed=params.seed, history_starts=history_starts
    )
    configure_mlflow(settings)
    commit = git_commit(settings) or UNKNOWN
    run = log_training_run(
        trained,
        data=TrainingData(store.location(CLAIM_FEATURES), version, train_rows),
        reference=reference,
        pipeline_run_id=ctx.run_id,
        git_commit=commit,
        params={"seed": params.seed, **choice.as_params()},
        metrics={f"holdout_{k}": float(v) for k, v in holdout.as_dict().items()},
    )

    curves = roc_pr_chart(
        {model_type: ScoredHoldout(holdout_rows[LABEL_COLUMN], holdout_scores)},
        threshold=threshold,
    )
    floor = settings.thresholds.roc_auc_min
    return TaskResult(
        materializations=[
            Materialization(
                asset_key,
                {
                    "mlflow_run_id": run.run_id,
                    **link("mlflow_run", run_url(settings, run.run_id)),
                    "model_uri": run.model_uri,
                    "roc_auc": round(holdout.roc_auc, 4),
                    "pr_auc": round(holdout.pr_auc, 4),
                    "training_rows": trained.training_rows,
                    "psi_reference_rows": len(reference),
                    "holdout_rows": holdout.rows,
                    "training_delta_version": version,
                    "operating_threshold": round(threshold, 6),
                    "operating_point": f"{choice.kind} {choice.target:g}",
                    "flagged_rate": round(choice.flagged_rate, 4),
                    "training_seconds": round(trained.training_seconds, 2),
                    "git_commit": commit,
                    "holdout_curves": markdown(markdown_image(f"{model_type} ROC and PR", curves)),
                },
            )
        ],
        checks=[
            CheckOutcome.declared(
                asset_key,
                CHECK_MODEL_ROC_AUC,
                passed=holdout.roc_auc >= floor,
                metadata={"roc_auc": round(holdout.roc_auc, 4), "roc_auc_min": floor},
                description=f"holdout ROC AUC {holdout.roc_auc:.3f} vs floor {floor}",
            )
        ],
    )


def main(argv: list[str] | None = None) -> None:
    run_task(train, argv, name="train")


if __name__ == "__main__":
    main()
