"""Registry: champion moves only behind passing gates; rollback and manual promotion."""

from __future__ import annotations

import logging
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.models import infer_signature
from mlflow.pyfunc import PythonModel

from fraud_assets import keys
from fraud_assets.checks import (
    CHECK_FALSE_POSITIVE_RATE_RATIO,
    CHECK_NO_REGRESSION,
    CHECK_ROC_AUC_FLOOR,
    promotion_gates,
)
from fraud_assets.features import MODEL_FEATURES
from fraud_assets.governance.policy import pinned_policy
from fraud_assets.lakehouse import table_store
from fraud_assets.ml import registry
from fraud_assets.ml.tracking import configure_mlflow, mlflow_client
from fraud_assets.settings import get_settings
from fraud_assets.tasks import evaluate, promote, register, train
from fraud_assets.tasks._runtime import CheckOutcome, TaskContext, record_check_history, run_task
from fraud_assets_tests.emulator.fixtures import SENTINEL_TOKEN
from fraud_assets_tests.gold_frames import make_gold_frame, use_migrated_mlflow_store

pytest_plugins = ["fraud_assets_tests.emulator.fixtures"]

MODEL = "fraud_detector"
FAIRNESS = keys.FAIRNESS_REPORT
PROMOTION_GATES = promotion_gates(pinned_policy("dev").gates)
FAIRNESS_GATES = PROMOTION_GATES[keys.FAIRNESS_REPORT]


def _train_both(run_id: str) -> None:
    for model in ("catboost", "xgboost"):
        run_task(
            train.train,
            ["--model", model, "--boosting_rounds", "20", "--run_id", run_id],
            name="train",
        )


def _evaluate(run_id: str) -> None:
    run_task(evaluate.evaluate, ["--run_id", run_id], name="evaluate")


def _register(run_id: str) -> dict[str, object]:
    result = run_task(register.register, ["--run_id", run_id], name="register")
    return result.materializations[0].metadata


def _fairness(run_id: str, *, failing: tuple[str, ...] = ()) -> None:
    """Stand in for the fairness step: record its gate verdicts, with their policy, as it would."""
    settings = get_settings()
    ctx = TaskContext(
        settings=settings, params={}, log=logging.getLogger("fairness"), run_id=run_id
    )
    policy = pinned_policy(settings.target)
    recorded = {"policy": policy.to_dict(), "policy_fingerprint": policy.fingerprint}
    record_check_history(
        ctx,
        [
            CheckOutcome(FAIRNESS, name, passed=name not in failing, metadata=recorded)
            for name in FAIRNESS_GATES
        ],
    )


def _version(client: mlflow.MlflowClient, alias: str) -> str | None:
    version = registry.alias_version(client, MODEL, alias)
    return None if version is None else str(version.version)


