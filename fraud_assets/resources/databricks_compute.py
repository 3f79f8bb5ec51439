"""Databricks compute: each heavy step runs the project's wheel on Databricks through Pipes.

Three launch styles, chosen by ``FRAUD_DATABRICKS__LAUNCH_STYLE``:

- ``job_cluster``: a one-time run on a new job cluster (``PipesDatabricksClient``), Pipes
  files on DBFS, bootstrap in the cluster's environment variables;
- ``serverless``: a one-time serverless run (``PipesDatabricksServerlessClient``), Pipes files
  on a Unity Catalog Volume, bootstrap in the task's parameters;
- ``run_now``: the job the bundle deployed for the step (``open_pipes_session`` +
  ``jobs.run_now``), Pipes files on the Volume when one is set, else on DBFS.

Every style polls with a deadline, cancels the Databricks run when the Dagster run is
terminated or times out, puts the task's error and log tail into the failure, and attaches
``databricks_run_url`` to every result.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from dagster import (
    AssetExecutionContext,
    EnvVar,
    MetadataValue,
    OpExecutionContext,
    open_pipes_session,
)
from dagster._core.errors import DagsterExecutionInterruptedError
from dagster_databricks.pipes import (
    PipesDatabricksClient,
    PipesDatabricksServerlessClient,
    PipesDbfsContextInjector,
    PipesDbfsMessageReader,
    PipesUnityCatalogVolumesContextInjector,
    PipesUnityCatalogVolumesMessageReader,
)
from pydantic import Field

from fraud_assets.databricks.credentials import (
    CLIENT_ID_VAR,
    CLIENT_SECRET_VAR,
    HOST_VAR,
    TOKEN_VAR,
    resolve_credentials,
    workspace_client,
)
from fraud_assets.databricks.launch import (
    find_job_id,
    idempotency_token,
    job_cluster_task,
    run_name,
    run_now_arguments,
    serverless_environment,
    serverless_task,
    volume_path,
)
from fraud_assets.databricks.redaction import secrets_kept_out
from fraud_assets.databricks.runs import follow_run, task_output_tails
from fraud_assets.resources.compute import FraudCompute, TaskResults, task_extras
from fraud_assets.settings import DatabricksSettings, FraudSettings, get_settings
from fraud_assets.tasks import TaskSpec, task_spec

if TYPE_CHECKING:
    from dagster._core.pipes.client import PipesContextInjector, PipesMessageReader
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.service.jobs import Run

Context = AssetExecutionContext | OpExecutionContext


class DatabricksPipesCompute(FraudCompute):
    """Launches each step's wheel entry point on Databricks and collects its Pipes results."""

    host: str | None = Field(default=None, description=f"Workspace URL, from {HOST_VAR}")
    token: str | None = Field(
        default=None, repr=False, description=f"Personal access token, from {TOKEN_VAR}"
    )
    client_id: str | None = Field(
        default=None, description=f"OAuth M2M service principal id, from {CLIENT_ID_VAR}"
    )
    client_secret: str | None = Field(
        default=None, repr=False, description=f"OAuth M2M secret, from {CLIENT_SECRET_VAR}"
    )

    @classmethod
    def from_env(cls) -> DatabricksPipesCompute:
        """Reference (never copy) the credential variables this environment sets.

        Values are resolved by Dagster when a run starts, so they never sit in the
        definitions or the UI; a variable unset here is reported when a step launches.
        """
        refs: dict[str, Any] = {
            field: EnvVar(var)
            for field, var in (
                ("host", HOST_VAR),
                ("token", TOKEN_VAR),
                ("client_id", CLIENT_ID_VAR),
                ("client_secret", CLIENT_SECRET_VAR),
            )
            if os.environ.get(var, "").strip()
        }
        return cls(**refs)

    def run_task(
        self,
        *,
        context: Context,
        task: str,
        params: Mapping[str, Any] | None = None,
    ) -> TaskResults:
        spec = task_spec(task)
        settings = get_settings()
        credentials = resolve_credentials(
            host=self.host,
            token=self.token,
            client_id=self.client_id,
            client_secret=self.client_secret,
        )
        with secrets_kept_out(credentials.secrets):
            client = workspace_client(credentials, settings.databricks)
            style = settings.databricks.launch_style
            context.log.info(
                f"Launching step {spec.name} ({spec.script}) on {credentials.host} as {style}"
            )
            extras = task_extras(context, settings, params)
            if style == "job_cluster":
                return _launch_on_job_cluster(context, client, spec, settings, extras)
            if style == "serverless":
                return _launch_serverless(context, client, spec, settings, extras)
            return _launch_run_now(context, client, spec, settings, extras)


# dagster-databricks polls without a deadline and without reading the task's output, and
# its serverless client swallows a termination after cancelling: these hooks fix all three.
class _FollowsRun:
    client: WorkspaceClient

    def _follow_settings(self, settings: DatabricksSettings) -> None:
        self._settings = settings
        self._interrupted = False

    def _poll_til_success(self, context: Context, run_id: int) -> None:
        try:
            _follow(context, self.client, run_id, self._settings)
        except DagsterExecutionInterruptedError:
            self._interrupted = True
            raise

    def _extract_dagster_metadata(self, run_id: int) -> dict[str, Any]:
        return run_metadata(self.client.jobs.get_run(run_id))

    def _reraise_interrupt(self) -> None:
        if self._interrupted:
            raise DagsterExecutionInterruptedError("Databricks run cancelled: Dagster run ended")


