"""Settings: env vars, per-target overrides from one source, and secrets kept out of payloads."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from fraud_assets.governance.policy import protected_attributes
from fraud_assets.settings import FraudSettings, bundle_variables, get_settings

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_defaults_are_local_dev(fraud_home: Path) -> None:
    settings = get_settings()
    assert settings.target == "dev"
    assert settings.compute == "local"
    assert settings.fraud_home == fraud_home.resolve()
    # Unset: the target's pinned fairness policy names them (governance/fairness_policy.yaml).
    assert settings.protected_attributes is None
    assert protected_attributes(settings) == [
        "patient_gender",
        "patient_age_group",
        "geographic_region",
    ]
    assert settings.thresholds.psi_warn == 0.1
    assert settings.thresholds.psi_error == 0.2


def test_catalog_and_model_names_come_from_the_bundle(
    fraud_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = yaml.safe_load((REPO_ROOT / "databricks.yml").read_text())
    for target in bundle["targets"]:
        monkeypatch.setenv("FRAUD_TARGET", target)
        settings = get_settings()
        expected = bundle_variables(target)
        assert settings.catalog == expected["catalog"]
        assert settings.schema_name == expected["schema"]
        assert settings.model_name == expected["model_name"]


def test_env_overrides_nested_thresholds_and_beats_target_overrides(
    fraud_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FRAUD_TARGET", "prod")
    assert get_settings().thresholds.roc_auc_min == 0.75
    monkeypatch.setenv("FRAUD_THRESHOLDS__MAX_NULL_RATE", "0.07")
    monkeypatch.setenv("FRAUD_THRESHOLDS__PSI_WARN", "0.05")
    settings = get_settings()
    assert settings.thresholds.max_null_rate == 0.07
    assert settings.thresholds.psi_warn == 0.05
    # an override of one field keeps the target's other overrides
    assert settings.thresholds.roc_auc_min == 0.75


def test_protected_attributes_from_env(fraud_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRAUD_PROTECTED_ATTRIBUTES", '["patient_gender"]')
    assert get_settings().protected_attributes == ["patient_gender"]


def test_unknown_target_is_a_clear_error(fraud_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRAUD_TARGET", "qa")
    with pytest.raises(ValidationError, match="target"):
        get_settings()


def test_inconsistent_thresholds_are_rejected(
    fraud_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FRAUD_THRESHOLDS__PSI_WARN", "0.3")
    with pytest.raises(ValidationError, match="psi_warn"):
        get_settings()


def test_payload_round_trips_without_secrets(
    fraud_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FRAUD_ALERT_WEBHOOK_URL", "https://hooks.example.invalid/SECRET-123")
    monkeypatch.setenv("FRAUD_TARGET", "staging")
    settings = get_settings()
    payload = settings.to_payload()
    assert "SECRET-123" not in str(payload)
    rebuilt = FraudSettings.from_payload(payload)
    assert rebuilt.target == "staging"
    assert rebuilt.thresholds == settings.thresholds
    assert rebuilt.fraud_home == settings.fraud_home
    assert "SECRET-123" not in repr(settings)


def test_process_variables_are_read_through_the_settings(
    fraud_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FRAUD_SPARK_MASTER", "local[1]")
    monkeypatch.setenv("FRAUD_SPARK_DRIVER_MEMORY", "6g")
    monkeypatch.setenv("FRAUD_GIT_COMMIT", " c0ffee ")
    monkeypatch.setenv("FRAUD_DEPLOYED_BY", "ci-bot")
    settings = get_settings()
    assert (settings.spark_master, settings.spark_driver_memory) == ("local[1]", "6g")
    assert (settings.git_commit, settings.deployed_by) == ("c0ffee", "ci-bot")
    # Who launched a task and which checkout it runs are the task's own, not the launcher's.
    payload = settings.to_payload()
    assert "git_commit" not in payload and "deployed_by" not in payload
    monkeypatch.setenv("FRAUD_GIT_COMMIT", " ")
    monkeypatch.delenv("FRAUD_DEPLOYED_BY")
    assert (get_settings().git_commit, get_settings().deployed_by) == (None, None)
    assert get_settings().spark_master == "local[1]"


def test_model_name_is_three_level_only_on_a_databricks_runtime(
    fraud_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert get_settings().registered_model_name == "fraud_detector"
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "15.4")
    assert get_settings().registered_model_name == "fraud_dev.claims.fraud_detector"


def test_prod_promotes_only_with_approval_unless_told_otherwise(
    fraud_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    modes = {}
    for target in ("dev", "staging", "prod"):
        monkeypatch.setenv("FRAUD_TARGET", target)
        modes[target] = FraudSettings().promotion.mode
    assert modes == {"dev": "auto", "staging": "auto", "prod": "approval"}
    monkeypatch.setenv("FRAUD_TARGET", "staging")
    monkeypatch.setenv("FRAUD_PROMOTION__MODE", "approval")
    settings = FraudSettings()
    assert settings.promotion.mode == "approval"
    assert FraudSettings.from_payload(settings.to_payload()).promotion.mode == "approval"
    monkeypatch.setenv("FRAUD_PROMOTION__MODE", "sometimes")
    with pytest.raises(ValidationError, match=r"promotion\.mode"):
        FraudSettings()
