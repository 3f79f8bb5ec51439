"""Alerts name the offending value for the metadata shapes this project's checks report."""

from typing import Any

import pytest

from fraud_assets.alerts import check_failure_alert, run_failure_alert


def _alert(check_name: str, metadata: dict[str, Any], description: str = "") -> Any:
    return check_failure_alert(
        asset_key="some_asset",
        check_name=check_name,
        severity="ERROR",
        metadata=metadata,
        run_id="run-1",
        base_url="http://localhost:3000",
        description=description or None,
    )


def test_fairness_gate_value_is_the_failing_attribute_figure() -> None:
    # The shape of governance.gates' figure gate: one point and CI per attribute.
    alert = _alert(
        "disparate_impact_ratio",
        {
            "threshold": 0.8,
            "confidence_level": 0.95,
            "patient_age_group.disparate_impact_ratio": 0.91,
            "patient_gender.disparate_impact_ratio": 0.58,
            "patient_gender.ci_low": 0.51,
            "patient_gender.ci_high": 0.66,
            "failing_attributes": ["patient_gender"],
            "undefined_attributes": [],
        },
    )

    assert (alert.value, alert.subject, alert.threshold) == (0.58, "patient_gender", 0.8)
    assert "failed: value 0.58 for patient_gender (threshold 0.8)" in alert.text()
    assert alert.details["failing_attributes"] == ["patient_gender"]


def test_drift_gate_value_is_the_worst_feature_psi_against_the_error_line() -> None:
    alert = _alert(
        "feature_drift",
        {
            "max_feature_psi": 0.4213,
            "worst_feature": "claim_amount_log",
            "drifted_features": ["claim_amount_log", "num_procedures"],
            "drift_level": "major",
            "psi_warn": 0.1,
            "psi_error": 0.2,
        },
    )

    assert (alert.value, alert.subject, alert.threshold) == (0.4213, "claim_amount_log", 0.2)


@pytest.mark.parametrize(
    ("check_name", "metadata", "expected"),
    [
        ("roc_auc_floor", {"roc_auc": 0.66, "roc_auc_min": 0.7}, (0.66, 0.7)),
        ("pr_auc_floor", {"pr_auc": 0.09, "prevalence": 0.07, "pr_auc_min": 0.14}, (0.09, 0.14)),
        (
            "no_regression_vs_champion",
            {"candidate_roc_auc": 0.8, "roc_auc_change": -0.05, "regression_tolerance": 0.02},
            (-0.05, 0.02),
        ),
        ("null_rates_within_limit", {"value": 0.07, "threshold": 0.02}, (0.07, 0.02)),
        ("score_drift", {"score_psi": 0.27, "psi_error": 0.2}, (0.27, 0.2)),
    ],
)
def test_model_and_data_checks_name_value_and_threshold(
    check_name: str, metadata: dict[str, Any], expected: tuple[float, float]
) -> None:
    alert = _alert(check_name, metadata)

    assert (alert.value, alert.threshold) == expected


def test_unknown_metadata_still_carries_the_description_and_link() -> None:
    alert = _alert(
        "claim_id_unique", {"duplicates": 12, "sample": {"a": 1}}, "12 duplicate claim ids"
    )

    assert alert.value is None
    assert alert.text() == (
        "[ERROR] Check some_asset.claim_id_unique failed: 12 duplicate claim ids\n"
        "Run: http://localhost:3000/runs/run-1"
    )
    assert alert.details == {"duplicates": 12}  # nested values are left to the run page


def test_slack_text_escapes_markup_and_links_the_run() -> None:
    alert = _alert("roc_auc_floor", {"roc_auc": 0.6, "roc_auc_min": 0.7}, "AUC <floor> & more")

    assert "AUC &lt;floor&gt; &amp; more" in alert.slack_text()
    assert alert.slack_text().endswith(
        "<http://localhost:3000/runs/run-1|Open run run-1 in Dagster>"
    )


def test_run_failure_alert_text() -> None:
    alert = run_failure_alert(
        job_name="retraining_job",
        run_id="0123456789abcdef",
        message="Steps failed: ['fairness_report'].",
        base_url="http://localhost:3000/",
    )

    assert alert.text() == (
        "[ERROR] Run 01234567 of retraining_job failed: Steps failed: ['fairness_report'].\n"
        "Run: http://localhost:3000/runs/0123456789abcdef"
    )


def test_pipes_reported_checks_carry_their_sentence_in_metadata() -> None:
    # The task runtime reports checks through Pipes with the verdict's sentence as "why".
    alert = _alert(
        "score_drift",
        {"score_psi": 2.2, "psi_error": 0.2, "why": "PSI of score 'fraud_score' is 2.2010"},
    )

    assert alert.description == "PSI of score 'fraud_score' is 2.2010"
    assert "(threshold 0.2). PSI of score 'fraud_score' is 2.2010" in alert.text()
