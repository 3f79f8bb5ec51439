"""Databricks mode, one step at a time, against the emulator: launch styles and faults.

The step is the probe workload (``fraud_assets_tests.emulator.probe``), launched exactly
like a real step; the whole training job runs in ``test_databricks_e2e.py``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRunStatus, MetadataValue

from fraud_assets.resources.compute.databricks import DatabricksPipesCompute
from fraud_assets.resources.workspace import DatabricksWorkspace
from fraud_assets.settings import get_settings
from fraud_assets_tests.emulator import DatabricksEmulator
from fraud_assets_tests.emulator.core import CLUSTER_POLICY_ID
from fraud_assets_tests.emulator.fixtures import SENTINEL_TOKEN
from fraud_assets_tests.emulator.probe import PROBE_ASSET, PROBE_CHECK
from fraud_assets_tests.emulator.probe_job import PROBE_SPEC, failure_message, run_probe

pytest_plugins = ["fraud_assets_tests.emulator.fixtures"]

REPO_ROOT = Path(__file__).resolve().parents[1]
PROBE_JOB_NAME = "fraud_assets_dev_probe"


def deploy_probe_job(emulator: DatabricksEmulator) -> int:
    """Deploy a step job shaped like resources/step-jobs-resource.yml's, for the probe."""
    return emulator.create_job(
        {
            "name": PROBE_JOB_NAME,
            "job_clusters": [
                {
                    "job_cluster_key": "fraud_cluster",
                    "new_cluster": {"spark_version": "17.3.x-cpu-ml-scala2.13", "num_workers": 1},
                }
            ],
            "tasks": [
                {
                    "task_key": PROBE_SPEC.name,
                    "job_cluster_key": "fraud_cluster",
                    "python_wheel_task": {
                        "package_name": "fraud_assets",
                        "entry_point": PROBE_SPEC.script,
                        "parameters": ["--target", "dev", "--run_id", "{{job.run_id}}"],
                    },
                    "libraries": [{"whl": "/Workspace/bundle/dist/fraud_assets-0.1.0.whl"}],
                }
            ],
        }
    )


def assert_no_run_left(emulator: DatabricksEmulator) -> None:
    emulator.wait_for(lambda: all(run.terminal for run in emulator.runs), timeout=30)


@pytest.mark.parametrize("style", ["job_cluster", "serverless", "run_now"])
def test_each_launch_style_runs_the_wheel_entry_point_and_reports_back(
    databricks_env: DatabricksEmulator,
    probe_task: None,
    dagster_instance: DagsterInstance,
    fraud_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    style: str,
) -> None:
    emulator = databricks_env
    monkeypatch.setenv("FRAUD_DATABRICKS__LAUNCH_STYLE", style)
    # stdout/stderr forwarding is checked on both transports (DBFS, Volume); it costs ~5 s.
    monkeypatch.setenv("FRAUD_DATABRICKS__FORWARD_STDIO", str(style != "run_now"))
    if style == "run_now":
        job_id = deploy_probe_job(emulator)

    result = run_probe(dagster_instance)

    assert result.success
    (materialization,) = result.asset_materializations_for_node(PROBE_ASSET)
    metadata = materialization.metadata
    (run,) = emulator.runs
    assert metadata["databricks_run_url"] == MetadataValue.url(
        f"{emulator.host}/?o=0#job/{run.job_id}/run/{run.run_id}"
    )
    assert metadata["row_count"] == MetadataValue.int(3)
    # The settings payload and the params travelled in the Pipes extras, not the cluster env.
    assert metadata["home"] == MetadataValue.text(str(fraud_home))
    assert metadata["run_id"] == MetadataValue.text(result.run_id)
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == PROBE_CHECK and check.passed
    assert "databricks_run_url" in check.metadata

    assert (run.life_cycle_state, run.result_state) == ("TERMINATED", "SUCCESS")
    (task,) = run.tasks
    assert task.command[1:3] == ["-m", PROBE_SPEC.module]
    wheel = task.spec["python_wheel_task"]
    assert (wheel["package_name"], wheel["entry_point"]) == ("fraud_assets", PROBE_SPEC.script)
    assert SENTINEL_TOKEN not in json.dumps(task.env)
    wheel_path = get_settings().databricks.wheel_path
    if style == "job_cluster":
        assert task.spec["libraries"] == [{"whl": wheel_path}]
        # The bundle's dev autoscale range (databricks.yml), under its policy, on spot.
        assert task.spec["new_cluster"]["autoscale"] == {"min_workers": 1, "max_workers": 2}
        assert task.spec["new_cluster"]["policy_id"] == CLUSTER_POLICY_ID
        assert task.spec["new_cluster"]["aws_attributes"]["availability"] == "SPOT_WITH_FALLBACK"
        assert "DAGSTER_PIPES_CONTEXT" in task.env  # bootstrap in spark_env_vars
    elif style == "serverless":
        assert run.environments[0]["spec"]["dependencies"] == [wheel_path]
        assert "--dagster-pipes-context" in task.command  # bootstrap in task parameters
    else:
        (request,) = emulator.calls("POST", "/api/2.2/jobs/run-now")
        body = json.loads(request.body)
        assert body["job_id"] == job_id and body["only"] == [PROBE_SPEC.name]
        # The bootstrap replaces the job's own parameters; settings come in the extras.
        assert body["python_params"][0::2] == [
            "--dagster-pipes-context",
            "--dagster-pipes-messages",
        ]

    # Remote log records reach the event log; remote stdout reaches the Dagster step live,
    # or, with forwarding off, as the tail of runs/get-output once the run is over.
    logs = [r.user_message for r in dagster_instance.all_logs(result.run_id)]
    assert any("probe running with behaviour=ok" in message for message in logs)
    if style != "run_now":
        assert "probe stdout: started" in capfd.readouterr().out
    else:
        (output,) = [m for m in logs if m.startswith("Output of Databricks task probe (tail):")]
        assert "probe stdout: started" in output
    # Pipes' temporary files on DBFS and the Volume are cleaned up.
    assert not any((emulator.dbfs_root / "tmp").glob("*"))
    assert not any(emulator.volumes_root.glob("*/*/*/tmp/*"))


