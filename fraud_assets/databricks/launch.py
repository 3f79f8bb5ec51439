"""What a launch sends to Databricks: the wheel task, its compute, and the job to run.

Every launch style runs the project's own wheel and the step's console script
(``python_wheel_task`` with ``package_name=fraud_assets`` and ``entry_point=fraud-<step>``),
the same entry point a bundle job runs and a person runs with ``python -m``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from fraud_assets.tasks import TaskSpec

if TYPE_CHECKING:
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.service.jobs import Job, JobEnvironment, SubmitTask, Task

    from fraud_assets.settings import DatabricksSettings

PACKAGE_NAME = "fraud_assets"
ENVIRONMENT_KEY = "fraud_assets"
_VOLUME_PATH = re.compile(r"^/Volumes/[^/]+/[^/]+/[^/]+(/[^/]+)*/?$")
# Spot workers with an on-demand driver, as every bundle job cluster (resources/*.yml) has
# them: losing a spot node slows a run, never kills it. test_cluster_parity.py holds the
# two equal.
SPOT_WITH_FALLBACK = {
    "aws_attributes": "SPOT_WITH_FALLBACK",
    "azure_attributes": "SPOT_WITH_FALLBACK_AZURE",
}
FIRST_ON_DEMAND = 1


class DatabricksLaunchError(RuntimeError):
    """The settings do not describe a launch Databricks can run."""


def wheel_task(spec: TaskSpec, parameters: Sequence[str] = ()) -> dict[str, Any]:
    """The step's console script in the project's wheel, with these command-line parameters."""
    return {"package_name": PACKAGE_NAME, "entry_point": spec.script, "parameters": [*parameters]}


def cluster_spec(settings: DatabricksSettings) -> dict[str, Any]:
    """A new job cluster from settings: runtime, node type, autoscale range, policy and spot.

    The policy is ``settings.policy_id``; a launch resolves ``policy_name`` into it first
    (``resolve_policy_id``).
    """
    if settings.min_workers > settings.max_workers:
        raise DatabricksLaunchError(
            f"min_workers ({settings.min_workers}) exceeds max_workers ({settings.max_workers})"
        )
    spec: dict[str, Any] = {
        "spark_version": settings.spark_version,
        "node_type_id": settings.node_type_id,
        "autoscale": {"min_workers": settings.min_workers, "max_workers": settings.max_workers},
        "data_security_mode": settings.data_security_mode,
        "custom_tags": {"project": PACKAGE_NAME},
    }
    cloud = _cloud_attributes(settings.node_type_id)
    spec[cloud] = {"availability": SPOT_WITH_FALLBACK[cloud], "first_on_demand": FIRST_ON_DEMAND}
    if settings.policy_id:
        spec["policy_id"] = settings.policy_id
        spec["apply_policy_default_values"] = True
    return spec


def _cloud_attributes(node_type_id: str) -> str:
    # Azure VM sizes are named Standard_*; the bundle's node types are AWS ones otherwise.
    return "azure_attributes" if node_type_id.startswith("Standard_") else "aws_attributes"


def resolve_policy_id(client: WorkspaceClient, settings: DatabricksSettings) -> str | None:
    """The cluster policy id: ``policy_id`` if set, else the policy named ``policy_name``.

    The same lookup the bundle's ``cluster_policy_id`` variable makes at deploy time, so a
    Dagster-launched cluster runs under the bundle's policy.
    """
    if settings.policy_id or not settings.policy_name:
        return settings.policy_id or None
    found = [
        policy.policy_id
        for policy in client.cluster_policies.list()
        if policy.name == settings.policy_name and policy.policy_id
    ]
    if len(found) != 1:
        raise DatabricksLaunchError(
            f"{len(found)} cluster policies are named {settings.policy_name!r}; a job cluster "
            "needs exactly one. Set FRAUD_DATABRICKS__POLICY_ID=<policy id> or "
            "FRAUD_DATABRICKS__POLICY_NAME."
        )
    return found[0]


def job_cluster_task(
    spec: TaskSpec, settings: DatabricksSettings, bootstrap_env: Mapping[str, str] | None = None
) -> SubmitTask:
    """A one-time task on a new job cluster with the wheel installed as a library.

    The Pipes bootstrap goes into the new cluster's environment (``spark_env_vars``), as
    ``PipesDatabricksClient`` puts it: the task finds it where every Pipes process looks.
    """
    from databricks.sdk.service.jobs import SubmitTask

    cluster = cluster_spec(settings)
    if bootstrap_env:
        cluster["spark_env_vars"] = dict(bootstrap_env)
    return SubmitTask.from_dict(
        {
            "task_key": spec.name,
            "new_cluster": cluster,
            "libraries": [{"whl": settings.wheel_path}],
            "python_wheel_task": wheel_task(spec),
        }
    )


def serverless_task(
    spec: TaskSpec, bootstrap_arguments: Mapping[str, str] | None = None
) -> SubmitTask:
    """A one-time serverless task; its environment (``serverless_environment``) has the wheel.

    Serverless compute takes no environment variables, so the Pipes bootstrap travels as the
    wheel's command-line parameters, as ``PipesDatabricksServerlessClient`` passes it.
    """
    from databricks.sdk.service.jobs import SubmitTask

    parameters = [part for pair in (bootstrap_arguments or {}).items() for part in pair]
    return SubmitTask.from_dict(
        {
            "task_key": spec.name,
            "environment_key": ENVIRONMENT_KEY,
            "python_wheel_task": wheel_task(spec, parameters),
        }
    )


def serverless_environment(settings: DatabricksSettings) -> JobEnvironment:
    """The serverless environment: the project's wheel as its one dependency."""
    from databricks.sdk.service.compute import Environment
    from databricks.sdk.service.jobs import JobEnvironment

    return JobEnvironment(
        environment_key=ENVIRONMENT_KEY,
        spec=Environment(
            environment_version=settings.serverless_environment_version,
            dependencies=[wheel_path(settings, style="serverless")],
        ),
    )


