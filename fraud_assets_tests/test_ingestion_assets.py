"""The ingestion assets through Dagster and local Pipes: tables, metadata and checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from dagster import materialize

from fraud_assets import keys
from fraud_assets.assets.ingestion import raw_claims, validate_claims
from fraud_assets.checks import (
    CHECK_NO_FILE_QUARANTINED,
    CHECK_NULL_RATES,
    CHECK_QUARANTINE_RATE,
    CHECK_RAW_NOT_EMPTY,
    CHECK_RAW_SCHEMA,
    CHECK_RECONCILES,
    CHECK_SCHEMA,
    CHECK_UNIQUE_CLAIM_ID,
    CHECK_VALUE_RANGES,
)
from fraud_assets.claims.synthetic import generate_claims, write_claims_file
from fraud_assets.lakehouse import LocalDeltaStore
from fraud_assets.resources.compute import LocalPipesCompute


def _metadata(result: Any, node: str) -> dict[str, dict[str, Any]]:
    return {
        m.asset_key.to_user_string(): {name: value.value for name, value in m.metadata.items()}
        for m in result.asset_materializations_for_node(node)
    }


def _checks(result: Any) -> dict[tuple[str, str], Any]:
    return {
        (e.asset_key.to_user_string(), e.check_name): e
        for e in result.get_asset_check_evaluations()
    }


def test_blocking_checks_are_the_ones_that_must_stop_downstream_assets() -> None:
    specs = {
        (spec.asset_key.to_user_string(), spec.name): spec.blocking
        for asset_def in (raw_claims, validate_claims)
        for spec in asset_def.check_specs
    }
    assert specs == {
        (keys.RAW_CLAIMS, CHECK_RAW_SCHEMA): True,
        (keys.RAW_CLAIMS, CHECK_RAW_NOT_EMPTY): False,
        (keys.RAW_CLAIMS, CHECK_NO_FILE_QUARANTINED): False,
        (keys.CLAIMS, CHECK_SCHEMA): True,
        (keys.CLAIMS, CHECK_UNIQUE_CLAIM_ID): True,
        (keys.CLAIMS, CHECK_RECONCILES): True,
        (keys.CLAIMS, CHECK_QUARANTINE_RATE): True,
        (keys.CLAIMS, CHECK_VALUE_RANGES): False,
        (keys.CLAIMS, CHECK_NULL_RATES): False,
    }
    assert {k.to_user_string() for k in validate_claims.keys} == {
        keys.CLAIMS,
        keys.CLAIMS_QUARANTINE,
    }
    assert all(validate_claims.group_names_by_key[k] == "ingestion" for k in validate_claims.keys)


@pytest.mark.slow
def test_a_landed_file_materializes_bronze_silver_and_quarantine_through_pipes(
    fraud_home: Path, dagster_instance: Any, tmp_path: Path
) -> None:
    # One run, launched as the new-claims sensor launches it: the file comes in run config.
    # (Synthetic full refreshes and batch semantics are covered in test_ingestion_tasks.py.)
    landed_file = write_claims_file(generate_claims(300, seed=3), tmp_path / "batch.csv")
    run_config = {"ops": {"raw_claims": {"config": {"source_path": str(landed_file)}}}}
    result = materialize(
        [raw_claims, validate_claims],
        resources={"compute": LocalPipesCompute()},
        instance=dagster_instance,
        run_config=run_config,
    )
    assert result.success
    metadata = {**_metadata(result, "raw_claims"), **_metadata(result, "validate_claims")}
    store = LocalDeltaStore(fraud_home)
    for key, table in [
        (keys.RAW_CLAIMS, "raw_claims"),
        (keys.CLAIMS, "claims"),
        (keys.CLAIMS_QUARANTINE, "claims_quarantine"),
    ]:
        assert metadata[key]["delta_version"] == store.version(table)
        assert metadata[key]["table_location"] == store.location(table)
        assert metadata[key]["duration_seconds"] > 0
    assert metadata[keys.RAW_CLAIMS]["source"] == str(landed_file.resolve())
    assert metadata[keys.RAW_CLAIMS]["row_count"] == 300
    assert metadata[keys.CLAIMS]["row_count"] == 300
    assert metadata[keys.CLAIMS]["batch_id"] == result.run_id
    assert metadata[keys.CLAIMS_QUARANTINE]["row_count"] == 0
    checks = _checks(result)
    assert set(checks) == {
        (keys.RAW_CLAIMS, CHECK_RAW_SCHEMA),
        (keys.RAW_CLAIMS, CHECK_RAW_NOT_EMPTY),
        (keys.RAW_CLAIMS, CHECK_NO_FILE_QUARANTINED),
        (keys.CLAIMS, CHECK_SCHEMA),
        (keys.CLAIMS, CHECK_UNIQUE_CLAIM_ID),
        (keys.CLAIMS, CHECK_RECONCILES),
        (keys.CLAIMS, CHECK_QUARANTINE_RATE),
        (keys.CLAIMS, CHECK_VALUE_RANGES),
        (keys.CLAIMS, CHECK_NULL_RATES),
    }
    assert all(e.passed for e in checks.values()), [k for k, e in checks.items() if not e.passed]
    assert checks[(keys.CLAIMS, CHECK_RECONCILES)].metadata["bronze_rows"].value == 300
    silver = store.read_pandas("claims")
    assert sorted(silver["claim_id"]) == generate_claims(300, seed=3)["claim_id"].tolist()
