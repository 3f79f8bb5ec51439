"""Silver and quarantine of a batch become visible together or not at all (issue 14, #8).

Two Delta tables cannot share one commit, so validate publishes a batch by a third: after
both writes it records the pair of versions in the ``claims_batches`` ledger, and readers
(features, scoring) read silver at the version the ledger last published. A process killed
between the commits leaves the batch visible in neither, and the next validate finishes it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fraud_assets.checks import CHECK_RECONCILES
from fraud_assets.claims.synthetic import generate_claims
from fraud_assets.lakehouse import LocalDeltaStore, read_published
from fraud_assets.tasks.ingest import ingest
from fraud_assets.tasks.validate import validate
from fraud_assets_tests.task_support import task_context

BAD = Path(__file__).parent / "data" / "bad_inputs"


class _Killed(Exception):
    """Stands in for the process dying between two commits."""


def _batches(store: LocalDeltaStore, spark: Any, table: str) -> dict[str, int]:
    frame = read_published(store, spark, table).toPandas()
    return frame.groupby("_batch_id").size().to_dict()


@pytest.mark.parametrize("killed_at", ["claims_quarantine", "claims_batches"])
def test_a_batch_cut_short_is_visible_in_neither_table_until_it_is_finished(
    fraud_home: Path,
    spark: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    killed_at: str,
) -> None:
    monkeypatch.setenv("FRAUD_SYNTHETIC_ROWS", "300")
    store = LocalDeltaStore(fraud_home)
    ingest(task_context("r1"))
    validate(task_context("r1"))
    # Duplicate ids: the batch has rows for both tables.
    ingest(task_context("r2", source_path=str(BAD / "duplicate_ids.csv")))

    real_rows, real_write = LocalDeltaStore.replace_rows_spark, LocalDeltaStore.replace_rows

    def killed_spark(self: LocalDeltaStore, df: Any, name: str, **where: str) -> int:
        if name == killed_at:
            raise _Killed
        return real_rows(self, df, name, **where)

    def killed_arrow(self: LocalDeltaStore, data: Any, name: str, **where: str) -> int:
        if name == killed_at:
            raise _Killed
        return real_write(self, data, name, **where)

    monkeypatch.setattr(LocalDeltaStore, "replace_rows_spark", killed_spark)
    monkeypatch.setattr(LocalDeltaStore, "replace_rows", killed_arrow)
    with pytest.raises(_Killed):
        validate(task_context("r2"))
    monkeypatch.undo()
    monkeypatch.setenv("FRAUD_HOME", str(fraud_home))

    # The silver commit landed, but nothing reads it: r2 is in neither published table.
    assert "r2" in set(store.read_pandas("claims")["_batch_id"])
    assert set(_batches(store, spark, "claims")) == {"r1"}
    assert "r2" not in _batches(store, spark, "claims_quarantine")

    result = validate(task_context("r3"))
    checks = {c.check_name: c for c in result.checks}
    assert checks[CHECK_RECONCILES].passed
    silver, quarantine = (
        _batches(store, spark, "claims"),
        _batches(store, spark, "claims_quarantine"),
    )
    bronze = store.read_pandas("raw_claims").groupby("_batch_id").size().to_dict()
    assert silver.get("r2", 0) > 0 and quarantine.get("r2", 0) > 0
    assert silver["r2"] + quarantine["r2"] == bronze["r2"]


def test_without_a_ledger_readers_see_the_latest_version(fraud_home: Path, spark: Any) -> None:
    # A silver written before the ledger existed (or by hand) is read as it is.
    store = LocalDeltaStore(fraud_home)
    store.write_pandas(generate_claims(5, seed=1).assign(_batch_id="manual"), "claims")
    assert len(read_published(store, spark, "claims").toPandas()) == 5
