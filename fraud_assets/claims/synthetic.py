"""Seeded synthetic healthcare claims with realistic fraud patterns, drift and bias on demand.

Everything is vectorised numpy: a million claims take a few seconds. The generator draws
patients, providers and legitimate claims first, then turns about 7% of claims into fraud
through four patterns investigators recognise:

- ``upcoding``: the procedure is billed at the top tier of its specialty and the amount at
  1.8-3x that procedure's norm.
- ``duplicate_billing``: an earlier claim (same patient, provider, procedure, service date
  and amount) is billed again later under a new ``claim_id``; the re-bill is the fraud.
- ``phantom_service``: 6-15 procedures with no stay, billed by providers anywhere in the
  country for a small pool of patients, so each such patient is "seen" by many providers.
- ``provider_ring``: rings of four colluding providers bill a shared pool of patients at
  1.4-2.2x the procedure's norm.

Real fraud is not all obvious: by default (``ClaimShape``) 30% of fraud claims are billed
like ordinary ones and 2% of honest claims, in every group alike, are billed like fraud, so a
good model reaches a holdout ROC AUC of about 0.85 (``OBVIOUS_SHAPE`` gives the old 0.998).
``REALISTIC_SHAPE`` adds the shapes of real files: 43 states, ~2,100 diagnosis codes,
minors, inpatient claims with no procedure code and unadjudicated recent claims; options
set the prevalence (1% to 60%) and provider-level labels.

``drift`` (0-1) shifts the data a model sees: amounts inflate, the specialty and procedure
mix moves to expensive care, patients get older and claims carry more procedures. At 1.0
several features cross the PSI "major" line (0.2); at 0.0 a new seed stays under 0.1.

``bias`` (0-1) makes fraud concentrate in one group of one protected attribute,
``patient_gender == "F"`` (see ``BIAS_ATTRIBUTE`` / ``BIAS_GROUP``): that group's fraud
rate is multiplied by ``1 + 0.85 * bias`` and every other group's by ``1 - 0.85 * bias``.
The extra fraud carries the usual learnable signal (inflated amounts, ring providers,
many procedures), so a model that never sees gender still flags far more claims of women:
at 1.0 the disparate impact ratio of a decent model falls far below 0.8. That alone is a
difference in base rates, which an accurate model may rightly reflect, so the pinned policy
does not gate on it. What it gates is false accusation: at ``bias`` b a share
``FALSE_ACCUSATION_RATE * b`` (6% at 1.0) of the group's legitimate claims are billed like
fraud and stay legitimate, so a model blind to gender flags honest women several times as
often as honest men and the false-positive-rate gate fails on ``patient_gender``. At 0.0
every group of every protected attribute has the same expected fraud rate and nothing is
billed like fraud without being fraud.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from fraud_assets.claims.schema import AGE_GROUPS, CLAIM_COLUMNS, CLAIM_SCHEMA, age_groups

log = logging.getLogger(__name__)

FileFormat = Literal["csv", "parquet"]

BIAS_ATTRIBUTE = "patient_gender"
BIAS_GROUP = "F"
BIAS_STRENGTH = 0.85  # at bias=1 the favoured group's rate x1.85, the others' x0.15
# At bias=1, this share of the group's legitimate claims are billed like fraud (not re-bills:
# a duplicate needs a legitimate original).
FALSE_ACCUSATION_RATE = 0.06
LOOKALIKE_PATTERNS = ("upcoding", "phantom_service", "provider_ring")

PATTERNS: list[str] = ["upcoding", "duplicate_billing", "phantom_service", "provider_ring"]
NO_FRAUD = "none"
# Per-claim probability of each pattern before bias: 7.5% fraud in total.
PATTERN_RATES: dict[str, float] = {
    "upcoding": 0.025,
    "duplicate_billing": 0.0175,
    "phantom_service": 0.015,
    "provider_ring": 0.0175,
}

REGIONS: list[str] = ["Northeast", "Southeast", "Midwest", "Southwest", "West"]
REGION_WEIGHTS = np.array([0.18, 0.22, 0.20, 0.15, 0.25])
GENDERS: list[str] = ["F", "M"]
FEMALE_SHARE = 0.52
# Per band of AGE_GROUPS; the default claims have no minors (the first band).
AGE_GROUP_WEIGHTS = np.array([0.0, 0.27, 0.25, 0.26, 0.22])
AGE_GROUP_WEIGHTS_DRIFTED = np.array([0.0, 0.08, 0.14, 0.28, 0.50])
MAX_SYNTHETIC_AGE = 90


@dataclass(frozen=True)
class Procedure:
    code: str
    median_amount: float
    mean_stay: float  # 0 for outpatient procedures


# Five procedures per specialty, cheapest tier first: upcoding moves a claim up the tiers.
CATALOG: dict[str, list[Procedure]] = {
    "general_practice": [
        Procedure("99211", 25, 0),
        Procedure("99212", 55, 0),
        Procedure("99213", 90, 0),
        Procedure("99214", 130, 0),
        Procedure("99215", 185, 0),
    ],
    "internal_medicine": [
        Procedure("99202", 75, 0),
        Procedure("99203", 115, 0),
        Procedure("99204", 170, 0),
        Procedure("99205", 225, 0),
        Procedure("99223", 1400, 3),
    ],
    "cardiology": [
        Procedure("93000", 30, 0),
        Procedure("93015", 150, 0),
        Procedure("93306", 220, 0),
        Procedure("93458", 1900, 1),
        Procedure("33533", 38000, 6),
    ],
    "orthopedics": [
        Procedure("20610", 110, 0),
        Procedure("29881", 2100, 0),
        Procedure("27447", 21000, 3),
        Procedure("27130", 22000, 3),
        Procedure("23472", 24000, 2),
    ],
    "radiology": [
        Procedure("71046", 45, 0),
        Procedure("73721", 450, 0),
        Procedure("74177", 520, 0),
        Procedure("70553", 650, 0),
        Procedure("78815", 1500, 0),
    ],
    "physical_therapy": [
        Procedure("97140", 38, 0),
        Procedure("97110", 40, 0),
        Procedure("97112", 42, 0),
        Procedure("97530", 45, 0),
        Procedure("97161", 100, 0),
    ],
    "emergency_medicine": [
        Procedure("99281", 60, 0),
        Procedure("99282", 110, 0),
        Procedure("99283", 190, 0),
        Procedure("99284", 330, 1),
        Procedure("99285", 520, 2),
    ],
    "psychiatry": [
        Procedure("90853", 30, 0),
        Procedure("90832", 70, 0),
        Procedure("90834", 95, 0),
        Procedure("90837", 140, 0),
        Procedure("90791", 170, 0),
    ],
}
DIAGNOSES: dict[str, list[str]] = {
    "general_practice": ["Z00.00", "J06.9", "I10", "E11.9"],
    "internal_medicine": ["E11.9", "I10", "E78.5", "N18.3"],
    "cardiology": ["I25.10", "I48.91", "I50.9", "I21.4"],
    "orthopedics": ["M17.11", "M16.11", "S83.241A", "M75.101"],
    "radiology": ["R91.8", "M54.5", "R10.9", "G43.909"],
    "physical_therapy": ["M54.5", "M25.561", "S33.5XXA", "M62.81"],
    "emergency_medicine": ["R07.9", "S06.0X0A", "R10.9", "J18.9"],
    "psychiatry": ["F32.9", "F41.1", "F43.10", "F33.1"],
}
SPECIALTIES: list[str] = list(CATALOG)
SPECIALTY_WEIGHTS = np.array([0.22, 0.15, 0.10, 0.10, 0.13, 0.12, 0.10, 0.08])
SPECIALTY_WEIGHTS_DRIFTED = np.array([0.08, 0.10, 0.22, 0.22, 0.16, 0.05, 0.14, 0.03])
TIERS = 5
TIER_WEIGHTS = np.array([0.30, 0.30, 0.20, 0.12, 0.08])
TIER_WEIGHTS_DRIFTED = np.array([0.08, 0.17, 0.25, 0.25, 0.25])
RING_SIZE = 4
PATIENTS_PER_PHANTOM_CLAIMS = 8  # each phantom patient is billed ~8 times by ~8 providers
PATIENTS_PER_RING_CLAIMS = 6

_CODES = np.array([p.code for s in SPECIALTIES for p in CATALOG[s]], dtype=object)
_MEDIANS = np.array([p.median_amount for s in SPECIALTIES for p in CATALOG[s]])
_MEAN_STAY = np.array([p.mean_stay for s in SPECIALTIES for p in CATALOG[s]])
_DIAGNOSES = np.array([d for s in SPECIALTIES for d in DIAGNOSES[s]], dtype=object)
_DIAGNOSES_PER_SPECIALTY = 4

DEFAULT_PREVALENCE = sum(PATTERN_RATES.values())


@dataclass(frozen=True)
class ClaimShape:
    """How a generated file is shaped: the default, and the shapes real claims files have.

    The default (``ClaimShape()``) has five regions, four diagnoses per specialty, 7.5%
    fraud, adults only, and every claim labelled by its own pattern; its signal is realistic:
    30% of fraud is billed like ordinary claims and 2% of honest claims (in every group
    alike) look like fraud, so a good model reaches a holdout ROC AUC of about 0.85, not the
    0.998 of ``OBVIOUS_SHAPE`` (every fraud billed like its pattern, no honest outlier).
    ``REALISTIC_SHAPE`` turns every other option on.
    """

    regions: int = 0  # 0: the five census regions; n: n states "S01".."Snn", unequal sizes
    diagnosis_codes: int = 0  # 0: four per specialty; n: a long (Zipf) tail of n codes
    prevalence: float = DEFAULT_PREVALENCE  # share of fraud claims, in (0, 0.6]
    minor_share: float = 0.0  # share of patients under 18
    inpatient_without_procedures: float = 0.0  # share of inpatient claims with 0 procedures
    provider_labels: bool = False  # every claim of a provider with a fraud claim is fraud
    unlabelled_days: int = 0  # claims filed in the last n days are not adjudicated yet
    hidden_fraud: float = 0.3  # share of fraud claims billed like ordinary ones
    honest_outliers: float = 0.02  # share of legitimate claims billed like fraud, in every group
    # At bias 1, the share of the biased group's legitimate claims billed like fraud.
    false_accusation_rate: float = FALSE_ACCUSATION_RATE

    def __post_init__(self) -> None:
        if not 0.0 < self.prevalence <= 0.6:
            raise ValueError(f"prevalence must lie in (0, 0.6], got {self.prevalence}")
        for name in ("minor_share", "inpatient_without_procedures", "hidden_fraud"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {getattr(self, name)}")
        if not 0.0 <= self.honest_outliers <= 0.2:
            raise ValueError(f"honest_outliers must lie in [0, 0.2], got {self.honest_outliers}")
        if self.regions < 0 or self.diagnosis_codes < 0 or self.unlabelled_days < 0:
            raise ValueError("regions, diagnosis_codes and unlabelled_days cannot be negative")
        if 0 < self.diagnosis_codes < len(_DIAGNOSES):
            raise ValueError(
                f"diagnosis_codes must be 0 or at least {len(_DIAGNOSES)}, "
                f"got {self.diagnosis_codes}"
            )


# Shaped like the public files the gates were tried on (issue 12): 43 states, ~2,100
# diagnosis codes, minors, inpatient stays without procedure codes, the last month not yet
# adjudicated; the signal is the default (realistic).
REALISTIC_SHAPE = ClaimShape(
    regions=43,
    diagnosis_codes=2_100,
    minor_share=0.15,
    inpatient_without_procedures=0.4,
    unlabelled_days=30,
)
# The generator before its signal was made realistic: every pattern is plain to see.
OBVIOUS_SHAPE = ClaimShape(hidden_fraud=0.0, honest_outliers=0.0)
# By name, for the FRAUD_SYNTHETIC_SHAPE setting.
SHAPES: dict[str, ClaimShape] = {
    "default": ClaimShape(),
    "realistic": REALISTIC_SHAPE,
    "obvious": OBVIOUS_SHAPE,
}


def generate_claims(
    n_rows: int,
    *,
    seed: int = 42,
    drift: float = 0.0,
    bias: float = 0.0,
    start_date: date = date(2024, 1, 1),
    period_days: int = 365,
    id_prefix: str = "C",
    shape: ClaimShape = ClaimShape(),
) -> pd.DataFrame:
    """Synthetic claims with exactly the ``CLAIM_SCHEMA`` columns, in claim-date order.

    Dates are ``datetime64[ns]`` at midnight, integers ``int32``, amounts ``float64``;
    ``to_arrow`` turns the frame into a table with exactly ``CLAIM_SCHEMA``.
    """
    frame, _ = generate_claims_with_patterns(
        n_rows,
        seed=seed,
        drift=drift,
        bias=bias,
        start_date=start_date,
        period_days=period_days,
        id_prefix=id_prefix,
        shape=shape,
    )
    return frame


def generate_claims_with_patterns(
    n_rows: int,
    *,
    seed: int = 42,
    drift: float = 0.0,
    bias: float = 0.0,
    start_date: date = date(2024, 1, 1),
    period_days: int = 365,
    id_prefix: str = "C",
    shape: ClaimShape = ClaimShape(),
) -> tuple[pd.DataFrame, pd.Series]:
    """Like ``generate_claims``, plus each claim's fraud pattern (``"none"`` for legitimate).

    The pattern is ground truth for tests and demos; it is not part of the claim contract.
    """
    if n_rows < 1:
        raise ValueError(f"n_rows must be at least 1, got {n_rows}")
    for name, value in (("drift", drift), ("bias", bias)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must lie in [0, 1], got {value}")
    if period_days < 1:
        raise ValueError(f"period_days must be at least 1, got {period_days}")

    rng = np.random.default_rng(seed)
    population = _population(n_rows, rng, drift, shape)
    claims = _legitimate_claims(n_rows, rng, population, drift, period_days, shape)
    pattern = _assign_patterns(rng, population, claims["patient"], bias, _claim_rate(shape))
    # What each claim is billed like: its pattern, or a fraud pattern for a false accusation.
    billed = _billed_like(rng, population, claims, pattern, bias * shape.false_accusation_rate)
    billed = _blurred(rng, pattern, billed, shape)
    _upcode(rng, claims, billed == 1)
    _phantom_services(rng, claims, population, billed == 3)
    _provider_rings(rng, claims, population, billed == 4)
    if shape.provider_labels:
        _concentrate_on_fraudulent_providers(rng, claims, population, pattern, shape)
    # Inpatient stays are often billed by the day, with no procedure code (before re-bills
    # copy their originals).
    by_the_day = (claims["length_of_stay"] > 0) & (
        rng.random(n_rows) < shape.inpatient_without_procedures
    )
    claims["num_procedures"][by_the_day] = 0
    _duplicate_billing(rng, claims, billed)

    order = np.lexsort((np.arange(n_rows), claims["claim_day"]))
    claims = {name: values[order] for name, values in claims.items()}
    pattern = pattern[order]
    frame = _frame(claims, pattern, population, start_date, id_prefix, shape)
    labels = np.array([NO_FRAUD, *PATTERNS], dtype=object)[pattern]
    return frame, pd.Series(labels, name="fraud_pattern")


def to_arrow(frame: pd.DataFrame) -> pa.Table:
    """A claims frame as an Arrow table with exactly ``CLAIM_SCHEMA`` (no pandas metadata)."""
    missing = [c for c in CLAIM_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"claims frame lacks columns {missing}")
    table = pa.Table.from_pandas(frame[CLAIM_COLUMNS], schema=CLAIM_SCHEMA, preserve_index=False)
    return table.replace_schema_metadata(None)


def write_claims_file(
    frame: pd.DataFrame, path: str | os.PathLike[str], *, file_format: FileFormat | None = None
) -> Path:
    """Write claims as CSV or Parquet, atomically: a watcher never sees a half-written file.

    The format comes from ``file_format`` or the suffix. CSV dates are ISO ``YYYY-MM-DD``.
    """
    target = Path(path)
    fmt = file_format or _format_from_suffix(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    table = to_arrow(frame)
    # Written under a dot-name in the same folder, then renamed: rename is atomic on POSIX.
    handle, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(handle)
    tmp = Path(tmp_name)
    try:
        if fmt == "parquet":
            pq.write_table(table, tmp)
        else:
            pacsv.write_csv(table, tmp, pacsv.WriteOptions(quoting_style="needed"))
        tmp.replace(target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    log.info("wrote %d synthetic claims to %s", len(frame), target)
    return target


def land_synthetic_batch(
    landing_dir: str | os.PathLike[str],
    *,
    n_rows: int,
    seed: int,
    drift: float = 0.0,
    bias: float = 0.0,
    file_format: FileFormat = "csv",
    start_date: date = date(2024, 1, 1),
    shape: ClaimShape = ClaimShape(),
) -> Path:
    """Drop one batch of synthetic claims into a landing folder, as a claims system would.

    Claim ids carry the seed (``S<seed>-...``) so batches with different seeds never collide.
    """
    frame = generate_claims(
        n_rows,
        seed=seed,
        drift=drift,
        bias=bias,
        start_date=start_date,
        id_prefix=f"S{seed}-",
        shape=shape,
    )
    name = f"claims_seed{seed}_drift{drift:g}_bias{bias:g}.{file_format}"
    return write_claims_file(frame, Path(landing_dir) / name, file_format=file_format)


# --- internals -----------------------------------------------------------------------------


@dataclass
class _Population:
    patient_gender: np.ndarray  # index into GENDERS
    patient_age: np.ndarray
    patient_region: np.ndarray  # index into region_names
    provider_specialty: np.ndarray  # index into SPECIALTIES
    provider_region: np.ndarray
    per_cell: int  # providers per (specialty, region) cell
    rings: np.ndarray  # (n_rings, RING_SIZE) provider indices
    region_names: np.ndarray
    diagnosis_names: np.ndarray

    @property
    def n_patients(self) -> int:
        return len(self.patient_age)

    @property
    def n_providers(self) -> int:
        return len(self.provider_specialty)


def _mix(base: np.ndarray, drifted: np.ndarray, drift: float) -> np.ndarray:
    weights = (1.0 - drift) * base + drift * drifted
    return weights / weights.sum()


def _population(
    n_rows: int, rng: np.random.Generator, drift: float, shape: ClaimShape
) -> _Population:
    n_patients = max(200, n_rows // 5)
    gender = (rng.random(n_patients) >= FEMALE_SHARE).astype(np.int8)  # 0 = F, 1 = M
    age_weights = _mix(AGE_GROUP_WEIGHTS, AGE_GROUP_WEIGHTS_DRIFTED, drift)
    age_weights = age_weights * (1.0 - shape.minor_share)
    age_weights[0] = shape.minor_share
    group = rng.choice(len(AGE_GROUPS), size=n_patients, p=age_weights / age_weights.sum())
    low = np.array([g[1] for g in AGE_GROUPS])
    high = np.minimum(np.array([g[2] for g in AGE_GROUPS]), MAX_SYNTHETIC_AGE)
    age = rng.integers(low[group], high[group] + 1)
    if shape.regions:
        region_names = np.array([f"S{i + 1:02d}" for i in range(shape.regions)], dtype=object)
        region_weights = _zipf_weights(shape.regions, 0.8)  # a few big states, many small
    else:
        region_names, region_weights = np.array(REGIONS, dtype=object), REGION_WEIGHTS
    region = rng.choice(len(region_names), size=n_patients, p=region_weights)
    if shape.diagnosis_codes:
        diagnosis_names = np.array(
            [f"D{i:04d}" for i in range(shape.diagnosis_codes)], dtype=object
        )
    else:
        diagnosis_names = _DIAGNOSES

    # Every (specialty, region) cell has the same number of providers, so a claim can pick
    # its specialty and region first and then a provider with one integer draw.
    n_cells = len(SPECIALTIES) * len(region_names)
    per_cell = max(1, n_rows // (250 * n_cells))
    provider = np.arange(n_cells * per_cell)
    cell = provider // per_cell
    n_rings = max(1, len(provider) // 40)
    rings = rng.choice(len(provider), size=(n_rings, RING_SIZE), replace=False)
    return _Population(
        patient_gender=gender,
        patient_age=age.astype(np.int32),
        patient_region=region.astype(np.int16),
        provider_specialty=(cell // len(region_names)).astype(np.int8),
        provider_region=(cell % len(region_names)).astype(np.int16),
        per_cell=per_cell,
        rings=rings,
        region_names=region_names,
        diagnosis_names=diagnosis_names,
    )


def _zipf_weights(n: int, exponent: float) -> np.ndarray:
    weights = 1.0 / np.arange(1, n + 1) ** exponent
    return weights / weights.sum()


def _legitimate_claims(
    n_rows: int,
    rng: np.random.Generator,
    pop: _Population,
    drift: float,
    period_days: int,
    shape: ClaimShape,
) -> dict[str, np.ndarray]:
    patient = rng.integers(0, pop.n_patients, size=n_rows)
    specialty = rng.choice(
        len(SPECIALTIES), size=n_rows, p=_mix(SPECIALTY_WEIGHTS, SPECIALTY_WEIGHTS_DRIFTED, drift)
    )
    # Most care is local; one claim in seven is billed by a provider in another region.
    region = np.where(
        rng.random(n_rows) < 0.85,
        pop.patient_region[patient],
        rng.integers(0, len(pop.region_names), size=n_rows),
    )
    cell = specialty * len(pop.region_names) + region
    provider = cell * pop.per_cell + rng.integers(0, pop.per_cell, size=n_rows)
    tier = rng.choice(TIERS, size=n_rows, p=_mix(TIER_WEIGHTS, TIER_WEIGHTS_DRIFTED, drift))
    code = specialty * TIERS + tier
    inflation = 1.0 + 0.6 * drift
    amount = _MEDIANS[code] * inflation * rng.lognormal(0.0, 0.30, size=n_rows)
    num_procedures = 1 + rng.poisson(0.6 + 1.2 * drift, size=n_rows)
    stay_mean = _MEAN_STAY[code]
    length_of_stay = np.where(stay_mean > 0, 1 + rng.poisson(np.maximum(stay_mean - 1, 0)), 0)
    service_day = rng.integers(0, period_days, size=n_rows)
    claim_lag = np.minimum(rng.geometric(1 / 8, size=n_rows) - 1, 120)
    diagnosis = specialty * _DIAGNOSES_PER_SPECIALTY + rng.integers(
        0, _DIAGNOSES_PER_SPECIALTY, size=n_rows
    )
    if shape.diagnosis_codes:
        # A long tail: a few codes are common, most are rare (PSI's hardest case).
        diagnosis = rng.choice(
            shape.diagnosis_codes, size=n_rows, p=_zipf_weights(shape.diagnosis_codes, 0.9)
        )
    return {
        "patient": patient,
        "provider": provider,
        "code": code,
        "diagnosis": diagnosis,
        "amount": amount,
        "num_procedures": num_procedures,
        "length_of_stay": length_of_stay,
        "service_day": service_day,
        "claim_day": service_day + claim_lag,
    }


def _assign_patterns(
    rng: np.random.Generator,
    pop: _Population,
    patient: np.ndarray,
    bias: float,
    prevalence: float,
) -> np.ndarray:
    """0 for a legitimate claim, else 1 + index into PATTERNS; rates scaled per group."""
    in_group = pop.patient_gender[patient] == GENDERS.index(BIAS_GROUP)
    scale = np.where(in_group, 1.0 + BIAS_STRENGTH * bias, 1.0 - BIAS_STRENGTH * bias)
    scale = scale * (prevalence / DEFAULT_PREVALENCE)
    cumulative = np.cumsum([PATTERN_RATES[p] for p in PATTERNS])
    draw = rng.random(len(patient))
    below = draw[:, None] < cumulative[None, :] * scale[:, None]
    # The first cumulative bound the draw falls under names the pattern.
    return np.where(below.any(axis=1), below.argmax(axis=1) + 1, 0).astype(np.int8)


def _billed_like(
    rng: np.random.Generator,
    pop: _Population,
    claims: dict[str, np.ndarray],
    pattern: np.ndarray,
    accusation_rate: float,
) -> np.ndarray:
    """The pattern each claim is billed like; under bias, some honest claims look like fraud.

    A share ``accusation_rate`` (bias times ``ClaimShape.false_accusation_rate``, by default
    ``FALSE_ACCUSATION_RATE * b``) of the biased group's legitimate
    claims are billed like upcoding, a phantom service or a ring (in those patterns'
    proportions) and stay legitimate. A model cannot tell them from fraud, so it flags honest
    claims of that group far more often than others': the false-positive-rate disparity the
    fairness gates exist for. No draw is made at bias 0, so unbiased claims are unchanged.
    """
    if accusation_rate == 0.0:
        return pattern
    in_group = pop.patient_gender[claims["patient"]] == GENDERS.index(BIAS_GROUP)
    accused = (pattern == 0) & in_group & (rng.random(len(pattern)) < accusation_rate)
    codes = np.array([1 + PATTERNS.index(p) for p in LOOKALIKE_PATTERNS])
    weights = np.array([PATTERN_RATES[p] for p in LOOKALIKE_PATTERNS])
    billed = pattern.copy()
    billed[accused] = rng.choice(codes, size=int(accused.sum()), p=weights / weights.sum())
    return billed


# Under provider labels, this share of a fraudulent provider's claims carry a fraud pattern;
# the rest are its ordinary claims, labelled fraud all the same.
PROVIDER_FRAUD_DENSITY = 0.3


def _claim_rate(shape: ClaimShape) -> float:
    """The share of claims that carry a fraud pattern."""
    if shape.provider_labels:
        return PROVIDER_FRAUD_DENSITY * shape.prevalence
    return shape.prevalence


def _concentrate_on_fraudulent_providers(
    rng: np.random.Generator,
    c: dict[str, np.ndarray],
    pop: _Population,
    pattern: np.ndarray,
    shape: ClaimShape,
) -> None:
    """Provider-level labels: fraud is what some providers do, not a coin per claim.

    The ring members and enough other providers to hold ``prevalence`` of the claims are
    fraudulent; every fraud claim moves to a fraudulent provider of its own specialty (any
    one, when the specialty has none), so their claims are ``PROVIDER_FRAUD_DENSITY`` fraud.
    """
    n_fraudulent = max(len(np.unique(pop.rings)), round(shape.prevalence * pop.n_providers))
    others = np.setdiff1d(np.arange(pop.n_providers), pop.rings.ravel())
    extra = max(0, n_fraudulent - len(np.unique(pop.rings)))
    chosen = np.concatenate([np.unique(pop.rings), rng.choice(others, extra, replace=False)])
    idx = np.flatnonzero((pattern > 0) & ~np.isin(c["provider"], chosen))
    specialty = pop.provider_specialty[c["provider"][idx]]
    for s in np.unique(specialty):
        rows = idx[specialty == s]
        pool = chosen[pop.provider_specialty[chosen] == s]
        if len(pool) == 0:
            pool = chosen
        c["provider"][rows] = rng.choice(pool, size=len(rows))


def _blurred(
    rng: np.random.Generator, pattern: np.ndarray, billed: np.ndarray, shape: ClaimShape
) -> np.ndarray:
    """Real fraud is not all obvious, and some honest claims look odd.

    A share ``hidden_fraud`` of fraud claims is billed like an ordinary claim (the label
    stays); a share ``honest_outliers`` of legitimate claims, in every group alike, is billed
    like upcoding (the label stays legitimate). Together they
    cap what any model can reach, as in real claims. No draw is made when both are 0.
    """
    if shape.hidden_fraud == 0.0 and shape.honest_outliers == 0.0:
        return billed
    n = len(pattern)
    blurred = billed.copy()
    blurred[(pattern > 0) & (rng.random(n) < shape.hidden_fraud)] = 0
    # Billed like upcoding, claim by claim: an honest expensive claim is a one-off, not a
    # pooled patient's run of claims (which would cluster the false positives).
    odd = (pattern == 0) & (billed == 0) & (rng.random(n) < shape.honest_outliers)
    blurred[odd] = 1 + PATTERNS.index("upcoding")
    return blurred


def _upcode(rng: np.random.Generator, c: dict[str, np.ndarray], rows: np.ndarray) -> None:
    idx = np.flatnonzero(rows)
    specialty = c["code"][idx] // TIERS
    tier = np.minimum(c["code"][idx] % TIERS + 2, TIERS - 1)
    code = specialty * TIERS + tier
    c["code"][idx] = code
    c["amount"][idx] = _MEDIANS[code] * rng.uniform(1.8, 3.0, len(idx))
    # An upcoded inpatient code without a matching stay would be a different pattern.
    stay_mean = _MEAN_STAY[code]
    c["length_of_stay"][idx] = np.where(stay_mean > 0, np.round(stay_mean).astype(int), 0)


def _pooled(rng: np.random.Generator, patient: np.ndarray, claims_per_patient: int) -> np.ndarray:
    """Re-bill rows to a few of their own patients, so the group mix of the rows is kept."""
    n_pool = max(1, len(patient) // claims_per_patient)
    heads = patient[:n_pool]
    return heads[rng.integers(0, n_pool, size=len(patient))]


def _phantom_services(
    rng: np.random.Generator, c: dict[str, np.ndarray], pop: _Population, rows: np.ndarray
) -> None:
    idx = np.flatnonzero(rows)
    c["patient"][idx] = _pooled(rng, c["patient"][idx], PATIENTS_PER_PHANTOM_CLAIMS)
    c["provider"][idx] = rng.integers(0, pop.n_providers, size=len(idx))
    specialty = pop.provider_specialty[c["provider"][idx]].astype(np.int64)
    code = specialty * TIERS + rng.integers(0, 3, size=len(idx))  # cheap, easy-to-fake services
    n_proc = rng.integers(6, 16, size=len(idx))
    c["code"][idx] = code
    c["num_procedures"][idx] = n_proc
    c["length_of_stay"][idx] = 0
    c["amount"][idx] = _MEDIANS[code] * n_proc * rng.lognormal(0.0, 0.2, size=len(idx))
    c["diagnosis"][idx] = specialty * _DIAGNOSES_PER_SPECIALTY + rng.integers(
        0, _DIAGNOSES_PER_SPECIALTY, size=len(idx)
    )


def _provider_rings(
    rng: np.random.Generator, c: dict[str, np.ndarray], pop: _Population, rows: np.ndarray
) -> None:
    idx = np.flatnonzero(rows)
    ring = rng.integers(0, len(pop.rings), size=len(idx))
    # Each ring shares its own patient pool: pool patients are seen by every ring member.
    patient = c["patient"][idx].copy()
    for r in range(len(pop.rings)):
        members = ring == r
        if members.any():
            patient[members] = _pooled(rng, patient[members], PATIENTS_PER_RING_CLAIMS)
    provider = pop.rings[ring, rng.integers(0, RING_SIZE, size=len(idx))]
    specialty = pop.provider_specialty[provider].astype(np.int64)
    code = specialty * TIERS + rng.choice(TIERS, size=len(idx), p=TIER_WEIGHTS)
    c["patient"][idx] = patient
    c["provider"][idx] = provider
    c["code"][idx] = code
    c["amount"][idx] = _MEDIANS[code] * rng.uniform(1.4, 2.2, size=len(idx))
    stay_mean = _MEAN_STAY[code]
    c["length_of_stay"][idx] = np.where(stay_mean > 0, np.round(stay_mean).astype(int), 0)
    c["diagnosis"][idx] = specialty * _DIAGNOSES_PER_SPECIALTY + rng.integers(
        0, _DIAGNOSES_PER_SPECIALTY, size=len(idx)
    )


def _duplicate_billing(
    rng: np.random.Generator, c: dict[str, np.ndarray], pattern: np.ndarray
) -> None:
    """Make a legitimate claim the original of each re-bill: same content, earlier claim."""
    rebill = np.flatnonzero(pattern == 2)
    legit = np.flatnonzero(pattern == 0)
    if len(rebill) == 0:
        return
    if len(legit) < len(rebill):
        raise ValueError("too few legitimate claims to duplicate; generate more rows")
    original = rng.choice(legit, size=len(rebill), replace=False)
    for name in (
        "patient",
        "provider",
        "code",
        "diagnosis",
        "amount",
        "num_procedures",
        "length_of_stay",
        "service_day",
    ):
        c[name][original] = c[name][rebill]
    c["claim_day"][original] = c["service_day"][rebill] + rng.integers(0, 10, size=len(rebill))
    c["claim_day"][rebill] = c["claim_day"][original] + rng.integers(14, 90, size=len(rebill))


def _labels(
    c: dict[str, np.ndarray], pattern: np.ndarray, shape: ClaimShape
) -> pd.arrays.IntegerArray:
    """``is_fraud`` per claim: its own pattern, or its provider's; none for recent claims."""
    fraud = pattern > 0
    if shape.provider_labels:
        flagged = np.zeros(int(c["provider"].max()) + 1, dtype=bool)
        flagged[c["provider"][fraud]] = True
        fraud = flagged[c["provider"]]
    labels = pd.array(fraud.astype(np.int32), dtype="Int32")
    if shape.unlabelled_days:
        recent = c["claim_day"] > c["claim_day"].max() - shape.unlabelled_days
        labels[recent] = pd.NA
    return labels


