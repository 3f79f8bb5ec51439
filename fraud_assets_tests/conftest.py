"""Shared fixtures: a temporary FRAUD_HOME per test and one local SparkSession per session."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# Fixtures shared by several test modules, defined beside the helpers they use.
pytest_plugins = [
    "fraud_assets_tests.alerts_support",
    "fraud_assets_tests.governance_support",
    "fraud_assets_tests.serving_support",
]

REPO_ROOT = Path(__file__).resolve().parents[1]
# The public auto-insurance claims file (https://github.com/kcao22/insurance_fraud, no data
# licence, never committed): CLAIMS_FILE names it, else this workspace's copy; tests that
# need it skip without it.
AUTO_INSURANCE_FILE = Path(
    os.environ.get("CLAIMS_FILE")
    or REPO_ROOT.parent / "shared" / "data" / "auto_insurance_claims" / "insurance_claims.csv"
)
needs_auto_insurance_file = pytest.mark.skipif(
    not AUTO_INSURANCE_FILE.is_file(),
    reason=(
        f"the public insurance_claims.csv is not at {AUTO_INSURANCE_FILE}: download it from "
        "https://github.com/kcao22/insurance_fraud and set CLAIMS_FILE to its path"
    ),
)


@pytest.fixture
def fraud_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty FRAUD_HOME, with every FRAUD_* variable from the caller's shell cleared."""
    for name in list(os.environ):
        if name.startswith("FRAUD_"):
            monkeypatch.delenv(name)
    home = tmp_path / "fraud_home"
    home.mkdir()
    monkeypatch.setenv("FRAUD_HOME", str(home))
    monkeypatch.setenv("PYSPARK_PYTHON", sys.executable)
    return home


@pytest.fixture(scope="module")
def shared_step_spark() -> Iterator[str]:
    """One Spark Connect server for the module's launched steps, as a local run has
    (``fraud_assets.local.spark_server``): SPARK_REMOTE reaches each step's subprocess."""
    from fraud_assets.local.spark_server import shared_spark

    with shared_spark() as url:
        yield url


@pytest.fixture(scope="session")
def spark() -> Iterator[object]:
    """One local SparkSession for every Spark test in this process."""
    from fraud_assets.spark import get_spark

    session = get_spark("fraud_assets_tests")
    yield session
    session.stop()


@pytest.fixture
def dagster_instance(tmp_path: Path) -> Iterator[object]:
    """A real, persistent DagsterInstance in a temporary DAGSTER_HOME."""
    from dagster import DagsterInstance

    home = tmp_path / "dagster_home"
    home.mkdir()
    with DagsterInstance.from_config(str(home)) as instance:
        yield instance
