"""Governance: the fairness report that gates promotion, and the drift report on live scores."""

from collections.abc import Iterator

from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    Config,
    MaterializeResult,
    asset,
)
from pydantic import Field

from fraud_assets import keys
from fraud_assets.resources.compute import FraudCompute

# No `from __future__ import annotations`: Dagster inspects the context annotation at runtime.


class FairnessReportConfig(Config):
    """Run configuration of ``fairness_report``; the weekly audit job sets the flag."""

    write_audit_report: bool = Field(
        default=False,
        description="Also write a self-contained HTML audit to $FRAUD_HOME/reports",
    )


_FAIRNESS_DESCRIPTIONS = {
    keys.CHECK_FALSE_POSITIVE_RATE_RATIO: (
        "Per protected attribute: fails when the whole simultaneous interval of the lowest "
        "over the highest group false-positive rate (honest claims flagged) lies below the "
        "policy's threshold"
    ),
    keys.CHECK_EQUAL_OPPORTUNITY: (
        "Per protected attribute: fails when the whole simultaneous interval of the highest "
        "minus the lowest group true-positive rate lies above the policy's threshold"
    ),
    keys.CHECK_DISPARATE_IMPACT: (
        "Per protected attribute: fails when the whole simultaneous interval of the lowest "
        "over the highest group flag rate lies below the policy's threshold (the four-fifths "
        "rule of US employment law); advisory (WARN) unless the policy gates it"
    ),
    keys.CHECK_MIN_GROUP_SIZE: (
        "Every protected attribute has at least two groups of the policy's min_group_size "
        "claims; smaller groups are reported as insufficient data"
    ),
    keys.CHECK_FAIRNESS_POLICY: (
        "The policy in force (attributes, gated figures and thresholds, confidence, method) "
        "is at least as strict as the target's pinned policy"
    ),
}
# Blocking: a failure with severity ERROR (a figure the policy gates, group sizes, the policy
# itself) stops registered_model; an advisory figure fails with WARN and blocks nothing.
FAIRNESS_CHECKS = [
    AssetCheckSpec(
        name,
        asset=keys.FAIRNESS_REPORT,
        blocking=True,
        description=_FAIRNESS_DESCRIPTIONS[name],
    )
    for name in keys.FAIRNESS_CHECKS
]

DRIFT_CHECKS = [
    AssetCheckSpec(
        keys.CHECK_FEATURE_DRIFT,
        asset=keys.PSI_REPORT,
        blocking=False,
        description="Largest feature PSI: WARN from psi_warn, ERROR from psi_error",
    ),
    AssetCheckSpec(
        keys.CHECK_SCORE_DRIFT,
        asset=keys.PSI_REPORT,
        blocking=False,
        description="Fraud score PSI: WARN from psi_warn, ERROR from psi_error",
    ),
]


@asset(
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
