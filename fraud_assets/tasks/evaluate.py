"""Evaluate the trained models on the holdout, pick the candidate, compare it with the champion.

Writes ``model_evaluation`` (one row per model) and ``holdout_predictions`` (per-claim scores
of the candidate and the champion, the fairness report's input), and reports the three
blocking model quality gates.
"""

from __future__ import annotations

from datetime import UTC, datetime

import mlflow.pyfunc
import pandas as pd

from fraud_assets import keys
from fraud_assets.checks import CHECK_NO_REGRESSION, CHECK_PR_AUC_FLOOR, CHECK_ROC_AUC_FLOOR
from fraud_assets.features import LABEL_COLUMN, protected_extras
from fraud_assets.governance.charts import markdown_image
from fraud_assets.governance.policy import policy_in_force, with_attributes
from fraud_assets.lakehouse import (
    CLAIM_FEATURES,
    HOLDOUT_PREDICTIONS,
    MODEL_EVALUATION,
    table_store,
)
from fraud_assets.ml import evaluation
from fraud_assets.ml.charts import ScoredHoldout, roc_pr_chart
from fraud_assets.ml.evaluation import EvaluatedModel
from fraud_assets.ml.registry import CHAMPION, alias_version, recorded_threshold
from fraud_assets.ml.runs import latest_training_runs
from fraud_assets.ml.tracking import configure_mlflow, mlflow_client, model_version_url, run_url
from fraud_assets.ml.training import split_gold
from fraud_assets.tasks._runtime import (
    CheckOutcome,
    Materialization,
    TaskContext,
    TaskResult,
    link,
    markdown,
    run_task,
)


def evaluate(ctx: TaskContext) -> TaskResult:
    settings = ctx.settings
    thresholds = settings.thresholds
    fallback = thresholds.operating_threshold
    store = table_store(settings)
    experiment_id = configure_mlflow(settings)
    client = mlflow_client()
    runs = latest_training_runs(experiment_id=experiment_id, pipeline_run_id=ctx.run_id)
    # The newest data any candidate saw; the holdout split is stable across versions.
    gold_version = max(run.training_delta_version for run in runs)
    _, holdout = split_gold(store.read_pandas(CLAIM_FEATURES, version=gold_version))

    trained = []
    for run in runs:
        model = mlflow.pyfunc.load_model(run.model_uri)
        trained.append(
            evaluation.evaluate_scores(
                holdout,
                model.predict(holdout[model.metadata.get_input_schema().input_names()]),
                model=run.model_type,
                role="candidate",
                model_uri=run.model_uri,
                mlflow_run_id=run.run_id,
                model_version=None,
                threshold=recorded_threshold(client, run.run_id, default=fallback),
            )
        )
    ranked = evaluation.rank_candidates(trained)
    candidate = ranked[0]
    threshold = candidate.metrics.threshold
    champion, champion_problem = _champion(settings.registered_model_name, holdout, fallback)

    evaluated_at = datetime.now(UTC)
    evaluated = [*ranked, *([champion] if champion else [])]
    table = evaluation.evaluation_rows(
        evaluated, run_id=ctx.run_id, evaluated_at=evaluated_at, training_delta_version=gold_version
    )
    # A mapping's protected extras (xp_*) are judged beside the pinned attributes.
    policy = with_attributes(policy_in_force(settings), protected_extras(holdout.columns))
    predictions = evaluation.holdout_prediction_rows(
        holdout, evaluated, protected_attributes=policy.attributes, clusters=policy.clusters
    )
    predictions_version = store.write_pandas(predictions, HOLDOUT_PREDICTIONS)
    version = store.write_pandas(table, MODEL_EVALUATION)

    candidate_run = next(run for run in runs if run.model_type == candidate.model)
    for name, value in candidate.metrics.as_dict().items():
        client.log_metric(candidate_run.run_id, f"evaluation_{name}", float(value))

    no_regression = evaluation.no_regression(
        candidate.metrics, champion.metrics if champion else None, thresholds=thresholds
    )
    if champion_problem:
        no_regression = evaluation.Verdict(
            passed=False, description=champion_problem, metadata={"champion": champion_problem}
        )
    verdicts = {
        CHECK_ROC_AUC_FLOOR: evaluation.roc_auc_floor(candidate.metrics, thresholds=thresholds),
        CHECK_PR_AUC_FLOOR: evaluation.pr_auc_floor(candidate.metrics, thresholds=thresholds),
        CHECK_NO_REGRESSION: no_regression,
    }
    asset_key = keys.MODEL_EVALUATION
    metrics = candidate.metrics
    curves = roc_pr_chart(
        {_curve_label(e): ScoredHoldout(holdout[LABEL_COLUMN], e.scores) for e in evaluated},
        threshold=threshold,
    )
    champion_link = (
        model_version_url(settings, settings.registered_model_name, champion.model_version)
        if champion is not None and champion.model_version is not None
        else None
    )
    return TaskResult(
        materializations=[
            Materialization(
                asset_key,
                {
                    "candidate_model": candidate.model,
                    "candidate_run_id": candidate.mlflow_run_id,
                    **link("candidate_mlflow_run", run_url(settings, candidate_run.run_id)),
                    "model_uri": candidate.model_uri,
                    "roc_auc": round(metrics.roc_auc, 4),
                    "pr_auc": round(metrics.pr_auc, 4),
                    "precision": round(metrics.precision, 4),
                    "recall": round(metrics.recall, 4),
                    "brier": round(metrics.brier, 4),
                    "fraud_dollars_caught": round(metrics.fraud_dollars_caught, 2),
                    "fraud_dollars_share": round(metrics.fraud_dollars_share, 4),
                    "operating_threshold": threshold,
                    "holdout_rows": metrics.rows,
                    "champion_version": champion.model_version if champion else "none",
                    "champion_roc_auc": round(champion.metrics.roc_auc, 4) if champion else "none",
                    **link("champion_model_version", champion_link),
                    "models": markdown(_models_table(evaluated)),
                    "holdout_curves": markdown(markdown_image("ROC and PR curves", curves)),
                    "row_count": len(table),
                    "delta_version": version,
                    "table_location": store.location(MODEL_EVALUATION),
                    "holdout_predictions_version": predictions_version,
                    "training_delta_version": gold_version,
                },
            )
        ],
        checks=[
            CheckOutcome.declared(
                asset_key,
                name,
                passed=verdict.passed,
                metadata=verdict.metadata,
                description=verdict.description,
            )
            for name, verdict in verdicts.items()
        ],
    )


