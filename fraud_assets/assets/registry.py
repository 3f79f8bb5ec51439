"""The registered model: a new version per evaluated candidate, champion only behind the gates.

Also the rollback job (an operator moves ``champion`` back to the version it replaced) and
the promotion job (the approval workflow moves it to the challenger, or to a named version,
with the approver as run tags).
"""

from collections.abc import Iterator

from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    AssetMaterialization,
    Config,
    MaterializeResult,
    OpExecutionContext,
    asset,
    job,
    op,
)

from fraud_assets import keys
from fraud_assets.assets._retry import LAUNCH_RETRY_POLICY
from fraud_assets.resources.compute import FraudCompute

# No `from __future__ import annotations`: Dagster inspects the context annotation at runtime.


@asset(
    retry_policy=LAUNCH_RETRY_POLICY,
    key=keys.REGISTERED_MODEL,
    group_name="registry",
    deps=[keys.MODEL_EVALUATION, keys.FAIRNESS_REPORT],
    kinds={"mlflow"},
)
def registered_model(
    context: AssetExecutionContext, compute: FraudCompute
) -> Iterator[MaterializeResult | AssetCheckResult]:
    """The model version that picks claims for review; champion only when every gate passed."""
    yield from compute.run_task(context=context, task="register")


@op(
    description="Give the champion alias back to the version the current champion replaced.",
    retry_policy=LAUNCH_RETRY_POLICY,
)
def rollback_champion(context: OpExecutionContext, compute: FraudCompute) -> None:
    for result in compute.run_task(context=context, task="promote", params={"action": "rollback"}):
        # An op has no asset output: record the alias move on registered_model's history.
        if isinstance(result, MaterializeResult) and result.asset_key is not None:
            context.log_event(
                AssetMaterialization(asset_key=result.asset_key, metadata=result.metadata)
            )


@job(name=keys.ROLLBACK_JOB, description="Roll the champion model back to the previous champion.")
def rollback_champion_job() -> None:
    rollback_champion()


class PromoteConfig(Config):
    """The version to promote; empty means the current challenger."""

    version: str = ""


@op(
    description="Give the champion alias to the challenger (or a named version); under the "
    "approval promotion mode the run's approval tags are required.",
    retry_policy=LAUNCH_RETRY_POLICY,
)
def promote_champion(
    context: OpExecutionContext, config: PromoteConfig, compute: FraudCompute
) -> None:
    params = {"action": "promote", **({"version": config.version} if config.version else {})}
    for result in compute.run_task(context=context, task="promote", params=params):
        if isinstance(result, MaterializeResult) and result.asset_key is not None:
            context.log_event(
                AssetMaterialization(asset_key=result.asset_key, metadata=result.metadata)
            )


@job(
    name=keys.PROMOTE_JOB,
    description="Promote the challenger (or a named version) to champion, as approved.",
)
def promote_champion_job() -> None:
    promote_champion()
