"""Local runners: a job with per-step progress (``make demo``) and the drift and bias scenarios.

``python -m fraud_assets.local.run`` and ``python -m fraud_assets.local.demo`` run the code
location in this process against the persistent instance in ``$DAGSTER_HOME``; the
Databricks bundle and the Dagster UI never import them.
"""
