"""Champion/challenger routing: which model alias answers each claim.

The assignment is a pure function of ``(salt, claim_id)``, so it is sticky (a claim that is
re-submitted, or scored by another replica, lands on the same model) and reproducible
offline (an analyst can recompute each claim's group from the inference log). Raising the
challenger share only moves claims from champion to challenger, never back: the first 10%
stay in the group when the share grows to 20%.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from fraud_assets.settings import ServingSettings

Alias = Literal["champion", "challenger"]
CHAMPION: Alias = "champion"
CHALLENGER: Alias = "challenger"

_HASH_SPACE = float(2**64)


def routing_bucket(claim_id: str, *, salt: str) -> float:
    """A uniform number in [0, 1) fixed by ``(salt, claim_id)``, the same in every process."""
    # hashlib, not hash(): Python salts str hashes per process, which would break stickiness.
    digest = hashlib.blake2b(f"{salt}:{claim_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _HASH_SPACE


@dataclass(frozen=True)
class Assignment:
    """Row positions of one request per alias, plus the rows the challenger shadows."""

    answered_by: dict[Alias, list[int]] = field(default_factory=dict)
    shadowed: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class TrafficSplit:
    """The routing rule in force: model versions behind the aliases and the challenger share."""

    champion_version: str
    challenger_version: str | None
    challenger_share: float
    salt: str
    shadow: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.challenger_share <= 1.0:
            raise ValueError(f"challenger_share must lie in [0, 1], got {self.challenger_share}")

    @classmethod
    def from_settings(
        cls,
        serving: ServingSettings,
        *,
        champion_version: str,
        challenger_version: str | None,
        challenger_may_decide: bool = True,
    ) -> TrafficSplit:
        """The configured split; a challenger that may not decide is shadowed whatever it says."""
        return cls(
            champion_version=champion_version,
            challenger_version=challenger_version,
            challenger_share=serving.challenger_traffic,
            salt=serving.routing_salt,
            shadow=serving.shadow or not challenger_may_decide,
        )

    @property
    def challenger_active(self) -> bool:
        """False when no challenger exists or it is the champion's own version."""
        return (
            self.challenger_version is not None
            and self.challenger_version != self.champion_version
            and self.challenger_share > 0.0
        )

    @property
    def effective_challenger_share(self) -> float:
        """Share of claims the challenger answers (0 in shadow mode: it only listens)."""
        if not self.challenger_active or self.shadow:
            return 0.0
        return self.challenger_share

    def in_challenger_group(self, claim_id: str) -> bool:
        """Whether the claim falls in the challenger's share of the hash space."""
        return (
            self.challenger_active
            and routing_bucket(claim_id, salt=self.salt) < self.challenger_share
        )

    def alias_for(self, claim_id: str) -> Alias:
        """The alias whose answer the caller receives for this claim."""
        if self.in_challenger_group(claim_id) and not self.shadow:
            return CHALLENGER
        return CHAMPION

    def assign(self, claim_ids: Sequence[str]) -> Assignment:
        """Group a request's rows by the alias that answers them (and those shadowed)."""
        champion: list[int] = []
        challenger: list[int] = []
        for position, claim_id in enumerate(claim_ids):
            (challenger if self.in_challenger_group(claim_id) else champion).append(position)
        if self.shadow:
            return Assignment(
                answered_by={CHAMPION: list(range(len(claim_ids)))}, shadowed=challenger
            )
        answered_by: dict[Alias, list[int]] = {}
        if champion:
            answered_by[CHAMPION] = champion
        if challenger:
            answered_by[CHALLENGER] = challenger
        return Assignment(answered_by=answered_by)
