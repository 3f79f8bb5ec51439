"""The emulator answers the SDK the way Databricks does, for the calls the project makes.

These pin the emulator itself, so a launch test cannot pass against a wrong emulator.
"""

from __future__ import annotations

import base64
import io
import json

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import (
    InvalidParameterValue,
    NotFound,
    ResourceDoesNotExist,
    Unauthenticated,
)
from databricks.sdk.service import files, jobs

from fraud_assets_tests.emulator import DatabricksEmulator
from fraud_assets_tests.emulator.fixtures import SENTINEL_TOKEN
from fraud_assets_tests.emulator.probe_job import PROBE_SPEC

pytest_plugins = ["fraud_assets_tests.emulator.fixtures"]

WHEEL = "/Volumes/fraud_dev/claims/artifacts/fraud_assets-0.1.0-py3-none-any.whl"


@pytest.fixture
def client(emulator: DatabricksEmulator) -> WorkspaceClient:
    return WorkspaceClient(host=emulator.host, token=SENTINEL_TOKEN, auth_type="pat")


def probe_task(*parameters: str, key: str = "probe") -> jobs.SubmitTask:
    return jobs.SubmitTask.from_dict(
        {
            "task_key": key,
            "new_cluster": {"spark_version": "17.3.x-cpu-ml-scala2.13", "num_workers": 1},
            "libraries": [{"whl": WHEEL}],
            "python_wheel_task": {
                "package_name": "fraud_assets",
                "entry_point": PROBE_SPEC.script,
                "parameters": list(parameters),
            },
        }
    )


def wait_terminal(emulator: DatabricksEmulator, client: WorkspaceClient, run_id: int) -> jobs.Run:
    emulator.wait_for(lambda: emulator.run(run_id).terminal, timeout=60)
    return client.jobs.get_run(run_id)


def test_dbfs_round_trip_and_missing_paths(client: WorkspaceClient) -> None:
    client.dbfs.mkdirs("/tmp/pipes")
    client.dbfs.put("/tmp/pipes/1.json", contents=base64.b64encode(b'{"a": 1}').decode())
    assert base64.b64decode(client.dbfs.read("/tmp/pipes/1.json").data or "") == b'{"a": 1}'
    assert client.dbfs.get_status("/tmp/pipes").is_dir
    assert [f.path for f in client.dbfs.list("/tmp/pipes")] == ["/tmp/pipes/1.json"]
    with pytest.raises(ResourceDoesNotExist):
        client.dbfs.read("/tmp/pipes/2.json")
    client.dbfs.delete("/tmp/pipes", recursive=True)
    with pytest.raises(ResourceDoesNotExist):
        client.dbfs.get_status("/tmp/pipes")


def test_dbfs_streaming_upload_uses_create_add_block_close(client: WorkspaceClient) -> None:
    data = bytes(range(256)) * 9000  # over 1 MB: several blocks
    client.dbfs.upload("/tmp/big.bin", io.BytesIO(data), overwrite=True)
    assert client.dbfs.get_status("/tmp/big.bin").file_size == len(data)


def test_files_api_round_trip_on_a_volume(
    emulator: DatabricksEmulator, client: WorkspaceClient
) -> None:
    volume = emulator.create_volume("fraud_dev.claims.pipes")
    api = files.FilesAPI(client.api_client)
    api.create_directory(f"{volume}/tmp/abc")
    api.upload(f"{volume}/tmp/abc/context.json", io.BytesIO(b"{}"), overwrite=True)
    assert api.download(f"{volume}/tmp/abc/context.json").contents.read() == b"{}"  # type: ignore[union-attr]
    assert [e.name for e in api.list_directory_contents(f"{volume}/tmp/abc")] == ["context.json"]
    with pytest.raises(NotFound):
        api.download(f"{volume}/tmp/abc/1.json")
    with pytest.raises(NotFound):
        api.create_directory("/Volumes/fraud_dev/claims/missing_volume/tmp")
    api.delete(f"{volume}/tmp/abc/context.json")
    api.delete_directory(f"{volume}/tmp/abc")


def test_a_wrong_token_is_unauthenticated(emulator: DatabricksEmulator) -> None:
    intruder = WorkspaceClient(host=emulator.host, token="dapi-wrong", auth_type="pat")
    with pytest.raises(Unauthenticated):
        intruder.dbfs.mkdirs("/tmp/x")


def test_a_run_succeeds_and_its_output_is_read_per_task(
    emulator: DatabricksEmulator, client: WorkspaceClient
) -> None:
    run_id = client.jobs.submit(run_name="probe", tasks=[probe_task()]).bind()["run_id"]
    run = wait_terminal(emulator, client, run_id)

    assert run.state is not None and run.state.result_state == jobs.RunResultState.SUCCESS
    assert run.run_page_url == f"{emulator.host}/?o=0#job/{run.job_id}/run/{run_id}"
    (task,) = run.tasks or []
    assert task.run_id is not None
    assert "probe stdout: started" in (client.jobs.get_run_output(task.run_id).logs or "")
    with pytest.raises(InvalidParameterValue, match="multiple tasks"):
        client.jobs.get_run_output(run_id)


