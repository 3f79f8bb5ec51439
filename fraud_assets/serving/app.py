"""HTTP wiring of the scoring service: MLflow-serving-compatible ``/invocations`` and friends.

``create_app(settings)`` builds nothing until the app starts: the lifespan resolves the
model aliases, loads the models, starts the micro-batcher, the inference-log writer and
the registry poll, and on shutdown answers what is queued and writes every buffered log
row. Bad input is always a 4xx naming the problem, never a 5xx.
"""

from __future__ import annotations

import asyncio
import codecs
import logging
import re
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse
from mlflow.exceptions import MlflowException
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError

from fraud_assets.ml.pyfunc import FeatureFrameError
from fraud_assets.ml.scoring import ModelOutputError
from fraud_assets.serving.batcher import MicroBatcher
from fraud_assets.serving.contract import (
    DEFAULT_CONTRACT,
    PAYLOAD_FORMATS,
    BrokenVersionInfo,
    ErrorResponse,
    InferenceLogInfo,
    InvocationBody,
    InvocationRequest,
    InvocationResponse,
    ModelsResponse,
    RequestContract,
    ServedModelInfo,
    TrafficInfo,
    claim_request_contract,
)
from fraud_assets.serving.inference_log import InferenceLogBacklogError
from fraud_assets.serving.metrics import MetricsMiddleware, ServingMetrics
from fraud_assets.serving.models import BrokenVersion, NoChampionError, ServedModel
from fraud_assets.serving.service import ClaimsRequest, ScoringService
from fraud_assets.settings import FraudSettings, get_settings

log = logging.getLogger(__name__)

INVALID_INPUT = "INVALID_PARAMETER_VALUE"
REQUEST_ID_HEADER = "x-request-id"
JSON = "application/json"
SEND = f"send a JSON object with one of {', '.join(PAYLOAD_FORMATS)}"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_ERRORS: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorResponse, "description": "The body is over max_request_bytes"},
    415: {"model": ErrorResponse, "description": "The body is not sent as application/json"},
    422: {"model": ErrorResponse, "description": "Not JSON, unknown format, bad or too many rows"},
    503: {
        "model": ErrorResponse,
        "description": "No champion model, a version that cannot be loaded, or the log is down",
    },
}
_REQUEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {JSON: {"schema": {"$ref": "#/components/schemas/InvocationRequest"}}},
    }
}


