"""The governance assets in Dagster: a failed fairness gate stops what depends on it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from dagster import (
    AssetCheckSeverity,
    AssetKey,
    DagsterInstance,
    ExecuteInProcessResult,
    asset,
    materialize,
)
from pypdf import PdfReader

from fraud_assets import keys
from fraud_assets.assets.governance import fairness_report, psi_report
from fraud_assets.checks import (
    CHECK_FALSE_POSITIVE_RATE_RATIO,
    CHECK_FEATURE_DRIFT,
    CHECK_MIN_GROUP_SIZE,
    CHECK_SCORE_DRIFT,
    FAIRNESS_CHECKS,
)
from fraud_assets.lakehouse import table_store
from fraud_assets.resources.compute import LocalPipesCompute
from fraud_assets.settings import get_settings
from fraud_assets_tests.governance_support import (
    candidate_run,
    holdout_predictions,
    write_evaluation,
)

PROMOTED = AssetKey("promoted_after_fairness")


@asset(key=PROMOTED, deps=[keys.FAIRNESS_REPORT])
def promoted_after_fairness() -> None:
    """Stands in for registered_model: runs only when every blocking fairness check passed."""


def _materialize(instance: DagsterInstance, *, audit: bool) -> ExecuteInProcessResult:
    return materialize(
        [fairness_report, promoted_after_fairness],
        resources={"compute": LocalPipesCompute()},
        instance=instance,
        run_config={"ops": {"fairness_report": {"config": {"write_audit_report": audit}}}},
        raise_on_error=False,
    )


def _prepare(*, bias: bool) -> str:
    settings = get_settings()
    table_store(settings).write_pandas(holdout_predictions(bias=bias), "holdout_predictions")
    run_id = candidate_run(settings)
    write_evaluation(settings, run_id)
    return run_id


@pytest.mark.slow
@pytest.mark.usefixtures("shared_step_spark")
def test_biased_predictions_fail_the_blocking_gate_and_stop_promotion(
    governed_home: Path, dagster_instance: DagsterInstance
) -> None:
    _prepare(bias=True)

    result = _materialize(dagster_instance, audit=True)

    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    false_accusations = evaluations[CHECK_FALSE_POSITIVE_RATE_RATIO]
    assert not false_accusations.passed
    assert false_accusations.severity == AssetCheckSeverity.ERROR
    assert evaluations[CHECK_MIN_GROUP_SIZE].passed
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    # The report itself is written (reviewers need it); what depends on it is not.
    assert AssetKey(keys.FAIRNESS_REPORT) in materialized
    assert PROMOTED not in materialized
    assert not result.success

    [event] = [
        e
        for e in result.get_asset_materialization_events()
        if e.asset_key == AssetKey(keys.FAIRNESS_REPORT)
    ]
    metadata = event.materialization.metadata
    audit = Path(str(metadata["audit_report"].value))
    assert audit.is_file()
    document = audit.read_text(encoding="utf-8")
    assert re.search(
        r'<img alt="fairness chart" src="data:image/png;base64,[A-Za-z0-9+/]', document
    )
    assert '<span class="fail">FAIL</span>' in document
    pdf = Path(str(metadata["audit_report_pdf"].value))
    assert pdf.read_bytes().startswith(b"%PDF-")
    assert "False positive rate ratio: FAIL" in "".join(
        p.extract_text() for p in PdfReader(pdf).pages
    )
    ratio = metadata["patient_gender.false_positive_rate_ratio"].value
    assert isinstance(ratio, float) and ratio < 0.8


@pytest.mark.slow
@pytest.mark.usefixtures("shared_step_spark")
def test_fair_predictions_pass_and_promotion_runs(
    governed_home: Path, dagster_instance: DagsterInstance
) -> None:
    _prepare(bias=False)

    result = _materialize(dagster_instance, audit=False)

    assert result.success
    assert all(e.passed for e in result.get_asset_check_evaluations())
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert {AssetKey(keys.FAIRNESS_REPORT), PROMOTED} <= materialized
    assert not (governed_home / "reports").exists()


def test_fairness_checks_block_and_drift_checks_do_not() -> None:
    fairness_specs = {s.name: s for s in fairness_report.check_specs}
    assert list(fairness_specs) == FAIRNESS_CHECKS
    assert all(s.blocking for s in fairness_specs.values())
    drift_specs = {s.name: s for s in psi_report.check_specs}
    assert set(drift_specs) == {CHECK_FEATURE_DRIFT, CHECK_SCORE_DRIFT}
    assert not any(s.blocking for s in drift_specs.values())
    assert fairness_report.group_names_by_key[AssetKey(keys.FAIRNESS_REPORT)] == "governance"
    assert psi_report.group_names_by_key[AssetKey(keys.PSI_REPORT)] == "governance"
    assert set(fairness_report.asset_deps[AssetKey(keys.FAIRNESS_REPORT)]) == {
        AssetKey(keys.MODEL_EVALUATION)
    }
    assert set(psi_report.asset_deps[AssetKey(keys.PSI_REPORT)]) == {
        AssetKey(keys.CLAIM_FEATURES),
        AssetKey(keys.FRAUD_SCORES),
    }
