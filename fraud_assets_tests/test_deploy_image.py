"""The code location image and its Helm values agree with the project and with the bundle.

No Docker daemon or cluster exists here, so these read the files: what the image copies
must exist, what it serves must be the project's code location, and what each target's
Helm values promise must match what scripts/deploy.py sets and the bundle deploys.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO_ROOT / "deploy" / "Dockerfile"
sys.path.insert(0, str(REPO_ROOT / "scripts"))

import check_bundle  # noqa: E402


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", text)
    lines = [line.strip() for line in joined.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def _pyproject() -> dict[str, Any]:
    with (REPO_ROOT / "pyproject.toml").open("rb") as handle:
        return tomllib.load(handle)


def test_the_image_copies_files_that_exist_and_serves_the_code_location() -> None:
    instructions = _instructions(DOCKERFILE.read_text())
    for kind, arguments in instructions:
        if kind == "COPY" and not arguments.startswith("--from"):
            *sources, _destination = arguments.split()
            for source in sources:
                assert (REPO_ROOT / source).exists(), f"COPY {source}: no such file"
    command = next(args for kind, args in reversed(instructions) if kind == "CMD")
    argv = yaml.safe_load(command)
    module = argv[argv.index("--module-name") + 1]
    assert module == _pyproject()["tool"]["dagster"]["module_name"]
    assert argv[:3] == ["dagster", "code-server", "start"]
    assert argv[argv.index("--port") + 1] == "3030"


def test_the_image_python_is_one_the_project_supports() -> None:
    bases = [args for kind, args in _instructions(DOCKERFILE.read_text()) if kind == "FROM"]
    versions = set()
    for base in bases:
        match = re.search(r"python:(\d+\.\d+)", base)
        assert match, f"FROM {base}: not an official python image"
        versions.add(match.group(1))
    assert len(versions) == 1
    minor = int(versions.pop().split(".")[1])
    spec = _pyproject()["project"]["requires-python"]
    low, high = (int(v) for v in re.findall(r"3\.(\d+)", spec))
    assert low <= minor < high, f"python 3.{minor} outside {spec}"


@pytest.mark.parametrize("target", ["dev", "staging", "prod"])
def test_helm_values_match_the_target_and_the_bundle(target: str) -> None:
    values = yaml.safe_load((REPO_ROOT / "deploy" / "helm" / f"values-{target}.yaml").read_text())
    # scripts/deploy.py sets deployments[0].image.*: there must be exactly one deployment.
    assert len(values["deployments"]) == 1
    deployment = values["deployments"][0]
    assert deployment["codeServerArgs"] == ["--module-name", "fraud_assets.definitions"]
    env = {item["name"]: item["value"] for item in deployment["env"]}
    assert env["FRAUD_TARGET"] == target
    assert env["FRAUD_COMPUTE"] == "databricks"
    # Dagster's run-now finds each step's bundle job by this template: it must produce the
    # names the bundle deploys for this target.
    template = env["FRAUD_DATABRICKS__JOB_NAME_TEMPLATE"]
    assert template == check_bundle.DAGSTER_JOB_NAME_TEMPLATE
    bundle = check_bundle.load_bundle(REPO_ROOT)
    deployed = {
        job["name"].replace("${bundle.target}", target)
        for key, (_, job) in bundle.resources("jobs").items()
        if key.startswith(check_bundle.STEP_JOB_PREFIX)
    }
    from fraud_assets.tasks import TASKS

    assert {template.format(target=target, task=step) for step in TASKS} == deployed
    # The deployed style runs the bundle's own step jobs and wheel: it needs nothing the
    # bundle does not create. The wheel path is scripts/deploy.py's to add, never a default.
    assert env["FRAUD_DATABRICKS__LAUNCH_STYLE"] == "run_now"
    assert "FRAUD_DATABRICKS__WHEEL_PATH" not in env
    assert deployment["envSecrets"] == [{"name": f"fraud-assets-{target}-credentials"}]
    assert "DATABRICKS_TOKEN" not in env and "DATABRICKS_CLIENT_SECRET" not in env
