"""A small code location for the runner's tests: one step succeeds, one fails its check,
and one launches a Pipes process that raises."""

import sys
import time

from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    Definitions,
    MaterializeResult,
    PipesSubprocessClient,
    asset,
    define_asset_job,
)

from fraud_assets import keys
from fraud_assets.checks import CHECK_RAW_SCHEMA, CHECK_UNIQUE_CLAIM_ID

# No `from __future__ import annotations`: Dagster inspects the context annotation at runtime.


@asset(
    key=keys.RAW_CLAIMS,
    check_specs=[AssetCheckSpec(CHECK_RAW_SCHEMA, asset=keys.RAW_CLAIMS, blocking=True)],
)
def raw_claims(context: AssetExecutionContext) -> MaterializeResult:
    """Three claims, one of them without the columns the check wants."""
    context.log.info("landing 3 claims")
    time.sleep(0.2)
    return MaterializeResult(
        metadata={"row_count": 3, "delta_version": 7, "table_location": "/lake/bronze/raw_claims"},
        check_results=[AssetCheckResult(passed=False, metadata={"missing": "claim_id"})],
    )


@asset(
    key=keys.CLAIMS,
    deps=[keys.RAW_CLAIMS],
    check_specs=[AssetCheckSpec(CHECK_UNIQUE_CLAIM_ID, asset=keys.CLAIMS, blocking=True)],
)
def claims() -> MaterializeResult:
    """Never runs: the blocking check upstream fails, so its own check is never evaluated."""
    return MaterializeResult(check_results=[AssetCheckResult(passed=True)])


# The external process fails the way a task does: an error raised inside open_dagster_pipes.
FAILING_TASK = (
    "from dagster_pipes import open_dagster_pipes\n"
    "with open_dagster_pipes():\n"
    "    raise ValueError('claims.csv: mapping needs column(s) [claim_id] that the file lacks')\n"
)


@asset(key=keys.CLAIM_FEATURES)
def claim_features(
    context: AssetExecutionContext, pipes_subprocess_client: PipesSubprocessClient
) -> MaterializeResult:
    """Launches a Pipes process that raises, as a failing task on local compute does."""
    return pipes_subprocess_client.run(
        command=[sys.executable, "-c", FAILING_TASK], context=context
    ).get_materialize_result()


@asset(key=keys.CLAIMS_QUARANTINE)
def claims_quarantine() -> MaterializeResult:
    """An independent table that materializes fine."""
    return MaterializeResult(metadata={"row_count": 1, "delta_version": 0})


defs = Definitions(
    assets=[raw_claims, claims, claims_quarantine, claim_features],
    jobs=[
        define_asset_job(
            "tiny_job", selection=[keys.RAW_CLAIMS, keys.CLAIMS, keys.CLAIMS_QUARANTINE]
        ),
        define_asset_job("pipes_failure_job", selection=[keys.CLAIM_FEATURES]),
    ],
    resources={"pipes_subprocess_client": PipesSubprocessClient()},
)
