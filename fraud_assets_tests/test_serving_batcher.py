"""The micro-batcher: concurrent requests share a call, each gets its own answer or error."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np
import pytest

from fraud_assets.serving.batcher import MicroBatcher
from fraud_assets.serving.service import ClaimsRequest, ScoredClaims


class FakeScorer:
    """Scores each claim as its position in the request; records the batches it saw."""

    def __init__(self, fail_with: Exception | None = None) -> None:
        self.batches: list[list[str]] = []
        self.fail_with = fail_with

    def __call__(self, requests: Sequence[ClaimsRequest]) -> list[ScoredClaims]:
        self.batches.append([request.request_id for request in requests])
        if self.fail_with is not None:
            raise self.fail_with
        return [
            ScoredClaims(
                request_id=request.request_id,
                claim_ids=[row["claim_id"] for row in request.rows],
                fraud_score=np.arange(len(request.rows), dtype="float64"),
                decision=np.zeros(len(request.rows), dtype="int64"),
                model_alias=["champion"] * len(request.rows),
                model_version=["1"] * len(request.rows),
                reasons=[None] * len(request.rows),
            )
            for request in requests
        ]


def request(request_id: str, claims: int = 1) -> ClaimsRequest:
    rows = [{"claim_id": f"{request_id}-{i}"} for i in range(claims)]
    return ClaimsRequest(request_id=request_id, rows=rows)


async def score_all(
    batcher: MicroBatcher, requests: list[ClaimsRequest]
) -> list[ScoredClaims | BaseException]:
    await batcher.start()
    try:
        return await asyncio.gather(*(batcher.score(r) for r in requests), return_exceptions=True)
    finally:
        await batcher.stop()


def test_concurrent_requests_share_calls_and_get_their_own_answers() -> None:
    scorer = FakeScorer()
    batcher = MicroBatcher(scorer, max_wait_seconds=0.002, max_rows=256)
    requests = [request(f"r{i}", claims=1 + i % 3) for i in range(40)]
    answers = asyncio.run(score_all(batcher, requests))
    assert len(scorer.batches) < len(requests) / 4, scorer.batches
    assert sorted(rid for batch in scorer.batches for rid in batch) == sorted(
        r.request_id for r in requests
    )
    for sent, answer in zip(requests, answers, strict=True):
        assert isinstance(answer, ScoredClaims)
        assert answer.request_id == sent.request_id
        assert answer.claim_ids == [row["claim_id"] for row in sent.rows]


def test_a_batch_never_exceeds_max_rows_unless_one_request_does() -> None:
    scorer = FakeScorer()
    batcher = MicroBatcher(scorer, max_wait_seconds=0.002, max_rows=5)
    requests = [request(f"r{i}", claims=2) for i in range(10)] + [request("big", claims=9)]
    answers = asyncio.run(score_all(batcher, requests))
    assert all(isinstance(answer, ScoredClaims) for answer in answers)
    sizes = {rid: 9 if rid == "big" else 2 for rid in (r.request_id for r in requests)}
    for batch in scorer.batches:
        assert batch == ["big"] or sum(sizes[rid] for rid in batch) <= 5, batch


def test_a_scoring_error_reaches_every_request_of_the_batch() -> None:
    scorer = FakeScorer(fail_with=LookupError("no champion"))
    batcher = MicroBatcher(scorer, max_wait_seconds=0.002, max_rows=256)
    answers = asyncio.run(score_all(batcher, [request(f"r{i}") for i in range(5)]))
    assert all(isinstance(answer, LookupError) for answer in answers)


def test_scoring_before_start_is_refused() -> None:
    batcher = MicroBatcher(FakeScorer(), max_wait_seconds=0.0, max_rows=1)
    with pytest.raises(RuntimeError, match="not running"):
        asyncio.run(batcher.score(request("r0")))
