"""The model versions behind the ``champion`` and ``challenger`` aliases, loaded once each.

A promotion moves an alias in the MLflow registry; ``ServedModels.refresh`` re-resolves the
aliases, loads any version it has not loaded before, and only then hands back a new
``ServingState``, so no request ever waits on a model load or sees half of a promotion.

Each version loads on its own. One that cannot be loaded (a corrupt or missing artifact) is
reported in the state as a ``BrokenVersion`` and skipped: a broken challenger leaves the
champion answering everything, and a broken champion leaves the last champion that loaded
serving. The next refresh tries the broken version again.

A challenger decides claims only when its version's ``gates_passed`` tag is ``"true"``;
otherwise it is scored in shadow, whatever alias an operator set by hand.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from fraud_assets.databricks.redaction import redact
from fraud_assets.features import ID_COLUMN
from fraud_assets.ml import registry
from fraud_assets.ml.booster_input import BoosterInput
from fraud_assets.ml.pyfunc import validate_feature_frame
from fraud_assets.ml.reasons import Reason, logged_fraud_model, split_contributions, top_reasons
from fraud_assets.ml.scoring import ScoringModel, checked_scores, predict_scores
from fraud_assets.serving.contract import DEFAULT_CONTRACT, RequestContract, request_contract
from fraud_assets.serving.router import CHALLENGER, CHAMPION, Alias, TrafficSplit
from fraud_assets.settings import ServingSettings

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.pyfunc import PyFuncModel

log = logging.getLogger(__name__)

ERROR_SUMMARY_LENGTH = 200
# Credentials that may sit in the environment of a serving process, and so in an error text.
_SECRET_VARIABLES = (
    "DATABRICKS_TOKEN",
    "DATABRICKS_CLIENT_SECRET",
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_PASSWORD",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AZURE_STORAGE_ACCESS_KEY",
    "AZURE_CLIENT_SECRET",
)
_URL_USERINFO = re.compile(r"(\w+://)[^/\s@]*@")
# Presigned artifact URLs carry their signature in the query string.
_URL_QUERY = re.compile(r"(\w+://[^\s?]*)\?\S*")


def error_summary(exc: BaseException) -> str:
    """One line for ``/ready`` and ``/metrics``: the error type and its first line, no secret.

    URL credentials and query strings are cut, and the values of the credential variables
    in the environment are masked.
    """
    first_line = next(iter(str(exc).strip().splitlines()), "")
    text = f"{type(exc).__name__}: {first_line}" if first_line else type(exc).__name__
    text = _URL_QUERY.sub(r"\1", _URL_USERINFO.sub(r"\1", text))
    text = redact(text, [os.environ.get(name, "") for name in _SECRET_VARIABLES])
    return text[:ERROR_SUMMARY_LENGTH]


class NoChampionError(registry.NoChampionError):
    """No champion to answer with; the message also says how the service picks one up."""

    def __init__(self, model_name: str) -> None:
        super().__init__(model_name)
        self.args = (
            f"{self.args[0]}; the service follows a promotion at its next registry poll "
            "(FRAUD_SERVING__RELOAD_SECONDS), or at once on POST /reload",
        )


@dataclass(frozen=True)
class ServedModel:
    """One loaded model version and where it came from."""

    alias: Alias
    name: str
    version: str
    run_id: str | None
    source: str | None
    loaded_at: datetime
    model: PyFuncModel
    threshold: float  # chosen on the holdout when this version was trained
    gates_passed: bool  # the version's gates_passed tag is "true"

    @cached_property
    def inputs(self) -> tuple[str, ...]:
        """The columns this version's signature takes, in its order."""
        schema = self.model.metadata.get_input_schema()
        if schema is None:
            raise ValueError(f"{self.name} version {self.version} has no input signature")
        return tuple(schema.input_names())

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        """P(fraud) per row, with the pyfunc's exact answers and the same output check."""
        return self.score(features)[0]

    def score(self, features: pd.DataFrame) -> tuple[np.ndarray, list[list[Reason]] | None]:
        """P(fraud) per row and each row's reason codes, from one booster input.

        For a version logged as ``FraudProbabilityModel`` the booster it wraps is called on
        one ``BoosterInput`` for both, without MLflow's ``PyFuncModel.predict`` (which costs
        milliseconds per call in schema enforcement whatever the batch size) or pandas'
        categorical conversion: the request contract and the model's own feature spec
        already check every column, and the answers are the pyfunc's to the last bit
        (test_serving_fast_path.py). Any other pyfunc goes through MLflow's ``predict``, and
        has no reasons (None).
        """
        fast = self._fast_path
        if fast is None:
            scoring = ScoringModel(
                model=self.model, name=self.name, version=self.version, alias=self.alias
            )
            return predict_scores(scoring, features), None
        # Raised here as this package's FeatureFrameError (a 500 naming the columns).
        validate_feature_frame(features, fast.spec)
        if features.empty:
            return np.empty(0, dtype="float64"), []
        data = fast.data(features)
        scores = checked_scores(
            fast.probability(data), claims=len(features), model=self.name, version=self.version
        )
        found = split_contributions(fast.contributions(data), fast.spec)
        return scores, top_reasons(found, features)

    @cached_property
    def _fast_path(self) -> BoosterInput | None:
        """The booster inside the logged ``FraudProbabilityModel``, ready for its input."""
        found = logged_fraud_model(self.model)
        if found is None:
            return None
        wrapped, spec = found
        return BoosterInput(wrapped.booster, spec)


