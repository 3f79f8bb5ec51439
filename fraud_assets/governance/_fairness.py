"""Group fairness metrics with analytic confidence intervals, for every slice at once.

Every figure here depends on the data only through confusion counts per group, so a slice
(one protected attribute, or an intersection of several) is summarised by one table of
counts per group, and nothing is resampled: the same data give the same intervals and the
same verdict, whatever the seed, and a slice's figures do not depend on which other
attributes are in the report.

- Group rates (selection, true positive, false positive, precision) get Wilson score
  intervals at the confidence level (marginal, one group at a time).
- A cross-group figure is a min/max ratio of a rate (disparate impact, false positive rate
  ratio) or a max - min difference (equal opportunity, false positive rate difference) over
  the sufficiently large groups. Its interval is built from every pair of groups: each pair's
  ratio gets a MOVER-Wilson interval (Donner & Zou 2012; Fagerland & Newcombe 2013) and each
  pair's difference Newcombe's hybrid score interval (MOVER-Wilson, Newcombe 1998), at a
  Bonferroni-adjusted level over the pairs, so the intervals hold simultaneously; the
  figure, a min or max over pairs, then lies between the min or max of the pair bounds.
  MOVER-Wilson keeps close to nominal coverage with small counts and zero events, in closed
  form, so thousands of pairs cost microseconds (docs/governance.md has the coverage and
  power measured against the adjusted-log interval).
- Claims are not independent: one provider's honest claims share its averages, so the model
  flags them together, and a fraudulent provider's claims are caught or missed together.
  With ``clusters`` (e.g. patient and provider ids), every group rate's counts are divided
  by its design effect, 1 + (m - 1) * rho (Kish 1965): rho is the rate's intraclass
  correlation within clusters, the one-way ANOVA estimate pooled over all clusters of the
  slice (clusters nested in groups, so a real group difference is not taken for
  clustering), and m the group's mean cluster size weighted by size; the larger over the
  clusterings, never below 1. The Wilson and MOVER intervals then use these effective
  counts (Korn & Graubard 1998), so a rate that rests on a few patients or providers gets
  the wide interval it deserves. A pooled rho, not each group's own cluster-robust
  variance: with the 3 to 10 providers of a small state the latter is too noisy (a fair
  model failed 3 to 6 of 20 data seeds with it, 0 with the pooled rho; docs/governance.md).
  rho depends only on the slice's own groups, so a verdict ignores the other attributes.

Undefined rates are NaN, never 0: a group with no actual frauds has no true positive rate,
no actual legitimate claims no false positive rate, no flagged claims no precision. fairlearn
reports 0 for the first two (scikit-learn's zero-division default); reading "0% of the
frauds were caught" for a group with no frauds would make equal opportunity fail by chance.
A figure needs at least two sufficient groups with a defined rate; a ratio whose groups all
have a zero rate is 1 (every group is treated alike).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import combinations
from statistics import NormalDist
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

GROUP_METRICS: tuple[str, ...] = (
    "selection_rate",
    "true_positive_rate",
    "false_positive_rate",
    "precision",
)
# Cross-group figure -> (the group rate it compares, "ratio" min/max or "difference" max-min).
FIGURE_RATES: dict[str, tuple[str, str]] = {
    "disparate_impact_ratio": ("selection_rate", "ratio"),
    "false_positive_rate_ratio": ("false_positive_rate", "ratio"),
    "equal_opportunity_difference": ("true_positive_rate", "difference"),
    "false_positive_rate_difference": ("false_positive_rate", "difference"),
}
FIGURES: tuple[str, ...] = (*FIGURE_RATES, "equalized_odds_difference")
INTERVAL_METHOD = "mover-wilson-bonferroni"
STATUS_OK = "ok"
STATUS_INSUFFICIENT = "insufficient data"
MISSING_GROUP = "(missing)"
INTERSECTION_SEPARATOR = " & "

# Column order of the confusion counts: index = 2 * label + decision.
_TN, _FP, _FN, _TP = 0, 1, 2, 3
# Each group rate as (numerator columns, denominator columns) of the confusion counts.
_RATE_COUNTS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "selection_rate": ((_FP, _TP), (_TN, _FP, _FN, _TP)),
    "true_positive_rate": ((_TP,), (_FN, _TP)),
    "false_positive_rate": ((_FP,), (_TN, _FP)),
    "precision": ((_TP,), (_FP, _TP)),
}


@dataclass(frozen=True)
class FairnessReport:
    """Per-group rates and cross-group figures, each with a confidence interval.

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

    def interval(self, slice_name: str, name: str) -> tuple[float, float]:
        """A figure's simultaneous interval: ``(low, high)``."""
        row = self.figures.loc[self.figures["slice"] == slice_name]
        if row.empty:
            raise KeyError(f"no slice {slice_name!r}; slices: {list(self.figures['slice'])}")
        return float(row[f"{name}_ci_low"].iloc[0]), float(row[f"{name}_ci_high"].iloc[0])

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
    return pd.DataFrame(
        {
            "size": counts.sum(axis=-1),
            "positives": counts[:, _FN] + counts[:, _TP],
            "flagged": counts[:, _FP] + counts[:, _TP],
            **{name: rates[name] for name in GROUP_METRICS},
        },
        index=pd.Index(labels, name="group"),
    )


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