@pytest.fixture
def trained_home(fraud_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FRAUD_GIT_COMMIT", "c0ffee")
    monkeypatch.setenv("FRAUD_DEPLOYED_BY", "ci-bot")
    use_migrated_mlflow_store(fraud_home)
    table_store(get_settings()).write_pandas(make_gold_frame(2_500, seed=5), "claim_features")
    _train_both("run-1")
    return fraud_home


def test_champion_moves_only_when_every_gate_has_a_fresh_passing_verdict(trained_home):
    _fairness("run-0")  # recorded before this candidate was evaluated: says nothing about it
    _evaluate("run-1")

    first = _register("run-1")
    assert first["promoted"] is False
    # A version that has not passed every gate is neither champion nor challenger: no
    # live claim is routed to it (issue 14, finding 2).
    assert first["champion_version"] == "none" and first["challenger_version"] == "none"
    assert "fairness_report.false_positive_rate_ratio (missing)" in str(first["reason"])
    client = mlflow_client()
    assert _version(client, registry.CHAMPION) is None
    assert _version(client, registry.CHALLENGER) is None

    _fairness("run-1", failing=(CHECK_FALSE_POSITIVE_RATE_RATIO,))
    second = _register("run-1")
    assert second["model_version"] == 1, "re-registering the same candidate reuses its version"
    assert second["promoted"] is False
    assert "fairness_report.false_positive_rate_ratio (failed)" in str(second["reason"])

    _fairness("run-1")
    third = _register("run-1")
    assert third["promoted"] is True and third["champion_version"] == "1"
    assert third["challenger_version"] == "1"
    assert third["reason"] == "all 7 promotion gates passed"

    version = client.get_model_version(MODEL, "1")
    evaluation = table_store(get_settings()).read_pandas("model_evaluation")
    candidate = evaluation[evaluation["model_role"] == "candidate"].iloc[0]
    assert version.run_id == candidate["mlflow_run_id"]
    assert float(version.tags["roc_auc"]) == pytest.approx(candidate["roc_auc"], abs=1e-6)
    assert float(version.tags["pr_auc"]) == pytest.approx(candidate["pr_auc"], abs=1e-6)
    assert version.tags["training_delta_version"] == "0"
    assert version.tags["run_id"] == "run-1"
    assert version.tags["git_commit"] == "c0ffee"
    assert version.tags["deployed_by"] == "ci-bot"
    assert version.tags["gates_passed"] == "true"
    for asset, checks in PROMOTION_GATES.items():
        for check in checks:
            assert version.tags[f"gate.{asset}.{check}"] == "passed"
    assert "previous_champion" not in version.tags


def test_a_failing_model_gate_leaves_the_champion_where_it_was(trained_home):
    _evaluate("run-1")
    _fairness("run-1")
    assert _register("run-1")["promoted"] is True

    # Retrain on labels unrelated to the features: ROC AUC falls below the floor.
    store = table_store(get_settings())
    store.write_pandas(make_gold_frame(2_500, seed=6, signal=0.0), "claim_features")
    _train_both("run-2")
    _evaluate("run-2")
    _fairness("run-2")  # even with fairness passing, a model quality gate blocks
    outcome = _register("run-2")

    assert outcome["promoted"] is False
    assert outcome["model_version"] == 2 and outcome["challenger_version"] == "1"
    assert outcome["champion_version"] == "1"
    assert "model_evaluation.roc_auc_floor (failed)" in str(outcome["reason"])
    client = mlflow_client()
    assert _version(client, registry.CHAMPION) == "1"
    assert client.get_model_version(MODEL, "2").tags["gates_passed"] == "false"
    evaluation = store.read_pandas("model_evaluation")
    # The champion was scored on the same holdout as the candidates.
    assert sorted(evaluation["model_role"]) == ["candidate", "champion", "runner_up"]
    champion_row = evaluation[evaluation["model_role"] == "champion"].iloc[0]
    assert champion_row["model_version"] == "1"


def test_verdicts_since_ignores_older_rows_and_keeps_the_latest():
    now = datetime(2025, 1, 1, tzinfo=UTC)
    history = pd.DataFrame(
        {
            "asset_key": ["fairness_report"] * 3,
            "check_name": ["min_group_size"] * 3,
            "passed": [True, False, True],
            "evaluated_at": [now - timedelta(hours=1), now, now + timedelta(minutes=5)],
        }
    )
    assert registry.verdicts_since(history, since=now) == {
        ("fairness_report", "min_group_size"): True
    }
    assert registry.verdicts_since(history.iloc[:2], since=now) == {
        ("fairness_report", "min_group_size"): False
    }
    report = registry.judge_gates({("a", "x"): True, ("a", "y"): False}, {"a": ["x", "y", "z"]})
    assert report.verdicts == {"a.x": "passed", "a.y": "failed", "a.z": "missing"}
    assert not report.passed
    assert not registry.judge_gates({}, {}).passed, "no gates configured must not mean promote"


@pytest.fixture
def three_versions(fraud_home: Path) -> list[str]:
    """Three versions of one logged model; 1 and 2 passed their gates, 3 did not."""
    use_migrated_mlflow_store(fraud_home)
    table_store(get_settings()).write_pandas(make_gold_frame(800, seed=9), "claim_features")
    result = run_task(train.train, ["--model", "xgboost", "--boosting_rounds", "5"], name="train")
    uri = str(result.materializations[0].metadata["model_uri"])
    configure_mlflow(get_settings())
    client = mlflow_client()
    versions = [mlflow.register_model(uri, MODEL).version for _ in range(3)]
    for version, passed in zip(versions, ("true", "true", "false"), strict=True):
        client.set_model_version_tag(MODEL, version, registry.TAG_GATES_PASSED, passed)
    return [str(v) for v in versions]


def _promote_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fraud_assets.tasks.promote", *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_rollback_and_manual_promotion(three_versions):
    v1, v2, v3 = three_versions
    client = mlflow_client()
    registry.move_champion(client, name=MODEL, version=v1, actor="test")
    registry.move_champion(client, name=MODEL, version=v2, actor="test")
    assert client.get_model_version(MODEL, v2).tags["previous_champion"] == v1

    assert registry.champion_history_by(client, MODEL) == ["test", "test"]
    move = registry.rollback_champion(client, name=MODEL, actor="oncall")
    assert (move.from_version, move.to_version) == (v2, v1)
    assert registry.champion_history_by(client, MODEL) == ["test"]
    assert str(registry.champion_version(client, MODEL).version) == v1
    assert client.get_model_version(MODEL, v2).tags["rolled_back_by"] == "oncall"
    with pytest.raises(registry.RollbackError, match="records no earlier champion"):
        registry.rollback_champion(client, name=MODEL, actor="oncall")

    with pytest.raises(registry.PromotionError, match="gates_passed=false"):
        registry.promote_version(client, name=MODEL, version=v3, actor="oncall")
    assert str(registry.champion_version(client, MODEL).version) == v1
    forced = registry.promote_version(client, name=MODEL, version=v3, actor="oncall", force=True)
    assert (forced.from_version, forced.to_version) == (v1, v3)
    assert client.get_model_version(MODEL, v3).tags["forced_by"] == "oncall"

    # The operator's command: back to v1, then a clear one-line refusal.
    rolled = _promote_cli("--action", "rollback")
    assert rolled.returncode == 0, rolled.stderr[-2000:]
    assert str(registry.champion_version(mlflow_client(), MODEL).version) == v1
    refused = _promote_cli("--action", "rollback")
    assert refused.returncode == 1
    last_line = refused.stderr.strip().splitlines()[-1]
    assert last_line.startswith(
        "promote: fraud_detector version 1 is champion and the history records no"
    )
    assert "Traceback" not in refused.stderr

    # Without --version, promote takes the challenger (the bundle's promotion job does this).
    registry.set_challenger(mlflow_client(), name=MODEL, version=v2)
    run_task(promote.promote, ["--action", "promote"], name="promote")
    assert str(registry.champion_version(mlflow_client(), MODEL).version) == v2


class _NewerContractModel(PythonModel):
    """A champion trained on a feature the current gold table no longer has."""

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        return [0.5] * len(model_input)


def test_a_champion_that_cannot_score_the_holdout_fails_the_regression_gate(trained_home):
    example = table_store(get_settings()).read_pandas("claim_features").head(3)
    example = example[MODEL_FEATURES].assign(retired_feature=1.0)
    configure_mlflow(get_settings())
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=_NewerContractModel(),
            signature=infer_signature(example, np.full(3, 0.5)),
        )
    version = str(mlflow.register_model(info.model_uri, MODEL).version)
    registry.move_champion(mlflow_client(), name=MODEL, version=version, actor="test")

    result = run_task(evaluate.evaluate, ["--run_id", "run-1"], name="evaluate")

    verdicts = {c.check_name: c for c in result.checks}
    assert verdicts[CHECK_ROC_AUC_FLOOR].passed
    regression = verdicts[CHECK_NO_REGRESSION]
    assert not regression.passed
    assert regression.description is not None
    assert "needs column(s) retired_feature" in regression.description


