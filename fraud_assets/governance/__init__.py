"""Governance: fairness metrics and gates, PSI drift, their charts and the audit report.

Plain modules with no Dagster imports; ``fraud_assets.tasks.fairness`` and
``fraud_assets.tasks.compute_psi`` run them, ``fraud_assets.assets.governance`` wires them.
"""

from fraud_assets.governance._fairness import (
    FIGURES,
    GROUP_METRICS,
    STATUS_INSUFFICIENT,
    STATUS_OK,
    FairnessReport,
    compute_fairness_report,
    disparate_impact_ratio,
    equal_opportunity_difference,
    equalized_odds_difference,
    fairness_slices,
    group_metrics,
)
from fraud_assets.governance._psi import (
    MISSING_BUCKET,
    UNSEEN_BUCKET,
    ColumnPsi,
    DriftLevel,
    ScoredWindow,
    categorical_psi,
    drift_level,
    latest_scored_window,
    numeric_psi,
    population_stability_index,
    psi_report,
    quantile_edges,
)
from fraud_assets.governance.gates import (
    DriftGates,
    FairnessGates,
    GateVerdict,
    drift_gates,
    fairness_gates,
)

__all__ = [
    "FIGURES",
    "GROUP_METRICS",
    "MISSING_BUCKET",
    "STATUS_INSUFFICIENT",
    "STATUS_OK",
    "UNSEEN_BUCKET",
    "ColumnPsi",
    "DriftGates",
    "DriftLevel",
    "FairnessGates",
    "FairnessReport",
    "GateVerdict",
    "ScoredWindow",
    "categorical_psi",
    "compute_fairness_report",
    "disparate_impact_ratio",
    "drift_gates",
    "drift_level",
    "equal_opportunity_difference",
    "equalized_odds_difference",
    "fairness_gates",
    "fairness_slices",
    "group_metrics",
    "latest_scored_window",
    "numeric_psi",
    "population_stability_index",
    "psi_report",
    "quantile_edges",
]
