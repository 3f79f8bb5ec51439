"""The fairness policy pinned for a target is the one promotion enforces.

Issue 12: a rerun of the fairness step with fewer protected attributes (or a loosened
threshold), followed by ``register``, promoted the model. Registration must refuse a
verdict computed under a weaker policy than the target's pinned one.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fraud_assets.checks import CHECK_FAIRNESS_POLICY
from fraud_assets.governance.policy import PolicyError, pinned_policy, policy_in_force
from fraud_assets.lakehouse import table_store
from fraud_assets.ml import registry
from fraud_assets.ml.tracking import mlflow_client
from fraud_assets.settings import get_settings
from fraud_assets.tasks import evaluate, fairness, register, train
from fraud_assets.tasks._runtime import run_task
from fraud_assets_tests.gold_frames import make_gold_frame, use_migrated_mlflow_store


@pytest.fixture
def evaluated_home(fraud_home: Path) -> Path:
    """Both models trained and evaluated: the candidate awaits its fairness verdict."""
    use_migrated_mlflow_store(fraud_home)
    table_store(get_settings()).write_pandas(make_gold_frame(2_500, seed=3), "claim_features")
    for model in ("catboost", "xgboost"):
        run_task(
            train.train,
            ["--model", model, "--boosting_rounds", "20", "--run_id", "run-1"],
            name="train",
        )
    run_task(evaluate.evaluate, ["--run_id", "run-1"], name="evaluate")
    return fraud_home


def _fairness_then_register() -> dict[str, object]:
    run_task(fairness.fairness, ["--run_id", "run-1"], name="fairness")
    result = run_task(register.register, ["--run_id", "run-1"], name="register")
    return result.materializations[0].metadata


def test_a_verdict_under_fewer_protected_attributes_cannot_promote(
    evaluated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FRAUD_PROTECTED_ATTRIBUTES", json.dumps(["patient_gender"]))
    registered = _fairness_then_register()
    assert registered["promoted"] is False
    assert registry.alias_version(mlflow_client(), "fraud_detector", registry.CHAMPION) is None


def test_a_verdict_under_a_loosened_threshold_cannot_promote(
    evaluated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "FRAUD_FAIRNESS__GATES",
        json.dumps({"false_positive_rate_ratio": 0.5, "equal_opportunity_difference": 0.1}),
    )
    registered = _fairness_then_register()
    assert registered["promoted"] is False
    assert "fairness_report.false_positive_rate_ratio (weaker policy)" in str(registered["reason"])
    assert "looser than 0.8" in str(registered["fairness_policy_refused"])
    version = mlflow_client().get_model_version("fraud_detector", "1")
    assert version.tags["gates_passed"] == "false"
    assert version.tags["fairness_validated"] == "false"


def test_the_pinned_policy_and_a_stricter_one_promote(
    evaluated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registered = _fairness_then_register()
    assert registered["promoted"] is True, registered["reason"]
    version = mlflow_client().get_model_version("fraud_detector", "1")
    assert version.tags["fairness_validated"] == "true"
    assert version.tags["fairness_policy"] == pinned_policy("dev").fingerprint
    assert version.tags["fairness_policy_pinned"] == pinned_policy("dev").fingerprint

    # Stricter: one more gated figure and a lower confidence level (narrower intervals).
    monkeypatch.setenv(
        "FRAUD_FAIRNESS__GATES",
        json.dumps(
            {
                "false_positive_rate_ratio": 0.85,
                "equal_opportunity_difference": 0.1,
                "disparate_impact_ratio": 0.8,
            }
        ),
    )
    monkeypatch.setenv("FRAUD_FAIRNESS__CONFIDENCE_LEVEL", "0.9")
    again = _fairness_then_register()
    assert again["promoted"] is True, again["reason"]
    stricter = policy_in_force(get_settings())
    assert mlflow_client().get_model_version("fraud_detector", "1").tags["fairness_policy"] == (
        stricter.fingerprint
    )


def test_a_fairness_verdict_that_records_no_policy_cannot_promote(evaluated_home: Path) -> None:
    run_task(fairness.fairness, ["--run_id", "run-1"], name="fairness")
    store = table_store(get_settings())
    history = store.read_pandas("check_history")
    fair = history["asset_key"] == "fairness_report"
    history.loc[fair, "metadata_json"] = "{}"
    store.write_pandas(history, "check_history")
    result = run_task(register.register, ["--run_id", "run-1"], name="register")
    registered = result.materializations[0].metadata
    assert registered["promoted"] is False
    assert "the verdict records no fairness policy" in str(registered["fairness_policy_refused"])


def test_the_fairness_step_reports_a_weaker_policy_as_a_blocking_failure(
    evaluated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FRAUD_FAIRNESS__MIN_GROUP_SIZE", "500")
    result = run_task(fairness.fairness, ["--run_id", "run-1"], name="fairness")
    policy_check = next(c for c in result.checks if c.check_name == CHECK_FAIRNESS_POLICY)
    assert policy_check.passed is False and policy_check.severity == "ERROR"
    assert "min_group_size 500 is above 30" in policy_check.description
    # Every verdict records the policy it was computed under.
    for check in result.checks:
        assert check.metadata["policy"]["min_group_size"] == 500
        assert check.metadata["policy_fingerprint"] == policy_in_force(get_settings()).fingerprint


# --- the policy itself ----------------------------------------------------------------------


def test_each_target_pins_a_policy_that_gates_false_accusations() -> None:
    dev, staging, prod = (pinned_policy(t) for t in ("dev", "staging", "prod"))
    assert dev.gates == {"false_positive_rate_ratio": 0.8, "equal_opportunity_difference": 0.1}
    assert dev.advisories == {"disparate_impact_ratio": 0.8}
    assert dev.attributes == ("patient_gender", "patient_age_group", "geographic_region")
    assert (dev.min_group_size, staging.min_group_size, prod.min_group_size) == (30, 50, 100)
    assert {p.confidence_level for p in (dev, staging, prod)} == {0.95}
    assert len({dev.fingerprint, staging.fingerprint, prod.fingerprint}) == 3
    assert dev.fingerprint == pinned_policy("dev").fingerprint, "stable across loads"


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"attributes": ("patient_gender",)}, "are not judged"),
        ({"gates": {"false_positive_rate_ratio": 0.8}}, "equal_opportunity_difference does not"),
        (
            {"gates": {"false_positive_rate_ratio": 0.7, "equal_opportunity_difference": 0.1}},
            "false_positive_rate_ratio threshold 0.7 is looser than 0.8",
        ),
        (
            {"gates": {"false_positive_rate_ratio": 0.8, "equal_opportunity_difference": 0.2}},
            "equal_opportunity_difference threshold 0.2 is looser than 0.1",
        ),
        ({"confidence_level": 0.99}, "confidence level 0.99 is above 0.95"),
        ({"min_group_size": 31}, "min_group_size 31 is above 30"),
    ],
)
def test_every_weakening_is_named(change: dict[str, object], problem: str) -> None:
    pinned = pinned_policy("dev")
    weaker = pinned.model_copy(update=change)
    assert any(problem in p for p in weaker.weaker_than(pinned)), weaker.weaker_than(pinned)


def test_stricter_policies_are_not_weaker() -> None:
    pinned = pinned_policy("dev")
    stricter = pinned.model_copy(
        update={
            "attributes": (*pinned.attributes, "race"),
            "gates": {**pinned.gates, "disparate_impact_ratio": 0.8},
            "confidence_level": 0.9,
            "min_group_size": 20,
        }
    )
    assert stricter.weaker_than(pinned) == []
    assert pinned.weaker_than(stricter) != []


def test_overrides_come_from_the_environment_and_bad_ones_are_clear(
    fraud_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert policy_in_force(get_settings()) == pinned_policy("dev")
    monkeypatch.setenv("FRAUD_PROTECTED_ATTRIBUTES", json.dumps(["patient_gender"]))
    monkeypatch.setenv("FRAUD_FAIRNESS__MIN_GROUP_SIZE", "10")
    policy = policy_in_force(get_settings())
    assert policy.attributes == ("patient_gender",) and policy.min_group_size == 10
    monkeypatch.setenv("FRAUD_FAIRNESS__GATES", json.dumps({"selection_parity": 0.8}))
    with pytest.raises(PolicyError, match=r"unknown fairness figure.*selection_parity"):
        policy_in_force(get_settings())
    monkeypatch.setenv("FRAUD_THRESHOLDS__DISPARATE_IMPACT_MIN", "0.5")
    with pytest.raises(ValueError, match="FRAUD_THRESHOLDS__DISPARATE_IMPACT_MIN: fairness"):
        get_settings()
