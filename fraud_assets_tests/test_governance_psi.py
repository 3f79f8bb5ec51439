"""PSI: equal to a plain-Python reference, finite on tiny samples, labelled at the thresholds."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from fraud_assets.features import (
    CATEGORICAL_FEATURES,
    MODEL_FEATURES,
    NUMERIC_FEATURES,
    SplitPolicy,
)
from fraud_assets.governance import (
    MISSING_BUCKET,
    OTHER_BUCKET,
    UNSEEN_BUCKET,
    categorical_psi,
    drift_gates,
    drift_level,
    endpoint_window_rows,
    latest_scored_window,
    numeric_psi,
    psi_report,
    quantile_edges,
)

EPS = 1e-4


# --- an independent reference: Python loops, pandas quantiles, no numpy binning ----------


def _reference_numeric_psi(
    reference: Sequence[float], current: Sequence[float], *, bins: int, epsilon: float
) -> float:
    present = [x for x in reference if not math.isnan(x)]
    cuts = pd.Series(present).quantile([k / bins for k in range(1, bins)]).tolist()
    edges = sorted(set(cuts))

    def bucket(x: float) -> str:
        if math.isnan(x):
            return "missing"
        for i, edge in enumerate(edges):
            if x <= edge:
                return str(i)
        return str(len(edges))

    names = [str(i) for i in range(len(edges) + 1)] + ["missing"]
    return _reference_psi(
        Counter(bucket(x) for x in reference), Counter(bucket(x) for x in current), names, epsilon
    )


def _reference_categorical_psi(
    reference: Sequence[str | None], current: Sequence[str | None], *, epsilon: float
) -> float:
    known = {x for x in reference if x is not None}

    def bucket(x: str | None) -> str:
        if x is None:
            return "missing"
        return x if x in known else "unseen"

    names = [*sorted(known), "unseen", "missing"]
    return _reference_psi(
        Counter(bucket(x) for x in reference), Counter(bucket(x) for x in current), names, epsilon
    )


def _reference_psi(ref: Counter[str], cur: Counter[str], names: list[str], epsilon: float) -> float:
    n_ref, n_cur = sum(ref.values()), sum(cur.values())
    total = 0.0
    for name in names:
        r = max(ref[name] / n_ref, epsilon)
        c = max(cur[name] / n_cur, epsilon)
        total += (c - r) * math.log(c / r)
    return total


# --- numeric ---------------------------------------------------------------------------------


def _numeric_cases() -> list[tuple[str, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(3)
    with_gaps = rng.normal(size=3_000)
    with_gaps[rng.random(3_000) < 0.05] = np.nan
    shifted = rng.normal(0.4, 1.2, size=2_000)
    shifted[:300] = np.nan
    return [
        ("same distribution", rng.normal(size=5_000), rng.normal(size=4_000)),
        ("shifted lognormal", rng.lognormal(5, 1, 5_000), rng.lognormal(5.3, 1.1, 3_000)),
        (
            "heavy ties",
            rng.poisson(0.6, 5_000).astype(float),
            rng.poisson(1.8, 3_000).astype(float),
        ),
        ("missing values", with_gaps, shifted),
        ("constant reference", np.full(1_000, 2.0), rng.choice([1.0, 2.0, 3.0], 500)),
    ]


@pytest.mark.parametrize("case", _numeric_cases(), ids=lambda c: c[0])
def test_numeric_psi_equals_the_reference_computation(
    case: tuple[str, np.ndarray, np.ndarray],
) -> None:
    _, reference, current = case
    ours = numeric_psi(reference, current, bins=10, epsilon=EPS)
    expected = _reference_numeric_psi(list(reference), list(current), bins=10, epsilon=EPS)
    assert ours.psi == pytest.approx(expected, rel=1e-12, abs=1e-12)
    assert sum(ours.reference_share) == pytest.approx(1.0)
    assert sum(ours.current_share) == pytest.approx(1.0)


def test_ties_merge_edges_and_an_edge_value_falls_in_the_bin_it_closes() -> None:
    # Deciles of 75 ones, 20 twos and 5 fives: seven at 1, two at 2; merged to two edges.
    reference = np.array([1.0] * 75 + [2.0] * 20 + [5.0] * 5)
    edges = quantile_edges(reference, bins=10)
    assert edges.tolist() == [1.0, 2.0]
    result = numeric_psi(reference, np.array([1.0, 2.0, 2.0, 3.0]), bins=10, epsilon=EPS)
    assert result.buckets == ["(-inf, 1]", "(1, 2]", "(2, inf]", MISSING_BUCKET]
    assert result.current_share == [0.25, 0.5, 0.25, 0.0]
    assert result.reference_share == [0.75, 0.2, 0.05, 0.0]


def test_identical_samples_have_zero_psi_and_a_shift_has_more() -> None:
    rng = np.random.default_rng(0)
    sample = rng.normal(size=2_000)
    assert numeric_psi(sample, sample, bins=10, epsilon=EPS).psi == pytest.approx(0.0, abs=1e-15)
    small = numeric_psi(sample, sample + 0.1, bins=10, epsilon=EPS).psi
    large = numeric_psi(sample, sample + 1.0, bins=10, epsilon=EPS).psi
    assert 0 < small < large


def test_tiny_or_disjoint_samples_give_a_large_finite_psi() -> None:
    rng = np.random.default_rng(1)
    reference = rng.normal(size=1_000)
    for current in (np.array([0.3]), np.array([50.0, 60.0]), np.array([np.nan, np.nan])):
        result = numeric_psi(reference, current, bins=10, epsilon=EPS)
        assert math.isfinite(result.psi)
        assert result.psi == pytest.approx(
            _reference_numeric_psi(list(reference), list(current), bins=10, epsilon=EPS)
        )
    # Every empty bucket is floored at epsilon: a one-bucket current sample has PSI of about
    # sum over the other 9 buckets of 0.1 * ln(0.1 / 1e-4) plus the hit bucket's term.
    one_bucket = numeric_psi(reference, np.array([50.0]), bins=10, epsilon=EPS).psi
    assert 7.0 < one_bucket < 12.0


def test_numeric_column_with_text_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="'claim_amount' holds non-numeric values"):
        numeric_psi(
            pd.Series([1.0, 2.0]),
            pd.Series(["1", "abc"]),
            bins=4,
            epsilon=EPS,
            column="claim_amount",
        )


# --- categorical -----------------------------------------------------------------------------


def test_categorical_psi_equals_the_reference_with_unseen_and_missing_values() -> None:
    rng = np.random.default_rng(2)
    reference = list(
        rng.choice(["99213", "99214", "93000", "71046"], 3_000, p=[0.4, 0.3, 0.2, 0.1])
    )
    current: list[str | None] = list(
        rng.choice(["99213", "99214", "93000", "NEW1", "NEW2"], 2_000, p=[0.3, 0.3, 0.2, 0.1, 0.1])
    )
    current[:50] = [None] * 50
    ours = categorical_psi(pd.Series(reference), pd.Series(current), epsilon=EPS)
    expected = _reference_categorical_psi(reference, current, epsilon=EPS)
    assert ours.psi == pytest.approx(expected, rel=1e-12)
    assert ours.buckets == ["71046", "93000", "99213", "99214", UNSEEN_BUCKET, MISSING_BUCKET]
    # Both new codes land in the one unseen bucket; "71046" vanished and is floored.
    unseen_share = ours.current_share[ours.buckets.index(UNSEEN_BUCKET)]
    assert unseen_share == pytest.approx(sum(c in ("NEW1", "NEW2") for c in current) / 2_000)
    assert ours.current_share[0] == 0.0
    assert math.isfinite(ours.psi)


def test_only_unseen_categories_is_finite_and_major() -> None:
    result = categorical_psi(["a", "b", "a"], ["c", "d"], epsilon=EPS)
    assert math.isfinite(result.psi)
    assert drift_level(result.psi, warn=0.1, error=0.2) == "major"


def test_codes_compare_as_text_whatever_type_they_were_read_as() -> None:
    as_text = categorical_psi(["93000", "99213"], ["93000", "99213"], epsilon=EPS)
    as_numbers = categorical_psi(
        pd.Series([93000, 99213]), pd.Series([93000.0, 99213.0]), epsilon=EPS
    )
    assert as_text.psi == 0.0
    assert as_numbers.psi == 0.0
    assert as_numbers.buckets == as_text.buckets


# --- labels and verdicts ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("psi", "level"),
    [
        (0.0, "none"),
        (0.0999, "none"),
        (0.1, "minor"),
        (0.1999, "minor"),
        (0.2, "major"),
        (3.0, "major"),
    ],
)
def test_drift_levels_at_the_thresholds(psi: float, level: str) -> None:
    assert drift_level(psi, warn=0.1, error=0.2) == level


def _report_with(feature_psi: float, score_psi: float) -> pd.DataFrame:
    rows = [("claim_amount", "numeric", 0.01), ("num_procedures", "numeric", feature_psi)]
    rows.append(("fraud_score", "score", score_psi))
    frame = pd.DataFrame(rows, columns=["feature", "kind", "psi"])
    frame["drift_level"] = [drift_level(p, warn=0.1, error=0.2) for p in frame["psi"]]
    return frame


@pytest.mark.parametrize(
    ("psi", "passed", "severity"),
    [(0.05, True, "WARN"), (0.1, False, "WARN"), (0.15, False, "WARN"), (0.2, False, "ERROR")],
)
def test_drift_verdicts_warn_then_error(psi: float, passed: bool, severity: str) -> None:
    gates = drift_gates(_report_with(psi, psi), warn=0.1, error=0.2)
    for verdict in (gates.feature_drift, gates.score_drift):
        assert verdict.passed is passed
        assert verdict.severity == severity
    assert gates.max_psi == psi


def test_drift_summary_names_the_drifted_features_and_the_overall_level() -> None:
    gates = drift_gates(_report_with(0.3, 0.12), warn=0.1, error=0.2)
    assert gates.drifted_features == ["num_procedures"]
    assert gates.drift_level == "major"
    assert gates.max_psi == 0.3
    assert gates.feature_drift.metadata["worst_feature"] == "num_procedures"
    assert not gates.score_drift.passed and gates.score_drift.severity == "WARN"


# --- the full report and its input window ----------------------------------------------------


def _feature_frame(rng: np.random.Generator, n: int, shift: float = 0.0) -> pd.DataFrame:
    frame = pd.DataFrame({name: rng.normal(shift, 1.0, n) for name in NUMERIC_FEATURES})
    for name in CATEGORICAL_FEATURES:
        frame[name] = rng.choice(["A", "B", "C"], n)
    frame["fraud_score"] = rng.beta(1, 12 - 4 * shift, n)
    return frame


def test_report_has_one_row_per_model_feature_and_the_score() -> None:
    rng = np.random.default_rng(4)
    reference, current = _feature_frame(rng, 2_000), _feature_frame(rng, 1_000, shift=1.0)
    report = psi_report(
        reference,
        current,
        numeric_features=NUMERIC_FEATURES,
        categorical_features=CATEGORICAL_FEATURES,
        score_column="fraud_score",
        current_scores=current["fraud_score"].iloc[:400],
        bins=10,
        epsilon=EPS,
        warn=0.1,
        error=0.2,
    )
    assert list(report["feature"]) == [*MODEL_FEATURES, "fraud_score"]
    assert list(report["kind"].unique()) == ["numeric", "categorical", "score"]
    numeric = report.loc[report["kind"] == "numeric"]
    assert (numeric["drift_level"] == "major").all()  # a one-sigma shift is PSI near 1
    assert (report.loc[report["kind"] == "categorical", "drift_level"] == "none").all()
    assert report.loc[report["kind"] == "score", "current_rows"].item() == 400
    assert (report.loc[report["kind"] != "score", "current_rows"] == 1_000).all()
    assert (report["reference_rows"] == 2_000).all()


def test_report_names_missing_columns() -> None:
    rng = np.random.default_rng(5)
    reference = _feature_frame(rng, 100)
    with pytest.raises(ValueError, match=r"current data lacks columns \['procedure_code'\]"):
        psi_report(
            reference,
            reference.drop(columns=["procedure_code"]),
            numeric_features=NUMERIC_FEATURES,
            categorical_features=CATEGORICAL_FEATURES,
            score_column="fraud_score",
            bins=10,
            epsilon=EPS,
            warn=0.1,
            error=0.2,
        )


def _log_rows(window: str, source: str, at: datetime, n: int, version: str = "3") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "claim_id": [f"{window}-{source}-{i}" for i in range(n)],
            "fraud_score": np.linspace(0, 1, n),
            "model_version": version,
            "source": source,
            "window_id": window,
            "scored_at": pd.Timestamp(at),
        }
    )


def test_latest_window_is_the_newest_batch_plus_realtime_rows_since_it_started() -> None:
    t0 = datetime(2025, 3, 1, tzinfo=UTC)
    log = pd.concat(
        [
            _log_rows("2025-03-01T00:00Z", "batch", t0, 5),
            _log_rows("2025-03-01T06:00Z", "realtime", t0 + timedelta(hours=6), 2),
            _log_rows("2025-03-01T12:00Z", "batch", t0 + timedelta(hours=12), 7),
            _log_rows("2025-03-01T12:00Z", "batch", t0 + timedelta(hours=12, minutes=5), 3),
            _log_rows("2025-03-01T13:00Z", "realtime", t0 + timedelta(hours=13), 4),
        ],
        ignore_index=True,
    )
    current, window = latest_scored_window(log.sample(frac=1.0, random_state=0))
    assert window.window_id == "2025-03-01T12:00Z"
    assert (window.batch_rows, window.realtime_rows) == (10, 4)
    assert len(current) == 14
    assert window.started_at == pd.Timestamp(t0 + timedelta(hours=12))
    assert not current["window_id"].isin(["2025-03-01T00:00Z", "2025-03-01T06:00Z"]).any()


def test_realtime_only_log_uses_its_latest_window() -> None:
    t0 = datetime(2025, 3, 1, tzinfo=UTC)
    log = pd.concat(
        [
            _log_rows("a", "realtime", t0, 3),
            _log_rows("b", "realtime", t0 + timedelta(hours=1), 2),
        ],
        ignore_index=True,
    )
    current, window = latest_scored_window(log)
    assert window.window_id == "b"
    assert len(current) == 2


def test_empty_log_says_nothing_was_scored() -> None:
    empty = _log_rows("a", "batch", datetime(2025, 1, 1, tzinfo=UTC), 0)
    with pytest.raises(LookupError, match="no scoring window has been scored yet"):
        latest_scored_window(empty)


# --- noise versus drift on claims shaped like real ones (issue 12 finding 4) ----------------


def _reference_pooled_psi(
    reference: Sequence[str], current: Sequence[str], *, min_count: int, epsilon: float
) -> float:
    """Pooling written out: a category keeps its bucket when its share in either sample,
    times the smaller sample's size, reaches ``min_count``; the rest share "(other)"."""
    ref, cur = Counter(reference), Counter(current)
    small = min(len(reference), len(current))
    kept = {
        c
        for c in set(ref) | set(cur)
        if max(ref[c] / len(reference), cur[c] / len(current)) * small >= min_count
    }

    def bucket(x: str) -> str:
        return x if x in kept else "other"

    names = [*sorted(kept), "other", "missing"]
    return _reference_psi(
        Counter(bucket(x) for x in reference), Counter(bucket(x) for x in current), names, epsilon
    )


