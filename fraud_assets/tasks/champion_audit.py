"""The weekly fairness audit of the champion on its own labelled production decisions.

Finds the version the registry's ``champion`` alias points at, takes its decisions of the
last ``window_days`` (``fraud_scores`` and ``inference_log``), joins them to the
labels that landed after each decision (the ``adjudications`` table's outcomes, else the
claim's own label in silver ``claims``), and judges them with
the promotion gate's own figures and verdicts under the fairness policy in force
(``fraud_assets.governance.champion_audit`` says which decision and which label count).
Writes the audit as HTML and PDF to the reports location (``settings.reports_path``: the
reports Volume on Databricks, ``$FRAUD_HOME/reports`` locally) and logs both, with the
verdicts as JSON, to the MLflow run that produced the champion version.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from fraud_assets import keys
from fraud_assets.checks import CHECK_CHAMPION_FAIRNESS
from fraud_assets.databricks.pipes import local_path
from fraud_assets.features import protected_extras
from fraud_assets.governance.audit import (
    AuditContext,
    render_fairness_audit,
    render_fairness_audit_pdf,
    write_fairness_audit,
    write_fairness_audit_pdf,
)
from fraud_assets.governance.champion_audit import (
    INSUFFICIENT_LABELS,
    PASS,
    AuditWindow,
    ChampionAudit,
    adjudications,
    audit_champion,
    production_decisions,
)
from fraud_assets.governance.charts import fairness_chart
from fraud_assets.governance.policy import pinned_policy, policy_in_force, with_attributes
from fraud_assets.lakehouse import (
    ADJUDICATIONS,
    CLAIMS,
    FRAUD_SCORES,
    INFERENCE_LOG,
    TableStore,
    published_version,
    table_store,
)
from fraud_assets.settings import FraudSettings
from fraud_assets.tasks._runtime import (
    CheckOutcome,
    Materialization,
    TaskContext,
    TaskResult,
    link,
    run_task,
)
from fraud_assets.tasks.fairness import attribute_figures, policy_table

AUDIT_PREFIX = "champion_fairness_audit"
MLFLOW_DIR = "fairness/champion_audits"
# Four weeks: adjudication takes weeks, so last week's decisions alone are mostly unlabelled.
DEFAULT_WINDOW_DAYS = 28
TAG_STEP = "fraud.step"

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChampionAuditFiles:
    """Where the audit was written and what it found."""

    html: Path
    pdf: Path
    audit: ChampionAudit
    model_name: str
    model_version: str
    mlflow_run_id: str


def champion_audit(ctx: TaskContext) -> TaskResult:
    written = write_champion_audit(
        ctx.settings,
        window_days=int(ctx.param("window_days", DEFAULT_WINDOW_DAYS)),
        reports_dir=ctx.param("reports_dir") or None,
        pipeline_run_id=ctx.run_id,
        log=ctx.log,
    )
    audit = written.audit
    from fraud_assets.ml.tracking import run_url

    metadata: dict[str, Any] = {
        "verdict": audit.verdict,
        "reason": audit.reason,
        "champion_model": written.model_name,
        "champion_version": written.model_version,
        "mlflow_run_id": written.mlflow_run_id,
        **link("mlflow_run", run_url(ctx.settings, written.mlflow_run_id)),
        "window_start": audit.window.start.isoformat(),
        "window_end": audit.window.end.isoformat(),
        **audit.counts,
        **({} if audit.label_coverage is None else {"label_coverage": audit.label_coverage}),
        "audit_report": {"raw_value": str(written.html), "type": "path"},
        "audit_report_pdf": {"raw_value": str(written.pdf), "type": "path"},
    }
    if audit.report is not None:
        metadata.update(attribute_figures(audit.report))
    check = CheckOutcome.declared(
        keys.CHAMPION_FAIRNESS_AUDIT,
        CHECK_CHAMPION_FAIRNESS,
        passed=audit.verdict == PASS,
        # Too few labels to judge warns; a failure, and the verdict a pass stands in for, ERROR.
        severity="WARN" if audit.verdict == INSUFFICIENT_LABELS else "ERROR",
        metadata={
            "verdict": audit.verdict,
            "why": audit.reason,
            "champion_version": written.model_version,
            "labelled_decisions": audit.counts["labelled_decisions"],
            "audit_report_pdf": {"raw_value": str(written.pdf), "type": "path"},
        },
        description=f"{audit.verdict}: {audit.reason}",
    )
    return TaskResult(
        materializations=[Materialization(keys.CHAMPION_FAIRNESS_AUDIT, metadata)],
        checks=[check],
    )


def write_champion_audit(
    settings: FraudSettings,
    *,
    window_days: int = DEFAULT_WINDOW_DAYS,
    reports_dir: str | None = None,
    now: datetime | None = None,
    pipeline_run_id: str = "manual",
    log: logging.Logger = _log,
) -> ChampionAuditFiles:
    """Audit the champion, write HTML and PDF to ``reports_dir`` (default
    ``settings.reports_path``) and log both to the champion's MLflow run; return where they
    are (``.pdf`` is the archived report)."""
    from fraud_assets.ml import registry
    from fraud_assets.ml.tracking import configure_mlflow, mlflow_client

    generated_at = now or datetime.now(UTC)
    window = AuditWindow.ending(generated_at, days=window_days)
    configure_mlflow(settings)
    client = mlflow_client()
    name = settings.registered_model_name
    champion = registry.champion_version(client, name)
    version = str(champion.version)
    threshold = registry.recorded_threshold(
        client, champion.run_id, default=settings.thresholds.operating_threshold
    )

    store = table_store(settings)
    claims_version = published_version(store, CLAIMS)
    claims = store.read_pandas(CLAIMS, version=claims_version)
    pinned = pinned_policy(settings.target)
    policy = with_attributes(policy_in_force(settings), protected_extras(claims.columns))
    decisions = production_decisions(
        fraud_scores=_optional(store, FRAUD_SCORES),
        inference_log=_optional(store, INFERENCE_LOG),
        model_name=name,
        model_version=version,
        window=window,
        batch_threshold=threshold,
    )
    adjudicated = adjudications(
        claims,
        _optional(store, ADJUDICATIONS),
        attributes=[*policy.attributes, *policy.clusters],
    )
    audit = audit_champion(decisions, adjudicated, window=window, policy=policy, pinned=pinned)
    log.info(
        "champion %s version %s: %d decisions from %s to %s, %d labelled since: %s (%s)",
        name,
        version,
        audit.counts["decisions"],
        window.start.isoformat(),
        window.end.isoformat(),
        audit.counts["labelled_decisions"],
        audit.verdict,
        audit.reason,
    )

    chart = fairness_chart(audit.report.groups, policy=policy) if audit.report is not None else None
    context = AuditContext(
        title=f"Fairness audit of the champion: {name} version {version}",
        overall=audit.verdict,
        note=audit.reason,
        evidence=audit.evidence(),
        model={
            "name": name,
            "champion version": version,
            "MLflow run": champion.run_id or "unknown",
            "URI": f"models:/{name}/{version}",
        },
        data_version={
            "decisions": f"{store.location(FRAUD_SCORES)} and {store.location(INFERENCE_LOG)}",
            "labels": f"{store.location(ADJUDICATIONS)} over {store.location(CLAIMS)} "
            f"(Delta version {claims_version})",
        },
        thresholds=policy_table(policy, pinned),
        generated_at=generated_at,
        pipeline_run_id=pipeline_run_id,
    )
    # A Volume is written through the cluster's mount (the emulator's under its FUSE root).
    reports = (
        local_path(str(reports_dir)) if reports_dir else local_path(str(settings.reports_path))
    )
    html_path = write_fairness_audit(
        render_fairness_audit(audit.report, audit.gates, chart_png=chart, context=context),
        reports,
        generated_at=generated_at,
        prefix=AUDIT_PREFIX,
    )
    pdf_path = write_fairness_audit_pdf(
        render_fairness_audit_pdf(audit.report, audit.gates, chart_png=chart, context=context),
        reports,
        generated_at=generated_at,
        prefix=AUDIT_PREFIX,
    )
    log.info("wrote the champion fairness audit to %s and %s", html_path, pdf_path)
    run_id = _log_to_run(
        settings,
        run_id=champion.run_id,
        pipeline_run_id=pipeline_run_id,
        payload=_payload(audit, name=name, version=version, generated_at=generated_at),
        files=[html_path, pdf_path],
        audit=audit,
    )
    return ChampionAuditFiles(html_path, pdf_path, audit, name, version, run_id)


def latest_champion_audit_pdf(settings: FraudSettings) -> Path | None:
    """The newest champion audit PDF under the reports location, if any was written."""
    found = sorted(local_path(str(settings.reports_path)).glob(f"{AUDIT_PREFIX}_*.pdf"))
    return found[-1] if found else None


def _optional(store: TableStore, table: str) -> pd.DataFrame | None:
    """A decisions or outcomes table, or None where nothing ever wrote it in this target."""
    return store.read_pandas(table) if store.exists(table) else None


def _payload(
    audit: ChampionAudit, *, name: str, version: str, generated_at: datetime
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "model": name,
        "champion_version": version,
        "generated_at": generated_at.isoformat(),
        "verdict": audit.verdict,
        "reason": audit.reason,
        "window": {"start": audit.window.start.isoformat(), "end": audit.window.end.isoformat()},
        "counts": audit.counts,
        "label_coverage": audit.label_coverage,
        "thresholds": audit.thresholds,
    }
    if audit.gates is not None:
        payload["verdicts"] = {
            check: {"passed": v.passed, "severity": v.severity, "description": v.description}
            for check, v in audit.gates.verdicts.items()
        }
    if audit.report is not None:
        payload.update(audit.report.to_dict())
    return payload


def _log_to_run(
    settings: FraudSettings,
    *,
    run_id: str | None,
    pipeline_run_id: str,
    payload: dict[str, Any],
    files: list[Path],
    audit: ChampionAudit,
) -> str:
    """Log the audit files, its JSON and its figures to the champion's run; return its id.

    A version registered without a run (not one this project registers) gets a run of its
    own in the experiment, tagged with the pipeline run, so the evidence is never dropped.
    """
    from mlflow.entities import Metric

    from fraud_assets.ml.runs import TAG_PIPELINE_RUN
    from fraud_assets.ml.tracking import configure_mlflow, mlflow_client

    experiment_id = configure_mlflow(settings)
    client = mlflow_client()
    if not run_id:
        run = client.create_run(
            experiment_id,
            run_name=f"champion_audit-{pipeline_run_id[:8]}",
            tags={TAG_PIPELINE_RUN: pipeline_run_id, TAG_STEP: "champion_audit"},
        )
        run_id = run.info.run_id
        client.set_terminated(run_id)
    stamp = files[0].stem.rpartition("_")[2]
    with tempfile.TemporaryDirectory() as tmp:
        record = Path(tmp) / f"{AUDIT_PREFIX}_{stamp}.json"
        record.write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")
        client.log_artifact(run_id, str(record), artifact_path=MLFLOW_DIR)
    for path in files:
        client.log_artifact(run_id, str(path), artifact_path=MLFLOW_DIR)
    now = int(time.time() * 1000)
    values: dict[str, float | None] = {
        "labelled_decisions": float(audit.counts["labelled_decisions"]),
        "label_coverage": audit.label_coverage,
    }
    if audit.report is not None:
        values.update(attribute_figures(audit.report))
    metrics = [
        Metric(key=f"champion_audit.{key}", value=value, timestamp=now, step=0)
        for key, value in values.items()
        if value is not None and not math.isnan(value)
    ]
    client.log_batch(run_id, metrics=metrics)
    return run_id


def main(argv: list[str] | None = None) -> None:
    run_task(champion_audit, argv, name="champion_audit")


if __name__ == "__main__":
    main()
