"""On a Databricks runtime the same task code uses Unity Catalog tables and the UC registry.

delta-spark cannot run offline, so the Delta statements are checked against a recording
double of the SparkSession; the quoted three-level names are checked against local Spark.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from fraud_assets.lakehouse import LocalDeltaStore, UnityCatalogStore, table_store
from fraud_assets.settings import get_settings


@dataclass
class Recorder:
    """What the store asked Spark to do, in order."""

    calls: list[tuple[Any, ...]] = field(default_factory=list)
    tables: dict[str, int] = field(default_factory=dict)


class FakeFrame:
    def __init__(self, recorder: Recorder, data: pa.Table | None = None) -> None:
        self.recorder, self.data = recorder, data

    @property
    def write(self) -> FakeWriter:
        return FakeWriter(self.recorder)

    def toArrow(self) -> pa.Table:
        return self.data if self.data is not None else pa.table({"claim_id": ["c1"]})

    def limit(self, n: int) -> FakeFrame:
        return FakeFrame(self.recorder, self.toArrow().slice(0, n))

    def first(self) -> dict[str, int]:
        return {"version": self.recorder.tables[self.recorder.calls[-1][1].split()[2]]}


class FakeWriter:
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.settings: dict[str, str] = {}

    def format(self, fmt: str) -> FakeWriter:
        self.settings["format"] = fmt
        return self

    def mode(self, mode: str) -> FakeWriter:
        self.settings["mode"] = mode
        return self

    def option(self, key: str, value: str) -> FakeWriter:
        self.settings[key] = value
        return self

    def saveAsTable(self, name: str) -> None:
        self.recorder.calls.append(("saveAsTable", name, dict(self.settings)))
        self.recorder.tables[name] = self.recorder.tables.get(name, -1) + 1


class FakeReader:
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.options: dict[str, Any] = {}

    def option(self, key: str, value: Any) -> FakeReader:
        self.options[key] = value
        return self

    def table(self, name: str) -> FakeFrame:
        self.recorder.calls.append(("read.table", name, dict(self.options)))
        return FakeFrame(self.recorder)


class FakeCatalog:
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    def tableExists(self, name: str) -> bool:
        return name in self.recorder.tables


class FakeSpark:
    def __init__(self) -> None:
        self.recorder = Recorder()
        self.catalog = FakeCatalog(self.recorder)

    @property
    def read(self) -> FakeReader:
        return FakeReader(self.recorder)

    def sql(self, query: str) -> FakeFrame:
        self.recorder.calls.append(("sql", query))
        return FakeFrame(self.recorder)

    def createDataFrame(self, data: pa.Table) -> FakeFrame:
        return FakeFrame(self.recorder, data)


@pytest.fixture
def on_databricks(fraud_home: Path, monkeypatch: pytest.MonkeyPatch) -> FakeSpark:
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "17.3")
    spark = FakeSpark()
    monkeypatch.setattr(UnityCatalogStore, "_spark", lambda self: spark)
    return spark


@pytest.mark.parametrize(("target", "catalog"), [("dev", "fraud_dev"), ("prod", "fraud_prod")])
def test_a_databricks_runtime_selects_unity_catalog_names_from_the_bundle(
    on_databricks: FakeSpark, monkeypatch: pytest.MonkeyPatch, target: str, catalog: str
) -> None:
    monkeypatch.setenv("FRAUD_TARGET", target)
    store = table_store(get_settings())
    assert isinstance(store, UnityCatalogStore)
    assert store.location("claims") == f"{catalog}.claims.claims"
    assert store.location("psi_report") == f"{catalog}.claims.psi_report"
    assert get_settings().registered_model_name == f"{catalog}.claims.fraud_detector"


def test_off_databricks_the_same_call_gives_local_delta_tables(
    fraud_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DATABRICKS_RUNTIME_VERSION", raising=False)
    store = table_store(get_settings())
    assert isinstance(store, LocalDeltaStore)
    assert store.location("claims") == str(fraud_home / "silver" / "claims")


def test_writes_are_delta_save_as_table_and_return_the_new_version(
    on_databricks: FakeSpark,
) -> None:
    store = table_store(get_settings())
    data = pa.table({"claim_id": ["c1", "c2"]})
    ident = "`fraud_dev`.`claims`.`claims`"

    assert store.write_arrow(data, "claims") == 0
    assert store.write_arrow(data, "claims", mode="append") == 1
    assert store.replace_rows(data, "claims", column="_source", value="o'brien.csv") == 2

    writes = [call for call in on_databricks.recorder.calls if call[0] == "saveAsTable"]
    assert writes == [
        ("saveAsTable", ident, {"format": "delta", "mode": "overwrite", "overwriteSchema": "true"}),
        ("saveAsTable", ident, {"format": "delta", "mode": "append", "mergeSchema": "true"}),
        (
            "saveAsTable",
            ident,
            {
                "format": "delta",
                "mode": "overwrite",
                # A batch bringing a mapping's new extra columns evolves the schema.
                "mergeSchema": "true",
                "replaceWhere": "`_source` = 'o''brien.csv'",
            },
        ),
    ]
    assert ("sql", f"DESCRIBE HISTORY {ident} LIMIT 1") in on_databricks.recorder.calls


def test_reads_time_travel_by_version_and_missing_tables_are_clear(
    on_databricks: FakeSpark,
) -> None:
    store = table_store(get_settings())
    with pytest.raises(FileNotFoundError, match=r"fraud_dev\.claims\.claim_features"):
        store.read_arrow("claim_features")
    store.write_arrow(pa.table({"claim_id": ["c1"]}), "claim_features")

    store.read_arrow("claim_features", version=0)

    assert on_databricks.recorder.calls[-1] == (
        "read.table",
        "`fraud_dev`.`claims`.`claim_features`",
        {"versionAsOf": 0},
    )


def test_quoted_three_level_names_parse_in_real_spark(spark: Any, tmp_path: Path) -> None:
    """The quoted ``catalog.schema.table`` form the store sends is one Spark resolves."""
    spark.sql(f"CREATE DATABASE IF NOT EXISTS fraud_uc_names LOCATION '{tmp_path / 'db'}'")
    spark.sql(
        "CREATE TABLE fraud_uc_names.claims (claim_id STRING) USING parquet "
        f"LOCATION '{tmp_path / 'claims'}'"
    )
    spark.sql("INSERT INTO fraud_uc_names.claims VALUES ('c1'), ('c2')")
    store = UnityCatalogStore("spark_catalog", "fraud_uc_names")
    try:
        assert store.exists("claims")
        assert not store.exists("claim_features")
        assert sorted(store.read_arrow("claims")["claim_id"].to_pylist()) == ["c1", "c2"]
    finally:
        spark.sql("DROP DATABASE fraud_uc_names CASCADE")


def test_mlflow_uses_databricks_tracking_and_the_uc_registry_on_a_runtime(
    on_databricks: FakeSpark, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fraud_assets.ml import tracking

    seen: dict[str, Any] = {}

    @dataclass
    class Experiment:
        experiment_id: str = "123"

    monkeypatch.setattr(tracking.mlflow, "set_tracking_uri", lambda uri: seen.update(tracking=uri))
    monkeypatch.setattr(tracking.mlflow, "set_registry_uri", lambda uri: seen.update(registry=uri))
    monkeypatch.setattr(
        tracking.mlflow, "set_experiment", lambda name: seen.update(experiment=name) or Experiment()
    )

    assert tracking.configure_mlflow(get_settings()) == "123"
    assert seen == {
        "tracking": "databricks",
        "registry": "databricks-uc",
        "experiment": "/Shared/fraud_assets/fraud_detector",
    }
