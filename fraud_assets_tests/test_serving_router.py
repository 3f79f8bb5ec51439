"""The A/B router: share within tolerance, sticky across calls and processes, safe defaults."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fraud_assets.serving.router import CHALLENGER, CHAMPION, TrafficSplit, routing_bucket
from fraud_assets.settings import get_settings

IDS = [f"CLM{i:07d}" for i in range(20_000)]


def split(
    share: float = 0.1, *, challenger: str | None = "2", salt: str = "s1", **kw: bool
) -> TrafficSplit:
    return TrafficSplit(
        champion_version="1",
        challenger_version=challenger,
        challenger_share=share,
        salt=salt,
        **kw,
    )


def challenger_ids(rule: TrafficSplit) -> set[str]:
    return {claim_id for claim_id in IDS if rule.alias_for(claim_id) == CHALLENGER}


@pytest.mark.parametrize("share", [0.1, 0.5])
def test_challenger_share_is_within_tolerance_on_20k_claims(share: float) -> None:
    observed = len(challenger_ids(split(share))) / len(IDS)
    # Binomial sd at 20k claims is at most 0.0035; 0.012 is over three of them.
    assert observed == pytest.approx(share, abs=0.012)


def test_buckets_are_uniform_over_deciles() -> None:
    counts = [0] * 10
    for claim_id in IDS:
        counts[int(routing_bucket(claim_id, salt="s1") * 10)] += 1
    assert all(abs(c - 2000) < 200 for c in counts), counts


def test_assignment_is_sticky_and_independent_of_request_order() -> None:
    first = split(0.3)
    again = split(0.3)  # a fresh rule, as after a /reload with the same settings
    batch = IDS[:500]
    assignment = first.assign(list(reversed(batch)))
    by_claim = {
        claim_id: alias
        for alias, positions in assignment.answered_by.items()
        for claim_id in (list(reversed(batch))[p] for p in positions)
    }
    assert by_claim == {claim_id: again.alias_for(claim_id) for claim_id in batch}
    assert [first.alias_for(c) for c in batch] == [first.alias_for(c) for c in batch]


def test_assignment_is_the_same_in_another_process(tmp_path: Path) -> None:
    """Another replica (another PYTHONHASHSEED) routes every claim the same way."""
    script = (
        "import json, sys\n"
        "from fraud_assets.serving.router import TrafficSplit\n"
        "rule = TrafficSplit(champion_version='1', challenger_version='2',"
        " challenger_share=0.3, salt='s1')\n"
        "print(json.dumps([rule.alias_for(f'CLM{i:07d}') for i in range(300)]))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    here = split(0.3)
    assert json.loads(out.stdout) == [here.alias_for(c) for c in IDS[:300]]


def test_raising_the_share_only_moves_claims_to_the_challenger() -> None:
    at_10, at_20 = challenger_ids(split(0.1)), challenger_ids(split(0.2))
    assert at_10 < at_20
    assert len(at_20) > 1.7 * len(at_10)


def test_a_new_salt_reshuffles_the_groups() -> None:
    a, b = challenger_ids(split(0.1, salt="s1")), challenger_ids(split(0.1, salt="s2"))
    # Independent groups overlap on about share * size claims (10%), not on most of them.
    assert len(a & b) < 0.2 * len(a)


@pytest.mark.parametrize(
    "rule",
    [
        split(0.5, challenger=None),
        split(0.5, challenger="1"),  # the challenger alias points at the champion's version
        split(0.0),
    ],
    ids=["no-challenger", "challenger-is-champion", "zero-share"],
)
def test_without_a_distinct_challenger_everything_goes_to_champion(rule: TrafficSplit) -> None:
    assignment = rule.assign(IDS)
    assert assignment.answered_by == {CHAMPION: list(range(len(IDS)))}
    assert assignment.shadowed == []
    assert rule.effective_challenger_share == 0.0


def test_full_share_sends_everything_to_the_challenger() -> None:
    assert split(1.0).assign(IDS[:100]).answered_by == {CHALLENGER: list(range(100))}


def test_shadow_mode_answers_with_champion_and_shadows_the_challenger_group() -> None:
    live, shadow = split(0.3), split(0.3, shadow=True)
    assignment = shadow.assign(IDS[:1000])
    assert assignment.answered_by == {CHAMPION: list(range(1000))}
    assert assignment.shadowed == live.assign(IDS[:1000]).answered_by[CHALLENGER]
    assert shadow.effective_challenger_share == 0.0
    assert all(shadow.alias_for(c) == CHAMPION for c in IDS[:1000])


def test_share_outside_unit_interval_is_rejected() -> None:
    with pytest.raises(ValueError, match="challenger_share"):
        split(1.5)


def test_rule_comes_from_settings(fraud_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRAUD_SERVING__CHALLENGER_TRAFFIC", "0.25")
    monkeypatch.setenv("FRAUD_SERVING__ROUTING_SALT", "spring-test")
    monkeypatch.setenv("FRAUD_SERVING__SHADOW", "true")
    rule = TrafficSplit.from_settings(
        get_settings().serving, champion_version="4", challenger_version="5"
    )
    assert (rule.challenger_share, rule.salt, rule.shadow) == (0.25, "spring-test", True)
    monkeypatch.setenv("FRAUD_SERVING__CHALLENGER_TRAFFIC", "1.2")
    with pytest.raises(ValueError, match="challenger_traffic"):
        get_settings()


def test_alias_names_are_the_registry_aliases() -> None:
    from fraud_assets.ml import registry

    assert (CHAMPION, CHALLENGER) == (registry.CHAMPION, registry.CHALLENGER)
