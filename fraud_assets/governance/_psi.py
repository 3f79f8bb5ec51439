"""Population stability index of every model feature and of the score.

PSI = sum over bins of (current share - reference share) * ln(current share / reference share).

- Numeric columns use quantile bins fixed on the reference: interior edges at the reference's
  1/b, 2/b, ... quantiles, outer bins open-ended, duplicate edges (ties, e.g. a count that is
  mostly 1) merged. Bins are right-closed: (edge[k-1], edge[k]].
- Categorical columns use the reference's categories plus one "unseen" bucket that counts
  every current value the reference never had.
- With ``min_bucket_count`` m > 0 (the pipeline's default, ``psi_min_bucket_count``), no
  bucket is too small to estimate: a category keeps its own bucket only when its share in
  either sample, times the smaller sample's size, reaches m; the rest are pooled into
  "(other)" (so a new code that takes a fifth of the claims is its own bucket, and drift).
  Numeric columns get at most ``smaller sample size / m`` quantile bins. Why: under no
  drift, PSI is about chi-square with (buckets - 1) degrees of freedom times
  (1/n_ref + 1/n_cur); 2,000 diagnosis codes over 1,000 claims read as PSI ~2 from noise
  alone, while buckets expecting 50 rows keep the noise near 0.04 (docs/governance.md).
- Missing values get their own "missing" bucket in both kinds, so a column that starts
  arriving empty is drift, not silently ignored.
- A share below ``epsilon`` counts as ``epsilon``, so an empty bin (a tiny sample, an unseen
  category) gives a large but finite PSI, never inf.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

DriftLevel = Literal["none", "minor", "major"]
FeatureKind = Literal["numeric", "categorical", "score"]
DRIFT_LEVELS: tuple[DriftLevel, ...] = ("none", "minor", "major")
UNSEEN_BUCKET = "(unseen)"
MISSING_BUCKET = "(missing)"
OTHER_BUCKET = "(other)"


@dataclass(frozen=True)
class ColumnPsi:
    """One column's PSI with the buckets it was computed on."""

    column: str
    kind: FeatureKind
    psi: float
    buckets: list[str]
    reference_share: list[float]
    current_share: list[float]
    edges: list[float] | None = None


def population_stability_index(
    reference_counts: npt.ArrayLike, current_counts: npt.ArrayLike, *, epsilon: float
) -> float:
    """PSI from bucket counts; shares below ``epsilon`` are raised to it."""
    ref = np.asarray(reference_counts, dtype=np.float64)
    cur = np.asarray(current_counts, dtype=np.float64)
    if ref.shape != cur.shape:
        raise ValueError(f"bucket counts differ in shape: {ref.shape} vs {cur.shape}")
    if ref.sum() <= 0 or cur.sum() <= 0:
        raise ValueError("PSI needs at least one reference and one current value")
    if epsilon <= 0:
        raise ValueError(f"epsilon must be positive, got {epsilon}")
    ref_share = np.maximum(ref / ref.sum(), epsilon)
    cur_share = np.maximum(cur / cur.sum(), epsilon)
    return float(np.sum((cur_share - ref_share) * np.log(cur_share / ref_share)))


def quantile_edges(reference: npt.ArrayLike, *, bins: int) -> np.ndarray:
    """Interior bin edges at the reference's quantiles, duplicates merged."""
    present, _ = _sorted_present(reference, "reference")
    return _edges_of_sorted(present, bins)