def test_rollback_history_is_a_list_never_a_cycle(three_versions):
    v1, v2, _ = three_versions
    client = mlflow_client()
    for version in (v1, v2, v1):  # v1 promoted again by hand after v2
        registry.promote_version(client, name=MODEL, version=version, actor="oncall")
    assert registry.champion_history(client, MODEL) == [v1, v2, v1]

    # Each rollback undoes one promotion: v1 -> v2 -> v1, then there is nothing left.
    assert registry.rollback_champion(client, name=MODEL, actor="oncall").to_version == v2
    assert registry.rollback_champion(client, name=MODEL, actor="oncall").to_version == v1
    with pytest.raises(registry.RollbackError, match="no earlier champion"):
        registry.rollback_champion(client, name=MODEL, actor="oncall")
    assert registry.champion_history(client, MODEL) == [v1]
    assert str(registry.champion_version(client, MODEL).version) == v1


def test_a_rolled_back_version_leaves_the_challenger_alias(three_versions):
    v1, v2, _ = three_versions
    client = mlflow_client()
    registry.promote_version(client, name=MODEL, version=v1, actor="test")
    registry.promote_version(client, name=MODEL, version=v2, actor="test")
    registry.set_challenger(client, name=MODEL, version=v2)
    registry.rollback_champion(client, name=MODEL, actor="oncall")
    # The operator took v2 out of service: it must not keep answering the challenger's share.
    assert _version(client, registry.CHALLENGER) is None


