"""One Spark for a whole local run: a Spark Connect server that every step connects to.

Each step of a local run is its own Pipes subprocess, as on Databricks each is a task on a
cluster. A subprocess that starts its own SparkSession pays a JVM start and a cold first
query (10-20 s on two cores) every time; connecting to a running Spark Connect server
costs about a second. ``shared_spark`` starts one server (the ``SparkConnectServer`` class
pyspark ships, through its own ``spark-submit``) on a free loopback port, sets Spark's own
``SPARK_REMOTE`` variable so the steps it launches connect to it (``fraud_assets.spark``),
and stops it when the run ends. This is how a step meets Spark on Databricks too: a remote
session (Databricks Connect, serverless) rather than one it starts itself; the task code is
the same.

``python -m fraud_assets.local.spark_server dagster dev ...`` runs a command (``make dev``
does) with one server for every run it launches; with no command it serves until
interrupted and prints the ``SPARK_REMOTE`` to export.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from fraud_assets.settings import FraudSettings, get_settings
from fraud_assets.spark import SPARK_REMOTE, session_confs

SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"
START_TIMEOUT_SECONDS = 180.0
PR_SET_PDEATHSIG = 1  # linux/prctl.h


class SparkServerError(RuntimeError):
    """The Spark Connect server did not start; the message holds the end of its log."""


def server_command(settings: FraudSettings, port: int) -> list[str]:
    """``spark-submit`` of pyspark's Spark Connect server, sized like a local session."""
    import pyspark

    spark_home = Path(pyspark.__file__).parent
    confs = {
        **session_confs(settings),
        "spark.connect.grpc.binding.address": "127.0.0.1",
        "spark.connect.grpc.binding.port": str(port),
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
    }
    command = [
        str(spark_home / "bin" / "spark-submit"),
        "--class",
        SERVER_CLASS,
        "--master",
        settings.spark_master,
        "--driver-memory",
        settings.spark_driver_memory,
        "--name",
        "fraud_assets shared Spark",
    ]
    for key, value in confs.items():
        command += ["--conf", f"{key}={value}"]
    return [*command, "spark-internal"]


@contextlib.contextmanager
def shared_spark(settings: FraudSettings | None = None) -> Iterator[str]:
    """Run a Spark Connect server for the duration of the block and point ``SPARK_REMOTE``
    at it; yields its URL. When ``SPARK_REMOTE`` is already set, that server is used."""
    existing = os.environ.get(SPARK_REMOTE)
    if existing:
        yield existing
        return
    settings = settings or get_settings()
    port = _free_port()
    url = f"sc://127.0.0.1:{port}"
    with tempfile.NamedTemporaryFile(
        "w+", prefix="spark-connect-", suffix=".log", delete=False
    ) as log:
        import pyspark

        env = {
            **os.environ,
            "SPARK_HOME": str(Path(pyspark.__file__).parent),
            "PYSPARK_PYTHON": os.environ.get("PYSPARK_PYTHON", sys.executable),
        }
        server = subprocess.Popen(
            server_command(settings, port),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its JVM and children stop together
            preexec_fn=_stop_with_parent,
        )
    try:
        _wait_until_listening(server, port, Path(log.name))
        os.environ[SPARK_REMOTE] = url
        yield url
    finally:
        os.environ.pop(SPARK_REMOTE, None)
        _stop(server)
        with contextlib.suppress(OSError):
            Path(log.name).unlink()


def local_run_spark(settings: FraudSettings) -> contextlib.AbstractContextManager[str | None]:
    """``shared_spark`` for a run whose steps run on this machine; nothing for Databricks
    compute, whose steps meet the cluster's Spark."""
    if settings.compute != "local":
        return contextlib.nullcontext(None)
    return shared_spark(settings)


def _stop_with_parent() -> None:
    """In the server's process before it becomes spark-submit (whose scripts exec the JVM in
    the same process): on Linux, SIGTERM it when the process that started it dies, so a
    killed run leaves no Spark behind."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _run_to_the_end(command: list[str]) -> int:
    """Run ``command``; a Ctrl-C reaches it from the terminal too, so wait while it stops
    itself (``dagster dev`` shuts its webserver and daemon down) rather than killing it."""
    child = subprocess.Popen(command)
    while True:
        try:
            return child.wait()
        except KeyboardInterrupt:
            continue


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_until_listening(server: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SparkServerError(
                f"the Spark Connect server exited with {server.returncode} before listening "
                f"on port {port}:\n{_tail(log)}"
            )
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.2)
    _stop(server)
    raise SparkServerError(
        f"the Spark Connect server did not listen on port {port} within "
        f"{START_TIMEOUT_SECONDS:.0f} s:\n{_tail(log)}"
    )


def _stop(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def _tail(log: Path, lines: int = 20) -> str:
    try:
        return "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fraud_assets.local.spark_server",
        description="Run COMMAND (e.g. dagster dev) with one Spark Connect server its local "
        "steps share, stopped when it ends; without COMMAND, serve until interrupted.",
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command to run")
    command = [c for c in parser.parse_args(argv).command if c != "--"]
    # Stopped by SIGTERM (a supervisor, kill), the server still stops with it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    settings = get_settings()
    with local_run_spark(settings) as url:  # Databricks compute: the cluster's Spark, no server
        if command:
            return _run_to_the_end(command)
        if url is None:
            sys.stderr.write(
                f"compute is {settings.compute!r}: its steps use the cluster's Spark\n"
            )
            return 2
        sys.stdout.write(f"export {SPARK_REMOTE}={url}\n")
        sys.stdout.flush()
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
    return 0


if __name__ == "__main__":
    sys.exit(main())
