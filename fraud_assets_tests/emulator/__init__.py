"""Test support for Databricks mode: fixtures, a probe workload and a probe Dagster job.

The emulator itself is ``fraud_assets_tests.databricks_emulator``.
"""
