"""Gold features: the columns of ``claim_features`` and the ones the models see.

Protected attributes are kept in the gold table for fairness reporting but are never model
inputs.
"""

from __future__ import annotations

ID_COLUMN = "claim_id"
LABEL_COLUMN = "is_fraud"
SPLIT_COLUMN = "split"  # "train" or "holdout", deterministic from claim_id
AMOUNT_COLUMN = "claim_amount"

NUMERIC_FEATURES: list[str] = [
    "claim_amount",
    "num_procedures",
    "length_of_stay",
    "patient_age",
    "amount_per_procedure",
    "service_to_claim_days",
    "provider_claim_count",
    "provider_unique_patients",
    "provider_avg_amount",
    "provider_amount_peer_zscore",
    "patient_claim_count",
    "patient_provider_count",
    "days_since_prev_patient_claim",
    "amount_vs_procedure_median",
    "amount_procedure_zscore",
    "duplicate_claim_count",
]
CATEGORICAL_FEATURES: list[str] = ["procedure_code", "diagnosis_code", "provider_specialty"]
MODEL_FEATURES: list[str] = NUMERIC_FEATURES + CATEGORICAL_FEATURES
