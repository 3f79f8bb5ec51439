"""A Dagster-launched job cluster is the bundle's job cluster, for every target.

The bundle (databricks.yml variables, resources/*.yml job clusters) is the one source:
``DatabricksSettings`` takes its runtime, node type, autoscale range and policy from the
bundle's variables, and ``cluster_spec`` adds the same spot-with-fallback attributes. Each
test below also shows that a change on either side is caught.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
import yaml
from databricks.sdk import WorkspaceClient
from databricks.sdk.service.compute import Policy

from fraud_assets.databricks.launch import (
    DatabricksLaunchError,
    job_cluster_task,
    resolve_policy_id,
)
from fraud_assets.settings import DatabricksSettings, FraudSettings
from fraud_assets.tasks import task_spec
from fraud_assets_tests.bundle_support import check_bundle

REPO_ROOT = Path(__file__).resolve().parents[1]
TARGETS = ("dev", "staging", "prod")
POLICIES = {"Job Compute": "JOBCOMPUTE000001", "Personal Compute": "PERSONAL00000002"}
# Where the two may differ: the environment each side hands the task, and Dagster's tag.
NOT_COMPARED = {"spark_env_vars", "custom_tags"}
_VARIABLE = re.compile(r"^\$\{var\.([a-z_]+)\}$")


def _workspace(policies: dict[str, str] = POLICIES) -> WorkspaceClient:
    listed = [Policy(policy_id=pid, name=name) for name, pid in policies.items()]
    return cast(
        WorkspaceClient, SimpleNamespace(cluster_policies=SimpleNamespace(list=lambda: listed))
    )


def _resolve(value: Any, variables: dict[str, Any]) -> Any:
    """A bundle value with ``${var.x}`` replaced; a policy lookup becomes the policy's id."""
    if isinstance(value, dict):
        return {key: _resolve(item, variables) for key, item in value.items()}
    match = _VARIABLE.match(value) if isinstance(value, str) else None
    if match is None:
        return value
    resolved = variables[match.group(1)]
    if isinstance(resolved, dict) and "lookup" in resolved:
        resolved = resolved["lookup"]
    if isinstance(resolved, dict) and "cluster_policy" in resolved:
        return POLICIES[resolved["cluster_policy"]]
    return resolved


def bundle_clusters(root: Path, target: str) -> dict[str, dict[str, Any]]:
    """Every job cluster of the bundle at ``root``, resolved for ``target``, by job."""
    bundle = check_bundle.load_bundle(root)
    variables = bundle.resolved_variables(target)
    for name, spec in bundle.variables.items():
        if variables.get(name) is None and "lookup" in (spec or {}):
            variables[name] = {"lookup": spec["lookup"]}
    return {
        f"{job_key} {cluster['job_cluster_key']}": _resolve(cluster["new_cluster"], variables)
        for job_key, (_, job) in bundle.resources("jobs").items()
        for cluster in job.get("job_clusters") or []
    }


def dagster_cluster(settings: DatabricksSettings) -> dict[str, Any]:
    """The new cluster a ``job_cluster`` launch submits, its policy resolved as at launch."""
    resolved = settings.model_copy(update={"policy_id": resolve_policy_id(_workspace(), settings)})
    cluster: dict[str, Any] = job_cluster_task(task_spec("ingest"), resolved).as_dict()[
        "new_cluster"
    ]
    return cluster


def cluster_differences(root: Path, target: str, settings: DatabricksSettings) -> list[str]:
    """Where a bundle job cluster and the Dagster-launched cluster disagree."""
    ours = {k: v for k, v in dagster_cluster(settings).items() if k not in NOT_COMPARED}
    differences = []
    for where, theirs in bundle_clusters(root, target).items():
        theirs = {k: v for k, v in theirs.items() if k not in NOT_COMPARED}
        for key in sorted(set(ours) | set(theirs)):
            if ours.get(key) != theirs.get(key):
                differences.append(
                    f"{target} {where}: {key} is {theirs.get(key)!r} in the bundle, "
                    f"{ours.get(key)!r} from Dagster"
                )
    return differences


@pytest.fixture(autouse=True)
def _no_cluster_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SPARK_VERSION", "NODE_TYPE_ID", "MIN_WORKERS", "MAX_WORKERS", "POLICY_ID"):
        monkeypatch.delenv(f"FRAUD_DATABRICKS__{name}", raising=False)
    monkeypatch.delenv("FRAUD_DATABRICKS__POLICY_NAME", raising=False)


@pytest.mark.parametrize("target", TARGETS)
def test_dagster_launches_the_bundles_job_cluster(target: str) -> None:
    settings = FraudSettings(target=target).databricks
    clusters = bundle_clusters(REPO_ROOT, target)
    assert len(clusters) >= 7  # every workflow and step job has one
    assert cluster_differences(REPO_ROOT, target, settings) == []
    cluster = dagster_cluster(settings)
    assert cluster["policy_id"] == POLICIES["Job Compute"]
    assert cluster["apply_policy_default_values"] is True
    assert cluster["aws_attributes"] == {"availability": "SPOT_WITH_FALLBACK", "first_on_demand": 1}


def test_target_variables_reach_the_dagster_cluster() -> None:
    prod = FraudSettings(target="prod").databricks
    assert dagster_cluster(prod)["autoscale"] == {"min_workers": 2, "max_workers": 8}


def test_a_change_to_the_bundle_is_caught(tmp_path: Path) -> None:
    root = tmp_path / "bundle"
    shutil.copytree(REPO_ROOT / "resources", root / "resources")
    main = yaml.safe_load((REPO_ROOT / "databricks.yml").read_text())
    main["targets"]["prod"]["variables"]["max_workers"] = 16
    (root / "databricks.yml").write_text(yaml.safe_dump(main))
    scoring = root / "resources" / "batch-inference-workflow-resource.yml"
    scoring.write_text(scoring.read_text().replace("first_on_demand: 1", "first_on_demand: 2"))

    settings = FraudSettings(target="prod").databricks
    differences = "\n".join(cluster_differences(root, "prod", settings))

    assert "autoscale" in differences
    assert "batch_scoring_job fraud_cluster: aws_attributes" in differences


def test_a_change_on_the_dagster_side_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRAUD_DATABRICKS__NODE_TYPE_ID", "i3.2xlarge")
    monkeypatch.setenv("FRAUD_DATABRICKS__POLICY_NAME", "Personal Compute")
    settings = FraudSettings(target="dev").databricks
    differences = "\n".join(cluster_differences(REPO_ROOT, "dev", settings))
    assert "node_type_id is 'i3.xlarge' in the bundle, 'i3.2xlarge' from Dagster" in differences
    assert "policy_id" in differences


def test_env_overrides_win_over_the_bundle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRAUD_DATABRICKS__MAX_WORKERS", "3")
    monkeypatch.setenv("FRAUD_DATABRICKS__POLICY_ID", "EXPLICIT")
    cluster = dagster_cluster(FraudSettings(target="prod").databricks)
    assert cluster["autoscale"] == {"min_workers": 2, "max_workers": 3}
    assert cluster["policy_id"] == "EXPLICIT"


def test_a_policy_name_must_name_exactly_one_policy() -> None:
    settings = DatabricksSettings.model_validate({"policy_name": "Job Compute"})
    with pytest.raises(DatabricksLaunchError, match="0 cluster policies are named"):
        resolve_policy_id(_workspace({}), settings)
    unset = DatabricksSettings.model_validate({"policy_name": None})
    assert resolve_policy_id(_workspace({}), unset) is None
