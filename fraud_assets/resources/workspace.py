"""The Databricks workspace resource: one place that knows where the workspace is and who calls it.

The compute resource launches steps through it and the new-claims sensor lists the landing
Volume through it. Credentials are ``EnvVar`` references, resolved by Dagster when a run or a
sensor tick starts, so their values never sit in the definitions or the UI.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from dagster import ConfigurableResource, EnvVar
from pydantic import Field

from fraud_assets.databricks.credentials import (
    CLIENT_ID_VAR,
    CLIENT_SECRET_VAR,
    HOST_VAR,
    TOKEN_VAR,
    DatabricksCredentials,
    resolve_credentials,
    workspace_client,
)
from fraud_assets.settings import DatabricksSettings, get_settings

if TYPE_CHECKING:
    from databricks.sdk import WorkspaceClient

_FIELD_VARS = (
    ("host", HOST_VAR),
    ("token", TOKEN_VAR),
    ("client_id", CLIENT_ID_VAR),
    ("client_secret", CLIENT_SECRET_VAR),
)


class DatabricksWorkspace(ConfigurableResource):
    """A Databricks workspace URL plus a personal access token or OAuth M2M credentials."""

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
    def from_env(cls) -> DatabricksWorkspace:
        """Reference (never copy) the credential variables this environment sets.

        A variable unset here stays unset, so the definitions load without credentials and
        the first launch or sensor tick that needs the workspace names what is missing.
        """
        refs: dict[str, Any] = {
            field: EnvVar(var) for field, var in _FIELD_VARS if os.environ.get(var, "").strip()
        }
        return cls(**refs)

    def credentials(self) -> DatabricksCredentials:
        """The checked credentials, or an error naming the variables to set."""
        return resolve_credentials(
            host=self.host,
            token=self.token,
            client_id=self.client_id,
            client_secret=self.client_secret,
        )

    def workspace_client(self, settings: DatabricksSettings | None = None) -> WorkspaceClient:
        """A ``WorkspaceClient`` that retries 5xx answers as ``settings`` say (default: env)."""
        return workspace_client(self.credentials(), settings or get_settings().databricks)
