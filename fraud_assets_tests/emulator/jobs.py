"""Jobs 2.2 in the emulator: submit, run-now, get, get-output, cancel, list, get, create.

Runs really execute: each task's entry point module runs as a local subprocess.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fraud_assets_tests.emulator.core import (
    FUSE_ROOT_VAR,
    MAX_LOG_BYTES,
    PACKAGE_NAME,
    TERMINAL,
    USER_NAME,
    ApiError,
    RunFault,
    now_ms,
)


@dataclass
class EmulatedTask:
    run_id: int
    task_key: str
    spec: dict[str, Any]
    life_cycle_state: str = "PENDING"
    result_state: str | None = None
    state_message: str = ""
    start_time: int = 0
    end_time: int = 0
    exit_code: int | None = None
    log_path: Path | None = None
    error: str | None = None
    error_trace: str | None = None
    command: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class EmulatedRun:
    run_id: int
    job_id: int
    run_name: str
    run_type: str
    tasks: list[EmulatedTask]
    environments: list[dict[str, Any]]
    job_clusters: list[dict[str, Any]]
    timeout_seconds: int
    fault: RunFault | None
    life_cycle_state: str = "PENDING"
    result_state: str | None = None
    state_message: str = ""
    start_time: int = 0
    end_time: int = 0
    job_parameters: dict[str, str] = field(default_factory=dict)
    cancel_requested_by: str | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def terminal(self) -> bool:
        return self.life_cycle_state in TERMINAL


class JobsApi:
    """The Jobs endpoints and run execution; mixed into ``DatabricksEmulator``."""

    def _runs_submit(self, payload: dict[str, Any]) -> dict[str, Any]:
        tasks = payload.get("tasks") or []
        if not tasks:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", "A run needs at least one task.")
        return self._start_run(
            job_id=None,
            run_name=payload.get("run_name") or "Untitled",
            run_type="SUBMIT_RUN",
            tasks=tasks,
            environments=payload.get("environments") or [],
            job_clusters=[],
            timeout_seconds=int(payload.get("timeout_seconds") or 0),
            idempotency_token=payload.get("idempotency_token"),
        )

    def _run_now(self, payload: dict[str, Any]) -> dict[str, Any]:
        job_id = int(payload.get("job_id") or 0)
        job = self._jobs.get(job_id)
        if job is None:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Job {job_id} does not exist.")
        settings = job["settings"]
        python_params = payload.get("python_params")
        python_named_params = payload.get("python_named_params")
        declared = {p["name"]: str(p.get("default", "")) for p in settings.get("parameters") or []}
        if declared and (python_params is not None or python_named_params is not None):
            raise ApiError(
                400,
                "INVALID_PARAMETER_VALUE",
                "Task-level parameter overrides (python_params, python_named_params) cannot be "
                "used in a job that defines job parameters; pass job_parameters instead.",
            )
        job_parameters = {**declared, **(payload.get("job_parameters") or {})}
        only = payload.get("only")
        defined = json.loads(json.dumps(settings.get("tasks") or []))
        if only is not None:
            unknown = set(only) - {t.get("task_key") for t in defined}
            if unknown:
                raise ApiError(
                    400, "INVALID_PARAMETER_VALUE", f"Tasks {sorted(unknown)} are not in the job."
                )
            defined = [t for t in defined if t.get("task_key") in only]
        tasks: list[dict[str, Any]] = []
        for task in defined:
            for concrete in _expand_for_each(task, job_parameters):
                wheel = concrete.get("python_wheel_task")
                if wheel is not None:
                    _apply_run_now_parameters(
                        wheel, python_params, python_named_params, job_parameters
                    )
                tasks.append(concrete)
        return self._start_run(
            job_id=job_id,
            run_name=settings.get("name") or f"job {job_id}",
            run_type="JOB_RUN",
            tasks=tasks,
            environments=settings.get("environments") or [],
            job_clusters=settings.get("job_clusters") or [],
            timeout_seconds=int(settings.get("timeout_seconds") or 0),
            idempotency_token=payload.get("idempotency_token"),
            job_parameters=job_parameters,
        )

    def _start_run(
        self,
        *,
        job_id: int | None,
        run_name: str,
        run_type: str,
        tasks: list[dict[str, Any]],
        environments: list[dict[str, Any]],
        job_clusters: list[dict[str, Any]],
        timeout_seconds: int,
        idempotency_token: str | None,
        job_parameters: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        with self._lock:
            if idempotency_token and idempotency_token in self._idempotency:
                return {"run_id": self._idempotency[idempotency_token]}
            run_id = next(self._ids)
            run = EmulatedRun(
                run_id=run_id,
                job_id=job_id if job_id is not None else next(self._ids),
                run_name=run_name,
                run_type=run_type,
                tasks=[
                    EmulatedTask(run_id=next(self._ids), task_key=t.get("task_key", ""), spec=t)
                    for t in tasks
                ],
                environments=environments,
                job_clusters=job_clusters,
                timeout_seconds=timeout_seconds,
                fault=self._run_faults.pop(0) if self._run_faults else None,
                start_time=now_ms(),
                job_parameters=dict(job_parameters or {}),
            )
            self._runs[run_id] = run
            for task in run.tasks:
                self._task_runs[task.run_id] = (run, task)
            if idempotency_token:
                self._idempotency[idempotency_token] = run_id
            thread = threading.Thread(target=self._execute, args=(run,), daemon=True)
            self._threads.append(thread)
        thread.start()
        return {"run_id": run_id, "number_in_job": run_id}

    def _runs_get(self, args: dict[str, Any]) -> dict[str, Any]:
        run = self._runs.get(int(args.get("run_id") or 0))
        if run is None:
            raise ApiError(
                400, "INVALID_PARAMETER_VALUE", f"Run {args.get('run_id')} does not exist."
            )
        return self._run_json(run)

    def _runs_get_output(self, args: dict[str, Any]) -> dict[str, Any]:
        run_id = int(args.get("run_id") or 0)
        if run_id in self._runs:
            raise ApiError(
                400,
                "INVALID_PARAMETER_VALUE",
                "Retrieving the output of runs with multiple tasks is not supported. "
                "Please retrieve the output of each individual task run instead.",
            )
        found = self._task_runs.get(run_id)
        if found is None:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Run {run_id} does not exist.")
        run, task = found
        output: dict[str, Any] = {"metadata": self._task_json(run, task)}
        if task.log_path is not None and task.log_path.exists():
            raw = task.log_path.read_bytes()
            output["logs"] = raw[-MAX_LOG_BYTES:].decode("utf-8", errors="replace")
            output["logs_truncated"] = len(raw) > MAX_LOG_BYTES
        if task.error:
            output["error"] = task.error
        if task.error_trace:
            output["error_trace"] = task.error_trace
        return output

    def _runs_cancel(self, payload: dict[str, Any]) -> dict[str, Any]:
        self.cancel(int(payload.get("run_id") or 0), by="runs/cancel")
        return {}

    def _jobs_get(self, args: dict[str, Any]) -> dict[str, Any]:
        job = self._jobs.get(int(args.get("job_id") or 0))
        if job is None:
            raise ApiError(
                400, "INVALID_PARAMETER_VALUE", f"Job {args.get('job_id')} does not exist."
            )
        return job

    def _jobs_list(self, args: dict[str, Any]) -> dict[str, Any]:
        name = args.get("name")
        jobs = [
            job
            for job in self._jobs.values()
            if name is None or str(job["settings"].get("name", "")).lower() == name.lower()
        ]
        return {"jobs": jobs, "has_more": False} if jobs else {"has_more": False}

    def _run_json(self, run: EmulatedRun) -> dict[str, Any]:
        return {
            "job_id": run.job_id,
            "run_id": run.run_id,
            "number_in_job": run.run_id,
            "creator_user_name": USER_NAME,
            "run_name": run.run_name,
            "run_type": run.run_type,
            "state": self._state_json(run.life_cycle_state, run.result_state, run.state_message),
            "status": self._status_json(run.life_cycle_state, run.result_state, run.state_message),
            "start_time": run.start_time,
            "end_time": run.end_time,
            "run_page_url": f"{self.host}/?o=0#job/{run.job_id}/run/{run.run_id}",
            "tasks": [self._task_json(run, task) for task in run.tasks],
            "environments": run.environments,
            "job_clusters": run.job_clusters,
            "format": "MULTI_TASK",
        }

    def _task_json(self, run: EmulatedRun, task: EmulatedTask) -> dict[str, Any]:
        return {
            **{k: v for k, v in task.spec.items() if k not in ("depends_on", "_for_each_input")},
            "run_id": task.run_id,
            "task_key": task.task_key,
            "state": self._state_json(task.life_cycle_state, task.result_state, task.state_message),
            "start_time": task.start_time,
            "end_time": task.end_time,
            "attempt_number": 0,
            "run_page_url": f"{self.host}/?o=0#job/{run.job_id}/run/{task.run_id}",
        }

    @staticmethod
    def _state_json(life: str, result: str | None, message: str) -> dict[str, Any]:
        state: dict[str, Any] = {
            "life_cycle_state": life,
            "state_message": message,
            "user_cancelled_or_timedout": result in ("CANCELED", "TIMEDOUT"),
        }
        if result:
            state["result_state"] = result
        return state

    @staticmethod
    def _status_json(life: str, result: str | None, message: str) -> dict[str, Any]:
        if life not in TERMINAL:
            return {"state": life}
        code = {
            "SUCCESS": "SUCCESS",
            "FAILED": "RUN_EXECUTION_ERROR",
            "CANCELED": "CANCELED",
            "TIMEDOUT": "TIMEOUT",
        }.get(result or "", "INTERNAL_ERROR")
        return {"state": "TERMINATED", "termination_details": {"code": code, "message": message}}

    # ---------------------------------------------------------------- run execution

    def _execute(self, run: EmulatedRun) -> None:
        try:
            self._execute_tasks(run)
        finally:
            run.end_time = now_ms()
            run.done.set()

    def _execute_tasks(self, run: EmulatedRun) -> None:
        time.sleep(self.pending_seconds)
        if run.fault == "internal_error":
            self._finish(run, "INTERNAL_ERROR", None, "Emulated internal error: cluster lost")
            return
        deadline = time.monotonic() + run.timeout_seconds if run.timeout_seconds else None
        for task in run.tasks:
            if run.cancel_event.is_set():
                break
            run.life_cycle_state = "RUNNING"
            task.life_cycle_state, task.start_time = "RUNNING", now_ms()
            if run.fault == "hang":
                run.cancel_event.wait()
                break
            problem = self._task_problem(run, task)
            if problem is not None:
                task.error = problem
                self._finish_task(task, "FAILED", problem)
                break
            outcome = self._run_process(run, task, deadline)
            if outcome != "SUCCESS":
                break
        if run.cancel_event.is_set():
            for task in run.tasks:
                if task.result_state is None:
                    self._finish_task(task, "CANCELED", "Run cancelled.")
            self._finish(run, "TERMINATED", "CANCELED", "Run cancelled.")
            return
        results = [t.result_state for t in run.tasks]
        if all(r == "SUCCESS" for r in results):
            self._finish(run, "TERMINATED", "SUCCESS", "")
        elif "TIMEDOUT" in results:
            self._finish(run, "TERMINATED", "TIMEDOUT", "Run timed out.")
        else:
            failed = next(t for t in run.tasks if t.result_state not in (None, "SUCCESS"))
            for task in run.tasks:
                if task.result_state is None:
                    self._finish_task(task, "UPSTREAM_FAILED", "Upstream task failed.")
            self._finish(run, "TERMINATED", "FAILED", f"Task {failed.task_key} failed.")

    def _task_problem(self, run: EmulatedRun, task: EmulatedTask) -> str | None:
        """Why this task cannot start, as a cluster would report it, or None."""
        wheel = task.spec.get("python_wheel_task")
        if wheel is None:
            return "The emulator runs python_wheel_task tasks only."
        if wheel.get("package_name") != PACKAGE_NAME:
            return f"ModuleNotFoundError: No module named '{wheel.get('package_name')}'"
        if not self._has_wheel(run, task):
            return f"ModuleNotFoundError: No module named '{PACKAGE_NAME}' (no wheel installed)"
        if wheel.get("entry_point") not in self.entry_points:
            return (
                f"RuntimeError: entry point {wheel.get('entry_point')!r} is not in the "
                f"metadata of package {PACKAGE_NAME}"
            )
        return None

    def _has_wheel(self, run: EmulatedRun, task: EmulatedTask) -> bool:
        env_key = task.spec.get("environment_key")
        if env_key is not None:
            env = next((e for e in run.environments if e.get("environment_key") == env_key), None)
            deps = ((env or {}).get("spec") or {}).get("dependencies") or []
            return any(str(d).endswith(".whl") for d in deps)
        return any(
            str(lib.get("whl", "")).endswith(".whl") for lib in task.spec.get("libraries") or []
        )

    def _cluster_env(self, run: EmulatedRun, task: EmulatedTask) -> dict[str, str]:
        cluster = task.spec.get("new_cluster")
        key = task.spec.get("job_cluster_key")
        if cluster is None and key is not None:
            cluster = next(
                (c.get("new_cluster") for c in run.job_clusters if c.get("job_cluster_key") == key),
                None,
            )
        return {str(k): str(v) for k, v in ((cluster or {}).get("spark_env_vars") or {}).items()}

    def _run_process(self, run: EmulatedRun, task: EmulatedTask, deadline: float | None) -> str:
        wheel = task.spec["python_wheel_task"]
        values = {
            **{f"job.parameters.{k}": v for k, v in run.job_parameters.items()},
            "job.run_id": str(run.run_id),
            "task.run_id": str(task.run_id),
            "input": str(task.spec.get("_for_each_input", "")),
        }
        named = wheel.get("named_parameters")
        if named is not None:
            parameters = [f"--{k}={_render(str(v), values)}" for k, v in named.items()]
        else:
            parameters = [_render(str(p), values) for p in wheel.get("parameters") or []]
        module = self.entry_points[wheel["entry_point"]]
        workdir = self.runs_dir / str(task.run_id)
        workdir.mkdir(parents=True, exist_ok=True)
        task.log_path = workdir / "output.log"
        # Like a cluster, the task sees only what the launch sent, not the caller's settings.
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("DATABRICKS_", "FRAUD_", "DAGSTER_"))
        }
        env.update(self._cluster_env(run, task))
        env[FUSE_ROOT_VAR] = str(self.fuse_root)
        # A cluster's SDK authenticates as the run's identity (runtime auth); a token minted
        # for this task stands in for it, never the launcher's own.
        env["DATABRICKS_HOST"] = self.host
        env["DATABRICKS_TOKEN"] = self.mint_token("task")
        env["PYTHONUNBUFFERED"] = "1"
        task.command = [self.python, "-m", module, *parameters]
        task.env = env
        with open(task.log_path, "wb") as log:
            process = subprocess.Popen(
                task.command,
                cwd=workdir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            if run.fault == "cancel_externally":
                threading.Timer(0.5, self.cancel, args=(run.run_id,)).start()
            outcome = None
            while process.poll() is None:
                if run.cancel_event.is_set():
                    outcome = "CANCELED"
                elif deadline is not None and time.monotonic() > deadline:
                    outcome = "TIMEDOUT"
                if outcome is not None:
                    _kill(process)
                    break
                time.sleep(0.05)
        task.exit_code = process.returncode
        output = task.log_path.read_text(encoding="utf-8", errors="replace")
        if outcome == "CANCELED":
            self._finish_task(task, "CANCELED", "Run cancelled.")
        elif outcome == "TIMEDOUT":
            self._finish_task(task, "TIMEDOUT", "Task timed out.")
        elif process.returncode == 0:
            self._finish_task(task, "SUCCESS", "")
        else:
            task.error, task.error_trace = _python_error(output, process.returncode)
            self._finish_task(task, "FAILED", f"Task failed with exit code {process.returncode}")
        return task.result_state or "FAILED"

    @staticmethod
    def _finish_task(task: EmulatedTask, result: str, message: str) -> None:
        task.result_state, task.state_message = result, message
        task.life_cycle_state, task.end_time = "TERMINATED", now_ms()

    @staticmethod
    def _finish(run: EmulatedRun, life: str, result: str | None, message: str) -> None:
        run.result_state, run.state_message = result, message
        run.life_cycle_state = life


def _render(value: str, values: Mapping[str, str]) -> str:
    """Resolve dynamic value references such as ``{{job.run_id}}`` and ``{{input}}``."""
    return re.sub(
        r"\{\{\s*([\w.-]+)\s*\}\}", lambda m: str(values.get(m.group(1), m.group(0))), value
    )


def _expand_for_each(
    task: dict[str, Any], job_parameters: Mapping[str, str]
) -> list[dict[str, Any]]:
    """A plain task as is; a for_each task as one nested task per input."""
    for_each = task.get("for_each_task")
    if for_each is None:
        return [task]
    values = {f"job.parameters.{k}": v for k, v in job_parameters.items()}
    inputs = json.loads(_render(str(for_each.get("inputs", "[]")), values))
    expanded = []
    for item in inputs:
        nested = json.loads(json.dumps(for_each["task"]))
        nested["_for_each_input"] = item if isinstance(item, str) else json.dumps(item)
        expanded.append(nested)
    return expanded


def _apply_run_now_parameters(
    wheel: dict[str, Any],
    python_params: list[str] | None,
    python_named_params: Mapping[str, str] | None,
    job_parameters: Mapping[str, str],
) -> None:
    """Run-now overrides: positional replace, named merge, job parameters pushed down."""
    if python_params is not None:
        wheel["parameters"] = list(python_params)
    if wheel.get("named_parameters") is not None:
        wheel["named_parameters"] = {
            **wheel["named_parameters"],
            **(python_named_params or {}),
            **job_parameters,
        }


def _python_error(output: str, exit_code: int) -> tuple[str, str | None]:
    """The exception line and traceback a Python task printed, as ``runs/get-output`` has them."""
    start = output.rfind("Traceback (most recent call last):")
    if start < 0:
        return f"Task exited with code {exit_code}", None
    trace = output[start:].rstrip()
    lines = [line for line in trace.splitlines() if line and not line[0].isspace()]
    exception_line = next(
        (line for line in reversed(lines) if re.match(r"^[A-Za-z_][\w.]*(: |$)", line)),
        lines[-1],
    )
    return exception_line, trace


def _kill(process: subprocess.Popen[bytes]) -> None:
    """Stop the task and everything it started (a Spark JVM, for one)."""
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
