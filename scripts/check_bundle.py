"""Offline checks of the Databricks Asset Bundles: the JSON schema, then what it cannot see.

``databricks bundle validate`` needs a workspace. This runs anywhere:

1. every bundle YAML against the CLI's bundle JSON schema, with ``check-jsonschema``;
2. cross-file rules the schema cannot express: declared variables, resource references,
   ``depends_on`` / ``job_cluster_key`` targets, wheel entry points that exist in
   ``[project.scripts]``, one bundle task per pipeline step (``fraud_assets.tasks.TASKS``)
   and back, job cluster cost rules, one orchestrator of record per target, and the Unity
   Catalog storage the code names (the landing and Pipes Volumes, the schema in staging and
   prod), each with grants to the bundle's principals.

    python scripts/check_bundle.py [--schema PATH]

The schema is ``databricks bundle schema`` output: the CLI's own when ``databricks`` is on
the PATH, else the copy in ``scripts/bundle_schema/`` (its README names the CLI version and
the command that refreshes it), or the file ``--schema`` names.
"""

from __future__ import annotations

import argparse
import glob
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
REPO_SCHEMA = REPO_ROOT / "scripts" / "bundle_schema" / "bundle_config_schema.json"
SERVING_BUNDLE = Path("deploy") / "serving"
STEP_JOB_PREFIX = "step_"
# Dagster's run-now finds a step's job by name: FRAUD_DATABRICKS__JOB_NAME_TEMPLATE.
STEP_JOB_NAME = "fraud_assets_${{bundle.target}}_{task}"
DAGSTER_JOB_NAME_TEMPLATE = "fraud_assets_{target}_{task}"
TARGETS = ("dev", "staging", "prod")

# Parameters every step needs to rebuild its settings, plus the run id its verdicts use.
REQUIRED_TASK_PARAMETERS = ("target", "catalog", "schema_name", "model_name", "experiment_name")
RUN_ID_PARAMETER = ("run_id", "{{job.run_id}}")
PAUSE_FOR_ORCHESTRATOR = {"dagster": "PAUSED", "databricks": "UNPAUSED"}
SPOT_WITH_FALLBACK = {
    "aws_attributes": "SPOT_WITH_FALLBACK",
    "azure_attributes": "SPOT_WITH_FALLBACK_AZURE",
}

# The Volumes the code and docs name in <catalog>.<schema>: the landing folder
# (fraud_assets.claims.landing.LANDING_VOLUME) and serverless Pipes' files
# (FRAUD_DATABRICKS__VOLUME_PATH=/Volumes/<catalog>/<schema>/pipes, docs/databricks.md).
PIPES_VOLUME = "pipes"
STORAGE_PLACE = {"catalog_name": "${var.catalog}", "schema_name": "${var.schema}"}
OWNED_SCHEMA_TARGETS = ("staging", "prod")

_REFERENCE = re.compile(r"\$\{([^}]+)\}")

log = logging.getLogger("check_bundle")


@dataclass
class BundleConfig:
    """One bundle: its root, and every YAML file it is made of, parsed."""

    root: Path
    documents: dict[Path, dict[str, Any]] = field(default_factory=dict)

    @property
    def main(self) -> dict[str, Any]:
        return self.documents[self.root / "databricks.yml"]

    @property
    def variables(self) -> dict[str, Any]:
        return self.main.get("variables") or {}

    @property
    def targets(self) -> dict[str, Any]:
        return self.main.get("targets") or {}

    def resources(self, kind: str) -> dict[str, tuple[Path, dict[str, Any]]]:
        """Every resource of one kind across the files, with the file that declares it."""
        found: dict[str, tuple[Path, dict[str, Any]]] = {}
        for path, doc in self.documents.items():
            for key, spec in ((doc.get("resources") or {}).get(kind) or {}).items():
                found[key] = (path, spec or {})
        return found

    def resolved_variables(self, target: str) -> dict[str, Any]:
        values = {name: (spec or {}).get("default") for name, spec in self.variables.items()}
        values.update(((self.targets.get(target) or {}).get("variables")) or {})
        return values


