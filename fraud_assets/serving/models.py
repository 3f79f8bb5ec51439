"""The model versions behind the ``champion`` and ``challenger`` aliases, loaded once each.

A promotion moves an alias in the MLflow registry; ``ServedModels.refresh`` re-resolves the
aliases, loads any version it has not loaded before, and only then hands back a new
``ServingState``, so no request ever waits on a model load or sees half of a promotion.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from fraud_assets.ml import registry
from fraud_assets.ml.scoring import ScoringModel, predict_scores
from fraud_assets.serving.router import CHALLENGER, CHAMPION, Alias, TrafficSplit
from fraud_assets.settings import ServingSettings

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.pyfunc import PyFuncModel

log = logging.getLogger(__name__)


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

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        """P(fraud) per row through the batch scorer's path: signature check, output check."""
        return predict_scores(
            ScoringModel(model=self.model, name=self.name, version=self.version, alias=self.alias),
            features,
        )


@dataclass(frozen=True)
class ServingState:
    """What the service answers with until the next refresh."""

    model_name: str
    champion: ServedModel | None
    challenger: ServedModel | None
    split: TrafficSplit | None
    resolved_at: datetime | None

    def model(self, alias: Alias) -> ServedModel:
        served = self.champion if alias == CHAMPION else self.challenger
        if served is None:
            raise NoChampionError(self.model_name)
        return served

    def versions(self) -> dict[Alias, str | None]:
        return {
            CHAMPION: self.champion.version if self.champion else None,
            CHALLENGER: self.challenger.version if self.challenger else None,
        }

    def no_champion_message(self) -> str:
        return str(NoChampionError(self.model_name))


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
        self._lock = threading.Lock()

    def refresh(self) -> ServingState:
        """Resolve both aliases now and load what is new; the registry is the only truth."""
        with self._lock:
            aliases = self._aliases()
            served = {
                alias: self._serve(alias, self._client.get_model_version(self._model_name, version))
                for alias, version in aliases.items()
            }
            # Versions no alias points at any more are dropped, so memory stays bounded.
            keep = {model.version for model in served.values()}
            for version in set(self._loaded) - keep:
                del self._loaded[version]
                log.info("unloaded %s version %s", self._model_name, version)
            split = None
            if CHAMPION in served:
                split = TrafficSplit.from_settings(
                    self._serving,
                    champion_version=served[CHAMPION].version,
                    challenger_version=served[CHALLENGER].version if CHALLENGER in served else None,
                )
            return ServingState(
                model_name=self._model_name,
                champion=served.get(CHAMPION),
                challenger=served.get(CHALLENGER),
                split=split,
                resolved_at=datetime.now(UTC),
            )

    def _aliases(self) -> dict[Alias, str]:
        found: dict[Alias, str] = {}
        for alias in (CHAMPION, CHALLENGER):
            version = registry.alias_version(self._client, self._model_name, alias)
            if version is not None:
                found[alias] = str(version.version)
        return found

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
        )
