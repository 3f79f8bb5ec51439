"""Extras through the real steps: the features step's blocking check and the fairness step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fraud_assets.checks import CHECK_FAIRNESS_POLICY, CHECK_FEATURES_COMPLETE
from fraud_assets.governance.policy import pinned_policy, recorded_policy_problems
from fraud_assets.lakehouse import LocalDeltaStore, table_store
from fraud_assets.settings import get_settings
from fraud_assets.tasks.build_features import build_features
from fraud_assets.tasks.ingest import ingest
from fraud_assets.tasks.validate import validate
from fraud_assets_tests.extras_support import EXTRA_FEATURES, claims_with_extras, extras_mapping
from fraud_assets_tests.governance_support import (
    candidate_run,
    holdout_predictions,
    run_fairness,
    write_evaluation,
)
from fraud_assets_tests.task_support import task_context


def test_the_features_step_keeps_extras_and_a_blank_number_is_not_incomplete(
    fraud_home: Path, spark: Any, tmp_path: Path
) -> None:
    source = tmp_path / "claims.csv"
    claims_with_extras(80).to_csv(source, index=False)
    mapping = extras_mapping(tmp_path / "m.yaml", **EXTRA_FEATURES)
    ingest(task_context("f1", source_path=str(source), mapping=str(mapping)))
    validate(task_context("f1"))

    result = build_features(task_context("f1"))
    checks = {c.check_name: c for c in result.checks}
    complete = checks[CHECK_FEATURES_COMPLETE]
    assert complete.passed, complete.metadata
    metadata = result.materializations[0].metadata
    assert metadata["extra_features"] == "xn_deductible, xc_hobby"
    assert metadata["protected_extras"] == "xp_race"
    gold = LocalDeltaStore(fraud_home).read_pandas("claim_features")
    assert gold["xn_deductible"].dtype == np.float64 and gold["xn_deductible"].isna().any()
    assert gold["xc_hobby"].notna().all() and gold["xp_race"].notna().all()


def test_a_protected_extra_is_judged_by_the_fairness_step_and_still_promotable(
    governed_home: Path,
) -> None:
    settings = get_settings()
    rows = holdout_predictions()
    rows["xp_race"] = np.random.default_rng(1).choice(["a", "b"], len(rows))
    table_store(settings).write_pandas(rows, "holdout_predictions")
    write_evaluation(settings, candidate_run(settings))

    result = run_fairness(["--run_id", "pipeline-x"])
    checks = {c.check_name: c for c in result.checks}
    assert all(c.passed for c in checks.values()), [c.metadata["why"] for c in checks.values()]
    pinned = pinned_policy("dev")
    recorded = checks[CHECK_FAIRNESS_POLICY].metadata
    assert recorded["policy"]["attributes"] == [*pinned.attributes, "xp_race"]
    assert recorded_policy_problems(recorded, pinned) == []
    report = table_store(settings).read_pandas("fairness_report")
    assert set(report.loc[report["slice"] == "xp_race", "group"].dropna()) == {"a", "b"}