def _curve_label(evaluated: EvaluatedModel) -> str:
    if evaluated.role == "champion":
        return f"champion v{evaluated.model_version}"
    return f"{evaluated.model} ({evaluated.role.replace('_', '-')})"


def _models_table(evaluated: list[EvaluatedModel]) -> str:
    """Every model on the holdout, side by side, as the UI's markdown table."""
    lines = [
        "| model | role | ROC AUC | PR AUC | precision | recall | fraud $ caught |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in evaluated:
        m = e.metrics
        name = f"{e.model} v{e.model_version}" if e.model_version else e.model
        lines.append(
            f"| {name} | {e.role} | {m.roc_auc:.4f} | {m.pr_auc:.4f} | {m.precision:.3f} "
            f"| {m.recall:.3f} | {m.fraud_dollars_share:.1%} |"
        )
    return "\n".join(lines)


def _champion(
    model_name: str, holdout: pd.DataFrame, fallback: float
) -> tuple[EvaluatedModel | None, str | None]:
    """The current champion scored on the same holdout at its own threshold, or why not."""
    client = mlflow_client()
    version = alias_version(client, model_name, CHAMPION)
    if version is None:
        return None, None
    uri = f"models:/{model_name}/{version.version}"
    model = mlflow.pyfunc.load_model(uri)
    inputs = model.metadata.get_input_schema().input_names()
    missing = [c for c in inputs if c not in holdout.columns]
    if missing:
        # A contract change the champion predates: a person must decide, so the gate fails.
        return None, (
            f"champion version {version.version} needs column(s) {', '.join(missing)} that "
            "claim_features no longer has; promote explicitly if the new model is intended"
        )
    evaluated = evaluation.evaluate_scores(
        holdout,
        model.predict(holdout[inputs]),
        model=model_name,
        role="champion",
        model_uri=uri,
        mlflow_run_id=version.run_id,
        model_version=str(version.version),
        threshold=recorded_threshold(client, version.run_id, default=fallback),
    )
    return evaluated, None


def main(argv: list[str] | None = None) -> None:
    run_task(evaluate, argv, name="evaluate")


if __name__ == "__main__":
    main()
