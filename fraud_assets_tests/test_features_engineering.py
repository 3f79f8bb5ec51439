"""Feature semantics on hand-built claims, for the PySpark features and their pandas peer."""

from __future__ import annotations

import hashlib
from datetime import date, timedelta
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
from scipy import stats

from fraud_assets.claims.schema import CLAIM_SCHEMA
from fraud_assets.features import (
    CLAIM_FEATURES_COLUMNS,
    CLAIM_FEATURES_SCHEMA,
    FIRST_CLAIM_GAP_DAYS,
    MISSING_CATEGORY,
    MODEL_FEATURES,
)
from fraud_assets.features.engineering import build_claim_features
from fraud_assets.features.pandas_peer import build_claim_features_pandas, to_arrow

DAY0 = date(2024, 3, 1)


def claim(claim_id: str, **overrides: Any) -> dict[str, Any]:
    """One silver claim with plain defaults; tests override what they are about."""
    row: dict[str, Any] = {
        "claim_id": claim_id,
        "patient_id": f"P-{claim_id}",
        "provider_id": "D-solo",
        "claim_date": DAY0 + timedelta(days=5),
        "service_date": DAY0,
        "claim_amount": 100.0,
        "num_procedures": 1,
        "length_of_stay": 0,
        "procedure_code": "99213",
        "diagnosis_code": "J20.9",
        "provider_specialty": "family_medicine",
        "patient_age": 40,
        "patient_gender": "F",
        "patient_age_group": "35-49",
        "geographic_region": "west",
        "is_fraud": 0,
    }
    row.update(overrides)
    return row


def silver(rows: list[dict[str, Any]]) -> pa.Table:
    """Rows as a silver claims table: CLAIM_SCHEMA plus the lineage columns features ignore.

    Every field is nullable here so a test can show what a null categorical becomes.
    """
    schema = pa.schema([field.with_nullable(True) for field in CLAIM_SCHEMA])
    table = pa.Table.from_pylist(rows, schema=schema)
    n = table.num_rows
    return table.append_column("_source", pa.array(["test.csv"] * n)).append_column(
        "_batch_id", pa.array(["b1"] * n)
    )


def on_day(days: int) -> date:
    return DAY0 + timedelta(days=days)


# Cardiology: five providers billing about 100 and one billing 1000 per claim.
PEERS = [
    claim(f"K{p}{i}", provider_id=f"D-card{p}", provider_specialty="cardiology", claim_amount=a)
    for p, amounts in enumerate([[90, 110]] * 5 + [[1000, 1000]])
    for i, a in enumerate(amounts)
]
# The same bill twice (patient, provider, procedure, service date), re-submitted 3 days later.
DUPLICATES = [
    claim("DUP1", patient_id="P-dup", provider_id="D-dup", claim_date=on_day(2)),
    claim("DUP2", patient_id="P-dup", provider_id="D-dup", claim_date=on_day(5)),
]
# One patient's history: service days 0, 10, 10 (another provider), 40.
HISTORY = [
    claim(
        claim_id,
        patient_id="P-hist",
        provider_id=provider,
        service_date=on_day(day),
        claim_date=on_day(day + 3),
    )
    for claim_id, provider, day in [
        ("H4", "D-h1", 40),
        ("H1", "D-h1", 0),
        ("H3", "D-h2", 10),
        ("H2", "D-h1", 10),
    ]
]
# A procedure billed 100, 200, 300, 1000 (median 250) and a zero-procedure claim.
PROCEDURE = [
    claim(f"R{i}", procedure_code="27447", claim_amount=a)
    for i, a in enumerate([100, 200, 300, 1000])
]
# Alone in its specialty, no procedures billed, no diagnosis code, not yet adjudicated.
ODD = [
    claim(
        "Z0",
        provider_id="D-derm",
        provider_specialty="dermatology",
        num_procedures=0,
        claim_amount=80.0,
        diagnosis_code=None,
        is_fraud=None,
    )
]
ROWS = PEERS + DUPLICATES + HISTORY + PROCEDURE + ODD


def pandas_builder(table: pa.Table) -> pd.DataFrame:
    features = build_claim_features_pandas(table.to_pandas(), holdout_fraction=0.2, seed=7)
    return to_arrow(features).to_pandas()


@pytest.fixture(scope="module")
def spark_table(spark: Any) -> pa.Table:
    """The PySpark features of ROWS, computed once for the module."""
    claims = spark.createDataFrame(silver(ROWS))
    return build_claim_features(claims, holdout_fraction=0.2, seed=7).toArrow()


@pytest.fixture(scope="module", params=["spark", "pandas"])
def features(request: pytest.FixtureRequest) -> pd.DataFrame:
    """The features of ROWS, indexed by claim_id, from each implementation in turn."""
    if request.param == "spark":
        built = request.getfixturevalue("spark_table").to_pandas()
    else:
        built = pandas_builder(silver(ROWS))
    return built.set_index("claim_id", drop=False)


def test_one_row_per_claim_with_the_contract_columns_and_no_nulls(features: pd.DataFrame) -> None:
    assert list(features.columns) == CLAIM_FEATURES_COLUMNS
    assert sorted(features["claim_id"]) == sorted(r["claim_id"] for r in ROWS)
    assert not features[MODEL_FEATURES].isna().any().any()
    assert features.loc["Z0", "diagnosis_code"] == MISSING_CATEGORY
    assert pd.isna(features.loc["Z0", "is_fraud"])