@dataclass(frozen=True)
class BrokenVersion:
    """A version an alias points at that could not be loaded; it is skipped, not served."""

    alias: Alias
    name: str
    version: str
    error: str  # error_summary() of the load failure

    def describe(self) -> str:
        return f"{self.alias} {self.name} version {self.version} could not be loaded ({self.error})"


@dataclass(frozen=True)
class ServingState:
    """What the service answers with until the next refresh."""

    model_name: str
    champion: ServedModel | None
    challenger: ServedModel | None
    split: TrafficSplit | None
    resolved_at: datetime | None
    broken: tuple[BrokenVersion, ...] = ()

    def model(self, alias: Alias) -> ServedModel:
        served = self.champion if alias == CHAMPION else self.challenger
        if served is None:
            raise NoChampionError(self.model_name)
        return served

    @cached_property
    def contract(self) -> RequestContract:
        """What a request must carry: claim_id and every input of the versions served."""
        inputs = [m.inputs for m in (self.champion, self.challenger) if m is not None]
        if not inputs:
            return DEFAULT_CONTRACT
        return request_contract(tuple(dict.fromkeys((ID_COLUMN, *(c for i in inputs for c in i)))))

    def versions(self) -> dict[Alias, str | None]:
        return {
            CHAMPION: self.champion.version if self.champion else None,
            CHALLENGER: self.challenger.version if self.challenger else None,
        }

    @property
    def challenger_decides(self) -> bool:
        """Whether the challenger answers its share of claims (it passed every gate)."""
        return self.challenger is not None and self.challenger.gates_passed

    def no_champion_message(self) -> str:
        message = str(NoChampionError(self.model_name))
        for broken in self.broken:
            if broken.alias == CHAMPION:
                message = f"{broken.describe()}, and no earlier champion is loaded; {message}"
        return message

    def degraded_message(self) -> str | None:
        """What is broken and what serves instead, or None when every aliased version loaded."""
        if not self.broken:
            return None
        parts = [broken.describe() for broken in self.broken]
        if self.champion is not None:
            parts.append(f"still serving version {self.champion.version} as champion")
        return "; ".join(parts)


def empty_state(model_name: str) -> ServingState:
    return ServingState(model_name, champion=None, challenger=None, split=None, resolved_at=None)