def test_the_launch_style_is_the_compute_resources_config_not_a_later_environment(
    databricks_env: DatabricksEmulator,
    probe_task: None,
    dagster_instance: DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    emulator = databricks_env
    monkeypatch.setenv("FRAUD_DATABRICKS__FORWARD_STDIO", "false")
    monkeypatch.setenv("FRAUD_DATABRICKS__LAUNCH_STYLE", "serverless")
    compute = DatabricksPipesCompute.from_settings(get_settings(), DatabricksWorkspace.from_env())
    # Changed after the definitions were built: run_task must not read it.
    monkeypatch.setenv("FRAUD_DATABRICKS__LAUNCH_STYLE", "run_now")

    result = run_probe(dagster_instance, compute=compute)

    assert result.success, failure_message(result)
    assert compute.launch_style == "serverless"
    assert not emulator.calls("POST", "/api/2.2/jobs/run-now")
    (run,) = emulator.runs
    assert run.environments, "a serverless run carries its environment"


@pytest.mark.parametrize("style", ["job_cluster", "serverless"])
def test_a_style_that_installs_the_wheel_refuses_to_launch_without_its_path(
    databricks_env: DatabricksEmulator,
    probe_task: None,
    dagster_instance: DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
    style: str,
) -> None:
    emulator = databricks_env
    monkeypatch.setenv("FRAUD_DATABRICKS__LAUNCH_STYLE", style)
    monkeypatch.delenv("FRAUD_DATABRICKS__WHEEL_PATH")

    result = run_probe(dagster_instance)

    assert not result.success
    message = failure_message(result)
    assert "set FRAUD_DATABRICKS__WHEEL_PATH" in message and "run_now" in message
    # Refused before anything reached the workspace: no run, no Pipes file.
    assert emulator.runs == []
    assert not emulator.calls("PUT", "/api/2.0/fs/files/")
    assert not emulator.calls("POST", "/api/2.0/dbfs/put")


@pytest.mark.parametrize(
    ("style", "faults"),
    [
        (
            "job_cluster",
            [
                ("POST", "/api/2.0/dbfs/mkdirs", 502, 1),
                ("POST", "/api/2.0/dbfs/put", 503, 1),
                ("POST", "/api/2.2/jobs/runs/submit", 500, 2),
                ("GET", "/api/2.2/jobs/runs/get", 429, 2),
                ("GET", "/api/2.0/dbfs/read", 504, 1),
            ],
        ),
        (
            "serverless",
            [
                ("PUT", "/api/2.0/fs/directories/", 500, 1),
                ("PUT", "/api/2.0/fs/files/", 429, 1),
                ("GET", "/api/2.0/fs/files/", 502, 1),
                ("GET", "/api/2.2/jobs/runs/get", 504, 1),
            ],
        ),
        (
            "run_now",
            [
                ("GET", "/api/2.2/jobs/list", 503, 1),
                ("GET", "/api/2.2/jobs/get", 500, 1),
                ("POST", "/api/2.2/jobs/run-now", 429, 1),
                ("GET", "/api/2.2/jobs/runs/get", 502, 2),
            ],
        ),
    ],
)
def test_throttling_and_server_errors_are_retried_on_every_api(
    databricks_env: DatabricksEmulator,
    probe_task: None,
    dagster_instance: DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
    style: str,
    faults: list[tuple[str, str, int, int]],
) -> None:
    emulator = databricks_env
    monkeypatch.setenv("FRAUD_DATABRICKS__LAUNCH_STYLE", style)
    monkeypatch.setenv("FRAUD_DATABRICKS__FORWARD_STDIO", "false")
    if style == "run_now":
        deploy_probe_job(emulator)
    injected = [
        emulator.fail_http(path, status, times=times, method=method, retry_after=1)
        for method, path, status, times in faults
    ]

    result = run_probe(dagster_instance)

    assert result.success, failure_message(result)
    for fault in injected:
        assert fault.hits == fault.times, fault
    # Retried submits carry one idempotency token: exactly one run exists.
    assert len(emulator.runs) == 1


def test_failed_remote_task_surfaces_its_error_and_log_tail(
    databricks_env: DatabricksEmulator,
    probe_task: None,
    dagster_instance: DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FRAUD_DATABRICKS__FORWARD_STDIO", "false")
    result = run_probe(dagster_instance, behaviour="fail")

    assert not result.success
    message = failure_message(result)
    (run,) = databricks_env.runs
    assert f"Databricks run {run.run_id} ended TERMINATED/FAILED" in message
    assert f"Run page: {databricks_env.host}/?o=0#job/{run.job_id}/run/{run.run_id}" in message
    assert "error: FileNotFoundError: claims file /landing/missing.csv does not exist" in message
    # The tail of the task's own output, fetched from runs/get-output for the task run.
    assert "probe stdout: started" in message
    assert 'raise FileNotFoundError("claims file /landing/missing.csv' in message


def test_run_cancelled_in_the_workspace_fails_the_step_clearly(
    databricks_env: DatabricksEmulator,
    probe_task: None,
    short_pipes_drain: None,
    dagster_instance: DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FRAUD_DATABRICKS__FORWARD_STDIO", "false")
    databricks_env.fault_next_run("cancel_externally")

    result = run_probe(dagster_instance, behaviour="sleep")

    message = failure_message(result)
    assert "ended TERMINATED/CANCELED" in message
    assert "The run was cancelled outside Dagster." in message
    (run,) = databricks_env.runs
    assert run.cancel_requested_by == "workspace user"
    assert not databricks_env.calls("POST", "/api/2.2/jobs/runs/cancel")


def test_stuck_run_is_ended_by_the_timeout_and_cancelled(
    databricks_env: DatabricksEmulator,
    probe_task: None,
    short_pipes_drain: None,
    dagster_instance: DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FRAUD_DATABRICKS__TIMEOUT_SECONDS", "2")
    monkeypatch.setenv("FRAUD_DATABRICKS__FORWARD_STDIO", "false")
    databricks_env.fault_next_run("hang")

    started = time.monotonic()
    result = run_probe(dagster_instance)

    assert time.monotonic() - started < 30
    message = failure_message(result)
    (run,) = databricks_env.runs
    assert f"Databricks run {run.run_id} did not finish within 2 s and was cancelled" in message
    assert_no_run_left(databricks_env)
    assert (run.result_state, run.cancel_requested_by) == ("CANCELED", "runs/cancel")


def test_internal_error_of_the_platform_fails_the_step_clearly(
    databricks_env: DatabricksEmulator,
    probe_task: None,
    short_pipes_drain: None,
    dagster_instance: DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FRAUD_DATABRICKS__FORWARD_STDIO", "false")
    databricks_env.fault_next_run("internal_error")

    message = failure_message(run_probe(dagster_instance))

    assert "ended INTERNAL_ERROR: Emulated internal error: cluster lost" in message


def test_terminating_the_dagster_run_cancels_the_databricks_run(
    databricks_env: DatabricksEmulator,
    probe_task: None,
    tmp_path: Path,
) -> None:
    emulator = databricks_env
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(dagster_home),
        "FRAUD_DATABRICKS__FORWARD_STDIO": "false",
    }
    # The run worker receives SIGINT when Dagster terminates a run; so does this one.
    worker = subprocess.Popen(
        [sys.executable, "-m", "fraud_assets_tests.emulator.probe_job", "sleep"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        emulator.wait_for(
            lambda: (
                any(t.exit_code is None and t.command for r in emulator.runs for t in r.tasks)
                and emulator.runs[0].life_cycle_state == "RUNNING"
            ),
            timeout=60,
        )
        worker.send_signal(signal.SIGINT)
        output, _ = worker.communicate(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()

    assert worker.returncode != 0, output
    assert_no_run_left(emulator)
    (run,) = emulator.runs
    assert (run.result_state, run.cancel_requested_by) == ("CANCELED", "runs/cancel")
    with DagsterInstance.from_config(str(dagster_home)) as instance:
        (dagster_run,) = instance.get_runs()
        assert dagster_run.status in (DagsterRunStatus.CANCELED, DagsterRunStatus.FAILURE)
        messages = [r.user_message for r in instance.all_logs(dagster_run.run_id)]
    assert any(f"Cancelling Databricks run {run.run_id}" in m for m in messages)
