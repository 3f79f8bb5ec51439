"""Claims with a mapping's extra columns: source frames, mappings and silver tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import yaml

from fraud_assets.claims.schema import CLAIM_SCHEMA
from fraud_assets.claims.synthetic import generate_claims
from fraud_assets.claims.synthetic import to_arrow as claims_to_arrow


def canonical_rules() -> dict[str, Any]:
    return {f.name: {"from": f.name, "optional": f.nullable} for f in CLAIM_SCHEMA}


def extras_mapping(path: Path, **features: dict[str, Any]) -> Path:
    """A canonical mapping plus ``features``, written as YAML to ``path``."""
    document = {"name": "with_extras", "columns": canonical_rules(), "features": features}
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def claims_with_extras(n: int, *, seed: int = 5) -> pd.DataFrame:
    """Synthetic claims (as text, like a CSV) with three extra source columns."""
    claims = generate_claims(n, seed=seed)
    rng = np.random.default_rng(seed)
    frame = claims.astype({"claim_date": str, "service_date": str})
    frame["deductible"] = rng.choice(["500", "1000", "2000", ""], size=n)
    frame["hobby"] = rng.choice(["chess", "golf", "?"], size=n)
    frame["race"] = rng.choice(["a", "b", "c"], size=n)
    return frame


EXTRA_FEATURES = {
    "deductible": {"from": "deductible", "kind": "numeric"},
    "hobby": {"from": "hobby", "kind": "categorical", "missing_values": ["?"]},
    "race": {"from": "race", "kind": "categorical", "protected": True},
}


EXTRAS = ["xn_deductible", "xc_hobby", "xp_race"]


def silver_with_extras(n: int, *, seed: int = 3) -> pa.Table:
    """Silver claims with a nullable numeric, a categorical and a protected extra."""
    claims = generate_claims(n, seed=seed)
    rng = np.random.default_rng(seed)
    deductible = rng.choice([500.0, 1000.0, 2000.0, np.nan], size=n)
    hobby = rng.choice(np.array(["chess", "golf", None], dtype=object), size=n)
    race = rng.choice(np.array(["a", "b", None], dtype=object), size=n)
    table = claims_to_arrow(claims)
    table = table.append_column("_batch_id", pa.array(["b1"] * n))
    table = table.append_column(
        pa.field("xn_deductible", pa.float64()), pa.array(deductible, from_pandas=True)
    )
    table = table.append_column("xc_hobby", pa.array(list(hobby), pa.string()))
    return table.append_column("xp_race", pa.array(list(race), pa.string()))
