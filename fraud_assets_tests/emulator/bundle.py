"""Deploy the bundle's own job definitions into the emulator, as ``databricks bundle deploy``.

Reads ``databricks.yml`` and ``resources/*.yml``, resolves the ``${...}`` references the
jobs and Volumes use for one target, applies development mode's name prefixes (``[dev
<user>]`` for jobs, ``dev_<user>_`` for Unity Catalog names), and creates each job, or each
Volume with its grants. Only what a run needs is resolved; the rest stays literal.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from fraud_assets_tests.emulator import USER_NAME, DatabricksEmulator

REPO_ROOT = Path(__file__).resolve().parents[2]


def _target_references(target: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The target's spec and the ``${...}`` values the bundle's resources use."""
    bundle = yaml.safe_load((REPO_ROOT / "databricks.yml").read_text(encoding="utf-8"))
    target_spec = bundle["targets"][target] or {}
    variables = {
        name: spec.get("default") for name, spec in (bundle.get("variables") or {}).items()
    }
    variables.update(target_spec.get("variables") or {})
    references = {
        "bundle.target": target,
        "bundle.name": bundle["bundle"]["name"],
        **{f"var.{name}": value for name, value in variables.items() if value is not None},
        "resources.registered_models.fraud_detector.name": variables.get("model_name"),
        "resources.experiments.fraud_experiment.name": variables.get("experiment_name"),
    }
    return target_spec, references


# How development mode renames each kind of resource for the deploying user.
_DEV_NAMES = {
    "jobs": lambda user, name: f"[dev {user}] {name}",
    "volumes": lambda user, name: f"dev_{user}_{name}",
}


def _resources(kind: str, target: str, files: str) -> dict[str, dict[str, Any]]:
    """Every resource of ``kind`` in ``files``, resolved for ``target``, renamed as
    development mode renames it."""
    target_spec, references = _target_references(target)
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(REPO_ROOT.glob(files)):
        resources = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("resources") or {}
        for key, spec in (resources.get(kind) or {}).items():
            found[key] = _resolve(spec, references)
    if target_spec.get("mode") == "development":
        user = USER_NAME.split("@")[0]
        for spec in found.values():
            spec["name"] = _DEV_NAMES[kind](user, spec["name"])
    return found


def bundle_jobs(target: str, *, files: str = "resources/*.yml") -> dict[str, dict[str, Any]]:
    """Every job the bundle defines, resolved for ``target``, by resource key."""
    return _resources("jobs", target, files)


def bundle_volumes(target: str, *, files: str = "resources/*.yml") -> dict[str, dict[str, Any]]:
    """Every UC Volume the bundle defines, resolved for ``target``, by resource key;
    development mode prefixes Unity Catalog names with ``dev_<user>_``."""
    return _resources("volumes", target, files)


def deploy(emulator: DatabricksEmulator, target: str, *, files: str) -> dict[str, int]:
    """Create the bundle's jobs from ``files`` in the emulator; returns job ids by key."""
    return {key: emulator.create_job(job) for key, job in bundle_jobs(target, files=files).items()}


def deploy_volumes(
    emulator: DatabricksEmulator, target: str, *, files: str = "resources/*.yml"
) -> dict[str, str]:
    """Create the bundle's Volumes, with their grants, in the emulator; returns each
    Volume's ``/Volumes`` path by resource key."""
    return {
        key: emulator.create_volume(
            f"{spec['catalog_name']}.{spec['schema_name']}.{spec['name']}",
            grants=spec.get("grants") or [],
        )
        for key, spec in bundle_volumes(target, files=files).items()
    }


def _resolve(value: Any, references: dict[str, Any]) -> Any:
    if isinstance(value, dict):
        return {k: _resolve(v, references) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, references) for v in value]
    if isinstance(value, str):
        return re.sub(
            r"\$\{([\w.]+)\}",
            lambda m: str(references.get(m.group(1), m.group(0))),
            value,
        )
    return value
