"""Benchmark: training time per model, and batch scoring throughput against the raw booster.

    python bench/bench_training_scoring.py                      # 1M claims, default params
    python bench/bench_training_scoring.py --rows 200000 --repeats 2

In a fresh temporary FRAUD_HOME it generates synthetic claims, builds the gold features
with the plain-pandas peer of the feature step (proven equal to the PySpark one by the
features tests; Spark feature time is measured in bench_ingest_features.py), and then, per
model (CatBoost, XGBoost) with the default training parameters:

- times ``train_model`` on the training split;
- logs the model exactly as the train step does, registers it and loads it from the
  registry as the score step does;
- on the same rows (every claim, as a batch), times the score step's scoring path
  (``fraud_assets.ml.scoring.score_batch`` on the Arrow table Spark hands the step:
  signature validation, Arrow to pandas for the model inputs, pyfunc predict, decision,
  ``fraud_scores`` rows, each claim's reason codes) next to the raw library
  ``predict_proba`` on a frame already in the booster's types, and reports their ratio
  (the pipeline's overhead), and the reason codes' own time beside it.

Each scoring target runs ``--repeats`` times in alternating order and the fastest run is
kept, so background load falls on both alike. Results go to
``bench/results/training_scoring.json`` with the CPU count and load average.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from fraud_assets.claims.synthetic import generate_claims
from fraud_assets.features import TRAIN, SplitPolicy
from fraud_assets.settings import FraudSettings, get_settings
from fraud_assets_tests.pandas_peer import build_claim_features_pandas

log = logging.getLogger("bench_training_scoring")

RESULTS = Path(__file__).resolve().parent / "results" / "training_scoring.json"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="synthetic claims")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per scoring target")
    parser.add_argument("--models", nargs="+", default=["catboost", "xgboost"])
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    with tempfile.TemporaryDirectory(prefix="bench_training_scoring_") as home:
        os.environ["FRAUD_HOME"] = home
        settings = get_settings()
        load_before = os.getloadavg()
        started = time.perf_counter()
        claims = generate_claims(args.rows, seed=settings.seed)
        gold = build_claim_features_pandas(
            claims, split=SplitPolicy(settings.holdout_fraction, settings.seed)
        )
        prepare_seconds = time.perf_counter() - started
        log.info("%d claims -> gold features in %.1fs", len(gold), prepare_seconds)
        models = {name: _bench_model(name, gold, settings, args.repeats) for name in args.models}
        load_after = os.getloadavg()

    result = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in load_after],
        },
        "rows": len(gold),
        "training_rows": int((gold["split"] == TRAIN).sum()),
        "gold_features_seconds": round(prepare_seconds, 2),
        "training_params": "TrainingParams() defaults (300 rounds, depth 6, lr 0.08)",
        "repeats": args.repeats,
        "models": models,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    for name, figures in models.items():
        print(  # noqa: T201 - a benchmark's summary is its output
            f"{name}: train {figures['train_seconds']:.1f}s on {figures['training_rows']} rows | "
            f"score step {figures['pipeline_rows_per_second']:,.0f} rows/s vs raw "
            f"predict_proba {figures['raw_rows_per_second']:,.0f} rows/s | "
            f"pipeline/raw time {figures['pipeline_over_raw']:.3f}, "
            f"reason codes {figures['reason_codes_seconds']:.2f}s, without them "
            f"{figures['pipeline_without_reason_codes_over_raw']:.3f}"
        )
    log.info("saved %s", args.output)


def _bench_model(
    model_type: str, gold: pd.DataFrame, settings: FraudSettings, repeats: int
) -> dict[str, Any]:
    import mlflow

    from fraud_assets.ml import registry
    from fraud_assets.ml.pyfunc import model_matrix
    from fraud_assets.ml.reasons import model_reasons
    from fraud_assets.ml.runs import TrainingData, log_training_run
    from fraud_assets.ml.scoring import ScoringModel, score_batch
    from fraud_assets.ml.tracking import configure_mlflow, mlflow_client
    from fraud_assets.ml.training import (
        TrainingParams,
        parse_model_type,
        reference_sample,
        train_model,
    )

    configure_mlflow(settings)
    train = gold[gold["split"] == TRAIN].reset_index(drop=True)
    started = time.perf_counter()
    trained = train_model(train, model_type=parse_model_type(model_type), params=TrainingParams())
    train_seconds = time.perf_counter() - started
    log.info("%s trained on %d rows in %.1fs", model_type, len(train), train_seconds)

    started = time.perf_counter()
    run = log_training_run(
        trained,
        data=TrainingData(location="bench", delta_version=0, frame=train),
        reference=reference_sample(train, trained, seed=settings.seed),
        pipeline_run_id=f"bench-{model_type}",
        git_commit="bench",
        params={},
        metrics={},
    )
    client = mlflow_client()
    name = f"{settings.registered_model_name}_{model_type}"
    version = str(
        registry.register_version(
            client, name=name, model_uri=run.model_uri, run_id=run.run_id, description="bench"
        ).version
    )
    registry.move_champion(client, name=name, version=version, actor="bench")
    scoring = ScoringModel(
        model=mlflow.pyfunc.load_model(f"models:/{name}/{version}"),
        name=name,
        version=version,
        alias=registry.CHAMPION,
    )
    log_seconds = time.perf_counter() - started

    # The raw baseline gets its input already in the booster's types: only predict is timed.
    # The pipeline gets what the score step gets from Spark: an Arrow table of gold rows.
    matrix = model_matrix(gold, trained.spec)
    table = pa.Table.from_pandas(gold, preserve_index=False)
    raw = _raw_predict_proba(trained)
    scored_at = datetime.now(UTC)
    threshold = settings.thresholds.operating_threshold

    def pipeline() -> Any:
        return score_batch(
            table, scoring=scoring, threshold=threshold, scored_at=scored_at, batch_id="bench"
        )

    # The reason codes' own share of the step (issue 18): contributions, top 3, words.
    inputs = gold[list(trained.spec.columns)]
    timings = _alternate(
        {
            "raw": lambda: raw(matrix),
            "pipeline": pipeline,
            "reasons": lambda: model_reasons(scoring.model, inputs),
        },
        repeats,
    )
    scored = pipeline()
    assert scored.rows.num_rows == len(gold)
    np.testing.assert_allclose(scored.scores, raw(matrix), rtol=1e-6, atol=1e-9)
    raw_seconds, pipeline_seconds = min(timings["raw"]), min(timings["pipeline"])
    reasons_seconds = min(timings["reasons"])
    return {
        "training_rows": len(train),
        "train_seconds": round(train_seconds, 2),
        "log_register_load_seconds": round(log_seconds, 2),
        "scored_rows": len(gold),
        "raw_predict_proba_seconds": round(raw_seconds, 3),
        "pipeline_seconds": round(pipeline_seconds, 3),
        "raw_rows_per_second": round(len(gold) / raw_seconds),
        "pipeline_rows_per_second": round(len(gold) / pipeline_seconds),
        "pipeline_over_raw": round(pipeline_seconds / raw_seconds, 3),
        "reason_codes_seconds": round(reasons_seconds, 3),
        "pipeline_without_reason_codes_over_raw": round(
            (pipeline_seconds - reasons_seconds) / raw_seconds, 3
        ),
        "all_raw_seconds": [round(t, 3) for t in timings["raw"]],
        "all_pipeline_seconds": [round(t, 3) for t in timings["pipeline"]],
    }


def _raw_predict_proba(trained: Any) -> Callable[[pd.DataFrame], np.ndarray]:
    """The library's own ``predict_proba`` on the fitted model."""
    if trained.model_type == "catboost":
        return lambda matrix: trained.booster.predict_proba(matrix)[:, 1]
    from xgboost import XGBClassifier

    with tempfile.TemporaryDirectory() as scratch:
        path = trained.save_booster(Path(scratch))
        classifier = XGBClassifier()
        classifier.load_model(str(path))
    return lambda matrix: classifier.predict_proba(matrix)[:, 1]


def _alternate(targets: dict[str, Callable[[], Any]], repeats: int) -> dict[str, list[float]]:
    seconds: dict[str, list[float]] = {name: [] for name in targets}
    for _ in range(repeats):
        for name, call in targets.items():
            started = time.perf_counter()
            call()
            seconds[name].append(time.perf_counter() - started)
    return seconds


if __name__ == "__main__":
    main()
