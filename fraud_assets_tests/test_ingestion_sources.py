"""Where ingest takes claims from: staging and prod never synthesize them (issue 16).

The daily ingestion schedule runs in staging and prod. With no source configured it used to
replace bronze with 20,000 synthetic claims, destroying what had landed; synthetic claims
are now generated only in dev (the laptop demo) or when FRAUD_SYNTHETIC_CLAIMS asks.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fraud_assets.claims.synthetic import generate_claims, write_claims_file
from fraud_assets.lakehouse import LocalDeltaStore
from fraud_assets.settings import get_settings
from fraud_assets.tasks.ingest import SyntheticClaimsRefused, ingest
from fraud_assets_tests.task_support import task_context


@pytest.mark.parametrize("target", ["staging", "prod"])
def test_staging_and_prod_never_replace_bronze_with_synthetic_claims(
    fraud_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, target: str
) -> None:
    real = write_claims_file(generate_claims(5, seed=3, id_prefix="R"), tmp_path / "real.csv")
    ingest(task_context("landed", source_path=str(real)))
    store = LocalDeltaStore(fraud_home)
    before = store.read_pandas("raw_claims")

    monkeypatch.setenv("FRAUD_TARGET", target)
    with pytest.raises(SyntheticClaimsRefused, match="FRAUD_SOURCE_PATH") as refused:
        ingest(task_context("scheduled"))
    assert target in str(refused.value)
    assert "FRAUD_SYNTHETIC_CLAIMS" in str(refused.value)
    after = store.read_pandas("raw_claims")
    assert sorted(after["claim_id"]) == sorted(before["claim_id"])


def test_synthetic_claims_are_generated_when_asked_for(
    fraud_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FRAUD_SYNTHETIC_ROWS", "50")
    monkeypatch.setenv("FRAUD_TARGET", "staging")
    monkeypatch.setenv("FRAUD_SYNTHETIC_CLAIMS", "true")
    landed = ingest(task_context("asked"))
    assert landed.materializations[0].metadata["mapping"] == "synthetic"
    assert LocalDeltaStore(fraud_home).read_pandas("raw_claims").shape[0] == 50


def test_dev_synthesizes_by_default_and_can_refuse(
    fraud_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FRAUD_SYNTHETIC_ROWS", "50")
    assert get_settings().synthetic_claims_allowed
    ingest(task_context("demo"))
    monkeypatch.setenv("FRAUD_SYNTHETIC_CLAIMS", "false")
    with pytest.raises(SyntheticClaimsRefused, match="dev"):
        ingest(task_context("refused"))
