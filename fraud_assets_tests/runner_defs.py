"""A small code location for the runner's tests: one step succeeds, one fails its check."""

import time

from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    Definitions,
    MaterializeResult,
    asset,
    define_asset_job,
)

from fraud_assets import keys

# No `from __future__ import annotations`: Dagster inspects the context annotation at runtime.


@asset(
    key=keys.RAW_CLAIMS,
    check_specs=[AssetCheckSpec(keys.CHECK_RAW_SCHEMA, asset=keys.RAW_CLAIMS, blocking=True)],
)
def raw_claims(context: AssetExecutionContext) -> MaterializeResult:
    """Three claims, one of them without the columns the check wants."""
    context.log.info("landing 3 claims")
    time.sleep(0.2)
    return MaterializeResult(
        metadata={"row_count": 3, "delta_version": 7, "table_location": "/lake/bronze/raw_claims"},
        check_results=[AssetCheckResult(passed=False, metadata={"missing": "claim_id"})],
    )


@asset(key=keys.CLAIMS, deps=[keys.RAW_CLAIMS])
def claims() -> None:
    """Never runs: the blocking check upstream fails."""


@asset(key=keys.CLAIMS_QUARANTINE)
def claims_quarantine() -> MaterializeResult:
    """An independent table that materializes fine."""
    return MaterializeResult(metadata={"row_count": 1, "delta_version": 0})


defs = Definitions(
    assets=[raw_claims, claims, claims_quarantine],
    jobs=[
        define_asset_job(
            "tiny_job", selection=[keys.RAW_CLAIMS, keys.CLAIMS, keys.CLAIMS_QUARANTINE]
        )
    ],
)
