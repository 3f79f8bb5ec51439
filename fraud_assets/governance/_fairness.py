"""Group fairness metrics with bootstrap confidence intervals, for every slice at once.

Every figure here depends on the data only through confusion counts per group, so the whole
report is computed from one table: the number of rows in each cell of
(full intersection of the protected attributes) x (label) x (decision). Resampling rows with
replacement draws those cell counts from a multinomial distribution, which is exactly the
distribution fairlearn's row bootstrap produces; drawing the counts directly costs the same
for a thousand rows or a billion.

Undefined rates are NaN, never 0: a group with no actual frauds has no true positive rate,
no actual legitimate claims no false positive rate, no flagged claims no precision. fairlearn
reports 0 for the first two (scikit-learn's zero-division default); reading "0% of the
frauds were caught" for a group with no frauds would make equal opportunity fail by chance.
Cross-group figures skip undefined values and need at least two groups with a value.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import combinations
from statistics import NormalDist
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import sparse

GROUP_METRICS: tuple[str, ...] = (
    "selection_rate",
    "true_positive_rate",
    "false_positive_rate",
    "precision",
)
FIGURES: tuple[str, ...] = (
    "disparate_impact_ratio",
    "equal_opportunity_difference",
    "equalized_odds_difference",
)
STATUS_OK = "ok"
STATUS_INSUFFICIENT = "insufficient data"
MISSING_GROUP = "(missing)"
INTERSECTION_SEPARATOR = " & "

# Column order of the confusion counts: index = 2 * label + decision.
_TN, _FP, _FN, _TP = 0, 1, 2, 3


@dataclass(frozen=True)
class FairnessReport:
    """Per-group rates and cross-group figures, each with a bootstrap confidence interval.

    ``groups`` has one row per (slice, group); ``figures`` one row per slice. A slice is one
    protected attribute or an intersection of several (``attributes`` lists them).
    """

    groups: pd.DataFrame
    figures: pd.DataFrame
    parameters: dict[str, Any] = field(default_factory=dict)

    def figure(self, slice_name: str, name: str) -> float:
        """A figure's point estimate: ``figure("patient_gender", "disparate_impact_ratio")``."""
        row = self.figures.loc[self.figures["slice"] == slice_name]
        if row.empty:
            raise KeyError(f"no slice {slice_name!r}; slices: {list(self.figures['slice'])}")
        return float(row[name].iloc[0])

    def to_long(self) -> pd.DataFrame:
        """One row per slice/group/metric, cross-group figures with a null group: SQL-friendly."""
        parts = [
            pd.DataFrame(
                {
                    "slice": self.groups["slice"],
                    "intersection": self.groups["intersection"],
                    "scope": "group",
                    "group": self.groups["group"],
                    "status": self.groups["status"],
                    "group_size": self.groups["size"],
                    "metric": metric,
                    "value": self.groups[metric],
                    "ci_low": self.groups[f"{metric}_ci_low"],
                    "ci_high": self.groups[f"{metric}_ci_high"],
                }
            )
            for metric in GROUP_METRICS
        ]
        parts += [
            pd.DataFrame(
                {
                    "slice": self.figures["slice"],
                    "intersection": self.figures["intersection"],
                    "scope": "across_groups",
                    "group": None,
                    "status": None,
                    "group_size": None,
                    "metric": figure,
                    "value": self.figures[figure],
                    "ci_low": self.figures[f"{figure}_ci_low"],
                    "ci_high": self.figures[f"{figure}_ci_high"],
                }
            )
            for figure in FIGURES
        ]
        long = pd.concat(parts, ignore_index=True)
        long["group_size"] = long["group_size"].astype("Int64")
        return long

    def to_dict(self) -> dict[str, Any]:
        """Parameters, figures and groups as plain JSON values (NaN becomes null)."""
        return {
            "parameters": dict(self.parameters),
            "figures": json.loads(self.figures.to_json(orient="records")),
            "groups": json.loads(self.groups.to_json(orient="records")),
        }


# --- point metrics with fairlearn-style signatures ----------------------------------------


