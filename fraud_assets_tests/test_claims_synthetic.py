"""The synthetic generator: deterministic, on contract, with recognisable fraud, drift and bias."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from fairlearn.metrics import demographic_parity_ratio
from sklearn.tree import DecisionTreeClassifier

from fraud_assets.claims.schema import CLAIM_COLUMNS, CLAIM_SCHEMA, age_group
from fraud_assets.claims.synthetic import (
    BIAS_ATTRIBUTE,
    BIAS_GROUP,
    CATALOG,
    OBVIOUS_SHAPE,
    generate_claims,
    generate_claims_with_patterns,
    land_synthetic_batch,
    to_arrow,
    write_claims_file,
)

PROTECTED = ["patient_gender", "patient_age_group", "geographic_region"]
N = 20_000


@pytest.fixture(scope="module")
def baseline() -> tuple[pd.DataFrame, pd.Series]:
    # The patterns' mechanics, unblurred: the default hides 30% of fraud on purpose
    # (test_claims_shapes.py covers that).
    return generate_claims_with_patterns(N, seed=7, shape=OBVIOUS_SHAPE)


def _psi(reference: pd.Series, current: pd.Series, bins: int = 10, eps: float = 1e-4) -> float:
    """Population stability index on the reference's quantile bins (or categories)."""
    if reference.dtype == object:
        cats = sorted(set(reference) | set(current))
        ref = reference.value_counts(normalize=True).reindex(cats, fill_value=0).to_numpy()
        cur = current.value_counts(normalize=True).reindex(cats, fill_value=0).to_numpy()
    else:
        edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
        counts_ref = np.bincount(
            np.searchsorted(edges, reference, "right"), minlength=len(edges) + 1
        )
        counts_cur = np.bincount(np.searchsorted(edges, current, "right"), minlength=len(edges) + 1)
        ref, cur = counts_ref / counts_ref.sum(), counts_cur / counts_cur.sum()
    ref, cur = np.maximum(ref, eps), np.maximum(cur, eps)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def test_same_seed_same_claims_and_new_seed_new_claims() -> None:
    first = generate_claims(3_000, seed=11, drift=0.3, bias=0.4)
    again = generate_claims(3_000, seed=11, drift=0.3, bias=0.4)
    other = generate_claims(3_000, seed=12, drift=0.3, bias=0.4)
    pd.testing.assert_frame_equal(first, again)
    assert not first.equals(other)
    assert (first["claim_amount"] != other["claim_amount"]).mean() > 0.9


def test_frame_matches_the_claim_contract(baseline: tuple[pd.DataFrame, pd.Series]) -> None:
    claims, _ = baseline
    assert list(claims.columns) == CLAIM_COLUMNS
    assert to_arrow(claims).schema.equals(CLAIM_SCHEMA)
    assert not claims.isna().any().any()
    assert claims["claim_id"].is_unique
    assert claims["claim_id"].str.fullmatch(r"C\d{9}").all()
    assert (claims["claim_date"] >= claims["service_date"]).all()
    assert claims["claim_date"].is_monotonic_increasing
    assert (claims["claim_amount"] > 0).all()
    assert (claims["num_procedures"] >= 1).all()
    assert (claims["length_of_stay"] >= 0).all()
    assert claims["patient_age"].between(18, 90).all()
    expected_groups = claims["patient_age"].map(age_group)
    assert (claims["patient_age_group"] == expected_groups).all()
    assert set(claims["patient_gender"]) == {"F", "M"}
    assert set(claims["is_fraud"]) == {0, 1}
    # A patient's attributes do not change from one claim to the next.
    per_patient = claims.groupby("patient_id")[[*PROTECTED, "patient_age"]].nunique()
    assert (per_patient == 1).all().all()


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("bias", [0.0, 1.0])
def test_fraud_rate_is_between_five_and_ten_percent(seed: int, bias: float) -> None:
    rate = generate_claims(N, seed=seed, bias=bias)["is_fraud"].mean()
    assert 0.05 <= rate <= 0.10


def test_labels_are_exactly_the_fraud_patterns(baseline: tuple[pd.DataFrame, pd.Series]) -> None:
    claims, pattern = baseline
    assert ((pattern != "none") == (claims["is_fraud"] == 1)).all()
    shares = pattern.value_counts(normalize=True)
    for name in ["upcoding", "duplicate_billing", "phantom_service", "provider_ring"]:
        assert shares[name] > 0.01, name


