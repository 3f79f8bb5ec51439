"""Fairness report of the candidate model on the holdout, judged under the fairness policy.

Reads the candidate's rows of ``holdout_predictions``, computes group rates and cross-group
figures with analytic simultaneous intervals, judges them under the policy in force (the
target's pinned policy plus this run's overrides) and checks that policy against the pinned
one, appends the report to the ``fairness_report`` table with the policy, logs the JSON and
chart to the candidate's MLflow run, and, for the weekly audit (``--write_audit_report
true``), writes a self-contained HTML and PDF audit under ``$FRAUD_HOME/reports``.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from fraud_assets import keys
from fraud_assets.features import protected_extras
from fraud_assets.governance import (
    FIGURES,
    FairnessReport,
    fairness_gates,
    fairness_report_under,
)
from fraud_assets.governance.audit import (
    AuditContext,
    render_fairness_audit,
    render_fairness_audit_pdf,
    write_fairness_audit,
    write_fairness_audit_pdf,
)
from fraud_assets.governance.charts import fairness_chart, png_data_uri
from fraud_assets.governance.policy import (
    GATEABLE_FIGURES,
    FairnessPolicy,
    pinned_policy,
    policy_in_force,
    with_attributes,
)
from fraud_assets.lakehouse import (
    FAIRNESS_REPORT,
    HOLDOUT_PREDICTIONS,
    MODEL_EVALUATION,
    TableStore,
    table_store,
)
from fraud_assets.ml.tracking import run_url
from fraud_assets.settings import FraudSettings
from fraud_assets.tasks._runtime import (
    CheckOutcome,
    Materialization,
    TaskContext,
    TaskResult,
    link,
    run_task,
)

CANDIDATE_ROLE = "candidate"
MLFLOW_DIR = "fairness"
TAG_STEP = "fraud.step"


@dataclass(frozen=True)
class Candidate:
    """The model under review and where its MLflow evidence lives."""

    model: str
    mlflow_run_id: str | None
    model_uri: str | None


def fairness(ctx: TaskContext) -> TaskResult:
    settings = ctx.settings
    pinned = pinned_policy(settings.target)
    store = table_store(settings)
    asset_key = keys.FAIRNESS_REPORT

    # Pin the version first so the report names exactly the rows it judged.
    holdout_version = store.version(HOLDOUT_PREDICTIONS)
    rows = candidate_rows(store.read_pandas(HOLDOUT_PREDICTIONS, version=holdout_version))
    # The source mapping's protected extras (xp_*) are judged too: a stricter policy.
    policy = with_attributes(policy_in_force(settings), protected_extras(rows.columns))
    candidate = find_candidate(store, rows)
    ctx.log.info(
        "fairness of candidate %s on %d holdout claims (holdout_predictions v%d)",
        candidate.model,
        len(rows),
        holdout_version,
    )
    report = fairness_report_under(rows, policy)
    gates = fairness_gates(report, policy=policy, pinned=pinned)
    if gates.blocking_failures:
        ctx.log.warning("fairness gates failed: %s", ", ".join(gates.blocking_failures))
    chart = fairness_chart(report.groups, policy=policy)
    evaluated_at = datetime.now(UTC)

    table = report.to_long()
    table.insert(0, "run_id", ctx.run_id)
    table.insert(1, "evaluated_at", evaluated_at)
    table.insert(2, "model", candidate.model)
    table.insert(3, "mlflow_run_id", candidate.mlflow_run_id)
    table.insert(4, "holdout_delta_version", holdout_version)
    table.insert(5, "policy_fingerprint", policy.fingerprint)
    table.insert(6, "policy_json", json.dumps(policy.to_dict(), sort_keys=True))
    version = store.write_pandas(table, FAIRNESS_REPORT, mode="append")

    audit_paths: list[Path] = []
    if _flag(ctx.param("write_audit_report", False)):
        audit_context = AuditContext(
            model={
                "name": candidate.model,
                **registered_versions(settings, candidate),
                "MLflow run": candidate.mlflow_run_id or "unknown",
                "URI": candidate.model_uri or "unknown",
            },
            data_version={
                "table": store.location(HOLDOUT_PREDICTIONS),
                "Delta version": holdout_version,
                "rows judged": len(rows),
            },
            thresholds=policy_table(policy, pinned),
            generated_at=evaluated_at,
            pipeline_run_id=ctx.run_id,
        )
        reports = settings.fraud_home / "reports"
        html_document = render_fairness_audit(report, gates, chart_png=chart, context=audit_context)
        pdf_document = render_fairness_audit_pdf(
            report, gates, chart_png=chart, context=audit_context
        )
        audit_paths = [
            write_fairness_audit(html_document, reports, generated_at=evaluated_at),
            write_fairness_audit_pdf(pdf_document, reports, generated_at=evaluated_at),
        ]
        ctx.log.info("wrote the fairness audit report to %s", " and ".join(map(str, audit_paths)))

    payload = {
        "model": candidate.model,
        "mlflow_run_id": candidate.mlflow_run_id,
        "holdout_delta_version": holdout_version,
        "evaluated_at": evaluated_at.isoformat(),
        "pipeline_run_id": ctx.run_id,
        "policy": policy.to_dict(),
        "policy_fingerprint": policy.fingerprint,
        "pinned_policy_fingerprint": pinned.fingerprint,
        "verdicts": {
            name: {"passed": v.passed, "severity": v.severity, "description": v.description}
            for name, v in gates.verdicts.items()
        },
        **report.to_dict(),
    }
    mlflow_run_id = log_to_mlflow(
        settings,
        candidate=candidate,
        pipeline_run_id=ctx.run_id,
        payload=payload,
        chart=chart,
        report=report,
        audit_paths=audit_paths,
    )

    metadata: dict[str, Any] = {
        "row_count": len(table),
        "delta_version": version,
        "table_location": store.location(FAIRNESS_REPORT),
        "holdout_rows": len(rows),
        "holdout_delta_version": holdout_version,
        "candidate_model": candidate.model,
        "mlflow_run_id": mlflow_run_id,
        **link("mlflow_run", run_url(settings, mlflow_run_id)),
        "summary": {"raw_value": summary_markdown(report, policy), "type": "md"},
        "chart": {"raw_value": f"![fairness chart]({png_data_uri(chart)})", "type": "md"},
        "figures": {"raw_value": payload["figures"], "type": "json"},
        "policy": {"raw_value": policy.to_dict(), "type": "json"},
        "policy_fingerprint": policy.fingerprint,
        "gated_figures": ", ".join(policy.gates),
        **attribute_figures(report),
    }
    for key, path in zip(("audit_report", "audit_report_pdf"), audit_paths, strict=False):
        metadata[key] = {"raw_value": str(path), "type": "path"}

    checks = [
        CheckOutcome.declared(
            asset_key,
            check_name,
            passed=verdict.passed,
            severity=verdict.severity,
            metadata={**verdict.metadata, "why": verdict.description},
            description=verdict.description,
        )
        for check_name, verdict in gates.verdicts.items()
    ]
    return TaskResult(materializations=[Materialization(asset_key, metadata)], checks=checks)


def candidate_rows(predictions: pd.DataFrame) -> pd.DataFrame:
    """The candidate model's holdout rows; a clear error when evaluation produced none."""
    for column in ("model_role", "model"):
        if column not in predictions.columns:
            raise ValueError(f"{HOLDOUT_PREDICTIONS} lacks column {column!r}")
    rows = predictions.loc[predictions["model_role"] == CANDIDATE_ROLE].reset_index(drop=True)
    if rows.empty:
        roles = sorted(predictions["model_role"].dropna().unique())
        raise ValueError(
            f"{HOLDOUT_PREDICTIONS} has no {CANDIDATE_ROLE!r} rows (roles present: {roles}); "
            "materialize model_evaluation first"
        )
    models = sorted(rows["model"].dropna().unique())
    if len(models) != 1:
        raise ValueError(f"{HOLDOUT_PREDICTIONS} names {len(models)} candidate models: {models}")
    return rows


