"""The inference-log rows and the buffered writer: flush by size, by time, on close, no loss."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from fraud_assets.features import MODEL_FEATURES
from fraud_assets.lakehouse import INFERENCE_LOG, LocalDeltaStore, WriteMode
from fraud_assets.serving.contract import REQUEST_SCHEMA
from fraud_assets.serving.inference_log import (
    INFERENCE_LOG_SCHEMA,
    REALTIME,
    BufferedInferenceLog,
    InferenceLogBacklogError,
    inference_log_rows,
    window_id,
)
from fraud_assets_tests.serving_support import gold_frame

SCORED_AT = datetime(2025, 3, 1, 14, 37, 12, 345678, tzinfo=UTC)


class FlakyStore(LocalDeltaStore):
    """A real delta-rs store whose first ``failures`` appends raise, as a full disk would."""

    def __init__(self, home: Path, failures: int) -> None:
        super().__init__(home)
        self.failures = failures
        self.attempts = 0

    def write_arrow(self, data: pa.Table, name: str, mode: WriteMode = "overwrite") -> int:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise OSError("No space left on device")
        return super().write_arrow(data, name, mode)


def claims(start: int, n: int) -> pa.Table:
    frame = gold_frame(seed=3, n_rows=start + n).iloc[start:]
    return pa.Table.from_pandas(
        frame[REQUEST_SCHEMA.names], schema=REQUEST_SCHEMA, preserve_index=False
    )


def ids(start: int, n: int) -> list[str]:
    return sorted(claims(start, n).column("claim_id").to_pylist())


def rows(start: int, n: int, *, request_id: str = "r") -> pa.Table:
    return inference_log_rows(
        claims(start, n),
        fraud_score=np.linspace(0.0, 1.0, n),
        threshold=0.5,
        model_version=["3"] * n,
        model_alias=["champion"] * n,
        source=REALTIME,
        scored_at=SCORED_AT,
        window_minutes=60,
        request_id=request_id,
    )


def logged(store: LocalDeltaStore) -> pa.Table:
    return store.read_arrow(INFERENCE_LOG) if store.exists(INFERENCE_LOG) else rows(0, 0)


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def writer(store: LocalDeltaStore, **kw: float) -> BufferedInferenceLog:
    options = {"flush_rows": 5, "flush_seconds": 60.0, "max_buffer_rows": 1000} | kw
    return BufferedInferenceLog(
        store,
        flush_rows=int(options["flush_rows"]),
        flush_seconds=options["flush_seconds"],
        max_buffer_rows=int(options["max_buffer_rows"]),
    )


@pytest.mark.parametrize(
    ("minutes", "expected"),
    [(60, "2025-03-01T14:00Z"), (15, "2025-03-01T14:30Z"), (1440, "2025-03-01T00:00Z")],
)
def test_window_id_is_the_start_of_the_utc_window(minutes: int, expected: str) -> None:
    assert window_id(SCORED_AT, minutes=minutes) == expected


def test_window_id_converts_to_utc_and_refuses_naive_times() -> None:
    pacific = SCORED_AT.astimezone(timezone(timedelta(hours=-8)))
    assert window_id(pacific, minutes=60) == "2025-03-01T14:00Z"
    with pytest.raises(ValueError, match="timezone"):
        window_id(SCORED_AT.replace(tzinfo=None), minutes=60)


def test_rows_carry_features_score_version_and_source() -> None:
    table = rows(0, 4, request_id="req-1")
    assert table.schema == INFERENCE_LOG_SCHEMA
    source = claims(0, 4)
    for name in ["claim_id", *MODEL_FEATURES]:
        assert table.column(name).to_pylist() == source.column(name).to_pylist()
    assert table.column("fraud_score").to_pylist() == pytest.approx([0, 1 / 3, 2 / 3, 1])
    # The answer the caller got: flagged at or above the threshold in force (0.5 here).
    assert table.column("decision").to_pylist() == [0, 0, 1, 1]
    assert set(table.column("operating_threshold").to_pylist()) == {0.5}
    assert set(table.column("source").to_pylist()) == {"realtime"}
    assert set(table.column("window_id").to_pylist()) == {"2025-03-01T14:00Z"}
    assert set(table.column("scored_at").to_pylist()) == {SCORED_AT}
    assert set(table.column("request_id").to_pylist()) == {"req-1"}


def test_rows_need_one_score_per_claim() -> None:
    with pytest.raises(ValueError, match="3 claims, 2 scores"):
        inference_log_rows(
            claims(0, 3),
            fraud_score=np.zeros(2),
            threshold=0.5,
            model_version=["1"] * 3,
            model_alias=["champion"] * 3,
            source=REALTIME,
            scored_at=SCORED_AT,
            window_minutes=60,
        )


def test_flushes_when_enough_rows_wait_and_on_close(tmp_path: Path) -> None:
    store = LocalDeltaStore(tmp_path)
    log = writer(store, flush_rows=5)
    log.start()
    log.append(rows(0, 3))
    time.sleep(0.3)
    assert not store.exists(INFERENCE_LOG), "3 rows are below the flush size"
    log.append(rows(3, 2))
    assert wait_for(lambda: logged(store).num_rows == 5)
    log.append(rows(5, 2))
    log.close()
    first_commit = store.read_arrow(INFERENCE_LOG, version=0)
    assert sorted(first_commit.column("claim_id").to_pylist()) == ids(0, 5)
    assert sorted(logged(store).column("claim_id").to_pylist()) == ids(0, 7)
    assert log.stats().written_rows == 7 and log.stats().buffered_rows == 0


def test_flushes_after_the_interval_even_when_few_rows_wait(tmp_path: Path) -> None:
    store = LocalDeltaStore(tmp_path)
    log = writer(store, flush_rows=1000, flush_seconds=0.2)
    log.start()
    log.append(rows(0, 2))
    assert wait_for(lambda: logged(store).num_rows == 2, timeout=5.0)
    log.close()


def test_a_failed_write_keeps_its_rows_and_the_next_one_writes_them_once(tmp_path: Path) -> None:
    store = FlakyStore(tmp_path, failures=2)
    log = writer(store, flush_rows=2, flush_seconds=0.2)
    log.start()
    log.append(rows(0, 2))
    log.append(rows(2, 2))
    assert wait_for(lambda: logged(store).num_rows == 4)
    log.close()
    stats = log.stats()
    assert stats.failed_writes == 2 and "No space left" in (stats.last_error or "")
    assert sorted(logged(store).column("claim_id").to_pylist()) == ids(0, 4)  # once each


def test_a_full_backlog_refuses_rows_and_close_reports_unwritten_rows(tmp_path: Path) -> None:
    store = FlakyStore(tmp_path, failures=10**6)
    log = writer(store, flush_rows=1000, max_buffer_rows=5)
    log.append(rows(0, 5))
    with pytest.raises(InferenceLogBacklogError, match=r"5 inference-log rows .*limit 5"):
        log.append(rows(5, 1))
    with pytest.raises(OSError, match="No space left"):
        log.close()
    assert log.stats().buffered_rows == 5


def test_concurrent_appends_lose_nothing(tmp_path: Path) -> None:
    store = LocalDeltaStore(tmp_path)
    log = writer(store, flush_rows=7, flush_seconds=0.05)
    log.start()

    def client(offset: int) -> None:
        for i in range(25):
            log.append(rows(offset + i, 1))

    threads = [threading.Thread(target=client, args=(25 * t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log.close()
    assert sorted(logged(store).column("claim_id").to_pylist()) == ids(0, 200)