def numeric_psi(
    reference: npt.ArrayLike,
    current: npt.ArrayLike,
    *,
    bins: int,
    epsilon: float,
    column: str = "value",
    kind: FeatureKind = "numeric",
    min_bucket_count: int = 0,
) -> ColumnPsi:
    """PSI of a numeric column over quantile bins fixed on the reference.

    ``min_bucket_count`` > 0 caps the bins at the smaller sample's size over it (at least 2).
    """
    ref_sorted, ref_missing = _sorted_present(reference, column)
    cur_sorted, cur_missing = _sorted_present(current, column)
    if min_bucket_count > 0:
        smaller = min(ref_sorted.size + ref_missing, cur_sorted.size + cur_missing)
        bins = max(2, min(bins, smaller // min_bucket_count))
    edges = _edges_of_sorted(ref_sorted, bins)
    ref_counts = np.append(_counts_of_sorted(ref_sorted, edges), ref_missing)
    cur_counts = np.append(_counts_of_sorted(cur_sorted, edges), cur_missing)
    labels = [*_interval_labels(edges), MISSING_BUCKET]
    return ColumnPsi(
        column=column,
        kind=kind,
        psi=population_stability_index(ref_counts, cur_counts, epsilon=epsilon),
        buckets=labels,
        reference_share=(ref_counts / ref_counts.sum()).tolist(),
        current_share=(cur_counts / cur_counts.sum()).tolist(),
        edges=edges.tolist(),
    )


def _sorted_present(values: npt.ArrayLike, column: str) -> tuple[np.ndarray, int]:
    """The non-missing values sorted, and how many were missing."""
    array = _as_float(values, column)
    missing = np.isnan(array)
    # Sorting once, then locating the few edges in it, is ~2x faster than locating a
    # million values among the edges, and quantiles of sorted data come cheap.
    return np.sort(array[~missing]), int(missing.sum())


def _edges_of_sorted(present: np.ndarray, bins: int) -> np.ndarray:
    if bins < 2:
        raise ValueError(f"bins must be at least 2, got {bins}")
    if present.size == 0:
        return np.empty(0)
    return np.unique(np.quantile(present, np.linspace(0.0, 1.0, bins + 1)[1:-1]))


def _counts_of_sorted(present: np.ndarray, edges: np.ndarray) -> np.ndarray:
    # side="right": a value equal to an edge belongs to the bin that edge closes.
    at_or_below = np.searchsorted(present, edges, side="right")
    return np.diff(np.concatenate([[0], at_or_below, [present.size]])).astype(np.int64)


def categorical_psi(
    reference: npt.ArrayLike | pd.Series,
    current: npt.ArrayLike | pd.Series,
    *,
    epsilon: float,
    column: str = "value",
    min_bucket_count: int = 0,
) -> ColumnPsi:
    """PSI of a categorical column: reference categories, then "unseen", then "missing".

    With ``min_bucket_count`` > 0: the frequent categories (see the module docstring),
    then "(other)", then "missing".
    """
    ref_counts, ref_missing = _label_counts(reference)
    cur_counts, cur_missing = _label_counts(current)
    if min_bucket_count > 0:
        return _pooled_categorical_psi(
            ref_counts, ref_missing, cur_counts, cur_missing, epsilon, column, min_bucket_count
        )
    categories = sorted(ref_counts)
    cur_seen = np.array([cur_counts.get(c, 0) for c in categories], dtype=np.int64)
    unseen = sum(n for label, n in cur_counts.items() if label not in ref_counts)
    ref_all = np.array([*(ref_counts[c] for c in categories), 0, ref_missing], dtype=np.int64)
    cur_all = np.array([*cur_seen, unseen, cur_missing], dtype=np.int64)
    return ColumnPsi(
        column=column,
        kind="categorical",
        psi=population_stability_index(ref_all, cur_all, epsilon=epsilon),
        buckets=[*categories, UNSEEN_BUCKET, MISSING_BUCKET],
        reference_share=(ref_all / ref_all.sum()).tolist(),
        current_share=(cur_all / cur_all.sum()).tolist(),
    )


def _pooled_categorical_psi(
    ref_counts: dict[str, int],
    ref_missing: int,
    cur_counts: dict[str, int],
    cur_missing: int,
    epsilon: float,
    column: str,
    min_count: int,
) -> ColumnPsi:
    n_ref = sum(ref_counts.values()) + ref_missing
    n_cur = sum(cur_counts.values()) + cur_missing
    smaller = min(n_ref, n_cur)
    kept = sorted(
        label
        for label in set(ref_counts) | set(cur_counts)
        if max(ref_counts.get(label, 0) / max(n_ref, 1), cur_counts.get(label, 0) / max(n_cur, 1))
        * smaller
        >= min_count
    )
    ref_kept = [ref_counts.get(label, 0) for label in kept]
    cur_kept = [cur_counts.get(label, 0) for label in kept]
    ref_all = np.array([*ref_kept, n_ref - ref_missing - sum(ref_kept), ref_missing], np.int64)
    cur_all = np.array([*cur_kept, n_cur - cur_missing - sum(cur_kept), cur_missing], np.int64)
    return ColumnPsi(
        column=column,
        kind="categorical",
        psi=population_stability_index(ref_all, cur_all, epsilon=epsilon),
        buckets=[*kept, OTHER_BUCKET, MISSING_BUCKET],
        reference_share=(ref_all / ref_all.sum()).tolist(),
        current_share=(cur_all / cur_all.sum()).tolist(),
    )


def drift_level(psi: float, *, warn: float, error: float) -> DriftLevel:
    """ "none" below ``warn``, "minor" from ``warn`` to below ``error``, "major" from ``error``."""
    if np.isnan(psi):
        raise ValueError("PSI is NaN: the drift level is undefined")
    if psi >= error:
        return "major"
    if psi >= warn:
        return "minor"
    return "none"


# Own implementation, not Evidently's: its PSI bins numeric columns equal-width over both
# samples; equal to it on the same buckets (bench/bench_governance.py).
def psi_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    numeric_features: Sequence[str],
    categorical_features: Sequence[str],
    score_column: str | None,
    bins: int,
    epsilon: float,
    warn: float,
    error: float,
    current_scores: pd.Series | None = None,
    min_bucket_count: int = 0,
) -> pd.DataFrame:
    """One row per feature and the score: PSI, drift level, row counts and buckets.

    ``current_scores`` replaces ``current[score_column]`` when only some current rows were
    scored by the model the reference belongs to. ``min_bucket_count`` > 0 pools rare
    categories and caps numeric bins (module docstring).
    """
    m = min_bucket_count
    columns = [*numeric_features, *categorical_features, *([score_column] if score_column else [])]
    for name, frame in (("reference", reference), ("current", current)):
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise ValueError(f"{name} data lacks columns {missing}")
        if len(frame) == 0:
            raise ValueError(f"{name} data has no rows: PSI needs both samples")
    rows: list[tuple[ColumnPsi, int, int]] = [
        (
            numeric_psi(
                reference[c], current[c], bins=bins, epsilon=epsilon, column=c, min_bucket_count=m
            ),
            len(reference),
            len(current),
        )
        for c in numeric_features
    ]
    rows += [
        (
            categorical_psi(
                reference[c], current[c], epsilon=epsilon, column=c, min_bucket_count=m
            ),
            len(reference),
            len(current),
        )
        for c in categorical_features
    ]
    if score_column:
        scores = current[score_column] if current_scores is None else current_scores
        if len(scores) == 0:
            raise ValueError("no current scores: the score PSI needs at least one")
        result = numeric_psi(
            reference[score_column],
            scores,
            bins=bins,
            epsilon=epsilon,
            column=score_column,
            kind="score",
            min_bucket_count=m,
        )
        rows.append((result, len(reference), len(scores)))
    return pd.DataFrame(
        {
            "feature": [r.column for r, _, _ in rows],
            "kind": [r.kind for r, _, _ in rows],
            "psi": [r.psi for r, _, _ in rows],
            "drift_level": [drift_level(r.psi, warn=warn, error=error) for r, _, _ in rows],
            "buckets": [len(r.buckets) for r, _, _ in rows],
            "reference_rows": [n for _, n, _ in rows],
            "current_rows": [n for _, _, n in rows],
            "bucket_detail": [
                json.dumps(
                    {
                        "buckets": r.buckets,
                        "reference_share": r.reference_share,
                        "current_share": r.current_share,
                        "edges": r.edges,
                    }
                )
                for r, _, _ in rows
            ],
        }
    )


@dataclass(frozen=True)
class ScoredWindow:
    """The slice of ``inference_log`` that drift is measured on."""

    window_id: str
    started_at: pd.Timestamp
    ended_at: pd.Timestamp
    batch_rows: int
    realtime_rows: int


def latest_scored_window(inference_log: pd.DataFrame) -> tuple[pd.DataFrame, ScoredWindow]:
    """Rows of the most recent scoring window, plus real-time rows scored since it started.

    The latest window is the batch window with the latest ``scored_at`` (any source's window
    when nothing was batch-scored), so a trickle of real-time rows cannot displace it.
    """
    required = ["window_id", "scored_at", "source"]
    missing = [c for c in required if c not in inference_log.columns]
    if missing:
        raise ValueError(f"inference_log lacks columns {missing}")
    if inference_log.empty:
        raise LookupError("inference_log has no rows: no scoring window has been scored yet")
    source = inference_log["source"].astype("string")
    batch = inference_log.loc[source == "batch"]
    candidates = batch if not batch.empty else inference_log
    windows = candidates.dropna(subset=["window_id"]).groupby("window_id")["scored_at"]
    if windows.ngroups == 0:
        raise LookupError("inference_log has no row with a window_id: nothing to compare")
    bounds = windows.agg(["min", "max"])
    latest = bounds["max"].idxmax()
    started = bounds.at[latest, "min"]
    in_window = (inference_log["window_id"] == latest).fillna(False).to_numpy(dtype=bool)
    realtime = ((source == "realtime") & (inference_log["scored_at"] >= started)).fillna(False)
    realtime_only = realtime.to_numpy(dtype=bool) & ~in_window
    current = inference_log.loc[in_window | realtime_only].reset_index(drop=True)
    return current, ScoredWindow(
        window_id=str(latest),
        started_at=pd.Timestamp(str(started)),
        ended_at=pd.Timestamp(current["scored_at"].max()),
        batch_rows=int(in_window.sum()),
        realtime_rows=int(realtime_only.sum()),
    )


def _interval_labels(edges: np.ndarray) -> list[str]:
    bounds = [-np.inf, *edges.tolist(), np.inf]
    return [f"({lo:.6g}, {hi:.6g}]" for lo, hi in itertools.pairwise(bounds)]


def _label_counts(values: npt.ArrayLike | pd.Series) -> tuple[dict[str, int], int]:
    """Count per category label, and the missing count, in one factorize pass."""
    if not isinstance(values, pd.Series):
        values = pd.Series(np.asarray(values, dtype=object))
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    counts = np.bincount(codes[codes >= 0], minlength=len(uniques))
    labelled: dict[str, int] = {}
    # Labels compare as strings, so a code read back as 93000 or 93000.0 still matches "93000".
    for value, count in zip(uniques, counts, strict=True):
        label = _label(value)
        labelled[label] = labelled.get(label, 0) + int(count)
    return labelled, int((codes < 0).sum())


def _label(value: object) -> str:
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _as_float(values: npt.ArrayLike | pd.Series, column: str) -> np.ndarray:
    series = values if isinstance(values, pd.Series) else pd.Series(np.asarray(values))
    try:
        numbers = pd.to_numeric(series, errors="raise")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"numeric column {column!r} holds non-numeric values: {exc}") from None
    return np.asarray(pd.Series(numbers).to_numpy(dtype=np.float64, na_value=np.nan))


