"""The gold claim features in plain pandas: the single-machine peer of the PySpark version.

Written independently of ``engineering.py`` (groupby/transform instead of joins and
windows) so that a test comparing the two checks the definitions, and the benchmark can
weigh Spark against the obvious alternative on one machine.
"""

from __future__ import annotations

from datetime import date
from typing import cast

import numpy as np
import pandas as pd
import pyarrow as pa

from fraud_assets.features import (
    CATEGORICAL_FEATURES,
    CLAIM_FEATURES_COLUMNS,
    CLAIM_FEATURES_SCHEMA,
    EXCLUDED,
    FIRST_CLAIM_GAP_DAYS,
    HOLDOUT,
    INPUT_COLUMNS,
    LABEL_COLUMN,
    MISSING_CATEGORY,
    TRAIN,
    UNLABELLED,
    ZERO_SPREAD,
    SplitPolicy,
    out_of_time_cutoff,
    require_input_columns,
    split_bucket,
)


def build_claim_features_pandas(claims: pd.DataFrame, *, split: SplitPolicy) -> pd.DataFrame:
    """The same table as ``build_claim_features``, from a pandas frame of silver claims.

    ``claim_date`` comes back as ``datetime64[ns]``; ``to_arrow`` gives the gold schema.
    """
    require_input_columns(claims.columns, source="claims frame")

    df = claims[INPUT_COLUMNS].reset_index(drop=True)
    df = df.assign(**{name: df[name].fillna(MISSING_CATEGORY) for name in CATEGORICAL_FEATURES})
    amount = df["claim_amount"].astype("float64")
    service_date = pd.to_datetime(df["service_date"])
    claim_date = pd.to_datetime(df["claim_date"])

    by_provider = df.groupby("provider_id", dropna=False)
    provider_avg = by_provider["claim_amount"].mean()
    peers = df[["provider_id", "provider_specialty"]].drop_duplicates()
    peers = peers.assign(provider_avg_amount=peers["provider_id"].map(provider_avg))
    by_specialty = peers.groupby("provider_specialty")["provider_avg_amount"]
    peers = peers.assign(
        provider_amount_peer_zscore=_zscore(
            peers["provider_avg_amount"],
            by_specialty.transform("mean"),
            by_specialty.transform("std", ddof=0),
        )
    )
    peer_zscore = df[["provider_id", "provider_specialty"]].merge(
        peers, on=["provider_id", "provider_specialty"], how="left", validate="many_to_one"
    )["provider_amount_peer_zscore"]

    by_procedure = amount.groupby(df["procedure_code"])
    procedure_median = by_procedure.transform("median")

    # Each claim's predecessor in the patient's history, ordered like the Spark window.
    history = df.assign(_service=service_date, _claim=claim_date).sort_values(
        ["patient_id", "_service", "_claim", "claim_id"], kind="stable"
    )
    previous_service = history.groupby("patient_id", dropna=False)["_service"].shift(1)
    gap_days = (history["_service"] - previous_service).dt.days.reindex(df.index)

    bill_keys = ["patient_id", "provider_id", "procedure_code", "service_date"]
    bills = history.sort_values(["_claim", "claim_id"], kind="stable")
    bill_rank = bills.groupby(bill_keys, dropna=False).cumcount().reindex(df.index)

    features = pd.DataFrame(
        {
            "claim_id": df["claim_id"],
            "is_fraud": df["is_fraud"].astype("Int32"),
            "split": _split(df, split),
            "claim_date": claim_date,
            "patient_gender": df["patient_gender"],
            "patient_age_group": df["patient_age_group"],
            "geographic_region": df["geographic_region"],
            "claim_amount": amount,
            "num_procedures": df["num_procedures"].astype("int32"),
            "length_of_stay": df["length_of_stay"].astype("int32"),
            "amount_per_procedure": amount / df["num_procedures"].clip(lower=1),
            "service_to_claim_days": (claim_date - service_date).dt.days.astype("int32"),
            "provider_claim_count": by_provider["claim_id"].transform("size").astype("int64"),
            "provider_unique_patients": by_provider["patient_id"]
            .transform("nunique")
            .astype("int64"),
            "provider_avg_amount": by_provider["claim_amount"].transform("mean").astype("float64"),
            "provider_amount_peer_zscore": peer_zscore,
            "patient_claim_count": df.groupby("patient_id", dropna=False)["claim_id"]
            .transform("size")
            .astype("int64"),
            "patient_provider_count": df.groupby("patient_id", dropna=False)["provider_id"]
            .transform("nunique")
            .astype("int64"),
            "days_since_prev_patient_claim": gap_days.fillna(FIRST_CLAIM_GAP_DAYS).astype("int32"),
            "amount_vs_procedure_median": np.where(
                procedure_median == 0, 1.0, amount / procedure_median.replace(0, np.nan)
            ),
            "amount_procedure_zscore": _zscore(
                amount, by_procedure.transform("mean"), by_procedure.transform("std", ddof=0)
            ),
            "duplicate_claim_count": df.groupby(bill_keys, dropna=False)["claim_id"]
            .transform("size")
            .astype("int64")
            - 1,
            "is_duplicate_claim": (bill_rank > 0).astype("int32"),
            "procedure_code": df["procedure_code"],
            "diagnosis_code": df["diagnosis_code"],
            "provider_specialty": df["provider_specialty"],
        }
    )
    return features[CLAIM_FEATURES_COLUMNS]


def to_arrow(features: pd.DataFrame) -> pa.Table:
    """The pandas features as an Arrow table with exactly the gold schema."""
    frame = features.assign(claim_date=pd.to_datetime(features["claim_date"]).dt.date)
    return pa.Table.from_pandas(frame, schema=CLAIM_FEATURES_SCHEMA, preserve_index=False)


def _zscore(value: pd.Series, mean: pd.Series, std: pd.Series) -> pd.Series:
    spread = std.fillna(0.0)
    return ((value - mean) / spread.where(spread >= ZERO_SPREAD)).where(spread >= ZERO_SPREAD, 0.0)


def _split(df: pd.DataFrame, split: SplitPolicy) -> np.ndarray:
    labelled = df[LABEL_COLUMN].notna().to_numpy()
    units = df[split.unit_column].astype(str)
    bucket_of = {unit: split_bucket(unit, seed=split.seed) for unit in units.unique()}
    in_group = units.map(bucket_of).to_numpy() < split.bucket_limit
    if split.strategy == "random":
        decided = np.where(in_group, HOLDOUT, TRAIN)
    else:
        days = pd.to_datetime(df["claim_date"]).dt.date
        counts = {cast(date, day): int(n) for day, n in days[labelled].value_counts().items()}
        cutoff = out_of_time_cutoff(counts, split.time_fraction)
        late = np.zeros(len(df), dtype=bool) if cutoff is None else (days >= cutoff).to_numpy()
        if split.grouped_in_time:
            decided = np.where(
                in_group & late, HOLDOUT, np.where(~in_group & ~late, TRAIN, EXCLUDED)
            )
        else:
            decided = np.where(late, HOLDOUT, TRAIN)
    return np.where(labelled, decided, UNLABELLED)
