"""How the assets read in the Dagster UI: owners, where they run, and links to their code.

Applied once, in ``definitions.py``, so the asset modules declare only what an asset means
(key, group, dependencies, checks, the libraries it uses) and the deployment decides who
owns it and where it runs.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from dagster import (
    AnchorBasedFilePathMapping,
    AssetsDefinition,
    AssetSpec,
    BetaWarning,
    SourceAsset,
    link_code_references_to_git,
    map_asset_specs,
    with_source_code_references,
)

from fraud_assets.provenance import git, git_commit
from fraud_assets.settings import FraudSettings

if TYPE_CHECKING:
    from dagster._core.definitions.assets.definition.cacheable_assets_definition import (
        CacheableAssetsDefinition,
    )


# The gates and the promotion they guard answer to governance; the rest to the ML team.
GOVERNANCE_GROUPS = frozenset({"governance", "registry"})
DATABRICKS_KIND = "databricks"
_PACKAGE_DIR = Path(__file__).resolve().parent


def owner_of(spec: AssetSpec, settings: FraudSettings) -> str:
    if spec.group_name in GOVERNANCE_GROUPS:
        return settings.owners.governance
    return settings.owners.ml


def annotate_spec(spec: AssetSpec, settings: FraudSettings) -> AssetSpec:
    """Set the owner; add the ``databricks`` kind when the step runs on a workspace.

    Every asset launches its step through the compute resource, so in Databricks mode
    every one runs there. Locally nothing does, and the kind would only mislead.
    """
    kinds = set(spec.kinds)
    if settings.compute == "databricks":
        kinds.add(DATABRICKS_KIND)
    return spec.replace_attributes(owners=[owner_of(spec, settings)], kinds=kinds)


def catalog_assets(
    assets: Sequence[AssetsDefinition | AssetSpec | SourceAsset | CacheableAssetsDefinition],
    settings: FraudSettings,
) -> list[AssetsDefinition]:
    """Owners, kinds and source code references (linked to git when a remote is known)."""
    materializable = [asset for asset in assets if isinstance(asset, AssetsDefinition)]
    if len(materializable) != len(assets):
        raise TypeError("every fraud_assets asset is expected to be an AssetsDefinition")
    annotated = map_asset_specs(lambda spec: annotate_spec(spec, settings), materializable)
    remote, commit = code_repository(settings)
    # Code references are beta, used knowingly: the warning would print on every code load.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BetaWarning)
        referenced = with_source_code_references(annotated)
        if remote is not None and commit is not None:
            referenced = link_code_references_to_git(
                referenced,
                git_url=remote,
                git_branch=commit,
                file_path_mapping=AnchorBasedFilePathMapping(
                    local_file_anchor=_PACKAGE_DIR, file_anchor_path_in_repository="fraud_assets/"
                ),
            )
    return [asset for asset in referenced if isinstance(asset, AssetsDefinition)]


def code_repository(settings: FraudSettings) -> tuple[str | None, str | None]:
    """The GitHub/GitLab URL and commit to link code to, or ``None`` where either is unknown.

    ``FRAUD_CODE_REPOSITORY_URL`` and ``FRAUD_GIT_COMMIT`` win (a container image has no
    ``.git``); otherwise the ``origin`` remote and ``HEAD`` of this checkout.
    """
    remote = settings.code_repository_url or git("remote", "get-url", "origin")
    commit = git_commit(settings)
    url = browsable_url(remote) if remote else None
    if url is None or not commit:
        return None, None
    return url, commit


def browsable_url(remote: str) -> str | None:
    """``git@github.com:org/repo.git`` or ``https://github.com/org/repo.git`` as a web URL.

    Only GitHub and GitLab: Dagster builds file links for those two hosts alone.
    """
    remote = remote.strip()
    ssh = re.fullmatch(r"(?:ssh://)?git@([^:/]+)[:/](.+?)(?:\.git)?/?", remote)
    if ssh:
        url = f"https://{ssh.group(1)}/{ssh.group(2)}"
    elif re.match(r"https?://", remote):
        url = re.sub(r"(?:\.git)?/?$", "", re.sub(r"//[^/@]+@", "//", remote))
    else:
        return None
    return url if ("github" in url or "gitlab" in url) else None