def false_positive_rate_ratio(
    y_true: npt.ArrayLike,
    y_pred: npt.ArrayLike,
    *,
    sensitive_features: npt.ArrayLike | pd.Series | pd.DataFrame,
    min_group_size: int = 1,
) -> float:
    """Lowest group false positive rate over the highest: honest claims flagged, compared."""
    return _figure_from_groups(
        y_true, y_pred, sensitive_features, min_group_size, "false_positive_rate_ratio"
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
    return _point_figures(_rates(counts[sufficient]))[name]


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
    confidence_level: float,
    clusters: Sequence[str] = (),
) -> FairnessReport:
    """Group rates and cross-group figures for every slice, with analytic intervals.

    Groups smaller than ``min_group_size`` are reported with status "insufficient data" and
    left out of the cross-group figures. Group rates get marginal Wilson intervals at
    ``confidence_level``; each cross-group figure a simultaneous interval over the pairs of
    its groups (module docstring). With ``clusters``, the intervals use each rate's
    effective counts (counts over its design effect; a claim with no cluster id is a cluster
    of its own). Deterministic: no seed, no resampling.
    """
    if not protected_attributes:
        raise ValueError("protected_attributes is empty: nothing to report fairness on")
    missing = [
        c
        for c in [*protected_attributes, label_column, decision_column, *clusters]
        if c not in frame.columns
    ]
    if missing:
        raise ValueError(f"fairness input lacks columns {missing}; it has {list(frame.columns)}")
    if len(frame) == 0:
        raise ValueError("fairness input has no rows")
    if not 0.0 < confidence_level < 1.0:
        raise ValueError(f"confidence_level must lie in (0, 1), got {confidence_level}")

    # Own implementation, not fairlearn's MetricFrame: fairlearn has point metrics and a row
    # bootstrap, but no simultaneous analytic intervals; the point values equal its (tested).
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

    # One count per occupied cell of (intersection, label, decision); a slice's group counts
    # are sums of cells, exact whatever else is in the report.
    cell = np.ravel_multi_index((*attr_codes, y, d), (*dims, 2, 2))
    occupied, cell_counts = np.unique(cell, return_counts=True)
    *cell_attr_codes, cell_y, cell_d = np.unravel_index(occupied, (*dims, 2, 2))
    outcome = 2 * cell_y + cell_d
    cluster_codes = [_cluster_codes(frame[c]) for c in dict.fromkeys(clusters)]
    marginal_z = NormalDist().inv_cdf(1.0 - (1.0 - confidence_level) / 2.0)

    group_rows: list[pd.DataFrame] = []
    figure_rows: list[dict[str, Any]] = []
    for attrs_in_slice in fairness_slices(attrs):
        idx = [attrs.index(a) for a in attrs_in_slice]
        slice_dims = tuple(dims[i] for i in idx)
        slice_group = np.ravel_multi_index(tuple(cell_attr_codes[i] for i in idx), slice_dims)
        present, group_of_cell = np.unique(slice_group, return_inverse=True)
        n_groups = len(present)
        flat = np.zeros(n_groups * 4)
        np.add.at(flat, group_of_cell * 4 + outcome, cell_counts)
        observed = flat.reshape(n_groups, 4)

        size = observed.sum(axis=-1)
        sufficient = size >= min_group_size
        # Each rate's design effect per group, from the rows' clusters (1: independent claims).
        row_group = np.searchsorted(
            present, np.ravel_multi_index(tuple(attr_codes[i] for i in idx), slice_dims)
        )
        design = {
            metric: _design_effects(row_group, n_groups, y, d, cluster_codes, metric)
            for metric in GROUP_METRICS
        }
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
            events, total = _rate_counts(observed, metric)
            low, high = _wilson(events / design[metric], total / design[metric], marginal_z)
            group_frame[metric] = _ratio(events, total)
            group_frame[f"{metric}_ci_low"] = low
            group_frame[f"{metric}_ci_high"] = high
            group_frame[f"{metric}_design_effect"] = design[metric]
        group_rows.append(group_frame)

        judged = observed[sufficient]
        point = _point_figures(_rates(judged))
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
        for figure, (rate, kind) in FIGURE_RATES.items():
            events, total = _rate_counts(judged, rate)
            events, total = events / design[rate][sufficient], total / design[rate][sufficient]
            defined = total > 0
            row[figure] = point[figure]
            row[f"{figure}_ci_low"], row[f"{figure}_ci_high"] = figure_interval(
                events[defined], total[defined], kind=kind, confidence_level=confidence_level
            )
            row[f"{figure}_groups_compared"] = int(defined.sum())
        # Equalized odds is the larger of two differences; its bounds are the larger bounds.
        tpr, fpr = "equal_opportunity_difference", "false_positive_rate_difference"
        row["equalized_odds_difference"] = point["equalized_odds_difference"]
        row["equalized_odds_difference_ci_low"] = float(
            np.fmax(row[f"{tpr}_ci_low"], row[f"{fpr}_ci_low"])
        )
        row["equalized_odds_difference_ci_high"] = float(
            np.fmax(row[f"{tpr}_ci_high"], row[f"{fpr}_ci_high"])
        )
        row["equalized_odds_difference_groups_compared"] = min(
            row[f"{tpr}_groups_compared"], row[f"{fpr}_groups_compared"]
        )
        figure_rows.append(row)

    return FairnessReport(
        groups=pd.concat(group_rows, ignore_index=True),
        figures=pd.DataFrame(figure_rows),
        parameters={
            "protected_attributes": attrs,
            "rows": int(cell_counts.sum()),
            "min_group_size": min_group_size,
            "confidence_level": confidence_level,
            "interval": INTERVAL_METHOD,
            "clusters": list(dict.fromkeys(clusters)),
        },
    )


