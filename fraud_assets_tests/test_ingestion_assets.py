"""The ingestion assets through Dagster and local Pipes: tables, metadata and checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from dagster import AssetKey, materialize

from fraud_assets import keys
from fraud_assets.assets.ingestion import raw_claims, validate_claims
from fraud_assets.lakehouse import LocalDeltaStore
from fraud_assets.resources.compute import LocalPipesCompute

BAD = Path(__file__).parent / "data" / "bad_inputs"


def _metadata(result: Any, node: str) -> dict[AssetKey, dict[str, Any]]:
    return {
        m.asset_key: {name: value.value for name, value in m.metadata.items()}
        for m in result.asset_materializations_for_node(node)
    }


def _checks(result: Any) -> dict[tuple[AssetKey, str], Any]:
    return {(e.asset_key, e.check_name): e for e in result.get_asset_check_evaluations()}


def test_blocking_checks_are_the_ones_that_must_stop_downstream_assets() -> None:
    specs = {
        (spec.asset_key, spec.name): spec.blocking
        for asset_def in (raw_claims, validate_claims)
        for spec in asset_def.check_specs
    }
    assert specs == {
        (keys.RAW_CLAIMS, keys.CHECK_RAW_SCHEMA): True,
        (keys.RAW_CLAIMS, keys.CHECK_RAW_NOT_EMPTY): False,
        (keys.CLAIMS, keys.CHECK_SCHEMA): True,
        (keys.CLAIMS, keys.CHECK_UNIQUE_CLAIM_ID): True,
        (keys.CLAIMS, keys.CHECK_RECONCILES): True,
        (keys.CLAIMS, keys.CHECK_VALUE_RANGES): False,
        (keys.CLAIMS, keys.CHECK_NULL_RATES): False,
    }
    assert {k for k in validate_claims.keys} == {keys.CLAIMS, keys.CLAIMS_QUARANTINE}
    assert all(validate_claims.group_names_by_key[k] == "ingestion" for k in validate_claims.keys)


@pytest.mark.slow
def test_synthetic_then_file_batches_materialize_through_pipes(
    fraud_home: Path, monkeypatch: pytest.MonkeyPatch, dagster_instance: Any
) -> None:
    monkeypatch.setenv("FRAUD_SYNTHETIC_ROWS", "500")
    store = LocalDeltaStore(fraud_home)
    assets = [raw_claims, validate_claims]
    resources = {"compute": LocalPipesCompute()}

    first = materialize(assets, resources=resources, instance=dagster_instance)
    assert first.success
    metadata = {**_metadata(first, "raw_claims"), **_metadata(first, "validate_claims")}
    for key, table in [
        (keys.RAW_CLAIMS, "raw_claims"),
        (keys.CLAIMS, "claims"),
        (keys.CLAIMS_QUARANTINE, "claims_quarantine"),
    ]:
        assert metadata[key]["delta_version"] == store.version(table)
        assert metadata[key]["table_location"] == store.location(table)
        assert metadata[key]["duration_seconds"] > 0
    assert metadata[keys.RAW_CLAIMS]["row_count"] == 500
    assert metadata[keys.CLAIMS]["row_count"] == 500
    assert metadata[keys.CLAIMS]["batch_id"] == first.run_id
    checks = _checks(first)
    assert len(checks) == 7
    assert all(e.passed for e in checks.values()), [k for k, e in checks.items() if not e.passed]

    # A landed file, as the new-claims sensor would launch it: appended as its own batch.
    run_config = {
        "ops": {"raw_claims": {"config": {"source_path": str(BAD / "duplicate_ids.csv")}}}
    }
    second = materialize(
        assets, resources=resources, instance=dagster_instance, run_config=run_config
    )
    assert second.success
    landed = _metadata(second, "raw_claims")[keys.RAW_CLAIMS]
    assert landed["load_mode"] == "append"
    assert landed["source"] == str((BAD / "duplicate_ids.csv").resolve())
    validated = _metadata(second, "validate_claims")
    assert validated[keys.CLAIMS]["batch_id"] == second.run_id
    assert validated[keys.CLAIMS]["row_count"] == 504
    assert validated[keys.CLAIMS_QUARANTINE]["batch_row_count"] == 3
    assert validated[keys.CLAIMS_QUARANTINE]["reasons"] == {
        "duplicate claim_id in this batch …": 3,
        "claim_amount … is below …": 1,
    }
    checks = _checks(second)
    assert checks[(keys.CLAIMS, keys.CHECK_RECONCILES)].passed
    assert checks[(keys.CLAIMS, keys.CHECK_UNIQUE_CLAIM_ID)].passed
    # 3 of 7 rows quarantined is above the 20% limit: a warning, not a blocked run.
    ranges = checks[(keys.CLAIMS, keys.CHECK_VALUE_RANGES)]
    assert not ranges.passed
    assert ranges.severity.value == "WARN"
    assert len(store.read_arrow("raw_claims")) == 507
    assert store.version("claims") == validated[keys.CLAIMS]["delta_version"]
