"""Deploy one target: the Databricks bundle and the Dagster code location, from one commit.

    python scripts/deploy.py --target dev|staging|prod [--dry-run] [--git-sha SHA]
                             [--image-repository REPO] [--only STEP[,STEP...]]

Steps, in order (``record-champion`` and ``tag`` run for prod only, ``smoke`` for staging
and prod):

1. ``record-champion`` (prod): save the model's current champion and challenger versions
   to ``--record-file`` before anything changes, so a bad release can be rolled back;
2. ``bundle``: ``databricks bundle validate --strict`` then ``bundle deploy``, with the
   commit as ``--var git_sha``. Its artifact build is the release's one wheel build
   (``dist/``, cleared first), and its step jobs install that wheel;
3. ``wheel``: upload that wheel through the Files API to the target's ``artifacts`` Volume,
   ``/Volumes/<catalog>/<schema>/artifacts/wheels/<version>/<git sha>/<wheel>``, and work out
   what the Dagster deployment needs: the wheel path, the launch style, the step job ids,
   the Pipes and landing Volumes (``publish_release``, an SDK-only function);
4. ``image``: build and push the code location image tagged with the same commit (dev,
   staging), or, in prod, check that staging already pushed it: prod never rebuilds;
5. ``dagster``: ``helm upgrade --install`` of the dagster-user-deployments chart with that
   image tag and the ``wheel`` step's environment (a generated values file), waiting for
   the code server to be ready;
6. ``serving``: deploy ``deploy/serving`` (the endpoint) when the model has a champion;
   on a first deploy there is none yet, and the step says so instead of failing;
7. ``smoke`` (staging) / ``validate`` (prod): run a job through the target's
   orchestrator of record and wait for it to succeed. Staging refuses synthetic claims, so
   its ``ingestion_job`` ingests ``--smoke-source-path`` (``FRAUD_SMOKE_SOURCE_PATH``, with
   ``FRAUD_SMOKE_SOURCE_MAPPING``), else the code location's own ``FRAUD_SOURCE_PATH``;
8. ``tag`` (prod): tag the released commit and push the tag.

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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from _commands import Command, CommandError, Runner
from databricks.sdk.errors import DatabricksError

from fraud_assets.databricks.credentials import DatabricksCredentialsError
from fraud_assets.databricks.redaction import SecretLeakGuardError, secrets_kept_out

# One plan for a deploy and for every alias move (fraud_assets/tasks/_serving.py).
from fraud_assets.databricks.serving_endpoint import ServingPlan, serving_plan
from fraud_assets.settings import DatabricksSettings, bundle_variables, get_settings
from fraud_assets.tasks import TASKS

if TYPE_CHECKING:
    from databricks.sdk import WorkspaceClient

REPO_ROOT = Path(__file__).resolve().parents[1]

TARGETS = ("dev", "staging", "prod")
STEPS = ("record-champion", "bundle", "wheel", "image", "dagster", "serving", "smoke", "tag")
SERVING_DIR = Path("deploy") / "serving"
DOCKERFILE = Path("deploy") / "Dockerfile"
HELM_VALUES = Path("deploy") / "helm"
HELM_CHART = "dagster-user-deployments"
HELM_REPO = "https://dagster-io.github.io/helm"
MODEL_RESOURCE = "fraud_detector"
DIST = Path("dist")
PACKAGE = "fraud_assets"
# Unity Catalog Volumes of the bundle, by resource key (= name outside development mode):
# the release wheels (resources/wheels-volume-resource.yml), the Pipes files of run_now and
# serverless launches, and the landing folder the new-claims sensor watches.
WHEEL_VOLUME = "artifacts"
PIPES_VOLUME = "pipes"
LANDING_VOLUME = "landing"
STEP_JOB_PREFIX = "step_"
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


# --- what the deploy hands the Dagster deployment ------------------------------------------


@dataclass(frozen=True)
class DagsterHandoff:
    """What the deployed code location needs besides its Helm values and its secret.

    ``environment`` holds the ``FRAUD_*`` variables the deploy adds to (or overrides in)
    ``deploy/helm/values-<target>.yaml``: the launch style, the uploaded wheel, the step job
    ids and the Volumes, all as the bundle deployed them for this target.
    """

    target: str
    wheel_path: str
    environment: dict[str, str]

    def helm_values(self) -> dict[str, Any]:
        """The target's Helm values with ``environment`` merged into the deployment's env."""
        values = helm_values(self.target)
        (deployment,) = values["deployments"]
        kept = [e for e in deployment.get("env") or [] if e["name"] not in self.environment]
        added = [{"name": name, "value": value} for name, value in self.environment.items()]
        deployment["env"] = kept + added
        # Helm replaces a list from an earlier values file whole: this one carries it all.
        return {"deployments": [deployment]}

    def code_location_environment(self) -> dict[str, str]:
        """The plain environment the code location starts with (secrets come separately)."""
        (deployment,) = self.helm_values()["deployments"]
        return {str(e["name"]): str(e["value"]) for e in deployment["env"]}


def helm_values(target: str) -> dict[str, Any]:
    """``deploy/helm/values-<target>.yaml`` as written."""
    loaded: dict[str, Any] = yaml.safe_load(
        (REPO_ROOT / HELM_VALUES / f"values-{target}.yaml").read_text()
    )
    return loaded


def deployed_launch_style(target: str) -> str:
    """The launch style the target's Helm values give the deployed Dagster."""
    (deployment,) = helm_values(target)["deployments"]
    env = {e["name"]: e["value"] for e in deployment.get("env") or []}
    style = env.get("FRAUD_DATABRICKS__LAUNCH_STYLE")
    if not style:
        raise DeployError(
            f"{HELM_VALUES}/values-{target}.yaml sets no FRAUD_DATABRICKS__LAUNCH_STYLE; a "
            "deployed Dagster must not fall back to a style that needs what the bundle "
            "does not create"
        )
    return str(style)