def test_duplicate_bill_counts_both_and_flags_only_the_resubmission(
    features: pd.DataFrame,
) -> None:
    assert features.loc[["DUP1", "DUP2"], "duplicate_claim_count"].tolist() == [1, 1]
    assert features.loc[["DUP1", "DUP2"], "is_duplicate_claim"].tolist() == [0, 1]
    others = features.drop(index=["DUP1", "DUP2"])
    assert (others["duplicate_claim_count"] == 0).all()
    assert (others["is_duplicate_claim"] == 0).all()


def test_outlier_provider_has_a_high_peer_zscore(features: pd.DataFrame) -> None:
    cardiology = features[features["provider_specialty"] == "cardiology"]
    by_provider = cardiology.groupby(cardiology["claim_id"].str[1])
    z = by_provider["provider_amount_peer_zscore"].first()
    # Reference: scipy's z-score (population std) of the six providers' average amounts.
    expected = stats.zscore([100.0] * 5 + [1000.0])
    assert z.tolist() == pytest.approx(expected.tolist())
    assert z["5"] > 2.2
    assert features.loc["K50", "provider_avg_amount"] == pytest.approx(1000.0)
    assert features.loc["K50", "provider_claim_count"] == 2
    # A provider alone in its specialty has no peers to differ from.
    assert features.loc["Z0", "provider_amount_peer_zscore"] == 0.0


def test_patient_history_counts_and_gaps(features: pd.DataFrame) -> None:
    history = features.loc[["H1", "H2", "H3", "H4"]]
    assert history["days_since_prev_patient_claim"].tolist() == [FIRST_CLAIM_GAP_DAYS, 10, 0, 30]
    assert (history["patient_claim_count"] == 4).all()
    assert (history["patient_provider_count"] == 2).all()
    assert features.loc["H1", "provider_unique_patients"] == 1
    assert features.loc["K00", "provider_unique_patients"] == 2


def test_amount_against_procedure_norms(features: pd.DataFrame) -> None:
    procedure = features.loc[["R0", "R1", "R2", "R3"]]
    assert procedure["amount_vs_procedure_median"].tolist() == pytest.approx(
        [100 / 250, 200 / 250, 300 / 250, 1000 / 250]
    )
    expected = stats.zscore([100.0, 200.0, 300.0, 1000.0])
    assert procedure["amount_procedure_zscore"].tolist() == pytest.approx(expected.tolist())
    assert features.loc["Z0", "amount_per_procedure"] == pytest.approx(80.0)
    assert features.loc["DUP1", "service_to_claim_days"] == 2


def expected_split(claim_id: str, *, seed: int, holdout_fraction: float) -> str:
    digest = hashlib.md5(f"{seed}:{claim_id}".encode()).hexdigest()
    return "holdout" if int(digest[:8], 16) % 10_000 < holdout_fraction * 10_000 else "train"


def test_split_follows_the_claim_id_hash(features: pd.DataFrame) -> None:
    # Per-claim equality with the md5 reference on both engines: no dependence on partitions.
    expected = [expected_split(c, seed=7, holdout_fraction=0.2) for c in features["claim_id"]]
    assert features["split"].tolist() == expected


def test_split_is_stable_per_claim_and_near_the_holdout_fraction() -> None:
    rows = [claim(f"S{i:05d}") for i in range(20_000)]
    whole = pandas_builder(silver(rows)).set_index("claim_id")["split"]
    assert (whole == "holdout").mean() == pytest.approx(0.2, abs=0.01)

    # The same claim lands in the same split whatever else is in the frame.
    subset = pandas_builder(silver(rows[::97])).set_index("claim_id")["split"]
    assert subset.to_dict() == whole.loc[subset.index].to_dict()

    reseeded = build_claim_features_pandas(
        silver(rows).to_pandas(), holdout_fraction=0.2, seed=8
    ).set_index("claim_id")["split"]
    assert 0.25 < (reseeded != whole).mean() < 0.4


def test_output_matches_the_gold_schema(spark_table: pa.Table) -> None:
    # Spark may mark a column nullable where the contract says it never is; types must match.
    assert _types(spark_table.schema) == _types(CLAIM_FEATURES_SCHEMA)
    pandas_table = to_arrow(
        build_claim_features_pandas(silver(ROWS).to_pandas(), holdout_fraction=0.2, seed=7)
    )
    assert pandas_table.schema.equals(CLAIM_FEATURES_SCHEMA)


def _types(schema: pa.Schema) -> list[tuple[str, pa.DataType]]:
    return [(field.name, field.type) for field in schema]


@pytest.mark.parametrize("engine", ["spark", "pandas"])
def test_missing_column_is_named_in_the_error(engine: str, spark: Any) -> None:
    table = silver(ROWS).drop_columns(["service_date"])
    with pytest.raises(ValueError, match="service_date"):
        if engine == "spark":
            build_claim_features(spark.createDataFrame(table), holdout_fraction=0.2, seed=7)
        else:
            build_claim_features_pandas(table.to_pandas(), holdout_fraction=0.2, seed=7)


@pytest.mark.parametrize("fraction", [-0.1, 1.0])
def test_holdout_fraction_outside_range_is_rejected(fraction: float) -> None:
    with pytest.raises(ValueError, match="holdout_fraction"):
        build_claim_features_pandas(silver(ROWS).to_pandas(), holdout_fraction=fraction, seed=7)
