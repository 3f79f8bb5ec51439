"""One Spark for a local run: the Spark Connect server the run's steps share.

The steps of a local run connect to one server (``fraud_assets.local.spark_server``)
instead of each starting Spark. These tests start a real server and prove a step's Spark
work gives the same tables through it as through a session of its own, that the server
goes away with the run, and that a server that cannot start says why.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest

from fraud_assets.claims.synthetic import generate_claims, to_arrow
from fraud_assets.features import SplitPolicy
from fraud_assets.features.engineering import build_claim_features
from fraud_assets.lakehouse import LocalDeltaStore
from fraud_assets.local import spark_server
from fraud_assets.local.spark_server import (
    SparkServerError,
    local_run_spark,
    server_command,
    shared_spark,
)
from fraud_assets.settings import FraudSettings
from fraud_assets.spark import SPARK_REMOTE


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    assert SPARK_REMOTE not in os.environ
    with shared_spark(FraudSettings()) as url:
        os.environ.pop(SPARK_REMOTE)  # these tests hand it to their steps themselves
        yield url
    assert SPARK_REMOTE not in os.environ


def _listening(url: str) -> bool:
    host, port = url.removeprefix("sc://").split(":")
    try:
        with socket.create_connection((host, int(port)), 1):
            return True
    except OSError:
        return False


def _silver() -> pa.Table:
    """Claims in the canonical columns, as silver holds them."""
    return to_arrow(generate_claims(2_000, seed=3))


# A process with a Spark of its own cannot also hold a remote session (pyspark refuses), so
# the step's side runs as a step does: a fresh interpreter with SPARK_REMOTE set.
STEP = """
import json, sys
from fraud_assets.features import SplitPolicy
from fraud_assets.features.engineering import build_claim_features
from fraud_assets.lakehouse import LocalDeltaStore
from fraud_assets.spark import get_spark

spark = get_spark()
store = LocalDeltaStore(sys.argv[1])
claims = store.read_spark(spark, "claims")
store.write_spark(build_claim_features(claims, split=SplitPolicy(0.2, 7, "out_of_time")),
                  "claim_features")
store.write_spark(claims.limit(0), "claims_quarantine")  # an empty table, both ways
print(json.dumps({
    "session": type(spark).__module__,
    "time_zone": spark.conf.get("spark.sql.session.timeZone"),
    "quarantined": store.read_spark(spark, "claims_quarantine").count(),
}))
"""


def _step(home: Path, remote: str) -> dict[str, Any]:
    env = {**os.environ, SPARK_REMOTE: remote, "PYSPARK_PYTHON": sys.executable}
    done = subprocess.run(
        [sys.executable, "-c", STEP, str(home)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def test_a_steps_features_through_the_shared_server_equal_its_own_sessions(
    server: str, spark: Any, tmp_path: Path
) -> None:
    silver = _silver()
    own = build_claim_features(
        spark.createDataFrame(silver), split=SplitPolicy(0.2, 7, "out_of_time")
    ).toPandas()
    store = LocalDeltaStore(tmp_path / "home")
    store.write_arrow(silver, "claims")

    step = _step(tmp_path / "home", server)

    assert step == {"session": step["session"], "time_zone": "UTC", "quarantined": 0}
    assert step["session"].startswith("pyspark.sql.connect")
    through_server = store.read_pandas("claim_features")
    key = ["claim_id"]
    pd.testing.assert_frame_equal(
        through_server.sort_values(key).reset_index(drop=True)[list(own.columns)],
        own.sort_values(key).reset_index(drop=True),
        check_dtype=False,
    )


def test_the_server_stops_with_the_run_and_databricks_compute_starts_none() -> None:
    with shared_spark(FraudSettings()) as url:
        assert os.environ[SPARK_REMOTE] == url
        assert _listening(url)
        with shared_spark(FraudSettings()) as inner:
            assert inner == url  # a run inside a run shares the same server
    assert SPARK_REMOTE not in os.environ
    assert not _listening(url)
    with local_run_spark(FraudSettings(compute="databricks")) as none:
        assert none is None and SPARK_REMOTE not in os.environ


def test_a_server_that_cannot_start_says_why() -> None:
    settings = FraudSettings(spark_driver_memory="lots")
    assert "--driver-memory" in server_command(settings, 1)
    with pytest.raises(SparkServerError, match="exited with") as raised, shared_spark(settings):
        pass
    assert "lots" in str(raised.value)
    assert SPARK_REMOTE not in os.environ


def test_make_devs_wrapper_hands_the_command_its_spark_and_its_exit_code(
    fraud_home: Path, tmp_path: Path
) -> None:
    seen = tmp_path / "seen"
    code = spark_server.main(["sh", "-c", f'echo "$SPARK_REMOTE" > {seen}; exit 3'])
    assert code == 3
    url = seen.read_text(encoding="utf-8").strip()
    assert url.startswith("sc://127.0.0.1:")
    assert not _listening(url)  # stopped with the command
    assert SPARK_REMOTE not in os.environ
