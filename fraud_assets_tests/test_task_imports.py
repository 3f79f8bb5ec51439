"""A task on a cluster loads neither Dagster nor the web stack, and core installs neither.

The bundle installs the wheel without extras, so a task may import only what core
``[project].dependencies`` declare (dagster-pipes is how it talks to Dagster).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from fraud_assets.tasks import TASKS

REPO_ROOT = Path(__file__).resolve().parents[1]

# Modules a task must never load: the orchestrator and this project's serving stack.
NEVER_IN_A_TASK = ("dagster", "dagster_slack", "dagster_databricks", "uvicorn", "prometheus_client")
# MLflow 3 imports fastapi itself (mlflow.gateway, loaded by `import mlflow`), so fastapi is
# only forbidden in a task that has not loaded mlflow.
FASTAPI = "fastapi"
ORCHESTRATION_AND_SERVING = {
    "dagster",
    "dagster-slack",
    "dagster-databricks",
    "fastapi",
    "uvicorn",
    "prometheus-client",
}


def _loaded_after_import(module: str) -> set[str]:
    watched = [*NEVER_IN_A_TASK, FASTAPI, "mlflow"]
    code = (
        f"import importlib, json, sys; importlib.import_module({module!r}); "
        f"print(json.dumps([m for m in {watched!r} if m in sys.modules]))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO_ROOT,
        timeout=300,
    )
    return set(json.loads(completed.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("task", sorted(TASKS))
def test_a_task_module_loads_neither_dagster_nor_the_serving_stack(task: str) -> None:
    loaded = _loaded_after_import(TASKS[task].module)
    assert not loaded & set(NEVER_IN_A_TASK), f"{TASKS[task].module} loads {sorted(loaded)}"
    if "mlflow" not in loaded:
        assert FASTAPI not in loaded, f"{TASKS[task].module} loads fastapi"


def test_core_dependencies_leave_orchestration_and_serving_to_their_extras() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    core = {canonicalize_name(Requirement(r).name) for r in project["dependencies"]}
    assert not core & ORCHESTRATION_AND_SERVING, sorted(core & ORCHESTRATION_AND_SERVING)
    extras = project["optional-dependencies"]
    named = {
        extra: {canonicalize_name(Requirement(r).name) for r in requirements}
        for extra, requirements in extras.items()
    }
    assert {"dagster", "dagster-slack", "dagster-databricks"} <= named["orchestration"]
    assert {"fastapi", "uvicorn", "prometheus-client", "orjson"} <= named["serving"]
    assert "fraud_assets[local,orchestration,serving]" in extras["dev"]
