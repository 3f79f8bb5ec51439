"""What a launch sends: cluster, wheel task, environment, run-now arguments, job lookup, retries."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import InternalError
from databricks.sdk.service.jobs import Job

from fraud_assets.databricks.credentials import resolve_credentials, workspace_client
from fraud_assets.databricks.http import SERVER_ERRORS, server_error_retry
from fraud_assets.databricks.launch import (
    DatabricksLaunchError,
    bundle_job_name,
    cluster_spec,
    find_job_id,
    idempotency_token,
    job_cluster_task,
    run_now_arguments,
    serverless_environment,
    volume_path,
    wheel_path,
)
from fraud_assets.settings import DatabricksSettings
from fraud_assets.tasks import TASKS, task_spec
from fraud_assets_tests.emulator import USER_NAME, DatabricksEmulator
from fraud_assets_tests.emulator.bundle import bundle_jobs
from fraud_assets_tests.emulator.fixtures import SENTINEL_TOKEN

pytest_plugins = ["fraud_assets_tests.emulator.fixtures"]

REPO_ROOT = Path(__file__).resolve().parents[1]


def databricks_settings(**values: object) -> DatabricksSettings:
    # model_validate, not the constructor: mypy reads positional Field defaults as required.
    return DatabricksSettings.model_validate(values)


BOOTSTRAP = {"--dagster-pipes-context": "ctx64", "--dagster-pipes-messages": "msg64"}


def test_job_cluster_spec_follows_settings_and_policy() -> None:
    settings = databricks_settings(
        spark_version="17.3.x-cpu-ml-scala2.13",
        node_type_id="Standard_D4ds_v5",
        min_workers=2,
        max_workers=6,
        policy_id="ABC123",
    )
    assert cluster_spec(settings) == {
        "spark_version": "17.3.x-cpu-ml-scala2.13",
        "node_type_id": "Standard_D4ds_v5",
        "autoscale": {"min_workers": 2, "max_workers": 6},
        "data_security_mode": "SINGLE_USER",
        "custom_tags": {"project": "fraud_assets"},
        "policy_id": "ABC123",
        "apply_policy_default_values": True,
        "azure_attributes": {"availability": "SPOT_WITH_FALLBACK_AZURE", "first_on_demand": 1},
    }
    with pytest.raises(DatabricksLaunchError, match="min_workers"):
        cluster_spec(databricks_settings(min_workers=5, max_workers=2))


@pytest.mark.parametrize("step", sorted(TASKS))
def test_every_step_launches_its_console_script_from_the_projects_wheel(step: str) -> None:
    settings = databricks_settings(wheel_path="/Volumes/fraud_dev/claims/artifacts/fa.whl")
    task = job_cluster_task(task_spec(step), settings).as_dict()
    assert task["task_key"] == step
    assert task["python_wheel_task"] == {
        "package_name": "fraud_assets",
        "entry_point": TASKS[step].script,
    }
    assert task["libraries"] == [{"whl": settings.wheel_path}]


def test_console_scripts_in_pyproject_match_the_task_registry() -> None:
    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {spec.script: f"{spec.module}:main" for spec in TASKS.values()}


def test_serverless_environment_has_the_wheel_as_its_dependency() -> None:
    settings = databricks_settings(wheel_path="/Volumes/c/s/v/fraud_assets-0.1.0-py3-none-any.whl")
    environment = serverless_environment(settings).as_dict()
    assert environment["spec"]["dependencies"] == [settings.wheel_path]
    assert environment["spec"]["environment_version"] == settings.serverless_environment_version


@pytest.mark.parametrize(
    ("path", "error"),
    [
        (None, "set FRAUD_DATABRICKS__VOLUME_PATH"),
        ("/Volumes/cat/schema", "is not a Volume path"),
        ("dbfs:/tmp/pipes", "is not a Volume path"),
    ],
)
def test_volume_path_is_required_and_checked(path: str | None, error: str) -> None:
    with pytest.raises(DatabricksLaunchError, match=error):
        volume_path(databricks_settings(volume_path=path))
    assert volume_path(databricks_settings(volume_path="/Volumes/c/s/v/")) == "/Volumes/c/s/v"


def test_no_wheel_path_is_assumed_and_the_dbfs_root_is_refused() -> None:
    # No default: a wheel exists only where a deploy uploaded it (scripts/deploy.py).
    assert databricks_settings().wheel_path is None
    with pytest.raises(DatabricksLaunchError, match="set FRAUD_DATABRICKS__WHEEL_PATH") as unset:
        wheel_path(databricks_settings(), style="job_cluster")
    assert "run_now" in str(unset.value), "the error names the style that needs no wheel path"
    root = "dbfs:/FileStore/fraud_assets/fraud_assets-0.1.0-py3-none-any.whl"
    with pytest.raises(DatabricksLaunchError, match="DBFS root"):
        wheel_path(databricks_settings(wheel_path=root), style="serverless")
    with pytest.raises(DatabricksLaunchError, match=r"not a \.whl"):
        wheel_path(databricks_settings(wheel_path="/Volumes/c/s/v/wheels/"), style="job_cluster")
    for good in (
        "/Volumes/c/s/artifacts/wheels/0.1.0/abc1234/fraud_assets-0.1.0-py3-none-any.whl",
        "dbfs:/Volumes/c/s/v/fraud_assets-0.1.0-py3-none-any.whl",
        "/Workspace/Shared/.bundle/fraud_assets/dist/fraud_assets-0.1.0-py3-none-any.whl",
    ):
        assert wheel_path(databricks_settings(wheel_path=good), style="job_cluster") == good


def test_idempotency_token_is_per_step_attempt_and_fits_the_api() -> None:
    token = idempotency_token("4f1c2d3e-aaaa-bbbb-cccc-0123456789ab", "xgboost_model", 0)
    assert len(token) <= 64
    assert token == idempotency_token("4f1c2d3e-aaaa-bbbb-cccc-0123456789ab", "xgboost_model", 0)
    assert token != idempotency_token("4f1c2d3e-aaaa-bbbb-cccc-0123456789ab", "xgboost_model", 1)
    assert token != idempotency_token("4f1c2d3e-aaaa-bbbb-cccc-0123456789ab", "catboost_model", 0)


def _job(task: dict[str, object], parameters: list[dict[str, str]] | None = None) -> Job:
    return Job.from_dict(
        {"job_id": 7, "settings": {"name": "j", "tasks": [task], "parameters": parameters}}
    )


def _wheel(step: str, **wheel: object) -> dict[str, object]:
    return {
        "task_key": step,
        "python_wheel_task": {
            "package_name": "fraud_assets",
            "entry_point": TASKS[step].script,
            **wheel,
        },
    }


def test_run_now_hands_the_bootstrap_to_the_step_task_the_way_its_job_accepts() -> None:
    spec = task_spec("features")
    positional = run_now_arguments(
        _job(_wheel("features", parameters=["--target", "dev"])), spec, BOOTSTRAP
    )
    assert positional == {
        "only": ["features"],
        "python_params": ["--dagster-pipes-context", "ctx64", "--dagster-pipes-messages", "msg64"],
    }
    named = run_now_arguments(
        _job(_wheel("features", named_parameters={"target": "dev"})), spec, BOOTSTRAP
    )
    assert named["python_named_params"] == {
        "dagster_pipes_context": "ctx64",
        "dagster_pipes_messages": "msg64",
    }
    # A job with job parameters refuses task overrides; job parameters are pushed down.
    with_parameters = run_now_arguments(
        _job(_wheel("features", named_parameters={}), [{"name": "models", "default": "[]"}]),
        spec,
        BOOTSTRAP,
    )
    assert set(with_parameters["job_parameters"]) == {
        "dagster_pipes_context",
        "dagster_pipes_messages",
    }


def test_run_now_refuses_a_job_that_does_not_run_the_steps_entry_point() -> None:
    spec = task_spec("features")
    with pytest.raises(DatabricksLaunchError, match="has no task 'features'"):
        run_now_arguments(_job(_wheel("train")), spec, BOOTSTRAP)
    drifted = _wheel("features")
    drifted["python_wheel_task"] = {"package_name": "fraud_assets", "entry_point": "fraud-train"}
    with pytest.raises(DatabricksLaunchError, match="runs fraud_assets:fraud-train"):
        run_now_arguments(_job(drifted), spec, BOOTSTRAP)


def test_the_bundle_deploys_a_step_job_for_every_step_under_the_default_name() -> None:
    jobs = {
        job["name"]: job
        for job in bundle_jobs("staging", files="resources/step-jobs-resource.yml").values()
    }
    for spec in TASKS.values():
        name = bundle_job_name(spec, databricks_settings(), target="staging")
        assert name in jobs, f"no step job {name!r} in resources/step-jobs-resource.yml"
        (task,) = jobs[name]["tasks"]
        assert task["task_key"] == spec.name
        wheel = task["python_wheel_task"]
        assert (wheel["package_name"], wheel["entry_point"]) == ("fraud_assets", spec.script)


def _client(emulator: DatabricksEmulator) -> WorkspaceClient:
    credentials = resolve_credentials(
        host=emulator.host, token=SENTINEL_TOKEN, client_id=None, client_secret=None
    )
    return workspace_client(credentials, databricks_settings(api_retry_backoff_seconds=0.1))


def test_job_lookup_by_id_by_name_and_by_development_prefix(emulator: DatabricksEmulator) -> None:
    client = _client(emulator)
    spec = task_spec("features")
    settings = databricks_settings()
    assert (
        find_job_id(client, spec, databricks_settings(job_ids={"features": 42}), target="dev") == 42
    )
    with pytest.raises(DatabricksLaunchError, match="FRAUD_DATABRICKS__JOB_IDS"):
        find_job_id(client, spec, settings, target="dev")

    dev_copy = emulator.create_job({"name": "[dev emulator] fraud_assets_dev_features"})
    assert USER_NAME.startswith("emulator@")
    assert find_job_id(client, spec, settings, target="dev") == dev_copy

    production = emulator.create_job({"name": "fraud_assets_prod_features"})
    assert find_job_id(client, spec, settings, target="prod") == production
    emulator.create_job({"name": "fraud_assets_prod_features"})
    with pytest.raises(DatabricksLaunchError, match="2 Databricks jobs are named"):
        find_job_id(client, spec, settings, target="prod")


def test_the_sdk_retries_429_and_503_itself_but_not_500(emulator: DatabricksEmulator) -> None:
    bare = WorkspaceClient(host=emulator.host, token=SENTINEL_TOKEN, auth_type="pat")
    throttled = emulator.fail_http("/api/2.0/dbfs/mkdirs", 429, retry_after=1)
    unavailable = emulator.fail_http("/api/2.0/dbfs/mkdirs", 503, retry_after=1)
    bare.dbfs.mkdirs("/tmp/a")
    assert (throttled.hits, unavailable.hits) == (1, 1)

    emulator.fail_http("/api/2.0/dbfs/mkdirs", 500)
    with pytest.raises(InternalError):
        bare.dbfs.mkdirs("/tmp/b")


def test_our_client_also_retries_500_502_and_504_with_backoff(emulator: DatabricksEmulator) -> None:
    assert set(server_error_retry(attempts=3).status_forcelist or ()) == set(SERVER_ERRORS)
    client = _client(emulator)
    faults = [emulator.fail_http("/api/2.0/dbfs/mkdirs", status) for status in (500, 502, 504)]
    client.dbfs.mkdirs("/tmp/c")
    assert [f.hits for f in faults] == [1, 1, 1]
    assert len(emulator.calls("POST", "/api/2.0/dbfs/mkdirs")) == 4

    emulator.fail_http("/api/2.0/dbfs/mkdirs", 500, times=10)
    with pytest.raises(InternalError):
        client.dbfs.mkdirs("/tmp/d")
