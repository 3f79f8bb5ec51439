"""Holdout decisions shaped like real claims, shared by the fairness tests and bench/.

Not a test module: ``provider_clustered`` draws decisions whose errors cluster by provider,
``realistic_holdout`` trains the project's own model on synthetic claims of a given shape
and returns its holdout with scores and decisions at the default operating point.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fraud_assets.claims.synthetic import ClaimShape, generate_claims
from fraud_assets.features import SplitPolicy
from fraud_assets.ml.metrics import choose_threshold
from fraud_assets.ml.training import TrainingParams, split_gold, train_model
from fraud_assets.settings import FraudSettings
from fraud_assets_tests.pandas_peer import build_claim_features_pandas

STATES = [f"S{i:02d}" for i in range(43)]
ROWS = 20_000


def provider_clustered(
    seed: int,
    *,
    n: int,
    providers_per_state: int,
    concentration: float,
    state_rates: np.ndarray | None = None,
) -> pd.DataFrame:
    """Decisions over 43 unequal states, each served by its own few providers.

    Every provider flags honest claims at its own rate, drawn from a beta law with mean the
    state's rate (3% everywhere unless ``state_rates``) and the given concentration (the
    intraclass correlation is 1 / (concentration + 1)).
    """
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.full(len(STATES), 3.0))
    provider_state = np.repeat(np.arange(len(STATES)), providers_per_state)
    mean = (np.full(len(STATES), 0.03) if state_rates is None else state_rates)[provider_state]
    provider_rate = rng.beta(mean * concentration, (1 - mean) * concentration)
    state = rng.choice(len(STATES), n, p=weights)
    provider = state * providers_per_state + rng.integers(0, providers_per_state, n)
    fraud = rng.random(n) < 0.06
    flagged = np.where(fraud, rng.random(n) < 0.7, rng.random(n) < provider_rate[provider])
    return pd.DataFrame(
        {
            "claim_id": [f"C{i:06d}" for i in range(n)],
            "provider_id": [f"PRV{p:04d}" for p in provider],
            "patient_gender": rng.choice(["F", "M"], n),
            "patient_age_group": rng.choice(["18-34", "35-49", "50-64", "65+"], n),
            "geographic_region": np.array(STATES)[state],
            "is_fraud": fraud.astype(int),
            "decision": flagged.astype(int),
        }
    )


def realistic_holdout(shape: ClaimShape, *, seed: int, bias: float = 0.0) -> pd.DataFrame:
    """The project's model on the shape's claims: holdout rows with score and decision."""
    claims = generate_claims(ROWS, seed=seed, bias=bias, shape=shape)
    unit = "provider" if shape.provider_labels else "claim"
    gold = build_claim_features_pandas(
        claims, split=SplitPolicy(0.2, seed, "out_of_time", label_unit=unit)
    )
    train, holdout = split_gold(gold)
    model = train_model(
        train, model_type="catboost", params=TrainingParams(boosting_rounds=150, seed=seed)
    )
    holdout = holdout.assign(fraud_score=model.predict_proba(holdout))
    point = FraudSettings().operating_point
    choice = choose_threshold(
        holdout["is_fraud"],
        holdout["fraud_score"],
        kind=point.kind,
        flag_rate=point.flag_rate,
        min_precision=point.min_precision,
        fixed_threshold=0.5,
    )
    return holdout.assign(decision=(holdout["fraud_score"] >= choice.threshold).astype(int))
