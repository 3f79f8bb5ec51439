"""Real-time scoring without the web layer: route claims, score them per alias, log them.

``ScoringService`` owns the loaded models, the routing rule, the online view a canonical
claim's features come from, and the inference-log writer. The HTTP app only translates
requests and errors; anything else (a CLI, a stream consumer) can drive the same object.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa

from fraud_assets.claims.schema import extra_columns
from fraud_assets.features import ID_COLUMN
from fraud_assets.features.online import ClaimsHistoryView
from fraud_assets.lakehouse import INFERENCE_LOG
from fraud_assets.ml.metrics import flag
from fraud_assets.ml.reasons import REASONS_TYPE, Reason
from fraud_assets.serving.contract import RequestContract, claim_request_contract
from fraud_assets.serving.inference_log import (
    REALTIME,
    SHADOW,
    BufferedInferenceLog,
    inference_log_rows,
)
from fraud_assets.serving.models import NoChampionError, ServedModels, ServingState, empty_state
from fraud_assets.serving.router import CHALLENGER, CHAMPION, Alias
from fraud_assets.settings import FraudSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClaimsRequest:
    """One request's claims: dicts of the request contract's columns, already validated."""

    request_id: str
    rows: list[dict[str, Any]]


@dataclass(frozen=True)
class ScoredClaims:
    """The answer for one request, in request order."""

    request_id: str
    claim_ids: list[str]
    fraud_score: np.ndarray
    decision: np.ndarray
    model_alias: list[Alias]
    model_version: list[str]
    # Each claim's reason codes, largest first; None under a model without reasons.
    reasons: list[list[Reason] | None]


class ScoringService:
    """Champion/challenger scoring with every answer written to ``inference_log``."""

    def __init__(
        self,
        settings: FraudSettings,
        *,
        models: ServedModels,
        inference_log: BufferedInferenceLog,
        online: ClaimsHistoryView | None = None,
    ) -> None:
        """``online`` is where canonical claims' features come from; None takes requests
        that carry the features themselves (``request_shape="features"``)."""
        self.settings = settings
        self.models = models
        self.inference_log = inference_log
        self.online = online
        self._state = empty_state(settings.registered_model_name)
        self._reload_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: FraudSettings) -> ScoringService:
        """Wire the service to this mode's MLflow registry and inference-log table."""
        from fraud_assets.lakehouse import table_store
        from fraud_assets.ml.tracking import configure_mlflow, mlflow_client

        configure_mlflow(settings)
        serving = settings.serving
        return cls(
            settings,
            models=ServedModels(
                mlflow_client(),
                model_name=settings.registered_model_name,
                serving=serving,
                default_threshold=settings.thresholds.operating_threshold,
            ),
            inference_log=BufferedInferenceLog(
                table_store(settings),
                flush_rows=serving.log_flush_rows,
                flush_seconds=serving.log_flush_seconds,
                max_buffer_rows=serving.log_max_buffer_rows,
                table=INFERENCE_LOG,
            ),
            online=ClaimsHistoryView.for_settings(settings)
            if serving.request_shape == "claim"
            else None,
        )

    @property
    def state(self) -> ServingState:
        return self._state

    def request_contract(self, state: ServingState | None = None) -> RequestContract:
        """What a request record must carry: a canonical claim (with the mapping's extras
        the served models take), or the served models' features."""
        state = state or self._state
        if self.online is None:
            return state.contract
        inputs = tuple(state.contract.features)
        return claim_request_contract(tuple(extra_columns(inputs)), model_inputs=inputs)

    def start(self) -> None:
        """Load the aliased models and start the log writer.

        No champion yet, or a version that cannot be loaded, is allowed: ``/ready`` says so.
        """
        self.reload()
        if self._state.champion is None:
            log.warning("serving without a model: %s", self._state.no_champion_message())
        self.inference_log.start()

    def stop(self) -> None:
        """Write every buffered inference-log row."""
        self.inference_log.close()

    def reload(self) -> bool:
        """Re-resolve the aliases (after a promotion); returns whether the routing changed.

        The routing is the version behind each alias and whether the challenger decides.
        A version that cannot be loaded is in ``state.broken``, not raised.
        """
        with self._reload_lock:
            before = _routing(self._state)
            # Swapped in one assignment: a request sees the old or the new state, never a mix.
            self._state = self.models.refresh()
            after = _routing(self._state)
        if before != after:
            log.info("serving %s: %s (was %s)", self._state.model_name, after, before)
        return before != after

    def score(self, rows: list[dict[str, Any]], *, request_id: str) -> ScoredClaims:
        """Score one request's claims (dicts of ``state.contract`` columns)."""
        return self.score_batch([ClaimsRequest(request_id=request_id, rows=rows)])[0]

    def score_batch(self, requests: Sequence[ClaimsRequest]) -> list[ScoredClaims]:
        """Score several requests with one prediction per alias; one answer per request.

        Each claim is answered by the alias its claim_id routes to, and logged under its
        own request's id. The whole batch sees one state: a promotion that lands meanwhile
        applies to the next batch, never to half of this one.
        """
        state = self._state
        if state.champion is None or state.split is None:
            raise NoChampionError(state.model_name)
        scored_at = datetime.now(UTC)
        contract = state.contract
        records = [row for request in requests for row in request.rows]
        if self.online is None:
            claims = pa.Table.from_pylist(records, schema=contract.schema)
        else:
            claims = self._claim_features(
                pa.Table.from_pylist(records, schema=self.request_contract(state).schema),
                contract,
            )
        sizes = [len(request.rows) for request in requests]
        request_ids = [
            request.request_id
            for request, size in zip(requests, sizes, strict=True)
            for _ in range(size)
        ]
        claim_ids = [str(c) for c in claims.column(ID_COLUMN).to_pylist()]
        # Every served version's inputs; each version's signature takes the columns it needs.
        features = claims.select(contract.features).to_pandas()
        assignment = state.split.assign(claim_ids)

        fraud_score = np.empty(len(claim_ids), dtype="float64")
        # Each alias decides at the threshold chosen when its version was trained.
        threshold = np.empty(len(claim_ids), dtype="float64")
        model_alias: list[Alias] = [CHAMPION] * len(claim_ids)
        model_version = [""] * len(claim_ids)
        reasons: list[list[Reason] | None] = [None] * len(claim_ids)
        for alias, positions in assignment.answered_by.items():
            served = state.model(alias)
            # One alias answering everything (most 1-claim batches) needs no row copy.
            rows = features if len(positions) == len(features) else features.iloc[positions]
            scores, explained = served.score(rows)
            fraud_score[positions] = scores
            threshold[positions] = served.threshold
            why: Sequence[list[Reason] | None] = explained or [None] * len(positions)
            for position, reason in zip(positions, why, strict=True):
                model_alias[position] = alias
                model_version[position] = served.version
                reasons[position] = reason

        window = self.settings.serving.log_window_minutes
        log_rows = [
            inference_log_rows(
                claims,
                fraud_score=fraud_score,
                threshold=threshold,
                model_version=model_version,
                model_alias=model_alias,
                source=REALTIME,
                scored_at=scored_at,
                window_minutes=window,
                request_id=request_ids,
                reasons=_reasons_column(reasons),
            )
        ]
        if assignment.shadowed:
            challenger = state.model(CHALLENGER)
            positions = assignment.shadowed
            shadowed = features.iloc[positions]
            shadow_scores, explained = challenger.score(shadowed)
            shadow_reasons: Sequence[list[Reason] | None] = explained or [None] * len(positions)
            log_rows.append(
                inference_log_rows(
                    claims.take(positions),
                    fraud_score=shadow_scores,
                    threshold=challenger.threshold,
                    model_version=[challenger.version] * len(positions),
                    model_alias=[CHALLENGER] * len(positions),
                    source=SHADOW,
                    scored_at=scored_at,
                    window_minutes=window,
                    request_id=[request_ids[p] for p in positions],
                    reasons=_reasons_column(shadow_reasons),
                )
            )
        self.inference_log.append(pa.concat_tables(log_rows, promote_options="default"))

        decision = flag(fraud_score, threshold=threshold)
        answers = []
        start = 0
        for request, size in zip(requests, sizes, strict=True):
            end = start + size
            answers.append(
                ScoredClaims(
                    request_id=request.request_id,
                    claim_ids=claim_ids[start:end],
                    fraud_score=fraud_score[start:end],
                    decision=decision[start:end],
                    model_alias=model_alias[start:end],
                    model_version=model_version[start:end],
                    reasons=reasons[start:end],
                )
            )
            start = end
        return answers

    def _claim_features(self, request: pa.Table, contract: RequestContract) -> pa.Table:
        """The gold features of canonical claims, point-in-time from the online view, and
        any protected attribute a served version was trained with, taken from the claim."""
        assert self.online is not None
        features = self.online.features(request)
        for name in contract.features:
            if name not in features.column_names:
                features = features.append_column(
                    contract.schema.field(name),
                    request.column(name).cast(contract.schema.field(name).type),
                )
        return features


def _reasons_column(reasons: Sequence[list[Reason] | None]) -> pa.Array:
    return pa.array(
        [None if row is None else [r.as_dict() for r in row] for row in reasons],
        type=REASONS_TYPE,
    )


def _routing(state: ServingState) -> tuple[dict[Alias, str | None], bool]:
    return state.versions(), state.challenger_decides
