"""The PySpark features equal the independent pandas peer on realistic synthetic claims."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from fraud_assets.claims.synthetic import OBVIOUS_SHAPE, generate_claims_with_patterns
from fraud_assets.claims.synthetic import to_arrow as claims_to_arrow
from fraud_assets.features import CLAIM_FEATURES_COLUMNS, CLAIM_FEATURES_SCHEMA, SplitPolicy
from fraud_assets.features.engineering import build_claim_features
from fraud_assets_tests.pandas_peer import build_claim_features_pandas, to_arrow


@pytest.fixture(scope="module")
def synthetic() -> tuple[pd.DataFrame, pd.Series]:
    # Unblurred patterns (the default hides 30% of fraud), so each is plain to see.
    frame, patterns = generate_claims_with_patterns(4_000, seed=11, shape=OBVIOUS_SHAPE)
    return frame, patterns.set_axis(frame["claim_id"])


@pytest.fixture(scope="module")
def pandas_features(synthetic: tuple[pd.DataFrame, pd.Series]) -> pd.DataFrame:
    frame, _ = synthetic
    features = build_claim_features_pandas(frame, split=SplitPolicy(0.25, 5))
    return to_arrow(features).to_pandas().set_index("claim_id", drop=False)


def test_spark_features_equal_the_pandas_peer_column_by_column(
    spark: Any, synthetic: tuple[pd.DataFrame, pd.Series], pandas_features: pd.DataFrame
) -> None:
    frame, _ = synthetic
    claims = spark.createDataFrame(claims_to_arrow(frame))
    spark_table = build_claim_features(claims, split=SplitPolicy(0.25, 5)).toArrow()
    from_spark = spark_table.to_pandas().set_index("claim_id", drop=False)

    assert len(from_spark) == len(frame) == from_spark.index.nunique()
    assert list(from_spark.columns) == CLAIM_FEATURES_COLUMNS
    from_pandas = pandas_features.loc[from_spark.index]
    for field in CLAIM_FEATURES_SCHEMA:
        ours, peer = from_spark[field.name], from_pandas[field.name]
        if pd.api.types.is_float_dtype(ours):
            np.testing.assert_allclose(ours, peer, rtol=1e-9, atol=1e-9, err_msg=field.name)
        else:
            assert ours.tolist() == peer.tolist(), field.name
    # The comparison must cover real variety, not columns of constants.
    assert from_spark["is_duplicate_claim"].sum() > 20
    assert from_spark["split"].nunique() == 2
    assert (from_spark["days_since_prev_patient_claim"] > 0).mean() > 0.2


def test_features_separate_the_fraud_patterns_analysts_know(
    synthetic: tuple[pd.DataFrame, pd.Series], pandas_features: pd.DataFrame
) -> None:
    _, patterns = synthetic
    features = pandas_features.join(patterns)
    by_pattern = features.groupby("fraud_pattern")
    legit = features[features["fraud_pattern"] == "none"]

    # Every re-bill is flagged; among legitimate claims only none are (the originals are first).
    assert by_pattern["is_duplicate_claim"].mean()["duplicate_billing"] == 1.0
    assert legit["is_duplicate_claim"].sum() == 0
    assert (
        by_pattern["amount_vs_procedure_mean"].median()["upcoding"]
        > 1.5 * legit["amount_vs_procedure_mean"].median()
    )
    # Phantom patients see many providers within a month (means: most counts are 1 or 2).
    assert (
        by_pattern["patient_provider_count"].mean()["phantom_service"]
        > 1.5 * legit["patient_provider_count"].mean()
    )
    # Ring patients are shared by the ring's providers.
    assert (
        by_pattern["patient_provider_count"].mean()["provider_ring"]
        > 1.2 * legit["patient_provider_count"].mean()
    )
