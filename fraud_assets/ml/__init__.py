"""Models: training, the probability pyfunc, holdout metrics, MLflow runs and the registry.

- ``training``: fit CatBoost and XGBoost on the gold training split (seeded, imbalance-aware).
- ``pyfunc``: the logged model, returning P(fraud); self-contained so serving needs no wheel.
- ``metrics``: holdout metrics with scikit-learn-style signatures.
- ``evaluation``: candidate choice and the model quality gates.
- ``runs`` / ``tracking``: MLflow configuration, provenance and training runs.
- ``registry``: versions, evidence tags, champion/challenger aliases, rollback.
- ``scoring``: batch scoring of the latest claims with the champion.

Nothing is imported here, so importing one module does not load MLflow or the boosters.
"""
