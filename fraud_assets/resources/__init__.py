"""Dagster resources: compute for heavy steps, and alert delivery."""
