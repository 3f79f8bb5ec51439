"""The fairness and PSI steps end to end on a temporary FRAUD_HOME with a local MLflow."""

from __future__ import annotations

import base64
import json
import re
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from pypdf import PdfReader

from fraud_assets.checks import (
    CHECK_DISPARATE_IMPACT,
    CHECK_EQUAL_OPPORTUNITY,
    CHECK_FAIRNESS_POLICY,
    CHECK_FALSE_POSITIVE_RATE_RATIO,
    CHECK_FEATURE_DRIFT,
    CHECK_MIN_GROUP_SIZE,
    CHECK_SCORE_DRIFT,
    FAIRNESS_CHECKS,
)
from fraud_assets.features import CATEGORICAL_FEATURES, MODEL_FEATURES, NUMERIC_FEATURES
from fraud_assets.governance.policy import pinned_policy
from fraud_assets.lakehouse import table_store
from fraud_assets.ml.runs import REFERENCE_ARTIFACT, TAG_PIPELINE_RUN, TRAINING_CLAIMS_ARTIFACT
from fraud_assets.ml.tracking import configure_mlflow, mlflow_client
from fraud_assets.settings import FraudSettings, get_settings
from fraud_assets.tasks._runtime import run_task
from fraud_assets.tasks.compute_psi import DriftInputMissing, compute_psi
from fraud_assets_tests.chart_support import png_from_markdown
from fraud_assets_tests.governance_support import (
    candidate_run,
    holdout_predictions,
    run_fairness,
    write_evaluation,
)