def figure_interval(
    events: npt.ArrayLike,
    total: npt.ArrayLike,
    *,
    kind: str,
    confidence_level: float,
) -> tuple[float, float]:
    """Simultaneous interval of min/max (``kind="ratio"``) or max - min of ``events / total``.

    Every ordered pair of groups gets a MOVER-Wilson interval at the Bonferroni level
    ``1 - (1 - confidence_level) / pairs``; if every pair lies in its interval (probability at
    least ``confidence_level``), the min/max ratio lies in [min lows, min highs] and the
    max - min difference in [max lows, max highs]. NaN with fewer than two groups.
    """
    x = np.asarray(events, dtype=np.float64)
    n = np.asarray(total, dtype=np.float64)
    groups = len(x)
    if groups < 2:
        return float("nan"), float("nan")
    pairs = groups * (groups - 1) / 2
    z = NormalDist().inv_cdf(1.0 - (1.0 - confidence_level) / (2.0 * pairs))
    i, j = np.nonzero(~np.eye(groups, dtype=bool))
    if kind == "ratio":
        low, high = mover_ratio_interval(x[i], n[i], x[j], n[j], z=z)
        return float(np.clip(low.min(), 0.0, 1.0)), float(np.clip(high.min(), 0.0, 1.0))
    if kind == "difference":
        low, high = newcombe_difference_interval(x[i], n[i], x[j], n[j], z=z)
        return float(np.clip(low.max(), 0.0, 1.0)), float(np.clip(high.max(), 0.0, 1.0))
    raise ValueError(f"kind must be 'ratio' or 'difference', got {kind!r}")


def wilson_interval(
    events: npt.ArrayLike, total: npt.ArrayLike, *, z: float
) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of ``events / total`` at normal quantile ``z`` (NaN where total=0)."""
    return _wilson(np.asarray(events, dtype=np.float64), np.asarray(total, dtype=np.float64), z)


def newcombe_difference_interval(
    x1: np.ndarray, n1: np.ndarray, x2: np.ndarray, n2: np.ndarray, *, z: float
) -> tuple[np.ndarray, np.ndarray]:
    """Newcombe's hybrid score interval of p1 - p2 (MOVER with Wilson limits, no correction)."""
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = _wilson(x1, n1, z)
    l2, u2 = _wilson(x2, n2, z)
    difference = p1 - p2
    low = difference - np.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = difference + np.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return low, high


