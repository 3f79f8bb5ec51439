"""When drift on ``psi_report`` should start a retraining run: one request per drift episode.

A psi_report materialization is *major drift* when its ``drift_level`` metadata is ``major``
or one of its drift checks failed with ERROR severity in the same run. Each materialization
is judged once (its storage id is the run key), and after a request no other is made until
the cooldown has passed, so repeated drift monitoring during one episode (or while the
retraining is still running) starts one retraining run, not one per measurement.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime

MAJOR = "major"


@dataclass(frozen=True)
class DriftCursor:
    """What the drift sensor remembers between evaluations."""

    last_storage_id: int = 0
    last_requested_at: float | None = None
    last_run_key: str | None = None

    @classmethod
    def parse(cls, cursor: str | None) -> DriftCursor:
        if not cursor:
            return cls()
        try:
            return cls(**json.loads(cursor))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"drift sensor cursor is not a DriftCursor: {cursor[:200]!r}") from exc

    def dump(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))


@dataclass(frozen=True)
class PsiObservation:
    """The latest psi_report materialization and its drift verdicts."""

    storage_id: int
    run_id: str
    drift_level: str | None
    max_psi: float | None
    failed_error_checks: Sequence[str] = field(default_factory=tuple)

    @property
    def is_major(self) -> bool:
        return self.drift_level == MAJOR or bool(self.failed_error_checks)

    @property
    def run_key(self) -> str:
        return f"psi_report:{self.storage_id}"

    def describe(self) -> str:
        psi = "n/a" if self.max_psi is None else f"{self.max_psi:.3f}"
        failed = f", failed ERROR checks {sorted(self.failed_error_checks)}"
        return (
            f"psi_report (storage id {self.storage_id}, run {self.run_id[:8]}): drift_level="
            f"{self.drift_level or 'unknown'}, max_psi={psi}"
            + (failed if self.failed_error_checks else "")
        )


@dataclass(frozen=True)
class DriftDecision:
    retrain: bool
    reason: str
    cursor: DriftCursor
    run_key: str | None = None


def decide(
    observation: PsiObservation | None,
    cursor: DriftCursor,
    *,
    now: float,
    cooldown_minutes: float,
) -> DriftDecision:
    """Whether ``observation`` should start retraining, and the cursor to keep."""
    if observation is None:
        return DriftDecision(False, "psi_report has never been materialized", cursor)
    if observation.storage_id <= cursor.last_storage_id:
        return DriftDecision(
            False,
            f"no psi_report materialization since storage id {cursor.last_storage_id}",
            cursor,
        )
    judged = replace(cursor, last_storage_id=observation.storage_id)
    if not observation.is_major:
        return DriftDecision(False, f"{observation.describe()}: no retraining needed", judged)
    if cursor.last_requested_at is not None:
        ready_at = cursor.last_requested_at + cooldown_minutes * 60
        if now < ready_at:
            until = datetime.fromtimestamp(ready_at, UTC).isoformat(timespec="seconds")
            return DriftDecision(
                False,
                f"{observation.describe()}: major drift, but retraining was already requested "
                f"({cursor.last_run_key}); cooldown until {until}",
                judged,
            )
    return DriftDecision(
        True,
        f"{observation.describe()}: major drift, requesting retraining",
        replace(judged, last_requested_at=now, last_run_key=observation.run_key),
        run_key=observation.run_key,
    )
