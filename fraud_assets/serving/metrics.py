"""Prometheus metrics of the scoring service, served at ``GET /metrics``.

Each app gets its own ``CollectorRegistry``, so several apps (tests, replicas in one
process) never share or clash over counters. Request counts and latency are recorded by a
pure ASGI middleware; the model versions and the inference-log counters are read from the
service at scrape time, so they can never disagree with ``/models``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from fraud_assets.serving.service import ScoringService

# Endpoints get their own label; anything else (scanners, typos) shares one.
PATHS = frozenset({"/invocations", "/health", "/ready", "/ping", "/models", "/reload", "/metrics"})
_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip


class ServingMetrics:
    """The service's counters and histograms, in a registry of their own."""

    def __init__(self, service: Callable[[], ScoringService | None]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "fraud_serving_http_requests",
            "HTTP requests answered, by path and status code",
            ["path", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "fraud_serving_http_request_duration_seconds",
            "Time from request received to response sent, by path",
            ["path"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.claims = Counter(
            "fraud_serving_scored_claims",
            "Claims answered, by the route (alias) and model version that answered them",
            ["route", "model_version"],
            registry=self.registry,
        )
        self.batch_requests = Histogram(
            "fraud_serving_batch_requests",
            "Requests scored together in one prediction (micro-batching)",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=self.registry,
        )
        self.reloads = Counter(
            "fraud_serving_alias_reloads",
            "Alias re-resolutions, by trigger (poll or api) and result",
            ["trigger", "result"],
            registry=self.registry,
        )
        self.registry.register(_ServiceCollector(service))

    def observe_batch(self, requests: int, claims: int) -> None:
        self.batch_requests.observe(requests)


class _ServiceCollector(Collector):
    """Model versions served and inference-log counters, read when scraped."""

    def __init__(self, service: Callable[[], ScoringService | None]) -> None:
        self._service = service

    def collect(self) -> Iterator[Metric]:
        service = self._service()
        if service is None:
            return
        state = service.state
        versions = GaugeMetricFamily(
            "fraud_serving_model_version_info",
            "1 for the registered model version behind each alias",
            labels=["model_name", "alias", "model_version"],
        )
        for alias, version in state.versions().items():
            if version is not None:
                versions.add_metric([state.model_name, alias, version], 1.0)
        yield versions
        broken = GaugeMetricFamily(
            "fraud_serving_model_version_broken",
            "1 for each version behind an alias that could not be loaded, with the error",
            labels=["model_name", "alias", "model_version", "error"],
        )
        for failed in state.broken:
            broken.add_metric([failed.name, failed.alias, failed.version, failed.error], 1.0)
        yield broken
        yield GaugeMetricFamily(
            "fraud_serving_ready", "1 when a champion is loaded", value=float(bool(state.champion))
        )
        share = state.split.effective_challenger_share if state.split else 0.0
        yield GaugeMetricFamily(
            "fraud_serving_challenger_share", "Share of claims the challenger answers", value=share
        )
        stats = service.inference_log.stats()
        yield GaugeMetricFamily(
            "fraud_serving_inference_log_buffered_rows",
            "Inference-log rows waiting to be written",
            value=stats.buffered_rows,
        )
        yield CounterMetricFamily(
            "fraud_serving_inference_log_written_rows",
            "Inference-log rows written to the table",
            value=stats.written_rows,
        )
        yield CounterMetricFamily(
            "fraud_serving_inference_log_failed_writes",
            "Inference-log writes that failed (their rows are retried)",
            value=stats.failed_writes,
        )


class MetricsMiddleware:
    """Counts every HTTP request and times it; pure ASGI, so it adds microseconds."""

    def __init__(self, app: ASGIApp, *, metrics: ServingMetrics) -> None:
        self._app = app
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._app(scope, receive, send_and_record)
        finally:
            path = scope["path"] if scope["path"] in PATHS else "other"
            self._metrics.requests.labels(path, str(status)).inc()
            self._metrics.latency.labels(path).observe(time.perf_counter() - started)
