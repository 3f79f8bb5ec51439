"""Dagster check specs from the declarations in ``fraud_assets.checks``."""

from dagster import AssetCheckSpec

from fraud_assets import checks


def check_specs(asset: str) -> list[AssetCheckSpec]:
    """The ``AssetCheckSpec`` of every check declared on ``asset``, in declaration order."""
    return [
        AssetCheckSpec(
            check.name,
            asset=asset,
            blocking=check.blocking,
            description=check.description,
        )
        for check in checks.checks_of(asset)
    ]