def test_pooled_categorical_psi_equals_the_reference_computation() -> None:
    rng = np.random.default_rng(12)
    codes = [f"D{i:04d}" for i in range(2_000)]
    weights = 1.0 / np.arange(1, 2_001)
    weights /= weights.sum()
    reference = list(rng.choice(codes, 3_000, p=weights))
    current = list(rng.choice(codes, 1_500, p=weights))
    ours = categorical_psi(
        pd.Series(reference), pd.Series(current), epsilon=EPS, min_bucket_count=50
    )
    expected = _reference_pooled_psi(reference, current, min_count=50, epsilon=EPS)
    assert ours.psi == pytest.approx(expected, rel=1e-12)
    assert ours.buckets[-2:] == [OTHER_BUCKET, MISSING_BUCKET]
    assert 3 < len(ours.buckets) < 40


def _with_real_cardinality(claims: pd.DataFrame, seed: int) -> pd.DataFrame:
    """~2,100 diagnosis codes with a long tail and 43 states, as in the public claims files."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, 2_101) ** 0.9
    claims["diagnosis_code"] = rng.choice(
        [f"D{i:04d}" for i in range(2_100)], len(claims), p=weights / weights.sum()
    )
    claims["geographic_region"] = rng.choice([f"S{i:02d}" for i in range(43)], len(claims))
    return claims


def _claim_features(n: int, seed: int) -> pd.DataFrame:
    from fraud_assets.claims.synthetic import generate_claims
    from fraud_assets_tests.pandas_peer import build_claim_features_pandas

    claims = _with_real_cardinality(generate_claims(n, seed=seed), seed)
    features = build_claim_features_pandas(claims, split=SplitPolicy(0.2, seed))
    features["fraud_score"] = np.random.default_rng(seed).beta(1, 12, n)
    return features


def _halves_report(frame: pd.DataFrame, seed: int, *, min_bucket_count: int) -> pd.DataFrame:
    half = np.random.default_rng(seed).permutation(len(frame)) < len(frame) // 2
    return psi_report(
        frame[half],
        frame[~half],
        numeric_features=NUMERIC_FEATURES,
        categorical_features=CATEGORICAL_FEATURES,
        score_column="fraud_score",
        bins=10,
        epsilon=EPS,
        warn=0.1,
        error=0.2,
        min_bucket_count=min_bucket_count,
    )


@pytest.mark.parametrize("n", [2_000, 5_000])
def test_two_random_halves_of_the_same_claims_are_not_drift(n: int) -> None:
    reports = [
        _halves_report(_claim_features(n, seed), seed, min_bucket_count=50) for seed in range(4)
    ]
    psi = pd.concat(reports)["psi"]
    assert psi.max() < 0.2
    assert (psi >= 0.1).mean() <= 0.05
    # Without pooling, ~2,100 diagnosis codes alone read as major drift: the defect.
    unpooled = _halves_report(_claim_features(n, 0), 0, min_bucket_count=0)
    assert unpooled.set_index("feature").at["diagnosis_code", "psi"] >= 0.2


def test_a_real_shift_is_still_major_drift_with_pooling() -> None:
    # A year of history, then a year whose amounts are 30% higher and where a new code takes
    # a fifth of the claims; features are computed over the whole history, as in scoring.
    from datetime import date

    from fraud_assets.claims.synthetic import generate_claims
    from fraud_assets_tests.pandas_peer import build_claim_features_pandas

    before = _with_real_cardinality(generate_claims(4_000, seed=1), 1)
    after = _with_real_cardinality(
        generate_claims(4_000, seed=2, id_prefix="N", start_date=date(2025, 1, 1)), 2
    )
    after["claim_amount"] = (after["claim_amount"] * 1.3).round(2)
    after.loc[np.random.default_rng(3).random(len(after)) < 0.2, "procedure_code"] = "G9999"
    features = build_claim_features_pandas(
        pd.concat([before, after], ignore_index=True), split=SplitPolicy(0.2, 1)
    )
    late = features["claim_id"].str.startswith("N")
    report = psi_report(
        features[~late],
        features[late],
        numeric_features=NUMERIC_FEATURES,
        categorical_features=CATEGORICAL_FEATURES,
        score_column=None,
        bins=10,
        epsilon=EPS,
        warn=0.1,
        error=0.2,
        min_bucket_count=50,
    ).set_index("feature")
    assert report.at["procedure_code", "drift_level"] == "major"
    assert report.at["amount_procedure_zscore", "drift_level"] == "major"
    assert report.at["claim_amount", "drift_level"] != "none"
    assert report.at["diagnosis_code", "drift_level"] == "none"


def test_numeric_bins_shrink_so_each_expects_the_minimum_count() -> None:
    rng = np.random.default_rng(6)
    small = numeric_psi(
        rng.normal(size=5_000), rng.normal(size=200), bins=10, epsilon=EPS, min_bucket_count=50
    )
    assert len(small.buckets) == 4 + 1  # 200 / 50 bins, plus missing
    large = numeric_psi(
        rng.normal(size=5_000), rng.normal(size=5_000), bins=10, epsilon=EPS, min_bucket_count=50
    )
    assert len(large.buckets) == 10 + 1


# --- the serving endpoint's inference table -------------------------------------------------

_T0 = pd.Timestamp("2025-05-01T06:00:00Z")


def _request(body: object, predictions: object, **columns: object) -> dict[str, object]:
    return {
        "databricks_request_id": columns.pop("request_id", "r1"),
        "request_time": columns.pop("at", _T0),
        "status_code": columns.pop("status", 200),
        "request": json.dumps(body),
        "response": json.dumps({"predictions": predictions}),
        "served_entity_id": "e1",
        **columns,
    }


def test_endpoint_rows_read_every_mlflow_request_format():
    claims = [
        {"claim_id": "C1", "claim_amount": 100.0, "procedure_code": "99215"},
        {"claim_id": "C2", "claim_amount": 250.0, "procedure_code": "I10"},
    ]
    split = {"columns": list(claims[0]), "data": [list(c.values()) for c in claims]}
    payload = pd.DataFrame(
        [
            _request({"dataframe_records": claims}, [0.1, 0.9], request_id="records"),
            _request({"dataframe_split": split}, [0.2, 0.8], request_id="split"),
            _request({"instances": claims}, [0.3, 0.7], request_id="instances"),
        ]
    )
    found = endpoint_window_rows(payload, since=_T0)
    assert found.requests == 3 and found.skipped == {}
    rows = found.rows
    assert list(rows["claim_id"]) == ["C1", "C2"] * 3
    assert list(rows["fraud_score"]) == [0.1, 0.9, 0.2, 0.8, 0.3, 0.7]
    assert list(rows["claim_amount"]) == [100.0, 250.0] * 3
    assert set(rows["source"]) == {"endpoint"}
    assert list(rows["request_id"]) == ["records"] * 2 + ["split"] * 2 + ["instances"] * 2
    assert rows["model_version"].isna().all()


def test_endpoint_rows_keep_only_successful_requests_of_the_window_and_name_bad_ones():
    claim = [{"claim_id": "C1", "claim_amount": 100.0}]
    payload = pd.DataFrame(
        [
            _request({"dataframe_records": claim}, [0.5], request_id="ok"),
            _request(
                {"dataframe_records": claim}, [0.5], request_id="early", at=_T0 - pd.Timedelta("1s")
            ),
            _request({"dataframe_records": claim}, [0.5], request_id="failed", status=400),
            _request({"dataframe_records": claim}, [1.5], request_id="not-a-probability"),
            _request({"dataframe_records": claim}, [0.1, 0.2], request_id="miscounted"),
            _request({"inputs": [1, 2]}, [0.5], request_id="tensor"),
            {**_request({}, [0.5], request_id="not-json"), "request": "{broken"},
        ]
    )
    found = endpoint_window_rows(payload, since=_T0)
    assert list(found.rows["request_id"]) == ["ok"]
    assert found.requests == 5
    assert "1.5 is not a probability" in found.skipped["not-a-probability"]
    assert "one score per claim (1 claims)" in found.skipped["miscounted"]
    assert "no claims as dataframe_records" in found.skipped["tensor"]
    assert found.skipped["not-json"].startswith("request is not JSON")


def test_endpoint_rows_read_the_auto_capture_format_with_its_model_version():
    legacy = _request({"dataframe_records": [{"claim_id": "C1"}]}, [0.4])
    del legacy["request_time"]
    legacy |= {
        "timestamp_ms": int(_T0.timestamp() * 1000),
        "request_metadata": [("model_name", "fraud_detector"), ("model_version", "7")],
    }
    found = endpoint_window_rows(pd.DataFrame([legacy]), since=_T0)
    assert list(found.rows["model_version"]) == ["7"]
    with pytest.raises(ValueError, match="neither request_time"):
        endpoint_window_rows(pd.DataFrame([{"request": "{}"}]), since=_T0)
