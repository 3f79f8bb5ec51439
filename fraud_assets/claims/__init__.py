"""Claims: the canonical schema, the synthetic generator, source mappings and validation."""

from fraud_assets.claims.mapping import (
    EmptySourceError,
    LandedRecords,
    MappingError,
    SourceError,
    SourceMapping,
    bronze_table,
    load_mapping,
    read_source,
)
from fraud_assets.claims.schema import (
    BRONZE_SCHEMA,
    CLAIM_COLUMNS,
    CLAIM_SCHEMA,
    LABEL_COLUMN,
    QUARANTINE_SCHEMA,
    SILVER_SCHEMA,
    age_group,
    age_groups,
)
from fraud_assets.claims.synthetic import (
    generate_claims,
    generate_claims_with_patterns,
    land_synthetic_batch,
    to_arrow,
    write_claims_file,
)

__all__ = [
    "BRONZE_SCHEMA",
    "CLAIM_COLUMNS",
    "CLAIM_SCHEMA",
    "LABEL_COLUMN",
    "QUARANTINE_SCHEMA",
    "SILVER_SCHEMA",
    "EmptySourceError",
    "LandedRecords",
    "MappingError",
    "SourceError",
    "SourceMapping",
    "age_group",
    "age_groups",
    "bronze_table",
    "generate_claims",
    "generate_claims_with_patterns",
    "land_synthetic_batch",
    "load_mapping",
    "read_source",
    "to_arrow",
    "write_claims_file",
]