def group_metrics(
    y_true: npt.ArrayLike,
    y_pred: npt.ArrayLike,
    *,
    sensitive_features: npt.ArrayLike | pd.Series | pd.DataFrame,
) -> pd.DataFrame:
    """Size, positives, flagged and the four group rates, one row per group.

    Several sensitive columns define their intersection, as in fairlearn's ``MetricFrame``.
    """
    y, d = _binary(y_true, "y_true"), _binary(y_pred, "y_pred")
    labels, codes = _group_codes(sensitive_features, len(y))
    counts = _confusion_by_code(y, d, codes, len(labels))
    rates = _rates(counts)
    frame = pd.DataFrame(
        {
            "size": counts.sum(axis=-1),
            "positives": counts[:, _FN] + counts[:, _TP],
            "flagged": counts[:, _FP] + counts[:, _TP],
            **{name: rates[name] for name in GROUP_METRICS},
        },
        index=pd.Index(labels, name="group"),
    )
    return frame


def disparate_impact_ratio(
    y_true: npt.ArrayLike,
    y_pred: npt.ArrayLike,
    *,
    sensitive_features: npt.ArrayLike | pd.Series | pd.DataFrame,
    min_group_size: int = 1,
) -> float:
    """Lowest group selection rate over the highest (fairlearn's demographic parity ratio)."""
    return _figure_from_groups(
        y_true, y_pred, sensitive_features, min_group_size, "disparate_impact_ratio"
    )


def equal_opportunity_difference(
    y_true: npt.ArrayLike,
    y_pred: npt.ArrayLike,
    *,
    sensitive_features: npt.ArrayLike | pd.Series | pd.DataFrame,
    min_group_size: int = 1,
) -> float:
    """Highest group true positive rate minus the lowest."""
    return _figure_from_groups(
        y_true, y_pred, sensitive_features, min_group_size, "equal_opportunity_difference"
    )


def equalized_odds_difference(
    y_true: npt.ArrayLike,
    y_pred: npt.ArrayLike,
    *,
    sensitive_features: npt.ArrayLike | pd.Series | pd.DataFrame,
    min_group_size: int = 1,
) -> float:
    """The larger of the true positive rate and false positive rate differences."""
    return _figure_from_groups(
        y_true, y_pred, sensitive_features, min_group_size, "equalized_odds_difference"
    )


def _figure_from_groups(
    y_true: npt.ArrayLike,
    y_pred: npt.ArrayLike,
    sensitive_features: npt.ArrayLike | pd.Series | pd.DataFrame,
    min_group_size: int,
    name: str,
) -> float:
    y, d = _binary(y_true, "y_true"), _binary(y_pred, "y_pred")
    labels, codes = _group_codes(sensitive_features, len(y))
    counts = _confusion_by_code(y, d, codes, len(labels))
    sufficient = counts.sum(axis=-1) >= min_group_size
    figures = _cross_group(_rates(counts[sufficient][None, ...]))
    return float(figures[name][0])


# --- the report -----------------------------------------------------------------------------


def fairness_slices(attributes: Sequence[str]) -> list[tuple[str, ...]]:
    """Each attribute, each pair, and the full intersection (no slice twice)."""
    attrs = list(dict.fromkeys(attributes))
    slices: list[tuple[str, ...]] = [(a,) for a in attrs]
    if len(attrs) >= 2:
        slices += list(combinations(attrs, 2))
    if len(attrs) >= 3:
        slices.append(tuple(attrs))
    return slices


def slice_name(attributes: Sequence[str]) -> str:
    return INTERSECTION_SEPARATOR.join(attributes)