def volume_path(settings: DatabricksSettings) -> str:
    """The UC Volume for Pipes files, or a clear error saying how to set one."""
    path = settings.volume_path
    if not path:
        raise DatabricksLaunchError(
            "this launch style exchanges Pipes files through a Unity Catalog Volume: set "
            "FRAUD_DATABRICKS__VOLUME_PATH=/Volumes/<catalog>/<schema>/<volume>"
        )
    if not _VOLUME_PATH.match(path):
        raise DatabricksLaunchError(
            f"FRAUD_DATABRICKS__VOLUME_PATH={path!r} is not a Volume path such as "
            "/Volumes/<catalog>/<schema>/<volume>"
        )
    return path.rstrip("/")


def wheel_path(settings: DatabricksSettings, *, style: str) -> str:
    """The project's wheel for a launch that installs it, or a clear error saying what to set.

    Libraries in the DBFS root are refused: Databricks Runtime 15.1 and above no longer
    install them by default, so such a path would fail on the cluster, not here.
    """
    path = settings.wheel_path
    if not path:
        raise DatabricksLaunchError(
            f"launch style {style} installs the project's wheel, and no wheel path is set: set "
            "FRAUD_DATABRICKS__WHEEL_PATH=/Volumes/<catalog>/<schema>/<volume>/.../"
            "fraud_assets-<version>-py3-none-any.whl (scripts/deploy.py uploads the wheel and "
            "hands its path to a deployed Dagster), or use FRAUD_DATABRICKS__LAUNCH_STYLE=run_now, "
            "which runs the bundle's own step jobs and wheel"
        )
    if path.startswith("dbfs:/") and not path.startswith("dbfs:/Volumes/"):
        raise DatabricksLaunchError(
            f"FRAUD_DATABRICKS__WHEEL_PATH={path!r} is in the DBFS root, where recent runtimes "
            "refuse libraries: upload the wheel to a Unity Catalog Volume (/Volumes/...) or as a "
            "workspace file (/Workspace/...)"
        )
    if not path.endswith(".whl"):
        raise DatabricksLaunchError(f"FRAUD_DATABRICKS__WHEEL_PATH={path!r} is not a .whl file")
    return path


def run_name(spec: TaskSpec, dagster_run_id: str) -> str:
    """What the run is called in the workspace: project, step and Dagster run."""
    return f"{PACKAGE_NAME} {spec.name} (dagster run {dagster_run_id[:8]})"


