"""Databricks compute: each heavy step runs the project's wheel on Databricks through Pipes.

Three launch styles, set by the resource's ``launch_style`` (defaulted from
``FRAUD_DATABRICKS__LAUNCH_STYLE`` when the definitions are built):

- ``job_cluster``: a one-time run (``jobs/runs/submit``) on a new job cluster with the wheel at
  ``FRAUD_DATABRICKS__WHEEL_PATH``, Pipes files on DBFS, bootstrap in the cluster's
  environment variables;
- ``serverless``: a one-time serverless run with that wheel, Pipes files on a Unity Catalog
  Volume, bootstrap in the task's parameters;
- ``run_now``: the job the bundle deployed for the step (``jobs/run-now``), with the bundle's
  wheel, Pipes files on the Volume when one is set, else on DBFS, bootstrap in the job's
  parameters. A deployed code location uses it: it needs nothing the bundle does not create.

All three take one path: ``open_pipes_session`` with the style's injector and reader, start
the run, follow it (``follow_run``: deadline, cancel when the Dagster run is interrupted or
times out, the task's error and log tail in the failure), then collect the Pipes results with
``databricks_run_url`` attached. Only what is injected and the task spec differ.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dagster import (
    AssetExecutionContext,
    MetadataValue,
    OpExecutionContext,
    PipesContextInjector,
    PipesMessageReader,
    PipesSession,
    open_pipes_session,
)
from dagster_databricks.pipes import (
    PipesDbfsContextInjector,
    PipesDbfsMessageReader,
    PipesUnityCatalogVolumesContextInjector,
    PipesUnityCatalogVolumesMessageReader,
)
from pydantic import Field

from fraud_assets.databricks.launch import (
    find_job_id,
    idempotency_token,
    job_cluster_task,
    resolve_policy_id,
    run_name,
    run_now_arguments,
    serverless_environment,
    serverless_task,
    volume_path,
    wheel_path,
)
from fraud_assets.databricks.redaction import secrets_kept_out
from fraud_assets.databricks.runs import follow_run, task_output_tails
from fraud_assets.resources.compute.base import (
    FraudCompute,
    TaskResults,
    task_extras,
    transient_failures_retried,
)
from fraud_assets.resources.workspace import DatabricksWorkspace
from fraud_assets.settings import DatabricksSettings, FraudSettings, LaunchStyle, get_settings
from fraud_assets.tasks import TaskSpec, task_spec

if TYPE_CHECKING:
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.service.jobs import Run, SubmitTask

Context = AssetExecutionContext | OpExecutionContext


class DatabricksPipesCompute(FraudCompute):
    """Launches each step's wheel entry point on Databricks and collects its Pipes results."""

    workspace: DatabricksWorkspace
    launch_style: LaunchStyle = Field(
        default="job_cluster", description="job_cluster, serverless or run_now"
    )
    volume_path: str | None = Field(
        default=None,
        description="UC Volume for Pipes files (serverless; run_now uses DBFS without one)",
    )
    job_ids: dict[str, int] = Field(
        default_factory=dict,
        description="Bundle job id per step, for run_now (else the job is found by name)",
    )

    @classmethod
    def from_settings(
        cls, settings: FraudSettings, workspace: DatabricksWorkspace
    ) -> DatabricksPipesCompute:
        """The compute the ``FRAUD_DATABRICKS__*`` settings describe, on ``workspace``."""
        return cls(
            workspace=workspace,
            launch_style=settings.databricks.launch_style,
            volume_path=settings.databricks.volume_path,
            job_ids=dict(settings.databricks.job_ids),
        )

    def run_task(
        self,
        *,
        context: Context,
        task: str,
        params: Mapping[str, Any] | None = None,
    ) -> TaskResults:
        with transient_failures_retried():
            return self._run_task(context=context, task=task, params=params)

    def _run_task(
        self, *, context: Context, task: str, params: Mapping[str, Any] | None
    ) -> TaskResults:
        spec = task_spec(task)
        settings = self._launch_settings()
        credentials = self.workspace.credentials()
        with secrets_kept_out(credentials.secrets):
            client = self.workspace.workspace_client(settings.databricks)
            context.log.info(
                f"Launching step {spec.name} ({spec.script}) on {credentials.host} "
                f"as {self.launch_style}"
            )
            launch = _LAUNCHES[self.launch_style](client, spec, settings, _attempt(context, spec))
            return _launch(
                context, client, launch, spec, settings, task_extras(context, settings, params)
            )

    def _launch_settings(self) -> FraudSettings:
        # This resource's configuration over the environment's settings, so the task's
        # settings payload describes the launch that actually happened.
        settings = get_settings()
        databricks = settings.databricks.model_copy(
            update={
                "launch_style": self.launch_style,
                "volume_path": self.volume_path,
                "job_ids": dict(self.job_ids),
            }
        )
        return settings.model_copy(update={"databricks": databricks})