class _JobClusterClient(_FollowsRun, PipesDatabricksClient):
    """``PipesDatabricksClient`` with a deadline, the task's output on failure and our metadata."""


class _ServerlessClient(_FollowsRun, PipesDatabricksServerlessClient):
    """``PipesDatabricksServerlessClient`` with the same fixes as the job cluster client."""


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


def _submit_args(context: Context, spec: TaskSpec, settings: FraudSettings) -> dict[str, Any]:
    step_key = context.get_step_execution_context().step.key
    return {
        "run_name": run_name(spec, context.run.run_id),
        "timeout_seconds": int(settings.databricks.timeout_seconds),
        "idempotency_token": idempotency_token(context.run.run_id, step_key, context.retry_number),
    }


def _launch_on_job_cluster(
    context: Context,
    client: WorkspaceClient,
    spec: TaskSpec,
    settings: FraudSettings,
    extras: dict[str, Any],
) -> TaskResults:
    pipes = _JobClusterClient(
        client=client,
        context_injector=PipesDbfsContextInjector(client=client),
        # stdout/stderr travel as Pipes messages: no cluster log delivery needed.
        message_reader=PipesDbfsMessageReader(
            client=client,
            include_stdio_in_messages=settings.databricks.forward_stdio,
            interval=settings.databricks.message_poll_interval_seconds,
        ),
        poll_interval_seconds=settings.databricks.poll_interval_seconds,
        forward_termination=True,
    )
    return _submit_and_follow(
        pipes,
        context,
        settings.databricks,
        extras=extras,
        task=job_cluster_task(spec, settings.databricks),
        submit_args=_submit_args(context, spec, settings),
    )


def _launch_serverless(
    context: Context,
    client: WorkspaceClient,
    spec: TaskSpec,
    settings: FraudSettings,
    extras: dict[str, Any],
) -> TaskResults:
    volume = volume_path(settings.databricks)
    pipes = _ServerlessClient(
        client=client,
        volume_path=volume,
        context_injector=PipesUnityCatalogVolumesContextInjector(client=client, volume_path=volume),
        message_reader=PipesUnityCatalogVolumesMessageReader(
            client=client,
            volume_path=volume,
            include_stdio_in_messages=settings.databricks.forward_stdio,
            interval=settings.databricks.message_poll_interval_seconds,
        ),
        poll_interval_seconds=settings.databricks.poll_interval_seconds,
        forward_termination=True,
    )
    return _submit_and_follow(
        pipes,
        context,
        settings.databricks,
        extras=extras,
        task=serverless_task(spec),
        submit_args={
            **_submit_args(context, spec, settings),
            "environments": [serverless_environment(settings.databricks)],
        },
    )


def _submit_and_follow(
    pipes: _JobClusterClient | _ServerlessClient,
    context: Context,
    settings: DatabricksSettings,
    *,
    extras: dict[str, Any],
    task: Any,
    submit_args: dict[str, Any],
) -> TaskResults:
    """Submit one run through a Pipes client and follow it to its end under our rules."""
    pipes._follow_settings(settings)
    invocation = pipes.run(context=context, extras=extras, task=task, submit_args=submit_args)
    pipes._reraise_interrupt()
    return list(invocation.get_results())


def _launch_run_now(
    context: Context,
    client: WorkspaceClient,
    spec: TaskSpec,
    settings: FraudSettings,
    extras: dict[str, Any],
) -> TaskResults:
    job_id = find_job_id(client, spec, settings.databricks, target=settings.target)
    job = client.jobs.get(job_id)
    injector, reader = _run_now_transport(client, settings.databricks)
    step_key = context.get_step_execution_context().step.key
    with open_pipes_session(
        context=context, extras=extras, context_injector=injector, message_reader=reader
    ) as session:
        # A deployed job takes no new environment variables: the bootstrap goes in parameters.
        arguments = run_now_arguments(job, spec, session.get_bootstrap_cli_arguments())
        run_id = client.jobs.run_now(
            job_id,
            idempotency_token=idempotency_token(context.run.run_id, step_key, context.retry_number),
            **arguments,
        ).run_id
        context.log.info(f"Started run {run_id} of Databricks job {job_id} for step {spec.name}")
        run = _follow(context, client, run_id, settings.databricks)
    return list(session.get_results(metadata=run_metadata(run)))


def _run_now_transport(
    client: WorkspaceClient, settings: DatabricksSettings
) -> tuple[PipesContextInjector, PipesMessageReader]:
    interval = settings.message_poll_interval_seconds
    if settings.volume_path:
        volume = volume_path(settings)
        return (
            PipesUnityCatalogVolumesContextInjector(client=client, volume_path=volume),
            PipesUnityCatalogVolumesMessageReader(
                client=client,
                volume_path=volume,
                include_stdio_in_messages=settings.forward_stdio,
                interval=interval,
            ),
        )
    return (
        PipesDbfsContextInjector(client=client),
        PipesDbfsMessageReader(
            client=client, include_stdio_in_messages=settings.forward_stdio, interval=interval
        ),
    )
