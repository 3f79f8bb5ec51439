"""The gold claim features in plain pandas: the single-machine peer of the PySpark version.

Written independently of ``engineering.py`` (groupby/transform instead of joins and
windows) so that a test comparing the two checks the definitions, and the benchmark can
weigh Spark against the obvious alternative on one machine.
"""

from __future__ import annotations

from datetime import date
from typing import Any, cast

import numpy as np
import pandas as pd
import pyarrow as pa

from fraud_assets.claims.schema import extra_columns
from fraud_assets.features import (
    ACTIVITY_DAYS,
    CATEGORICAL_FEATURES,
    CLAIM_FEATURES_COLUMNS,
    EXCLUDED,
    FIRST_CLAIM_GAP_DAYS,
    HOLDOUT,
    INPUT_COLUMNS,
    LABEL_COLUMN,
    LOOKBACK_DAYS,
    MISSING_CATEGORY,
    TRAIN,
    UNLABELLED,
    ZERO_SPREAD,
    SplitPolicy,
    claim_features_schema,
    out_of_time_cutoff,
    require_input_columns,
    split_bucket,
)


def build_claim_features_pandas(claims: pd.DataFrame, *, split: SplitPolicy) -> pd.DataFrame:
    """The same table as ``build_claim_features``, from a pandas frame of silver claims.

    Histories are time-based rolling windows closed on the left (``[day - LOOKBACK_DAYS,
    day)``), so same-day claims are out, as in the Spark range frames; distinct counts come
    from the intervals in which each (key, value) pair is present.
    ``claim_date`` comes back as ``datetime64[ns]``; ``to_arrow`` gives the gold schema.
    """
    require_input_columns(claims.columns, source="claims frame")
    extras = extra_columns(claims.columns)

    df = claims[[*INPUT_COLUMNS, *extras]].reset_index(drop=True)
    df = df.assign(**{name: df[name].fillna(MISSING_CATEGORY) for name in CATEGORICAL_FEATURES})
    amount = df["claim_amount"].astype("float64")
    service_date = pd.to_datetime(df["service_date"])
    claim_date = pd.to_datetime(df["claim_date"])
    days = ((claim_date - _EPOCH) // pd.Timedelta(days=1)).astype("int64")
    service_days = ((service_date - _EPOCH) // pd.Timedelta(days=1)).astype("float64")
    history = _History(df.assign(_amount=amount, _service=service_days), claim_date)

    provider_recent = history.count(["provider_id"], days=ACTIVITY_DAYS)
    provider_sum = history.sum(["provider_id"], "_amount", days=ACTIVITY_DAYS)
    provider_mean = (provider_sum + amount) / (provider_recent + 1)
    patient_recent = history.count(["patient_id"], days=ACTIVITY_DAYS)
    specialty_mean, specialty_std = history.stats_with_self(["provider_specialty"], amount)
    procedure_mean, procedure_std = history.stats_with_self(["procedure_code"], amount)
    latest_service = history.max(["patient_id"], "_service", days=ACTIVITY_DAYS)
    gap = (service_days - latest_service).clip(lower=0)
    duplicates = history.count(["patient_id", "provider_id", "procedure_code", "service_date"])

    features = pd.DataFrame(
        {
            "claim_id": df["claim_id"],
            "is_fraud": df["is_fraud"].astype("Int32"),
            "split": _split(df, split),
            "claim_date": claim_date,
            "patient_id": df["patient_id"],
            "provider_id": df["provider_id"],
            "patient_gender": df["patient_gender"],
            "patient_age_group": df["patient_age_group"],
            "geographic_region": df["geographic_region"],
            "claim_amount": amount,
            "num_procedures": df["num_procedures"].astype("int32"),
            "length_of_stay": df["length_of_stay"].astype("int32"),
            "amount_per_procedure": amount / df["num_procedures"].clip(lower=1),
            "service_to_claim_days": (claim_date - service_date).dt.days.astype("int32"),
            "provider_claim_count": (provider_recent + 1).astype("int64"),
            "provider_unique_patients": _distinct_with_self(
                df, days, "provider_id", "patient_id", window=ACTIVITY_DAYS
            ),
            "provider_avg_amount": provider_mean,
            "provider_amount_peer_zscore": _zscore(provider_mean, specialty_mean, specialty_std),
            "patient_claim_count": (patient_recent + 1).astype("int64"),
            "patient_provider_count": _distinct_with_self(
                df, days, "patient_id", "provider_id", window=ACTIVITY_DAYS
            ),
            "days_since_prev_patient_claim": gap.fillna(FIRST_CLAIM_GAP_DAYS).astype("int32"),
            "amount_vs_procedure_mean": np.where(
                procedure_mean == 0, 1.0, amount / procedure_mean.replace(0, np.nan)
            ),
            "amount_procedure_zscore": _zscore(amount, procedure_mean, procedure_std),
            "duplicate_claim_count": duplicates.astype("int64"),
            "is_duplicate_claim": (duplicates > 0).astype("int32"),
            "procedure_code": df["procedure_code"],
            "diagnosis_code": df["diagnosis_code"],
            "provider_specialty": df["provider_specialty"],
        }
    )
    for name in extras:
        # Copied per claim: numbers stay missing (NaN), text gets the missing category.
        features[name] = (
            df[name].astype("float64")
            if name in extra_columns([name], "numeric")
            else df[name].astype("object").where(df[name].notna(), MISSING_CATEGORY)
        )
    return features[[*CLAIM_FEATURES_COLUMNS, *extras]]


_EPOCH = pd.Timestamp("1970-01-01")


class _History:
    """Rolling aggregates over each claim's history, aligned to the frame's index."""

    def __init__(self, df: pd.DataFrame, claim_date: pd.Series) -> None:
        # groupby().rolling(on=...) needs the dates ordered within each group.
        self._df = df.assign(_date=claim_date).sort_values("_date", kind="stable")

    def _rolling(self, keys: list[str], column: str, days: int = LOOKBACK_DAYS) -> Any:
        grouped = self._df.groupby(keys, dropna=False, sort=False)[[column, "_date"]]
        return grouped.rolling(f"{days}D", on="_date", closed="left")

    def _aligned(self, rolled: pd.DataFrame, keys: list[str], column: str) -> pd.Series:
        values = rolled[column].reset_index(level=list(range(len(keys))), drop=True)
        return values.reindex(self._df.index).sort_index()

    def count(self, keys: list[str], *, days: int = LOOKBACK_DAYS) -> pd.Series:
        rolled = self._rolling(keys, "_amount", days).count()
        return self._aligned(rolled, keys, "_amount").fillna(0.0)

    def sum(self, keys: list[str], column: str, *, days: int) -> pd.Series:
        rolled = self._rolling(keys, column, days).sum()
        return self._aligned(rolled, keys, column).fillna(0.0)

    def max(self, keys: list[str], column: str, *, days: int) -> pd.Series:
        return self._aligned(self._rolling(keys, column, days).max(), keys, column)

    def stats_with_self(self, keys: list[str], value: pd.Series) -> tuple[pd.Series, pd.Series]:
        """Mean and population std of the history plus ``value``, combined by Chan's update."""
        n = self.count(keys)
        mean = self._aligned(self._rolling(keys, "_amount").mean(), keys, "_amount")
        variance = self._aligned(self._rolling(keys, "_amount").var(ddof=0), keys, "_amount")
        history_mean = mean.fillna(value)
        delta = value - history_mean
        m2 = variance.fillna(0.0) * n + delta * delta * n / (n + 1)
        return history_mean + delta / (n + 1), (m2 / (n + 1)).pow(0.5)


def _distinct_with_self(
    df: pd.DataFrame, days: pd.Series, key: str, other: str, *, window: int
) -> pd.Series:
    """Distinct ``other`` values among the claim's ``key`` history, the claim's own included.

    A claim of (key, other) on day t puts the pair in the history of days t+1 .. t+window; the
    pair's runs of overlapping spans give +1/-1 events whose running sum per key, read at a
    claim's day, counts the pairs in its history.
    """
    pairs = (
        pd.DataFrame({"key": df[key], "other": df[other], "day": days})
        .drop_duplicates()
        .sort_values(["key", "other", "day"], kind="stable")
    )
    same_pair = (pairs["key"] == pairs["key"].shift()) & (pairs["other"] == pairs["other"].shift())
    new_run = ~same_pair | (pairs["day"] - pairs["day"].shift() > window)
    run = new_run.cumsum()
    spans = pairs.groupby(run).agg(key=("key", "first"), first=("day", "min"), last=("day", "max"))
    events = pd.concat(
        [
            pd.DataFrame({"key": spans["key"], "day": spans["first"] + 1, "delta": 1}),
            pd.DataFrame({"key": spans["key"], "day": spans["last"] + window + 1, "delta": -1}),
        ]
    )
    level = events.groupby(["key", "day"], as_index=False).agg(delta=("delta", "sum"))
    level = level.sort_values("day")
    level["present"] = level.groupby("key")["delta"].cumsum()
    queries = pd.DataFrame({"key": df[key], "other": df[other], "day": days, "row": df.index})
    counted = pd.merge_asof(
        queries.sort_values("day"), level[["key", "day", "present"]], on="day", by="key"
    )
    # Is the claim's own pair already in its history? Its latest earlier day says so.
    previous = pairs.rename(columns={"day": "previous"}).assign(day=lambda p: p["previous"])
    seen = pd.merge_asof(
        counted.sort_values("day"),
        previous[["key", "other", "day", "previous"]].sort_values("day"),
        on="day",
        by=["key", "other"],
        allow_exact_matches=False,
    )
    own_in_history = seen["previous"].notna() & (seen["day"] - seen["previous"] <= window)
    total = seen["present"].fillna(0) + (~own_in_history).astype("int64")
    return total.set_axis(seen["row"]).sort_index().astype("int64")


def to_arrow(features: pd.DataFrame) -> pa.Table:
    """The pandas features as an Arrow table with exactly the gold schema (and its extras)."""
    frame = features.assign(claim_date=pd.to_datetime(features["claim_date"]).dt.date)
    schema = claim_features_schema(features.columns)
    return pa.Table.from_pandas(frame, schema=schema, preserve_index=False)


def _zscore(value: pd.Series, mean: pd.Series, std: pd.Series) -> pd.Series:
    spread = std.fillna(0.0)
    return ((value - mean) / spread.where(spread >= ZERO_SPREAD)).where(spread >= ZERO_SPREAD, 0.0)


def _split(df: pd.DataFrame, split: SplitPolicy) -> np.ndarray:
    labelled = df[LABEL_COLUMN].notna().to_numpy()
    units = df[split.unit_column].astype(str)
    bucket_of = {unit: split_bucket(unit, seed=split.seed) for unit in units.unique()}
    in_group = units.map(bucket_of).to_numpy() < split.bucket_limit
    if split.strategy == "random":
        decided = np.where(in_group, HOLDOUT, TRAIN)
    else:
        days = pd.to_datetime(df["claim_date"]).dt.date
        counts = {cast(date, day): int(n) for day, n in days[labelled].value_counts().items()}
        cutoff = out_of_time_cutoff(counts, split.time_fraction)
        late = np.zeros(len(df), dtype=bool) if cutoff is None else (days >= cutoff).to_numpy()
        if split.grouped_in_time:
            decided = np.where(
                in_group & late, HOLDOUT, np.where(~in_group & ~late, TRAIN, EXCLUDED)
            )
        else:
            decided = np.where(late, HOLDOUT, TRAIN)
    return np.where(labelled, decided, UNLABELLED)
