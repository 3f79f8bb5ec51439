"""The README stays true: its schema table is the code's schema, its commands exist."""

from __future__ import annotations

import re
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
