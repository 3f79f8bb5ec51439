"""The README stays true: its schema table is the code's schema, its commands exist."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from fraud_assets.claims.schema import CLAIM_SCHEMA

REPO_ROOT = Path(__file__).resolve().parents[1]
README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")

_ARROW_NAMES = {"string": "string", "date32[day]": "date", "double": "float64", "int32": "int32"}


def test_readme_opens_with_the_demo_and_test_commands() -> None:
    first_block = re.search(r"```bash\n(.*?)```", README, re.S)
    assert first_block is not None
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines()]
    assert commands[:2] == ["make demo", "make test"]


def test_ci_runs_the_readme_test_command() -> None:
    ci = (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert re.search(r"^make test$", ci, re.M)


def test_schema_table_matches_the_canonical_schema() -> None:
    rows = re.findall(r"^\| `(\w+)` \| (\w+) \| (yes|no) \|", README, re.M)
    documented = [(name, kind, nullable == "yes") for name, kind, nullable in rows]
    expected = [(f.name, _ARROW_NAMES[str(f.type)], f.nullable) for f in CLAIM_SCHEMA]
    assert documented == expected


def test_every_make_target_in_the_readme_exists() -> None:
    targets = set(re.findall(r"^\s*make ([a-z0-9-]+)", README, re.M))
    assert targets, "the README shows no make commands"
    listed = subprocess.run(
        ["make", "-qp"], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    ).stdout
    defined = set(re.findall(r"^([a-z][a-z0-9-]*):", listed, re.M))
    assert targets <= defined, f"README names undefined make targets: {targets - defined}"


def test_every_readme_make_command_resolves_on_a_clone_with_nothing_beside_it(
    tmp_path: Path,
) -> None:
    """Issue 19: `make -n` of each README command, in a clone with no ../shared beside it,
    finds every file its recipe and prerequisites need (dry run: nothing is executed)."""
    clone = tmp_path / "alone" / "fraud_assets"
    clone.mkdir(parents=True)
    for name in (
        "Makefile",
        "pyproject.toml",
        "requirements.lock",
        "package.json",
        "package-lock.json",
    ):
        shutil.copy2(REPO_ROOT / name, clone / name)
    commands = sorted(set(re.findall(r"^\s*(make [a-z0-9-]+(?: [A-Z_]+=\S+)*)", README, re.M)))
    assert "make demo" in commands and "make bundle-check" in commands
    for command in commands:
        result = subprocess.run(
            [*command.split(), "-n"], cwd=clone, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, (command, result.stderr)
        assert "../shared" not in result.stdout, (command, result.stdout)
