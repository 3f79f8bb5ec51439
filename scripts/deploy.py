"""Deploy one target: the Databricks bundle and the Dagster code location, from one commit.

    python scripts/deploy.py --target dev|staging|prod [--dry-run] [--git-sha SHA]
                             [--image-repository REPO] [--only STEP[,STEP...]]

Steps, in order (``record-champion`` and ``tag`` run for prod only, ``smoke`` for staging
and prod):

1. ``record-champion`` (prod): save the model's current champion and challenger versions
   to ``--record-file`` before anything changes, so a bad release can be rolled back;
2. ``bundle``: ``databricks bundle validate --strict`` then ``bundle deploy``, with the
   commit as ``--var git_sha``;
3. ``image``: build and push the code location image tagged with the same commit (dev,
   staging), or, in prod, check that staging already pushed it: prod never rebuilds;
4. ``dagster``: ``helm upgrade --install`` of the dagster-user-deployments chart with that
   image tag, waiting for the code server to be ready;
5. ``serving``: deploy ``deploy/serving`` (the endpoint) when the model has a champion;
   on a first deploy there is none yet, and the step says so instead of failing;
6. ``smoke`` (staging) / ``validate`` (prod): run a job through the target's
   orchestrator of record and wait for it to succeed. Staging refuses synthetic claims, so
   its ``ingestion_job`` ingests ``--smoke-source-path`` (``FRAUD_SMOKE_SOURCE_PATH``, with
   ``FRAUD_SMOKE_SOURCE_MAPPING``), else the code location's own ``FRAUD_SOURCE_PATH``;
7. ``tag`` (prod): tag the released commit and push the tag.

``--dry-run`` prints every command without running any. ``--only serving`` re-syncs the
endpoint after a promotion; ``--validate-only`` validates both bundles (CI).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from _commands import Command, CommandError, Runner

# One plan for a deploy and for every alias move (fraud_assets/tasks/_serving.py).
from fraud_assets.databricks.serving_endpoint import ServingPlan, serving_plan
from fraud_assets.settings import bundle_variables, get_settings

REPO_ROOT = Path(__file__).resolve().parents[1]

TARGETS = ("dev", "staging", "prod")
STEPS = ("record-champion", "bundle", "image", "dagster", "serving", "smoke", "tag")
SERVING_DIR = Path("deploy") / "serving"
DOCKERFILE = Path("deploy") / "Dockerfile"
HELM_VALUES = Path("deploy") / "helm"
HELM_CHART = "dagster-user-deployments"
HELM_REPO = "https://dagster-io.github.io/helm"
MODEL_RESOURCE = "fraud_detector"
# The job each target runs after deploying, through its orchestrator of record.
POST_DEPLOY_JOB = {"staging": "ingestion_job", "prod": "drift_monitoring_job"}
SHA = re.compile(r"^[0-9a-f]{7,40}$")

log = logging.getLogger("deploy")


class DeployError(RuntimeError):
    """A deploy that cannot go on; the message says what to fix."""


# --- pure decisions ---------------------------------------------------------------------


def model_aliases(model: Mapping[str, Any]) -> dict[str, str]:
    """``{alias: version}`` from ``databricks registered-models get --include-aliases``."""
    return {
        str(alias["alias_name"]): str(alias["version_num"])
        for alias in model.get("aliases") or []
        if alias.get("alias_name") and alias.get("version_num") is not None
    }


def model_full_name(summary: Mapping[str, Any]) -> str:
    """catalog.schema.name of the deployed model, as the target named it (dev adds a prefix)."""
    models = (summary.get("resources") or {}).get("registered_models") or {}
    if MODEL_RESOURCE not in models:
        raise DeployError(
            f"`databricks bundle summary` shows no registered_models.{MODEL_RESOURCE}; "
            "was the bundle deployed?"
        )
    model = models[MODEL_RESOURCE]
    return f"{model['catalog_name']}.{model['schema_name']}.{model['name']}"


def release_tag(target: str, git_sha: str, now: datetime) -> str:
    return f"{target}-{now.strftime('%Y%m%dT%H%MZ')}-{git_sha[:7]}"


# --- the deploy ---------------------------------------------------------------------------


@dataclass
class Deploy:
    target: str
    git_sha: str
    image_repository: str
    runner: Runner
    record_file: Path
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    smoke_source_path: str | None = None
    smoke_mapping: str | None = None

    @property
    def variables(self) -> dict[str, Any]:
        return bundle_variables(self.target)

    @property
    def image(self) -> str:
        return f"{self.image_repository}:{self.git_sha}"

    def bundle_commands(self) -> list[Command]:
        var = ("--var", f"git_sha={self.git_sha}")
        return [
            Command(("databricks", "bundle", "validate", "-t", self.target, "--strict", *var)),
            Command(("databricks", "bundle", "deploy", "-t", self.target, *var)),
        ]

    def image_commands(self) -> list[Command]:
        if self.target == "prod":
            # Prod ships the exact image staging tested; a missing tag stops the release.
            return [Command(("docker", "buildx", "imagetools", "inspect", self.image))]
        return [
            Command(
                (
                    "docker",
                    "build",
                    "--file",
                    str(DOCKERFILE),
                    "--build-arg",
                    f"GIT_SHA={self.git_sha}",
                    "--tag",
                    self.image,
                    ".",
                )
            ),
            Command(("docker", "push", self.image)),
        ]

    def dagster_command(self) -> Command:
        return Command(
            (
                "helm",
                "upgrade",
                "--install",
                f"fraud-assets-{self.target}",
                HELM_CHART,
                "--repo",
                HELM_REPO,
                # The chart is released with Dagster itself: same version as the code's.
                "--version",
                version("dagster"),
                "--namespace",
                f"dagster-{self.target}",
                "--values",
                str(HELM_VALUES / f"values-{self.target}.yaml"),
                "--set-string",
                f"deployments[0].image.repository={self.image_repository}",
                "--set-string",
                f"deployments[0].image.tag={self.git_sha}",
                "--wait",
                "--timeout",
                "10m",
            )
        )

    def serving_variables(self, model: str, plan: ServingPlan | None) -> list[str]:
        """The serving bundle's variables; placeholders stand in for a plan not yet known."""
        if plan is None:
            share = round(get_settings().serving.challenger_traffic * 100)
            versions = {
                "champion_version": "<champion version>",
                "challenger_version": "<challenger version, else the champion version>",
                "champion_traffic_percentage": f"<{100 - share}, or 100 without a challenger>",
                "challenger_traffic_percentage": f"<{share}, or 0 without a challenger>",
            }
        else:
            versions = {
                "champion_version": plan.champion_version,
                "challenger_version": plan.challenger_version,
                "champion_traffic_percentage": str(plan.champion_traffic_percentage),
                "challenger_traffic_percentage": str(plan.challenger_traffic_percentage),
            }
        values = {
            "model_full_name": model,
            **versions,
            "catalog": str(self.variables["catalog"]),
            "schema": str(self.variables["schema"]),
            "git_sha": self.git_sha,
        }
        return [part for name, value in values.items() for part in ("--var", f"{name}={value}")]

    def serving_deploy_command(self, model: str, plan: ServingPlan | None) -> Command:
        variables = self.serving_variables(model, plan)
        return Command(
            ("databricks", "bundle", "deploy", "-t", self.target, *variables), SERVING_DIR
        )

    def model_command(self, model: str) -> Command:
        return Command(
            ("databricks", "registered-models", "get", model, "--include-aliases", "-o", "json")
        )

    def summary_command(self) -> Command:
        return Command(("databricks", "bundle", "summary", "-t", self.target, "-o", "json"))

    def post_deploy_command(self) -> Command | None:
        job = POST_DEPLOY_JOB.get(self.target)
        if job is None:
            return None
        source: tuple[str, ...] = ()
        if job == "ingestion_job" and self.smoke_source_path:
            source = ("--source-path", self.smoke_source_path)
            if self.smoke_mapping:
                source += ("--mapping", self.smoke_mapping)
        return Command(
            (
                "python",
                "scripts/orchestrate.py",
                "launch",
                "--target",
                self.target,
                "--job",
                job,
                "--git-sha",
                self.git_sha,
                "--wait",
                *source,
            )
        )

    # -- steps --

    def record_champion(self) -> None:
        """Save the live champion before the release; the file is the rollback's input."""
        values = self.variables
        catalog, schema = str(values["catalog"]), str(values["schema"])
        model = f"{catalog}.{schema}.{values['model_name']}"
        self.runner.show(f"# record the live champion of {model} in {self.record_file}")
        listed = self.runner.json(
            Command(
                (
                    "databricks",
                    "registered-models",
                    "list",
                    "--catalog-name",
                    catalog,
                    "--schema-name",
                    schema,
                    "-o",
                    "json",
                )
            )
        )
        exists = any(m.get("full_name") == model for m in listed or [])
        if self.runner.dry_run:
            self.runner.show("# if the model exists (not on the first deploy):")
        aliases: dict[str, str] = {}
        if exists or self.runner.dry_run:
            aliases = model_aliases(self.runner.json(self.model_command(model)) or {})
        record = {
            "target": self.target,
            "model": model,
            "champion_version": aliases.get("champion"),
            "challenger_version": aliases.get("challenger"),
            "deploying_git_sha": self.git_sha,
            "recorded_at": self.now.isoformat(),
        }
        if self.runner.dry_run:
            return
        self.record_file.write_text(json.dumps(record, indent=2) + "\n")
        if record["champion_version"]:
            log.info(
                "champion before this release: %s version %s; to roll back: "
                "databricks registered-models set-alias %s champion %s && "
                "python scripts/deploy.py --target %s --only serving",
                model,
                record["champion_version"],
                model,
                record["champion_version"],
                self.target,
            )
        else:
            log.info("%s has no champion yet; nothing to roll back to", model)

    def bundle(self) -> None:
        for command in self.bundle_commands():
            self.runner.run(command)

    def image_step(self) -> None:
        for command in self.image_commands():
            self.runner.run(command)

    def dagster(self) -> None:
        self.runner.run(self.dagster_command())

    def serving(self) -> None:
        """Point the endpoint at the champion (and challenger), once a champion exists."""
        summary = self.runner.json(self.summary_command())
        model = model_full_name(summary) if summary is not None else "<model_full_name>"
        aliases = model_aliases(self.runner.json(self.model_command(model)) or {})
        if self.runner.dry_run:
            self.runner.show("# if the model has a champion (skipped on the first deploy):")
            self.runner.run(self.serving_deploy_command(model, None))
            return
        share = get_settings().serving.challenger_traffic
        plan = serving_plan(aliases, challenger_share=share)
        if plan is None:
            log.warning(
                "%s has no champion yet, so the serving endpoint is not deployed. It is "
                "created by the first deploy (or `--only serving`) after a promotion.",
                model,
            )
            return
        log.info(
            "serving %s: champion v%s at %d%%, challenger v%s at %d%%",
            model,
            plan.champion_version,
            plan.champion_traffic_percentage,
            plan.challenger_version,
            plan.challenger_traffic_percentage,
        )
        self.runner.run(self.serving_deploy_command(model, plan))

    def smoke(self) -> None:
        if POST_DEPLOY_JOB.get(self.target) == "ingestion_job" and not self.smoke_source_path:
            log.warning(
                "no FRAUD_SMOKE_SOURCE_PATH: the %s smoke run ingests the code location's "
                "FRAUD_SOURCE_PATH, and fails if that is unset (%s refuses synthetic claims)",
                self.target,
                self.target,
            )
        command = self.post_deploy_command()
        if command is not None:
            self.runner.run(command)

    def tag(self) -> None:
        name = release_tag(self.target, self.git_sha, self.now)
        message = f"fraud_assets {self.target} release of {self.git_sha}"
        self.runner.run(Command(("git", "tag", "--annotate", name, self.git_sha, "-m", message)))
        self.runner.run(Command(("git", "push", "origin", f"refs/tags/{name}")))

    def validate_only(self) -> None:
        """Validate both bundles without deploying (the serving one with stand-in versions)."""
        self.runner.run(self.bundle_commands()[0])
        values = self.variables
        model = f"{values['catalog']}.{values['schema']}.{values['model_name']}"
        variables = self.serving_variables(model, ServingPlan("1", "1", 0))
        validate = ("databricks", "bundle", "validate", "-t", self.target, "--strict")
        self.runner.run(Command((*validate, *variables), SERVING_DIR))

    def steps_for_target(self) -> list[str]:
        steps = ["bundle", "image", "dagster", "serving"]
        if self.target == "prod":
            steps = ["record-champion", *steps, "smoke", "tag"]
        elif self.target in POST_DEPLOY_JOB:
            steps.append("smoke")
        return steps

    def run(self, only: Sequence[str] | None = None) -> None:
        actions = {
            "record-champion": self.record_champion,
            "bundle": self.bundle,
            "image": self.image_step,
            "dagster": self.dagster,
            "serving": self.serving,
            "smoke": self.smoke,
            "tag": self.tag,
        }
        for step in self.steps_for_target():
            if only and step not in only:
                continue
            self.runner.show(f"# --- {step} ({self.target}, {self.git_sha}) ---")
            actions[step]()