ATTRIBUTES = ["patient_gender", "patient_age_group", "geographic_region"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_fair_candidate_passes_and_the_audit_embeds_its_charts(governed_home: Path) -> None:
    settings = get_settings()
    store = table_store(settings)
    store.write_pandas(holdout_predictions(), "holdout_predictions")
    run_id = candidate_run(settings)
    write_evaluation(settings, run_id)
    # The weekly audit looks at a candidate that was registered and promoted meanwhile.
    client = mlflow_client()
    client.create_registered_model("fraud_detector")
    client.create_model_version("fraud_detector", f"runs:/{run_id}/model", run_id=run_id)
    client.set_registered_model_alias("fraud_detector", "champion", "1")

    result = run_fairness(["--run_id", "pipeline-1", "--write_audit_report", "true"])

    checks = {c.check_name: c for c in result.checks}
    assert list(checks) == FAIRNESS_CHECKS
    assert all(c.passed for c in checks.values()), [c.metadata["why"] for c in checks.values()]
    # The pinned policy gates false accusations and fraud caught; disparate impact advises.
    assert {name: c.severity for name, c in checks.items()} == {
        CHECK_FALSE_POSITIVE_RATE_RATIO: "ERROR",
        CHECK_EQUAL_OPPORTUNITY: "ERROR",
        CHECK_DISPARATE_IMPACT: "WARN",
        CHECK_MIN_GROUP_SIZE: "ERROR",
        CHECK_FAIRNESS_POLICY: "ERROR",
    }
    pinned = pinned_policy("dev")
    assert all(c.metadata["policy"] == pinned.to_dict() for c in checks.values())
    metadata = result.materializations[0].metadata
    assert metadata["mlflow_run_id"] == run_id
    assert metadata["candidate_model"] == "xgboost"
    assert metadata["holdout_rows"] == 4_000
    assert 0.8 < metadata["patient_gender.disparate_impact_ratio"] <= 1.0
    assert "| patient_gender | yes |" in metadata["summary"]["raw_value"]
    assert metadata["policy_fingerprint"] == pinned.fingerprint
    png_from_markdown(metadata["chart"])  # selection rate and TPR per group, with intervals
    assert metadata["mlflow_run"]["raw_value"].endswith(f"/runs/{run_id}")

    # The Delta table holds the candidate's figures only, tagged with the pipeline run.
    table = store.read_pandas("fairness_report")
    assert len(table) == metadata["row_count"]
    assert set(table["run_id"]) == {"pipeline-1"}
    assert set(table["policy_fingerprint"]) == {pinned.fingerprint}
    gender = table.loc[(table["slice"] == "patient_gender") & (table["metric"] == "selection_rate")]
    assert sorted(gender["group"]) == ["F", "M"]
    assert gender["group_size"].sum() == 4_000

    # The audit file is self-contained: inline PNG charts, verdicts and provenance.
    audit = Path(metadata["audit_report"]["raw_value"])
    assert audit.parent == governed_home.resolve() / "reports"
    assert re.fullmatch(r"fairness_audit_\d{8}T\d{6}Z\.html", audit.name)
    document = audit.read_text(encoding="utf-8")
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', document)
    assert images and all(base64.b64decode(img).startswith(PNG_MAGIC) for img in images)
    assert 'Overall verdict: <span class="pass">PASS</span>' in document
    assert run_id in document and "Delta version" in document
    assert "false_positive_rate_ratio &gt;= 0.8" in document
    assert pinned.fingerprint in document
    assert "fraud_detector version 1" in document

    # The same audit as a PDF whose text a reader can search: verdicts, gates, model version.
    pdf = Path(metadata["audit_report_pdf"]["raw_value"])
    assert pdf.name == audit.name.replace(".html", ".pdf")
    assert pdf.read_bytes().startswith(b"%PDF-")
    assert {path.stat().st_mode & 0o777 for path in (audit, pdf)} == {0o644}  # others read it
    reader = PdfReader(pdf)
    assert len(reader.pages) >= 4  # summary, chart, cross-group figures, groups
    text = "\n".join(page.extract_text() for page in reader.pages)
    assert "Overall verdict: PASS" in text
    for gate in (
        "False positive rate ratio: pass",
        "Equal opportunity: pass",
        "Disparate impact: pass",
        "Minimum group size: pass",
        "Policy at least the pinned one: pass",
    ):
        assert gate in text
    assert "Model registered version: fraud_detector version 1" in text
    assert "Model champion version: fraud_detector version 1" in text
    assert run_id in text and "pipeline-1" in text
    assert "patient_gender" in text and "geographic_region" in text

    # Evidence on the candidate's own MLflow run.
    listed = {a.path for a in client.list_artifacts(run_id, "fairness")}
    assert {"fairness/fairness_report.json", "fairness/fairness_chart.png"} <= listed
    assert sorted(a.path for a in client.list_artifacts(run_id, "fairness/audits")) == [
        f"fairness/audits/{audit.name}",
        f"fairness/audits/{pdf.name}",
    ]
    logged = client.get_run(run_id).data.metrics
    assert logged["fairness.patient_gender.disparate_impact_ratio"] == pytest.approx(
        metadata["patient_gender.disparate_impact_ratio"]
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path="fairness/fairness_report.json", dst_path=tmp
        )
        payload = json.loads(Path(path).read_text(encoding="utf-8"))
    assert payload["verdicts"][CHECK_FALSE_POSITIVE_RATE_RATIO]["passed"] is True
    assert payload["parameters"]["interval"] == "mover-wilson-bonferroni"
    assert payload["policy"] == pinned.to_dict()

    # Every verdict is in check_history, which promotion reads.
    history = store.read_pandas("check_history")
    assert set(history.loc[history["run_id"] == "pipeline-1", "check_name"]) == set(checks)


def test_a_candidate_that_falsely_accuses_one_group_fails_and_evidence_still_lands(
    governed_home: Path,
) -> None:
    settings = get_settings()
    store = table_store(settings)
    store.write_pandas(holdout_predictions(bias=True), "holdout_predictions")

    result = run_fairness(["--run_id", "pipeline-2"])

    checks = {c.check_name: c for c in result.checks}
    accusations = checks[CHECK_FALSE_POSITIVE_RATE_RATIO]
    assert not accusations.passed and accusations.severity == "ERROR"
    assert accusations.metadata["failing_attributes"] == ["patient_gender"]
    assert checks[CHECK_MIN_GROUP_SIZE].passed
    metadata = result.materializations[0].metadata
    assert "audit_report" not in metadata
    assert not (governed_home / "reports").exists()
    # No model_evaluation table: the evidence goes to a run tagged with the pipeline run id.
    run = mlflow_client().get_run(metadata["mlflow_run_id"])
    assert run.data.tags[TAG_PIPELINE_RUN] == "pipeline-2"
    assert store.read_pandas("fairness_report")["run_id"].unique().tolist() == ["pipeline-2"]


def test_an_accurate_model_over_different_base_rates_is_not_blocked(governed_home: Path) -> None:
    """Demographic parity alone would punish it; the pinned policy judges its errors."""
    table_store(get_settings()).write_pandas(
        holdout_predictions(base_rates=True), "holdout_predictions"
    )
    result = run_fairness(["--run_id", "pipeline-4"])
    checks = {c.check_name: c for c in result.checks}
    parity = checks[CHECK_DISPARATE_IMPACT]
    assert not parity.passed and parity.severity == "WARN"  # reported, not gated
    assert parity.metadata["failing_attributes"] == ["patient_gender"]
    blocking = [c.check_name for c in result.checks if not c.passed and c.severity == "ERROR"]
    assert blocking == []


def test_no_candidate_rows_is_a_clear_error(fraud_home: Path) -> None:
    predictions = holdout_predictions(n=200)
    predictions = predictions.loc[predictions["model_role"] == "champion"]
    table_store(get_settings()).write_pandas(predictions, "holdout_predictions")
    with pytest.raises(ValueError, match=r"no 'candidate' rows .*materialize model_evaluation"):
        run_fairness(["--run_id", "pipeline-3"])


# --- PSI ---------------------------------------------------------------------------------------


def _features(rng: np.random.Generator, n: int, *, amount_shift: float = 0.0) -> pd.DataFrame:
    frame = pd.DataFrame({name: rng.normal(0.0, 1.0, n) for name in NUMERIC_FEATURES})
    frame["claim_amount"] = rng.lognormal(6 + amount_shift, 1.0, n)
    for name in CATEGORICAL_FEATURES:
        frame[name] = rng.choice(["A", "B", "C", "D"], n)
    return frame


def _register_champion(
    settings: FraudSettings, reference: pd.DataFrame, training_claims: list[str] | None = None
) -> str:
    configure_mlflow(settings)
    client = mlflow_client()
    with (
        mlflow.start_run(run_name="champion-training") as run,
        tempfile.TemporaryDirectory() as tmp,
    ):
        path = Path(tmp) / "reference.parquet"
        reference.to_parquet(path, index=False)
        mlflow.log_artifact(str(path), artifact_path=REFERENCE_ARTIFACT.rsplit("/", 1)[0])
        if training_claims is not None:
            claims_path = Path(tmp) / TRAINING_CLAIMS_ARTIFACT.rsplit("/", 1)[1]
            pd.DataFrame({"claim_id": training_claims}).to_parquet(claims_path, index=False)
            mlflow.log_artifact(
                str(claims_path), artifact_path=TRAINING_CLAIMS_ARTIFACT.rsplit("/", 1)[0]
            )
    name = settings.registered_model_name
    client.create_registered_model(name)
    version = client.create_model_version(
        name, source=f"runs:/{run.info.run_id}/model", run_id=run.info.run_id
    )
    client.set_registered_model_alias(name, "champion", version.version)
    return str(version.version)


def _log_window(
    rng: np.random.Generator,
    *,
    window: str,
    at: datetime,
    n: int,
    version: str,
    amount_shift: float = 0.0,
    score_a: float = 1.0,
) -> pd.DataFrame:
    frame = _features(rng, n, amount_shift=amount_shift)
    frame.insert(0, "claim_id", [f"{window}-{version}-{i}" for i in range(n)])
    frame["fraud_score"] = rng.beta(score_a, 10.0, n)
    frame["model_version"] = version
    frame["source"] = "batch"
    frame["window_id"] = window
    frame["scored_at"] = pd.Timestamp(at)
    return frame


def test_psi_flags_the_drifted_feature_and_judges_only_the_champions_scores(
    governed_home: Path,
) -> None:
    settings = get_settings()
    rng = np.random.default_rng(8)
    reference = _features(rng, 3_000)
    reference["fraud_score"] = rng.beta(1.0, 10.0, 3_000)
    champion = _register_champion(settings, reference)
    t0 = datetime(2025, 5, 1, tzinfo=UTC)
    log = pd.concat(
        [
            # An older window that drifted in every way: it must not be the one measured.
            _log_window(
                rng, window="w1", at=t0, n=500, version=champion, amount_shift=3.0, score_a=6.0
            ),
            _log_window(
                rng,
                window="w2",
                at=t0 + timedelta(hours=6),
                n=2_000,
                version=champion,
                amount_shift=1.0,
            ),
            # A challenger's share of the same window scores very differently.
            _log_window(
                rng,
                window="w2",
                at=t0 + timedelta(hours=6),
                n=800,
                version="99",
                amount_shift=1.0,
                score_a=8.0,
            ),
        ],
        ignore_index=True,
    )
    store = table_store(settings)
    store.write_pandas(log, "inference_log")

    result = run_task(compute_psi, ["--run_id", "monitor-1"], name="psi")

    metadata = result.materializations[0].metadata
    assert metadata["window_id"] == "w2"
    assert metadata["current_rows"] == 2_800
    assert metadata["score_rows"] == 2_000
    assert metadata["reference_rows"] == 3_000
    assert metadata["champion_version"] == champion
    assert metadata["drift_level"] == "major"
    assert metadata["max_psi"] >= 0.2
    assert metadata["drifted_features"]["raw_value"] == ["claim_amount"]
    assert metadata["chart"]["raw_value"].startswith("![PSI per feature](data:image/png;base64,")
    png_from_markdown(metadata["chart"])
    per_feature = metadata["psi"]["raw_value"]
    assert set(per_feature) == {*MODEL_FEATURES, "fraud_score"}
    assert per_feature["fraud_score"]["drift_level"] == "none"

    checks = {c.check_name: c for c in result.checks}
    assert not checks[CHECK_FEATURE_DRIFT].passed
    assert checks[CHECK_FEATURE_DRIFT].severity == "ERROR"
    assert checks[CHECK_SCORE_DRIFT].passed

    table = store.read_pandas("psi_report")
    assert len(table) == len(MODEL_FEATURES) + 1
    assert set(table["window_id"]) == {"w2"} and set(table["run_id"]) == {"monitor-1"}
    assert table.set_index("feature").at["claim_amount", "drift_level"] == "major"


def test_the_current_window_never_contains_the_champions_training_claims(
    governed_home: Path,
) -> None:
    # The first scoring run scores every claim, including the ones the champion learned from:
    # compared with its own training data, PSI would be ~0 by construction (issue 12 finding 4).
    settings = get_settings()
    rng = np.random.default_rng(9)
    training = _log_window(
        rng, window="w1", at=datetime(2025, 5, 1, tzinfo=UTC), n=3_000, version="trained"
    )
    reference = training.drop(
        columns=["claim_id", "model_version", "source", "window_id", "scored_at"]
    )
    champion = _register_champion(settings, reference, list(training["claim_id"]))
    new = _log_window(
        rng,
        window="w1",
        at=datetime(2025, 5, 1, tzinfo=UTC),
        n=600,
        version=champion,
        amount_shift=1.0,
    )
    training["model_version"] = champion
    table_store(settings).write_pandas(
        pd.concat([training, new], ignore_index=True), "inference_log"
    )

    result = run_task(compute_psi, ["--run_id", "monitor-4"], name="psi")

    metadata = result.materializations[0].metadata
    assert metadata["current_rows"] == 600
    assert metadata["excluded_training_rows"] == 3_000
    assert metadata["drifted_features"]["raw_value"] == ["claim_amount"]


def test_a_window_of_only_training_claims_is_nothing_to_compare(governed_home: Path) -> None:
    settings = get_settings()
    rng = np.random.default_rng(10)
    training = _log_window(
        rng, window="w1", at=datetime(2025, 5, 1, tzinfo=UTC), n=500, version="1"
    )
    reference = training.drop(
        columns=["claim_id", "model_version", "source", "window_id", "scored_at"]
    )
    _register_champion(settings, reference, list(training["claim_id"]))
    table_store(settings).write_pandas(training, "inference_log")
    with pytest.raises(DriftInputMissing, match=r"all 500 claims of window w1 are .*training"):
        run_task(compute_psi, ["--run_id", "monitor-5"], name="psi")


def test_psi_without_a_champion_says_so(governed_home: Path) -> None:
    with pytest.raises(DriftInputMissing, match="no champion to measure drift against"):
        run_task(compute_psi, ["--run_id", "monitor-2"], name="psi")


def test_psi_without_a_scored_window_says_so(governed_home: Path) -> None:
    settings = get_settings()
    reference = _features(np.random.default_rng(0), 200)
    reference["fraud_score"] = 0.1
    _register_champion(settings, reference)
    with pytest.raises(DriftInputMissing, match=r"no scored window yet.*inference_log"):
        run_task(compute_psi, ["--run_id", "monitor-3"], name="psi")


def _endpoint_payload(
    records: pd.DataFrame, *, at: datetime, per_request: int = 50, status: int = 200
) -> pd.DataFrame:
    """The endpoint's AI Gateway inference table: one row per request, JSON in and out."""
    rows = []
    for start in range(0, len(records), per_request):
        chunk = records.iloc[start : start + per_request]
        features = chunk.drop(columns=["fraud_score"])
        request_time = pd.Timestamp(at) + timedelta(seconds=start)
        rows.append(
            {
                "request_date": request_time.date(),
                "databricks_request_id": f"req-{at:%H%M}-{start}",
                "client_request_id": None,
                "request_time": request_time,
                "status_code": status,
                "sampling_fraction": 1.0,
                "execution_duration_ms": 42,
                "request": json.dumps({"dataframe_records": features.to_dict(orient="records")}),
                "response": json.dumps({"predictions": chunk["fraud_score"].tolist()}),
                "served_entity_id": "e-champion",
                "logging_error_codes": [],
                "requester": "claims-adjudication@example.com",
            }
        )
    return pd.DataFrame(rows)


def test_psi_reads_the_endpoints_inference_table_beside_batch_scores(
    governed_home: Path,
) -> None:
    settings = get_settings()
    rng = np.random.default_rng(11)
    reference = _features(rng, 3_000)
    reference["fraud_score"] = rng.beta(1.0, 10.0, 3_000)
    champion = _register_champion(settings, reference)
    t0 = datetime(2025, 5, 1, 6, tzinfo=UTC)
    store = table_store(settings)
    store.write_pandas(
        _log_window(rng, window="w2", at=t0, n=1_000, version=champion), "inference_log"
    )

    # Batch scores alone do not drift; the endpoint's traffic does, in claim_amount.
    answered = _features(rng, 2_000, amount_shift=2.0)
    answered.insert(0, "claim_id", [f"rt-{i}" for i in range(2_000)])
    answered["fraud_score"] = rng.beta(1.0, 10.0, 2_000)
    malformed = _endpoint_payload(answered.iloc[:50], at=t0 + timedelta(hours=2))
    malformed["response"] = '{"predictions": [0.1]}'
    payload = pd.concat(
        [
            _endpoint_payload(answered, at=t0 + timedelta(minutes=30)),
            # Before the window, failed, or unreadable: never part of the sample.
            _endpoint_payload(answered.iloc[:500], at=t0 - timedelta(hours=1)),
            _endpoint_payload(answered.iloc[:500], at=t0 + timedelta(hours=1), status=500),
            malformed.assign(databricks_request_id="req-malformed"),
        ],
        ignore_index=True,
    )
    store.write_pandas(payload, "fraud_endpoint_payload")

    metadata = (
        run_task(compute_psi, ["--run_id", "monitor-6"], name="psi").materializations[0].metadata
    )

    assert metadata["current_batch_rows"] == 1_000
    assert metadata["current_endpoint_rows"] == 2_000
    assert metadata["endpoint_requests"] == 41
    assert metadata["endpoint_requests_skipped"] == 1
    assert metadata["endpoint_inference_table"] == store.location("fraud_endpoint_payload")
    assert metadata["current_rows"] == 3_000
    # Only the champion's own (batch) scores judge score drift: the endpoint's rows name no
    # version in the AI Gateway format.
    assert metadata["score_rows"] == 1_000
    assert metadata["drifted_features"]["raw_value"] == ["claim_amount"]


def test_psi_without_an_endpoint_table_says_so_and_uses_batch_scores(
    governed_home: Path,
) -> None:
    settings = get_settings()
    rng = np.random.default_rng(12)
    reference = _features(rng, 2_000)
    reference["fraud_score"] = rng.beta(1.0, 10.0, 2_000)
    champion = _register_champion(settings, reference)
    at = datetime(2025, 5, 1, 6, tzinfo=UTC)
    table_store(settings).write_pandas(
        _log_window(rng, window="w1", at=at, n=800, version=champion), "inference_log"
    )

    metadata = (
        run_task(compute_psi, ["--run_id", "monitor-7"], name="psi").materializations[0].metadata
    )

    assert metadata["current_endpoint_rows"] == 0
    assert "absent: no endpoint request logged yet" in metadata["endpoint_inference_table"]
    assert metadata["current_rows"] == 800
