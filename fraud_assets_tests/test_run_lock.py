"""One run at a time writes a FRAUD_HOME (issue 14, finding 4)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from dagster import DagsterEventType, execute_job, instance_for_test, reconstructable
from filelock import FileLock

from fraud_assets.definitions import defs
from fraud_assets.executor import RUN_LOCK_TAG, fraud_home_executor, run_lock_path
from fraud_assets.jobs import ASSET_JOBS
from fraud_assets_tests import locked_defs


def test_every_job_runs_behind_the_fraud_home_lock():
    for job in [
        *ASSET_JOBS,
        defs.resolve_job_def("rollback_champion_job"),
        defs.resolve_job_def("promote_champion_job"),
    ]:
        resolved = defs.resolve_job_def(job.name)
        assert resolved.executor_def is fraud_home_executor, job.name
    for job in ASSET_JOBS:
        assert RUN_LOCK_TAG in defs.resolve_job_def(job.name).tags, job.name


def _marker_job():
    return locked_defs.defs.resolve_job_def("marker_job")


def test_a_second_run_waits_for_the_one_writing_the_home(
    fraud_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    marker = tmp_path / "marker"
    monkeypatch.setenv("LOCKED_DEFS_MARKER", str(marker))
    lock_path = run_lock_path(fraud_home)
    lock_path.parent.mkdir(parents=True)
    holder = FileLock(str(lock_path))
    holder.acquire()
    lock_path.with_suffix(".owner").write_text("run-A (pid 1)\n", encoding="utf-8")
    results = []
    with instance_for_test() as instance:
        second = threading.Thread(
            target=lambda: results.append(
                execute_job(reconstructable(_marker_job), instance=instance)
            )
        )
        second.start()
        try:
            second.join(timeout=20)
            assert second.is_alive(), "the second run finished while the first held the lock"
            assert not marker.exists(), "the second run's step ran while the first held the lock"
        finally:
            holder.release()
        second.join(timeout=120)
        assert not second.is_alive()
        result = results[0]
        assert result.success
        assert marker.exists()
        messages = [
            record.user_message
            for record in instance.all_logs(result.run_id)
            if record.dagster_event is None
            or record.dagster_event.event_type != DagsterEventType.STEP_OUTPUT
        ]
        assert any("waiting for run run-A (pid 1)" in m for m in messages), messages
