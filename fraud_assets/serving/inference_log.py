"""The ``inference_log`` table and a buffered writer for the real-time service.

Each scored claim becomes one row: its features exactly as the model saw them, the score,
the model version and where the score came from (``source``). Drift monitoring reads the
latest ``window_id`` of this table, so real-time traffic is monitored like batch scores.

A Delta commit per request would cost more than the prediction itself, so the service
buffers rows and appends them from one background thread when ``log_flush_rows`` are
waiting or ``log_flush_seconds`` have passed, and once more on shutdown. A failed write
keeps its rows and is retried; past ``log_max_buffer_rows`` unwritten rows the service
refuses new requests rather than score claims it cannot account for.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa

from fraud_assets.claims.schema import extra_columns
from fraud_assets.features import CLAIM_FEATURES_SCHEMA, ID_COLUMN, MODEL_FEATURES
from fraud_assets.lakehouse import INFERENCE_LOG, TableStore
from fraud_assets.ml.metrics import flag
from fraud_assets.ml.reasons import REASONS_COLUMN, REASONS_TYPE

log = logging.getLogger(__name__)

BATCH = "batch"
REALTIME = "realtime"
# A challenger's score in shadow mode: logged for comparison, never returned to a caller.
SHADOW = "shadow"

# Every field is nullable so batch and real-time writers can append to the same table in
# either order without a nullability conflict; the writers never leave one empty.
INFERENCE_LOG_SCHEMA = pa.schema(
    [
        pa.field(ID_COLUMN, pa.string()),
        *(pa.field(name, CLAIM_FEATURES_SCHEMA.field(name).type) for name in MODEL_FEATURES),
        pa.field("fraud_score", pa.float64()),
        # The answer as the caller got it: the decision and the threshold it was taken at.
        pa.field("decision", pa.int64()),
        pa.field("operating_threshold", pa.float64()),
        pa.field("model_version", pa.string()),
        pa.field("source", pa.string()),
        pa.field("window_id", pa.string()),
        pa.field("scored_at", pa.timestamp("us", tz="UTC")),
        pa.field("model_alias", pa.string()),
        pa.field("request_id", pa.string()),
        # The reason codes the caller (or fraud_scores) got with the score.
        pa.field(REASONS_COLUMN, REASONS_TYPE),
    ]
)


class InferenceLogBacklogError(RuntimeError):
    """Too many rows are waiting to be written: the table is unreachable or too slow."""


def window_id(scored_at: datetime, *, minutes: int) -> str:
    """The start of the fixed UTC window holding ``scored_at``, e.g. ``2025-03-01T14:00Z``.

    ISO text sorts in time order, so "the latest window" is the largest ``window_id``.
    """
    if scored_at.tzinfo is None:
        raise ValueError("scored_at must be timezone-aware")
    utc = scored_at.astimezone(UTC)
    minute_of_day = utc.hour * 60 + utc.minute
    start = minute_of_day - minute_of_day % minutes
    floor = utc.replace(hour=start // 60, minute=start % 60, second=0, microsecond=0)
    return floor.strftime("%Y-%m-%dT%H:%MZ")


def inference_log_rows(
    features: pa.Table,
    *,
    fraud_score: np.ndarray,
    threshold: float | np.ndarray,
    model_version: Sequence[str],
    model_alias: Sequence[str],
    source: str,
    scored_at: datetime,
    window_minutes: int,
    request_id: str | Sequence[str] | None = None,
    reasons: pa.Array | None = None,
) -> pa.Table:
    """Rows for ``inference_log`` from the scored claims (``claim_id`` + model features).

    ``request_id`` is one id for every row, or one per row when several requests were
    scored together; ``threshold`` likewise (one per row when aliases answered together).
    """
    n = features.num_rows
    if not isinstance(request_id, str | None) and len(request_id) != n:
        raise ValueError(f"inference log rows need one request id per claim ({n} claims)")
    if not len(fraud_score) == len(model_version) == len(model_alias) == n:
        raise ValueError(
            f"inference log rows need one score, version and alias per claim ({n} claims, "
            f"{len(fraud_score)} scores, {len(model_version)} versions, {len(model_alias)} aliases)"
        )
    thresholds = np.broadcast_to(np.asarray(threshold, dtype="float64"), (n,))
    columns = {name: features.column(name) for name in (ID_COLUMN, *MODEL_FEATURES)}
    window = window_id(scored_at, minutes=window_minutes)
    columns |= {
        "fraud_score": pa.array(fraud_score, pa.float64()),
        "decision": pa.array(flag(fraud_score, threshold=thresholds), pa.int64()),
        "operating_threshold": pa.array(thresholds, pa.float64()),
        "model_version": pa.array(model_version, pa.string()),
        "source": pa.array([source] * n, pa.string()),
        "window_id": pa.array([window] * n, pa.string()),
        "scored_at": pa.array([scored_at] * n, pa.timestamp("us", tz="UTC")),
        "model_alias": pa.array(model_alias, pa.string()),
        "request_id": pa.array(
            [request_id] * n if request_id is None or isinstance(request_id, str) else request_id,
            pa.string(),
        ),
        REASONS_COLUMN: pa.nulls(n, REASONS_TYPE) if reasons is None else reasons,
    }
    logged = pa.Table.from_pydict(columns).cast(INFERENCE_LOG_SCHEMA)
    # A mapping's extra inputs follow, as batch scoring logs them, so PSI watches them too.
    for name in extra_columns(features.column_names, "numeric", "categorical"):
        logged = logged.append_column(name, features.column(name))
    return logged


@dataclass(frozen=True)
class LogStats:
    """Counters of the buffered writer, for ``/models`` and the logs."""

    table: str
    buffered_rows: int
    written_rows: int
    failed_writes: int
    last_error: str | None


class BufferedInferenceLog:
    """Appends rows to ``inference_log`` in batches from one background thread."""

    def __init__(
        self,
        store: TableStore,
        *,
        flush_rows: int,
        flush_seconds: float,
        max_buffer_rows: int,
        table: str = INFERENCE_LOG,
    ) -> None:
        self._store = store
        self._table = table
        self._flush_rows = flush_rows
        self._flush_seconds = flush_seconds
        self._max_buffer_rows = max_buffer_rows
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._writing_rows = 0
        self._written_rows = 0
        self._failed_writes = 0
        self._last_error: str | None = None
        self._buffer_lock = threading.Lock()
        # Serialises writes so rows reach the table in the order they were buffered.
        self._write_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the background writer."""
        if self._thread is not None:
            raise RuntimeError("the inference log writer is already running")
        self._thread = threading.Thread(target=self._run, name="inference-log-writer", daemon=True)
        self._thread.start()

    def append(self, rows: pa.Table) -> None:
        """Buffer rows; raises ``InferenceLogBacklogError`` when the backlog is full."""
        if rows.num_rows == 0:
            return
        with self._buffer_lock:
            if self._pending_rows + rows.num_rows > self._max_buffer_rows:
                raise InferenceLogBacklogError(
                    f"{self._pending_rows} inference-log rows are still unwritten to "
                    f"{self._store.location(self._table)} (limit {self._max_buffer_rows}); "
                    f"last write error: {self._last_error or 'none'}"
                )
            self._pending.append(rows)
            self._pending_rows += rows.num_rows
            full = self._pending_rows >= self._flush_rows
        if full:
            self._wake.set()

    def flush(self) -> int:
        """Write every buffered row now; on failure the rows stay buffered and it raises."""
        with self._write_lock:
            with self._buffer_lock:
                batches, self._pending = self._pending, []
                count, self._pending_rows = self._pending_rows, 0
                self._writing_rows = count
            if not batches:
                return 0
            try:
                version = self._store.write_arrow(
                    # Tables logged before and after a promotion may differ in extras.
                    pa.concat_tables(batches, promote_options="default"),
                    self._table,
                    mode="append",
                )
            except Exception as exc:
                with self._buffer_lock:
                    self._pending = batches + self._pending
                    self._pending_rows += count
                    self._writing_rows = 0
                    self._failed_writes += 1
                    self._last_error = f"{type(exc).__name__}: {exc}"
                raise
            with self._buffer_lock:
                self._written_rows += count
                self._writing_rows = 0
            log.debug("appended %d rows to %s (version %d)", count, self._table, version)
            return count

    def close(self) -> None:
        """Stop the writer and write what is left; raises if those rows cannot be written."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        written = self.flush()
        log.info(
            "inference log closed: %d rows written in total (%d at shutdown)",
            self.stats().written_rows,
            written,
        )

    def stats(self) -> LogStats:
        with self._buffer_lock:
            return LogStats(
                table=self._store.location(self._table),
                # Rows being written count as buffered until the write commits.
                buffered_rows=self._pending_rows + self._writing_rows,
                written_rows=self._written_rows,
                failed_writes=self._failed_writes,
                last_error=self._last_error,
            )

    def _run(self) -> None:
        next_flush = time.monotonic() + self._flush_seconds
        # After a failed write, a full buffer waits for the next interval instead of
        # hammering a table that is down on every request.
        retry_not_before = 0.0
        while not self._stopping.is_set():
            self._wake.wait(timeout=max(0.0, next_flush - time.monotonic()))
            self._wake.clear()
            if self._stopping.is_set():
                return  # close() does the final flush on the caller's thread
            now = time.monotonic()
            with self._buffer_lock:
                full = self._pending_rows >= self._flush_rows
            if not (now >= next_flush or (full and now >= retry_not_before)):
                continue
            next_flush = now + self._flush_seconds
            try:
                self.flush()
            except Exception:
                retry_not_before = next_flush
                # The rows are back in the buffer; the next interval retries them.
                log.exception(
                    "could not append to %s; %d rows kept for retry",
                    self._table,
                    self.stats().buffered_rows,
                )
