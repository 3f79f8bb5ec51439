"""Pin the whole code location: asset keys, groups, dependencies, checks, jobs, automation."""

from __future__ import annotations

from pathlib import Path

import pytest
from dagster import AssetKey, Definitions

from fraud_assets import keys

EXPECTED_ASSETS: dict[str, tuple[str, set[str]]] = {
    "raw_claims": ("ingestion", set()),
    "claims": ("ingestion", {"raw_claims"}),
    "claims_quarantine": ("ingestion", {"raw_claims"}),
    "claim_features": ("features", {"claims"}),
    "catboost_model": ("training", {"claim_features"}),
    "xgboost_model": ("training", {"claim_features"}),
    "model_evaluation": ("evaluation", {"catboost_model", "xgboost_model"}),
    "fairness_report": ("governance", {"model_evaluation"}),
    "psi_report": ("governance", {"claim_features", "fraud_scores"}),
    "registered_model": ("registry", {"model_evaluation", "fairness_report"}),
    "fraud_scores": ("scoring", {"registered_model", "claims"}),
}

# (asset, check) -> blocking
EXPECTED_CHECKS: dict[tuple[str, str], bool] = {
    ("raw_claims", keys.CHECK_RAW_SCHEMA): True,
    ("raw_claims", keys.CHECK_RAW_NOT_EMPTY): False,
    ("claims", keys.CHECK_SCHEMA): True,
    ("claims", keys.CHECK_UNIQUE_CLAIM_ID): True,
    ("claims", keys.CHECK_RECONCILES): True,
    ("claims", keys.CHECK_VALUE_RANGES): False,
    ("claims", keys.CHECK_NULL_RATES): False,
    ("claim_features", keys.CHECK_FEATURES_COMPLETE): True,
    ("catboost_model", keys.CHECK_MODEL_ROC_AUC): False,
    ("xgboost_model", keys.CHECK_MODEL_ROC_AUC): False,
    ("model_evaluation", keys.CHECK_ROC_AUC_FLOOR): True,
    ("model_evaluation", keys.CHECK_PR_AUC_FLOOR): True,
    ("model_evaluation", keys.CHECK_NO_REGRESSION): True,
    ("fairness_report", keys.CHECK_DISPARATE_IMPACT): True,
    ("fairness_report", keys.CHECK_EQUAL_OPPORTUNITY): True,
    ("fairness_report", keys.CHECK_MIN_GROUP_SIZE): True,
    ("psi_report", keys.CHECK_FEATURE_DRIFT): False,
    ("psi_report", keys.CHECK_SCORE_DRIFT): False,
}


@pytest.fixture(scope="module")
def defs() -> Definitions:
    from fraud_assets.definitions import defs

    return defs


def test_asset_keys_groups_and_dependencies(defs: Definitions) -> None:
    graph = defs.resolve_asset_graph()
    actual = {
        key.to_user_string(): (
            graph.get(key).group_name,
            {parent.to_user_string() for parent in graph.get(key).parent_keys},
        )
        for key in graph.get_all_asset_keys()
    }
    assert actual == EXPECTED_ASSETS


def test_asset_checks_and_which_ones_block(defs: Definitions) -> None:
    graph = defs.resolve_asset_graph()
    actual = {
        (check.asset_key.to_user_string(), check.name): graph.get(check).blocking
        for check in graph.asset_check_keys
    }
    assert actual == EXPECTED_CHECKS


def test_every_promotion_gate_is_a_blocking_check_upstream_of_registration(
    defs: Definitions,
) -> None:
    graph = defs.resolve_asset_graph()
    upstream = graph.get(keys.REGISTERED_MODEL).parent_keys
    for asset_key, check_names in keys.PROMOTION_GATES.items():
        assert asset_key in upstream
        for name in check_names:
            assert EXPECTED_CHECKS[(asset_key.to_user_string(), name)] is True


def test_every_asset_has_a_business_docstring(defs: Definitions) -> None:
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        description = graph.get(key).description
        assert description, f"{key.to_user_string()} has no description"


def test_jobs_schedules_and_sensors(defs: Definitions) -> None:
    jobs = {job.name for job in defs.resolve_all_job_defs()} - {"__ASSET_JOB"}
    assert jobs == {
        keys.MAIN_JOB,
        keys.INGESTION_JOB,
        keys.RETRAINING_JOB,
        keys.DRIFT_MONITORING_JOB,
        keys.FAIRNESS_AUDIT_JOB,
        keys.ROLLBACK_JOB,
    }
    schedules = {
        s.name: (s.job_name, s.cron_schedule, s.execution_timezone) for s in defs.schedules
    }
    assert schedules == {
        "daily_ingestion_schedule": (keys.INGESTION_JOB, "0 2 * * *", "America/Los_Angeles"),
        "drift_monitoring_schedule": (
            keys.DRIFT_MONITORING_JOB,
            "0 */6 * * *",
            "America/Los_Angeles",
        ),
        "weekly_fairness_audit_schedule": (
            keys.FAIRNESS_AUDIT_JOB,
            "0 6 * * 0",
            "America/Los_Angeles",
        ),
    }
    assert {s.name for s in defs.sensors} == {
        "new_claims_sensor",
        "drift_retraining_sensor",
        "failed_check_alert_sensor",
        "run_failure_alert_sensor",
    }


def test_the_main_job_covers_every_asset(defs: Definitions) -> None:
    job = defs.resolve_job_def(keys.MAIN_JOB)
    selected = job.asset_layer.selected_asset_keys
    assert selected == {AssetKey(name) for name in EXPECTED_ASSETS}


def test_definitions_load_without_credentials_or_clients(
    fraud_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Loading the code location must not need Databricks credentials, even in that mode."""
    import importlib

    import fraud_assets.definitions as module

    monkeypatch.delenv("DATABRICKS_HOST", raising=False)
    monkeypatch.delenv("DATABRICKS_TOKEN", raising=False)
    monkeypatch.setenv("FRAUD_COMPUTE", "databricks")
    reloaded = importlib.reload(module)
    assert reloaded.defs.resolve_asset_graph().get_all_asset_keys()
    monkeypatch.setenv("FRAUD_COMPUTE", "local")
    importlib.reload(module)