def load_bundle(root: Path) -> BundleConfig:
    """Parse ``root/databricks.yml`` and every file its ``include`` globs match."""
    main_path = root / "databricks.yml"
    if not main_path.is_file():
        raise FileNotFoundError(f"no databricks.yml in {root}")
    bundle = BundleConfig(root=root)
    bundle.documents[main_path] = _read_yaml(main_path)
    for pattern in bundle.main.get("include") or []:
        matches = sorted(glob.glob(str(root / pattern)))
        if not matches:
            raise FileNotFoundError(f"{main_path}: include pattern {pattern!r} matches no file")
        for match in matches:
            bundle.documents[Path(match)] = _read_yaml(Path(match))
    return bundle


def bundle_files(repo_root: Path = REPO_ROOT) -> list[Path]:
    """Every YAML file of the main bundle and of the serving bundle."""
    files: list[Path] = []
    for root in (repo_root, repo_root / SERVING_BUNDLE):
        files.extend(load_bundle(root).documents)
    return files


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(loaded, dict):
        kind = type(loaded).__name__
        raise ValueError(f"{path}: expected a mapping at the top level, got {kind}")
    return loaded


# --- 1. JSON schema -------------------------------------------------------------------


def check_jsonschema_executable() -> str:
    """The ``check-jsonschema`` next to this interpreter, else the one on PATH."""
    beside = Path(sys.executable).parent / "check-jsonschema"
    if beside.is_file():
        return str(beside)
    found = shutil.which("check-jsonschema")
    if found is None:
        raise FileNotFoundError("check-jsonschema is not installed (pip install check-jsonschema)")
    return found


def resolve_schema(explicit: Path | None, scratch: Path) -> tuple[Path, str]:
    """The schema to validate against and where it came from.

    ``explicit`` if given; else the installed CLI's (``databricks bundle schema``, written
    into ``scratch``); else the repository's copy. A CLI that cannot print its schema (too
    old, broken) is logged and the copy is used.
    """
    if explicit is not None:
        return explicit, str(explicit)
    cli = shutil.which("databricks")
    if cli:
        printed = subprocess.run(
            [cli, "bundle", "schema"], capture_output=True, text=True, check=False
        )
        if printed.returncode == 0 and printed.stdout.strip().startswith("{"):
            target = scratch / "bundle_config_schema.json"
            target.write_text(printed.stdout, encoding="utf-8")
            return target, f"`databricks bundle schema` of {cli}"
        log.warning(
            "%s bundle schema failed (exit %d): %s; using the repository's copy",
            cli,
            printed.returncode,
            printed.stderr.strip()[:200],
        )
    return REPO_SCHEMA, f"{REPO_SCHEMA.relative_to(REPO_ROOT)} (Databricks CLI v1.13.0)"


