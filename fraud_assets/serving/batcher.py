"""Micro-batching: requests that arrive together share one prediction per alias.

Scoring one claim costs nearly as much as scoring a hundred: the pyfunc's signature check,
the pandas frame and XGBoost's call overhead are paid per call, not per row. So the
service queues each validated request, waits at most ``batch_max_wait_ms`` for others to
join, and scores the queue with ``ScoringService.score_batch`` on one scoring thread, off
the event loop. While that thread predicts, the event loop parses the next requests,
which form the next batch. Each request still gets its own answer and its own inference
log rows.

asyncio has no batching primitive and the serving libraries that do (Ray Serve, BentoML)
would replace the whole stack, so this is the one small piece written here.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from fraud_assets.serving.service import ClaimsRequest, ScoredClaims

ScoreBatch = Callable[[Sequence[ClaimsRequest]], list[ScoredClaims]]


@dataclass
class _Queued:
    request: ClaimsRequest
    answer: asyncio.Future[ScoredClaims]


class MicroBatcher:
    """Scores queued requests together; ``score`` awaits one request's answer."""

    def __init__(
        self,
        score_batch: ScoreBatch,
        *,
        max_wait_seconds: float,
        max_rows: int,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> None:
        self._score_batch = score_batch
        self._max_wait_seconds = max_wait_seconds
        self._max_rows = max_rows
        self._on_batch = on_batch
        self._queue: list[_Queued] = []
        self._queued_rows = 0
        self._wake: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None

    async def start(self) -> None:
        """Start the batching task on the running event loop."""
        if self._worker is not None:
            raise RuntimeError("the batcher is already running")
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scoring")
        self._worker = asyncio.create_task(self._run(), name="micro-batcher")

    async def stop(self) -> None:
        """Answer what is queued, then stop; the server has stopped taking requests."""
        while self._queue and self._worker is not None and not self._worker.done():
            await asyncio.sleep(self._max_wait_seconds or 0.001)
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    async def score(self, request: ClaimsRequest) -> ScoredClaims:
        """The request's answer, scored together with whatever else is queued."""
        if self._wake is None or self._worker is None or self._worker.done():
            raise RuntimeError("the batcher is not running")
        queued = _Queued(request, asyncio.get_running_loop().create_future())
        self._queue.append(queued)
        self._queued_rows += len(request.rows)
        self._wake.set()
        return await queued.answer

    async def _run(self) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            if self._max_wait_seconds and self._queued_rows < self._max_rows:
                await asyncio.sleep(self._max_wait_seconds)
            batch = self._take()
            if not self._queue:
                self._wake.clear()
            # A client that hung up cancelled its future; its claims need no answer.
            batch = [queued for queued in batch if not queued.answer.done()]
            if not batch:
                continue
            try:
                answers = await loop.run_in_executor(
                    self._executor, self._score_batch, [queued.request for queued in batch]
                )
            except Exception as exc:
                # Each request's handler turns the error into its own HTTP answer.
                for queued in batch:
                    if not queued.answer.done():
                        queued.answer.set_exception(exc)
                continue
            for queued, answer in zip(batch, answers, strict=True):
                if not queued.answer.done():
                    queued.answer.set_result(answer)
            if self._on_batch is not None:
                self._on_batch(len(batch), sum(len(q.request.rows) for q in batch))

    def _take(self) -> list[_Queued]:
        """Queued requests up to ``max_rows`` claims (always at least one request)."""
        taken, rows = 0, 0
        for queued in self._queue:
            if taken and rows + len(queued.request.rows) > self._max_rows:
                break
            taken += 1
            rows += len(queued.request.rows)
        batch, self._queue = self._queue[:taken], self._queue[taken:]
        self._queued_rows -= rows
        return batch
