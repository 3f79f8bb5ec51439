"""Fixtures for Databricks-mode tests: a running emulator and the environment that targets it.

A test module registers them with ``pytest_plugins = ["fraud_assets_tests.emulator.fixtures"]``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from fraud_assets.tasks import TASKS
from fraud_assets_tests.emulator import DatabricksEmulator
from fraud_assets_tests.emulator.probe_job import PROBE_SPEC

# A token nothing else contains, so any copy of it in logs, events or files is a leak.
SENTINEL_TOKEN = "dapi-SENTINEL-7f3c9e21b4d84a56a0e1c2f3b4d5e6f7"
OAUTH_CLIENT_ID = "emulated-service-principal"
OAUTH_SECRET = "dose-SENTINEL-oauth-5b1f0c9d8e7a6b5c4d3e2f1a"
VOLUME = "fraud_dev.claims.pipes"
# Where scripts/deploy.py would have uploaded the wheel (the emulator checks only the name).
WHEEL_PATH = (
    "/Volumes/fraud_dev/claims/artifacts/wheels/0.1.0/0123456/fraud_assets-0.1.0-py3-none-any.whl"
)


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[DatabricksEmulator]:
    """A started emulator that knows the probe entry point besides the project's own."""
    entry_points = {spec.script: spec.module for spec in TASKS.values()}
    entry_points[PROBE_SPEC.script] = PROBE_SPEC.module
    with DatabricksEmulator(
        tmp_path / "workspace",
        token=SENTINEL_TOKEN,
        oauth_clients={OAUTH_CLIENT_ID: OAUTH_SECRET},
        entry_points=entry_points,
    ) as emu:
        yield emu


@pytest.fixture
def databricks_env(
    fraud_home: Path, emulator: DatabricksEmulator, monkeypatch: pytest.MonkeyPatch
) -> DatabricksEmulator:
    """Only environment variables switch the project to Databricks mode on the emulator."""
    for name in list(os.environ):
        if name.startswith("DATABRICKS_"):
            monkeypatch.delenv(name)
    volume_path = emulator.create_volume(VOLUME)
    for name, value in {
        "FRAUD_COMPUTE": "databricks",
        "DATABRICKS_HOST": emulator.host,
        "DATABRICKS_TOKEN": SENTINEL_TOKEN,
        "FRAUD_DATABRICKS__VOLUME_PATH": volume_path,
        "FRAUD_DATABRICKS__WHEEL_PATH": WHEEL_PATH,
        "FRAUD_DATABRICKS__POLL_INTERVAL_SECONDS": "0.1",
        "FRAUD_DATABRICKS__MESSAGE_POLL_INTERVAL_SECONDS": "0.5",
        "FRAUD_DATABRICKS__API_RETRY_BACKOFF_SECONDS": "0.2",
    }.items():
        monkeypatch.setenv(name, value)
    return emulator


@pytest.fixture
def probe_task(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register the probe step for this test only."""
    monkeypatch.setitem(TASKS, PROBE_SPEC.name, PROBE_SPEC)


@pytest.fixture
def short_pipes_drain(monkeypatch: pytest.MonkeyPatch) -> None:
    """Wait 1 s, not 10, for messages from a remote process that never closed Pipes.

    Dagster keeps reading that long after a run that died without its closing message
    (killed, cancelled, never started); the tests that end runs that way need not wait.
    """
    import dagster._core.pipes.utils as pipes_utils

    monkeypatch.setattr(pipes_utils, "WAIT_FOR_LOGS_AFTER_EXECUTION_INTERVAL", 1)