# --- the serving endpoint's inference table ------------------------------------------------

ENDPOINT_SOURCE = "endpoint"
# MLflow serving's input formats; each record is one claim as the caller sent it.
_RECORD_FORMATS = ("dataframe_records", "instances")


@dataclass(frozen=True)
class EndpointRows:
    """Claims the serving endpoint answered in the window, and the requests left out."""

    rows: pd.DataFrame
    requests: int
    skipped: dict[str, str]


def endpoint_window_rows(payload: pd.DataFrame, *, since: pd.Timestamp) -> EndpointRows:
    """One row per claim the endpoint scored successfully from ``since`` on.

    ``payload`` is the endpoint's inference table as Databricks writes it: the AI Gateway
    format (``request_time``, ``status_code``, ``request`` and ``response`` JSON,
    ``databricks_request_id``) or the older auto-capture one (``timestamp_ms``,
    ``request_metadata`` with ``model_version``). Each request's records become rows with
    their features, ``claim_id``, the returned ``fraud_score``, ``source`` "endpoint",
    ``scored_at`` and, when the table records it, ``model_version``. A request whose JSON
    cannot be read as claims and scores is left out and named in ``skipped`` with why.
    """
    if "request_time" in payload.columns:
        times = pd.to_datetime(payload["request_time"], utc=True)
    elif "timestamp_ms" in payload.columns:
        times = pd.to_datetime(payload["timestamp_ms"], unit="ms", utc=True)
    else:
        raise ValueError(
            "the endpoint inference table has neither request_time (AI Gateway) nor "
            f"timestamp_ms (auto-capture); its columns are {sorted(payload.columns)}"
        )
    missing = [c for c in ("status_code", "request", "response") if c not in payload.columns]
    if missing:
        raise ValueError(f"the endpoint inference table lacks columns {missing}")
    start = pd.Timestamp(since)
    start = start.tz_localize("UTC") if start.tzinfo is None else start
    keep = ((times >= start) & (payload["status_code"] == 200)).fillna(False)
    frames: list[pd.DataFrame] = []
    skipped: dict[str, str] = {}
    mask = keep.to_numpy(dtype=bool)
    selected = payload.loc[mask]
    for (index, row), scored_at in zip(selected.iterrows(), times[mask], strict=True):
        request_id = str(row.get("databricks_request_id") or f"row {index}")
        try:
            frame = _scored_claims(row["request"], row["response"])
        except ValueError as exc:
            skipped[request_id] = str(exc)
            continue
        frame["source"] = ENDPOINT_SOURCE
        frame["scored_at"] = scored_at
        frame["request_id"] = request_id
        frame["model_version"] = _logged_version(row.get("request_metadata"))
        frames.append(frame)
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return EndpointRows(rows=rows, requests=len(selected), skipped=skipped)


