"""Per-check cursors for the failed-check alert sensor: each evaluation is handled once.

Dagster stores one row per check execution. The row is created PLANNED when a run starts
the check and updated in place (same id) when the result arrives, so a cursor that only
kept the highest id seen would skip a slow check finishing after a faster one. Each check's
cursor therefore keeps a watermark (every row at or below it is handled) plus the ids
handled above it while an older row is still in progress.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class CheckCursor:
    watermark: int
    done: frozenset[int] = field(default_factory=frozenset)

    def handled(self, record_id: int) -> bool:
        return record_id <= self.watermark or record_id in self.done


def advance(
    cursor: CheckCursor, finished: Iterable[int], in_progress: Iterable[int]
) -> CheckCursor:
    """The cursor after handling ``finished`` rows while ``in_progress`` rows are still open."""
    done = {i for i in cursor.done | set(finished) if i > cursor.watermark}
    open_ids = [i for i in in_progress if i > cursor.watermark]
    if open_ids:
        # Everything below the oldest open row is handled (rows newer than the watermark are
        # either done or open), so the watermark can move up to just below it.
        oldest_open = min(open_ids)
        below = [i for i in done if i < oldest_open]
        watermark = max([cursor.watermark, *below])
    else:
        watermark = max([cursor.watermark, *done])
    return CheckCursor(watermark, frozenset(i for i in done if i > watermark))


def load_cursors(cursor: str | None) -> dict[str, CheckCursor]:
    if not cursor:
        return {}
    data: Any = json.loads(cursor)
    if not isinstance(data, dict):
        raise ValueError(f"failed-check sensor cursor is not a JSON object: {cursor[:200]!r}")
    return {
        name: CheckCursor(int(w), frozenset(int(i) for i in done))
        for name, (w, done) in data.items()
    }


def dump_cursors(cursors: Mapping[str, CheckCursor]) -> str:
    return json.dumps(
        {name: [c.watermark, sorted(c.done)] for name, c in sorted(cursors.items())},
        separators=(",", ":"),
    )