def schema_errors(files: list[Path], schema: Path) -> list[str]:
    """Validate each file on its own (an included file is itself a valid bundle document)."""
    if not schema.is_file():
        raise FileNotFoundError(f"bundle JSON schema not found at {schema}")
    # The schema's patterns use \p{L}; check-jsonschema's default ECMAScript regex engine
    # understands them, Python's `re` does not, so never pass --regex-variant python.
    result = subprocess.run(
        [check_jsonschema_executable(), "--schemafile", str(schema), *map(str, files)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode == 0:
        return []
    return [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]


# --- 2. Cross-file rules --------------------------------------------------------------


@dataclass(frozen=True)
class Project:
    """What the bundle must agree with: the wheel's name, its scripts, the pipeline steps."""

    name: str
    scripts: frozenset[str]
    steps: Mapping[str, str]  # step name -> console script

    @classmethod
    def from_repo(cls, repo_root: Path = REPO_ROOT) -> Project:
        with (repo_root / "pyproject.toml").open("rb") as handle:
            project = tomllib.load(handle)["project"]
        from fraud_assets.tasks import TASKS

        return cls(
            name=project["name"],
            scripts=frozenset(project.get("scripts") or {}),
            steps={name: spec.script for name, spec in TASKS.items()},
        )


def cross_file_errors(repo_root: Path = REPO_ROOT, project: Project | None = None) -> list[str]:
    """Every rule the schema cannot check, over the main and the serving bundle."""
    project = project or Project.from_repo(repo_root)
    main = load_bundle(repo_root)
    serving = load_bundle(repo_root / SERVING_BUNDLE)
    errors: list[str] = []
    for bundle in (main, serving):
        errors += _reference_errors(bundle)
        errors += _target_errors(bundle)
    errors += _job_errors(main, project)
    errors += _step_coverage_errors(main, project)
    errors += _orchestrator_errors(main)
    errors += _serving_errors(main, serving)
    errors += _artifact_errors(main)
    errors += _storage_errors(main)
    return errors


def _strings(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _strings(value, f"{path}[{index}]")
    elif isinstance(node, str):
        yield path, node


def _reference_errors(bundle: BundleConfig) -> list[str]:
    errors = []
    declared = set(bundle.variables)
    for target, spec in bundle.targets.items():
        for name in (spec or {}).get("variables") or {}:
            if name not in declared:
                errors.append(
                    f"{bundle.root}/databricks.yml: target {target} sets undeclared var {name!r}"
                )
    seen: dict[tuple[str, str], Path] = {}
    for path, doc in bundle.documents.items():
        for kind, items in (doc.get("resources") or {}).items():
            for key in items or {}:
                if (kind, key) in seen:
                    errors.append(
                        f"{path}: resources.{kind}.{key} is also declared in {seen[kind, key]}"
                    )
                seen[kind, key] = path
    for path, doc in bundle.documents.items():
        for where, text in _strings(doc):
            for reference in _REFERENCE.findall(text):
                head, _, rest = reference.partition(".")
                if head == "var" and rest.split(".")[0] not in declared:
                    errors.append(f"{path}: {where} uses undeclared variable ${{{reference}}}")
                elif head == "resources":
                    kind, _, tail = rest.partition(".")
                    key = tail.split(".")[0]
                    if (kind, key) not in seen:
                        errors.append(
                            f"{path}: {where} references missing resource ${{{reference}}}"
                        )
    return errors


def _target_errors(bundle: BundleConfig) -> list[str]:
    errors = []
    where = f"{bundle.root}/databricks.yml"
    if set(bundle.targets) != set(TARGETS):
        errors.append(f"{where}: targets are {sorted(bundle.targets)}, expected {sorted(TARGETS)}")
    for name, spec in bundle.targets.items():
        spec = spec or {}
        mode = spec.get("mode")
        # The schema accepts any string as mode; the CLI rejects all but these two.
        expected = "development" if name == "dev" else "production"
        if mode != expected:
            errors.append(f"{where}: target {name} has mode {mode!r}, expected {expected!r}")
        if mode == "production" and not (spec.get("workspace") or {}).get("root_path"):
            errors.append(f"{where}: production target {name} must set workspace.root_path")
    if not (bundle.targets.get("dev") or {}).get("default"):
        errors.append(f"{where}: dev must be the default target")
    return errors


def _tasks(job: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any] | None]]:
    """Each top-level task and, for a for_each task, the task it repeats."""
    for task in job.get("tasks") or []:
        inner = (task.get("for_each_task") or {}).get("task")
        yield task, inner


def _job_errors(bundle: BundleConfig, project: Project) -> list[str]:
    errors: list[str] = []
    for key, (path, job) in bundle.resources("jobs").items():
        where = f"{path}: job {key}"
        cluster_keys = [c.get("job_cluster_key") for c in job.get("job_clusters") or []]
        if len(cluster_keys) != len(set(cluster_keys)):
            errors.append(f"{where}: duplicate job_cluster_key in {cluster_keys}")
        for cluster in job.get("job_clusters") or []:
            errors += _cluster_errors(f"{where} cluster {cluster.get('job_cluster_key')}", cluster)
        task_keys = [task.get("task_key") for task, _ in _tasks(job)]
        if len(task_keys) != len(set(task_keys)):
            errors.append(f"{where}: duplicate task_key in {task_keys}")
        for task, inner in _tasks(job):
            task_where = f"{where} task {task.get('task_key')}"
            for dependency in task.get("depends_on") or []:
                parent = dependency.get("task_key")
                if parent not in task_keys:
                    errors.append(f"{task_where}: depends_on unknown task {parent!r}")
                if parent == task.get("task_key"):
                    errors.append(f"{task_where}: depends on itself")
            for runnable in (task, inner):
                if runnable is None or runnable.get("for_each_task"):
                    continue
                errors += _runnable_errors(
                    task_where, path, bundle.root, runnable, cluster_keys, project
                )
        errors += _cycle_errors(where, job)
        schedule = job.get("schedule")
        pause = (schedule or {}).get("pause_status")
        if schedule is not None and pause != "${var.schedule_pause_status}":
            errors.append(
                f"{where}: schedule.pause_status must be ${{var.schedule_pause_status}} so only "
                f"the target's orchestrator of record schedules it, got {pause!r}"
            )
    return errors


def _runnable_errors(
    where: str,
    path: Path,
    root: Path,
    task: dict[str, Any],
    cluster_keys: list[str | None],
    project: Project,
) -> list[str]:
    errors = []
    if task.get("new_cluster") or task.get("existing_cluster_id"):
        errors.append(f"{where}: use the job's shared job cluster, not a per-task cluster")
    if task.get("job_cluster_key") not in cluster_keys:
        errors.append(
            f"{where}: job_cluster_key {task.get('job_cluster_key')!r} is not one of {cluster_keys}"
        )
    wheel = task.get("python_wheel_task")
    if wheel is None:
        errors.append(f"{where}: every step must be a python_wheel_task")
        return errors
    if wheel.get("package_name") != project.name:
        package = wheel.get("package_name")
        errors.append(f"{where}: package_name {package!r} is not {project.name!r}")
    if wheel.get("entry_point") not in project.scripts:
        errors.append(
            f"{where}: entry_point {wheel.get('entry_point')!r} is not in [project.scripts] "
            f"({sorted(project.scripts)})"
        )
    parameters, problems = _wheel_parameters(wheel)
    errors += [f"{where}: {problem}" for problem in problems]
    missing = [name for name in REQUIRED_TASK_PARAMETERS if name not in parameters]
    if missing:
        errors.append(f"{where}: parameters lack {missing}")
    if parameters.get(RUN_ID_PARAMETER[0]) != RUN_ID_PARAMETER[1]:
        errors.append(f"{where}: parameter run_id must be {RUN_ID_PARAMETER[1]!r}")
    wheels = [lib.get("whl") for lib in task.get("libraries") or [] if lib.get("whl")]
    built = os.path.normpath(root / "dist" / "*.whl")
    if not any(os.path.normpath(path.parent / whl) == built for whl in wheels):
        errors.append(f"{where}: libraries must install the built wheel (dist/*.whl), got {wheels}")
    return errors


def _wheel_parameters(wheel: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The ``--name value`` pairs a wheel task receives, read as the task runtime reads them."""
    problems = []
    if "named_parameters" in wheel and "parameters" in wheel:
        problems.append("set named_parameters or parameters, not both")
    named = wheel.get("named_parameters") or {}
    for name, value in named.items():
        if not isinstance(value, str):
            # An unquoted {{job.run_id}} parses as a YAML mapping, not a string.
            problems.append(f"parameter {name!r} must be a string, got {value!r}")
    listed = wheel.get("parameters") or []
    pairs: dict[str, Any] = {}
    for flag, value in zip(listed[::2], listed[1::2], strict=False):
        if not (isinstance(flag, str) and flag.startswith("--")) or not isinstance(value, str):
            problems.append(f"parameters must be '--name', 'value' string pairs, got {listed!r}")
            break
        pairs[flag[2:]] = value
    if len(listed) % 2:
        problems.append(f"parameters must be '--name', 'value' pairs, got {listed!r}")
    return {**pairs, **named}, problems


def _cluster_errors(where: str, cluster: dict[str, Any]) -> list[str]:
    spec = cluster.get("new_cluster") or {}
    errors = []
    autoscale = spec.get("autoscale") or {}
    if "num_workers" in spec or not {"min_workers", "max_workers"} <= set(autoscale):
        errors.append(f"{where}: must autoscale (autoscale min/max_workers, no num_workers)")
    if not spec.get("policy_id"):
        errors.append(f"{where}: must set policy_id (the cluster policy)")
    clouds = [name for name in SPOT_WITH_FALLBACK if name in spec]
    if not clouds:
        errors.append(f"{where}: must use spot with on-demand fallback (aws/azure_attributes)")
    for cloud in clouds:
        attributes = spec[cloud] or {}
        if attributes.get("availability") != SPOT_WITH_FALLBACK[cloud]:
            errors.append(f"{where}: {cloud}.availability must be {SPOT_WITH_FALLBACK[cloud]}")
        if int(attributes.get("first_on_demand") or 0) < 1:
            errors.append(f"{where}: {cloud}.first_on_demand must be at least 1 (on-demand driver)")
    return errors


def _cycle_errors(where: str, job: dict[str, Any]) -> list[str]:
    edges: dict[str, list[str]] = {
        str(task.get("task_key")): [str(d.get("task_key")) for d in task.get("depends_on") or []]
        for task, _ in _tasks(job)
    }
    done: set[str] = set()
    active: set[str] = set()

    def visit(key: str) -> bool:
        if key in active:
            return True
        if key in done or key not in edges:
            return False
        active.add(key)
        cyclic = any(visit(parent) for parent in edges[key])
        active.discard(key)
        done.add(key)
        return cyclic

    if any(visit(key) for key in edges):
        return [f"{where}: depends_on forms a cycle"]
    return []


def _step_coverage_errors(bundle: BundleConfig, project: Project) -> list[str]:
    """task_key == step name running that step's script; every step in a workflow job and
    in exactly one single-task step job (what Dagster's run-now mode launches)."""
    errors = []
    covered: set[str] = set()
    jobs = bundle.resources("jobs")
    for step in sorted(project.steps):
        key = f"{STEP_JOB_PREFIX}{step}"
        if key not in jobs:
            errors.append(f"step {step!r} has no step job resources.jobs.{key} for run-now")
            continue
        path, job = jobs[key]
        if [t.get("task_key") for t in job.get("tasks") or []] != [step]:
            errors.append(f"{path}: job {key} must have exactly one task, keyed {step!r}")
        if job.get("name") != STEP_JOB_NAME.format(task=step):
            errors.append(
                f"{path}: job {key} is named {job.get('name')!r}, but Dagster's run-now looks "
                f"for {STEP_JOB_NAME.format(task=step)!r}"
            )
        if job.get("schedule") or job.get("trigger"):
            errors.append(f"{path}: step job {key} must not be scheduled: Dagster launches it")
    for key, (path, job) in jobs.items():
        for task, inner in _tasks(job):
            task_key = str(task.get("task_key"))
            runnable = inner or task
            entry_point = (runnable.get("python_wheel_task") or {}).get("entry_point")
            if task_key not in project.steps:
                errors.append(
                    f"{path}: job {key} task {task_key!r} is no pipeline step "
                    f"(fraud_assets.tasks.TASKS: {sorted(project.steps)})"
                )
                continue
            if not key.startswith(STEP_JOB_PREFIX):
                covered.add(task_key)
            if entry_point != project.steps[task_key]:
                errors.append(
                    f"{path}: job {key} task {task_key!r} runs {entry_point!r}, but step "
                    f"{task_key!r} is {project.steps[task_key]!r}"
                )
    for step in sorted(set(project.steps) - covered):
        errors.append(f"step {step!r} ({project.steps[step]}) has no task in any workflow job")
    return errors


def _orchestrator_errors(bundle: BundleConfig) -> list[str]:
    errors = []
    for target in bundle.targets:
        values = bundle.resolved_variables(target)
        orchestrator = values.get("orchestrator")
        pause = values.get("schedule_pause_status")
        if orchestrator not in PAUSE_FOR_ORCHESTRATOR:
            errors.append(
                f"target {target}: orchestrator {orchestrator!r} is not dagster/databricks"
            )
        elif pause != PAUSE_FOR_ORCHESTRATOR[orchestrator]:
            errors.append(
                f"target {target}: orchestrator {orchestrator} needs schedule_pause_status "
                f"{PAUSE_FOR_ORCHESTRATOR[orchestrator]}, got {pause!r}: both would schedule jobs"
            )
    prod = bundle.targets.get("prod") or {}
    if not (prod.get("run_as") or {}).get("service_principal_name"):
        errors.append("target prod: run_as.service_principal_name must be set")
    if not prod.get("permissions"):
        errors.append("target prod: permissions must be set")
    return errors


def _serving_errors(main: BundleConfig, serving: BundleConfig) -> list[str]:
    errors = []
    for key, (path, _) in main.resources("model_serving_endpoints").items():
        errors.append(
            f"{path}: serving endpoint {key} belongs in {SERVING_BUNDLE}/databricks.yml: in the "
            "main bundle it breaks the first deploy (no model version exists yet)"
        )
    if not serving.resources("model_serving_endpoints"):
        errors.append(f"{serving.root}/databricks.yml: declares no model_serving_endpoints")
    if serving.main.get("run_as") or any((t or {}).get("run_as") for t in serving.targets.values()):
        errors.append(f"{serving.root}/databricks.yml: serving endpoints do not support run_as")
    for key, (path, endpoint) in serving.resources("model_serving_endpoints").items():
        config = endpoint.get("config") or {}
        entities = {e.get("name") for e in config.get("served_entities") or []}
        routes = (config.get("traffic_config") or {}).get("routes") or []
        if {"champion", "challenger"} - entities:
            errors.append(f"{path}: endpoint {key} must serve a champion and a challenger entity")
        for route in routes:
            entity = route.get("served_entity_name")
            if entity not in entities:
                errors.append(f"{path}: endpoint {key} routes to unknown entity {entity!r}")
    return errors


def _artifact_errors(bundle: BundleConfig) -> list[str]:
    artifacts = (bundle.main.get("artifacts") or {}).values()
    wheels = [a for a in artifacts if (a or {}).get("type") == "whl"]
    where = f"{bundle.root}/databricks.yml"
    if not wheels:
        return [f"{where}: no whl artifact builds the project's wheel"]
    if not any("--wheel" in str(a.get("build", "")) for a in wheels):
        return [f"{where}: the whl artifact must build with `... build --wheel`"]
    return []


def _storage_errors(bundle: BundleConfig) -> list[str]:
    """The landing and Pipes Volumes exist where the code looks, the landing one cannot be
    destroyed, staging and prod own the schema, and every Volume and schema grants to the
    bundle's principals (variables, never a hard-coded name)."""
    from fraud_assets.claims.landing import LANDING_VOLUME

    errors: list[str] = []
    volumes = bundle.resources("volumes")
    by_name = {spec.get("name"): (key, path, spec) for key, (path, spec) in volumes.items()}
    for name in (LANDING_VOLUME, PIPES_VOLUME):
        if name not in by_name:
            errors.append(f"no resources.volumes entry named {name!r}: the code reads it")
            continue
        key, path, spec = by_name[name]
        for field_name, expected in STORAGE_PLACE.items():
            if spec.get(field_name) != expected:
                errors.append(
                    f"{path}: volume {key} {field_name} is {spec.get(field_name)!r}, "
                    f"expected {expected} (where the code looks for it)"
                )
    if LANDING_VOLUME in by_name:
        key, path, spec = by_name[LANDING_VOLUME]
        if not (spec.get("lifecycle") or {}).get("prevent_destroy"):
            errors.append(f"{path}: volume {key} needs lifecycle.prevent_destroy")
    securables = [(f"volume {key}", path, spec) for key, (path, spec) in volumes.items()]
    main_path = bundle.root / "databricks.yml"
    for target in OWNED_SCHEMA_TARGETS:
        schemas = ((bundle.targets.get(target) or {}).get("resources") or {}).get("schemas")
        owned = [spec for spec in (schemas or {}).values() if spec]
        if not any(
            spec.get("name") == "${var.schema}" and spec.get("catalog_name") == "${var.catalog}"
            for spec in owned
        ):
            errors.append(
                f"{main_path}: target {target} must declare the schema ${{var.schema}} in "
                "${var.catalog} (resources.schemas), so its grants cover every table"
            )
        securables += [(f"target {target} schema", main_path, spec) for spec in owned]
    for what, path, spec in securables:
        grants = spec.get("grants") or []
        if not grants:
            errors.append(f"{path}: {what} has no grants")
        for grant in grants:
            principal = str(grant.get("principal", ""))
            if not re.fullmatch(r"\$\{var\.[A-Za-z_]+\}", principal):
                errors.append(
                    f"{path}: {what} grants to {principal!r}: name principals by variable "
                    "(${var.operators_group}, ...), as run_as and permissions do"
                )
    return errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--schema", type=Path, default=None, help="bundle JSON schema (default: see above)"
    )
    parser.add_argument("--repo-root", type=Path, default=REPO_ROOT)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with tempfile.TemporaryDirectory() as scratch:
        schema, source = resolve_schema(args.schema, Path(scratch))
        log.info("bundle schema: %s", source)
        errors = schema_errors(bundle_files(args.repo_root), schema)
    errors += cross_file_errors(args.repo_root)
    for error in errors:
        log.error(error)
    if errors:
        log.error("bundle check failed: %d problem(s)", len(errors))
        return 1
    log.info("bundle check passed: schema and cross-file rules")
    return 0


if __name__ == "__main__":
    sys.exit(main())
