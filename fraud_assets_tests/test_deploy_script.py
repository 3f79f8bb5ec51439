"""scripts/deploy.py: the exact commands per target, and its decisions on real CLI answers.

No workspace, registry or cluster exists here, so the CLIs it calls (databricks, docker,
helm, git) are replaced by a recorder on PATH that answers with canned JSON, and what it
does through the SDK (the wheel upload) goes to the loopback Databricks emulator.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster import DagsterInstance
from databricks.sdk import WorkspaceClient

from fraud_assets.databricks.credentials import resolve_credentials, workspace_client
from fraud_assets.databricks.launch import find_job_id
from fraud_assets.resources.compute.databricks import DatabricksPipesCompute
from fraud_assets.resources.defaults import default_compute
from fraud_assets.resources.workspace import DatabricksWorkspace
from fraud_assets.settings import DatabricksSettings, get_settings
from fraud_assets.tasks import TASKS, task_spec
from fraud_assets_tests.emulator import DatabricksEmulator, bundle
from fraud_assets_tests.emulator.fixtures import SENTINEL_TOKEN
from fraud_assets_tests.emulator.probe_job import PROBE_SPEC, run_probe

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "scripts"))

import deploy  # noqa: E402

pytest_plugins = ["fraud_assets_tests.emulator.fixtures"]

SHA = "0123456789abcdef0123456789abcdef01234567"
IMAGE_REPOSITORY = "ghcr.io/acme/fraud-assets"


@functools.cache
def _dry_run(target: str, *extra: str) -> list[str]:
    result = subprocess.run(
        [
            sys.executable,
            "scripts/deploy.py",
            "--target",
            target,
            "--dry-run",
            "--git-sha",
            SHA,
            "--image-repository",
            IMAGE_REPOSITORY,
            *extra,
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.splitlines()


def _helm(target: str) -> str:
    return (
        f"$ helm upgrade --install fraud-assets-{target} dagster-user-deployments "
        f"--repo https://dagster-io.github.io/helm --version {version('dagster')} "
        f"--namespace dagster-{target} --values deploy/helm/values-{target}.yaml "
        "--values dagster-release-values.yaml "
        f"--set-string 'deployments[0].image.repository={IMAGE_REPOSITORY}' "
        f"--set-string 'deployments[0].image.tag={SHA}' --wait --timeout 10m"
    )


def _steps(lines: list[str]) -> list[str]:
    return [line.split()[2] for line in lines if line.startswith("# --- ")]


@pytest.mark.parametrize("target", ["dev", "staging", "prod"])
def test_dry_run_prints_the_exact_bundle_and_dagster_deploy_commands(target: str) -> None:
    lines = _dry_run(target)
    commands = [line for line in lines if line.startswith("$ ")]

    validate = f"$ databricks bundle validate -t {target} --strict --var git_sha={SHA}"
    bundle_deploy = f"$ databricks bundle deploy -t {target} --var git_sha={SHA}"
    assert commands.index(validate) < commands.index(bundle_deploy) < commands.index(_helm(target))
    # Both deploys ship the same commit: the bundle's git_sha and the image tag.
    image = f"{IMAGE_REPOSITORY}:{SHA}"
    if target == "prod":
        assert f"$ docker buildx imagetools inspect {image}" in commands
        assert not any(c.startswith("$ docker build ") for c in commands)
    else:
        build = f"$ docker build --file deploy/Dockerfile --build-arg GIT_SHA={SHA} --tag {image} ."
        assert commands.index(build) < commands.index(f"$ docker push {image}")
    serving = [c for c in commands if c.startswith("$ (cd deploy/serving && databricks bundle")]
    assert len(serving) == 1 and f" deploy -t {target} " in serving[0]


def test_each_target_runs_its_own_steps_in_order() -> None:
    assert _steps(_dry_run("dev")) == ["bundle", "wheel", "image", "dagster", "serving"]
    assert _steps(_dry_run("staging")) == [
        *("bundle", "wheel", "image", "dagster", "serving", "smoke"),
    ]
    prod = _dry_run("prod")
    assert _steps(prod) == [
        "record-champion",
        *("bundle", "wheel", "image", "dagster", "serving", "smoke", "tag"),
    ]
    assert any(
        line.startswith("$ databricks registered-models get fraud_prod.claims.fraud_detector ")
        for line in prod
    )
    assert (
        f"$ python scripts/orchestrate.py launch --target prod --job drift_monitoring_job "
        f"--git-sha {SHA} --wait --skip-without-champion"
    ) in prod
    tag = next(line for line in prod if line.startswith("$ git tag"))
    assert tag.startswith("$ git tag --annotate prod-") and f"-{SHA[:7]} {SHA} -m" in tag


def test_the_dry_run_shows_where_the_wheel_goes_and_what_dagster_is_handed() -> None:
    lines = _dry_run("staging")
    wheel = f"fraud_assets-{version('fraud_assets')}-py3-none-any.whl"
    destination = (
        f"/Volumes/fraud_staging/claims/artifacts/wheels/{version('fraud_assets')}/{SHA}/{wheel}"
    )
    assert f"# upload dist/{wheel} to {destination} (Files API)" in lines
    assert "#   FRAUD_DATABRICKS__LAUNCH_STYLE=run_now" in lines
    assert f"#   FRAUD_DATABRICKS__WHEEL_PATH={destination}" in lines
    assert "#   FRAUD_DATABRICKS__VOLUME_PATH=/Volumes/fraud_staging/claims/pipes" in lines
    # The wheel is uploaded after the bundle deploy that builds it, before Helm runs.
    bundle_deploy = lines.index(f"$ databricks bundle deploy -t staging --var git_sha={SHA}")
    helm = next(i for i, line in enumerate(lines) if line.startswith("$ helm upgrade"))
    upload = lines.index(f"# upload dist/{wheel} to {destination} (Files API)")
    assert bundle_deploy < upload < helm


def test_only_and_validate_only_select_steps() -> None:
    assert _steps(_dry_run("prod", "--only", "serving")) == ["serving"]
    # What the code location is handed comes from the wheel step: dagster never goes alone.
    assert _steps(_dry_run("staging", "--only", "dagster")) == ["wheel", "dagster"]
    lines = _dry_run("staging", "--validate-only")
    assert lines[0] == f"$ databricks bundle validate -t staging --strict --var git_sha={SHA}"
    assert lines[1].startswith("$ (cd deploy/serving && databricks bundle validate -t staging ")
    assert "--var model_full_name=fraud_staging.claims.fraud_detector" in lines[1]


@pytest.mark.parametrize(
    ("aliases", "expected"),
    [
        ({}, None),
        ({"challenger": "4"}, None),
        ({"champion": "3"}, deploy.ServingPlan("3", "3", 0)),
        ({"champion": "3", "challenger": "3"}, deploy.ServingPlan("3", "3", 0)),
        ({"champion": "3", "challenger": "4"}, deploy.ServingPlan("3", "4", 10)),
    ],
)
def test_serving_plan_follows_the_aliases(
    aliases: dict[str, str], expected: deploy.ServingPlan | None
) -> None:
    assert deploy.serving_plan(aliases, challenger_share=0.1) == expected


def test_serving_plan_traffic_always_adds_to_one_hundred() -> None:
    for share in (-0.5, 0.0, 0.25, 0.333, 1.0, 3.0):
        plan = deploy.serving_plan({"champion": "1", "challenger": "2"}, challenger_share=share)
        assert plan is not None
        assert 0 <= plan.challenger_traffic_percentage <= 100
        assert plan.champion_traffic_percentage + plan.challenger_traffic_percentage == 100


def test_model_name_and_aliases_come_from_cli_json() -> None:
    summary = {
        "resources": {
            "registered_models": {
                "fraud_detector": {
                    "catalog_name": "fraud_dev",
                    "schema_name": "claims",
                    "name": "dev_alice_fraud_detector",
                }
            }
        }
    }
    assert deploy.model_full_name(summary) == "fraud_dev.claims.dev_alice_fraud_detector"
    with pytest.raises(deploy.DeployError, match=r"no registered_models\.fraud_detector"):
        deploy.model_full_name({"resources": {}})
    model = {"aliases": [{"alias_name": "champion", "version_num": 7}, {"alias_name": "x"}]}
    assert deploy.model_aliases(model) == {"champion": "7"}


def test_a_real_deploy_names_every_missing_credential() -> None:
    env = {"DATABRICKS_HOST": "", "DATABRICKS_CLIENT_ID": "id"}
    missing = deploy.missing_environment("staging", ["bundle", "smoke"], env)
    assert missing == [
        "DATABRICKS_HOST",
        "DATABRICKS_CLIENT_ID and DATABRICKS_CLIENT_SECRET (or DATABRICKS_TOKEN)",
        "BUNDLE_VAR_service_principal",
        "DAGSTER_GRAPHQL_URL",
    ]
    ready = {
        "DATABRICKS_HOST": "https://x",
        "DATABRICKS_TOKEN": "t",
        "BUNDLE_VAR_service_principal": "sp",
        "DAGSTER_GRAPHQL_URL": "http://d/graphql",
    }
    assert deploy.missing_environment("prod", deploy.STEPS, ready) == []
    assert deploy.missing_environment("dev", ["image"], {}) == []
    # The code location is handed what the wheel step read from the workspace.
    assert "DATABRICKS_HOST" in deploy.missing_environment("dev", ["wheel", "dagster"], {})


# --- the real (not dry) path, against recorded CLIs ---------------------------------------

FAKE_CLI = r"""#!{python}
import json, os, sys
name = os.path.basename(sys.argv[0])
argv = [name, *sys.argv[1:]]
with open(os.environ["FAKE_CLI_LOG"], "a") as log:
    log.write(json.dumps({{"argv": argv, "cwd": os.getcwd()}}) + "\n")