def find_candidate(store: TableStore, rows: pd.DataFrame) -> Candidate:
    """The candidate's MLflow run from the latest ``model_evaluation`` row that names it."""
    model = str(rows["model"].iloc[0])
    if not store.exists(MODEL_EVALUATION):
        return Candidate(model=model, mlflow_run_id=None, model_uri=None)
    evaluation = store.read_pandas(MODEL_EVALUATION)
    if "model_role" not in evaluation.columns or "model" not in evaluation.columns:
        raise ValueError(f"{MODEL_EVALUATION} lacks the model or model_role column")
    named = evaluation.loc[
        (evaluation["model_role"] == CANDIDATE_ROLE) & (evaluation["model"] == model)
    ]
    if named.empty:
        return Candidate(model=model, mlflow_run_id=None, model_uri=None)
    if "evaluated_at" in named.columns:
        named = named.sort_values("evaluated_at")
    latest = named.iloc[-1]
    run_id = latest.get("mlflow_run_id")
    uri = latest.get("model_uri")
    return Candidate(
        model=model,
        mlflow_run_id=str(run_id) if isinstance(run_id, str) and run_id else None,
        model_uri=str(uri) if isinstance(uri, str) and uri else None,
    )


def log_to_mlflow(
    settings: FraudSettings,
    *,
    candidate: Candidate,
    pipeline_run_id: str,
    payload: dict[str, Any],
    chart: bytes,
    report: FairnessReport,
    audit_paths: list[Path],
) -> str:
    """Log JSON, chart, figures (and the audit) on the candidate's run; return that run's id.

    Without a known candidate run, a run in the same experiment tagged with the pipeline
    run id holds them, so the evidence is never dropped.
    """
    from mlflow.entities import Metric

    from fraud_assets.ml.runs import TAG_PIPELINE_RUN
    from fraud_assets.ml.tracking import configure_mlflow, mlflow_client

    experiment_id = configure_mlflow(settings)
    client = mlflow_client()
    run_id = candidate.mlflow_run_id
    if run_id is None:
        run = client.create_run(
            experiment_id,
            run_name=f"fairness_report-{pipeline_run_id[:8]}",
            tags={TAG_PIPELINE_RUN: pipeline_run_id, TAG_STEP: "fairness"},
        )
        run_id = run.info.run_id
        client.set_terminated(run_id)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "fairness_report.json").write_text(
            json.dumps(payload, indent=2, default=str), encoding="utf-8"
        )
        (folder / "fairness_chart.png").write_bytes(chart)
        for path in folder.iterdir():
            client.log_artifact(run_id, str(path), artifact_path=MLFLOW_DIR)
    for path in audit_paths:
        client.log_artifact(run_id, str(path), artifact_path=f"{MLFLOW_DIR}/audits")
    now = int(time.time() * 1000)
    metrics = [
        Metric(key=f"fairness.{name}", value=value, timestamp=now, step=0)
        for name, value in attribute_figures(report).items()
        if value is not None
    ]
    client.log_batch(run_id, metrics=metrics)
    return run_id


