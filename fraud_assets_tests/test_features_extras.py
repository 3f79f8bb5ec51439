"""Declared extras in gold: copied per claim by both engines, nullable numbers, filled text."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from fraud_assets.claims.synthetic import generate_claims
from fraud_assets.claims.synthetic import to_arrow as claims_to_arrow
from fraud_assets.features import (
    CLAIM_FEATURES_COLUMNS,
    MISSING_CATEGORY,
    MODEL_FEATURES,
    ProtectedInputError,
    SplitPolicy,
    claim_features_schema,
    model_inputs,
)
from fraud_assets.features.engineering import build_claim_features
from fraud_assets.tasks.build_features import profile_feature_table
from fraud_assets_tests.extras_support import EXTRAS, silver_with_extras
from fraud_assets_tests.pandas_peer import build_claim_features_pandas, to_arrow


@pytest.fixture(scope="module")
def silver() -> pa.Table:
    return silver_with_extras(1_500)


def test_spark_gold_with_extras_equals_the_pandas_peer(spark: Any, silver: pa.Table) -> None:
    split = SplitPolicy(0.25, 5)
    from_spark = (
        build_claim_features(spark.createDataFrame(silver), split=split)
        .toArrow()
        .to_pandas()
        .set_index("claim_id", drop=False)
    )
    peer = to_arrow(build_claim_features_pandas(silver.to_pandas(), split=split))
    assert peer.schema == claim_features_schema(silver.column_names)
    from_pandas = peer.to_pandas().set_index("claim_id", drop=False).loc[from_spark.index]
    assert list(from_spark.columns) == [*CLAIM_FEATURES_COLUMNS, *EXTRAS]
    for name in from_spark.columns:
        ours, theirs = from_spark[name], from_pandas[name]
        if pd.api.types.is_float_dtype(ours):
            np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-9, err_msg=name)
        else:
            assert ours.tolist() == theirs.tolist(), name
    source = silver.to_pandas().set_index("claim_id").loc[from_spark.index]
    # Copied per claim: a missing number stays missing, missing text is the missing category.
    np.testing.assert_array_equal(from_spark["xn_deductible"], source["xn_deductible"])
    assert from_spark["xn_deductible"].isna().any()
    assert (from_spark["xc_hobby"] == MISSING_CATEGORY).sum() == source["xc_hobby"].isna().sum()
    assert (from_spark["xp_race"] == MISSING_CATEGORY).sum() == source["xp_race"].isna().sum()


def test_a_null_numeric_extra_keeps_the_table_complete(spark: Any, silver: pa.Table) -> None:
    claims = spark.createDataFrame(silver)
    features = build_claim_features(claims, split=SplitPolicy(0.25, 5))
    profile = profile_feature_table(features, claims)
    assert profile.complete, profile.null_counts
    assert "xc_hobby" in profile.null_counts and "xp_race" in profile.null_counts


def test_extras_are_model_inputs_and_protected_extras_never_are(silver: pa.Table) -> None:
    gold_columns = claim_features_schema(silver.column_names).names
    numeric, categorical = model_inputs([], columns=gold_columns)
    assert [*numeric, *categorical] == [
        *MODEL_FEATURES[: len(numeric) - 1],
        "xn_deductible",
        *MODEL_FEATURES[len(numeric) - 1 :],
        "xc_hobby",
    ]
    assert "xp_race" not in numeric + categorical
    # Declared protected by the policy too, an extra input is refused, never trained on.
    with pytest.raises(ProtectedInputError, match="xc_hobby"):
        model_inputs(["xc_hobby"], columns=gold_columns)


def test_without_extras_gold_is_the_canonical_schema(spark: Any) -> None:
    table = claims_to_arrow(generate_claims(300, seed=1))
    assert claim_features_schema(table.column_names) == claim_features_schema()
    gold = build_claim_features(spark.createDataFrame(table), split=SplitPolicy(0.2, 1))
    assert gold.columns == CLAIM_FEATURES_COLUMNS
    assert model_inputs([], columns=gold.columns) == model_inputs([])
