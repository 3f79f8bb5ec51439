"""Real-time fraud scoring: a champion/challenger A/B service over the MLflow registry.

- ``router``: sticky, deterministic routing of each claim to an alias (no web imports).
- ``models``: the versions behind the ``champion`` and ``challenger`` aliases, loaded once.
- ``inference_log``: the ``inference_log`` table's schema and the buffered writer.
- ``service``: scoring without the web layer, one request or a batch of them.
- ``batcher``: micro-batching, so concurrent requests share one prediction per alias.
- ``metrics``: the Prometheus metrics behind ``GET /metrics``.
- ``app``: the HTTP app, ``create_app(settings)``; run it with ``python -m fraud_assets.serving``.

Nothing is imported here, so the batch scorer can use the router or the log schema without
loading the web stack.
"""
