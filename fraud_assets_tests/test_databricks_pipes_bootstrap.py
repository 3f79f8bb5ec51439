"""The task side of a Databricks launch: finding the Pipes bootstrap and the FUSE-mounted files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from dagster_pipes import DAGSTER_PIPES_CONTEXT_ENV_VAR, encode_param

from fraud_assets.databricks.pipes import (
    FUSE_ROOT_VAR,
    FuseContextLoader,
    FuseMessageWriter,
    fuse_path,
    fuse_root,
)
from fraud_assets.ml.tracking import deployed_by
from fraud_assets.settings import FraudSettings
from fraud_assets.tasks._runtime import parse_params, pipes_bootstrap

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("remote", "local"),
    [
        ("/tmp/abc/context.json", "dbfs/tmp/abc/context.json"),
        ("dbfs:/tmp/abc/context.json", "dbfs/tmp/abc/context.json"),
        ("/Volumes/cat/sch/vol/tmp/abc/1.json", "Volumes/cat/sch/vol/tmp/abc/1.json"),
    ],
)
def test_dbfs_and_volume_paths_map_onto_the_fuse_mounts(remote: str, local: str) -> None:
    assert fuse_path(remote, Path("/")) == Path("/") / local
    assert fuse_path(remote, Path("/emu")) == Path("/emu") / local


@pytest.mark.parametrize("remote", ["tmp/relative.json", "/tmp/../etc/passwd"])
def test_paths_outside_dbfs_or_volumes_are_refused(remote: str) -> None:
    with pytest.raises(ValueError, match="not an absolute DBFS or Volume path"):
        fuse_path(remote, Path("/"))


def test_the_fuse_root_is_slash_on_databricks_and_absent_elsewhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(FUSE_ROOT_VAR, raising=False)
    monkeypatch.delenv("DATABRICKS_RUNTIME_VERSION", raising=False)
    assert fuse_root() is None
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "17.3")
    assert fuse_root() == Path("/")
    monkeypatch.setenv(FUSE_ROOT_VAR, "/tmp/emulated")
    assert fuse_root() == Path("/tmp/emulated")


def test_cli_bootstrap_is_recognised_and_removed_from_the_task_parameters(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(DAGSTER_PIPES_CONTEXT_ENV_VAR, raising=False)
    monkeypatch.setenv(FUSE_ROOT_VAR, "/tmp/emulated")
    context = encode_param({"path": "/tmp/x/context.json"})
    messages = encode_param({"path": "/tmp/x/messages"})
    argv = ["--model", "xgboost", "--dagster-pipes-context", context]
    argv += ["--dagster-pipes-messages", messages]
    params = parse_params(argv)

    bootstrap = pipes_bootstrap(params)

    assert params == {"model": "xgboost"}
    assert bootstrap is not None
    assert bootstrap.params_loader.load_context_params() == {"path": "/tmp/x/context.json"}
    assert isinstance(bootstrap.context_loader, FuseContextLoader)
    assert isinstance(bootstrap.message_writer, FuseMessageWriter)
    # The same arguments tell provenance that Dagster launched the step.
    monkeypatch.setattr(sys, "argv", ["fraud-train", *argv])
    monkeypatch.delenv("FRAUD_DEPLOYED_BY", raising=False)
    assert deployed_by(FraudSettings()) == "dagster"


def test_a_job_run_outside_dagster_is_not_a_pipes_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(DAGSTER_PIPES_CONTEXT_ENV_VAR, raising=False)
    assert pipes_bootstrap(parse_params(["--target", "dev", "--run_id", "123"])) is None
    with pytest.raises(SystemExit, match="must be given together"):
        pipes_bootstrap({"dagster_pipes_context": encode_param({"path": "/tmp/c"})})


def test_a_task_reads_its_context_and_writes_messages_through_the_fuse_mounts(
    tmp_path: Path,
) -> None:
    """What a serverless or run-now launch does on the cluster, without a cluster."""
    root, home = tmp_path / "fuse", tmp_path / "fraud_home"
    context_file = root / "Volumes/cat/sch/vol/tmp/abc/context.json"
    messages_dir = root / "Volumes/cat/sch/vol/tmp/def"
    context_file.parent.mkdir(parents=True)
    messages_dir.mkdir(parents=True)
    context = {
        "asset_keys": ["probe_asset"],
        "code_version_by_asset_key": None,
        "provenance_by_asset_key": None,
        "partition_key": None,
        "partition_key_range": None,
        "partition_time_window": None,
        "run_id": "dagster-run-1",
        "job_name": "probe_job",
        "retry_number": 0,
        "extras": {
            "settings": {"home": str(home), "target": "staging"},
            "params": {"run_id": "dagster-run-1", "behaviour": "ok"},
        },
    }
    context_file.write_text(json.dumps(context))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FRAUD_", "DAGSTER_"))}
    env[FUSE_ROOT_VAR] = str(root)

    subprocess.run(
        [
            sys.executable,
            "-m",
            "fraud_assets_tests.emulator.probe",
            "--dagster-pipes-context",
            encode_param({"path": "/Volumes/cat/sch/vol/tmp/abc/context.json"}),
            "--dagster-pipes-messages",
            encode_param({"path": "/Volumes/cat/sch/vol/tmp/def"}),
        ],
        cwd=REPO_ROOT,
        env=env,
        check=True,
        timeout=120,
    )

    chunks = sorted(messages_dir.glob("*.json"), key=lambda p: int(p.stem))
    messages = [json.loads(line) for c in chunks for line in c.read_text().splitlines() if line]
    methods = [m["method"] for m in messages]
    assert methods[0] == "opened" and methods[-1] == "closed"
    (materialization,) = [
        m["params"] for m in messages if m["method"] == "report_asset_materialization"
    ]
    metadata = materialization["metadata"]
    # Settings came from the Pipes extras (target, home), not the task's environment.
    assert metadata["target"]["raw_value"] == "staging"
    assert metadata["home"]["raw_value"] == str(home)
    assert metadata["run_id"]["raw_value"] == "dagster-run-1"
    assert "report_asset_check" in methods
    assert (home / "monitoring" / "check_history").is_dir()
