"""Write a small, seeded claims + beneficiaries + provider labels file set for the
``multi_file_claims`` mapping (the shape of the public Medicare provider-fraud files).

    python -m fraud_assets_tests.multi_file_claims <folder> [--claims 200] [--seed 7]
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

CLAIMS_FILE = "claims.csv"
BENEFICIARIES_FILE = "beneficiaries.csv"
PROVIDER_LABELS_FILE = "provider_labels.csv"
PROCEDURE_COLUMNS = ["ClmProcedureCode_1", "ClmProcedureCode_2", "ClmProcedureCode_3"]


@dataclass(frozen=True)
class MultiFileClaims:
    """The three files written, and the frames they hold (all values as written)."""

    claims_path: Path
    claims: pd.DataFrame
    beneficiaries: pd.DataFrame
    provider_labels: pd.DataFrame


def write_multi_file_claims(folder: Path, *, n_claims: int = 60, seed: int = 7) -> MultiFileClaims:
    """Claims of ``n_claims // 3`` beneficiaries at six providers, about a third inpatient.

    The first beneficiary was born on 29 February and the first claim is theirs, dated the
    day before their birthday in a year without one, so that age edge case is always there.
    """
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    n_members = max(n_claims // 3, 2)
    births = [date(1940, 1, 1) + timedelta(days=int(d)) for d in rng.integers(0, 24_500, n_members)]
    births[0] = date(1952, 2, 29)
    beneficiaries = pd.DataFrame(
        {
            "BeneID": [f"BENE{11000 + i}" for i in range(n_members)],
            "DOB": [b.isoformat() for b in births],
            "Gender": rng.choice(["1", "2"], n_members),
            "State": rng.choice(["5", "10", "33", "39", "45"], n_members),
            "County": rng.integers(0, 999, n_members).astype(str),
        }
    )
    providers = [f"PRV5{1000 + i}" for i in range(6)]
    provider_labels = pd.DataFrame(
        {"Provider": providers, "PotentialFraud": ["Yes", "No", "No", "Yes", "No", "No"]}
    )

    members = rng.integers(0, n_members, n_claims)
    starts = [date(2009, 1, 1) + timedelta(days=int(d)) for d in rng.integers(0, 360, n_claims)]
    inpatient = rng.random(n_claims) < 0.35
    stays = rng.integers(0, 20, n_claims)
    ends = [
        start + timedelta(days=int(stay) if is_in else int(rng.integers(0, 3)))
        for start, stay, is_in in zip(starts, stays, inpatient, strict=True)
    ]
    # Claimed the day before the first beneficiary's 57th birthday (1 March in 2009).
    members[0], starts[0], ends[0] = 0, date(2009, 2, 27), date(2009, 2, 28)
    codes = rng.choice(["4019", "9904", "8154", "3893", "66"], (n_claims, 3))
    filled = rng.integers(0, 4, n_claims)  # procedure code columns filled, left to right
    procedures = {
        column: [code if k < n else "" for code, n in zip(codes[:, k], filled, strict=True)]
        for k, column in enumerate(PROCEDURE_COLUMNS)
    }
    claims = pd.DataFrame(
        {
            "ClaimID": [f"CLM{40000 + i}" for i in range(n_claims)],
            "BeneID": beneficiaries["BeneID"].to_numpy()[members],
            "Provider": rng.choice(providers, n_claims),
            "ClaimStartDt": [s.isoformat() for s in starts],
            "ClaimEndDt": [e.isoformat() for e in ends],
            "AdmissionDt": [
                s.isoformat() if i else "" for s, i in zip(starts, inpatient, strict=True)
            ],
            "DischargeDt": [
                e.isoformat() if i else "" for e, i in zip(ends, inpatient, strict=True)
            ],
            "InscClaimAmtReimbursed": rng.integers(10, 50_000, n_claims).astype(str),
            "ClmDiagnosisCode_1": rng.choice(["4019", "2724", "25000", "V5869"], n_claims),
            **procedures,
        }
    )
    claims_path = folder / CLAIMS_FILE
    claims.to_csv(claims_path, index=False)
    beneficiaries.to_csv(folder / BENEFICIARIES_FILE, index=False)
    provider_labels.to_csv(folder / PROVIDER_LABELS_FILE, index=False)
    log.info(
        "wrote %d claims, %d beneficiaries and %d providers to %s",
        n_claims,
        n_members,
        len(providers),
        folder,
    )
    return MultiFileClaims(claims_path, claims, beneficiaries, provider_labels)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--claims", type=int, default=60)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    write_multi_file_claims(args.folder, n_claims=args.claims, seed=args.seed)


if __name__ == "__main__":
    main()
