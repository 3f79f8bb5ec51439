"""Databricks credentials: a workspace URL plus a personal access token or OAuth M2M.

The compute resource reads the values through Dagster ``EnvVar``; they are checked only when
a step launches, so a missing or empty one is a clear error naming the variables to set,
never an error at import or when Dagster loads the definitions.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlparse

if TYPE_CHECKING:
    from databricks.sdk import WorkspaceClient

    from fraud_assets.settings import DatabricksSettings

HOST_VAR = "DATABRICKS_HOST"
TOKEN_VAR = "DATABRICKS_TOKEN"
CLIENT_ID_VAR = "DATABRICKS_CLIENT_ID"
CLIENT_SECRET_VAR = "DATABRICKS_CLIENT_SECRET"
CREDENTIAL_VARS = (HOST_VAR, TOKEN_VAR, CLIENT_ID_VAR, CLIENT_SECRET_VAR)

AuthType = Literal["pat", "oauth-m2m"]

_HOW_TO = (
    f"Set {HOST_VAR} to the workspace URL and either {TOKEN_VAR} (a personal access token) or "
    f"{CLIENT_ID_VAR} + {CLIENT_SECRET_VAR} (OAuth machine-to-machine, a service principal)."
)


class DatabricksCredentialsError(RuntimeError):
    """The environment does not provide usable Databricks credentials."""


@dataclass(frozen=True, repr=False)
class DatabricksCredentials:
    """Where the workspace is and how to authenticate; ``repr`` never shows a secret."""

    host: str
    auth_type: AuthType
    token: str | None = None
    client_id: str | None = None
    client_secret: str | None = None

    @property
    def secrets(self) -> list[str]:
        """Values that must never reach logs, metadata or error text."""
        return [s for s in (self.token, self.client_secret) if s]

    def __repr__(self) -> str:
        return f"DatabricksCredentials(host={self.host!r}, auth_type={self.auth_type!r})"


def _given(value: str | None) -> str | None:
    # `import dagster_databricks` sets DATABRICKS_TOKEN="" when it is unset: empty means missing.
    if value is None or not value.strip():
        return None
    return value.strip()


def resolve_credentials(
    *,
    host: str | None,
    token: str | None,
    client_id: str | None,
    client_secret: str | None,
) -> DatabricksCredentials:
    """Pick the authentication method from the values given, or explain what to set."""
    host, token = _given(host), _given(token)
    client_id, client_secret = _given(client_id), _given(client_secret)
    missing = [] if host else [HOST_VAR]
    if token and (client_id or client_secret):
        raise DatabricksCredentialsError(
            f"Both {TOKEN_VAR} and OAuth credentials ({CLIENT_ID_VAR}/{CLIENT_SECRET_VAR}) are "
            "set; unset one so the identity that launches runs is unambiguous."
        )
    if token:
        auth_type: AuthType = "pat"
    elif client_id and client_secret:
        auth_type = "oauth-m2m"
    elif client_id or client_secret:
        auth_type = "oauth-m2m"
        missing.append(CLIENT_SECRET_VAR if client_id else CLIENT_ID_VAR)
    else:
        auth_type = "pat"
        missing.append(f"{TOKEN_VAR} (or {CLIENT_ID_VAR} + {CLIENT_SECRET_VAR})")
    if missing:
        raise DatabricksCredentialsError(
            f"Databricks credentials are missing or empty: {', '.join(missing)}. {_HOW_TO}"
        )
    assert host is not None
    return DatabricksCredentials(
        host=_checked_host(host),
        auth_type=auth_type,
        token=token,
        client_id=client_id,
        client_secret=client_secret,
    )


def _checked_host(host: str) -> str:
    url = urlparse(host if "://" in host else f"https://{host}")
    if url.scheme not in ("https", "http") or not url.hostname:
        raise DatabricksCredentialsError(
            f"{HOST_VAR}={host!r} is not a workspace URL such as https://adb-123.azuredatabricks.net"
        )
    if url.scheme == "http" and not _is_loopback(url.hostname):
        # A token sent over plain http can be read by anyone on the path.
        raise DatabricksCredentialsError(
            f"{HOST_VAR} must use https://; plain http is accepted only for a loopback emulator"
        )
    return f"{url.scheme}://{url.netloc}"


def _is_loopback(hostname: str) -> bool:
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def workspace_client(
    credentials: DatabricksCredentials | None, settings: DatabricksSettings
) -> WorkspaceClient:
    """A WorkspaceClient for these credentials whose every call also retries 500/502/504.

    ``None`` leaves authentication to the SDK: runtime auth on a cluster, else the standard
    ``DATABRICKS_*`` variables or profile.
    """
    from importlib.metadata import version

    from databricks.sdk import WorkspaceClient
    from databricks.sdk.core import Config

    from fraud_assets.databricks.http import retry_server_errors

    auth: dict[str, Any] = (
        {
            "host": credentials.host,
            "auth_type": credentials.auth_type,
            "token": credentials.token,
            "client_id": credentials.client_id,
            "client_secret": credentials.client_secret,
        }
        if credentials is not None
        else {}
    )
    config = Config(
        **auth,
        retry_timeout_seconds=settings.api_retry_timeout_seconds,
        debug_headers=False,
        product="fraud_assets",
        product_version=version("fraud_assets"),
    )
    client = WorkspaceClient(config=config)
    retry_server_errors(
        client,
        attempts=settings.api_retry_attempts,
        backoff_factor=settings.api_retry_backoff_seconds,
    )
    return client