def compute_fairness_report(
    frame: pd.DataFrame,
    *,
    protected_attributes: Sequence[str],
    label_column: str = "is_fraud",
    decision_column: str = "decision",
    min_group_size: int,
    bootstrap_samples: int,
    confidence_level: float,
    seed: int,
) -> FairnessReport:
    """Group rates and cross-group figures for every slice, with bootstrap intervals.

    Groups smaller than ``min_group_size`` are reported with status "insufficient data" and
    left out of the cross-group figures. The bootstrap resamples claims with replacement
    ``bootstrap_samples`` times (seeded), the same resamples for every slice. Group rates
    get percentile intervals; cross-group figures the pairwise intervals of
    ``_figure_bounds``.
    """
    if not protected_attributes:
        raise ValueError("protected_attributes is empty: nothing to report fairness on")
    missing = [
        c for c in [*protected_attributes, label_column, decision_column] if c not in frame.columns
    ]
    if missing:
        raise ValueError(f"fairness input lacks columns {missing}; it has {list(frame.columns)}")
    if len(frame) == 0:
        raise ValueError("fairness input has no rows")
    if not 0.0 < confidence_level < 1.0:
        raise ValueError(f"confidence_level must lie in (0, 1), got {confidence_level}")
    if bootstrap_samples < 1:
        raise ValueError(f"bootstrap_samples must be at least 1, got {bootstrap_samples}")

    # Own implementation, not fairlearn's MetricFrame(n_boot): one draw of cell counts serves
    # every slice, thousands of times faster (bench/bench_governance.py); equality is tested.
    attrs = list(dict.fromkeys(protected_attributes))
    y = _binary(frame[label_column], label_column)
    d = _binary(frame[decision_column], decision_column)
    levels: list[list[str]] = []
    attr_codes: list[np.ndarray] = []
    for attr in attrs:
        labels, codes = _group_codes(frame[attr], len(frame))
        levels.append(labels)
        attr_codes.append(codes)
    dims = [len(lv) for lv in levels]

    # One count per occupied cell of (intersection, label, decision).
    cell = np.ravel_multi_index((*attr_codes, y, d), (*dims, 2, 2))
    occupied, cell_counts = np.unique(cell, return_counts=True)
    *cell_attr_codes, cell_y, cell_d = np.unravel_index(occupied, (*dims, 2, 2))
    outcome = 2 * cell_y + cell_d

    rng = np.random.default_rng(seed)
    n = int(cell_counts.sum())
    # (B, cells): how many copies of each cell one resample of n claims holds.
    boot_counts = rng.multinomial(n, cell_counts / n, size=bootstrap_samples).astype(np.float64)
    low_q, high_q = (1.0 - confidence_level) / 2.0, 1.0 - (1.0 - confidence_level) / 2.0

    group_rows: list[pd.DataFrame] = []
    figure_rows: list[dict[str, Any]] = []
    for attrs_in_slice in fairness_slices(attrs):
        idx = [attrs.index(a) for a in attrs_in_slice]
        slice_dims = tuple(dims[i] for i in idx)
        slice_group = np.ravel_multi_index(tuple(cell_attr_codes[i] for i in idx), slice_dims)
        present, group_of_cell = np.unique(slice_group, return_inverse=True)
        n_groups = len(present)
        # Sparse (cells x groups*4) map from cells to each group's confusion counts.
        to_group = sparse.csr_matrix(
            (np.ones(len(occupied)), (np.arange(len(occupied)), group_of_cell * 4 + outcome)),
            shape=(len(occupied), n_groups * 4),
        )
        observed = np.asarray(to_group.T @ cell_counts.astype(np.float64)).reshape(n_groups, 4)
        boot = np.asarray((to_group.T @ boot_counts.T).T).reshape(bootstrap_samples, n_groups, 4)

        size = observed.sum(axis=-1)
        sufficient = size >= min_group_size
        point_rates = _rates(observed)
        boot_rates = _rates(boot)
        group_labels = _group_labels(present, slice_dims, [levels[i] for i in idx])
        name = slice_name(attrs_in_slice)

        group_frame = pd.DataFrame(
            {
                "slice": name,
                "attributes": [list(attrs_in_slice)] * n_groups,
                "intersection": len(attrs_in_slice) > 1,
                "group": group_labels,
                "size": size.astype(np.int64),
                "positives": (observed[:, _FN] + observed[:, _TP]).astype(np.int64),
                "flagged": (observed[:, _FP] + observed[:, _TP]).astype(np.int64),
                "status": np.where(sufficient, STATUS_OK, STATUS_INSUFFICIENT),
            }
        )
        for metric in GROUP_METRICS:
            low, high = _quantiles(boot_rates[metric], low_q, high_q, axis=0)
            group_frame[metric] = point_rates[metric]
            group_frame[f"{metric}_ci_low"] = low
            group_frame[f"{metric}_ci_high"] = high
        group_rows.append(group_frame)

        point_figures = _cross_group(_rates(observed[sufficient][None, ...]))
        bounds = _figure_bounds(observed[sufficient], boot[:, sufficient, :], confidence_level)
        row: dict[str, Any] = {
            "slice": name,
            "attributes": list(attrs_in_slice),
            "intersection": len(attrs_in_slice) > 1,
            "groups": n_groups,
            "sufficient_groups": int(sufficient.sum()),
            "insufficient_groups": [
                g for g, ok in zip(group_labels, sufficient, strict=True) if not ok
            ],
        }
        for figure in FIGURES:
            row[figure] = float(point_figures[figure][0])
            row[f"{figure}_ci_low"], row[f"{figure}_ci_high"] = bounds[figure]
        figure_rows.append(row)

    return FairnessReport(
        groups=pd.concat(group_rows, ignore_index=True),
        figures=pd.DataFrame(figure_rows),
        parameters={
            "protected_attributes": attrs,
            "rows": n,
            "min_group_size": min_group_size,
            "bootstrap_samples": bootstrap_samples,
            "confidence_level": confidence_level,
            "seed": seed,
        },
    )


