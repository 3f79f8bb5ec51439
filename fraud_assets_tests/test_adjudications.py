"""Adjudications files: claim outcomes that land after the claims, each file once.

A claims feed carries no outcome; the outcome lands later in ``<landing>/adjudications/``.
These tests land such files through the ingest step, the new-claims sensor and a Volume
listing, quarantine bad ones whole, and prove gold's Spark labelling equals the audit's
pandas one.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from dagster import RunRequest, SensorResult, build_sensor_context

from fraud_assets.checks import CHECK_NO_FILE_QUARANTINED
from fraud_assets.claims import landing
from fraud_assets.claims.adjudications import (
    ADJUDICATIONS_FOLDER,
    AdjudicationFileError,
    latest_labels,
    read_adjudications,
    with_adjudications,
)
from fraud_assets.claims.synthetic import generate_claims, write_claims_file
from fraud_assets.lakehouse import ADJUDICATIONS, RAW_CLAIMS, LocalDeltaStore
from fraud_assets.resources.workspace import DatabricksWorkspace
from fraud_assets.sensors.landing import list_volume_landing
from fraud_assets.sensors.new_claims import build_new_claims_sensor
from fraud_assets.tasks._runtime import TaskResult
from fraud_assets.tasks.ingest import ingest
from fraud_assets_tests.task_support import task_context

LOADED = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def staging(fraud_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Staging on a laptop: a landing folder with one claims file already in it."""
    monkeypatch.setenv("FRAUD_TARGET", "staging")
    folder = fraud_home / "landing"
    (folder / ADJUDICATIONS_FOLDER).mkdir(parents=True)
    claims = write_claims_file(generate_claims(6, seed=1, id_prefix="A-"), folder / "a.csv")
    os.utime(claims, (1_700_000_000, 1_700_000_000))
    return folder


def _outcomes(folder: Path, name: str, text: str, *, at: int = 100) -> Path:
    path = folder / ADJUDICATIONS_FOLDER / name
    path.write_text(text, encoding="utf-8")
    os.utime(path, (1_700_000_000 + at, 1_700_000_000 + at))
    return path


def _table(home: Path) -> pd.DataFrame:
    store = LocalDeltaStore(home)
    return store.read_pandas(ADJUDICATIONS) if store.exists(ADJUDICATIONS) else pd.DataFrame()


def _meta(result: TaskResult) -> dict[str, Any]:
    return result.materializations[0].metadata


def test_the_sweep_lands_each_adjudications_file_once_beside_the_claims(
    fraud_home: Path, staging: Path
) -> None:
    _outcomes(staging, "week1.csv", "claim_id,is_fraud,adjudicated_at\nA-000000001,1,2026-11-30\n")

    first = ingest(task_context("sweep-1"))

    outcomes = _table(fraud_home)
    assert outcomes[["claim_id", "is_fraud"]].to_dict("records") == [
        {"claim_id": "A-000000001", "is_fraud": 1}
    ]
    assert str(outcomes["adjudicated_at"].iloc[0]) == "2026-11-30 00:00:00+00:00"
    assert _meta(first)["files_landed"] == 1  # the claims file, into bronze
    assert _meta(first)["adjudications_landed"] == 1
    assert LocalDeltaStore(fraud_home).read_pandas(RAW_CLAIMS)["_source"].nunique() == 1
    ledger = {
        Path(e.path).name: (e.status, e.mapping)
        for e in landing.read_ledger(LocalDeltaStore(fraud_home))
    }
    assert ledger == {"a.csv": ("landed", "canonical"), "week1.csv": ("landed", "adjudications")}

    again = ingest(task_context("sweep-2"))
    assert _meta(again)["adjudications_landed"] == 0
    assert _meta(again)["files_already_in_ledger"] == 2
    assert len(_table(fraud_home)) == 1

    _outcomes(staging, "week2.csv", "claim_id,is_fraud\nA-000000002,0\nA-000000003,true\n", at=200)
    ingest(task_context("sweep-3"))
    assert sorted(_table(fraud_home)["claim_id"]) == ["A-000000001", "A-000000002", "A-000000003"]


