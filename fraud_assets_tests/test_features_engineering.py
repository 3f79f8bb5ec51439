"""Feature semantics on hand-built claims, for the PySpark features and their pandas peer."""

from __future__ import annotations

import hashlib
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from scipy import stats

from fraud_assets.claims.schema import CLAIM_SCHEMA
from fraud_assets.claims.synthetic import generate_claims
from fraud_assets.claims.synthetic import to_arrow as claims_to_arrow
from fraud_assets.features import (
    ACTIVITY_DAYS,
    CLAIM_FEATURES_COLUMNS,
    CLAIM_FEATURES_SCHEMA,
    EXCLUDED,
    FIRST_CLAIM_GAP_DAYS,
    HOLDOUT,
    LOOKBACK_DAYS,
    MISSING_CATEGORY,
    MODEL_FEATURES,
    TRAIN,
    UNLABELLED,
    SplitPolicy,
    split_bucket,
)
from fraud_assets.features.engineering import build_claim_features
from fraud_assets.settings import FraudSettings
from fraud_assets_tests.pandas_peer import build_claim_features_pandas, to_arrow

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


# Cardiology: five providers billing 90 then 110, and one billing 1000 twice (days 1, 2).
PEERS = [
    claim(
        f"K{p}{i}",
        provider_id=f"D-card{p}",
        provider_specialty="cardiology",
        claim_amount=a,
        claim_date=on_day(1 + i),
    )
    for p, amounts in enumerate([[90, 110]] * 5 + [[1000, 1000]])
    for i, a in enumerate(amounts)
]
# The same bill twice (patient, provider, procedure, service date), re-submitted 3 days later.
DUPLICATES = [
    claim("DUP1", patient_id="P-dup", provider_id="D-dup", claim_date=on_day(2)),
    claim("DUP2", patient_id="P-dup", provider_id="D-dup", claim_date=on_day(5)),
]
# One patient's history: service days 0, 10, 10 (another provider), 40, each filed 3 days on.
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
# A procedure billed 100, 200, 300, 1000 on consecutive days.
PROCEDURE = [
    claim(f"R{i}", procedure_code="27447", claim_amount=a, claim_date=on_day(1 + i))
    for i, a in enumerate([100, 200, 300, 1000])
]
# One provider billing one procedure across both windows: its own activity looks back 30
# days, the procedure's norm 365.
LOOKBACK = [
    claim(
        claim_id,
        patient_id=patient,
        provider_id="D-long",
        procedure_code="99999",
        claim_amount=amount,
        service_date=on_day(day),
        claim_date=on_day(day),
    )
    for claim_id, patient, day, amount in [
        ("L0", "P-a", 0, 100.0),
        ("L1", "P-b", 30, 200.0),
        ("L2", "P-a", 60, 300.0),
        ("L3", "P-b", 91, 400.0),
        ("L4", "P-a", 426, 500.0),
    ]
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
ROWS = PEERS + DUPLICATES + HISTORY + PROCEDURE + LOOKBACK + ODD


def pandas_builder(table: pa.Table) -> pd.DataFrame:
    features = build_claim_features_pandas(table.to_pandas(), split=SplitPolicy(0.2, 7, "random"))
    return to_arrow(features).to_pandas()


@pytest.fixture(scope="module")
def spark_table(spark: Any) -> pa.Table:
    """The PySpark features of ROWS, computed once for the module."""
    claims = spark.createDataFrame(silver(ROWS))
    return build_claim_features(claims, split=SplitPolicy(0.2, 7, "random")).toArrow()


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


def test_duplicate_bill_counts_earlier_filings_and_flags_only_the_resubmission(
    features: pd.DataFrame,
) -> None:
    assert features.loc[["DUP1", "DUP2"], "duplicate_claim_count"].tolist() == [0, 1]
    assert features.loc[["DUP1", "DUP2"], "is_duplicate_claim"].tolist() == [0, 1]
    others = features.drop(index=["DUP1", "DUP2"])
    assert (others["duplicate_claim_count"] == 0).all()
    assert (others["is_duplicate_claim"] == 0).all()


def test_outlier_provider_has_a_high_peer_zscore_once_peers_have_billed(
    features: pd.DataFrame,
) -> None:
    # K51 (day 2) sees every cardiology claim of day 1 and itself; its provider averages 1000.
    specialty = np.array([90.0] * 5 + [1000.0, 1000.0])
    expected = (1000.0 - specialty.mean()) / specialty.std()
    assert features.loc["K51", "provider_amount_peer_zscore"] == pytest.approx(expected)
    assert expected > 1.5
    assert features.loc["K51", "provider_avg_amount"] == pytest.approx(1000.0)
    assert features.loc["K51", "provider_claim_count"] == 2
    # K01 (day 2): its provider's 90 and 110 average 100, below the specialty's mean.
    assert features.loc["K01", "provider_avg_amount"] == pytest.approx(100.0)
    assert features.loc["K01", "provider_amount_peer_zscore"] < 0
    # On day 1 no peer has billed yet (same-day claims are not history): no spread, 0.
    assert (features.loc[[f"K{p}0" for p in range(6)], "provider_amount_peer_zscore"] == 0).all()
    assert features.loc["Z0", "provider_amount_peer_zscore"] == 0.0


def test_patient_history_counts_only_claims_filed_on_earlier_days(
    features: pd.DataFrame,
) -> None:
    history = features.loc[["H1", "H2", "H3", "H4"]]
    # H2 and H3 are filed the same day: neither sees the other.
    assert history["days_since_prev_patient_claim"].tolist() == [FIRST_CLAIM_GAP_DAYS, 10, 10, 30]
    # H4 (filed day 43) sees the last 30 days: H2 and H3, not H1 (filed day 3).
    assert history["patient_claim_count"].tolist() == [1, 2, 2, 3]
    assert history["patient_provider_count"].tolist() == [1, 1, 2, 2]
    assert features.loc["H4", "provider_unique_patients"] == 1
    assert features.loc[["K00", "K01"], "provider_unique_patients"].tolist() == [1, 2]


def test_histories_reach_back_exactly_their_windows(features: pd.DataFrame) -> None:
    assert (ACTIVITY_DAYS, LOOKBACK_DAYS) == (30, 365)
    window = features.loc[["L0", "L1", "L2", "L3", "L4"]]
    # Day 30 sees day 0, day 60 sees day 30 only, day 91 and day 426 see nothing.
    assert window["provider_claim_count"].tolist() == [1, 2, 2, 1, 1]
    assert window["provider_unique_patients"].tolist() == [1, 2, 2, 1, 1]
    assert window["provider_avg_amount"].tolist() == pytest.approx([100, 150, 250, 400, 500])
    # The procedure's norm: day 91 sees days 0..60, day 426 sees day 91 only (61..425).
    assert window["amount_vs_procedure_mean"].tolist() == pytest.approx(
        [1.0, 200 / 150, 300 / 200, 400 / 250, 500 / 450]
    )


def test_amount_against_the_procedure_history(features: pd.DataFrame) -> None:
    procedure = features.loc[["R0", "R1", "R2", "R3"]]
    assert procedure["amount_vs_procedure_mean"].tolist() == pytest.approx(
        [1.0, 200 / 150, 300 / 200, 1000 / 400]
    )
    expected = [0.0] + [
        stats.zscore(np.array([100.0, 200, 300, 1000])[: k + 1])[-1] for k in (1, 2, 3)
    ]
    assert procedure["amount_procedure_zscore"].tolist() == pytest.approx(expected)
    assert features.loc["Z0", "amount_per_procedure"] == pytest.approx(80.0)
    assert features.loc["DUP1", "service_to_claim_days"] == 2


@pytest.mark.parametrize("engine", ["spark", "pandas"])
def test_a_claims_features_never_change_when_later_claims_arrive(engine: str, spark: Any) -> None:
    """Point-in-time: the features of claims filed before a day are the same whether or not
    the claims filed from that day on are in the frame."""
    frame = generate_claims(3_000, seed=21)
    cutoff = frame["claim_date"].quantile(0.6)
    earlier = frame[frame["claim_date"] < cutoff]
    policy = SplitPolicy(0.2, 7, "random")

    def build(claims: pd.DataFrame) -> pd.DataFrame:
        if engine == "spark":
            claims_df = spark.createDataFrame(claims_to_arrow(claims))
            return build_claim_features(claims_df, split=policy).toPandas()
        return build_claim_features_pandas(claims, split=policy)

    alone = build(earlier).set_index("claim_id").sort_index()
    with_later = build(frame).set_index("claim_id").loc[alone.index]
    pd.testing.assert_frame_equal(
        alone[MODEL_FEATURES], with_later[MODEL_FEATURES], check_exact=False, rtol=1e-12
    )
    assert (alone["provider_claim_count"] > 1).mean() > 0.5


def expected_split(claim_id: str, *, seed: int, holdout_fraction: float) -> str:
    digest = hashlib.md5(f"{seed}:{claim_id}".encode()).hexdigest()
    return "holdout" if int(digest[:8], 16) % 10_000 < holdout_fraction * 10_000 else "train"


def test_split_follows_the_claim_id_hash(features: pd.DataFrame) -> None:
    # Per-claim equality with the md5 reference on both engines: no dependence on partitions.
    # A claim with no label yet is "unlabelled", whatever its hash.
    expected = [
        expected_split(c, seed=7, holdout_fraction=0.2) if pd.notna(label) else "unlabelled"
        for c, label in zip(features["claim_id"], features["is_fraud"], strict=True)
    ]
    assert features["split"].tolist() == expected


def test_split_is_stable_per_claim_and_near_the_holdout_fraction() -> None:
    rows = [claim(f"S{i:05d}") for i in range(20_000)]
    whole = pandas_builder(silver(rows)).set_index("claim_id")["split"]
    assert (whole == "holdout").mean() == pytest.approx(0.2, abs=0.01)

    # The same claim lands in the same split whatever else is in the frame.
    subset = pandas_builder(silver(rows[::97])).set_index("claim_id")["split"]
    assert subset.to_dict() == whole.loc[subset.index].to_dict()

    reseeded = build_claim_features_pandas(
        silver(rows).to_pandas(), split=SplitPolicy(0.2, 8, "random")
    ).set_index("claim_id")["split"]
    assert 0.25 < (reseeded != whole).mean() < 0.4


def test_output_matches_the_gold_schema(spark_table: pa.Table) -> None:
    # Spark may mark a column nullable where the contract says it never is; types must match.
    assert _types(spark_table.schema) == _types(CLAIM_FEATURES_SCHEMA)
    pandas_table = to_arrow(
        build_claim_features_pandas(silver(ROWS).to_pandas(), split=SplitPolicy(0.2, 7, "random"))
    )
    assert pandas_table.schema.equals(CLAIM_FEATURES_SCHEMA)


def _types(schema: pa.Schema) -> list[tuple[str, pa.DataType]]:
    return [(field.name, field.type) for field in schema]


@pytest.mark.parametrize("engine", ["spark", "pandas"])
def test_missing_column_is_named_in_the_error(engine: str, spark: Any) -> None:
    table = silver(ROWS).drop_columns(["service_date"])
    with pytest.raises(ValueError, match="service_date"):
        if engine == "spark":
            build_claim_features(spark.createDataFrame(table), split=SplitPolicy(0.2, 7, "random"))
        else:
            build_claim_features_pandas(table.to_pandas(), split=SplitPolicy(0.2, 7, "random"))


@pytest.mark.parametrize("fraction", [-0.1, 1.0])
def test_holdout_fraction_outside_range_is_rejected(fraction: float) -> None:
    with pytest.raises(ValueError, match="holdout_fraction"):
        build_claim_features_pandas(
            silver(ROWS).to_pandas(), split=SplitPolicy(fraction, 7, "random")
        )


# --- honest splits (issue 12 finding 3) -------------------------------------------------------


def dated_rows(n: int, *, providers: int, days: int, unlabelled_days: int = 0) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        day = int(rng.integers(0, days))
        rows.append(
            claim(
                f"T{i:05d}",
                provider_id=f"D{int(rng.integers(0, providers)):03d}",
                service_date=on_day(day),
                claim_date=on_day(day),
                is_fraud=None if day >= days - unlabelled_days else int(rng.random() < 0.1),
            )
        )
    return rows


def _built(engine: str, spark: Any, rows: list[dict], split: SplitPolicy) -> pd.DataFrame:
    if engine == "spark":
        return build_claim_features(spark.createDataFrame(silver(rows)), split=split).toPandas()
    return build_claim_features_pandas(silver(rows).to_pandas(), split=split)


@pytest.mark.parametrize("engine", ["spark", "pandas"])
def test_out_of_time_holdout_is_the_latest_labelled_claims(engine: str, spark: Any) -> None:
    rows = dated_rows(5_000, providers=50, days=200, unlabelled_days=20)
    built = _built(engine, spark, rows, SplitPolicy(0.2, 7))
    by_split = built.groupby("split")["claim_date"]
    assert by_split.min()[HOLDOUT] > by_split.max()[TRAIN]
    assert by_split.min()[UNLABELLED] > by_split.max()[HOLDOUT]  # late labels are the latest
    assert (built["split"] == UNLABELLED).sum() == built["is_fraud"].isna().sum() > 0
    labelled = built[built["is_fraud"].notna()]
    assert (labelled["split"] == HOLDOUT).mean() == pytest.approx(0.2, abs=0.01)


@pytest.mark.parametrize("engine", ["spark", "pandas"])
def test_provider_labels_split_by_provider_and_time(engine: str, spark: Any) -> None:
    rows = dated_rows(20_000, providers=400, days=200)
    built = _built(engine, spark, rows, SplitPolicy(0.2, 7, label_unit="provider"))
    train, holdout = built[built["split"] == TRAIN], built[built["split"] == HOLDOUT]
    providers = pd.DataFrame(rows).set_index("claim_id")["provider_id"]
    assert not set(providers[train["claim_id"]]) & set(providers[holdout["claim_id"]])
    assert holdout["claim_date"].min() > train["claim_date"].max()
    assert len(holdout) / len(built) == pytest.approx(0.2, abs=0.03)
    assert len(train) / len(built) == pytest.approx((1 - 0.2**0.5) ** 2, abs=0.03)
    assert set(built["split"]) == {TRAIN, HOLDOUT, EXCLUDED}


def test_both_engines_split_every_claim_alike(spark: Any) -> None:
    rows = dated_rows(3_000, providers=60, days=120, unlabelled_days=10)
    for policy in (
        SplitPolicy(0.2, 3),
        SplitPolicy(0.2, 3, strategy="random", label_unit="patient"),
        SplitPolicy(0.3, 3, label_unit="provider"),
    ):
        ours = _built("spark", spark, rows, policy).set_index("claim_id")["split"]
        peer = _built("pandas", spark, rows, policy).set_index("claim_id")["split"]
        assert ours.sort_index().tolist() == peer.sort_index().tolist(), policy


def test_a_per_claim_split_leaks_provider_labels_and_the_policy_does_not() -> None:
    # Issue 12 finding 3: with provider labels, a per-claim hash put nearly every holdout
    # claim's provider in training too, so provider aggregates fingerprint the label.
    rows = dated_rows(6_000, providers=300, days=365)
    frame = silver(rows).to_pandas()
    per_claim = frame["claim_id"].map(lambda c: split_bucket(c, seed=7) < 2_000)
    seen = set(frame.loc[~per_claim, "provider_id"])
    assert frame.loc[per_claim, "provider_id"].isin(seen).mean() > 0.95

    policy = SplitPolicy.from_settings(
        FraudSettings(split_strategy="out_of_time", label_unit="provider")
    )
    assert (policy.strategy, policy.label_unit) == ("out_of_time", "provider")
    built = build_claim_features_pandas(frame, split=policy).assign(
        provider_id=frame["provider_id"].to_numpy()
    )
    train = set(built.loc[built["split"] == TRAIN, "provider_id"])
    holdout = built.loc[built["split"] == HOLDOUT, "provider_id"]
    assert len(holdout) > 500 and not holdout.isin(train).any()


def test_a_mapping_can_declare_the_label_unit(tmp_path: Any) -> None:
    from importlib import resources

    packaged = resources.files("fraud_assets.claims") / "mappings" / "auto_insurance_claims.yaml"
    declared = tmp_path / "provider_labels.yaml"
    declared.write_text(packaged.read_text() + "\nlabel_unit: provider\n")
    source = str(tmp_path / "claims.csv")
    assert SplitPolicy.from_settings(FraudSettings()).label_unit == "claim"
    by_mapping = FraudSettings(source_path=source, source_mapping=str(declared))
    assert SplitPolicy.from_settings(by_mapping).label_unit == "provider"
    # The setting wins over the mapping.
    by_setting = by_mapping.model_copy(update={"label_unit": "patient"})
    assert SplitPolicy.from_settings(by_setting).label_unit == "patient"