def volume_paths(target: str, summary: Mapping[str, Any] | None = None) -> dict[str, str]:
    """``/Volumes/...`` path of each bundle Volume by resource key.

    From ``databricks bundle summary -o json`` when given (development mode renames Volumes
    ``dev_<user>_<name>``); else the production-mode names in the target's catalog and schema.
    """
    if summary is not None:
        volumes = (summary.get("resources") or {}).get("volumes") or {}
        return {
            key: f"/Volumes/{v['catalog_name']}/{v['schema_name']}/{v['name']}"
            for key, v in volumes.items()
        }
    if bundle_mode(target) == "development":
        raise DeployError(
            f"{target} deploys in development mode, which prefixes Volume names with "
            "dev_<user>_: pass the bundle summary (`databricks bundle summary -o json`)"
        )
    variables = bundle_variables(target)
    catalog, schema = variables["catalog"], variables["schema"]
    return {
        key: f"/Volumes/{catalog}/{schema}/{key}"
        for key in (WHEEL_VOLUME, PIPES_VOLUME, LANDING_VOLUME)
    }


def bundle_mode(target: str) -> str | None:
    bundle = yaml.safe_load((REPO_ROOT / "databricks.yml").read_text(encoding="utf-8"))
    mode = ((bundle.get("targets") or {}).get(target) or {}).get("mode")
    return str(mode) if mode else None


def summary_job_ids(summary: Mapping[str, Any]) -> dict[str, int]:
    """Step name -> id of its bundle job (``resources.jobs.step_<name>.id``)."""
    jobs = (summary.get("resources") or {}).get("jobs") or {}
    ids = {}
    for step in TASKS:
        job = jobs.get(f"{STEP_JOB_PREFIX}{step}") or {}
        if not job.get("id"):
            raise DeployError(
                f"`databricks bundle summary` shows no deployed job {STEP_JOB_PREFIX}{step}; "
                "was the bundle deployed?"
            )
        ids[step] = int(job["id"])
    return ids


