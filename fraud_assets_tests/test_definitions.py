"""Pin the whole code location: asset keys, groups, dependencies, checks, jobs, automation."""

from __future__ import annotations

from pathlib import Path

import pytest
from dagster import AssetKey, Definitions

from fraud_assets import keys
from fraud_assets.checks import (
    CHECK_CHAMPION_FAIRNESS,
    CHECK_DISPARATE_IMPACT,
    CHECK_EQUAL_OPPORTUNITY,
    CHECK_FAIRNESS_POLICY,
    CHECK_FALSE_POSITIVE_RATE_RATIO,
    CHECK_FEATURE_DRIFT,
    CHECK_FEATURES_COMPLETE,
    CHECK_HOLDOUT_SEPARATED,
    CHECK_MIN_GROUP_SIZE,
    CHECK_MODEL_ROC_AUC,
    CHECK_NO_FILE_QUARANTINED,
    CHECK_NO_REGRESSION,
    CHECK_NULL_RATES,
    CHECK_PR_AUC_FLOOR,
    CHECK_QUARANTINE_RATE,
    CHECK_RAW_NOT_EMPTY,
    CHECK_RAW_SCHEMA,
    CHECK_RECONCILES,
    CHECK_ROC_AUC_FLOOR,
    CHECK_SCHEMA,
    CHECK_SCORE_DRIFT,
    CHECK_UNIQUE_CLAIM_ID,
    CHECK_VALUE_RANGES,
    promotion_gates,
)
from fraud_assets.governance.policy import pinned_policy
from fraud_assets_tests.asset_graph import EXPECTED_ASSETS

ML, GOVERNANCE = "team:fraud-ml", "team:ml-governance"

# asset -> (owner, kinds in local mode)
EXPECTED_CATALOG: dict[str, tuple[str, set[str]]] = {
    "raw_claims": (ML, {"delta", "python"}),
    "claims": (ML, {"spark", "delta"}),
    "claims_quarantine": (ML, {"spark", "delta"}),
    "claim_features": (ML, {"spark", "delta"}),
    "catboost_model": (ML, {"catboost", "mlflow"}),
    "xgboost_model": (ML, {"xgboost", "mlflow"}),
    "model_evaluation": (ML, {"mlflow", "delta"}),
    "fairness_report": (GOVERNANCE, {"python", "delta", "mlflow"}),
    "psi_report": (GOVERNANCE, {"python", "delta"}),
    "registered_model": (GOVERNANCE, {"mlflow"}),
    "fraud_scores": (ML, {"spark", "mlflow", "delta"}),
    "champion_fairness_audit": (GOVERNANCE, {"python", "mlflow", "pdf"}),
}

