"""Installs are reproducible (issue 19): every install path takes its versions from one lock.

``requirements.lock`` pins the whole resolved set CI tests (every extra, every platform);
``make install``, the GitHub workflows and the Dagster code image install from it, and
``make lock`` refreshes it.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO_ROOT = Path(__file__).resolve().parents[1]
LOCK = REPO_ROOT / "requirements.lock"


def _pins() -> dict[str, list[Version]]:
    pins: dict[str, list[Version]] = {}
    for line in LOCK.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", line)
        if match:
            pins.setdefault(canonicalize_name(match.group(1)), []).append(Version(match.group(2)))
    return pins


def _declared() -> list[Requirement]:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = [Requirement(r) for r in project["dependencies"]]
    for extra in project["optional-dependencies"].values():
        declared += [Requirement(r) for r in extra if not r.startswith("fraud_assets[")]
    return declared


def test_the_lock_pins_every_declared_dependency_within_its_range() -> None:
    pins = _pins()
    for requirement in _declared():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} is not in requirements.lock: run `make lock`"
        for version in pins[name]:
            assert version in requirement.specifier, (
                f"requirements.lock pins {name}=={version}, outside {requirement}: run `make lock`"
            )


def test_every_line_of_the_lock_is_an_exact_pin_or_a_comment() -> None:
    for line in LOCK.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        assert not stripped or stripped.startswith("#") or "==" in stripped, line


def test_make_install_and_the_image_install_from_the_lock() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"\$\(UV\) pip install .*-r requirements\.lock", makefile)
    # The lock is installed as listed (no second resolution), so the recipe checks the set.
    install = re.search(r"^\$\(BIN\)/\.installed:.*\n((?:\t.*\n)+)", makefile, re.M)
    assert install, "no $(BIN)/.installed recipe"
    recipe = install.group(1)
    assert "--no-deps" in recipe and "$(UV) pip check" in recipe, recipe
    assert re.search(r"^lock: .*\n\t\$\(UV\) pip compile pyproject\.toml", makefile, re.M)
    dockerfile = (REPO_ROOT / "deploy" / "Dockerfile").read_text(encoding="utf-8")
    installs = re.findall(r"pip install [^\n]*", dockerfile)
    assert installs and all("requirements.lock" in i for i in installs), installs


def test_every_workflow_install_takes_the_locked_versions() -> None:
    for workflow in sorted((REPO_ROOT / ".github" / "workflows").glob("*.yml")):
        for command in re.findall(r"pip install [^\n]*", workflow.read_text(encoding="utf-8")):
            assert "requirements.lock" in command or "--no-deps -e ." in command, (
                f"{workflow.name}: `{command}` does not install from requirements.lock"
            )
