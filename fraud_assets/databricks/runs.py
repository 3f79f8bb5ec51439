"""Following a Databricks run to its end: poll, time out, cancel, and explain a failure.

Plain SDK code with no Dagster imports, shared by the three launch styles. A run is never
left behind: any way out of ``follow_run`` other than a terminal state (a Dagster
termination, the client's deadline, an API error) cancels the run first.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Protocol

from databricks.sdk.errors import DatabricksError
from databricks.sdk.service.jobs import RunLifeCycleState, RunResultState

if TYPE_CHECKING:
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.service.jobs import Run

# A run in one of these states is no longer executing the task.
TERMINAL = frozenset(
    {RunLifeCycleState.TERMINATED, RunLifeCycleState.SKIPPED, RunLifeCycleState.INTERNAL_ERROR}
)
LOG_TAIL_LINES = 40
LOG_TAIL_CHARS = 6000


class Log(Protocol):
    def info(self, msg: str) -> object: ...
    def warning(self, msg: str) -> object: ...
    def error(self, msg: str) -> object: ...


class DatabricksRunError(RuntimeError):
    """A Databricks run did not succeed; the message says why and where to look."""

    def __init__(
        self,
        message: str,
        *,
        run_id: int,
        run_page_url: str | None,
        platform_failure: bool = False,
    ) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.run_page_url = run_page_url
        # The run ended INTERNAL_ERROR: the platform (a cluster that failed to start, the
        # Jobs service) failed it, not the task's own code.
        self.platform_failure = platform_failure


class DatabricksRunFailed(DatabricksRunError):
    """The remote task failed (or the platform could not run it)."""


class DatabricksRunCancelled(DatabricksRunError):
    """Someone or something other than this launcher cancelled the run."""


class DatabricksRunTimedOut(DatabricksRunError):
    """The run outlived its timeout and was cancelled."""


def follow_run(
    client: WorkspaceClient,
    run_id: int,
    *,
    poll_interval_seconds: float,
    timeout_seconds: float,
    log: Log,
) -> Run:
    """Poll ``run_id`` until it succeeds; raise with the task's error and log tail otherwise."""
    deadline = time.monotonic() + timeout_seconds
    last_state: RunLifeCycleState | None = None
    announced = False
    try:
        while True:
            run = client.jobs.get_run(run_id)
            if not announced:
                log.info(f"Databricks run {run_id}: {run.run_page_url}")
                announced = True
            state = run.state
            if state is None:
                raise DatabricksRunFailed(
                    f"Databricks returned run {run_id} without a state",
                    run_id=run_id,
                    run_page_url=run.run_page_url,
                )
            if state.life_cycle_state != last_state:
                log.info(f"Databricks run {run_id} is {_name(state.life_cycle_state)}")
                last_state = state.life_cycle_state
            if state.life_cycle_state in TERMINAL:
                if state.result_state == RunResultState.SUCCESS:
                    return run
                raise _terminal_error(client, run)
            if time.monotonic() >= deadline:
                raise DatabricksRunTimedOut(
                    f"Databricks run {run_id} did not finish within {timeout_seconds:g} s and "
                    f"was cancelled. Run page: {run.run_page_url}",
                    run_id=run_id,
                    run_page_url=run.run_page_url,
                )
            time.sleep(poll_interval_seconds)
    except (DatabricksRunFailed, DatabricksRunCancelled):
        raise
    except BaseException:
        # Dagster termination, our deadline or a failing API: do not leave the run behind.
        cancel_run(client, run_id, poll_interval_seconds=poll_interval_seconds, log=log)
        raise


def cancel_run(
    client: WorkspaceClient,
    run_id: int,
    *,
    poll_interval_seconds: float,
    log: Log,
    wait_seconds: float = 300.0,
) -> None:
    """Cancel ``run_id`` and wait until its task stops; log (never raise) if that fails."""
    log.info(f"Cancelling Databricks run {run_id}")
    try:
        client.jobs.cancel_run(run_id)
        deadline = time.monotonic() + wait_seconds
        while time.monotonic() < deadline:
            state = client.jobs.get_run(run_id).state
            if state is not None and (
                state.life_cycle_state in TERMINAL
                or state.life_cycle_state == RunLifeCycleState.TERMINATING
            ):
                log.info(f"Databricks run {run_id} cancelled")
                return
            time.sleep(poll_interval_seconds)
        log.error(f"Databricks run {run_id} was asked to cancel but is still running")
    except DatabricksError as err:
        # The original exception is re-raised by the caller; this one only explains the run.
        log.error(f"Could not cancel Databricks run {run_id}: {err}; cancel it in the workspace")


def _terminal_error(client: WorkspaceClient, run: Run) -> DatabricksRunError:
    state = run.state
    assert state is not None and run.run_id is not None
    result = state.result_state
    summary = (
        f"Databricks run {run.run_id} ended {_name(state.life_cycle_state)}"
        f"{'/' + _name(result) if result else ''}: {state.state_message or 'no message'}\n"
        f"Run page: {run.run_page_url}"
    )
    if result == RunResultState.CANCELED:
        return DatabricksRunCancelled(
            f"{summary}\nThe run was cancelled outside Dagster.",
            run_id=run.run_id,
            run_page_url=run.run_page_url,
        )
    details = task_failure_details(client, run)
    message = f"{summary}\n{details}" if details else summary
    if result == RunResultState.TIMEDOUT:
        return DatabricksRunTimedOut(message, run_id=run.run_id, run_page_url=run.run_page_url)
    return DatabricksRunFailed(
        message,
        run_id=run.run_id,
        run_page_url=run.run_page_url,
        platform_failure=state.life_cycle_state == RunLifeCycleState.INTERNAL_ERROR,
    )


def task_failure_details(client: WorkspaceClient, run: Run) -> str:
    """Each failed task's error and the tail of its output, from ``runs/get-output``."""
    parts: list[str] = []
    for task in run.tasks or []:
        if task.state is not None and task.state.result_state == RunResultState.SUCCESS:
            continue
        if task.run_id is None:
            continue
        try:
            # runs/get-output answers for a task run only, never for a multi-task parent run.
            output = client.jobs.get_run_output(task.run_id)
        except DatabricksError as err:
            parts.append(f"Task {task.task_key}: its output could not be fetched ({err})")
            continue
        if output.error:
            parts.append(f"Task {task.task_key} error: {output.error}")
        if output.error_trace:
            parts.append(f"Task {task.task_key} trace (tail):\n{tail(output.error_trace)}")
        if output.logs:
            parts.append(f"Task {task.task_key} output (tail):\n{tail(output.logs)}")
    return "\n".join(parts)


def task_output_tails(client: WorkspaceClient, run: Run) -> dict[str, str]:
    """The tail of each task's stdout/stderr, by task key (tasks without output left out)."""
    tails: dict[str, str] = {}
    for task in run.tasks or []:
        if task.run_id is None or task.task_key is None:
            continue
        logs = client.jobs.get_run_output(task.run_id).logs
        if logs:
            tails[task.task_key] = tail(logs)
    return tails


def tail(text: str, *, lines: int = LOG_TAIL_LINES, chars: int = LOG_TAIL_CHARS) -> str:
    """The last ``lines`` lines of ``text``, at most ``chars`` characters."""
    kept = "\n".join(text.rstrip("\n").splitlines()[-lines:])
    return kept[-chars:]


def _name(value: object) -> str:
    return str(getattr(value, "value", value))
