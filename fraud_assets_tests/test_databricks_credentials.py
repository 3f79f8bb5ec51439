"""Databricks credentials: clear errors at launch time, OAuth M2M, and a token that never leaks."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import DagsterInstance
from dagster._serdes import serialize_value

from fraud_assets.databricks.credentials import (
    DatabricksCredentialsError,
    resolve_credentials,
)
from fraud_assets.databricks.redaction import MASK, redact
from fraud_assets_tests.emulator import DatabricksEmulator
from fraud_assets_tests.emulator.fixtures import (
    OAUTH_CLIENT_ID,
    OAUTH_SECRET,
    SENTINEL_TOKEN,
)
from fraud_assets_tests.emulator.probe_job import failure_message, run_probe

pytest_plugins = ["fraud_assets_tests.emulator.fixtures"]

REPO_ROOT = Path(__file__).resolve().parents[1]
HOST = "https://adb-1234567890.7.azuredatabricks.net"


def test_a_token_selects_personal_access_token_auth_and_stays_out_of_repr() -> None:
    credentials = resolve_credentials(
        host=HOST + "/", token=SENTINEL_TOKEN, client_id=None, client_secret=None
    )
    assert (credentials.host, credentials.auth_type) == (HOST, "pat")
    assert credentials.secrets == [SENTINEL_TOKEN]
    assert SENTINEL_TOKEN not in repr(credentials)


def test_client_id_and_secret_select_oauth_m2m() -> None:
    credentials = resolve_credentials(
        host=HOST, token="", client_id=OAUTH_CLIENT_ID, client_secret=OAUTH_SECRET
    )
    assert credentials.auth_type == "oauth-m2m"
    assert OAUTH_SECRET not in repr(credentials)


@pytest.mark.parametrize(
    ("host", "token", "client_id", "client_secret", "named"),
    [
        (None, SENTINEL_TOKEN, None, None, "DATABRICKS_HOST"),
        (
            HOST,
            None,
            None,
            None,
            "DATABRICKS_TOKEN (or DATABRICKS_CLIENT_ID + DATABRICKS_CLIENT_SECRET)",
        ),
        # `import dagster_databricks` sets DATABRICKS_TOKEN="" when unset: still missing.
        (HOST, "", None, None, "DATABRICKS_TOKEN"),
        (HOST, "   ", None, None, "DATABRICKS_TOKEN"),
        (HOST, None, OAUTH_CLIENT_ID, None, "DATABRICKS_CLIENT_SECRET"),
        (HOST, None, None, OAUTH_SECRET, "DATABRICKS_CLIENT_ID"),
        ("", "", "", "", "DATABRICKS_HOST, DATABRICKS_TOKEN"),
    ],
)
def test_missing_or_empty_credentials_name_the_variables_to_set(
    host: str | None,
    token: str | None,
    client_id: str | None,
    client_secret: str | None,
    named: str,
) -> None:
    with pytest.raises(DatabricksCredentialsError) as raised:
        resolve_credentials(
            host=host, token=token, client_id=client_id, client_secret=client_secret
        )
    message = str(raised.value)
    assert named in message
    assert "Set DATABRICKS_HOST to the workspace URL" in message
    for secret in (SENTINEL_TOKEN, OAUTH_SECRET):
        assert secret not in message


def test_two_authentication_methods_at_once_are_refused() -> None:
    with pytest.raises(DatabricksCredentialsError, match="unset one"):
        resolve_credentials(
            host=HOST, token=SENTINEL_TOKEN, client_id=OAUTH_CLIENT_ID, client_secret=OAUTH_SECRET
        )


@pytest.mark.parametrize(
    ("host", "accepted"),
    [
        ("http://127.0.0.1:8123", True),
        ("http://localhost:8123", True),
        ("adb-1.2.azuredatabricks.net", True),
        ("http://adb-1.2.azuredatabricks.net", False),
        ("ftp://example.com", False),
    ],
)
def test_plain_http_is_accepted_only_for_a_loopback_emulator(host: str, accepted: bool) -> None:
    if accepted:
        resolve_credentials(host=host, token=SENTINEL_TOKEN, client_id=None, client_secret=None)
    else:
        with pytest.raises(DatabricksCredentialsError):
            resolve_credentials(host=host, token=SENTINEL_TOKEN, client_id=None, client_secret=None)


def test_definitions_load_in_databricks_mode_without_any_credentials(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "FRAUD_"))}
    env.update({"FRAUD_COMPUTE": "databricks", "FRAUD_HOME": str(tmp_path)})
    script = (
        "from fraud_assets.definitions import defs\n"
        "compute = defs.resources['compute']\n"
        "print(type(compute).__name__, compute.workspace.host, compute.workspace.token)\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert loaded.stdout.strip().endswith("DatabricksPipesCompute None None")


def test_a_step_without_credentials_fails_at_launch_naming_the_variables(
    databricks_env: DatabricksEmulator,
    probe_task: None,
    dagster_instance: DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABRICKS_TOKEN", "")

    message = failure_message(run_probe(dagster_instance))

    assert "Databricks credentials are missing or empty: DATABRICKS_TOKEN" in message
    assert not databricks_env.requests, "nothing may reach the workspace without credentials"


def test_oauth_m2m_credentials_launch_steps(
    databricks_env: DatabricksEmulator,
    probe_task: None,
    dagster_instance: DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DATABRICKS_TOKEN")
    monkeypatch.setenv("DATABRICKS_CLIENT_ID", OAUTH_CLIENT_ID)
    monkeypatch.setenv("DATABRICKS_CLIENT_SECRET", OAUTH_SECRET)
    monkeypatch.setenv("FRAUD_DATABRICKS__FORWARD_STDIO", "false")

    result = run_probe(dagster_instance)

    assert result.success, failure_message(result)
    assert databricks_env.calls("POST", "/oidc/v1/token")
    api_calls = [r for r in databricks_env.requests if r.path.startswith("/api/")]
    assert api_calls
    assert all(r.headers["Authorization"].startswith("Bearer emu-oauth-") for r in api_calls)


def test_the_token_never_leaks_even_when_the_sdk_echoes_request_headers(
    databricks_env: DatabricksEmulator,
    probe_task: None,
    dagster_instance: DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("FRAUD_DATABRICKS__FORWARD_STDIO", "false")
    caplog.set_level(logging.DEBUG)
    # A proxy's plain-text answer: the SDK cannot parse it and dumps the request, headers
    # included, into its error message.
    databricks_env.fail_http(
        "/api/2.2/jobs/runs/submit",
        400,
        body="upstream connect error or disconnect/reset before headers",
    )

    result = run_probe(dagster_instance)

    message = failure_message(result)
    assert f"Authorization: Bearer {MASK}" in message, "the guard had something to redact"
    records = dagster_instance.get_records_for_run(result.run_id, limit=10_000).records
    events = "\n".join(serialize_value(record.event_log_entry) for record in records)
    captured = capfd.readouterr()
    for text in (message, events, caplog.text, captured.out, captured.err):
        assert SENTINEL_TOKEN not in text
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert SENTINEL_TOKEN.encode() not in path.read_bytes(), path


def test_redact_masks_every_secret_and_keeps_the_rest() -> None:
    text = f"Authorization: Bearer {SENTINEL_TOKEN}; secret={OAUTH_SECRET}; host={HOST}"
    assert redact(text, [SENTINEL_TOKEN, OAUTH_SECRET, ""]) == (
        f"Authorization: Bearer {MASK}; secret={MASK}; host={HOST}"
    )