def test_the_sensor_requests_an_adjudications_file_and_its_run_lands_it_once(
    fraud_home: Path, staging: Path
) -> None:
    path = _outcomes(staging, "week1.csv", "claim_id,is_fraud\nA-000000001,1\n")
    sensor = build_new_claims_sensor(volume_client=lambda s: None)  # type: ignore[arg-type,return-value]
    context = build_sensor_context(resources={"databricks": DatabricksWorkspace.from_env()})
    result = sensor(context)
    assert isinstance(result, SensorResult)
    requests = [r for r in result.run_requests or [] if isinstance(r, RunRequest)]
    config = {
        Path(r.run_config["ops"]["raw_claims"]["config"]["source_path"]).name: r.run_config["ops"][
            "raw_claims"
        ]["config"]
        for r in requests
    }
    assert set(config) == {"a.csv", "week1.csv"}
    assert (
        config["week1.csv"]["mapping"] is None
    )  # a fixed layout, whatever FRAUD_LANDING_MAPPING says

    landed = ingest(task_context("sensor-run", source_path=str(path)))
    assert _meta(landed)["adjudications_landed"] == 1
    assert _meta(landed)["files_landed"] == 0
    assert not LocalDeltaStore(fraud_home).exists(RAW_CLAIMS)  # the claims file is another run
    replay = ingest(task_context("sensor-replay", source_path=str(path)))
    assert _meta(replay)["adjudications_landed"] == 0
    assert len(_table(fraud_home)) == 1


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("claim_id,is_fraud\nA1,1\nA2,maybe\n", "column 'is_fraud', row 3: 'maybe'"),
        ("claim_id,is_fraud\nA1,1\n,0\n", "column 'claim_id', row 3: ''"),
        ("claim_id,is_fraud\nA1,1\nA1,0\n", "column 'claim_id', row 3: 'A1' repeats row 2"),
        (
            "claim_id,is_fraud,adjudicated_at\nA1,1,2999-01-01\n",
            "column 'adjudicated_at', row 2: '2999-01-01' is after now",
        ),
        (
            "claim_id,is_fraud,adjudicated_at\nA1,1,last tuesday\n",
            "column 'adjudicated_at', row 2: 'last tuesday'",
        ),
        ("claim,fraud\nA1,1\n", "needs the columns ['claim_id', 'is_fraud']"),
    ],
)
def test_a_bad_adjudications_file_is_quarantined_whole_and_says_where(
    fraud_home: Path, staging: Path, text: str, named: str
) -> None:
    _outcomes(staging, "good.csv", "claim_id,is_fraud\nA-000000009,0\n", at=50)
    bad = _outcomes(staging, "bad.csv", text)

    result = ingest(task_context("sweep"))

    check = next(c for c in result.checks if c.check_name == CHECK_NO_FILE_QUARANTINED)
    assert not check.passed
    (quarantined,) = _meta(result)["quarantined_files"]
    assert quarantined["file"] == str(bad)
    assert quarantined["reason"].startswith(f"{bad}: ")
    assert named in quarantined["reason"]
    assert _table(fraud_home)["claim_id"].tolist() == ["A-000000009"]  # nothing of bad.csv
    entry = next(e for e in landing.read_ledger(LocalDeltaStore(fraud_home)) if e.path == str(bad))
    assert entry.status == "quarantined" and named in (entry.reason or "")


