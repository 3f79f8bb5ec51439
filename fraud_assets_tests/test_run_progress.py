"""The demo runner: progress per step while the job runs, then a summary a person can act on."""

from __future__ import annotations

import io
import re
from pathlib import Path

from dagster import DagsterInstance

from fraud_assets.checks import (
    CHECK_DISPARATE_IMPACT,
    CHECK_FALSE_POSITIVE_RATE_RATIO,
    CHECK_RAW_SCHEMA,
    CHECK_SCORE_DRIFT,
    CHECK_UNIQUE_CLAIM_ID,
)
from fraud_assets.local.run import RunOutcome, run_job, summary
from fraud_assets.settings import get_settings


def test_progress_lines_and_summary_of_a_run_a_blocking_check_stops(
    fraud_home: Path, dagster_instance: DagsterInstance
) -> None:
    out = io.StringIO()
    log_path = fraud_home / "logs" / "tiny.log"

    outcome = run_job(
        "tiny_job",
        instance=dagster_instance,
        out=out,
        module="fraud_assets_tests.runner_defs",
        log_path=log_path,
    )

    assert not outcome.success
    lines = out.getvalue().splitlines()
    started = [line for line in lines if "▶" in line]
    assert sorted(line.split("▶ ")[1] for line in started) == ["claims_quarantine", "raw_claims"]
    [finished] = [line for line in lines if "✔ claims_quarantine (" in line]
    assert re.fullmatch(r"\d\d:\d\d:\d\d ✔ claims_quarantine \(\d+\.\ds\)", finished)
    assert any(line.strip() == "raw_claims: landing 3 claims" for line in lines)
    assert any(f"check raw_claims.{CHECK_RAW_SCHEMA} FAILED (ERROR)" in line for line in lines)
    assert any(
        line.endswith("· claims not run: Dependencies for step claims failed: ['raw_claims']")
        for line in lines
    )
    [failed] = [line for line in lines if "✘ raw_claims failed (" in line]
    assert "1 blocking asset check failed with ERROR severity" in failed
    # The run is in the instance, so `dagster dev` shows it.
    assert dagster_instance.get_run_by_id(outcome.run_id) is not None
    # Dagster's own console lines went to the log file, not to the progress stream.
    assert "STEP_START" not in out.getvalue()
    assert "STEP_START" in log_path.read_text(encoding="utf-8")

    assert outcome.materializations["raw_claims"]["row_count"] == 3
    assert outcome.checks == {("raw_claims", CHECK_RAW_SCHEMA): (False, "ERROR")}
    text = "\n".join(summary(outcome, job_name="tiny_job", settings=get_settings()))
    assert f"tiny_job run {outcome.run_id}: FAILURE in " in text
    assert re.search(r"\n  raw_claims +3 rows  v7  /lake/bronze/raw_claims\n", text)
    assert re.search(rf"raw_claims\.{CHECK_RAW_SCHEMA} +FAIL ERROR\n", text)
    # A gate the stop kept from running is listed, not left out (issue 13).
    assert re.search(rf"claims\.{CHECK_UNIQUE_CLAIM_ID} +not run\n", text)
    assert f"http://localhost:3000/runs/{outcome.run_id}" in text


def test_a_failed_step_shows_the_error_its_process_raised(
    fraud_home: Path, dagster_instance: DagsterInstance
) -> None:
    """Issue 13: the console said only 'Error occurred while executing op'."""
    out = io.StringIO()
    outcome = run_job(
        "pipes_failure_job",
        instance=dagster_instance,
        out=out,
        module="fraud_assets_tests.runner_defs",
        log_path=fraud_home / "logs" / "pipes.log",
    )
    assert not outcome.success
    [failed] = [line for line in out.getvalue().splitlines() if "✘ claim_features failed" in line]
    assert "claims.csv: mapping needs column(s) [claim_id] that the file lacks" in failed
    assert "Error occurred while executing" not in failed


def test_summary_names_the_model_version_alias_gates_and_audit(fraud_home: Path) -> None:
    outcome = RunOutcome(
        run_id="r1",
        success=True,
        seconds=312.4,
        materializations={
            "claims": {"row_count": 19_990, "delta_version": 0, "table_location": "/s/claims"},
            "model_evaluation": {"candidate_model": "xgboost", "roc_auc": 0.97, "pr_auc": 0.81},
            "registered_model": {
                "registered_model_name": "fraud_detector",
                "model_version": 2,
                "promoted": True,
                "champion_version": "2",
                "mlflow_model_version": "http://localhost:5000/#/models/fraud_detector/versions/2",
            },
            "fairness_report": {
                "audit_report": "/r/fairness_audit_1.html",
                "audit_report_pdf": "/r/fairness_audit_1.pdf",
            },
            "champion_fairness_audit": {
                "verdict": "insufficient labels",
                "audit_report": "/r/champion_fairness_audit_1.html",
                "audit_report_pdf": "/r/champion_fairness_audit_1.pdf",
            },
        },
        checks={
            ("fairness_report", CHECK_FALSE_POSITIVE_RATE_RATIO): (True, "ERROR"),
            ("fairness_report", CHECK_DISPARATE_IMPACT): (False, "WARN"),
            ("psi_report", CHECK_SCORE_DRIFT): (False, "WARN"),
        },
    )
    lines = summary(outcome, job_name="fraud_pipeline", settings=get_settings())
    text = "\n".join(lines)
    assert "fraud_pipeline run r1: SUCCESS in 5m12s" in text
    assert "claims     19,990 rows  v0  /s/claims" in text
    assert "candidate xgboost: holdout ROC AUC 0.97, PR AUC 0.81" in text
    assert "fraud_detector version 2: alias champion (and challenger)" in text
    assert "  http://localhost:5000/#/models/fraud_detector/versions/2\n" in text
    assert f"fairness_report.{CHECK_FALSE_POSITIVE_RATE_RATIO}  pass (blocks promotion)" in text
    # The default policy reports disparate impact without gating it.
    assert re.search(rf"fairness_report\.{CHECK_DISPARATE_IMPACT} +FAIL WARN\n", text)
    assert re.search(rf"psi_report\.{CHECK_SCORE_DRIFT} +FAIL WARN\n", text)
    assert "fairness audit  /r/fairness_audit_1.html" in text
    assert "/r/fairness_audit_1.pdf" in text
    assert "champion audit  insufficient labels  /r/champion_fairness_audit_1.html" in text
    assert "                  /r/champion_fairness_audit_1.pdf" in text
    assert "make mlflow-ui  MLflow runs, model versions and aliases: http://localhost:5000" in text