# --- internals -----------------------------------------------------------------------------


def _binary(values: npt.ArrayLike, name: str) -> np.ndarray:
    series = pd.Series(np.asarray(values)) if not isinstance(values, pd.Series) else values
    if series.isna().any():
        raise ValueError(f"column {name!r} has {int(series.isna().sum())} null values; need 0/1")
    array = series.to_numpy()
    if array.dtype == bool:
        return array.astype(np.int64)
    bad = ~np.isin(array, [0, 1])
    if bad.any():
        raise ValueError(
            f"column {name!r} must hold only 0/1; found {sorted(set(array[bad].tolist()))[:5]}"
        )
    return array.astype(np.int64)


def _group_codes(
    sensitive_features: npt.ArrayLike | pd.Series | pd.DataFrame, n_rows: int
) -> tuple[list[str], np.ndarray]:
    """Sorted group labels and each row's group code; several columns mean their intersection."""
    if isinstance(sensitive_features, pd.DataFrame):
        columns = [sensitive_features[c] for c in sensitive_features.columns]
    else:
        columns = [pd.Series(np.asarray(sensitive_features, dtype=object))]
    per_column: list[tuple[list[str], np.ndarray]] = []
    for column in columns:
        if len(column) != n_rows:
            raise ValueError(f"sensitive feature has {len(column)} rows, labels have {n_rows}")
        # A missing attribute is its own reported group: dropping those claims would hide them.
        values = column.astype(object).where(column.notna(), MISSING_GROUP).astype(str)
        codes, uniques = pd.factorize(values, sort=True)
        per_column.append(([str(u) for u in uniques], codes.astype(np.int64)))
    if len(per_column) == 1:
        return per_column[0]
    dims = tuple(len(labels) for labels, _ in per_column)
    combined = np.ravel_multi_index(tuple(codes for _, codes in per_column), dims)
    present, codes = np.unique(combined, return_inverse=True)
    labels = _group_labels(present, dims, [lv for lv, _ in per_column])
    return labels, codes.astype(np.int64)


def _group_labels(codes: np.ndarray, dims: tuple[int, ...], levels: list[list[str]]) -> list[str]:
    parts = np.unravel_index(codes, dims)
    return [
        INTERSECTION_SEPARATOR.join(levels[j][int(parts[j][i])] for j in range(len(dims)))
        for i in range(len(codes))
    ]


