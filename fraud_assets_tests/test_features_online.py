"""The online view gives a raw claim exactly its gold features, point-in-time."""

from __future__ import annotations

import hashlib
import threading
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from fraud_assets.claims.schema import CLAIM_SCHEMA, extra_column
from fraud_assets.claims.synthetic import REALISTIC_SHAPE, generate_claims
from fraud_assets.features import (
    FIRST_CLAIM_GAP_DAYS,
    LOOKBACK_DAYS,
    MISSING_CATEGORY,
    MODEL_FEATURES,
    SplitPolicy,
    claim_features_schema,
)
from fraud_assets.features.engineering import build_claim_features
from fraud_assets.features.online import LATE_CLAIM_DAYS, ClaimsHistoryView

# Longer than a year plus the late-claim margin, so the 365-day windows slide and the
# view prunes.
SPAN_DAYS = 520
NUMERIC_EXTRA = extra_column("deductible", "numeric")
CATEGORICAL_EXTRA = extra_column("channel", "categorical")
PROTECTED_EXTRA = extra_column("ethnicity", "protected")


@pytest.fixture(scope="module")
def silver_claims() -> pa.Table:
    """Realistic claims (minors, re-bills, stays without procedures, unlabelled ones) with a
    few null categories and one extra of each kind, in claim-date order."""
    frame = generate_claims(3_000, seed=23, period_days=SPAN_DAYS, shape=REALISTIC_SHAPE)
    rng = np.random.default_rng(5)
    for column in ("procedure_code", "diagnosis_code", "provider_specialty"):
        frame.loc[rng.random(len(frame)) < 0.02, column] = None
    deductible = rng.choice([0.0, 250.0, 500.0], len(frame))
    channel = rng.choice(np.array(["web", "paper", "edi"], dtype=object), len(frame))
    frame[NUMERIC_EXTRA] = np.where(rng.random(len(frame)) < 0.1, np.nan, deductible)
    frame[CATEGORICAL_EXTRA] = np.where(rng.random(len(frame)) < 0.1, None, channel)
    frame[PROTECTED_EXTRA] = rng.choice(np.array(["a", "b"], dtype=object), len(frame))
    schema = pa.schema(
        [
            *(field.with_nullable(True) for field in CLAIM_SCHEMA),
            pa.field(NUMERIC_EXTRA, pa.float64()),
            pa.field(CATEGORICAL_EXTRA, pa.string()),
            pa.field(PROTECTED_EXTRA, pa.string()),
        ]
    )
    return pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False)


@pytest.fixture(scope="module")
def gold(spark: Any, silver_claims: pa.Table) -> pa.Table:
    """``build_claim_features`` of every claim, on local Spark."""
    claims = spark.createDataFrame(silver_claims)
    return build_claim_features(claims, split=SplitPolicy(0.2, 7, "random")).toArrow()


def assert_equal_to_gold(online: pa.Table, gold: pa.Table) -> None:
    """Every column of ``online`` equals gold's for the same claims: same type, floats to
    1e-9, everything else exactly."""
    expected = _rows_of(gold, online.column("claim_id").to_pylist()).to_pandas()
    got = online.to_pandas()
    assert online.column_names == ["claim_id", *MODEL_FEATURES, *_EXTRAS]
    for field in online.schema:
        assert field.type == gold.schema.field(field.name).type, field.name
        if pa.types.is_floating(field.type):
            np.testing.assert_allclose(
                got[field.name], expected[field.name], rtol=1e-9, atol=1e-9, err_msg=field.name
            )
        else:
            mismatched = got[field.name].compare(expected[field.name])
            assert mismatched.empty, (field.name, mismatched.head())


_EXTRAS = [NUMERIC_EXTRA, CATEGORICAL_EXTRA, PROTECTED_EXTRA]


def _rows_of(table: pa.Table, claim_ids: list[str]) -> pa.Table:
    position = {claim_id: i for i, claim_id in enumerate(table.column("claim_id").to_pylist())}
    return table.take([position[claim_id] for claim_id in claim_ids])


def test_replaying_batches_gives_every_claim_its_gold_features(
    tmp_path: Path, silver_claims: pa.Table, gold: pa.Table
) -> None:
    # Month by month, as validated batches arrive: each batch is in the view when its claims
    # are asked for, so a claim's same-day and later claims are there and must be ignored.
    view = ClaimsHistoryView(tmp_path / "online.sqlite")
    days = pc.cast(silver_claims.column("claim_date"), pa.int32()).to_numpy()
    month = (days - days.min()) // 30
    answered = []
    for batch_month in np.unique(month):
        batch = silver_claims.filter(pa.array(month == batch_month))
        view.update(batch)
        answered.append(view.features(batch))
    online = pa.concat_tables(answered)

    assert online.num_rows == silver_claims.num_rows
    assert online.schema == pa.schema(
        claim_features_schema(silver_claims.column_names).field(name)
        for name in online.column_names
    )
    assert_equal_to_gold(online, gold)
    # The comparison covers what the windows do, not columns of constants.
    features = online.to_pandas()
    assert (features["provider_claim_count"] == 1).sum() > 20
    assert (features["duplicate_claim_count"] > 0).sum() > 20
    assert (features["days_since_prev_patient_claim"] > 0).sum() > 100
    assert (features["procedure_code"] == MISSING_CATEGORY).sum() > 20
    assert (features["amount_procedure_zscore"] != 0).mean() > 0.9
    # The oldest claims were pruned, and no claim missed them.
    assert view.row_count() < silver_claims.num_rows


