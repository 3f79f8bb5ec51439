"""HTTP wiring of the scoring service: MLflow-serving-compatible ``/invocations`` and friends.

``create_app(settings)`` builds nothing until the app starts: the lifespan resolves the
model aliases, loads the models and starts the inference-log writer, and on shutdown
writes every buffered log row.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from mlflow.exceptions import MlflowException

from fraud_assets.ml.pyfunc import FeatureFrameError
from fraud_assets.ml.scoring import ModelOutputError
from fraud_assets.serving.contract import (
    ErrorResponse,
    InferenceLogInfo,
    InvocationRequest,
    InvocationResponse,
    ModelsResponse,
    ServedModelInfo,
    TrafficInfo,
)
from fraud_assets.serving.inference_log import InferenceLogBacklogError
from fraud_assets.serving.models import NoChampionError, ServedModel
from fraud_assets.serving.service import ScoringService
from fraud_assets.settings import FraudSettings, get_settings

log = logging.getLogger(__name__)

INVALID_INPUT = "INVALID_PARAMETER_VALUE"
REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_ERRORS: dict[int | str, dict[str, Any]] = {
    422: {"model": ErrorResponse, "description": "Missing or wrongly typed columns"},
    503: {"model": ErrorResponse, "description": "No champion model, or the log is down"},
}


def create_app(
    settings: FraudSettings | None = None, *, service: ScoringService | None = None
) -> FastAPI:
    """The scoring app; ``service`` replaces the one built from ``settings`` at startup."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        resolved = settings or get_settings()
        scoring = service or ScoringService.from_settings(resolved)
        # Loading models and opening the registry block; keep them off the event loop.
        await run_in_threadpool(scoring.start)
        app.state.service = scoring
        try:
            yield
        finally:
            await run_in_threadpool(scoring.stop)

    app = FastAPI(
        title="fraud_assets scoring service",
        summary="Champion/challenger fraud scores, MLflow serving request format",
        lifespan=lifespan,
    )
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(NoChampionError, _error_handler(503, "NO_CHAMPION"))
    app.add_exception_handler(
        InferenceLogBacklogError, _error_handler(503, "INFERENCE_LOG_UNAVAILABLE")
    )
    # A model that breaks its own contract is the server's fault, never the caller's.
    app.add_exception_handler(ModelOutputError, _error_handler(500, "MODEL_OUTPUT_INVALID"))
    app.add_exception_handler(FeatureFrameError, _error_handler(500, "MODEL_INPUT_MISMATCH"))

    @app.post("/invocations", response_model=InvocationResponse, responses=_ERRORS)
    def invocations(body: InvocationRequest, request: Request, response: Response) -> Any:
        """Score claims: each is answered by the alias its claim_id routes to."""
        scoring = _service(request)
        limit = scoring.settings.serving.max_records
        if len(body.dataframe_records) > limit:
            return _error(
                422,
                INVALID_INPUT,
                f"{len(body.dataframe_records)} records in one request; the limit is {limit} "
                "(FRAUD_SERVING__MAX_RECORDS)",
            )
        request_id = _request_id(request)
        scored = scoring.score(body.to_arrow(), request_id=request_id)
        response.headers[REQUEST_ID_HEADER] = request_id
        scores = scored.fraud_score.tolist()
        return {
            "predictions": scores,
            "scores": [
                {
                    "claim_id": claim_id,
                    "fraud_score": score,
                    "decision": decision,
                    "model_alias": alias,
                    "model_version": version,
                }
                for claim_id, score, decision, alias, version in zip(
                    scored.claim_ids,
                    scores,
                    scored.decision.tolist(),
                    scored.model_alias,
                    scored.model_version,
                    strict=True,
                )
            ],
            "request_id": request_id,
        }

    @app.get("/health", responses={503: {"description": "No champion loaded"}})
    def health(request: Request) -> JSONResponse:
        """Ready only when a champion model is loaded."""
        state = _service(request).state
        if state.champion is None:
            return JSONResponse(
                {"status": "no_champion", "message": state.no_champion_message()}, 503
            )
        return JSONResponse(
            {
                "status": "ready",
                "model_name": state.model_name,
                "champion_version": state.champion.version,
                "challenger_version": state.challenger.version if state.challenger else None,
            }
        )

    # MLflow's scoring server answers /ping; load balancers set up for it keep working.
    app.add_api_route("/ping", health, methods=["GET"], include_in_schema=False)

    @app.get("/models", response_model=ModelsResponse)
    def models(request: Request) -> ModelsResponse:
        """The versions behind the aliases, the traffic split and the inference-log counters."""
        return _models_response(_service(request), changed=None)

    @app.post("/reload", response_model=ModelsResponse, responses=_ERRORS)
    def reload(request: Request) -> Any:
        """Re-resolve the aliases after a promotion, without a restart."""
        scoring = _service(request)
        try:
            changed = scoring.reload()
        except MlflowException as exc:
            # The previous models keep serving; the caller learns why nothing changed.
            log.error("reload failed, still serving %s: %s", scoring.state.versions(), exc.message)
            return _error(503, "MODEL_REGISTRY_UNAVAILABLE", f"model registry: {exc.message}")
        if scoring.state.champion is None:
            return _error(503, "NO_CHAMPION", scoring.state.no_champion_message())
        return _models_response(scoring, changed=changed)

    return app


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
            shadow=serving.shadow,
            routing="hash(routing_salt, claim_id) < challenger_traffic -> challenger",
        ),
        inference_log=InferenceLogInfo(
            table=stats.table,
            buffered_rows=stats.buffered_rows,
            written_rows=stats.written_rows,
            failed_writes=stats.failed_writes,
            last_error=stats.last_error,
        ),
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
    )


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error_code": code, "message": message}, status_code=status)


def _error_handler(status: int, code: str) -> Any:
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        log.warning("%s %s -> %d %s: %s", request.method, request.url.path, status, code, exc)
        return _error(status, code, str(exc))

    return handle


async def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse(describe_invalid_request(exc.errors()), status_code=422)


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
            other.append(f"the body is not valid JSON (at character {loc[-1] if loc else 0})")
        else:
            where = ".".join(str(part) for part in loc) or "body"
            other.append(f"{where}: {error.get('msg')}")
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
