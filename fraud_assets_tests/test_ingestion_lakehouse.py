"""The lakehouse guarantees ingestion relies on: atomic writes and batch replacement."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pyarrow as pa
import pytest
from deltalake.exceptions import DeltaError

from fraud_assets.lakehouse import LocalDeltaStore


def _batch(batch_id: str, values: list[int]) -> pa.Table:
    return pa.table(
        {"_batch_id": pa.array([batch_id] * len(values)), "value": pa.array(values, pa.int64())}
    )


def test_a_write_that_fails_midway_leaves_the_previous_version_readable(tmp_path: Path) -> None:
    store = LocalDeltaStore(tmp_path)
    first = _batch("a", [1, 2, 3])
    version = store.write_arrow(first, "raw_claims")

    def batches() -> Iterator[pa.RecordBatch]:
        yield from _batch("b", list(range(1000))).to_batches()
        raise OSError("disk full while writing the second file")

    schema = first.schema
    failing = pa.RecordBatchReader.from_batches(schema, batches())
    # delta-rs surfaces the stream's error as a DeltaError that carries its message.
    with pytest.raises(DeltaError, match="disk full"):
        store.write_arrow(cast(pa.Table, failing), "raw_claims", mode="overwrite")

    assert store.version("raw_claims") == version
    assert store.read_arrow("raw_claims").equals(first)
    # The table is still writable after the failure, and the old version stays readable.
    assert store.write_arrow(_batch("c", [9]), "raw_claims") == version + 1
    assert store.read_arrow("raw_claims", version=version).equals(first)


def test_replace_rows_swaps_one_batch_and_keeps_the_others(tmp_path: Path) -> None:
    store = LocalDeltaStore(tmp_path)
    assert not store.exists("raw_claims")
    store.replace_rows(_batch("a", [1, 2]), "raw_claims", column="_batch_id", value="a")
    store.replace_rows(_batch("b", [3]), "raw_claims", column="_batch_id", value="b")
    # Re-running batch b replaces it instead of appending it twice.
    store.replace_rows(_batch("b", [4, 5]), "raw_claims", column="_batch_id", value="b")
    rows = store.read_pandas("raw_claims").sort_values("value")
    assert rows.to_dict("list") == {"_batch_id": ["a", "a", "b", "b"], "value": [1, 2, 4, 5]}


def test_replace_rows_quotes_the_value(tmp_path: Path) -> None:
    store = LocalDeltaStore(tmp_path)
    store.replace_rows(_batch("x", [1]), "raw_claims", column="_batch_id", value="x")
    store.replace_rows(_batch("it's", [2]), "raw_claims", column="_batch_id", value="it's")
    store.replace_rows(_batch("it's", [3]), "raw_claims", column="_batch_id", value="it's")
    rows = store.read_pandas("raw_claims").sort_values("value")
    assert rows["value"].tolist() == [1, 3]


def test_table_schema_reads_no_data(tmp_path: Path) -> None:
    store = LocalDeltaStore(tmp_path)
    with pytest.raises(FileNotFoundError, match="raw_claims"):
        store.table_schema("raw_claims")
    store.write_arrow(_batch("a", [1]), "raw_claims")
    assert store.table_schema("raw_claims").names == ["_batch_id", "value"]
    assert store.table_schema("raw_claims").field("value").type == pa.int64()
