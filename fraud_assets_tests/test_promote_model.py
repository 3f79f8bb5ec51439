"""scripts/promote_model.py: a new environment's first champion, and prod's approval path.

Dagster's GraphQL launch is replaced by executing the real job in process: the retraining
run stands in as what ``register`` does under the approval mode (a gate-passing version
becomes challenger awaiting approval; ``test_registry_promotion.py`` proves register does
that), and the promotion run is the real ``promote_champion_job`` whose promote step runs
as a Pipes subprocess against the local MLflow registry, with the run tags the script set.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest
from mlflow.pyfunc import PythonModel

from fraud_assets import keys
from fraud_assets.assets.registry import promote_champion_job
from fraud_assets.ml import registry
from fraud_assets.ml.tracking import configure_mlflow, mlflow_client
from fraud_assets.resources.compute import APPROVAL_URL_TAG, APPROVED_BY_TAG, LocalPipesCompute
from fraud_assets.settings import get_settings
from fraud_assets_tests.gold_frames import use_migrated_mlflow_store

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "scripts"))

import orchestrate  # noqa: E402
import promote_model  # noqa: E402
from _commands import Runner  # noqa: E402

MODEL = "fraud_detector"
RUN_URL = "https://github.com/acme/fraud_assets/actions/runs/7"
# GitHub's GET /repos/{owner}/{repo}/actions/runs/{run_id}/approvals, trimmed.
APPROVALS = [
    {"state": "approved", "environments": [{"name": "prod"}], "user": {"login": "alice"}},
    {"state": "rejected", "environments": [{"name": "prod"}], "user": {"login": "mallory"}},
    {"state": "approved", "environments": [{"name": "staging"}], "user": {"login": "carol"}},
    {"state": "approved", "environments": [{"name": "prod"}], "user": {"login": "alice"}},
]


class _Constant(PythonModel):
    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        return [0.5] * len(model_input)


def _aliases() -> dict[str, str]:
    registered = mlflow_client().get_registered_model(MODEL)
    return {alias: str(version) for alias, version in (registered.aliases or {}).items()}


class FakeDagster:
    """Dagster's GraphQL launch, answered by running the job (or its stand-in) here."""

    def __init__(self, instance: Any, trainer: Callable[[], None]) -> None:
        self.instance = instance
        self.trainer = trainer
        self.launched: list[tuple[str, dict[str, str], Any]] = []
        self.outcomes: dict[str, str] = {}

    def launch(self, client: Any, job: str, tags: dict[str, str], run_config: Any) -> str:
        self.launched.append((job, dict(tags), run_config))
        run_id = f"run-{len(self.launched)}"
        if job == keys.RETRAINING_JOB:
            self.trainer()
            self.outcomes[run_id] = "success"
        elif job == keys.PROMOTE_JOB:
            result = promote_champion_job.execute_in_process(
                run_config=run_config or {},
                tags=tags,
                resources={"compute": LocalPipesCompute()},
                instance=self.instance,
                raise_on_error=False,
            )
            self.outcomes[run_id] = "success" if result.success else "failure"
        else:
            self.outcomes[run_id] = "success"
        return run_id

    def status(self, client: Any, run_id: str) -> orchestrate.RunInfo:
        return orchestrate.RunInfo(run_id, self.outcomes[run_id], datetime.now(UTC))