def wheel_destination(wheels_volume: str, wheel: str, git_sha: str) -> str:
    """Where a release's wheel goes: one folder per version and commit, never rewritten.

    The file keeps the name the build gave it: pip refuses a wheel whose file name and
    metadata disagree on the version, so the commit goes in the folder, not the name.
    """
    version = wheel_version(wheel)
    return f"{wheels_volume.rstrip('/')}/wheels/{version}/{git_sha}/{wheel}"


def wheel_version(wheel: str) -> str:
    parts = wheel.removesuffix(".whl").split("-")
    if not wheel.endswith(".whl") or len(parts) < 5 or parts[0] != PACKAGE:
        raise DeployError(f"{wheel!r} is not a {PACKAGE} wheel file name")
    return parts[1]


def publish_release(
    client: WorkspaceClient,
    target: str,
    *,
    wheel: Path,
    git_sha: str,
    summary: Mapping[str, Any] | None = None,
) -> DagsterHandoff:
    """The deploy's SDK-side work: upload the wheel to the target's Volume and say what the
    Dagster deployment needs. Every call goes through ``client``; nothing shells out.

    Needs the bundle deployed first (it creates the Volumes and the step jobs). ``summary``
    is ``databricks bundle summary -o json``: job ids and (development-mode) Volume names
    come from it; without it, production-mode names, and job ids found by name.
    Publishing the same commit again keeps the wheel already there.
    """
    volumes = volume_paths(target, summary)
    for key in (WHEEL_VOLUME, PIPES_VOLUME):
        if key not in volumes:
            raise DeployError(
                f"the bundle deployed no Volume {key!r} (resources.volumes.{key}) for {target}"
            )
        _require_volume(client, volumes[key], key)
    destination = wheel_destination(volumes[WHEEL_VOLUME], wheel.name, git_sha)
    _upload_once(client, wheel, destination)
    job_ids = summary_job_ids(summary) if summary is not None else _find_job_ids(client, target)
    environment = {
        "FRAUD_DATABRICKS__LAUNCH_STYLE": deployed_launch_style(target),
        "FRAUD_DATABRICKS__WHEEL_PATH": destination,
        "FRAUD_DATABRICKS__VOLUME_PATH": volumes[PIPES_VOLUME],
        "FRAUD_DATABRICKS__JOB_IDS": json.dumps(job_ids, sort_keys=True),
    }
    if LANDING_VOLUME in volumes:
        environment["FRAUD_LANDING_DIR"] = volumes[LANDING_VOLUME]
    return DagsterHandoff(target=target, wheel_path=destination, environment=environment)


def _require_volume(client: WorkspaceClient, path: str, key: str) -> None:
    from databricks.sdk.errors import NotFound

    try:
        client.files.get_directory_metadata(path)
    except NotFound:
        raise DeployError(
            f"Volume {path} (resources.volumes.{key}) does not exist: deploy the bundle first "
            "(the `bundle` step creates it)"
        ) from None


def _upload_once(client: WorkspaceClient, wheel: Path, destination: str) -> None:
    from databricks.sdk.errors import AlreadyExists, NotFound

    try:
        client.files.get_metadata(destination)
    except NotFound:
        pass
    else:
        log.info("%s is already uploaded (an earlier deploy of this commit); kept", destination)
        return
    client.files.create_directory(destination.rsplit("/", 1)[0])
    with wheel.open("rb") as contents:
        try:
            client.files.upload(destination, contents, overwrite=False)
        except AlreadyExists:
            log.info("%s was uploaded meanwhile by another deploy of this commit", destination)
            return
    log.info("uploaded %s to %s", wheel, destination)