@dataclass(frozen=True)
class _Attempt:
    """One attempt of one step: what its run is called, and its idempotency token."""

    run_name: str
    idempotency_token: str


def _attempt(context: Context, spec: TaskSpec) -> _Attempt:
    step_key = context.get_step_execution_context().step.key
    return _Attempt(
        run_name=run_name(spec, context.run.run_id),
        idempotency_token=idempotency_token(context.run.run_id, step_key, context.retry_number),
    )


@dataclass(frozen=True)
class _Launch:
    """What sets one launch style apart: where Pipes files travel and how the run starts.

    ``start`` receives the open Pipes session, whose bootstrap it hands to the task, and
    returns the Databricks run id.
    """

    context_injector: PipesContextInjector
    message_reader: PipesMessageReader
    start: Callable[[PipesSession], int]


LaunchBuilder = Callable[["WorkspaceClient", TaskSpec, FraudSettings, _Attempt], _Launch]


def _launch(
    context: Context,
    client: WorkspaceClient,
    launch: _Launch,
    spec: TaskSpec,
    settings: FraudSettings,
    extras: dict[str, Any],
) -> TaskResults:
    """Open the Pipes session, start the run, follow it to its end and collect the results."""
    with open_pipes_session(
        context=context,
        extras=extras,
        context_injector=launch.context_injector,
        message_reader=launch.message_reader,
    ) as session:
        run_id = launch.start(session)
        context.log.info(f"Started Databricks run {run_id} for step {spec.name}")
        # follow_run cancels the run on any way out but its end, a Dagster interrupt included.
        run = _follow(context, client, run_id, settings.databricks)
    return list(session.get_results(metadata=run_metadata(run)))


def _follow(context: Context, client: WorkspaceClient, run_id: int, s: DatabricksSettings) -> Run:
    run = follow_run(
        client,
        run_id,
        poll_interval_seconds=s.poll_interval_seconds,
        timeout_seconds=s.timeout_seconds,
        log=context.log,
    )
    if not s.forward_stdio:
        # Without live forwarding, the task's output still reaches the Dagster run, at the end.
        for task_key, output in task_output_tails(client, run).items():
            context.log.info(f"Output of Databricks task {task_key} (tail):\n{output}")
    return run


def run_metadata(run: Run) -> dict[str, Any]:
    """The metadata every result of a Databricks launch carries."""
    metadata: dict[str, Any] = {"databricks_run_id": MetadataValue.int(int(run.run_id or 0))}
    if run.run_page_url:
        metadata["databricks_run_url"] = MetadataValue.url(run.run_page_url)
    return metadata