@pytest.fixture
def empty_registry(fraud_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A new environment under the approval mode: the registered model has no version yet."""
    monkeypatch.setenv("FRAUD_PROMOTION__MODE", "approval")
    monkeypatch.setenv("FRAUD_DEPLOYED_BY", "release-manager")
    monkeypatch.setenv("DAGSTER_GRAPHQL_URL", "http://dagster.test/graphql")
    use_migrated_mlflow_store(fraud_home)
    configure_mlflow(get_settings())
    mlflow_client().create_registered_model(MODEL)
    monkeypatch.setattr(orchestrate.Orchestration, "aliases", lambda self: _aliases())
    return fraud_home


def _register_first_version(*, gates_passed: bool) -> None:
    """What retraining_job's register step leaves behind under the approval mode."""
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(name="model", python_model=_Constant())
    version = str(mlflow.register_model(info.model_uri, MODEL).version)
    client = mlflow_client()
    registry.tag_version(
        client, MODEL, version, {registry.TAG_GATES_PASSED: str(gates_passed).lower()}
    )
    if gates_passed:
        registry.hold_for_approval(client, name=MODEL, version=version)


def _fake_dagster(
    monkeypatch: pytest.MonkeyPatch, instance: Any, *, gates_passed: bool = True
) -> FakeDagster:
    fake = FakeDagster(instance, lambda: _register_first_version(gates_passed=gates_passed))
    # Plain functions, so the client instance binds as their first argument.
    monkeypatch.setattr(
        orchestrate.DagsterGraphQL, "launch", lambda client, *args: fake.launch(client, *args)
    )
    monkeypatch.setattr(
        orchestrate.DagsterGraphQL, "status", lambda client, run_id: fake.status(client, run_id)
    )
    monkeypatch.setattr(orchestrate.Orchestration, "orchestrator", "dagster")
    return fake


def _approvals_file(tmp_path: Path, approvals: list[dict[str, Any]] = APPROVALS) -> Path:
    path = tmp_path / "approvals.json"
    path.write_text(json.dumps(approvals))
    return path


def _bootstrap(*extra: str) -> int:
    return promote_model.main(["bootstrap", "--target", "prod", *extra])


def test_the_environments_approvers_are_those_who_approved_it() -> None:
    assert promote_model.environment_approvers(APPROVALS, "prod") == ["alice"]
    assert promote_model.environment_approvers(APPROVALS, "staging") == ["carol"]
    assert promote_model.environment_approvers([], "prod") == []


def test_bootstrap_trains_then_promotes_the_first_champion_with_the_approval(
    empty_registry: Path,
    dagster_instance: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    fake = _fake_dagster(monkeypatch, dagster_instance)
    approvals = str(_approvals_file(tmp_path))
    source = "/Volumes/fraud_prod/claims/landing/claims_2026_12.csv"
    code = _bootstrap(
        "--approvals-file", approvals, "--approval-url", RUN_URL, "--source-path", source
    )
    assert code == 0

    jobs = [job for job, _, _ in fake.launched]
    assert jobs == [keys.INGESTION_JOB, keys.RETRAINING_JOB, keys.PROMOTE_JOB]
    ingest_config = fake.launched[0][2]
    assert ingest_config == {"ops": {"raw_claims": {"config": {"source_path": source}}}}
    promotion_tags = fake.launched[2][1]
    assert promotion_tags[APPROVED_BY_TAG] == "alice"
    assert promotion_tags[APPROVAL_URL_TAG] == RUN_URL
    assert _aliases() == {registry.CHAMPION: "1", registry.CHALLENGER: "1"}
    tags = mlflow_client().get_model_version(MODEL, "1").tags
    assert tags[registry.TAG_PROMOTED_BY] == "alice"
    assert tags[registry.TAG_APPROVAL_URL] == RUN_URL
    assert tags[registry.TAG_REQUESTED_BY] == "release-manager"
    assert registry.champion_history(mlflow_client(), MODEL) == ["1"]

    # Run again: the environment has its champion, so nothing is launched.
    assert _bootstrap("--approvals-file", approvals, "--approval-url", RUN_URL) == 0
    assert len(fake.launched) == 3


def test_a_prod_bootstrap_without_an_approval_launches_nothing(
    empty_registry: Path,
    dagster_instance: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = _fake_dagster(monkeypatch, dagster_instance)
    only_staging = _approvals_file(tmp_path, [APPROVALS[2]])
    with caplog.at_level(logging.ERROR):
        assert _bootstrap() == 1
        assert _bootstrap("--approvals-file", str(only_staging), "--approval-url", RUN_URL) == 1
    assert fake.launched == []
    assert "prod's promotion mode is 'approval': champion moves only with an approval" in (
        caplog.text
    )


def test_the_promotion_job_without_approval_tags_leaves_prod_without_a_champion(
    empty_registry: Path, dagster_instance: Any
) -> None:
    _register_first_version(gates_passed=True)
    result = promote_champion_job.execute_in_process(
        resources={"compute": LocalPipesCompute()},
        instance=dagster_instance,
        raise_on_error=False,
    )
    assert not result.success
    assert registry.CHAMPION not in _aliases()
    assert _aliases()[registry.CHALLENGER] == "1"


def test_a_bootstrap_whose_candidate_fails_its_gates_says_so(
    empty_registry: Path,
    dagster_instance: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = _fake_dagster(monkeypatch, dagster_instance, gates_passed=False)
    approvals = str(_approvals_file(tmp_path))
    with caplog.at_level(logging.ERROR):
        assert _bootstrap("--approvals-file", approvals, "--approval-url", RUN_URL) == 1
    assert [job for job, _, _ in fake.launched] == [keys.RETRAINING_JOB]
    assert "registered no candidate that passed every promotion gate (run run-1)" in caplog.text
    assert registry.CHAMPION not in _aliases()


def test_a_bootstrap_that_stopped_after_training_promotes_the_waiting_challenger(
    empty_registry: Path, dagster_instance: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _register_first_version(gates_passed=True)
    fake = _fake_dagster(monkeypatch, dagster_instance)
    approvals = str(_approvals_file(tmp_path))
    assert _bootstrap("--approvals-file", approvals, "--approval-url", RUN_URL) == 0
    assert [job for job, _, _ in fake.launched] == [keys.PROMOTE_JOB]
    assert _aliases()[registry.CHAMPION] == "1"


def test_under_the_bundle_orchestrator_approve_passes_the_approval_as_job_parameters(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(orchestrate.Orchestration, "orchestrator", "databricks")
    runner = Runner(dry_run=True)
    promotion = promote_model.Promotion(target="prod", runner=runner, mode="approval")
    approval = registry.Approval("alice", RUN_URL)
    promotion.approve(version="4", approval=approval)
    assert (
        "$ databricks bundle run -t prod promotion_job --params "
        f"action=promote,version=4,approved_by=alice,approval_url={RUN_URL}"
    ) in runner.printed


# --- cd-prod's validation in an environment without a champion ------------------------------


@pytest.mark.parametrize("aliases", [{}, {"champion": "3"}])
def test_validation_without_a_champion_says_run_the_bootstrap_and_launches_nothing(
    aliases: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    launched: list[str] = []
    monkeypatch.setattr(orchestrate.Orchestration, "aliases", lambda self: aliases)
    monkeypatch.setattr(orchestrate.Orchestration, "orchestrator", "dagster")
    monkeypatch.setattr(
        orchestrate.DagsterGraphQL, "launch", lambda client, job, tags, config: launched.append(job)
    )
    monkeypatch.setattr(
        orchestrate.DagsterGraphQL,
        "status",
        lambda client, run_id: orchestrate.RunInfo("r", "success", datetime.now(UTC)),
    )
    monkeypatch.setenv("DAGSTER_GRAPHQL_URL", "http://dagster.test/graphql")
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    launch = ["launch", "--target", "prod", "--job", "drift_monitoring_job", "--wait"]
    assert orchestrate.main([*launch, "--skip-without-champion"]) == 0
    if aliases:
        assert launched == ["drift_monitoring_job"]
    else:
        assert launched == []
        assert "no champion: run the bootstrap" in summary.read_text()
        assert "scripts/promote_model.py bootstrap --target prod" in summary.read_text()
