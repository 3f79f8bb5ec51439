"""The asset graph the code location must define: asset -> (group, upstream assets).

``test_definitions`` pins the loaded Definitions to it and the UI test expects every asset
on the page.
"""

from __future__ import annotations

EXPECTED_ASSETS: dict[str, tuple[str, set[str]]] = {
    "raw_claims": ("ingestion", set()),
    "claims": ("ingestion", {"raw_claims"}),
    "claims_quarantine": ("ingestion", {"raw_claims"}),
    "claim_features": ("features", {"claims"}),
    "catboost_model": ("training", {"claim_features"}),
    "xgboost_model": ("training", {"claim_features"}),
    "model_evaluation": ("evaluation", {"catboost_model", "xgboost_model"}),
    "fairness_report": ("governance", {"model_evaluation"}),
    "psi_report": ("governance", {"claim_features", "fraud_scores"}),
    "registered_model": ("registry", {"model_evaluation", "fairness_report"}),
    "fraud_scores": ("scoring", {"registered_model", "claims"}),
    "champion_fairness_audit": (
        "governance",
        {"registered_model", "fraud_scores", "claims"},
    ),
}