def registered_versions(settings: FraudSettings, candidate: Candidate) -> dict[str, str]:
    """The registry version of the candidate (if registered yet) and the current champion."""
    from fraud_assets.ml.registry import CHAMPION, alias_version
    from fraud_assets.ml.tracking import configure_mlflow, mlflow_client

    configure_mlflow(settings)
    client = mlflow_client()
    name = settings.registered_model_name
    registered = "not registered yet"
    if candidate.mlflow_run_id is not None:
        versions = client.search_model_versions(
            f"name='{name}' and run_id='{candidate.mlflow_run_id}'"
        )
        if versions:
            newest = max(int(v.version) for v in versions)
            registered = f"{name} version {newest}"
    champion = alias_version(client, name, CHAMPION)
    return {
        "registered version": registered,
        "champion version": f"{name} version {champion.version}" if champion else "none",
    }


def summary_markdown(report: FairnessReport, policy: FairnessPolicy) -> str:
    """Cross-group figures as a markdown table: point estimate and interval per slice."""
    shown = [*policy.gates, *(f for f in FIGURES if f not in policy.gates)]
    lines = [
        "| slice | judged | groups (sufficient) | "
        + " | ".join(f"{f}{' (gated)' if f in policy.gates else ''}" for f in shown)
        + " |",
        "|---|---|---|" + "---|" * len(shown),
    ]
    for row in report.figures.itertuples(index=False):
        cells = [
            _with_ci(getattr(row, f), getattr(row, f"{f}_ci_low"), getattr(row, f"{f}_ci_high"))
            for f in shown
        ]
        judged = "yes" if not row.intersection and row.slice in policy.attributes else "no"
        lines.append(
            f"| {row.slice} | {judged} | {row.groups} ({row.sufficient_groups}) | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines)


def attribute_figures(report: FairnessReport) -> dict[str, float | None]:
    """Flat ``<attribute>.<figure>`` floats for single attributes: Dagster plots these."""
    out: dict[str, float | None] = {}
    single = report.figures.loc[~report.figures["intersection"]]
    for row in single.itertuples(index=False):
        for figure in FIGURES:
            value = float(getattr(row, figure))
            out[f"{row.slice}.{figure}"] = None if math.isnan(value) else round(value, 6)
    return out


def policy_table(policy: FairnessPolicy, pinned: FairnessPolicy) -> dict[str, Any]:
    """The policy in force as the audit shows it, beside the pinned one it is judged against."""
    return {
        "gated figures": ", ".join(f"{k} {_limit(k)} {v:g}" for k, v in policy.gates.items()),
        "advisory figures": ", ".join(
            f"{k} {_limit(k)} {v:g}" for k, v in policy.advisories.items()
        )
        or "none",
        "protected attributes": ", ".join(policy.attributes),
        "confidence level": policy.confidence_level,
        "min_group_size": policy.min_group_size,
        "interval method": policy.interval,
        "policy fingerprint": policy.fingerprint,
        "pinned policy fingerprint": pinned.fingerprint,
    }


def _limit(figure: str) -> str:
    return ">=" if GATEABLE_FIGURES[figure].fails_below else "<="


def _with_ci(point: float, low: float, high: float) -> str:
    if math.isnan(point):
        return "undefined"
    return f"{point:.3f} [{low:.3f}, {high:.3f}]"


def _flag(value: object) -> bool:
    """A boolean parameter from Pipes (a bool) or the command line (a string)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no", "", "none"):
        return False
    raise ValueError(f"write_audit_report must be true or false, got {value!r}")


def main(argv: list[str] | None = None) -> None:
    run_task(fairness, argv, name="fairness")


if __name__ == "__main__":
    main()