def _scored_claims(request: object, response: object) -> pd.DataFrame:
    body = _json_object(request, "request")
    records: object = None
    if "dataframe_split" in body:
        split = body["dataframe_split"]
        if not isinstance(split, dict) or "columns" not in split or "data" not in split:
            raise ValueError("request dataframe_split needs columns and data")
        records = [dict(zip(split["columns"], values, strict=True)) for values in split["data"]]
    else:
        records = next((body[f] for f in _RECORD_FORMATS if f in body), None)
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise ValueError(
            "request holds no claims as dataframe_records, dataframe_split or instances objects"
        )
    predictions = _json_object(response, "response").get("predictions")
    if not isinstance(predictions, list) or len(predictions) != len(records):
        raise ValueError(
            f"response predictions do not give one score per claim ({len(records)} claims)"
        )
    scores = [_score(p) for p in predictions]
    frame = pd.DataFrame.from_records(records)
    frame["fraud_score"] = np.asarray(scores, dtype="float64")
    return frame


def _json_object(text: object, what: str) -> dict[str, object]:
    try:
        body = json.loads(str(text))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what} is not JSON ({exc.msg} at {exc.pos})") from None
    if not isinstance(body, dict):
        raise ValueError(f"{what} is not a JSON object")
    return body


def _score(prediction: object) -> float:
    if isinstance(prediction, bool) or not isinstance(prediction, int | float):
        raise ValueError(f"response prediction {prediction!r} is not a probability")
    if not 0.0 <= float(prediction) <= 1.0:
        raise ValueError(f"response prediction {prediction!r} is not a probability")
    return float(prediction)


def _logged_version(metadata: object) -> str | None:
    # Auto-capture tables record the served version; AI Gateway ones only an entity id.
    if isinstance(metadata, dict):
        version = metadata.get("model_version")
    elif isinstance(metadata, list):  # a Delta map read through Arrow: (key, value) pairs
        version = dict(metadata).get("model_version")
    else:
        return None
    return None if version is None else str(version)