rules = json.load(open(os.environ["FAKE_CLI_RULES"]))
for rule in rules:
    if argv[: len(rule["prefix"])] == rule["prefix"]:
        for path, text in rule.get("write", {{}}).items():
            os.makedirs(os.path.dirname(path), exist_ok=True)
            open(path, "w").write(text)
        sys.stdout.write(rule.get("stdout", ""))
        sys.exit(rule.get("exit", 0))
"""


class FakeCli:
    """databricks, docker, helm and git on PATH: each call is logged and answered by rules."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        bin_dir = root / "bin"
        bin_dir.mkdir()
        for name in ("databricks", "docker", "helm", "git"):
            path = bin_dir / name
            path.write_text(FAKE_CLI.format(python=sys.executable))
            path.chmod(0o755)
        self.log = root / "calls.jsonl"
        self.rules_file = root / "rules.json"
        self.rules: list[dict[str, Any]] = []
        self.log.touch()
        monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
        monkeypatch.setenv("FAKE_CLI_LOG", str(self.log))
        monkeypatch.setenv("FAKE_CLI_RULES", str(self.rules_file))
        self._save()

    def answer(
        self,
        prefix: list[str],
        stdout: Any = "",
        exit_code: int = 0,
        writes: dict[str, str] | None = None,
    ) -> None:
        """Answer commands starting with ``prefix``; ``writes`` are files (relative to the
        command's folder) it leaves behind, as ``bundle deploy`` leaves the built wheel."""
        text = stdout if isinstance(stdout, str) else json.dumps(stdout)
        rule = {"prefix": prefix, "stdout": text, "exit": exit_code, "write": writes or {}}
        self.rules.append(rule)
        self._save()

    def _save(self) -> None:
        self.rules_file.write_text(json.dumps(self.rules))

    def calls(self) -> list[list[str]]:
        return [json.loads(line)["argv"] for line in self.log.read_text().splitlines()]