def idempotency_token(dagster_run_id: str, step_key: str, retry_number: int) -> str:
    """One token per step attempt, so a retried submit never starts a second run.

    Databricks returns the existing run for a token it has seen; the API allows 64 characters.
    """
    digest = hashlib.sha256(f"{dagster_run_id}:{step_key}:{retry_number}".encode()).hexdigest()
    return f"fraud-{digest[:48]}"


def bundle_job_name(spec: TaskSpec, settings: DatabricksSettings, *, target: str) -> str:
    """The step job's name (resources/step-jobs-resource.yml) under the name template."""
    return settings.job_name_template.format(task=spec.name, target=target)


def find_job_id(
    client: WorkspaceClient, spec: TaskSpec, settings: DatabricksSettings, *, target: str
) -> int:
    """The bundle-deployed job for ``spec``: its configured id, else the job with its name."""
    if spec.name in settings.job_ids:
        return settings.job_ids[spec.name]
    name = bundle_job_name(spec, settings, target=target)
    matches = [job.job_id for job in client.jobs.list(name=name) if job.job_id is not None]
    if not matches:
        # A development-mode deploy prefixes names with "[dev <user>] ": take our own copy.
        me = client.current_user.me().user_name
        matches = [
            job.job_id
            for job in client.jobs.list()
            if job.job_id is not None
            and job.creator_user_name == me
            and job.settings is not None
            and (job.settings.name or "").startswith("[dev ")
            and (job.settings.name or "").endswith(f"] {name}")
        ]
    if len(matches) == 1:
        return matches[0]
    how = (
        "Deploy the bundle (`databricks bundle deploy -t <target>`), then set "
        f"FRAUD_DATABRICKS__JOB_IDS='{{\"{spec.name}\": <job id>}}' (ids from "
        "`databricks bundle summary -o json`) or FRAUD_DATABRICKS__JOB_NAME_TEMPLATE."
    )
    if not matches:
        raise DatabricksLaunchError(
            f"no Databricks job is named {name!r} for step {spec.name}. {how}"
        )
    raise DatabricksLaunchError(
        f"{len(matches)} Databricks jobs are named {name!r} (ids {sorted(matches)}); "
        f"step {spec.name} needs exactly one. {how}"
    )


def run_now_arguments(job: Job, spec: TaskSpec, bootstrap: Mapping[str, str]) -> dict[str, Any]:
    """``jobs.run_now`` arguments that run only ``spec``'s task and hand it the Pipes bootstrap.

    A job with job parameters refuses task-level overrides but pushes job parameters down
    to keyword-argument wheel tasks, so the bootstrap travels as job parameters there; other
    jobs take it as the task's named (or positional) parameters.
    """
    task = _step_task(job, spec)
    wheel = task.python_wheel_task
    if wheel is None or wheel.package_name != PACKAGE_NAME or wheel.entry_point != spec.script:
        found = f"{wheel.package_name}:{wheel.entry_point}" if wheel else "no python_wheel_task"
        raise DatabricksLaunchError(
            f"task {spec.name!r} of Databricks job {job.job_id} runs {found}; step {spec.name} "
            f"needs {PACKAGE_NAME}:{spec.script}. Redeploy the bundle."
        )
    named = {flag.lstrip("-").replace("-", "_"): value for flag, value in bootstrap.items()}
    arguments: dict[str, Any] = {"only": [spec.name]}
    if job.settings is not None and job.settings.parameters:
        arguments["job_parameters"] = named
    elif wheel.named_parameters is not None:
        arguments["python_named_params"] = named
    else:
        arguments["python_params"] = [part for pair in bootstrap.items() for part in pair]
    return arguments


def _step_task(job: Job, spec: TaskSpec) -> Task:
    tasks = (job.settings.tasks if job.settings else None) or []
    task = next((t for t in tasks if t.task_key == spec.name), None)
    if task is None:
        raise DatabricksLaunchError(
            f"Databricks job {job.job_id} has no task {spec.name!r} "
            f"(tasks: {sorted(t.task_key for t in tasks)}); the bundle runs each step under "
            "task_key == step name."
        )
    # A for_each task runs its nested task once per input.
    return task.for_each_task.task if task.for_each_task is not None else task
