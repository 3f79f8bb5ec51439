"""One booster input per batch of claims, for both the fraud probability and its reasons.

The logged pyfunc hands XGBoost a pandas frame with categorical columns, and XGBoost then
spends milliseconds per call converting it, whatever the number of claims: most of a
one-claim request. ``BoosterInput`` builds the input once, without pandas' categorical
machinery (XGBoost: a float32 matrix whose categorical columns hold the training levels'
codes, the codes ``model_matrix`` gives them; CatBoost: one ``Pool``), and both the
probability and the contributions are read from it. The probabilities are the pyfunc's to
the last bit (``test_ml_booster_input.py``, both model types, unseen codes and missing
values included).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from fraud_assets.ml.pyfunc import FeatureSpec, model_matrix


class BoosterInput:
    """Feature frames as one booster's own input; built once per loaded model version."""

    def __init__(self, booster: Any, spec: FeatureSpec) -> None:
        self.booster = booster
        self.spec = spec
        if spec.model_type == "xgboost":
            # XGBoost splits on category codes: a level's code is its index among the
            # training levels, as pd.Categorical(categories=...) in model_matrix gives it.
            self._codes = {
                column: {level: float(code) for code, level in enumerate(levels)}
                for column, levels in spec.categories.items()
            }
            self._types = ["q"] * len(spec.numeric) + ["c"] * len(spec.categorical)
        else:
            self._cat_features = booster.get_cat_feature_indices()

    def data(self, frame: pd.DataFrame) -> Any:
        """``frame`` (validated feature columns) as an ``xgboost.DMatrix`` or a ``Pool``."""
        if self.spec.model_type == "catboost":
            from catboost import Pool

            return Pool(model_matrix(frame, self.spec), cat_features=self._cat_features)
        import xgboost

        spec = self.spec
        matrix = np.empty((len(frame), len(spec.columns)), dtype=np.float32)
        for j, column in enumerate(spec.numeric):
            # float64 to float32 rounds as XGBoost's own conversion of the pandas frame does.
            matrix[:, j] = frame[column].to_numpy(dtype="float64", na_value=np.nan)
        for k, column in enumerate(spec.categorical):
            codes = self._codes[column]
            # An unseen level or a null is missing, as pd.Categorical makes it.
            matrix[:, len(spec.numeric) + k] = [codes.get(v, np.nan) for v in frame[column]]
        return xgboost.DMatrix(
            matrix, feature_names=spec.columns, feature_types=self._types, enable_categorical=True
        )

    def probability(self, data: Any) -> np.ndarray:
        """P(fraud) per claim of ``data``, exactly as the logged pyfunc answers."""
        if self.spec.model_type == "catboost":
            return np.asarray(self.booster.predict_proba(data)[:, 1], dtype="float64")
        return np.asarray(self.booster.predict(data), dtype="float64")

    def contributions(self, data: Any) -> np.ndarray:
        """Per claim, each input's contribution to the margin and, last, the bias: the
        path-based split both libraries compute natively (why not exact TreeSHAP:
        ``fraud_assets.ml.reasons``)."""
        if self.spec.model_type == "catboost":
            raw = self.booster.get_feature_importance(
                data, type="ShapValues", shap_calc_type="Approximate"
            )
        else:
            raw = self.booster.predict(data, pred_contribs=True, approx_contribs=True)
        return np.asarray(raw, dtype="float64")