def test_a_view_of_all_claims_ignores_each_claims_later_ones(
    tmp_path: Path, silver_claims: pa.Table, gold: pa.Table
) -> None:
    # As many days as the view keeps, so nothing is pruned: every claim is asked for with
    # all its later and same-day claims in the view. A claim's gold features read only
    # earlier claims, so gold over the whole span holds for these too.
    first_day = min(silver_claims.column("claim_date").to_pylist())
    kept = timedelta(days=LOOKBACK_DAYS + LATE_CLAIM_DAYS)
    claims = silver_claims.filter(pc.less(silver_claims.column("claim_date"), first_day + kept))
    view = ClaimsHistoryView(tmp_path / "online.sqlite")

    assert view.update(claims) == claims.num_rows > 1_000
    assert_equal_to_gold(view.features(claims), gold)


def claim(claim_id: str, **overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "claim_id": claim_id,
        "patient_id": "P-1",
        "provider_id": "D-1",
        "claim_date": date(2024, 6, 10),
        "service_date": date(2024, 6, 1),
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
        "is_fraud": None,
    }
    return row | overrides


def table(*rows: dict[str, Any]) -> pa.Table:
    return pa.Table.from_pylist(list(rows), schema=CLAIM_SCHEMA)


def first_claim_values(amount: float) -> dict[str, Any]:
    """What a claim with no history has in gold."""
    return {
        "provider_claim_count": 1,
        "provider_unique_patients": 1,
        "provider_avg_amount": amount,
        "provider_amount_peer_zscore": 0.0,
        "patient_claim_count": 1,
        "patient_provider_count": 1,
        "days_since_prev_patient_claim": FIRST_CLAIM_GAP_DAYS,
        "amount_vs_procedure_mean": 1.0,
        "amount_procedure_zscore": 0.0,
        "duplicate_claim_count": 0,
        "is_duplicate_claim": 0,
    }


def history_features(row: dict[str, Any]) -> dict[str, Any]:
    return {name: row[name] for name in first_claim_values(0.0)}


@pytest.fixture
def populated(tmp_path: Path) -> ClaimsHistoryView:
    """A view of one provider's claims for two patients over the spring of 2024."""
    view = ClaimsHistoryView(tmp_path / "online.sqlite")
    view.update(
        table(
            *(
                claim(
                    f"H{day}",
                    patient_id=f"P-{day % 2}",
                    claim_date=date(2024, 3, 1) + timedelta(days=day),
                    service_date=date(2024, 3, 1) + timedelta(days=day - 3),
                    claim_amount=50.0 + day,
                )
                for day in range(0, 90, 3)
            )
        )
    )
    return view


def test_a_claim_of_unknown_keys_gets_the_first_claim_values(
    populated: ClaimsHistoryView, tmp_path: Path
) -> None:
    stranger = claim(
        "NEW",
        patient_id="P-new",
        provider_id="D-new",
        procedure_code="00000",
        provider_specialty="new_specialty",
        claim_amount=321.0,
    )
    row = populated.features(table(stranger)).to_pylist()[0]
    assert history_features(row) == first_claim_values(321.0)
    # No view at all is no history, and asking does not create one.
    absent = ClaimsHistoryView(tmp_path / "nowhere" / "online.sqlite")
    assert absent.features(table(stranger)).to_pylist() == [row]
    assert absent.row_count() == 0
    assert not (tmp_path / "nowhere").exists()


def test_a_claim_dated_before_any_history_gets_the_first_claim_values(
    populated: ClaimsHistoryView,
) -> None:
    early = claim("EARLY", patient_id="P-0", claim_date=date(2024, 2, 1), claim_amount=75.0)
    row = populated.features(table(early)).to_pylist()[0]
    assert history_features(row) == first_claim_values(75.0)
    # The same claim filed later sees the provider's last month.
    late = populated.features(table(early | {"claim_date": date(2024, 4, 1)})).to_pylist()[0]
    assert late["provider_claim_count"] == 11  # days 3, 6, ..., 30, and itself


def test_same_day_claims_do_not_see_each_other(tmp_path: Path) -> None:
    view = ClaimsHistoryView(tmp_path / "online.sqlite")
    bill = claim("A")
    rebill = claim("B", claim_amount=300.0)
    view.update(table(bill, rebill))

    rows = view.features(table(bill, rebill)).to_pylist()
    assert [history_features(row) for row in rows] == [
        first_claim_values(100.0),
        first_claim_values(300.0),
    ]
    next_day = claim("C", claim_date=bill["claim_date"] + timedelta(days=1))
    seen = view.features(table(next_day)).to_pylist()[0]
    assert seen["provider_claim_count"] == 3
    assert seen["duplicate_claim_count"] == 2
    assert seen["provider_avg_amount"] == pytest.approx(500.0 / 3)