def mover_ratio_interval(
    x1: np.ndarray, n1: np.ndarray, x2: np.ndarray, n2: np.ndarray, *, z: float
) -> tuple[np.ndarray, np.ndarray]:
    """MOVER-Wilson interval of p1 / p2 (Donner & Zou 2012); the upper bound is inf if x2 = 0.

    Closed form from the Wilson limits of each proportion; with x1 = 0 the lower bound is 0.
    """
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = _wilson(x1, n1, z)
    l2, u2 = _wilson(x2, n2, z)
    product = p1 * p2
    # Both discriminants are >= 0 for Wilson limits (l <= p <= u); clip rounding error only.
    low_root = np.sqrt(np.maximum(product**2 - l1 * u2 * (2 * p1 - l1) * (2 * p2 - u2), 0.0))
    high_root = np.sqrt(np.maximum(product**2 - u1 * l2 * (2 * p1 - u1) * (2 * p2 - l2), 0.0))
    low_denominator = u2 * (2 * p2 - u2)
    high_denominator = l2 * (2 * p2 - l2)
    with np.errstate(divide="ignore", invalid="ignore"):
        low = np.where(low_denominator != 0, (product - low_root) / low_denominator, 0.0)
        high = np.where(high_denominator > 0, (product + high_root) / high_denominator, np.inf)
    return np.maximum(low, 0.0), high


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


def intraclass_correlation(
    successes: npt.ArrayLike, clusters: npt.ArrayLike, groups: npt.ArrayLike | None = None
) -> float:
    """The ANOVA estimate of the intraclass correlation of 0/1 ``successes`` within clusters.

    Clusters are nested in ``groups`` (a cluster that spans groups is one cluster per
    group), and the between-cluster mean square is taken around each group's own rate, so a
    real difference between groups is not mistaken for clustering. Never below 0.
    """
    x = _binary(successes, "successes")
    codes = _cluster_codes(pd.Series(np.asarray(clusters, dtype=object)))
    group = (
        np.zeros(len(x), np.int64)
        if groups is None
        else pd.factorize(pd.Series(np.asarray(groups, dtype=object)))[0].astype(np.int64)
    )
    cells, total, events = _cluster_cells(group, codes, x, np.ones(len(x)))
    return _icc(*cells, total=total, events=events)


def _cluster_codes(column: pd.Series) -> np.ndarray:
    """Each row's cluster code; a row with no cluster id is a cluster of its own."""
    codes, uniques = pd.factorize(column)
    missing = codes < 0
    codes[missing] = len(uniques) + np.arange(int(missing.sum()))
    return codes.astype(np.int64)


def _cluster_cells(
    group: np.ndarray, codes: np.ndarray, event: np.ndarray, counted: np.ndarray
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], np.ndarray, np.ndarray]:
    """Per (group, cluster) cell: its group, events and counted rows; per group the totals."""
    n_groups = int(group.max()) + 1 if len(group) else 0
    n_clusters = int(codes.max()) + 1 if len(codes) else 1
    keys, cell = np.unique(group * n_clusters + codes, return_inverse=True)
    cell_events = np.bincount(cell, weights=event * counted, minlength=len(keys))
    cell_rows = np.bincount(cell, weights=counted, minlength=len(keys))
    used = cell_rows > 0
    cell_group = keys[used] // n_clusters
    totals = np.bincount(cell_group, weights=cell_rows[used], minlength=n_groups)
    events = np.bincount(cell_group, weights=cell_events[used], minlength=n_groups)
    return (cell_group, cell_events[used], cell_rows[used]), totals, events


def _icc(
    cell_group: np.ndarray,
    x: np.ndarray,
    n: np.ndarray,
    *,
    total: np.ndarray,
    events: np.ndarray,
) -> float:
    """One-way ANOVA intraclass correlation, clusters nested in groups, clipped at 0."""
    occupied = total > 0
    rows, cells, groups = n.sum(), len(n), int(occupied.sum())
    between_df, within_df = cells - groups, rows - cells
    if between_df <= 0 or within_df <= 0:
        return 0.0
    between = ((x * x / n).sum() - (events[occupied] ** 2 / total[occupied]).sum()) / between_df
    within = (x - x * x / n).sum() / within_df
    kish = np.bincount(cell_group, weights=n * n, minlength=len(total))
    mean_size = (rows - (kish[occupied] / total[occupied]).sum()) / between_df
    denominator = between + (mean_size - 1.0) * within
    if denominator <= 0:
        return 0.0
    return float(max(0.0, (between - within) / denominator))