def test_a_champion_moved_outside_the_history_rolls_back_to_the_last_recorded_one(
    three_versions,
):
    v1, v2, v3 = three_versions
    client = mlflow_client()
    registry.promote_version(client, name=MODEL, version=v1, actor="test")
    registry.promote_version(client, name=MODEL, version=v2, actor="test")
    # Someone sets the alias in the registry UI, bypassing promote.
    client.set_registered_model_alias(MODEL, registry.CHAMPION, v3)
    move = registry.rollback_champion(client, name=MODEL, actor="oncall")
    assert (move.from_version, move.to_version) == (v3, v2)
    # A move outside promote enters the history with no known actor.
    client.set_registered_model_alias(MODEL, registry.CHAMPION, v3)
    registry.promote_version(client, name=MODEL, version=v1, actor="alice")
    assert registry.champion_history(client, MODEL) == [v1, v2, v3, v1]
    assert registry.champion_history_by(client, MODEL) == [
        "test",
        "test",
        registry.UNRECORDED,
        "alice",
    ]


def test_a_promotion_waits_for_the_alias_lock(three_versions):
    v1, v2, _ = three_versions
    registry.promote_version(mlflow_client(), name=MODEL, version=v1, actor="test")
    with registry.alias_lock(get_settings().fraud_home):
        waiting = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fraud_assets.tasks.promote",
                "--action",
                "promote",
                "--version",
                v2,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        # Long enough for the command to start and reach the registry (it takes ~10 s).
        with pytest.raises(subprocess.TimeoutExpired):
            waiting.wait(timeout=25)
        assert str(registry.champion_version(mlflow_client(), MODEL).version) == v1
    assert waiting.wait(timeout=120) == 0, waiting.stderr.read() if waiting.stderr else ""
    assert registry.champion_history(mlflow_client(), MODEL) == [v1, v2]


def test_a_move_that_loses_a_race_on_another_machine_fails_clearly(three_versions, monkeypatch):
    v1, v2, v3 = three_versions
    client = mlflow_client()
    registry.promote_version(client, name=MODEL, version=v1, actor="test")
    real = client.set_registered_model_alias

    def raced(name: str, alias: str, version: str) -> None:
        real(name, alias, version)
        real(name, alias, v3)  # another cluster's promotion lands right after this one

    monkeypatch.setattr(client, "set_registered_model_alias", raced)
    with pytest.raises(registry.ConcurrentAliasMoveError, match="the champion is now 3"):
        registry.promote_version(client, name=MODEL, version=v2, actor="test")


def test_the_actor_a_launch_names_is_recorded_over_the_environment(trained_home):
    # scripts/orchestrate.py tags a CI launch with its GitHub actor; the compute resource
    # passes that tag to the step as `deployed_by` (FRAUD_DEPLOYED_BY is "ci-bot" here).
    _evaluate("run-1")
    _fairness("run-1")
    result = run_task(
        register.register, ["--run_id", "run-1", "--deployed_by", "octocat"], name="register"
    )
    assert result.materializations[0].metadata["deployed_by"] == "octocat"
    version = mlflow_client().get_model_version(MODEL, "1")
    assert version.tags["deployed_by"] == "octocat"
    assert version.tags["promoted_by"] == "octocat"