def test_duplicate_billing_rebills_an_earlier_legitimate_claim(
    baseline: tuple[pd.DataFrame, pd.Series],
) -> None:
    claims, pattern = baseline
    key = ["patient_id", "provider_id", "procedure_code", "service_date", "claim_amount"]
    rebills = claims[pattern == "duplicate_billing"]
    originals = claims[pattern == "none"]
    pairs = rebills.merge(originals, on=key, suffixes=("", "_original"))
    # Every re-bill has its original: same care, new claim id, billed later, not fraud.
    assert set(pairs["claim_id"]) == set(rebills["claim_id"])
    assert (pairs["claim_id"] != pairs["claim_id_original"]).all()
    assert (pairs["claim_date"] > pairs["claim_date_original"]).all()
    assert (pairs["is_fraud_original"] == 0).all()


def test_upcoding_bills_far_above_the_procedures_norm(
    baseline: tuple[pd.DataFrame, pd.Series],
) -> None:
    claims, pattern = baseline
    norm = claims[pattern == "none"].groupby("procedure_code")["claim_amount"].median()
    ratio = claims["claim_amount"] / claims["procedure_code"].map(norm)
    assert ratio[pattern == "upcoding"].min() > 1.5
    assert ratio[pattern == "none"].between(0.7, 1.4).mean() > 0.7
    # Upcoded claims sit in the top tiers of their specialty's catalogue.
    top_tiers = {p.code for procs in CATALOG.values() for p in procs[2:]}
    assert claims.loc[pattern == "upcoding", "procedure_code"].isin(top_tiers).all()


def test_phantom_patients_are_seen_by_many_providers(
    baseline: tuple[pd.DataFrame, pd.Series],
) -> None:
    claims, pattern = baseline
    phantom = claims[pattern == "phantom_service"]
    assert phantom["num_procedures"].between(6, 15).all()
    assert (phantom["length_of_stay"] == 0).all()
    providers_per_patient = claims.groupby("patient_id")["provider_id"].nunique()
    phantom_patients = providers_per_patient[phantom["patient_id"].unique()]
    legit_only = providers_per_patient.drop(phantom["patient_id"].unique())
    assert phantom_patients.median() >= 6
    assert phantom_patients.median() > 2 * legit_only.median()


def test_provider_rings_share_patients_at_inflated_amounts(
    baseline: tuple[pd.DataFrame, pd.Series],
) -> None:
    claims, pattern = baseline
    ring = claims[pattern == "provider_ring"]
    ring_providers = set(ring["provider_id"])
    # A few colluding providers, each billing many shared patients.
    assert len(ring_providers) <= 0.1 * claims["provider_id"].nunique()
    ring_patients_providers = ring.groupby("patient_id")["provider_id"].nunique()
    assert ring_patients_providers.median() >= 3
    norm = claims[pattern == "none"].groupby("procedure_code")["claim_amount"].median()
    ratio = ring["claim_amount"] / ring["procedure_code"].map(norm)
    assert ratio.min() > 1.3


def test_drift_moves_several_features_past_the_major_psi_line(
    baseline: tuple[pd.DataFrame, pd.Series],
) -> None:
    reference, _ = baseline
    stable = generate_claims(N, seed=8, drift=0.0)
    drifted = generate_claims(N, seed=8, drift=1.0)
    columns = ["claim_amount", "num_procedures", "patient_age", "procedure_code"]
    for column in columns:
        assert _psi(reference[column], stable[column]) < 0.1, column
        assert _psi(reference[column], drifted[column]) >= 0.2, column
    assert drifted["claim_amount"].median() > 1.5 * reference["claim_amount"].median()
    assert drifted["patient_age"].mean() > reference["patient_age"].mean() + 5


def test_psi_helper_matches_a_hand_computed_value() -> None:
    reference = pd.Series(["a"] * 50 + ["b"] * 50, dtype=object)
    current = pd.Series(["a"] * 80 + ["b"] * 20, dtype=object)
    expected = (0.8 - 0.5) * np.log(0.8 / 0.5) + (0.2 - 0.5) * np.log(0.2 / 0.5)
    assert _psi(reference, current) == pytest.approx(expected)