# --- command line ---------------------------------------------------------------------------


def _git_head() -> str:
    result = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


def missing_environment(target: str, steps: Sequence[str], env: Mapping[str, str]) -> list[str]:
    """Environment a real deploy needs and lacks; an empty string counts as missing."""
    missing = []
    if {"record-champion", "bundle", "serving", "smoke"} & set(steps):
        if not env.get("DATABRICKS_HOST"):
            missing.append("DATABRICKS_HOST")
        oauth = env.get("DATABRICKS_CLIENT_ID") and env.get("DATABRICKS_CLIENT_SECRET")
        if not oauth and not env.get("DATABRICKS_TOKEN"):
            missing.append(
                "DATABRICKS_CLIENT_ID and DATABRICKS_CLIENT_SECRET (or DATABRICKS_TOKEN)"
            )
    if target != "dev" and "bundle" in steps and not env.get("BUNDLE_VAR_service_principal"):
        missing.append("BUNDLE_VAR_service_principal")
    orchestrator = bundle_variables(target).get("orchestrator")
    smoke = target in POST_DEPLOY_JOB and "smoke" in steps
    if smoke and orchestrator == "dagster" and not env.get("DAGSTER_GRAPHQL_URL"):
        missing.append("DAGSTER_GRAPHQL_URL")
    return missing


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--target", choices=TARGETS, required=True)
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run none")
    parser.add_argument("--git-sha", help="commit to deploy (default: git rev-parse HEAD)")
    parser.add_argument(
        "--image-repository",
        default=os.environ.get("FRAUD_IMAGE_REPOSITORY"),
        help="container repository of the code location image (env FRAUD_IMAGE_REPOSITORY)",
    )
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(STEPS)}")
    parser.add_argument("--validate-only", action="store_true", help="validate both bundles")
    parser.add_argument(
        "--record-file",
        type=Path,
        default=Path("champion-before-release.json"),
        help="where prod records the champion before deploying",
    )
    parser.add_argument(
        "--smoke-source-path",
        default=os.environ.get("FRAUD_SMOKE_SOURCE_PATH") or None,
        help="claims file staging's smoke run ingests (env FRAUD_SMOKE_SOURCE_PATH)",
    )
    parser.add_argument(
        "--smoke-mapping",
        default=os.environ.get("FRAUD_SMOKE_SOURCE_MAPPING") or None,
        help="mapping of that file (env FRAUD_SMOKE_SOURCE_MAPPING)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

    only = [s.strip() for s in args.only.split(",")] if args.only else None
    unknown = sorted(set(only or []) - set(STEPS))
    if unknown:
        parser.error(f"unknown step(s) {unknown}; steps are {list(STEPS)}")
    git_sha = (args.git_sha or _git_head()).lower()
    if not SHA.match(git_sha):
        parser.error(f"--git-sha {git_sha!r} is not a commit hash")
    if len(git_sha) != 40 and not args.dry_run:
        # The image tag must name the same commit in staging and prod: always the full hash.
        parser.error(f"--git-sha {git_sha!r} must be the full 40-character commit hash")
    image_repository = args.image_repository
    if not image_repository:
        if not args.dry_run and not args.validate_only:
            parser.error("--image-repository (or FRAUD_IMAGE_REPOSITORY) is required")
        image_repository = "<image-repository>"

    deploy = Deploy(
        target=args.target,
        git_sha=git_sha,
        image_repository=image_repository,
        runner=Runner(dry_run=args.dry_run),
        record_file=args.record_file,
        smoke_source_path=args.smoke_source_path,
        smoke_mapping=args.smoke_mapping,
    )
    steps = ["bundle"] if args.validate_only else deploy.steps_for_target()
    if only:
        steps = [s for s in steps if s in only]
    if not args.dry_run:
        missing = missing_environment(args.target, steps, os.environ)
        if missing:
            log.error("cannot deploy %s, set: %s", args.target, ", ".join(missing))
            return 2
    try:
        if args.validate_only:
            deploy.validate_only()
        else:
            deploy.run(only)
    except (DeployError, CommandError, subprocess.CalledProcessError) as exc:
        log.error("deploy of %s stopped: %s", args.target, exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