def _psi_report(evaluated_at: datetime, psi: dict[str, tuple[str, float]]) -> pd.DataFrame:
    """One psi_report as compute_psi appends it: a row per feature (kind) and its PSI."""
    return pd.DataFrame(
        {
            "run_id": "run-psi",
            "evaluated_at": evaluated_at,
            "feature": list(psi),
            "kind": [kind for kind, _ in psi.values()],
            "psi": [value for _, value in psi.values()],
        }
    )


def test_a_version_is_tagged_with_its_fairness_verdict_and_the_latest_psi(trained_home):
    _evaluate("run-1")
    _fairness("run-1", failing=(CHECK_FALSE_POSITIVE_RATE_RATIO,))
    _register("run-1")
    client = mlflow_client()
    version = client.get_model_version(MODEL, "1")
    assert version.tags["fairness_validated"] == "false"
    assert version.tags["psi_score"] == "none", "no psi_report yet"

    store = table_store(get_settings())
    now = datetime.now(UTC)
    older = {"claim_amount": ("numeric", 0.9)}
    store.write_pandas(_psi_report(now - timedelta(days=1), older), "psi_report")
    latest = {
        "claim_amount": ("numeric", 0.05),
        "provider_specialty": ("categorical", 0.12),
        "fraud_score": ("score", 0.4),  # the score's PSI is not a feature's
    }
    store.write_pandas(_psi_report(now, latest), "psi_report", mode="append")
    _fairness("run-1")
    _register("run-1")
    version = client.get_model_version(MODEL, "1")
    assert version.tags["fairness_validated"] == "true"
    assert float(version.tags["psi_score"]) == pytest.approx(0.12)


def test_a_gated_promotion_re_points_the_databricks_endpoint(trained_home, emulator, monkeypatch):
    endpoint = "fraud-detector-dev"
    emulator.create_serving_endpoint(
        endpoint,
        {
            "served_entities": [
                {"name": alias, "entity_name": MODEL, "entity_version": "7"}
                for alias in ("champion", "challenger")
            ],
            "traffic_config": {
                "routes": [
                    {"served_entity_name": "champion", "traffic_percentage": 100},
                    {"served_entity_name": "challenger", "traffic_percentage": 0},
                ]
            },
        },
    )
    monkeypatch.setenv("FRAUD_COMPUTE", "databricks")
    monkeypatch.setenv("DATABRICKS_HOST", emulator.host)
    monkeypatch.setenv("DATABRICKS_TOKEN", SENTINEL_TOKEN)
    _evaluate("run-1")

    refused = _register("run-1")  # no fairness verdict yet: nothing moves, nothing is sent
    assert refused["promoted"] is False and "serving_endpoint_sync" not in refused
    assert emulator.calls("PUT", "/api/2.0/serving-endpoints") == []

    _fairness("run-1")
    promoted = _register("run-1")
    assert promoted["promoted"] is True
    assert promoted["serving_endpoint_sync"] == "updated"
    served = emulator.served_versions(endpoint)
    assert (served["champion"].version, served["champion"].traffic_percentage) == ("1", 100)


# --- the approval promotion mode (prod) and the first model -----------------------------------

APPROVAL_URL = "https://github.com/acme/fraud_assets/actions/runs/42"