@pytest.fixture
def fake_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeCli]:
    for name in ("DATABRICKS_HOST", "DATABRICKS_TOKEN", "BUNDLE_VAR_service_principal"):
        monkeypatch.setenv(name, f"test-{name.lower()}")
    monkeypatch.delenv("FRAUD_SERVING__CHALLENGER_TRAFFIC", raising=False)
    yield FakeCli(tmp_path, monkeypatch)


SUMMARY = {
    "resources": {
        "registered_models": {
            "fraud_detector": {
                "catalog_name": "fraud_staging",
                "schema_name": "claims",
                "name": "fraud_detector",
            }
        }
    }
}
MODEL = "fraud_staging.claims.fraud_detector"


def _deploy(target: str, *extra: str) -> int:
    return deploy.main(
        ["--target", target, "--git-sha", SHA, "--image-repository", IMAGE_REPOSITORY, *extra]
    )


def test_first_deploy_without_a_champion_deploys_everything_but_the_endpoint(
    fake_cli: FakeCli,
) -> None:
    fake_cli.answer(["databricks", "bundle", "summary"], SUMMARY)
    fake_cli.answer(["databricks", "registered-models", "get"], {"full_name": MODEL, "aliases": []})

    assert _deploy("staging", "--only", "bundle,image,serving") == 0

    calls = fake_cli.calls()
    assert ["databricks", "bundle", "deploy", "-t", "staging", "--var", f"git_sha={SHA}"] in calls
    assert ["docker", "push", f"{IMAGE_REPOSITORY}:{SHA}"] in calls
    assert ["databricks", "registered-models", "get", MODEL, "--include-aliases", "-o", "json"] in (
        calls
    )
    assert not [c for c in calls if "model_full_name" in " ".join(c)]


