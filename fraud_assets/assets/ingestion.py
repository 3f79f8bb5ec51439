"""Claims in: bronze raw_claims, silver claims and claims_quarantine, with their checks."""

from collections.abc import Iterator

from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    Config,
    MaterializeResult,
    asset,
    multi_asset,
)
from pydantic import Field

from fraud_assets import keys
from fraud_assets.assets._check_specs import check_specs
from fraud_assets.assets._retry import LAUNCH_RETRY_POLICY
from fraud_assets.resources.compute import FraudCompute

# No `from __future__ import annotations`: Dagster inspects the context annotation at runtime.

GROUP = "ingestion"


class IngestConfig(Config):
    """Where claims come from; unset fields fall back to settings, then to synthetic claims
    (dev) or the landing folder's files not landed yet (staging, prod)."""

    source_path: str | None = Field(
        default=None,
        description="CSV or Parquet file to append as a batch (default: FRAUD_SOURCE_PATH)",
    )
    mapping: str | None = Field(
        default=None,
        description="Packaged mapping name or YAML path (default: FRAUD_SOURCE_MAPPING; "
        "none means the file already has the canonical columns)",
    )


@asset(
    retry_policy=LAUNCH_RETRY_POLICY,
    key=keys.RAW_CLAIMS,
    group_name=GROUP,
    check_specs=check_specs(keys.RAW_CLAIMS),
    kinds={"delta", "python"},
)
def raw_claims(
    context: AssetExecutionContext, config: IngestConfig, compute: FraudCompute
) -> Iterator[MaterializeResult | AssetCheckResult]:
    """Claims exactly as they landed, with their source file and load time."""
    params = {"source_path": config.source_path, "mapping": config.mapping}
    # Yielded, not returned: a returned list cannot fill the asset's output and its checks.
    yield from compute.run_task(
        context=context,
        task="ingest",
        params={name: value for name, value in params.items() if value},
    )


@multi_asset(
    retry_policy=LAUNCH_RETRY_POLICY,
    name="validate_claims",
    specs=[
        AssetSpec(
            keys.CLAIMS,
            group_name=GROUP,
            deps=[keys.RAW_CLAIMS],
            description="Typed, validated, deduplicated claims: the contract every model reads.",
            kinds={"spark", "delta"},
        ),
        AssetSpec(
            keys.CLAIMS_QUARANTINE,
            group_name=GROUP,
            deps=[keys.RAW_CLAIMS],
            description="Landed claims that failed validation, each with every reason why.",
            kinds={"spark", "delta"},
        ),
    ],
    check_specs=check_specs(keys.CLAIMS),
)
def validate_claims(
    context: AssetExecutionContext, compute: FraudCompute
) -> Iterator[MaterializeResult | AssetCheckResult]:
    """Split the latest bronze batch into trusted claims and quarantined rows with reasons."""
    params = {}
    landed = context.instance.get_latest_materialization_event(AssetKey(keys.RAW_CLAIMS))
    # One batch landed in this run: validate exactly that batch, even when it is empty.
    # Otherwise (several landing files, or none new) the task validates every batch not
    # published yet, else the latest again.
    materialization = landed.asset_materialization if landed is not None else None
    if materialization is not None and landed is not None and landed.run_id == context.run_id:
        batch_id = materialization.metadata.get("batch_id")
        if batch_id is not None:
            params["batch_id"] = str(getattr(batch_id, "value", batch_id))
    yield from compute.run_task(context=context, task="validate", params=params)
