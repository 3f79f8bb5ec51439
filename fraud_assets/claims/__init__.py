"""Claims: the canonical schema, the synthetic generator, source mappings and validation."""

from fraud_assets.claims.schema import CLAIM_COLUMNS, CLAIM_SCHEMA, LABEL_COLUMN

__all__ = ["CLAIM_COLUMNS", "CLAIM_SCHEMA", "LABEL_COLUMN"]