def _frame(
    c: dict[str, np.ndarray],
    pattern: np.ndarray,
    pop: _Population,
    start_date: date,
    id_prefix: str,
    shape: ClaimShape,
) -> pd.DataFrame:
    n = len(c["patient"])
    start = np.datetime64(start_date, "D")
    patient = c["patient"]
    provider = c["provider"]
    ages = pop.patient_age[patient]
    return pd.DataFrame(
        {
            "claim_id": _ids(id_prefix, np.arange(1, n + 1), 9),
            "patient_id": _ids("PAT", np.arange(pop.n_patients), 7)[patient],
            "provider_id": _ids("PRV", np.arange(pop.n_providers), 5)[provider],
            "claim_date": (start + c["claim_day"].astype("timedelta64[D]")).astype(
                "datetime64[ns]"
            ),
            "service_date": (start + c["service_day"].astype("timedelta64[D]")).astype(
                "datetime64[ns]"
            ),
            "claim_amount": np.round(c["amount"], 2).astype(np.float64),
            "num_procedures": c["num_procedures"].astype(np.int32),
            "length_of_stay": c["length_of_stay"].astype(np.int32),
            "procedure_code": _CODES[c["code"]],
            "diagnosis_code": pop.diagnosis_names[c["diagnosis"]],
            "provider_specialty": np.array(SPECIALTIES, dtype=object)[
                pop.provider_specialty[provider]
            ],
            "patient_age": ages.astype(np.int32),
            "patient_gender": np.array(GENDERS, dtype=object)[pop.patient_gender[patient]],
            "patient_age_group": age_groups(ages),
            "geographic_region": pop.region_names[pop.patient_region[patient]],
            "is_fraud": _labels(c, pattern, shape),
        }
    )


def _ids(prefix: str, numbers: np.ndarray, width: int) -> np.ndarray:
    # pyarrow's string kernels format a million ids ~20x faster than a Python f-string loop.
    digits = pc.utf8_lpad(pa.array(numbers).cast(pa.string()), width=width, padding="0")
    return np.asarray(
        pc.binary_join_element_wise(prefix, digits, "").to_numpy(zero_copy_only=False), dtype=object
    )


def _format_from_suffix(path: Path) -> FileFormat:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    raise ValueError(f"cannot tell the file format of {path}: use a .csv or .parquet suffix")