class ServedModels:
    """Resolves aliases in the registry and caches one loaded pyfunc per version."""

    def __init__(
        self,
        client: MlflowClient,
        *,
        model_name: str,
        serving: ServingSettings,
        default_threshold: float,
    ) -> None:
        self._client = client
        self._model_name = model_name
        self._serving = serving
        self._default_threshold = default_threshold
        self._loaded: dict[str, tuple[PyFuncModel, datetime, float]] = {}
        # The last champion that loaded: it keeps serving while a newer one cannot be loaded.
        self._last_champion: ServedModel | None = None
        self._broken: dict[str, str] = {}
        self._lock = threading.Lock()

    def refresh(self) -> ServingState:
        """Resolve both aliases now and load what is new; the registry is the only truth.

        Raises ``MlflowException`` when the registry cannot be read. A version that cannot
        be loaded is not an error here: it is reported in ``ServingState.broken``.
        """
        with self._lock:
            served: dict[Alias, ServedModel] = {}
            broken: list[BrokenVersion] = []
            for alias, version in self._aliases().items():
                number = str(version.version)
                try:
                    served[alias] = self._serve(alias, version)
                # Loading runs flavour code on an artifact from storage, which can fail in
                # any way (YAML, pickle, I/O, a missing module); whatever it is, that one
                # version is reported and skipped, and the others keep serving.
                except Exception as exc:
                    broken.append(
                        BrokenVersion(alias, self._model_name, number, error_summary(exc))
                    )
            self._log_broken(broken)
            if CHAMPION in served:
                self._last_champion = served[CHAMPION]
            elif self._last_champion is not None and any(b.alias == CHAMPION for b in broken):
                served[CHAMPION] = self._last_champion
            # Versions no alias points at any more are dropped, so memory stays bounded.
            keep = {model.version for model in served.values()}
            for number in set(self._loaded) - keep:
                del self._loaded[number]
                log.info("unloaded %s version %s", self._model_name, number)
            champion, challenger = served.get(CHAMPION), served.get(CHALLENGER)
            split = None
            if champion is not None:
                split = TrafficSplit.from_settings(
                    self._serving,
                    champion_version=champion.version,
                    challenger_version=challenger.version if challenger else None,
                    challenger_may_decide=challenger is not None and challenger.gates_passed,
                )
            return ServingState(
                model_name=self._model_name,
                champion=champion,
                challenger=challenger,
                split=split,
                resolved_at=datetime.now(UTC),
                broken=tuple(broken),
            )

    def _aliases(self) -> dict[Alias, ModelVersion]:
        found: dict[Alias, ModelVersion] = {}
        for alias in (CHAMPION, CHALLENGER):
            version = registry.alias_version(self._client, self._model_name, alias)
            if version is not None:
                found[alias] = version
        return found

    def _log_broken(self, broken: list[BrokenVersion]) -> None:
        """Warn when a version breaks or its error changes, not at every poll it stays broken."""
        now = {b.version: b.error for b in broken}
        for b in broken:
            if self._broken.get(b.version) != b.error:
                log.warning("%s; skipped until a later refresh loads it", b.describe())
        for number in set(self._broken) - set(now):
            log.info("%s version %s is no longer reported broken", self._model_name, number)
        self._broken = now

    def _serve(self, alias: Alias, version: ModelVersion) -> ServedModel:
        """The loaded model for a version, loading it on first use."""
        # The SQLite registry hands back int versions, the REST and UC registries strings.
        number = str(version.version)
        if number not in self._loaded:
            import mlflow.pyfunc

            uri = f"models:/{self._model_name}/{number}"
            log.info("loading %s for alias %r", uri, alias)
            threshold = registry.recorded_threshold(
                self._client, version.run_id, default=self._default_threshold
            )
            self._loaded[number] = (mlflow.pyfunc.load_model(uri), datetime.now(UTC), threshold)
        model, loaded_at, threshold = self._loaded[number]
        return ServedModel(
            alias=alias,
            name=self._model_name,
            version=number,
            run_id=version.run_id,
            source=version.source,
            loaded_at=loaded_at,
            model=model,
            threshold=threshold,
            gates_passed=(version.tags or {}).get(registry.TAG_GATES_PASSED) == "true",
        )
