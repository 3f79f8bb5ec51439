"""Governance: the fairness report that gates promotion, the weekly fairness audit of the
champion on its labelled production decisions, and the drift report on live scores."""

from collections.abc import Iterator

from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    Config,
    MaterializeResult,
    asset,
)
from pydantic import Field

from fraud_assets import keys
from fraud_assets.assets._check_specs import check_specs
from fraud_assets.assets._retry import LAUNCH_RETRY_POLICY
from fraud_assets.resources.compute import FraudCompute

# No `from __future__ import annotations`: Dagster inspects the context annotation at runtime.


class FairnessReportConfig(Config):
    """Run configuration of ``fairness_report``; the weekly audit job sets the flag."""

    write_audit_report: bool = Field(
        default=False,
        description="Also write a self-contained HTML audit to $FRAUD_HOME/reports",
    )


class ChampionAuditConfig(Config):
    """Run configuration of ``champion_fairness_audit``."""

    window_days: int = Field(
        default=28,
        ge=1,
        description="Audit the champion's decisions of this many days before the run",
    )


# Blocking: a failure with severity ERROR (a figure the policy gates, group sizes, the policy
# itself) stops registered_model; an advisory figure fails with WARN and blocks nothing.
FAIRNESS_CHECKS = check_specs(keys.FAIRNESS_REPORT)
DRIFT_CHECKS = check_specs(keys.PSI_REPORT)
CHAMPION_AUDIT_CHECKS = check_specs(keys.CHAMPION_FAIRNESS_AUDIT)


@asset(
    retry_policy=LAUNCH_RETRY_POLICY,
    key=keys.FAIRNESS_REPORT,
    group_name="governance",
    deps=[keys.MODEL_EVALUATION],
    check_specs=FAIRNESS_CHECKS,
    kinds={"python", "delta", "mlflow"},
)
def fairness_report(
    context: AssetExecutionContext, config: FairnessReportConfig, compute: FraudCompute
) -> Iterator[MaterializeResult | AssetCheckResult]:
    """Whether the candidate flags and catches fraud at similar rates across patient groups."""
    # Yielded, not returned: a returned list cannot fill the asset's output and its checks.
    yield from compute.run_task(
        context=context,
        task="fairness",
        params={"write_audit_report": config.write_audit_report},
    )


@asset(
    retry_policy=LAUNCH_RETRY_POLICY,
    key=keys.PSI_REPORT,
    group_name="governance",
    deps=[keys.CLAIM_FEATURES, keys.FRAUD_SCORES],
    check_specs=DRIFT_CHECKS,
    kinds={"python", "delta"},
)
def psi_report(
    context: AssetExecutionContext, compute: FraudCompute
) -> Iterator[MaterializeResult | AssetCheckResult]:
    """How far the claims being scored now have moved from those the champion learned from."""
    yield from compute.run_task(context=context, task="psi")


@asset(
    retry_policy=LAUNCH_RETRY_POLICY,
    key=keys.CHAMPION_FAIRNESS_AUDIT,
    group_name="governance",
    deps=[keys.REGISTERED_MODEL, keys.FRAUD_SCORES, keys.CLAIMS],
    check_specs=CHAMPION_AUDIT_CHECKS,
    kinds={"python", "mlflow", "pdf"},
)
def champion_fairness_audit(
    context: AssetExecutionContext, config: ChampionAuditConfig, compute: FraudCompute
) -> Iterator[MaterializeResult | AssetCheckResult]:
    """Whether the champion flagged and caught fraud at similar rates across patient groups
    in the decisions it made, judged once their adjudications arrived (HTML and PDF)."""
    yield from compute.run_task(
        context=context, task="champion_audit", params={"window_days": config.window_days}
    )
