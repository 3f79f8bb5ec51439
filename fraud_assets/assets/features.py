"""Gold features: the table every model trains on and every score is computed from."""

from collections.abc import Iterator

from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    MaterializeResult,
    asset,
)

from fraud_assets import keys
from fraud_assets.assets._check_specs import check_specs
from fraud_assets.assets._retry import LAUNCH_RETRY_POLICY
from fraud_assets.resources.compute import FraudCompute

# No `from __future__ import annotations`: Dagster inspects the context annotation at runtime.


@asset(
    retry_policy=LAUNCH_RETRY_POLICY,
    key=keys.CLAIM_FEATURES,
    group_name="features",
    deps=[keys.CLAIMS],
    check_specs=check_specs(keys.CLAIM_FEATURES),
    kinds={"spark", "delta"},
)
def claim_features(
    context: AssetExecutionContext, compute: FraudCompute
) -> Iterator[MaterializeResult | AssetCheckResult]:
    """Fraud signals per claim (provider, patient, procedure norms, duplicates) and its split."""
    # Yielded, not returned: a returned list cannot fill the asset's output and its check.
    yield from compute.run_task(context=context, task="features")
