"""Dagster check specs from the declarations in ``fraud_assets.checks``."""

from dagster import AssetCheckSpec, AssetKey

from fraud_assets import checks


def check_specs(asset_key: AssetKey) -> list[AssetCheckSpec]:
    """The ``AssetCheckSpec`` of every check declared on ``asset_key``, in declaration order."""
    return [
        AssetCheckSpec(
            check.name,
            asset=asset_key,
            blocking=check.blocking,
            description=check.description,
        )
        for check in checks.checks_of(asset_key.to_user_string())
    ]