def _find_job_ids(client: WorkspaceClient, target: str) -> dict[str, int]:
    from fraud_assets.databricks.launch import DatabricksLaunchError, find_job_id
    from fraud_assets.tasks import task_spec

    settings = DatabricksSettings.model_validate({})
    try:
        return {
            step: find_job_id(client, task_spec(step), settings, target=target) for step in TASKS
        }
    except DatabricksLaunchError as exc:
        raise DeployError(str(exc)) from None


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
    release_values_file: Path = Path("dagster-release-values.yaml")
    # Builds the WorkspaceClient of the wheel step (from DATABRICKS_* in main); not in a dry run.
    workspace: Callable[[], WorkspaceClient] | None = None
    # Set by the wheel step: what the dagster step hands the code location.
    handoff: DagsterHandoff | None = field(default=None, init=False)
    wheel_built: bool = field(default=False, init=False)

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
                # The wheel step's environment merged into the same deployment (its env).
                "--values",
                str(self.release_values_file),
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
                # An empty prod (no champion) has nothing to validate with: say so, not fail.
                *(("--skip-without-champion",) if job == "drift_monitoring_job" else ()),
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
        # `bundle deploy` builds the wheel into dist/ and its step jobs install dist/*.whl:
        # an older wheel left there would be uploaded and installed beside this one.
        self._clear_dist()
        for command in self.bundle_commands():
            self.runner.run(command)
        self.wheel_built = True

    def wheel(self) -> None:
        """Upload the release's wheel to the target's Volume; keep what Dagster is handed."""
        if not self.wheel_built:
            # Without the bundle step in this run, build the wheel as its artifact does.
            self._clear_dist()
            self.runner.run(Command(("python", "-m", "build", "--wheel", "--outdir", str(DIST))))
            self.wheel_built = True
        summary = self.runner.json(self.summary_command())
        if self.runner.dry_run:
            self._show_planned_handoff()
            return
        wheels = sorted((self.runner.root / DIST).glob(f"{PACKAGE}-*.whl"))
        if len(wheels) != 1:
            raise DeployError(
                f"expected one {PACKAGE} wheel in {DIST}/ after the build, found "
                f"{[w.name for w in wheels]}"
            )
        if self.workspace is None:
            raise DeployError("the wheel step needs a Databricks workspace client")
        self.handoff = publish_release(
            self.workspace(), self.target, wheel=wheels[0], git_sha=self.git_sha, summary=summary
        )
        log.info(
            "the Dagster deployment gets: %s",
            ", ".join(f"{k}={v}" for k, v in self.handoff.environment.items()),
        )

    def _clear_dist(self) -> None:
        self.runner.show(f"# remove earlier {PACKAGE} wheels from {DIST}/")
        if not self.runner.dry_run:
            for stale in (self.runner.root / DIST).glob(f"{PACKAGE}-*.whl"):
                stale.unlink()

    def _show_planned_handoff(self) -> None:
        wheel = f"{PACKAGE}-{version(PACKAGE)}-py3-none-any.whl"
        if bundle_mode(self.target) == "development":
            self.runner.show("# (development mode: Volume names as the bundle summary gives them)")
            volumes = {
                key: f"/Volumes/{self.variables['catalog']}/{self.variables['schema']}/"
                f"dev_<user>_{key}"
                for key in (WHEEL_VOLUME, PIPES_VOLUME, LANDING_VOLUME)
            }
        else:
            volumes = volume_paths(self.target)
        destination = wheel_destination(volumes[WHEEL_VOLUME], wheel, self.git_sha)
        self.runner.show(f"# upload {DIST}/{wheel} to {destination} (Files API)")
        planned = {
            "FRAUD_DATABRICKS__LAUNCH_STYLE": deployed_launch_style(self.target),
            "FRAUD_DATABRICKS__WHEEL_PATH": destination,
            "FRAUD_DATABRICKS__VOLUME_PATH": volumes[PIPES_VOLUME],
            "FRAUD_DATABRICKS__JOB_IDS": "<step job ids from the bundle summary>",
            "FRAUD_LANDING_DIR": volumes[LANDING_VOLUME],
        }
        self.runner.show(f"# write {self.release_values_file}: the Dagster deployment's env gets")
        for name, value in planned.items():
            self.runner.show(f"#   {name}={value}")

    def image_step(self) -> None:
        for command in self.image_commands():
            self.runner.run(command)

    def dagster(self) -> None:
        if not self.runner.dry_run:
            if self.handoff is None:
                raise DeployError("the dagster step needs the wheel step's handoff first")
            text = yaml.safe_dump(self.handoff.helm_values(), sort_keys=False)
            (self.runner.root / self.release_values_file).write_text(text)
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
        steps = ["bundle", "wheel", "image", "dagster", "serving"]
        if self.target == "prod":
            steps = ["record-champion", *steps, "smoke", "tag"]
        elif self.target in POST_DEPLOY_JOB:
            steps.append("smoke")
        return steps

    def selected_steps(self, only: Sequence[str] | None = None) -> list[str]:
        """This target's steps in order, limited to ``only``; ``dagster`` brings ``wheel``,
        which works out what the code location is handed (and uploads nothing twice)."""
        wanted = set(only or self.steps_for_target())
        if "dagster" in wanted:
            wanted.add("wheel")
        return [step for step in self.steps_for_target() if step in wanted]

    def run(self, only: Sequence[str] | None = None) -> None:
        selected = self.selected_steps(only)
        actions = {
            "record-champion": self.record_champion,
            "bundle": self.bundle,
            "wheel": self.wheel,
            "image": self.image_step,
            "dagster": self.dagster,
            "serving": self.serving,
            "smoke": self.smoke,
            "tag": self.tag,
        }
        for step in selected:
            self.runner.show(f"# --- {step} ({self.target}, {self.git_sha}) ---")
            actions[step]()