def test_a_parquet_adjudications_file_reads_like_a_csv(tmp_path: Path) -> None:
    frame = pd.DataFrame({"claim_id": ["A1", "A2"], "is_fraud": [1, 0], "note": ["x", None]})
    frame.to_parquet(tmp_path / "outcomes.parquet")
    table = read_adjudications(
        tmp_path / "outcomes.parquet", source="outcomes.parquet", batch_id="b", loaded_at=LOADED
    )
    assert table.column("is_fraud").to_pylist() == [1, 0]
    assert table.column("adjudicated_at").null_count == 2
    with pytest.raises(AdjudicationFileError, match="cannot be read"):
        (tmp_path / "broken.parquet").write_bytes(b"not parquet")
        read_adjudications(
            tmp_path / "broken.parquet", source="broken.parquet", batch_id="b", loaded_at=LOADED
        )


class _Entry:
    def __init__(self, path: str, *, directory: bool = False) -> None:
        self.path, self.is_directory = path, directory
        self.file_size, self.last_modified = 10, 1


class _Volume:
    """The Files API of a Volume whose landing folder may hold an adjudications folder."""

    def __init__(self, tree: dict[str, list[_Entry]]) -> None:
        self.tree = tree
        self.listed: list[str] = []

    @property
    def files(self) -> _Volume:
        return self

    def list_directory_contents(self, directory_path: str) -> list[_Entry]:
        self.listed.append(directory_path)
        return self.tree[directory_path]


def test_a_volume_listing_takes_the_adjudications_folder_only_when_there_is_one() -> None:
    root = "/Volumes/main/fraud/landing"
    with_folder = _Volume(
        {
            root: [_Entry(f"{root}/a.csv"), _Entry(f"{root}/adjudications", directory=True)],
            f"{root}/adjudications": [_Entry(f"{root}/adjudications/w1.csv")],
        }
    )
    assert [f.path for f in list_volume_landing(with_folder, root)] == [
        f"{root}/a.csv",
        f"{root}/adjudications/w1.csv",
    ]
    without = _Volume({root: [_Entry(f"{root}/a.csv"), _Entry(f"{root}/other", directory=True)]})
    assert [f.path for f in list_volume_landing(without, root)] == [f"{root}/a.csv"]
    assert without.listed == [root]


def test_gold_labels_each_claim_as_the_audit_does(spark: Any) -> None:
    """with_adjudications (Spark, gold) and latest_labels (pandas, the audit) give every claim
    the same label: its latest outcome, else its own."""
    claims = pd.DataFrame(
        {
            "claim_id": ["C1", "C2", "C3", "C4", "C5"],
            "is_fraud": pd.array([None, 1, None, 0, None], dtype="Int32"),
            "_loaded_at": pd.to_datetime([LOADED] * 5, utc=True),
        }
    )
    day = pd.Timedelta(days=1)
    outcomes = pd.DataFrame(
        {
            "claim_id": ["C1", "C2", "C4", "C4", "C5", "C5"],
            "is_fraud": [1, 0, 1, 0, 1, 0],
            # C4: a dated reversal beats an undated later file; C5: both undated, last landed
            "adjudicated_at": pd.to_datetime(
                [LOADED, LOADED, LOADED + 3 * day, None, None, None], utc=True
            ),
            "_loaded_at": pd.to_datetime(
                [
                    LOADED + day,
                    LOADED + day,
                    LOADED + day,
                    LOADED + 5 * day,
                    LOADED + day,
                    LOADED + 2 * day,
                ],
                utc=True,
            ),
        }
    )
    outcomes["is_fraud"] = outcomes["is_fraud"].astype("int32")

    expected = latest_labels(claims, outcomes).set_index("claim_id")["is_fraud"].to_dict()
    gold = with_adjudications(spark.createDataFrame(claims), spark.createDataFrame(outcomes))
    labelled = {r["claim_id"]: r["is_fraud"] for r in gold.collect() if r["is_fraud"] is not None}

    assert expected == {"C1": 1, "C2": 0, "C4": 1, "C5": 0}
    assert labelled == expected
    assert gold.columns == list(claims.columns)
    assert gold.count() == len(claims)
