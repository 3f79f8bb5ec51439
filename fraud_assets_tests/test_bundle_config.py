"""The Databricks Asset Bundles: valid against the CLI's schema, coherent across files.

Every rule is also shown to fail: a broken copy of the bundle must be reported.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from fraud_assets_tests.bundle_support import check_bundle

REPO_ROOT = Path(__file__).resolve().parents[1]
RESOURCES = REPO_ROOT / "resources"


SCHEMA = check_bundle.REPO_SCHEMA


def _read(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


def _job(file: str, key: str) -> dict[str, Any]:
    job: dict[str, Any] = _read(RESOURCES / file)["resources"]["jobs"][key]
    return job


def _edges(job: dict[str, Any]) -> dict[str, set[str]]:
    return {t["task_key"]: {d["task_key"] for d in t.get("depends_on", [])} for t in job["tasks"]}


# --- schema ---------------------------------------------------------------------------


def test_every_bundle_file_validates_against_the_cli_schema() -> None:
    files = check_bundle.bundle_files(REPO_ROOT)
    assert REPO_ROOT / "databricks.yml" in files
    assert REPO_ROOT / "deploy" / "serving" / "databricks.yml" in files
    assert len([f for f in files if f.parent == RESOURCES]) == len(list(RESOURCES.glob("*.yml")))
    assert check_bundle.schema_errors(files, SCHEMA) == []


def test_schema_check_reports_a_misspelled_field_and_a_wrong_type(tmp_path: Path) -> None:
    misspelled = tmp_path / "misspelled.yml"
    misspelled.write_text(
        (RESOURCES / "ingestion-workflow-resource.yml")
        .read_text()
        .replace("python_wheel_task:", "python_wheel_tsk:", 1)
    )
    wrong_type = tmp_path / "wrong_type.yml"
    data = _read(RESOURCES / "batch-inference-workflow-resource.yml")
    data["resources"]["jobs"]["batch_scoring_job"]["max_concurrent_runs"] = "one"
    wrong_type.write_text(yaml.safe_dump(data))

    errors = "\n".join(check_bundle.schema_errors([misspelled, wrong_type], SCHEMA))

    assert "misspelled.yml" in errors
    assert "wrong_type.yml" in errors


# --- cross-file rules on the real bundle ------------------------------------------------


def test_cross_file_rules_hold() -> None:
    assert check_bundle.cross_file_errors(REPO_ROOT) == []


def test_training_runs_both_models_in_parallel_then_gates_then_registers() -> None:
    job = _job("training-workflow-resource.yml", "retraining_job")
    assert _edges(job) == {
        "features": set(),
        "train": {"features"},
        "evaluate": {"train"},
        "fairness": {"evaluate"},
        "register": {"evaluate", "fairness"},
    }
    train = next(t for t in job["tasks"] if t["task_key"] == "train")["for_each_task"]
    models = next(p["default"] for p in job["parameters"] if p["name"] == "models")
    assert train["inputs"] == "{{job.parameters.models}}"
    assert json.loads(models) == ["catboost", "xgboost"]
    assert train["concurrency"] == 2
    assert train["task"]["python_wheel_task"]["named_parameters"]["model"] == "{{input}}"


def test_monitoring_scores_before_measuring_drift_and_other_jobs_chain_as_dagster() -> None:
    assert _edges(_job("monitoring-workflow-resource.yml", "drift_monitoring_job")) == {
        "score": set(),
        "psi": {"score"},
    }
    assert _edges(_job("ingestion-workflow-resource.yml", "ingestion_job")) == {
        "ingest": set(),
        "validate": {"ingest"},
    }
    audit = _job("fairness-audit-workflow-resource.yml", "fairness_audit_job")["tasks"][0]
    # The champion on its production decisions, not the candidate's holdout (issue 16).
    assert audit["python_wheel_task"]["entry_point"] == "fraud-champion-audit"
    assert audit["python_wheel_task"]["named_parameters"]["window_days"] == "28"
    assert audit["python_wheel_task"]["named_parameters"]["reports_dir"] == (
        "/Volumes/${var.catalog}/${var.schema}/${resources.volumes.reports.name}"
    )
    promote = _job("promotion-workflow-resource.yml", "promotion_job")["tasks"][0]
    assert promote["python_wheel_task"]["named_parameters"]["action"] == (
        "{{job.parameters.action}}"
    )


def test_bundle_jobs_carry_the_dagster_job_names() -> None:
    """Scripts trigger or watch a job by one name, whichever orchestrator owns the target."""
    from fraud_assets import keys
    from fraud_assets.tasks import TASKS

    bundle = check_bundle.load_bundle(REPO_ROOT)
    jobs = set(bundle.resources("jobs"))
    shared = {
        keys.INGESTION_JOB,
        keys.RETRAINING_JOB,
        keys.DRIFT_MONITORING_JOB,
        keys.FAIRNESS_AUDIT_JOB,
    }
    assert shared <= jobs
    step_jobs = {f"step_{step}" for step in TASKS}
    assert jobs - shared == {"batch_scoring_job", "promotion_job", *step_jobs}


def _quartz(unix_cron: str) -> str:
    """A 5-field cron as the Quartz expression Databricks schedules use."""
    minute, hour, day, month, weekday = unix_cron.split()
    names = dict(enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]))
    hour = hour.replace("*/", "0/")
    if weekday == "*":
        return f"0 {minute} {hour} {day} {month} ?"
    return f"0 {minute} {hour} ? {month} {names[int(weekday)]}"


def test_bundle_schedules_fire_on_the_same_ticks_as_dagsters() -> None:
    from fraud_assets.settings import Schedules

    schedules = Schedules()
    expected = {
        "ingestion_job": schedules.ingestion_cron,
        "drift_monitoring_job": schedules.drift_monitoring_cron,
        "fairness_audit_job": schedules.fairness_audit_cron,
    }
    jobs = check_bundle.load_bundle(REPO_ROOT).resources("jobs")
    for key, unix_cron in expected.items():
        schedule = jobs[key][1]["schedule"]
        assert schedule["quartz_cron_expression"] == _quartz(unix_cron), key
        assert schedule["timezone_id"] == schedules.timezone


def test_settings_read_per_target_names_from_the_bundle() -> None:
    from fraud_assets.settings import bundle_variables

    catalogs = {t: bundle_variables(t)["catalog"] for t in ("dev", "staging", "prod")}
    assert catalogs == {"dev": "fraud_dev", "staging": "fraud_staging", "prod": "fraud_prod"}
    for target in ("dev", "staging", "prod"):
        values = bundle_variables(target)
        assert values["schema"] and values["model_name"] and values["experiment_name"]


def test_docs_orchestrator_table_matches_the_bundle() -> None:
    """docs/deployment.md says who schedules each target; it must say what the bundle does."""
    bundle = check_bundle.load_bundle(REPO_ROOT)
    rows = {}
    for line in (REPO_ROOT / "docs" / "deployment.md").read_text().splitlines():
        cells = [c.strip(" `") for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0] in ("dev", "staging", "prod"):
            rows[cells[0]] = (cells[1], cells[2])
    assert set(rows) == {"dev", "staging", "prod"}
    for target, (orchestrator, pause) in rows.items():
        values = bundle.resolved_variables(target)
        assert (orchestrator, pause) == (
            values["orchestrator"],
            values["schedule_pause_status"],
        ), target


# --- every cross-file rule can fail ------------------------------------------------------


@pytest.fixture
def broken_copy(tmp_path: Path) -> Path:
    """A private copy of both bundles to break."""
    for name in ("databricks.yml", "pyproject.toml"):
        shutil.copy(REPO_ROOT / name, tmp_path / name)
    shutil.copytree(RESOURCES, tmp_path / "resources")
    shutil.copytree(REPO_ROOT / "deploy" / "serving", tmp_path / "deploy" / "serving")
    return tmp_path


def _edit(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    data = _read(path)
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def _task(data: dict[str, Any], job: str, key: str) -> dict[str, Any]:
    task: dict[str, Any] = next(
        t for t in data["resources"]["jobs"][job]["tasks"] if t["task_key"] == key
    )
    return task


def _set_target_variable(target: str, name: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        data["targets"][target].setdefault("variables", {})[name] = value

    return change


INGESTION = "resources/ingestion-workflow-resource.yml"
TRAINING = "resources/training-workflow-resource.yml"
STEPS = "resources/step-jobs-resource.yml"
STORAGE = "resources/storage-resource.yml"


def _cluster(data: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = data["resources"]["jobs"]["ingestion_job"]["job_clusters"][0][
        "new_cluster"
    ]
    return spec


BREAKAGES: dict[str, tuple[str, Callable[[dict[str, Any]], None], str]] = {
    "undeclared variable": (
        INGESTION,
        lambda d: _cluster(d).update(spark_version="${var.spark_versoin}"),
        "undeclared variable ${var.spark_versoin}",
    ),
    "target sets an undeclared variable": (
        "databricks.yml",
        _set_target_variable("prod", "max_wokers", 8),
        "sets undeclared var 'max_wokers'",
    ),
    "missing resource reference": (
        INGESTION,
        lambda d: _task(d, "ingestion_job", "ingest")["python_wheel_task"][
            "named_parameters"
        ].update(model_name="${resources.registered_models.fraud_model.name}"),
        "references missing resource ${resources.registered_models.fraud_model.name}",
    ),
    "depends_on an unknown task": (
        INGESTION,
        lambda d: _task(d, "ingestion_job", "validate").update(depends_on=[{"task_key": "load"}]),
        "depends_on unknown task 'load'",
    ),
    "dependency cycle": (
        INGESTION,
        lambda d: _task(d, "ingestion_job", "ingest").update(depends_on=[{"task_key": "validate"}]),
        "depends_on forms a cycle",
    ),
    "unknown job cluster": (
        INGESTION,
        lambda d: _task(d, "ingestion_job", "validate").update(job_cluster_key="big_cluster"),
        "job_cluster_key 'big_cluster' is not one of ['fraud_cluster']",
    ),
    "entry point missing from project.scripts": (
        INGESTION,
        lambda d: _task(d, "ingestion_job", "ingest")["python_wheel_task"].update(
            entry_point="fraud-ingest-v2"
        ),
        "entry_point 'fraud-ingest-v2' is not in [project.scripts]",
    ),
    "task runs another step's script": (
        INGESTION,
        lambda d: _task(d, "ingestion_job", "ingest")["python_wheel_task"].update(
            entry_point="fraud-validate"
        ),
        "task 'ingest' runs 'fraud-validate', but step 'ingest' is 'fraud-ingest'",
    ),
    "task that is no pipeline step": (
        INGESTION,
        lambda d: _task(d, "ingestion_job", "validate").update(task_key="quality_check"),
        "task 'quality_check' is no pipeline step",
    ),
    "step without a bundle task": (
        "resources/promotion-workflow-resource.yml",
        lambda d: d["resources"]["jobs"].clear(),
        "step 'promote' (fraud-promote) has no task in any workflow job",
    ),
    "unquoted job.run_id": (
        INGESTION,
        lambda d: _task(d, "ingestion_job", "ingest")["python_wheel_task"][
            "named_parameters"
        ].update(run_id={"job.run_id": None}),
        "parameter 'run_id' must be a string",
    ),
    "missing settings parameter": (
        TRAINING,
        lambda d: _task(d, "retraining_job", "train")["for_each_task"]["task"]["python_wheel_task"][
            "named_parameters"
        ].pop("catalog"),
        "parameters lack ['catalog']",
    ),
    "wheel not installed": (
        INGESTION,
        lambda d: _task(d, "ingestion_job", "ingest").update(libraries=[{"whl": "dist/*.whl"}]),
        "libraries must install the built wheel",
    ),
    "fixed-size cluster": (
        INGESTION,
        lambda d: _cluster(d).update(autoscale=None, num_workers=4),
        "must autoscale",
    ),
    "on-demand only cluster": (
        INGESTION,
        lambda d: _cluster(d)["aws_attributes"].update(availability="ON_DEMAND"),
        "aws_attributes.availability must be SPOT_WITH_FALLBACK",
    ),
    "all-spot cluster without an on-demand driver": (
        INGESTION,
        lambda d: _cluster(d)["aws_attributes"].update(first_on_demand=0),
        "first_on_demand must be at least 1",
    ),
    "cluster outside the policy": (
        INGESTION,
        lambda d: _cluster(d).pop("policy_id"),
        "must set policy_id",
    ),
    "hard-coded schedule status": (
        INGESTION,
        lambda d: d["resources"]["jobs"]["ingestion_job"]["schedule"].update(
            pause_status="UNPAUSED"
        ),
        "schedule.pause_status must be ${var.schedule_pause_status}",
    ),
    "two orchestrators in one target": (
        "databricks.yml",
        _set_target_variable("prod", "orchestrator", "databricks"),
        "target prod: orchestrator databricks needs schedule_pause_status UNPAUSED",
    ),
    "prod without a service principal": (
        "databricks.yml",
        lambda d: d["targets"]["prod"].pop("run_as"),
        "target prod: run_as.service_principal_name must be set",
    ),
    "invalid target mode": (
        "databricks.yml",
        lambda d: d["targets"]["staging"].update(mode="prodution"),
        "target staging has mode 'prodution', expected 'production'",
    ),
    "production target without a root path": (
        "databricks.yml",
        lambda d: d["targets"]["prod"].pop("workspace"),
        "production target prod must set workspace.root_path",
    ),
    "serving endpoint in the main bundle": (
        "resources/ml-artifacts-resource.yml",
        lambda d: d["resources"].update(
            model_serving_endpoints={"fraud_endpoint": {"name": "fraud"}}
        ),
        "breaks the first deploy",
    ),
    "run_as in the serving bundle": (
        "deploy/serving/databricks.yml",
        lambda d: d["targets"]["prod"].update(run_as={"service_principal_name": "sp"}),
        "serving endpoints do not support run_as",
    ),
    "step without a run-now job": (
        STEPS,
        lambda d: d["resources"]["jobs"].pop("step_psi"),
        "step 'psi' has no step job resources.jobs.step_psi",
    ),
    "step job with a second task": (
        STEPS,
        lambda d: d["resources"]["jobs"]["step_score"]["tasks"].append(
            {**d["resources"]["jobs"]["step_psi"]["tasks"][0]}
        ),
        "job step_score must have exactly one task, keyed 'score'",
    ),
    "step job Dagster cannot find": (
        STEPS,
        lambda d: d["resources"]["jobs"]["step_train"].update(name="train-${bundle.target}"),
        "but Dagster's run-now looks for 'fraud_assets_${bundle.target}_train'",
    ),
    "scheduled step job": (
        STEPS,
        lambda d: d["resources"]["jobs"]["step_ingest"].update(
            schedule={
                "quartz_cron_expression": "0 0 2 * * ?",
                "timezone_id": "UTC",
                "pause_status": "${var.schedule_pause_status}",
            }
        ),
        "step job step_ingest must not be scheduled",
    ),
    "positional parameter without a name": (
        STEPS,
        lambda d: d["resources"]["jobs"]["step_ingest"]["tasks"][0]["python_wheel_task"][
            "parameters"
        ].insert(0, "dev"),
        "parameters must be '--name', 'value'",
    ),
    "landing Volume missing": (
        STORAGE,
        lambda d: d["resources"]["volumes"].pop("landing"),
        "no resources.volumes entry named 'landing'",
    ),
    "Pipes Volume in another schema": (
        STORAGE,
        lambda d: d["resources"]["volumes"]["pipes"].update(schema_name="scratch"),
        "volume pipes schema_name is 'scratch', expected ${var.schema}",
    ),
    "landing Volume that can be destroyed": (
        STORAGE,
        lambda d: d["resources"]["volumes"]["landing"].pop("lifecycle"),
        "volume landing needs lifecycle.prevent_destroy",
    ),
    "Volume without grants": (
        STORAGE,
        lambda d: d["resources"]["volumes"]["pipes"].pop("grants"),
        "volume pipes has no grants",
    ),
    "grant to a hard-coded principal": (
        STORAGE,
        lambda d: d["resources"]["volumes"]["landing"]["grants"].append(
            {"principal": "alice@example.com", "privileges": ["READ_VOLUME"]}
        ),
        "grants to 'alice@example.com'",
    ),
    "prod without its schema": (
        "databricks.yml",
        lambda d: d["targets"]["prod"].pop("resources"),
        "target prod must declare the schema ${var.schema}",
    ),
    "schema without grants": (
        "databricks.yml",
        lambda d: d["targets"]["staging"]["resources"]["schemas"]["fraud_schema"].pop("grants"),
        "target staging schema has no grants",
    ),
    "wheel artifact not built": (
        "databricks.yml",
        lambda d: d.pop("artifacts"),
        "no whl artifact builds the project's wheel",
    ),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_each_cross_file_rule_reports_a_broken_copy(breakage: str, broken_copy: Path) -> None:
    file, change, message = BREAKAGES[breakage]
    project = check_bundle.Project.from_repo(REPO_ROOT)
    assert check_bundle.cross_file_errors(broken_copy, project) == []

    _edit(broken_copy / file, change)
    errors = check_bundle.cross_file_errors(broken_copy, project)

    assert any(message in error for error in errors), errors


def test_the_command_line_check_fails_on_a_broken_copy(broken_copy: Path) -> None:
    _edit(
        broken_copy / INGESTION,
        lambda d: _task(d, "ingestion_job", "validate").update(depends_on=[{"task_key": "x"}]),
    )
    args = ["--repo-root", str(broken_copy), "--schema", str(SCHEMA)]
    if not SCHEMA.is_file():
        pytest.skip(f"bundle JSON schema not found at {SCHEMA}")
    assert check_bundle.main(args) == 1
    assert check_bundle.main(["--schema", str(SCHEMA)]) == 0


# --- a clone with nothing beside it (issue 19) ------------------------------------------


def _lone_clone(tmp_path: Path) -> Path:
    """The repository's bundle files and scripts, in a folder with no ../shared beside it."""
    clone = tmp_path / "alone" / "fraud_assets"
    for part in ("databricks.yml", "pyproject.toml", "resources", "deploy", "scripts"):
        source = REPO_ROOT / part
        if source.is_dir():
            shutil.copytree(source, clone / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            clone.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, clone / part)
    shutil.copytree(
        REPO_ROOT / "fraud_assets",
        clone / "fraud_assets",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    assert not (clone.parent / "shared").exists()
    return clone


def _bundle_check(clone: Path, path: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(clone / "scripts" / "check_bundle.py"), "--repo-root", str(clone)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PATH": path},
    )


def test_bundle_check_passes_on_a_clone_with_nothing_beside_it(tmp_path: Path) -> None:
    clone = _lone_clone(tmp_path)
    beside_python = str(Path(sys.executable).parent)
    no_cli = os.pathsep.join(
        p for p in [beside_python, "/usr/bin", "/bin"] if not (Path(p) / "databricks").exists()
    )
    result = _bundle_check(clone, no_cli)
    assert result.returncode == 0, result.stderr
    assert (
        "scripts/bundle_schema/bundle_config_schema.json (Databricks CLI v1.13.0)" in result.stderr
    )


def test_bundle_check_asks_an_installed_cli_for_its_own_schema(tmp_path: Path) -> None:
    clone = _lone_clone(tmp_path)
    cli_dir = tmp_path / "cli"
    cli_dir.mkdir()
    fake = cli_dir / "databricks"
    # A CLI whose schema forbids every top-level key: the check must use it, and fail.
    fake.write_text('#!/bin/sh\necho \'{"type": "object", "additionalProperties": false}\'\n')
    fake.chmod(0o755)
    path = os.pathsep.join([str(cli_dir), str(Path(sys.executable).parent), "/usr/bin", "/bin"])
    result = _bundle_check(clone, path)
    assert "`databricks bundle schema` of" in result.stderr
    assert result.returncode == 1
    # A CLI that cannot print a schema falls back to the repository's copy, and says so.
    fake.write_text("#!/bin/sh\necho 'unknown command' >&2\nexit 1\n")
    result = _bundle_check(clone, path)
    assert result.returncode == 0, result.stderr
    assert "using the repository's copy" in result.stderr


def test_no_make_target_or_readme_command_needs_a_sibling_folder() -> None:
    for name in ("Makefile", "README.md", "docs/data_contract.md", "docs/ARCHITECTURE.md"):
        text = (REPO_ROOT / name).read_text(encoding="utf-8")
        assert "../shared" not in text, f"{name} still reads from ../shared"
