"""The fairness step's verdicts are decisions: stable across seeds, blind to other attributes.

Issue 12, finding 1: on a holdout with 43 states as ``geographic_region`` and a disparate
impact over states of about 0.1, the step passed with one bootstrap seed and failed with
others, and its verdict changed with the other attributes in the report. These tests run the
real step (MLflow on SQLite, Delta under a temporary FRAUD_HOME) on data shaped like that.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fraud_assets.checks import CHECK_DISPARATE_IMPACT
from fraud_assets.lakehouse import table_store
from fraud_assets.settings import get_settings
from fraud_assets.tasks._runtime import TaskResult, run_task
from fraud_assets.tasks.fairness import fairness
from fraud_assets_tests.gold_frames import use_migrated_mlflow_store

STATES = 43
ALL_ATTRIBUTES = ["patient_gender", "patient_age_group", "geographic_region"]


def many_state_holdout(*, seed: int, n: int = 3_000) -> pd.DataFrame:
    """Candidate holdout rows over 43 unequal states whose flag rates run from 3% to 25%.

    The true disparate impact over states is 0.03 / 0.25 = 0.12: a model no policy may promote.
    """
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.full(STATES, 2.0))
    states = np.array([f"S{i:02d}" for i in range(STATES)])
    state_code = rng.choice(STATES, n, p=weights)
    flag_rate = np.linspace(0.03, 0.25, STATES)[state_code]
    frame = pd.DataFrame(
        {
            "claim_id": [f"C{i:06d}" for i in range(n)],
            "patient_id": [f"PAT{i:06d}" for i in rng.integers(0, n // 2, n)],
            "provider_id": [
                f"PRV{s:02d}{i}" for s, i in zip(state_code, rng.integers(0, 8, n), strict=True)
            ],
            "patient_gender": rng.choice(["F", "M"], n),
            "patient_age_group": rng.choice(["18-34", "35-49", "50-64", "65+"], n),
            "geographic_region": states[state_code],
            "claim_amount": rng.lognormal(6, 1, n),
            "is_fraud": (rng.random(n) < 0.08).astype("int32"),
            "decision": (rng.random(n) < flag_rate).astype("int32"),
        }
    )
    frame["fraud_score"] = np.clip(frame["decision"] * 0.6 + rng.random(n) * 0.4, 0, 1)
    frame["model"] = "xgboost"
    frame["model_role"] = "candidate"
    return frame


@pytest.fixture
def many_states(fraud_home: Path) -> Path:
    use_migrated_mlflow_store(fraud_home)
    table_store(get_settings()).write_pandas(many_state_holdout(seed=1), "holdout_predictions")
    return fraud_home


def _fairness(run_id: str) -> TaskResult:
    return run_task(fairness, ["--run_id", run_id], name="fairness")


def _region_verdict(result: TaskResult) -> tuple[bool, float | None]:
    check = next(c for c in result.checks if c.check_name == CHECK_DISPARATE_IMPACT)
    return check.passed, check.metadata["geographic_region.ci_high"]


def test_a_many_state_disparity_fails_whatever_the_seed(
    many_states: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    verdicts = []
    for seed in range(5):
        monkeypatch.setenv("FRAUD_SEED", str(seed))
        verdicts.append(_region_verdict(_fairness(f"seed-{seed}")))
    assert [passed for passed, _ in verdicts] == [False] * 5, verdicts
    assert len({high for _, high in verdicts}) == 1, "the interval must not move with the seed"


def test_the_region_verdict_does_not_change_when_other_attributes_are_added(
    many_states: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = []
    for attributes in (["geographic_region"], ALL_ATTRIBUTES):
        monkeypatch.setenv("FRAUD_PROTECTED_ATTRIBUTES", json.dumps(attributes))
        seen.append(_region_verdict(_fairness(f"attrs-{len(attributes)}")))
    assert seen[0] == seen[1]
    assert seen[0][0] is False
