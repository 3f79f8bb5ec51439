"""Extra feature columns a mapping declares: from the source file through bronze and silver."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from fraud_assets.checks import CHECK_RECONCILES, CHECK_SCHEMA
from fraud_assets.claims.mapping import MappingError, parse_mapping
from fraud_assets.lakehouse import LocalDeltaStore
from fraud_assets.tasks.ingest import ingest
from fraud_assets.tasks.validate import validate
from fraud_assets_tests.conftest import AUTO_INSURANCE_FILE, needs_auto_insurance_file
from fraud_assets_tests.extras_support import EXTRA_FEATURES, claims_with_extras, extras_mapping
from fraud_assets_tests.task_support import task_context


def test_a_mapping_declares_extras_with_a_kind_and_stores_them_by_kind(tmp_path: Path) -> None:
    mapping = parse_mapping(extras_mapping(tmp_path / "m.yaml", **EXTRA_FEATURES).read_text())
    assert list(mapping.extra_columns()) == ["xn_deductible", "xc_hobby", "xp_race"]
    assert {"deductible", "hobby", "race"} <= set(mapping.required_source_columns())


@pytest.mark.parametrize(
    ("features", "problem"),
    [
        ({"Bad-Name": {"from": "a", "kind": "numeric"}}, "not lowercase snake_case"),
        ({"claim_amount": {"from": "a", "kind": "numeric"}}, "already a canonical or gold"),
        ({"provider_claim_count": {"from": "a", "kind": "numeric"}}, "canonical or gold"),
        ({"race": {"from": "a", "kind": "numeric", "protected": True}}, "kind: categorical"),
        ({"x": {"from": "a"}}, "kind"),
        ({"x": {"from": "a", "kind": "text"}}, "kind"),
    ],
)
def test_a_badly_declared_extra_is_a_mapping_error(
    tmp_path: Path, features: dict[str, Any], problem: str
) -> None:
    with pytest.raises(MappingError, match=problem):
        parse_mapping(extras_mapping(tmp_path / "m.yaml", **features).read_text())


def test_extras_land_in_bronze_as_text_and_in_silver_typed(
    fraud_home: Path, spark: Any, tmp_path: Path
) -> None:
    source = tmp_path / "claims.csv"
    frame = claims_with_extras(60)
    frame.loc[7, "deductible"] = "12d"  # a Java literal Spark would cast: not a number here
    frame.to_csv(source, index=False)
    mapping = extras_mapping(tmp_path / "m.yaml", **EXTRA_FEATURES)

    landed = ingest(task_context("x1", source_path=str(source), mapping=str(mapping)))
    assert all(c.passed for c in landed.checks), [c for c in landed.checks if not c.passed]
    store = LocalDeltaStore(fraud_home)
    bronze_schema = store.table_schema("raw_claims")
    for name in ("xn_deductible", "xc_hobby", "xp_race"):
        assert pa.types.is_string(bronze_schema.field(name).type) or pa.types.is_large_string(
            bronze_schema.field(name).type
        )

    validated = validate(task_context("x1"))
    checks = {c.check_name: c for c in validated.checks}
    assert checks[CHECK_SCHEMA].passed, checks[CHECK_SCHEMA].description
    assert checks[CHECK_RECONCILES].passed
    silver = store.read_pandas("claims").set_index("claim_id")
    assert silver["xn_deductible"].dtype == np.float64
    expected = pd.to_numeric(frame.set_index("claim_id")["deductible"], errors="coerce")
    good = silver.index
    # A missing numeric extra is allowed and stays null (NaN).
    np.testing.assert_array_equal(silver["xn_deductible"], expected.loc[good])
    assert silver["xn_deductible"].isna().any()
    assert (
        silver["xc_hobby"].isna().sum()
        == (frame.set_index("claim_id").loc[good, "hobby"] == "?").sum()
    )
    assert set(silver["xp_race"]) == {"a", "b", "c"}

    quarantine = store.read_pandas("claims_quarantine")
    bad = quarantine.loc[quarantine["_row_number"] == 8]
    assert bad["_reason"].tolist() == ["xn_deductible '12d' is not a finite number"]
    assert bad["xn_deductible"].tolist() == ["12d"]  # kept as it landed


def test_batches_with_and_without_extras_append_to_one_table(
    fraud_home: Path, spark: Any, tmp_path: Path
) -> None:
    mapping = extras_mapping(tmp_path / "m.yaml", **EXTRA_FEATURES)
    for batch, seed, extras in (("a", 1, False), ("b", 2, True), ("c", 3, False)):
        source = tmp_path / f"{batch}.csv"
        frame = claims_with_extras(20, seed=seed).assign(
            claim_id=lambda f, b=batch: f"{b}-" + f["claim_id"]
        )
        if extras:
            frame.to_csv(source, index=False)
            ingest(task_context(batch, source_path=str(source), mapping=str(mapping)))
        else:
            frame.drop(columns=["deductible", "hobby", "race"]).to_csv(source, index=False)
            ingest(task_context(batch, source_path=str(source)))
        checks = {c.check_name: c for c in validate(task_context(batch)).checks}
        assert checks[CHECK_SCHEMA].passed, checks[CHECK_SCHEMA].description
        assert checks[CHECK_RECONCILES].passed
    silver = LocalDeltaStore(fraud_home).read_pandas("claims")
    assert len(silver) == 60
    # Schema evolution: rows of batches without extras hold nulls there.
    assert silver.loc[silver["_batch_id"] != "b", "xn_deductible"].isna().all()
    assert silver.loc[silver["_batch_id"] == "b", "xp_race"].notna().all()


def test_without_extras_the_tables_keep_the_canonical_schema(
    fraud_home: Path, spark: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FRAUD_SYNTHETIC_ROWS", "200")
    ingest(task_context("s"))
    validate(task_context("s"))
    store = LocalDeltaStore(fraud_home)
    from fraud_assets.claims.schema import BRONZE_SCHEMA, SILVER_SCHEMA

    assert store.table_schema("raw_claims").names == BRONZE_SCHEMA.names
    assert store.table_schema("claims").names == SILVER_SCHEMA.names


@needs_auto_insurance_file
def test_the_shipped_auto_insurance_mapping_lands_its_extras_typed(
    fraud_home: Path, spark: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FRAUD_SOURCE_PATH", str(AUTO_INSURANCE_FILE))
    monkeypatch.setenv("FRAUD_SOURCE_MAPPING", "auto_insurance_claims")
    ingest(task_context("auto"))
    checks = {c.check_name: c for c in validate(task_context("auto")).checks}
    assert checks[CHECK_SCHEMA].passed, checks[CHECK_SCHEMA].description
    silver = LocalDeltaStore(fraud_home).read_pandas("claims")
    assert len(silver) == 999
    assert silver["xn_policy_annual_premium"].dtype == np.float64
    assert silver["xn_capital_loss"].max() <= 0  # "capital-loss" holds losses as negatives
    assert silver["xc_insured_hobbies"].nunique() == 20
    # '?' is missing: null in silver, the missing category in gold.
    assert silver["xc_collision_type"].isna().sum() > 100
    assert not [c for c in silver.columns if c.startswith("xp_")]  # no protected column
