"""Small gold frames for the model tests, written without Spark so they cost milliseconds.

``signal`` sets how strongly fraud shows in the features: 0.3 gives a learnable but imperfect
problem, 0.0 gives labels independent of every feature (a model that must fail its floors).
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from datetime import date, timedelta
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd

from fraud_assets.features import CATEGORICAL_FEATURES, NUMERIC_FEATURES

PROCEDURES = [f"P{i:03d}" for i in range(12)]
DIAGNOSES = [f"D{i:03d}" for i in range(20)]
SPECIALTIES = ["cardiology", "orthopedics", "general", "radiology", "oncology", "dermatology"]
GENDERS = ["F", "M"]
AGE_GROUPS = ["18-34", "35-49", "50-64", "65+"]
REGIONS = ["north", "south", "east", "west"]


def make_gold_frame(
    n_rows: int = 3000,
    *,
    seed: int = 0,
    fraud_rate: float = 0.1,
    signal: float = 0.3,
    holdout_fraction: float = 0.3,
) -> pd.DataFrame:
    """A ``claim_features``-shaped frame: ids, label, split, protected attributes, features."""
    rng = np.random.default_rng(seed)
    fraud = rng.random(n_rows) < fraud_rate
    lift = np.where(fraud, signal, 0.0)
    procedures = rng.choice(PROCEDURES, n_rows)
    # Fraud concentrates on two procedure codes (upcoding) when there is signal.
    upcoded = rng.random(n_rows) < 0.6 * lift
    procedures = np.where(upcoded, rng.choice(PROCEDURES[:2], n_rows), procedures)
    num_procedures = rng.poisson(2, n_rows) + 1 + rng.poisson(2 * lift)
    claim_amount = rng.lognormal(7.0, 0.6, n_rows) * (1.0 + 1.5 * lift)
    frame = pd.DataFrame(
        {
            "claim_id": [f"C{seed:02d}{i:07d}" for i in range(n_rows)],
            "is_fraud": fraud.astype("int32"),
            "claim_date": [
                date(2024, 1, 1) + timedelta(days=int(d)) for d in rng.integers(0, 365, n_rows)
            ],
            "patient_id": [f"PAT{i:07d}" for i in rng.integers(0, n_rows // 3 + 1, n_rows)],
            "provider_id": [f"PRV{i:05d}" for i in rng.integers(0, n_rows // 30 + 1, n_rows)],
            "patient_gender": rng.choice(GENDERS, n_rows),
            "patient_age_group": rng.choice(AGE_GROUPS, n_rows),
            "geographic_region": rng.choice(REGIONS, n_rows),
            "claim_amount": claim_amount,
            "num_procedures": num_procedures.astype("int32"),
            "length_of_stay": rng.poisson(1 + 2 * lift).astype("int32"),
            "amount_per_procedure": claim_amount / num_procedures,
            "service_to_claim_days": rng.integers(0, 60, n_rows).astype("int32"),
            "provider_claim_count": rng.poisson(40 + 30 * lift).astype("int64"),
            "provider_unique_patients": rng.poisson(25, n_rows).astype("int64"),
            "provider_avg_amount": rng.lognormal(7.0, 0.3, n_rows) * (1.0 + 0.5 * lift),
            "provider_amount_peer_zscore": rng.normal(1.2 * lift, 1.0),
            "patient_claim_count": rng.poisson(3, n_rows).astype("int64"),
            "patient_provider_count": rng.poisson(2 + lift).astype("int64"),
            "days_since_prev_patient_claim": np.where(
                rng.random(n_rows) < 0.2, -1, rng.exponential(60 / (1 + 3 * lift)).astype(int)
            ).astype("int32"),
            "amount_vs_procedure_mean": rng.lognormal(0.0, 0.3, n_rows) * (1.0 + lift),
            "amount_procedure_zscore": rng.normal(1.5 * lift, 1.0),
            "duplicate_claim_count": rng.poisson(0.1 + 1.5 * lift).astype("int64"),
            "is_duplicate_claim": (rng.random(n_rows) < 0.02 + 0.4 * lift).astype("int32"),
            "procedure_code": procedures,
            "diagnosis_code": rng.choice(DIAGNOSES, n_rows),
            "provider_specialty": rng.choice(SPECIALTIES, n_rows),
        }
    )
    frame["split"] = np.where(rng.random(n_rows) < holdout_fraction, "holdout", "train")
    # Features added to the contract later get plain noise, so these frames keep its shape.
    for name in NUMERIC_FEATURES:
        if name not in frame.columns:
            frame[name] = rng.normal(0.0, 1.0, n_rows)
    for name in CATEGORICAL_FEATURES:
        if name not in frame.columns:
            frame[name] = rng.choice(["a", "b", "c"], n_rows)
    return frame


@cache
def _migrated_mlflow_db() -> Path:
    directory = Path(tempfile.mkdtemp(prefix="fraud_mlflow_schema_"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    path = directory / "mlflow.db"
    from mlflow import MlflowClient

    # Creating the store runs every schema migration (seconds on a busy machine).
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


def use_migrated_mlflow_store(home: Path) -> None:
    """Start ``home`` with an empty, already-migrated MLflow SQLite store.

    Only the schema is shared: configure_mlflow still creates the experiment under ``home``.
    """
    shutil.copyfile(_migrated_mlflow_db(), home / "mlflow.db")