def test_idempotency_token_returns_the_existing_run(
    emulator: DatabricksEmulator, client: WorkspaceClient
) -> None:
    first = client.jobs.submit(tasks=[probe_task()], idempotency_token="t-1").bind()["run_id"]
    again = client.jobs.submit(tasks=[probe_task()], idempotency_token="t-1").bind()["run_id"]
    assert first == again and len(emulator.runs) == 1
    wait_terminal(emulator, client, first)


def test_a_task_without_the_wheel_fails_like_a_cluster_without_the_package(
    emulator: DatabricksEmulator, client: WorkspaceClient
) -> None:
    task = probe_task().as_dict()
    del task["libraries"]
    run_id = client.jobs.submit(tasks=[jobs.SubmitTask.from_dict(task)]).bind()["run_id"]
    run = wait_terminal(emulator, client, run_id)
    assert run.state is not None and run.state.result_state == jobs.RunResultState.FAILED
    (task_run,) = run.tasks or []
    assert task_run.run_id is not None
    output = client.jobs.get_run_output(task_run.run_id)
    assert (
        output.error == "ModuleNotFoundError: No module named 'fraud_assets' (no wheel installed)"
    )


def test_platform_timeout_and_cancel_end_runs(
    emulator: DatabricksEmulator, client: WorkspaceClient
) -> None:
    timed = client.jobs.submit(
        tasks=[probe_task("--behaviour", "sleep", "--seconds", "60")], timeout_seconds=1
    ).bind()["run_id"]
    hung = client.jobs.submit(tasks=[probe_task()], run_name="stuck")
    emulator.fault_next_run("hang")
    stuck = client.jobs.submit(tasks=[probe_task()]).bind()["run_id"]
    emulator.wait_for(lambda: emulator.run(stuck).life_cycle_state == "RUNNING")
    client.jobs.cancel_run(stuck)

    timed_run = wait_terminal(emulator, client, timed)
    stuck_run = wait_terminal(emulator, client, stuck)
    wait_terminal(emulator, client, hung.bind()["run_id"])
    assert (
        timed_run.state is not None and timed_run.state.result_state == jobs.RunResultState.TIMEDOUT
    )
    assert (
        stuck_run.state is not None and stuck_run.state.result_state == jobs.RunResultState.CANCELED
    )
    # The SDK turns this 400 into ResourceDoesNotExist for runs/get only, as with Databricks.
    with pytest.raises(ResourceDoesNotExist):
        client.jobs.get_run(999_999)
    with pytest.raises(InvalidParameterValue, match="Run 999999 does not exist"):
        client.jobs.cancel_run(999_999)


def test_run_now_runs_only_the_named_task_with_overrides_and_pushdown(
    emulator: DatabricksEmulator, client: WorkspaceClient
) -> None:
    wheel = {"package_name": "fraud_assets", "entry_point": PROBE_SPEC.script}
    job_id = emulator.create_job(
        {
            "name": "fan_out",
            "parameters": [{"name": "behaviours", "default": '["ok"]'}],
            "tasks": [
                {"task_key": "other", "libraries": [{"whl": WHEEL}], "python_wheel_task": wheel},
                {
                    "task_key": "probe",
                    "for_each_task": {
                        "inputs": "{{job.parameters.behaviours}}",
                        "task": {
                            "task_key": "probe_iteration",
                            "libraries": [{"whl": WHEEL}],
                            "python_wheel_task": {
                                **wheel,
                                "named_parameters": {
                                    "behaviour": "{{input}}",
                                    "run": "{{job.run_id}}",
                                },
                            },
                        },
                    },
                },
            ],
        }
    )
    with pytest.raises(InvalidParameterValue, match="job parameters"):
        client.jobs.run_now(job_id, python_named_params={"x": "1"})

    run_id = client.jobs.run_now(
        job_id, only=["probe"], job_parameters={"behaviours": '["ok", "ok"]', "extra": "e"}
    ).bind()["run_id"]
    run = wait_terminal(emulator, client, run_id)

    assert run.state is not None and run.state.result_state == jobs.RunResultState.SUCCESS
    commands = [t.command for t in emulator.run(run_id).tasks]
    assert len(commands) == 2
    for command in commands:
        assert command[3:] == [
            "--behaviour=ok",
            f"--run={run_id}",
            '--behaviours=["ok", "ok"]',
            "--extra=e",
        ]
    assert json.loads(emulator.calls("POST", "/api/2.2/jobs/run-now")[-1].body)["only"] == ["probe"]