# --- command line ---------------------------------------------------------------------------


def _git_head() -> str:
    result = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


def _workspace_client() -> WorkspaceClient:
    """The deploying identity's client from DATABRICKS_*, retrying as the code location does."""
    from fraud_assets.databricks.credentials import resolve_credentials, workspace_client

    credentials = resolve_credentials(
        host=os.environ.get("DATABRICKS_HOST"),
        token=os.environ.get("DATABRICKS_TOKEN"),
        client_id=os.environ.get("DATABRICKS_CLIENT_ID"),
        client_secret=os.environ.get("DATABRICKS_CLIENT_SECRET"),
    )
    return workspace_client(credentials, DatabricksSettings.model_validate({}))


def missing_environment(target: str, steps: Sequence[str], env: Mapping[str, str]) -> list[str]:
    """Environment a real deploy needs and lacks; an empty string counts as missing."""
    missing = []
    if {"record-champion", "bundle", "wheel", "dagster", "serving", "smoke"} & set(steps):
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
        "--release-values-file",
        type=Path,
        default=Path("dagster-release-values.yaml"),
        help="Helm values the wheel step writes for the dagster step (no secret in it)",
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
        release_values_file=args.release_values_file,
        workspace=None if args.dry_run else _workspace_client,
    )
    steps = ["bundle"] if args.validate_only else deploy.selected_steps(only)
    if not args.dry_run:
        missing = missing_environment(args.target, steps, os.environ)
        if missing:
            log.error("cannot deploy %s, set: %s", args.target, ", ".join(missing))
            return 2
    # The SDK can quote request headers in an error; what this process logs never has a secret.
    secrets = [os.environ.get(n, "") for n in ("DATABRICKS_TOKEN", "DATABRICKS_CLIENT_SECRET")]
    try:
        with secrets_kept_out(secrets, loggers=("databricks.sdk", log.name)):
            if args.validate_only:
                deploy.validate_only()
            else:
                deploy.run(only)
    except (
        DeployError,
        CommandError,
        subprocess.CalledProcessError,
        DatabricksError,
        DatabricksCredentialsError,
        SecretLeakGuardError,
    ) as exc:
        log.error("deploy of %s stopped: %s", args.target, exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