def test_updating_with_the_same_batch_again_counts_nothing_twice(
    populated: ClaimsHistoryView,
) -> None:
    request = table(claim("Q", claim_date=date(2024, 5, 20)))
    batch = table(*(claim(f"B{i}", claim_date=date(2024, 5, 10 + i)) for i in range(5)))
    rows = populated.update(batch)
    once = populated.features(request)

    assert populated.update(batch) == rows == populated.row_count()
    assert populated.features(request) == once
    # A re-landed claim with a corrected amount replaces the old one.
    corrected = batch.set_column(
        batch.schema.get_field_index("claim_amount"),
        "claim_amount",
        pa.array([1000.0] * 5),
    )
    assert populated.update(corrected) == rows
    average = populated.features(request)["provider_avg_amount"][0].as_py()
    assert average > once["provider_avg_amount"][0].as_py()


def test_history_older_than_the_windows_and_margin_is_pruned(tmp_path: Path) -> None:
    view = ClaimsHistoryView(tmp_path / "online.sqlite")
    start = date(2023, 1, 1)
    kept = LOOKBACK_DAYS + LATE_CLAIM_DAYS
    view.update(table(claim("OLD", claim_date=start, service_date=start)))
    newest = claim("NEWEST", claim_date=start + timedelta(days=kept), service_date=start)
    assert view.update(table(newest)) == 2  # the oldest is exactly as old as kept
    newer = newest | {"claim_id": "NEWER", "claim_date": start + timedelta(days=kept + 1)}
    assert view.update(table(newer)) == 2
    # A claim dated in the future (silver takes dates up to 2099) prunes nothing.
    assert view.update(table(newer | {"claim_id": "TYPO", "claim_date": date(2099, 1, 1)})) == 3
    # A full refresh replaces the whole history.
    assert view.update(table(claim("ONLY")), full_refresh=True) == 1


def test_readers_see_whole_updates_while_a_writer_updates(
    populated: ClaimsHistoryView,
) -> None:
    # Each update adds two claims of a new provider; a reader that saw half of one would
    # count an even number of claims. Two identical requests in one call share a snapshot.
    request = table(
        claim("R1", provider_id="D-busy", claim_date=date(2024, 7, 1)),
        claim("R2", provider_id="D-busy", claim_date=date(2024, 7, 1)),
    )
    seen: list[tuple[int, int]] = []
    failures: list[Exception] = []
    writing = threading.Event()
    writing.set()

    def read() -> None:
        reader = ClaimsHistoryView(populated.path)
        try:
            while writing.is_set():
                counts = reader.features(request).column("provider_claim_count").to_pylist()
                seen.append((counts[0], counts[1]))
        except Exception as error:  # reported by the test's own thread below
            failures.append(error)

    readers = [threading.Thread(target=read) for _ in range(2)]
    for thread in readers:
        thread.start()
    for i in range(20):
        day = date(2024, 6, 10) + timedelta(days=i)
        populated.update(
            table(
                claim(f"W{i}a", provider_id="D-busy", claim_date=day),
                claim(f"W{i}b", provider_id="D-busy", claim_date=day, patient_id="P-2"),
            )
        )
    writing.clear()
    for thread in readers:
        thread.join()

    assert not failures, failures
    assert len(seen) > 2
    assert all(first == second and first % 2 == 1 for first, second in seen)
    assert populated.features(request).column("provider_claim_count")[0].as_py() == 41


def test_features_never_write(populated: ClaimsHistoryView) -> None:
    request = table(claim("Q", claim_date=date(2024, 5, 20)), claim("NEW", provider_id="D-new"))
    before = _fingerprint(populated.path)
    for _ in range(3):
        populated.features(request)
    populated.row_count()
    assert _fingerprint(populated.path) == before


def _fingerprint(path: Path) -> dict[str, str]:
    """The content of the store and its write-ahead log. Opening a WAL store may create an
    empty log and a shared-memory index, neither of which holds data."""
    return {
        candidate.name: hashlib.sha256(candidate.read_bytes()).hexdigest()
        for candidate in (path, path.with_name(f"{path.name}-wal"))
        if candidate.exists() and candidate.stat().st_size
    }


def test_a_request_missing_a_column_names_it(populated: ClaimsHistoryView) -> None:
    with pytest.raises(ValueError, match="provider_specialty"):
        populated.features(table(claim("Q")).drop(["provider_specialty"]))


def test_features_come_back_in_the_order_asked(populated: ClaimsHistoryView) -> None:
    ids = [f"Q{i}" for i in range(5, 0, -1)]
    request = table(*(claim(claim_id, claim_amount=10.0 * len(claim_id)) for claim_id in ids))
    assert populated.features(request).column("claim_id").to_pylist() == ids