def _job_cluster(
    client: WorkspaceClient, spec: TaskSpec, settings: FraudSettings, attempt: _Attempt
) -> _Launch:
    """A one-time run on a new job cluster; Pipes files on DBFS, bootstrap in its env."""

    cluster = settings.databricks.model_copy(
        update={
            "wheel_path": wheel_path(settings.databricks, style="job_cluster"),
            "policy_id": resolve_policy_id(client, settings.databricks),
        }
    )

    def start(session: PipesSession) -> int:
        task = job_cluster_task(spec, cluster, session.get_bootstrap_env_vars())
        return _submit(client, settings, attempt, task)

    return _Launch(*_dbfs_transport(client, settings.databricks), start=start)


def _serverless(
    client: WorkspaceClient, spec: TaskSpec, settings: FraudSettings, attempt: _Attempt
) -> _Launch:
    """A one-time serverless run; Pipes files on the Volume, bootstrap in task parameters."""
    volume = volume_path(settings.databricks)
    # Checked before the Pipes session opens, so a missing wheel writes nothing remote.
    wheel_path(settings.databricks, style="serverless")

    def start(session: PipesSession) -> int:
        task = serverless_task(spec, session.get_bootstrap_cli_arguments())
        environment = serverless_environment(settings.databricks)
        return _submit(client, settings, attempt, task, environments=[environment])

    return _Launch(*_volume_transport(client, settings.databricks, volume), start=start)


def _run_now(
    client: WorkspaceClient, spec: TaskSpec, settings: FraudSettings, attempt: _Attempt
) -> _Launch:
    """A run of the step's bundle job; its parameters carry the bootstrap."""
    job_id = find_job_id(client, spec, settings.databricks, target=settings.target)
    job = client.jobs.get(job_id)

    def start(session: PipesSession) -> int:
        # A deployed job takes no new environment variables: the bootstrap goes in parameters.
        arguments = run_now_arguments(job, spec, session.get_bootstrap_cli_arguments())
        run = client.jobs.run_now(job_id, idempotency_token=attempt.idempotency_token, **arguments)
        if run.run_id is None:
            raise RuntimeError(f"Databricks started job {job_id} without a run id")
        return run.run_id

    transport = (
        _volume_transport(client, settings.databricks, volume_path(settings.databricks))
        if settings.databricks.volume_path
        else _dbfs_transport(client, settings.databricks)
    )
    return _Launch(*transport, start=start)


_LAUNCHES: dict[str, LaunchBuilder] = {
    "job_cluster": _job_cluster,
    "serverless": _serverless,
    "run_now": _run_now,
}


def _submit(
    client: WorkspaceClient,
    settings: FraudSettings,
    attempt: _Attempt,
    task: SubmitTask,
    **submit_args: Any,
) -> int:
    run = client.jobs.submit(
        tasks=[task],
        run_name=attempt.run_name,
        timeout_seconds=int(settings.databricks.timeout_seconds),
        idempotency_token=attempt.idempotency_token,
        **submit_args,
    )
    if run.run_id is None:
        raise RuntimeError(f"Databricks accepted {attempt.run_name!r} without a run id")
    return run.run_id


def _dbfs_transport(
    client: WorkspaceClient, settings: DatabricksSettings
) -> tuple[PipesContextInjector, PipesMessageReader]:
    # stdout/stderr travel as Pipes messages: no cluster log delivery needed.
    return (
        PipesDbfsContextInjector(client=client),
        PipesDbfsMessageReader(
            client=client,
            include_stdio_in_messages=settings.forward_stdio,
            interval=settings.message_poll_interval_seconds,
        ),
    )


def _volume_transport(
    client: WorkspaceClient, settings: DatabricksSettings, volume: str
) -> tuple[PipesContextInjector, PipesMessageReader]:
    return (
        PipesUnityCatalogVolumesContextInjector(client=client, volume_path=volume),
        PipesUnityCatalogVolumesMessageReader(
            client=client,
            volume_path=volume,
            include_stdio_in_messages=settings.forward_stdio,
            interval=settings.message_poll_interval_seconds,
        ),
    )