def test_under_approval_a_gate_passing_first_version_waits_as_challenger(trained_home, monkeypatch):
    monkeypatch.setenv("FRAUD_PROMOTION__MODE", "approval")
    _evaluate("run-1")
    _fairness("run-1")

    registered = _register("run-1")
    # No champion yet: the regression gate has nothing to compare with and passes, so the
    # first version is judged by the absolute floors and fairness alone.
    assert registered["reason"] == (
        "all 7 promotion gates passed; challenger awaiting approval (promotion mode approval)"
    )
    assert registered["promoted"] is False and registered["awaiting_approval"] is True
    assert registered["champion_version"] == "none" and registered["challenger_version"] == "1"
    client = mlflow_client()
    version = client.get_model_version(MODEL, "1")
    assert version.tags[f"gate.{keys.MODEL_EVALUATION}.{CHECK_NO_REGRESSION}"] == "passed"
    assert version.tags[registry.TAG_AWAITING_APPROVAL] == "true"
    assert _version(client, registry.CHAMPION) is None

    # The operator's command without an approval: a one-line refusal, champion unmoved.
    refused = _promote_cli("--action", "promote")
    assert refused.returncode == 1
    last_line = refused.stderr.strip().splitlines()[-1]
    assert last_line.startswith("promote: fraud_detector version 1 not promoted: promotion mode")
    assert "approved_by and approval_url" in last_line and "Traceback" not in refused.stderr
    assert _version(mlflow_client(), registry.CHAMPION) is None

    promoted = (
        run_task(
            promote.promote,
            ["--action", "promote", "--approved_by", "alice", "--approval_url", APPROVAL_URL],
            name="promote",
        )
        .materializations[0]
        .metadata
    )
    assert promoted["champion_version"] == "1" and promoted["approved_by"] == "alice"
    client = mlflow_client()
    assert _version(client, registry.CHAMPION) == "1"
    tags = client.get_model_version(MODEL, "1").tags
    assert tags[registry.TAG_PROMOTED_BY] == "alice", "the approver is the promotion's actor"
    assert tags[registry.TAG_APPROVED_BY] == "alice"
    assert tags[registry.TAG_APPROVAL_URL] == APPROVAL_URL
    assert tags[registry.TAG_REQUESTED_BY] == "ci-bot"
    assert tags[registry.TAG_AWAITING_APPROVAL] == "false"
    assert registry.champion_history(client, MODEL) == ["1"]
    assert registry.champion_history_by(client, MODEL) == ["alice"]


def test_under_approval_a_retrain_never_moves_the_champion(trained_home, monkeypatch):
    _evaluate("run-1")
    _fairness("run-1")
    assert _register("run-1")["champion_version"] == "1"  # auto mode (dev): champion
    monkeypatch.setenv("FRAUD_PROMOTION__MODE", "approval")
    _train_both("run-2")  # e.g. the drift sensor's retrain: the same register step
    _evaluate("run-2")
    _fairness("run-2")

    second = _register("run-2")
    assert second["model_version"] == 2 and second["awaiting_approval"] is True
    assert (second["champion_version"], second["challenger_version"]) == ("1", "2")

    _train_both("run-3")
    _evaluate("run-3")
    _fairness("run-3")
    third = _register("run-3")
    assert (third["champion_version"], third["challenger_version"]) == ("1", "3")
    client = mlflow_client()
    assert client.get_model_version(MODEL, "2").tags[registry.TAG_AWAITING_APPROVAL] == (
        registry.SUPERSEDED
    )
    assert client.get_model_version(MODEL, "3").tags[registry.TAG_AWAITING_APPROVAL] == "true"


def test_under_approval_force_still_needs_an_approval(three_versions):
    _, _, failed = three_versions
    client = mlflow_client()
    for force in (False, True):
        with pytest.raises(registry.ApprovalRequiredError, match="only with an approval"):
            registry.promote_version(
                client, name=MODEL, version=failed, actor="oncall", force=force, mode="approval"
            )
    assert _version(client, registry.CHAMPION) is None
    approval = registry.Approval.from_params("bob", APPROVAL_URL)
    assert approval is not None
    registry.promote_version(
        client,
        name=MODEL,
        version=failed,
        actor="oncall",
        force=True,
        mode="approval",
        approval=approval,
    )
    tags = client.get_model_version(MODEL, failed).tags
    assert (tags["forced_by"], tags[registry.TAG_APPROVED_BY]) == ("bob", "bob")


@pytest.mark.parametrize(
    ("approved_by", "approval_url"), [("", APPROVAL_URL), ("alice", ""), (None, None), (" ", " ")]
)
def test_an_approval_needs_both_an_approver_and_where_it_was_given(approved_by, approval_url):
    assert registry.Approval.from_params(approved_by, approval_url) is None