def test_once_a_champion_exists_the_endpoint_serves_champion_and_challenger(
    fake_cli: FakeCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FRAUD_SERVING__CHALLENGER_TRAFFIC", "0.2")
    fake_cli.answer(["databricks", "bundle", "summary"], SUMMARY)
    aliases = [
        {"alias_name": "champion", "version_num": 3},
        {"alias_name": "challenger", "version_num": 5},
    ]
    fake_cli.answer(["databricks", "registered-models", "get"], {"aliases": aliases})

    assert _deploy("staging", "--only", "serving") == 0

    serving = [c for c in fake_cli.calls() if "model_full_name" in " ".join(c)]
    assert len(serving) == 1
    assert serving[0][:5] == ["databricks", "bundle", "deploy", "-t", "staging"]
    variables = dict(v.split("=", 1) for v in serving[0][6::2])
    assert variables == {
        "model_full_name": MODEL,
        "champion_version": "3",
        "challenger_version": "5",
        "champion_traffic_percentage": "80",
        "challenger_traffic_percentage": "20",
        "catalog": "fraud_staging",
        "schema": "claims",
        "git_sha": SHA,
    }


def test_prod_records_the_champion_before_changing_anything(
    fake_cli: FakeCli, tmp_path: Path
) -> None:
    record = tmp_path / "champion.json"
    fake_cli.answer(
        ["databricks", "registered-models", "list"],
        [{"full_name": "fraud_prod.claims.fraud_detector"}],
    )
    fake_cli.answer(
        ["databricks", "registered-models", "get"],
        {"aliases": [{"alias_name": "champion", "version_num": 12}]},
    )
    fake_cli.answer(["databricks", "bundle", "deploy"], exit_code=1)

    code = _deploy("prod", "--only", "record-champion,bundle,dagster", "--record-file", str(record))

    assert code == 1, "a failed bundle deploy must fail the deploy"
    saved = json.loads(record.read_text())
    assert saved["champion_version"] == "12"
    assert saved["model"] == "fraud_prod.claims.fraud_detector"
    assert saved["deploying_git_sha"] == SHA
    calls = fake_cli.calls()
    assert calls[0][:3] == ["databricks", "registered-models", "list"]
    assert not any(c[0] == "helm" for c in calls), "nothing runs after a failed step"


def test_prod_first_release_records_no_champion(fake_cli: FakeCli, tmp_path: Path) -> None:
    record = tmp_path / "champion.json"
    fake_cli.answer(["databricks", "registered-models", "list"], [])

    assert _deploy("prod", "--only", "record-champion", "--record-file", str(record)) == 0

    assert json.loads(record.read_text())["champion_version"] is None
    assert not any(c[:3] == ["databricks", "registered-models", "get"] for c in fake_cli.calls())


def test_missing_credentials_stop_the_deploy_before_any_command(
    fake_cli: FakeCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABRICKS_HOST", "")
    assert _deploy("dev") == 2
    assert fake_cli.calls() == []


def test_the_staging_smoke_run_ingests_the_named_claims_file() -> None:
    source = "/Volumes/fraud_staging/claims/landing/smoke_claims.csv"
    extra = ("--smoke-source-path", source, "--smoke-mapping", "auto_insurance_claims")
    staging = _dry_run("staging", *extra)
    assert (
        f"$ python scripts/orchestrate.py launch --target staging --job ingestion_job "
        f"--git-sha {SHA} --wait --source-path {source} --mapping auto_insurance_claims"
    ) in staging
    # prod validates with drift_monitoring_job, which ingests nothing
    assert not any("--source-path" in line for line in _dry_run("prod", *extra))
    assert not any("--source-path" in line for line in _dry_run("staging"))


# --- the wheel step: what is uploaded, and what the deployed Dagster is handed --------------

WHEEL_NAME = "fraud_assets-0.1.0-py3-none-any.whl"
STAGING_WHEELS = f"/Volumes/fraud_staging/claims/artifacts/wheels/0.1.0/{SHA}"


def _client(emulator: DatabricksEmulator) -> WorkspaceClient:
    credentials = resolve_credentials(
        host=emulator.host, token=SENTINEL_TOKEN, client_id=None, client_secret=None
    )
    return workspace_client(credentials, DatabricksSettings.model_validate({}))


def _bundle_deployed(emulator: DatabricksEmulator, target: str) -> dict[str, int]:
    """What `databricks bundle deploy` leaves in the workspace: Volumes and step jobs."""
    volumes = bundle.deploy_volumes(emulator, target)
    assert {deploy.WHEEL_VOLUME, deploy.PIPES_VOLUME, deploy.LANDING_VOLUME} <= set(volumes)
    ids = bundle.deploy(emulator, target, files="resources/step-jobs-resource.yml")
    return {key.removeprefix("step_"): job_id for key, job_id in ids.items()}


def test_the_wheel_lands_once_per_commit_and_dagster_is_handed_its_path(
    emulator: DatabricksEmulator, tmp_path: Path
) -> None:
    job_ids = _bundle_deployed(emulator, "staging")
    wheel = tmp_path / WHEEL_NAME
    wheel.write_bytes(b"PK\x03\x04 the release wheel")
    client = _client(emulator)

    handoff = deploy.publish_release(client, "staging", wheel=wheel, git_sha=SHA)

    destination = f"{STAGING_WHEELS}/{WHEEL_NAME}"
    landed = emulator.volumes_root / destination.removeprefix("/Volumes/")
    assert landed.read_bytes() == wheel.read_bytes()
    assert handoff.wheel_path == destination
    assert handoff.environment == {
        "FRAUD_DATABRICKS__LAUNCH_STYLE": "run_now",
        "FRAUD_DATABRICKS__WHEEL_PATH": destination,
        "FRAUD_DATABRICKS__VOLUME_PATH": "/Volumes/fraud_staging/claims/pipes",
        "FRAUD_DATABRICKS__JOB_IDS": json.dumps(job_ids, sort_keys=True),
        "FRAUD_LANDING_DIR": "/Volumes/fraud_staging/claims/landing",
    }
    assert set(job_ids) == set(TASKS)

    # A second deploy of the commit keeps the wheel runs may be installing; another commit
    # gets its own folder and leaves this one alone.
    wheel.write_bytes(b"PK\x03\x04 rebuilt")
    deploy.publish_release(client, "staging", wheel=wheel, git_sha=SHA)
    assert landed.read_bytes() == b"PK\x03\x04 the release wheel"
    assert len(emulator.calls("PUT", "/api/2.0/fs/files/")) == 1
    other = deploy.publish_release(client, "staging", wheel=wheel, git_sha="f" * 40)
    assert other.wheel_path == destination.replace(SHA, "f" * 40)
    assert landed.exists()


def test_the_wheel_step_refuses_a_target_whose_bundle_is_not_deployed(
    emulator: DatabricksEmulator, tmp_path: Path
) -> None:
    wheel = tmp_path / WHEEL_NAME
    wheel.write_bytes(b"PK")
    with pytest.raises(deploy.DeployError, match=r"artifacts .*does not exist: deploy the bundle"):
        deploy.publish_release(_client(emulator), "prod", wheel=wheel, git_sha=SHA)
    with pytest.raises(deploy.DeployError, match="development mode"):
        deploy.publish_release(_client(emulator), "dev", wheel=wheel, git_sha=SHA)
    with pytest.raises(deploy.DeployError, match="not a fraud_assets wheel"):
        deploy.wheel_destination("/Volumes/c/s/artifacts", "other-1.0.tar.gz", SHA)


def _summary(emulator: DatabricksEmulator, job_ids: dict[str, int]) -> dict[str, Any]:
    """`databricks bundle summary -o json` of a development-mode deploy (prefixed names)."""
    volumes = {
        key: {"catalog_name": "fraud_dev", "schema_name": "claims", "name": f"dev_alice_{key}"}
        for key in (deploy.WHEEL_VOLUME, deploy.PIPES_VOLUME, deploy.LANDING_VOLUME)
    }
    for volume in volumes.values():
        emulator.create_volume(f"fraud_dev.claims.{volume['name']}")
    jobs = {f"step_{step}": {"id": str(job_id)} for step, job_id in job_ids.items()}
    return {"resources": {"volumes": volumes, "jobs": jobs, **SUMMARY["resources"]}}


def test_a_deploy_ships_the_bundles_wheel_and_the_deployed_compute_launches_it(
    emulator: DatabricksEmulator,
    fake_cli: FakeCli,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fraud_home: Path,
    dagster_instance: DagsterInstance,
) -> None:
    job_ids = bundle.deploy(emulator, "dev", files="resources/step-jobs-resource.yml")
    job_ids = {key.removeprefix("step_"): job_id for key, job_id in job_ids.items()}
    fake_cli.answer(["databricks", "bundle", "summary"], _summary(emulator, job_ids))
    built = f"dist/{WHEEL_NAME}"
    # The bundle's artifact build leaves the release's one wheel in dist/.
    fake_cli.answer(["databricks", "bundle", "deploy"], writes={built: "the bundle's build"})
    root = tmp_path / "repo"
    (root / "dist").mkdir(parents=True)
    (root / "dist" / "fraud_assets-0.0.9-py3-none-any.whl").write_text("an older build")
    release = deploy.Deploy(
        target="dev",
        git_sha=SHA,
        image_repository=IMAGE_REPOSITORY,
        runner=deploy.Runner(dry_run=False, root=root),
        record_file=tmp_path / "champion.json",
        workspace=lambda: _client(emulator),
    )

    release.run(["bundle", "dagster"])

    wheel_path = f"/Volumes/fraud_dev/claims/dev_alice_artifacts/wheels/0.1.0/{SHA}/{WHEEL_NAME}"
    assert (emulator.volumes_root / wheel_path.removeprefix("/Volumes/")).read_text() == (
        "the bundle's build"
    )
    assert [p.name for p in (root / "dist").iterdir()] == [WHEEL_NAME], "stale wheel removed"
    (helm,) = [c for c in fake_cli.calls() if c[0] == "helm"]
    assert helm[helm.index("--values", helm.index("--values") + 1) + 1] == (
        "dagster-release-values.yaml"
    )
    values = yaml.safe_load((root / "dagster-release-values.yaml").read_text())
    (deployment,) = values["deployments"]
    env = {e["name"]: e["value"] for e in deployment["env"]}
    assert env["FRAUD_TARGET"] == "dev" and env["FRAUD_COMPUTE"] == "databricks"
    assert env["FRAUD_DATABRICKS__WHEEL_PATH"] == wheel_path
    assert env["FRAUD_DATABRICKS__LAUNCH_STYLE"] == "run_now"
    assert env["FRAUD_DATABRICKS__VOLUME_PATH"] == "/Volumes/fraud_dev/claims/dev_alice_pipes"
    assert deployment["envSecrets"] == [{"name": "fraud-assets-dev-credentials"}]
    assert SENTINEL_TOKEN not in (root / "dagster-release-values.yaml").read_text()

    # The code location that starts with this environment (plus its secret) launches ...
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DATABRICKS_HOST", emulator.host)
    monkeypatch.setenv("DATABRICKS_TOKEN", SENTINEL_TOKEN)
    settings = get_settings()
    compute = default_compute(settings, DatabricksWorkspace.from_env())
    assert isinstance(compute, DatabricksPipesCompute)
    # ... run_now: each step's own bundle job, by id (no dev-prefix name lookup needed) ...
    assert compute.launch_style == "run_now" and compute.job_ids == job_ids
    client = _client(emulator)
    for step in TASKS:
        job_id = find_job_id(client, task_spec(step), settings.databricks, target="dev")
        assert job_id == job_ids[step]
        (task,) = client.jobs.get(job_id).settings.tasks  # type: ignore[union-attr]
        assert task.python_wheel_task.entry_point == TASKS[step].script  # type: ignore[union-attr]
    # ... and job_cluster, if chosen, installs the uploaded wheel.
    monkeypatch.setenv("FRAUD_DATABRICKS__LAUNCH_STYLE", "job_cluster")
    monkeypatch.setenv("FRAUD_DATABRICKS__FORWARD_STDIO", "false")
    monkeypatch.setenv("FRAUD_DATABRICKS__POLL_INTERVAL_SECONDS", "0.1")
    monkeypatch.setenv("FRAUD_DATABRICKS__MESSAGE_POLL_INTERVAL_SECONDS", "0.5")
    monkeypatch.setitem(TASKS, PROBE_SPEC.name, PROBE_SPEC)
    result = run_probe(dagster_instance)
    assert result.success
    (run,) = emulator.runs
    (launched,) = run.tasks
    assert launched.spec["libraries"] == [{"whl": wheel_path}]