def test_without_bias_every_group_has_the_same_fraud_rate() -> None:
    claims = generate_claims(60_000, seed=5, bias=0.0)
    overall = claims["is_fraud"].mean()
    for attribute in PROTECTED:
        rates = claims.groupby(attribute)["is_fraud"].mean()
        assert (rates - overall).abs().max() < 0.01, (attribute, rates.to_dict())


def test_bias_concentrates_fraud_in_one_group() -> None:
    claims = generate_claims(60_000, seed=5, bias=1.0)
    rates = claims.groupby(BIAS_ATTRIBUTE)["is_fraud"].mean()
    others = rates.drop(BIAS_GROUP)
    assert rates[BIAS_GROUP] > 5 * others.max()
    half = generate_claims(60_000, seed=5, bias=0.5).groupby(BIAS_ATTRIBUTE)["is_fraud"].mean()
    assert others.max() < half.drop(BIAS_GROUP).max() < half[BIAS_GROUP] < rates[BIAS_GROUP]


def _model_selection_ratio(bias: float) -> float:
    """Disparate impact of a model trained without protected attributes on biased claims."""
    claims = generate_claims(60_000, seed=21, bias=bias)
    norm = claims.groupby("procedure_code")["claim_amount"].transform("median")
    features = pd.DataFrame(
        {
            "amount_vs_procedure_mean": claims["claim_amount"] / norm,
            "num_procedures": claims["num_procedures"],
            "length_of_stay": claims["length_of_stay"],
            "patient_provider_count": claims.groupby("patient_id")["provider_id"].transform(
                "nunique"
            ),
            "provider_avg_amount_ratio": (claims["claim_amount"] / norm)
            .groupby(claims["provider_id"])
            .transform("mean"),
        }
    )
    train = claims["claim_id"].str[-1].astype(int) < 7
    model = DecisionTreeClassifier(max_depth=6, min_samples_leaf=20, random_state=0).fit(
        features[train], claims.loc[train, "is_fraud"]
    )
    holdout = ~train
    flagged = model.predict_proba(features[holdout])[:, 1] >= 0.5
    return float(
        demographic_parity_ratio(
            claims.loc[holdout, "is_fraud"],
            flagged,
            sensitive_features=claims.loc[holdout, BIAS_ATTRIBUTE],
            method="between_groups",
        )
    )


def test_a_model_blind_to_gender_still_fails_the_four_fifths_rule_under_bias() -> None:
    assert _model_selection_ratio(bias=0.0) >= 0.8
    assert _model_selection_ratio(bias=1.0) < 0.4


def test_files_round_trip_as_csv_and_parquet(tmp_path: Path) -> None:
    claims = generate_claims(500, seed=3)
    csv_path = write_claims_file(claims, tmp_path / "batch.csv")
    parquet_path = write_claims_file(claims, tmp_path / "batch.parquet")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["batch.csv", "batch.parquet"]
    assert pq.read_table(parquet_path).schema.equals(CLAIM_SCHEMA)
    from_csv = pd.read_csv(csv_path, dtype=str)
    assert list(from_csv.columns) == CLAIM_COLUMNS
    assert from_csv["service_date"].str.fullmatch(r"\d{4}-\d{2}-\d{2}").all()
    assert from_csv["claim_id"].tolist() == claims["claim_id"].tolist()
    with pytest.raises(ValueError, match=r"batch\.txt"):
        write_claims_file(claims, tmp_path / "batch.txt")


def test_landed_batches_with_different_seeds_never_share_claim_ids(tmp_path: Path) -> None:
    first = land_synthetic_batch(tmp_path, n_rows=300, seed=1)
    second = land_synthetic_batch(tmp_path, n_rows=300, seed=2, file_format="parquet")
    ids_first = set(pd.read_csv(first, dtype=str)["claim_id"])
    ids_second = set(pq.read_table(second).column("claim_id").to_pylist())
    assert len(ids_first) == len(ids_second) == 300
    assert not ids_first & ids_second


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_rows": 0}, "n_rows"),
        ({"n_rows": 10, "drift": 1.5}, "drift"),
        ({"n_rows": 10, "bias": -0.1}, "bias"),
    ],
)
def test_bad_arguments_are_clear_errors(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        generate_claims(**kwargs)  # type: ignore[arg-type]