def _design_effects(
    row_group: np.ndarray,
    n_groups: int,
    y: np.ndarray,
    d: np.ndarray,
    cluster_codes: Sequence[np.ndarray],
    metric: str,
) -> np.ndarray:
    """Each group's design effect for ``metric``: 1 + (m - 1) * rho, largest over clusterings.

    rho is the slice's pooled intraclass correlation of the rate's event among the rows it
    counts (``_icc``, from every cluster of every group, so it is stable), and m the group's
    Kish mean cluster size, sum of squared cluster sizes over the group's rows (1 when every
    claim is its own cluster). Never below 1.
    """
    event, counted = _rate_indicators(y, d, metric)
    effects = np.ones(n_groups)
    for codes in cluster_codes:
        (cell_group, x, n), total, events = _cluster_cells(row_group, codes, event, counted)
        total = np.pad(total, (0, n_groups - len(total)))
        events = np.pad(events, (0, n_groups - len(events)))
        rho = _icc(cell_group, x, n, total=total, events=events)
        kish = np.bincount(cell_group, weights=n * n, minlength=n_groups)
        mean_size = np.divide(kish, total, out=np.ones(n_groups), where=total > 0)
        effects = np.fmax(effects, 1.0 + (mean_size - 1.0) * rho)
    return effects


def _rate_indicators(y: np.ndarray, d: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Per row: is it the rate's event, and is it counted in the rate's denominator."""
    outcome = 2 * y + d
    numerator, denominator = _RATE_COUNTS[metric]
    event = np.isin(outcome, numerator).astype(np.float64)
    counted = np.isin(outcome, denominator).astype(np.float64)
    return event, counted


def _confusion_by_code(
    y: np.ndarray, d: np.ndarray, codes: np.ndarray, n_groups: int
) -> np.ndarray:
    counts = np.bincount(codes * 4 + 2 * y + d, minlength=n_groups * 4)
    return counts.reshape(n_groups, 4).astype(np.float64)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    out = np.full(np.broadcast(numerator, denominator).shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def _rate_counts(counts: np.ndarray, rate: str) -> tuple[np.ndarray, np.ndarray]:
    """A group rate's numerator and denominator counts from confusion counts (groups, 4)."""
    numerator, denominator = _RATE_COUNTS[rate]
    return counts[:, list(numerator)].sum(axis=1), counts[:, list(denominator)].sum(axis=1)


def _rates(counts: np.ndarray) -> dict[str, np.ndarray]:
    """The four group rates from confusion counts shaped (groups, 4)."""
    return {name: _ratio(*_rate_counts(counts, name)) for name in GROUP_METRICS}


def _point_figures(rates: dict[str, np.ndarray]) -> dict[str, float]:
    """The cross-group figures' point estimates from per-group rates (NaN rates skipped)."""
    figures: dict[str, float] = {}
    for figure, (rate, kind) in FIGURE_RATES.items():
        values = rates[rate][~np.isnan(rates[rate])]
        if len(values) < 2:
            figures[figure] = float("nan")
        elif kind == "difference":
            figures[figure] = float(values.max() - values.min())
        else:
            # Every group at a zero rate is treated alike: the ratio of equals.
            figures[figure] = 1.0 if values.max() == 0 else float(values.min() / values.max())
    figures["equalized_odds_difference"] = float(
        np.fmax(figures["equal_opportunity_difference"], figures["false_positive_rate_difference"])
    )
    return figures


def _wilson(x: np.ndarray, n: np.ndarray, z: float) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(divide="ignore", invalid="ignore"):
        denominator = n + z * z
        center = (x + z * z / 2.0) / denominator
        half = z * np.sqrt(np.maximum(x * (n - x) / n, 0.0) + z * z / 4.0) / denominator
    undefined = n <= 0
    low = np.where(undefined, np.nan, np.clip(center - half, 0.0, 1.0))
    high = np.where(undefined, np.nan, np.clip(center + half, 0.0, 1.0))
    return low, high
