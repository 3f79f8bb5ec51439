"""The fairness policy: which metrics gate, at what threshold, over which attributes, how.

A policy is pinned per bundle target in ``fairness_policy.yaml`` (packaged with the code, so a
bundle job on a cluster reads the same file Dagster does). The fairness step runs under the
policy in force (the pinned one, with run-time overrides from settings) and records it with
every verdict; registration compares the recorded policy with the pinned one and refuses a
verdict computed under a weaker policy. No Dagster imports.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

if TYPE_CHECKING:
    from fraud_assets.settings import FraudSettings

POLICY_FILE = "fairness_policy.yaml"
IntervalMethod = Literal["mover-wilson-bonferroni"]


@dataclass(frozen=True)
class FigureRule:
    """How a cross-group figure is judged against its threshold."""

    fails_below: bool  # ratios fail below the threshold, differences above it
    meaning: str


# The figures a policy may gate; each is also a check name on fairness_report.
GATEABLE_FIGURES: dict[str, FigureRule] = {
    "false_positive_rate_ratio": FigureRule(
        fails_below=True,
        meaning="lowest group false-positive rate over the highest (honest claims flagged)",
    ),
    "equal_opportunity_difference": FigureRule(
        fails_below=False,
        meaning="highest group true-positive rate minus the lowest (fraud caught)",
    ),
    "disparate_impact_ratio": FigureRule(
        fails_below=True, meaning="lowest group flag rate over the highest (demographic parity)"
    ),
}


class PolicyError(ValueError):
    """The pinned policy file or a run-time override is invalid."""


class FairnessPolicy(BaseModel):
    """Everything a fairness verdict depends on besides the data."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    attributes: tuple[str, ...] = Field(min_length=1)
    gates: dict[str, float] = Field(min_length=1)
    advisories: dict[str, float] = Field(default_factory=dict)
    confidence_level: float = Field(gt=0.5, lt=1.0)
    min_group_size: int = Field(ge=1)
    interval: IntervalMethod = "mover-wilson-bonferroni"
    # Columns whose shared values make claims dependent (a patient's, a provider's claims):
    # each group rate's interval uses its counts over the design effect. Empty: independent.
    clusters: tuple[str, ...] = ()

    @field_validator("attributes", "clusters")
    @classmethod
    def _unique(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(value))

    @field_validator("gates", "advisories")
    @classmethod
    def _known_figures(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(GATEABLE_FIGURES))
        if unknown:
            known = sorted(GATEABLE_FIGURES)
            raise ValueError(f"unknown fairness figure(s) {unknown}; a policy can gate {known}")
        return value

    def threshold(self, figure: str) -> float | None:
        """The figure's gate threshold, else its advisory threshold, else None."""
        return self.gates.get(figure, self.advisories.get(figure))

    def to_dict(self) -> dict[str, Any]:
        return json.loads(self.model_dump_json())

    @property
    def fingerprint(self) -> str:
        """A short hash of the policy, recorded with verdicts and on model versions."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]

    def weaker_than(self, pinned: FairnessPolicy) -> list[str]:
        """Every way this policy is weaker than ``pinned`` (empty: at least as strict)."""
        problems = []
        missing = [a for a in pinned.attributes if a not in self.attributes]
        if missing:
            problems.append(f"protected attributes {missing} are not judged")
        for figure, pinned_threshold in pinned.gates.items():
            rule = GATEABLE_FIGURES[figure]
            if figure not in self.gates:
                problems.append(f"{figure} does not gate (pinned: {pinned_threshold:g})")
                continue
            threshold = self.gates[figure]
            looser = (
                threshold < pinned_threshold if rule.fails_below else threshold > pinned_threshold
            )
            if looser:
                problems.append(
                    f"{figure} threshold {threshold:g} is looser than {pinned_threshold:g}"
                )
        if self.confidence_level > pinned.confidence_level:
            problems.append(
                f"confidence level {self.confidence_level:g} is above {pinned.confidence_level:g} "
                "(wider intervals fail less)"
            )
        if self.min_group_size > pinned.min_group_size:
            problems.append(
                f"min_group_size {self.min_group_size} is above {pinned.min_group_size} "
                "(fewer groups are judged)"
            )
        if self.interval != pinned.interval:
            problems.append(f"interval method {self.interval!r} is not {pinned.interval!r}")
        # Fewer clusters give narrower intervals (they fail more); more, wider ones.
        widening = [c for c in self.clusters if c not in pinned.clusters]
        if widening:
            problems.append(
                f"clusters {widening} are not pinned (wider intervals fail less; pinned: "
                f"{list(pinned.clusters)})"
            )
        return problems


@cache
def _policy_file() -> dict[str, Any]:
    text = (resources.files("fraud_assets.governance") / POLICY_FILE).read_text(encoding="utf-8")
    document = yaml.safe_load(text) or {}
    if "default" not in document:
        raise PolicyError(f"{POLICY_FILE} has no 'default' policy")
    return document


def pinned_policy(target: str) -> FairnessPolicy:
    """The policy approved for ``target``: the file's default with the target's changes."""
    document = _policy_file()
    targets = document.get("targets") or {}
    if target not in targets:
        raise PolicyError(
            f"{POLICY_FILE} pins no policy for target {target!r}; it has {sorted(targets)}"
        )
    merged = {**document["default"], **(targets[target] or {})}
    try:
        return FairnessPolicy(**merged)
    except ValidationError as exc:
        raise PolicyError(f"{POLICY_FILE}, target {target!r}: {exc}") from None


def policy_in_force(settings: FraudSettings) -> FairnessPolicy:
    """The pinned policy with this run's overrides (FRAUD_PROTECTED_ATTRIBUTES, FRAUD_FAIRNESS__*).

    An override may make the policy stricter or weaker; a weaker one is still computed and
    reported, and registration refuses to promote on it.
    """
    pinned = pinned_policy(settings.target)
    overrides: dict[str, Any] = {}
    if settings.protected_attributes is not None:
        overrides["attributes"] = tuple(settings.protected_attributes)
    for name in ("gates", "confidence_level", "min_group_size", "clusters"):
        value = getattr(settings.fairness, name)
        if value is not None:
            overrides[name] = value
    if not overrides:
        return pinned
    try:
        return FairnessPolicy(**{**pinned.model_dump(), **overrides})
    except ValidationError as exc:
        raise PolicyError(f"fairness policy overrides {sorted(overrides)}: {exc}") from None


def with_attributes(policy: FairnessPolicy, attributes: Sequence[str]) -> FairnessPolicy:
    """``policy`` also judging ``attributes`` (a mapping's protected extras, ``xp_*``).

    More attributes is a stricter policy (``weaker_than`` asks only that the pinned ones are
    judged), so a verdict under it still supports promotion; the fingerprint records them.
    """
    added = [a for a in attributes if a not in policy.attributes]
    if not added:
        return policy
    return FairnessPolicy(**{**policy.model_dump(), "attributes": (*policy.attributes, *added)})


def protected_attributes(settings: FraudSettings) -> list[str]:
    """The protected attributes of the policy in force: reported on, never model inputs."""
    return list(policy_in_force(settings).attributes)


def recorded_policy_problems(metadata: dict[str, Any], pinned: FairnessPolicy) -> list[str]:
    """Why a verdict's recorded policy cannot support promotion under ``pinned`` (empty: it can).

    Registration calls this on every fairness verdict it relies on, so a verdict computed
    under a weaker policy is refused even when its own ``policy_at_least_pinned`` check passed.
    """
    recorded = metadata.get("policy")
    if not isinstance(recorded, dict):
        return ["the verdict records no fairness policy"]
    try:
        policy = FairnessPolicy(**recorded)
    except (TypeError, ValidationError) as exc:
        return [f"the recorded fairness policy is not readable: {exc}"]
    return policy.weaker_than(pinned)