# (asset, check) -> blocking
EXPECTED_CHECKS: dict[tuple[str, str], bool] = {
    ("raw_claims", CHECK_RAW_SCHEMA): True,
    ("raw_claims", CHECK_RAW_NOT_EMPTY): False,
    ("raw_claims", CHECK_NO_FILE_QUARANTINED): False,
    ("claims", CHECK_SCHEMA): True,
    ("claims", CHECK_UNIQUE_CLAIM_ID): True,
    ("claims", CHECK_RECONCILES): True,
    ("claims", CHECK_QUARANTINE_RATE): True,
    ("claims", CHECK_VALUE_RANGES): False,
    ("claims", CHECK_NULL_RATES): False,
    ("claim_features", CHECK_FEATURES_COMPLETE): True,
    ("claim_features", CHECK_HOLDOUT_SEPARATED): False,
    ("catboost_model", CHECK_MODEL_ROC_AUC): False,
    ("xgboost_model", CHECK_MODEL_ROC_AUC): False,
    ("model_evaluation", CHECK_ROC_AUC_FLOOR): True,
    ("model_evaluation", CHECK_PR_AUC_FLOOR): True,
    ("model_evaluation", CHECK_NO_REGRESSION): True,
    ("fairness_report", CHECK_FALSE_POSITIVE_RATE_RATIO): True,
    ("fairness_report", CHECK_EQUAL_OPPORTUNITY): True,
    ("fairness_report", CHECK_DISPARATE_IMPACT): True,
    ("fairness_report", CHECK_MIN_GROUP_SIZE): True,
    ("fairness_report", CHECK_FAIRNESS_POLICY): True,
    ("psi_report", CHECK_FEATURE_DRIFT): False,
    ("psi_report", CHECK_SCORE_DRIFT): False,
    ("champion_fairness_audit", CHECK_CHAMPION_FAIRNESS): False,
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
    upstream = graph.get(AssetKey(keys.REGISTERED_MODEL)).parent_keys
    for asset_key, check_names in promotion_gates(pinned_policy("prod").gates).items():
        assert AssetKey(asset_key) in upstream
        for name in check_names:
            assert EXPECTED_CHECKS[(asset_key, name)] is True


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
        keys.PROMOTE_JOB,
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


def test_nothing_automatic_launches_the_promotion_job(defs: Definitions) -> None:
    """Champion moves by the approval path (scripts/promote_model.py) or register's gates,
    never by a schedule or sensor; the drift sensor only retrains."""
    targeted = {s.job_name for s in defs.schedules}
    for sensor in defs.sensors:
        targeted |= {target.job_name for target in sensor.targets}
    assert keys.PROMOTE_JOB not in targeted and keys.ROLLBACK_JOB not in targeted
    assert keys.RETRAINING_JOB in targeted


def test_the_weekly_audit_audits_the_champion_not_the_candidate(defs: Definitions) -> None:
    """Issue 16: the weekly audit re-scored the latest candidate's holdout (fairness_report)."""
    job = defs.resolve_job_def(keys.FAIRNESS_AUDIT_JOB)
    assert job.asset_layer.selected_asset_keys == {AssetKey(keys.CHAMPION_FAIRNESS_AUDIT)}
    schedule = next(s for s in defs.schedules if s.name == "weekly_fairness_audit_schedule")
    assert schedule.job_name == keys.FAIRNESS_AUDIT_JOB


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


def test_every_asset_has_its_owner_and_kinds(defs: Definitions) -> None:
    graph = defs.resolve_asset_graph()
    actual = {
        key.to_user_string(): (list(graph.get(key).owners), set(graph.get(key).kinds))
        for key in graph.get_all_asset_keys()
    }
    assert actual == {name: ([owner], kinds) for name, (owner, kinds) in EXPECTED_CATALOG.items()}


def _reloaded_graph(monkeypatch: pytest.MonkeyPatch, **env: str) -> object:
    import importlib

    import fraud_assets.definitions as module

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    graph = importlib.reload(module).defs.resolve_asset_graph()
    for name in env:
        monkeypatch.delenv(name)
    importlib.reload(module)
    return graph


def test_databricks_mode_marks_every_step_and_owners_are_settable(
    fraud_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    graph = _reloaded_graph(
        monkeypatch,
        FRAUD_COMPUTE="databricks",
        FRAUD_OWNERS__GOVERNANCE="compliance@example.com",
    )
    for name, (owner, kinds) in EXPECTED_CATALOG.items():
        node = graph.get(AssetKey(name))  # type: ignore[attr-defined]
        assert set(node.kinds) == kinds | {"databricks"}, name
        expected_owner = "compliance@example.com" if owner == GOVERNANCE else owner
        assert list(node.owners) == [expected_owner], name


def test_an_invalid_owner_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from fraud_assets.settings import FraudSettings

    monkeypatch.setenv("FRAUD_OWNERS__ML", "fraud people")
    with pytest.raises(ValueError, match="FRAUD_OWNERS__ML"):
        FraudSettings()


def test_every_asset_links_to_its_source_file(defs: Definitions) -> None:
    from dagster import LocalFileCodeReference

    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        [reference] = graph.get(key).metadata["dagster/code_references"].code_references
        assert isinstance(reference, LocalFileCodeReference), key
        source = Path(reference.file_path)
        assert source.parent.name == "assets" and source.is_file(), key
        line = source.read_text(encoding="utf-8").splitlines()[reference.line_number - 1]
        assert line.startswith(("def ", "@")), (key, line)


def test_code_links_point_at_the_remote_commit(
    fraud_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    graph = _reloaded_graph(
        monkeypatch,
        FRAUD_CODE_REPOSITORY_URL="git@github.com:example/fraud_assets.git",
        FRAUD_GIT_COMMIT="0123abc",
    )
    references = graph.get(AssetKey(keys.PSI_REPORT)).metadata["dagster/code_references"]  # type: ignore[attr-defined]
    [reference] = references.code_references
    assert reference.url.startswith(
        "https://github.com/example/fraud_assets/tree/0123abc/fraud_assets/assets/governance.py#L"
    )


@pytest.mark.parametrize(
    ("remote", "url"),
    [
        ("git@github.com:org/repo.git", "https://github.com/org/repo"),
        ("https://user:secret@gitlab.com/org/repo.git", "https://gitlab.com/org/repo"),
        ("https://github.com/org/repo/", "https://github.com/org/repo"),
        ("https://git.example.com/org/repo.git", None),
        ("/srv/git/repo.git", None),
    ],
)
def test_browsable_url_of_a_remote(remote: str, url: str | None) -> None:
    from fraud_assets.catalog import browsable_url

    assert browsable_url(remote) == url


def test_no_remote_means_local_code_references_only(
    fraud_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fraud_assets import catalog, provenance
    from fraud_assets.settings import FraudSettings

    monkeypatch.setattr(provenance, "REPO_ROOT", fraud_home)  # no .git here
    monkeypatch.delenv("FRAUD_GIT_COMMIT", raising=False)
    assert catalog.code_repository(FraudSettings()) == (None, None)
