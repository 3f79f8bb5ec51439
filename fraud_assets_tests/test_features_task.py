"""The features step end to end: silver claims table in, gold table and its check out."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from fraud_assets.checks import CHECK_FEATURES_COMPLETE, CHECK_HOLDOUT_SEPARATED
from fraud_assets.claims.schema import CLAIM_SCHEMA
from fraud_assets.claims.synthetic import generate_claims
from fraud_assets.claims.synthetic import to_arrow as claims_to_arrow
from fraud_assets.features import CLAIM_FEATURES_COLUMNS, MODEL_FEATURES
from fraud_assets.lakehouse import LocalDeltaStore
from fraud_assets.settings import get_settings
from fraud_assets.tasks._runtime import TaskContext, TaskResult
from fraud_assets.tasks.build_features import build_features


def silver_table(n_rows: int) -> pa.Table:
    """Synthetic claims with the lineage columns validation adds."""
    table = claims_to_arrow(generate_claims(n_rows, seed=21))
    return table.append_column("_source", pa.array(["synthetic"] * n_rows)).append_column(
        "_loaded_at", pa.array([0] * n_rows, pa.int64())
    )


def provider_labelled_claims(n_rows: int, *, seed: int) -> Any:
    """Claims whose label belongs to the provider: every claim of a flagged provider is fraud
    (as in public provider-level files), about a tenth of the providers flagged."""
    claims = generate_claims(n_rows, seed=seed)
    providers = sorted(claims["provider_id"].unique())
    flagged = set(providers[:: max(1, len(providers) // max(1, len(providers) // 10))])
    claims["is_fraud"] = claims["provider_id"].isin(flagged).astype("int32")
    return claims


def run_features(home: Path) -> TaskResult:
    ctx = TaskContext(
        settings=get_settings(),
        params={},
        log=logging.getLogger("test_features_task"),
        run_id="test-run",
    )
    assert ctx.settings.fraud_home == home.resolve()
    return build_features(ctx)


def test_task_writes_one_feature_row_per_silver_claim(
    fraud_home: Path, spark: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FRAUD_SPLIT_STRATEGY", "out_of_time")
    store = LocalDeltaStore(fraud_home)
    claims = silver_table(600)
    store.write_arrow(claims, "claims")

    result = run_features(fraud_home)

    written = store.read_arrow("claim_features")
    assert written.column_names == CLAIM_FEATURES_COLUMNS
    assert sorted(written["claim_id"].to_pylist()) == sorted(claims["claim_id"].to_pylist())
    assert all(written[name].null_count == 0 for name in MODEL_FEATURES)

    [materialization] = result.materializations
    meta = materialization.metadata
    assert materialization.asset_key == "claim_features"
    assert meta["row_count"] == 600
    assert meta["delta_version"] == store.version("claim_features")
    assert meta["table_location"] == str(fraud_home / "gold" / "claim_features")
    holdout = written.filter(pc.equal(written["split"], "holdout"))
    assert meta["holdout_count"] == holdout.num_rows
    assert meta["train_count"] + meta["holdout_count"] == 600
    assert (meta["split_strategy"], meta["label_unit"]) == ("out_of_time", "claim")
    # Out of time: the holdout is the latest claims.
    train = written.filter(pc.equal(written["split"], "train"))
    assert pc.min(holdout["claim_date"]).as_py() > pc.max(train["claim_date"]).as_py()
    assert meta["fraud_rate_holdout"] == pytest.approx(
        pc.mean(holdout["is_fraud"]).as_py(), abs=1e-6
    )

    check, separated = result.checks
    assert (check.asset_key, check.check_name) == ("claim_features", CHECK_FEATURES_COMPLETE)
    assert check.passed, check.metadata
    assert check.metadata["silver_claims_missing"] == 0
    assert separated.check_name == CHECK_HOLDOUT_SEPARATED
    assert (separated.passed, separated.severity) == (True, "WARN")
    # Claim labels: no claim is on both sides, though its patients and providers are.
    assert separated.metadata["holdout_share_claim_in_train"] == 0.0
    assert separated.metadata["holdout_share_provider_in_train"] > 0.5


def test_split_check_warns_when_provider_labels_are_split_by_claim(
    fraud_home: Path, spark: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issue 12 finding 3: provider labels split per claim. The labels show they belong to
    # providers (every labelled claim of a flagged provider is fraud), so the check warns.
    table = claims_to_arrow(provider_labelled_claims(3_000, seed=21))
    claims = table.append_column("_source", pa.array(["synthetic"] * table.num_rows))
    LocalDeltaStore(fraud_home).write_arrow(claims, "claims")
    monkeypatch.setenv("FRAUD_LABEL_UNIT", "claim")
    _, separated = run_features(fraud_home).checks
    assert not separated.passed
    assert separated.metadata["labels_look_entity_level"] == "provider"
    assert separated.metadata["label_purity_provider"] > 0.9
    assert separated.metadata["holdout_share_provider_in_train"] > 0.5
    assert "FRAUD_LABEL_UNIT" in separated.metadata["finding"]

    # Declared as provider labels, the split groups by provider and the check passes.
    monkeypatch.setenv("FRAUD_LABEL_UNIT", "provider")
    _, separated = run_features(fraud_home).checks
    assert separated.passed, separated.metadata
    assert separated.metadata["holdout_share_provider_in_train"] == 0.0


def test_rebuild_overwrites_and_the_check_names_what_is_wrong(fraud_home: Path, spark: Any) -> None:
    store = LocalDeltaStore(fraud_home)
    # A stale gold table from an earlier build that the rebuild must replace, not extend.
    stale = pa.table({"claim_id": ["OLD-1", "OLD-2"], "split": ["train", "train"]})
    first_version = store.write_arrow(stale, "claim_features")

    # Silver gone bad: one claim_id twice, one claim without an amount, one without a provider.
    claims = silver_table(200)
    claims = pa.concat_tables([claims, claims.slice(0, 1)])
    nullable = pa.schema([f.with_nullable(True) for f in claims.schema])
    claims = claims.cast(nullable)
    for name, row in [("claim_amount", 7), ("provider_id", 9)]:
        values = claims[name].to_pylist()
        values[row] = None
        index = CLAIM_SCHEMA.get_field_index(name)
        claims = claims.set_column(index, name, pa.array(values, claims.schema.field(name).type))
    store.write_arrow(claims, "claims")

    check, _ = run_features(fraud_home).checks

    # Overwritten, not appended: the gold table mirrors the new silver table row for row.
    assert store.version("claim_features") == first_version + 1
    rebuilt = store.read_arrow("claim_features")
    assert rebuilt.num_rows == 201
    assert rebuilt.column_names == CLAIM_FEATURES_COLUMNS
    assert "OLD-1" not in rebuilt["claim_id"].to_pylist()
    assert not check.passed
    assert check.metadata["claims_with_repeated_rows"] == 1
    assert check.metadata["silver_claims_missing"] == 0
    assert "claim_amount=1" in check.metadata["columns_with_nulls"]
    assert "amount_per_procedure=1" in check.metadata["columns_with_nulls"]


@pytest.mark.slow
def test_asset_materializes_through_pipes_and_reports_its_blocking_check(
    fraud_home: Path, dagster_instance: Any
) -> None:
    from dagster import AssetKey, materialize

    from fraud_assets.assets.features import claim_features
    from fraud_assets.resources.compute import LocalPipesCompute

    LocalDeltaStore(fraud_home).write_arrow(silver_table(300), "claims")

    result = materialize(
        [claim_features], resources={"compute": LocalPipesCompute()}, instance=dagster_instance
    )

    assert result.success
    [mat] = result.asset_materializations_for_node("claim_features")
    assert mat.asset_key == AssetKey("claim_features")
    assert mat.metadata["row_count"].value == 300
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert evaluations[CHECK_FEATURES_COMPLETE].passed
    assert evaluations[CHECK_HOLDOUT_SEPARATED].passed
    blocking = {spec.name: spec.blocking for spec in claim_features.check_specs}
    assert blocking == {CHECK_FEATURES_COMPLETE: True, CHECK_HOLDOUT_SEPARATED: False}
    history = LocalDeltaStore(fraud_home).read_pandas("check_history")
    assert history[["check_name", "passed"]].values.tolist() == [
        [CHECK_FEATURES_COMPLETE, True],
        [CHECK_HOLDOUT_SEPARATED, True],
    ]
