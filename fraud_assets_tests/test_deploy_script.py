"""scripts/deploy.py: the exact commands per target, and its decisions on real CLI answers.

No workspace, registry or cluster exists here, so the CLIs it calls (databricks, docker,
helm, git) are replaced by a recorder on PATH that answers with canned JSON.
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

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "scripts"))

import deploy  # noqa: E402

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
    assert _steps(_dry_run("dev")) == ["bundle", "image", "dagster", "serving"]
    assert _steps(_dry_run("staging")) == ["bundle", "image", "dagster", "serving", "smoke"]
    prod = _dry_run("prod")
    assert _steps(prod) == [
        "record-champion",
        *("bundle", "image", "dagster", "serving", "smoke", "tag"),
    ]
    assert any(
        line.startswith("$ databricks registered-models get fraud_prod.claims.fraud_detector ")
        for line in prod
    )
    assert (
        f"$ python scripts/orchestrate.py launch --target prod --job drift_monitoring_job "
        f"--git-sha {SHA} --wait"
    ) in prod
    tag = next(line for line in prod if line.startswith("$ git tag"))
    assert tag.startswith("$ git tag --annotate prod-") and f"-{SHA[:7]} {SHA} -m" in tag


def test_only_and_validate_only_select_steps() -> None:
    assert _steps(_dry_run("prod", "--only", "serving")) == ["serving"]
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
    assert deploy.missing_environment("dev", ["image", "dagster"], {}) == []


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

    def answer(self, prefix: list[str], stdout: Any = "", exit_code: int = 0) -> None:
        text = stdout if isinstance(stdout, str) else json.dumps(stdout)
        self.rules.append({"prefix": prefix, "stdout": text, "exit": exit_code})
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

    assert _deploy("staging", "--only", "bundle,image,dagster,serving") == 0

    calls = fake_cli.calls()
    assert ["databricks", "bundle", "deploy", "-t", "staging", "--var", f"git_sha={SHA}"] in calls
    assert ["docker", "push", f"{IMAGE_REPOSITORY}:{SHA}"] in calls
    assert any(c[:3] == ["helm", "upgrade", "--install"] for c in calls)
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