def create_app(
    settings: FraudSettings | None = None, *, service: ScoringService | None = None
) -> FastAPI:
    """The scoring app; ``service`` replaces the one built from ``settings`` at startup."""
    holder: dict[str, ScoringService] = {}
    metrics = ServingMetrics(lambda: holder.get("service"))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        resolved = settings or get_settings()
        scoring = service or ScoringService.from_settings(resolved)
        # Loading models and opening the registry block; keep them off the event loop.
        await run_in_threadpool(scoring.start)
        serving = scoring.settings.serving
        batcher = MicroBatcher(
            scoring.score_batch,
            max_wait_seconds=serving.batch_max_wait_ms / 1000,
            max_rows=serving.batch_max_rows,
            on_batch=metrics.observe_batch,
        )
        await batcher.start()
        app.state.service, app.state.batcher = scoring, batcher
        holder["service"] = scoring
        poll = None
        if serving.reload_seconds > 0:
            poll = asyncio.create_task(
                _poll_registry(scoring, every=serving.reload_seconds, metrics=metrics),
                name="registry-poll",
            )
        try:
            yield
        finally:
            if poll is not None:
                poll.cancel()
            await batcher.stop()
            await run_in_threadpool(scoring.stop)

    app = FastAPI(
        title="fraud_assets scoring service",
        summary="Champion/challenger fraud scores, MLflow serving request format",
        lifespan=lifespan,
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_exception_handler(NoChampionError, _error_handler(503, "NO_CHAMPION"))
    app.add_exception_handler(
        InferenceLogBacklogError, _error_handler(503, "INFERENCE_LOG_UNAVAILABLE")
    )
    # A model that breaks its own contract is the server's fault, never the caller's.
    app.add_exception_handler(ModelOutputError, _error_handler(500, "MODEL_OUTPUT_INVALID"))
    app.add_exception_handler(FeatureFrameError, _error_handler(500, "MODEL_INPUT_MISMATCH"))

    @app.post(
        "/invocations",
        response_model=InvocationResponse,
        responses=_ERRORS,
        openapi_extra=_REQUEST_BODY,
    )
    async def invocations(request: Request) -> Response:
        """Score claims: each is answered by the alias its claim_id routes to."""
        content_type = request.headers.get("content-type", JSON).split(";")[0].strip().lower()
        if content_type not in (JSON, ""):
            return _error(
                415, "BAD_REQUEST", f"content-type {content_type[:80]!r} is not supported; {SEND}"
            )
        scoring = _service(request)
        limit = scoring.settings.serving.max_request_bytes
        raw = await _read_body(request, limit)
        if raw is None:
            return _error(
                413,
                "REQUEST_TOO_LARGE",
                f"the request body is over {limit} bytes; send fewer claims per request "
                "(or raise FRAUD_SERVING__MAX_REQUEST_BYTES)",
            )
        context = {
            "max_records": scoring.settings.serving.max_records,
            "thresholds": scoring.settings.thresholds,
        }
        try:
            if len(raw) <= INLINE_PARSE_BYTES:
                body = parse_invocation(raw, context=context, contract=scoring.request_contract())
            else:
                # A large body takes milliseconds to parse: off the event loop, so requests
                # arriving meanwhile are not stalled behind it.
                body = await run_in_threadpool(
                    parse_invocation, raw, context=context, contract=scoring.request_contract()
                )
        except ValidationError as exc:
            return _json(describe_invalid_request(exc.errors(include_input=False)), 422)
        request_id = _request_id(request)
        batcher: MicroBatcher = request.app.state.batcher
        scored = await batcher.score(ClaimsRequest(request_id=request_id, rows=body.rows()))
        routes = Counter(zip(scored.model_alias, scored.model_version, strict=True))
        for (alias, version), count in routes.items():
            metrics.claims.labels(alias, version).inc(count)
        scores = scored.fraud_score.tolist()
        answer = {
            "predictions": scores,
            "scores": [
                {
                    "claim_id": claim_id,
                    "fraud_score": score,
                    "decision": decision,
                    "model_alias": alias,
                    "model_version": version,
                    "reasons": [r.as_dict() for r in reasons or ()],
                }
                for claim_id, score, decision, alias, version, reasons in zip(
                    scored.claim_ids,
                    scores,
                    scored.decision.tolist(),
                    scored.model_alias,
                    scored.model_version,
                    scored.reasons,
                    strict=True,
                )
            ],
            "request_id": request_id,
        }
        return _json(answer, 200, headers={REQUEST_ID_HEADER: request_id})

    @app.get("/health")
    async def health() -> JSONResponse:
        """Liveness: the process answers. Whether it can score is ``/ready``."""
        return JSONResponse({"status": "alive"})

    @app.get("/ready", responses={503: {"description": "No champion loaded"}})
    async def ready(request: Request) -> JSONResponse:
        """Readiness: a champion is loaded, so ``/invocations`` can answer.

        ``degraded`` is still ready: a version behind an alias could not be loaded and is
        skipped, and the message says what serves instead.
        """
        state = _service(request).state
        broken = [_broken_info(b).model_dump() for b in state.broken]
        if state.champion is None:
            return JSONResponse(
                {
                    "status": "no_champion",
                    "message": state.no_champion_message(),
                    "broken_versions": broken,
                },
                503,
            )
        degraded = state.degraded_message()
        return JSONResponse(
            {
                "status": "degraded" if degraded else "ready",
                "model_name": state.model_name,
                "champion_version": state.champion.version,
                "challenger_version": state.challenger.version if state.challenger else None,
                "challenger_decides": state.challenger_decides,
                "broken_versions": broken,
                **({"message": degraded} if degraded else {}),
            }
        )

    # MLflow's scoring server answers /ping when its model is loaded; load balancers set up
    # for it keep working.
    app.add_api_route("/ping", ready, methods=["GET"], include_in_schema=False)

    @app.get("/metrics", response_class=PlainTextResponse)
    async def prometheus_metrics() -> Response:
        """Request counts and latency, model versions served, inference-log counters."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/models", response_model=ModelsResponse)
    async def models(request: Request) -> ModelsResponse:
        """The versions behind the aliases, the traffic split and the inference-log counters."""
        return _models_response(_service(request), changed=None)

    @app.post("/reload", response_model=ModelsResponse, responses=_ERRORS)
    async def reload(request: Request) -> Any:
        """Re-resolve the aliases now, without waiting for the next poll of the registry."""
        scoring = _service(request)
        try:
            changed = await run_in_threadpool(scoring.reload)
        except MlflowException as exc:
            metrics.reloads.labels("api", "failed").inc()
            # The previous models keep serving; the caller learns why nothing changed.
            log.error("reload failed, still serving %s: %s", scoring.state.versions(), exc.message)
            return _error(503, "MODEL_REGISTRY_UNAVAILABLE", f"model registry: {exc.message}")
        metrics.reloads.labels("api", "changed" if changed else "unchanged").inc()
        state = scoring.state
        if state.broken:
            # The versions that loaded are in force; the caller learns which did not.
            message = state.degraded_message() if state.champion else state.no_champion_message()
            return _error(503, "MODEL_VERSION_UNLOADABLE", message or "")
        if state.champion is None:
            return _error(503, "NO_CHAMPION", state.no_champion_message())
        return _models_response(scoring, changed=changed)

    _document_request_body(app, settings)
    return app


async def _poll_registry(service: ScoringService, *, every: float, metrics: ServingMetrics) -> None:
    """Follow alias moves: re-resolve every ``every`` seconds, loading off the request path.

    ``ScoringService.reload`` loads a new version completely before swapping the state in
    one assignment, so requests in flight finish on the old pair and the next batch uses
    the new one. A failed poll keeps the loaded models and is retried at the next tick.
    """
    while True:
        await asyncio.sleep(every)
        try:
            changed = await run_in_threadpool(service.reload)
        except Exception:
            metrics.reloads.labels("poll", "failed").inc()
            log.exception("registry poll failed; still serving %s", service.state.versions())
            continue
        metrics.reloads.labels("poll", "changed" if changed else "unchanged").inc()


def _document_request_body(app: FastAPI, settings: FraudSettings | None) -> None:
    """Put the request body of the configured shape in the OpenAPI page, as
    ``InvocationRequest``; the handler parses the body itself."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            shape = (settings or get_settings()).serving.request_shape
            body = claim_request_contract().invocation if shape == "claim" else InvocationRequest
            request = body.model_json_schema(ref_template="#/components/schemas/{model}")
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(request.pop("$defs", {}))
            components["InvocationRequest"] = request
        return app.openapi_schema or schema

    app.openapi = openapi  # type: ignore[method-assign]


def _service(request: Request) -> ScoringService:
    service: ScoringService = request.app.state.service
    return service


def _request_id(request: Request) -> str:
    given = request.headers.get(REQUEST_ID_HEADER, "")
    return given if _REQUEST_ID.match(given) else uuid.uuid4().hex


def _models_response(service: ScoringService, *, changed: bool | None) -> ModelsResponse:
    state = service.state
    serving = service.settings.serving
    split = state.split
    stats = service.inference_log.stats()
    return ModelsResponse(
        model_name=state.model_name,
        champion=_model_info(state.champion),
        challenger=_model_info(state.challenger),
        traffic=TrafficInfo(
            challenger_traffic=serving.challenger_traffic,
            effective_challenger_share=split.effective_challenger_share if split else 0.0,
            shadow=split.shadow if split else serving.shadow,
            routing="hash(routing_salt, claim_id) < challenger_traffic -> challenger",
        ),
        inference_log=InferenceLogInfo(
            table=stats.table,
            buffered_rows=stats.buffered_rows,
            written_rows=stats.written_rows,
            failed_writes=stats.failed_writes,
            last_error=stats.last_error,
        ),
        broken_versions=[_broken_info(broken) for broken in state.broken],
        resolved_at=state.resolved_at.isoformat() if state.resolved_at else None,
        changed=changed,
    )


def _model_info(served: ServedModel | None) -> ServedModelInfo | None:
    if served is None:
        return None
    return ServedModelInfo(
        alias=served.alias,
        version=served.version,
        run_id=served.run_id,
        source=served.source,
        loaded_at=served.loaded_at.isoformat(),
        gates_passed=served.gates_passed,
    )


def _broken_info(broken: BrokenVersion) -> BrokenVersionInfo:
    return BrokenVersionInfo(
        model_name=broken.name, alias=broken.alias, version=broken.version, error=broken.error
    )


def _json(content: Any, status: int, *, headers: dict[str, str] | None = None) -> Response:
    # orjson: the answer is built on the event loop, and json.dumps costs 3-5 times more.
    return Response(orjson.dumps(content), status_code=status, headers=headers, media_type=JSON)


# Bodies up to this size (a few claims) parse in well under a millisecond, cheaper than the
# hop to a worker thread.
INLINE_PARSE_BYTES = 64 * 1024


def parse_invocation(
    raw: bytes, *, context: dict[str, Any], contract: RequestContract = DEFAULT_CONTRACT
) -> InvocationBody:
    """The request body under ``contract`` (``ValidationError`` when it does not meet it)."""
    # A UTF-8 byte-order mark (some Windows clients write one) is not JSON.
    return contract.invocation.model_validate_json(
        raw.removeprefix(codecs.BOM_UTF8), context=context
    )


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The body, or None once it is over ``limit`` bytes: by its Content-Length before a
    byte is read, else (chunked) as soon as the bytes read pass the limit."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _error(status: int, code: str, message: str) -> Response:
    return _json({"error_code": code, "message": message}, status)


def _error_handler(status: int, code: str) -> Any:
    async def handle(request: Request, exc: Exception) -> Response:
        log.warning("%s %s -> %d %s: %s", request.method, request.url.path, status, code, exc)
        return _error(status, code, str(exc))

    return handle


def describe_invalid_request(errors: Sequence[Any]) -> dict[str, Any]:
    """One readable message naming every missing and wrongly typed column.

    Input values are never echoed back: a claim's features stay out of error logs.
    """
    missing: dict[str, int] = defaultdict(int)
    wrong: dict[str, str] = {}
    other: list[str] = []
    for error in errors:
        loc = [part for part in error.get("loc", ()) if part != "body"]
        if len(loc) >= 3 and loc[0] == "dataframe_records" and isinstance(loc[1], int):
            column = str(loc[2])
            if error.get("type") == "missing":
                missing[column] += 1
            else:
                wrong.setdefault(column, f"record {loc[1]}: {error.get('msg')}")
        elif error.get("type") == "json_invalid":
            other.append(f"the body is not valid JSON ({error.get('msg')}); {SEND}")
        else:
            where = ".".join(str(part) for part in loc) or "body"
            message = str(error.get("msg")).removeprefix("Value error, ")
            other.append(f"{where}: {message}")
    parts = []
    if missing:
        parts.append(f"missing column(s): {', '.join(missing)}")
    if wrong:
        parts.append(
            "wrongly typed column(s): " + "; ".join(f"{c} ({why})" for c, why in wrong.items())
        )
    parts.extend(other)
    return {
        "error_code": INVALID_INPUT,
        "message": "invalid request: " + "; ".join(parts),
        "missing_columns": list(missing),
        "invalid_columns": list(wrong),
    }