def _confusion_by_code(
    y: np.ndarray, d: np.ndarray, codes: np.ndarray, n_groups: int
) -> np.ndarray:
    counts = np.bincount(codes * 4 + 2 * y + d, minlength=n_groups * 4)
    return counts.reshape(n_groups, 4).astype(np.float64)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    out = np.full(np.broadcast(numerator, denominator).shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def _rates(counts: np.ndarray) -> dict[str, np.ndarray]:
    """The four group rates from confusion counts shaped (..., groups, 4)."""
    tn, fp, fn, tp = (counts[..., i] for i in range(4))
    return {
        "selection_rate": _ratio(fp + tp, tn + fp + fn + tp),
        "true_positive_rate": _ratio(tp, fn + tp),
        "false_positive_rate": _ratio(fp, tn + fp),
        "precision": _ratio(tp, fp + tp),
    }


def _spread(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row-wise min and max over groups, skipping NaN, and how many groups had a value."""
    defined = (~np.isnan(values)).sum(axis=-1)
    if values.shape[-1] == 0:
        empty = np.full(values.shape[:-1], np.nan)
        return empty, empty, defined
    # fmin/fmax skip NaN without the all-NaN warnings of nanmin/nanmax.
    return np.fmin.reduce(values, axis=-1), np.fmax.reduce(values, axis=-1), defined


def _cross_group(rates: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The three cross-group figures from rates shaped (resamples, groups)."""
    sel_min, sel_max, sel_n = _spread(rates["selection_rate"])
    tpr_min, tpr_max, tpr_n = _spread(rates["true_positive_rate"])
    fpr_min, fpr_max, fpr_n = _spread(rates["false_positive_rate"])
    enough_sel = (sel_n >= 2) & (sel_max > 0)
    tpr_diff = np.where(tpr_n >= 2, tpr_max - tpr_min, np.nan)
    fpr_diff = np.where(fpr_n >= 2, fpr_max - fpr_min, np.nan)
    return {
        "disparate_impact_ratio": np.where(enough_sel, _ratio(sel_min, sel_max), np.nan),
        "equal_opportunity_difference": tpr_diff,
        "equalized_odds_difference": np.fmax(tpr_diff, fpr_diff),
    }


def _quantiles(
    samples: np.ndarray, low_q: float, high_q: float, *, axis: int
) -> tuple[np.ndarray, np.ndarray]:
    with warnings.catch_warnings():
        # A figure undefined in every resample has an undefined interval: NaN, said so.
        warnings.simplefilter("ignore", RuntimeWarning)
        low, high = np.nanquantile(samples, [low_q, high_q], axis=axis)
    return low, high


def _figure_bounds(
    observed: np.ndarray, boot: np.ndarray, confidence_level: float
) -> dict[str, tuple[float, float]]:
    """Confidence intervals of the cross-group figures, built from every pair of groups.

    A percentile bootstrap of a min or a max over groups is inconsistent when groups tie,
    the fair case: it puts a fair model's interval wholly below 0.8 about one run in five at
    4,000 claims. Pairwise ratios and differences are smooth, so each gets a Wald interval
    with its bootstrap standard error, simultaneous over the slice's pairs (Bonferroni);
    the figure, a min or max over pairs, then lies in the min or max of the pair bounds.
    ``observed`` is (groups, 4) confusion counts, ``boot`` (resamples, groups, 4).
    """
    tn, fp, fn, tp = (observed[:, i] for i in range(4))
    flagged, size = fp + tp, observed.sum(axis=-1)
    b_flagged, b_size = boot[..., _FP] + boot[..., _TP], boot.sum(axis=-1)

    # Selection rates compare on the log scale (a ratio); a zero count counts as half a claim.
    def log_rate(events: np.ndarray, total: np.ndarray) -> np.ndarray:
        return np.log(_ratio(np.where(events > 0, events, 0.5), total))

    sel = _pair_bounds(
        log_rate(flagged, size),
        log_rate(b_flagged, b_size),
        _log_rate_variance(flagged, size),
        confidence_level,
    )
    # For i over j: a zero numerator's ratio is 0 (lower bound 0), a zero denominator's inf.
    zero_num = (flagged == 0)[:, None] & (flagged > 0)[None, :]
    zero_den = (flagged > 0)[:, None] & (flagged == 0)[None, :]
    both_zero = (flagged == 0)[:, None] & (flagged == 0)[None, :]
    ratio_low = np.where(zero_num, 0.0, np.exp(sel.low))
    ratio_high = np.where(zero_den, np.inf, np.exp(sel.high))
    ratio_low[both_zero], ratio_high[both_zero] = np.nan, np.nan
    di = _bound_of_extreme(ratio_low, ratio_high, np.fmin, upper_cap=1.0)

    tpr = _difference_bounds(
        tp, fn + tp, boot[..., _TP], boot[..., _FN] + boot[..., _TP], confidence_level
    )
    fpr = _difference_bounds(
        fp, tn + fp, boot[..., _FP], boot[..., _TN] + boot[..., _FP], confidence_level
    )
    eq_odds = (float(np.fmax(tpr[0], fpr[0])), float(np.fmax(tpr[1], fpr[1])))
    return {
        "disparate_impact_ratio": di,
        "equal_opportunity_difference": tpr,
        "equalized_odds_difference": eq_odds,
    }


@dataclass(frozen=True)
class _Pairs:
    """Simultaneous bounds of ``statistic[i] - statistic[j]`` at row i, column j."""

    low: np.ndarray
    high: np.ndarray


def _pair_bounds(
    point: np.ndarray, boot: np.ndarray, analytic_variance: np.ndarray, confidence_level: float
) -> _Pairs:
    """Bounds of ``point[i] - point[j]`` for every pair, from bootstrap standard errors.

    The bootstrap cannot vary a count it never saw (a group with no flagged claims has none
    in any resample), so each pair's variance is at least the plug-in binomial variance.
    """
    defined = ~np.isnan(point)
    n_groups = int(defined.sum())
    pairs = n_groups * (n_groups - 1) / 2
    empty = np.full((len(point), len(point)), np.nan)
    if pairs < 1:
        return _Pairs(empty, empty.copy())
    z = NormalDist().inv_cdf(1.0 - (1.0 - confidence_level) / (2.0 * pairs))
    cov = pd.DataFrame(boot).cov(min_periods=2).to_numpy()
    var = np.diag(cov)
    boot_var = var[:, None] + var[None, :] - 2.0 * cov
    pair_var = np.fmax(boot_var, analytic_variance[:, None] + analytic_variance[None, :])
    diff = point[:, None] - point[None, :]
    half_width = z * np.sqrt(pair_var)
    low, high = diff - half_width, diff + half_width
    off_diagonal = ~np.eye(len(point), dtype=bool) & defined[:, None] & defined[None, :]
    return _Pairs(np.where(off_diagonal, low, np.nan), np.where(off_diagonal, high, np.nan))


def _log_rate_variance(events: np.ndarray, total: np.ndarray) -> np.ndarray:
    smoothed = (events + 0.5) / (total + 1.0)
    return (1.0 - smoothed) / ((total + 1.0) * smoothed)


def _difference_bounds(
    events: np.ndarray,
    total: np.ndarray,
    boot_events: np.ndarray,
    boot_total: np.ndarray,
    confidence_level: float,
) -> tuple[float, float]:
    """Interval of the largest difference in a rate (TPR or FPR) between two groups."""
    smoothed = (events + 0.5) / (total + 1.0)
    pairs = _pair_bounds(
        _ratio(events, total),
        _ratio(boot_events, boot_total),
        smoothed * (1.0 - smoothed) / (total + 1.0),
        confidence_level,
    )
    # rate[i] - rate[j] over ordered pairs: its max is max minus min over groups.
    return _bound_of_extreme(pairs.low, pairs.high, np.fmax, lower_cap=0.0, upper_cap=1.0)


def _bound_of_extreme(
    low: np.ndarray,
    high: np.ndarray,
    extreme: np.ufunc,
    *,
    lower_cap: float | None = None,
    upper_cap: float | None = None,
) -> tuple[float, float]:
    """If every pair lies in its bounds, the min (max) over pairs lies in these."""
    if np.isnan(low).all():
        return float("nan"), float("nan")
    lo = float(extreme.reduce(low, axis=None))
    hi = float(extreme.reduce(high, axis=None))
    if lower_cap is not None:
        lo, hi = max(lo, lower_cap), max(hi, lower_cap)
    if upper_cap is not None:
        lo, hi = min(lo, upper_cap), min(hi, upper_cap)
    return lo, hi
