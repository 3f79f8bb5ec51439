"""The weekly fairness audit of the champion on its labelled production decisions."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from dagster import AssetKey, DagsterInstance, materialize
from pypdf import PdfReader

from fraud_assets import keys
from fraud_assets.assets.governance import champion_fairness_audit
from fraud_assets.checks import CHECK_CHAMPION_FAIRNESS, CHECK_MIN_GROUP_SIZE
from fraud_assets.databricks.pipes import FUSE_ROOT_VAR
from fraud_assets.governance.champion_audit import (
    FAIL,
    INSUFFICIENT_LABELS,
    PASS,
    AuditWindow,
    ChampionAudit,
    adjudications,
    audit_champion,
    labelled_decisions,
    production_decisions,
)
from fraud_assets.governance.policy import pinned_policy
from fraud_assets.lakehouse import ADJUDICATIONS, CLAIMS, FRAUD_SCORES, INFERENCE_LOG, table_store
from fraud_assets.ml.tracking import configure_mlflow, mlflow_client
from fraud_assets.resources.compute import FraudCompute, LocalPipesCompute
from fraud_assets.resources.inprocess_compute import InProcessCompute
from fraud_assets.settings import FraudSettings, get_settings
from fraud_assets.tasks.champion_audit import (
    MLFLOW_DIR,
    latest_champion_audit_pdf,
    write_champion_audit,
)

NOW = datetime(2026, 12, 6, 14, 0, tzinfo=UTC)
WINDOW = AuditWindow.ending(NOW, days=28)
POLICY = pinned_policy("dev")
GROUP_COLUMNS = [*POLICY.attributes, *POLICY.clusters]


def _scores(
    rows: list[tuple[str, str, int, datetime]], name: str = "fraud_detector"
) -> pd.DataFrame:
    """fraud_scores rows: (claim_id, model_version, decision, scored_at)."""
    return pd.DataFrame(
        {
            "claim_id": [r[0] for r in rows],
            "fraud_score": [0.9 if r[2] else 0.1 for r in rows],
            "decision": [r[2] for r in rows],
            "model_name": name,
            "model_version": [r[1] for r in rows],
            "model_alias": "champion",
            "scored_at": [r[3] for r in rows],
            "batch_id": "b1",
        }
    )


def _log(rows: list[tuple[str, str, int, datetime, str]]) -> pd.DataFrame:
    """inference_log rows: (claim_id, model_version, decision, scored_at, source)."""
    return pd.DataFrame(
        {
            "claim_id": [r[0] for r in rows],
            "fraud_score": [0.9 if r[2] else 0.1 for r in rows],
            "decision": [r[2] for r in rows],
            "operating_threshold": 0.42,
            "model_version": [r[1] for r in rows],
            "source": [r[4] for r in rows],
            "scored_at": [r[3] for r in rows],
        }
    )


def test_decisions_are_the_champion_versions_first_per_claim_in_the_window() -> None:
    day = timedelta(days=1)
    scores = _scores(
        [
            ("C1", "3", 1, NOW - 3 * day),
            ("C2", "3", 0, NOW - 2 * day),
            ("C3", "4", 1, NOW - 2 * day),  # the newer candidate's score: not the champion's
            ("C4", "3", 1, NOW - 40 * day),  # before the window
        ]
    )
    scores.loc[len(scores)] = {**scores.iloc[0].to_dict(), "model_name": "other_model"}
    log = _log(
        [
            ("C1", "3", 0, NOW - 5 * day, "realtime"),  # answered first: it wins over batch
            ("C2", "3", 1, NOW - 2 * day, "realtime"),  # same time as the batch row: realtime
            ("C5", "3", 1, NOW - 1 * day, "shadow"),  # never returned to anyone
            ("C6", "3", 0, NOW - 1 * day, "batch"),
            ("C7", "3", 1, NOW + day, "realtime"),  # after the audit's end
        ]
    )

    decisions = production_decisions(
        fraud_scores=scores,
        inference_log=log,
        model_name="fraud_detector",
        model_version="3",
        window=WINDOW,
        batch_threshold=0.37,
    )

    by_claim = decisions.set_index("claim_id")
    assert sorted(by_claim.index) == ["C1", "C2", "C6"]
    assert by_claim.loc["C1", "source"] == "realtime" and by_claim.loc["C1", "decision"] == 0
    assert by_claim.loc["C2", "source"] == "realtime" and by_claim.loc["C2", "decision"] == 1
    assert by_claim.loc["C6", "operating_threshold"] == 0.42
    # fraud_scores records no threshold: the champion's recorded one fills it.
    only_batch = production_decisions(
        fraud_scores=scores,
        inference_log=None,
        model_name="fraud_detector",
        model_version="3",
        window=WINDOW,
        batch_threshold=0.37,
    )
    assert set(only_batch["operating_threshold"]) == {0.37}
    assert sorted(only_batch["claim_id"]) == ["C1", "C2"]


def test_a_decision_that_is_not_0_or_1_names_table_row_and_value() -> None:
    log = _log([("C1", "3", 1, NOW - timedelta(days=1), "realtime")])
    log.loc[0, "decision"] = 7
    with pytest.raises(ValueError, match=r"inference_log: column 'decision'.*row 0.*'C1'.*7"):
        production_decisions(
            fraud_scores=None,
            inference_log=log,
            model_name="fraud_detector",
            model_version="3",
            window=WINDOW,
        )


def _claims(ids: list[str], labels: list[float | None], loaded: list[datetime]) -> pd.DataFrame:
    n = len(ids)
    return pd.DataFrame(
        {
            "claim_id": ids,
            "is_fraud": pd.array(labels, dtype="Int32"),
            "_loaded_at": pd.to_datetime(loaded, utc=True),
            "patient_gender": ["F"] * n,
            "patient_age_group": ["18-34"] * n,
            "geographic_region": ["South"] * n,
            "patient_id": [f"P{i}" for i in range(n)],
            "provider_id": ["PRV1"] * n,
        }
    )


def test_only_labels_that_landed_after_the_decision_are_judged() -> None:
    decided = NOW - timedelta(days=10)
    decisions = production_decisions(
        fraud_scores=_scores([(c, "3", 1, decided) for c in ("C1", "C2", "C3", "C4")]),
        inference_log=None,
        model_name="fraud_detector",
        model_version="3",
        window=WINDOW,
    )
    claims = _claims(
        ["C1", "C2", "C3", "C4", "C4"],
        [1, 0, None, None, 1],
        [
            decided + timedelta(days=3),  # adjudicated after the decision: judged
            decided - timedelta(days=1),  # already labelled when scored: not a decision
            decided - timedelta(days=1),  # still waiting for its adjudication
            decided - timedelta(days=2),  # landed unlabelled...
            decided + timedelta(days=5),  # ...and its adjudication landed later
        ],
    )

    judged, counts = labelled_decisions(decisions, adjudications(claims, attributes=GROUP_COLUMNS))

    assert sorted(judged["claim_id"]) == ["C1", "C4"]
    assert judged["is_fraud"].tolist() == [1, 1]
    assert counts == {
        "decisions": 4,
        "realtime_decisions": 0,
        "batch_decisions": 4,
        "labelled_decisions": 2,
        "labelled_before_decision": 1,
        "awaiting_label": 1,
    }


def _production(
    n: int,
    *,
    seed: int = 0,
    bias: bool = False,
    labelled_share: float = 1.0,
    now: datetime = NOW,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """fraud_scores, inference_log and silver claims of ``n`` champion decisions (version 3)
    whose adjudications landed two days after each decision (``labelled_share`` of them).

    ``bias``: the champion falsely accuses honest women far more often than honest men.
    """
    rng = np.random.default_rng(seed)
    ids = [f"C{i:06d}" for i in range(n)]
    female = rng.random(n) < 0.5
    is_fraud = (rng.random(n) < 0.075).astype(int)
    caught = rng.random(n) < 0.8
    false_alarm = rng.random(n) < np.where(female & bias, 0.10, 0.01 if bias else 0.02)
    decision = np.where(is_fraud == 1, caught, false_alarm).astype(int)
    decided = [now - timedelta(days=20, minutes=int(m)) for m in rng.integers(0, 60 * 24 * 7, n)]
    realtime = rng.random(n) < 0.5
    scores = _scores([(ids[i], "3", decision[i], decided[i]) for i in range(n) if not realtime[i]])
    log = _log(
        [(ids[i], "3", decision[i], decided[i], "realtime") for i in range(n) if realtime[i]]
    )
    labelled = rng.random(n) < labelled_share
    claims = pd.DataFrame(
        {
            "claim_id": ids,
            "is_fraud": pd.array(np.where(labelled, is_fraud, 0), dtype="Int32"),
            "_loaded_at": [d + timedelta(days=2) for d in decided],
            "patient_gender": np.where(female, "F", "M"),
            "patient_age_group": rng.choice(["18-34", "35-49", "50-64", "65+"], n),
            "geographic_region": rng.choice(["Northeast", "South", "West"], n),
            "patient_id": [f"PAT{i:06d}" for i in rng.integers(0, n // 2, n)],
            "provider_id": [f"PRV{i:04d}" for i in rng.integers(0, n // 20, n)],
        }
    )
    claims.loc[~labelled, "is_fraud"] = pd.NA
    return scores, log, claims


def _audit(scores: pd.DataFrame, log: pd.DataFrame, claims: pd.DataFrame) -> ChampionAudit:
    decisions = production_decisions(
        fraud_scores=scores,
        inference_log=log,
        model_name="fraud_detector",
        model_version="3",
        window=WINDOW,
        batch_threshold=0.42,
    )
    return audit_champion(
        decisions,
        adjudications(claims, attributes=GROUP_COLUMNS),
        window=WINDOW,
        policy=POLICY,
        pinned=POLICY,
    )


def test_a_fair_champion_passes_and_an_unfair_one_fails_the_gate_it_was_promoted_under() -> None:
    fair = _audit(*_production(4_000))
    assert fair.verdict == PASS, fair.reason
    assert fair.gates is not None and not fair.gates.blocking_failures
    assert fair.counts["labelled_decisions"] == 4_000
    assert fair.label_coverage == 1.0
    assert fair.thresholds == [0.42]

    unfair = _audit(*_production(4_000, bias=True))
    assert unfair.verdict == FAIL
    assert unfair.gates is not None
    assert "false_positive_rate_ratio" in unfair.gates.blocking_failures
    assert unfair.reason.startswith("failed: ")


def test_too_few_labelled_decisions_is_insufficient_labels_never_a_pass() -> None:
    scores, log, claims = _production(4_000, labelled_share=0.01)
    audit = _audit(scores, log, claims)
    assert audit.verdict == INSUFFICIENT_LABELS
    assert audit.report is None and audit.gates is None
    assert audit.counts["labelled_decisions"] < 2 * POLICY.min_group_size
    assert audit.counts["awaiting_label"] == 4_000 - audit.counts["labelled_decisions"]
    assert audit.label_coverage is not None and audit.label_coverage < 0.05
    assert audit.evidence()["label coverage"].endswith("%")

    nothing = _audit(scores.iloc[:0], log.iloc[:0], claims)
    assert nothing.verdict == INSUFFICIENT_LABELS
    assert nothing.counts["decisions"] == 0 and nothing.label_coverage is None


def test_enough_labels_overall_but_one_group_too_small_is_insufficient_labels() -> None:
    scores, log, claims = _production(4_000)
    # Only women's claims were adjudicated: gender cannot be judged on these decisions.
    claims.loc[claims["patient_gender"] == "M", "is_fraud"] = pd.NA
    audit = _audit(scores, log, claims)
    assert audit.verdict == INSUFFICIENT_LABELS
    assert audit.gates is not None
    assert CHECK_MIN_GROUP_SIZE in audit.gates.blocking_failures
    assert audit.reason.startswith("groups too small to judge: min_group_size")


# --- the task: files, reports location and the champion's MLflow run --------------------


def _registered(settings: FraudSettings) -> tuple[str, str]:
    """Version 1 (champion) and a newer version 2 (the latest candidate); their run ids."""
    configure_mlflow(settings)
    client = mlflow_client()
    client.create_registered_model("fraud_detector")
    run_ids = []
    for name in ("champion-training", "candidate-training"):
        with mlflow.start_run(run_name=name) as run:
            mlflow.log_param("operating_threshold", 0.42)
        client.create_model_version(
            "fraud_detector", f"runs:/{run.info.run_id}/model", run_id=run.info.run_id
        )
        run_ids.append(run.info.run_id)
    client.set_registered_model_alias("fraud_detector", "champion", "1")
    return run_ids[0], run_ids[1]


def _land(
    settings: FraudSettings, scores: pd.DataFrame, log: pd.DataFrame, claims: pd.DataFrame
) -> None:
    store = table_store(settings)
    for frame in (scores, log):
        frame["model_version"] = frame["model_version"].replace({"3": "1"})
    # The newer candidate's biased decisions sit in the same tables: never the champion's.
    other = scores.copy()
    other["model_version"] = "2"
    other["decision"] = (
        (claims.set_index("claim_id").loc[other["claim_id"], "patient_gender"] == "F")
        .astype(int)
        .to_numpy()
    )
    store.write_pandas(pd.concat([scores, other], ignore_index=True), FRAUD_SCORES)
    store.write_pandas(log, INFERENCE_LOG)
    store.write_pandas(claims, CLAIMS)


def _pdf_text(path: Path) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(path.read_bytes())).pages)


def test_the_audit_is_a_pdf_and_html_in_reports_and_on_the_champions_run(
    governed_home: Path,
) -> None:
    settings = get_settings()
    champion_run, candidate_run = _registered(settings)
    _land(settings, *_production(4_000))

    written = write_champion_audit(settings, now=NOW, pipeline_run_id="audit-1")

    assert written.audit.verdict == PASS, written.audit.reason
    assert written.model_version == "1" and written.mlflow_run_id == champion_run
    assert written.pdf.parent == governed_home.resolve() / "reports"
    assert written.pdf.read_bytes().startswith(b"%PDF")
    text = _pdf_text(written.pdf)
    assert "Fairness audit of the champion: fraud_detector version 1" in text
    assert "Overall verdict: PASS" in text
    assert "labelled decisions: 4000" in text
    assert "False positive rate ratio: pass" in text
    assert len(PdfReader(io.BytesIO(written.pdf.read_bytes())).pages) >= 4  # chart and tables
    assert "Overall verdict" in written.html.read_text(encoding="utf-8")
    assert latest_champion_audit_pdf(settings) == written.pdf

    client = mlflow_client()
    logged = {Path(f.path).name for f in client.list_artifacts(champion_run, MLFLOW_DIR)}
    assert {written.pdf.name, written.html.name} <= logged
    assert any(name.endswith(".json") for name in logged)
    assert client.list_artifacts(candidate_run, MLFLOW_DIR) == []
    metrics = client.get_run(champion_run).data.metrics
    assert metrics["champion_audit.labelled_decisions"] == 4_000


def test_without_enough_labels_the_pdf_says_so(governed_home: Path, tmp_path: Path) -> None:
    settings = get_settings()
    _registered(settings)
    _land(settings, *_production(500, labelled_share=0.05))
    volume = tmp_path / "Volumes" / "fraud_dev" / "claims" / "dev_me_reports"

    # The bundle's job names its deployed Volume (prefixed in dev) as reports_dir.
    written = write_champion_audit(settings, now=NOW, reports_dir=str(volume))

    assert written.pdf.parent == volume

    assert written.audit.verdict == INSUFFICIENT_LABELS
    text = _pdf_text(written.pdf)
    assert "Overall verdict: INSUFFICIENT LABELS" in text
    assert "No fairness figures were computed" in text
    assert "PASS" not in text


def test_reports_go_to_the_reports_volume_on_databricks_compute(governed_home: Path) -> None:
    local = FraudSettings()
    assert local.reports_path == governed_home.resolve() / "reports"
    remote = FraudSettings(compute="databricks", catalog="fraud_prod", schema_name="claims")
    assert remote.reports_path == Path("/Volumes/fraud_prod/claims/reports")
    chosen = FraudSettings(compute="databricks", reports_dir="/Volumes/c/s/audits")
    assert chosen.reports_path == Path("/Volumes/c/s/audits")


def test_on_a_cluster_the_reports_volume_is_written_through_its_mount(
    governed_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A /Volumes path is the cluster's FUSE mount (the emulator's under
    FRAUD_DATABRICKS_FUSE_ROOT), never a folder of that name on the machine the step runs."""
    settings = get_settings()
    _registered(settings)
    _land(settings, *_production(400))
    mount = tmp_path / "fuse"
    monkeypatch.setenv(FUSE_ROOT_VAR, str(mount))

    written = write_champion_audit(
        settings, reports_dir="/Volumes/fraud_staging/claims/reports", now=NOW
    )

    reports = mount / "Volumes" / "fraud_staging" / "claims" / "reports"
    assert written.pdf.parent == reports and written.html.parent == reports
    assert written.pdf.read_bytes().startswith(b"%PDF")
    remote = settings.model_copy(update={"reports_dir": "/Volumes/fraud_staging/claims/reports"})
    assert latest_champion_audit_pdf(remote) == written.pdf


def _materialize_audit(
    instance: DagsterInstance, compute: FraudCompute, *, window_days: int
) -> dict[str, object]:
    result = materialize(
        [champion_fairness_audit],
        resources={"compute": compute},
        instance=instance,
        run_config={
            "ops": {keys.CHAMPION_FAIRNESS_AUDIT: {"config": {"window_days": window_days}}}
        },
    )
    [event] = result.get_asset_materialization_events()
    assert event.asset_key == AssetKey(keys.CHAMPION_FAIRNESS_AUDIT)
    [check] = result.get_asset_check_evaluations()
    assert check.check_name == CHECK_CHAMPION_FAIRNESS
    return {
        **{k: v.value for k, v in event.materialization.metadata.items()},
        "check": (check.passed, check.severity.value),
    }


def test_the_asset_audits_the_window_its_config_names(
    governed_home: Path, dagster_instance: DagsterInstance
) -> None:
    settings = get_settings()
    champion_run, _ = _registered(settings)
    _land(settings, *_production(4_000, now=datetime.now(UTC)))

    four_weeks = _materialize_audit(dagster_instance, InProcessCompute(), window_days=28)
    assert four_weeks["verdict"] == PASS
    assert four_weeks["check"] == (True, "ERROR")
    assert four_weeks["champion_version"] == "1"
    assert four_weeks["mlflow_run_id"] == champion_run
    assert four_weeks["labelled_decisions"] == 4_000
    assert Path(str(four_weeks["audit_report_pdf"])).read_bytes().startswith(b"%PDF")

    # Every decision is 20 to 27 days old: last week's window holds none of them.
    last_week = _materialize_audit(dagster_instance, InProcessCompute(), window_days=7)
    assert last_week["verdict"] == INSUFFICIENT_LABELS
    assert last_week["decisions"] == 0
    # Too few labels is no pass, but a warning: it pages no one, as a failure does.
    assert last_week["check"] == (False, "WARN")


@pytest.mark.slow
def test_the_weekly_job_step_runs_as_a_pipes_subprocess(
    governed_home: Path, dagster_instance: DagsterInstance
) -> None:
    settings = get_settings()
    _registered(settings)
    _land(settings, *_production(4_000, now=datetime.now(UTC), bias=True))

    metadata = _materialize_audit(dagster_instance, LocalPipesCompute(), window_days=28)

    assert metadata["verdict"] == FAIL
    assert metadata["check"] == (False, "ERROR")
    pdf = Path(str(metadata["audit_report_pdf"]))
    assert pdf.parent == governed_home.resolve() / "reports"
    assert "Overall verdict: FAIL" in _pdf_text(pdf)


def test_every_line_of_a_long_summary_lands_on_a_page() -> None:
    """The verdict text once ran off the bottom of page one, present but unreadable."""
    from fraud_assets.governance.audit import AuditContext, render_fairness_audit_pdf
    from fraud_assets.governance.charts import fairness_chart
    from fraud_assets.tasks.fairness import policy_table

    audit = _audit(*_production(4_000, bias=True))
    assert audit.report is not None and audit.gates is not None
    context = AuditContext(
        title="Fairness audit of the champion: fraud_detector version 1",
        overall=audit.verdict,
        note=audit.reason,
        evidence=audit.evidence(),
        model={"name": "fraud_detector", "champion version": "1"},
        data_version={"labels": "claims (Delta version 3)"},
        thresholds=policy_table(POLICY, POLICY),
        generated_at=NOW,
        pipeline_run_id="r1",
    )
    pdf = render_fairness_audit_pdf(
        audit.report,
        audit.gates,
        chart_png=fairness_chart(audit.report.groups, policy=POLICY),
        context=context,
    )
    placed: list[tuple[str, float, float]] = []
    for page in PdfReader(io.BytesIO(pdf)).pages:
        height = float(page.mediabox.height)

        # matplotlib places each line with the current matrix, pypdf reports both.
        def visit(
            text: str, cm: list[float], tm: list[float], *_: object, h: float = height
        ) -> None:
            if text.strip():
                placed.append((text, cm[5] + tm[5], h))

        page.extract_text(visitor_text=visit)
    assert any("pinned policy" in text for text, _, _ in placed)  # the summary's last line
    off_page = [text for text, y, height in placed if not 0 <= y <= height]
    assert off_page == []


# --- labels that land as adjudications, after the claims were scored ---------------------


def _outcomes_apart(claims: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The claims as a claims feed lands them (no outcome) and their outcomes as rows of the
    adjudications table, landed when the labels did."""
    labelled = claims.loc[claims["is_fraud"].notna()]
    outcomes = pd.DataFrame(
        {
            "claim_id": labelled["claim_id"],
            "is_fraud": labelled["is_fraud"].astype("int32"),
            "adjudicated_at": labelled["_loaded_at"] - timedelta(hours=6),
            "_source": "/landing/adjudications/outcomes.csv",
            "_batch_id": "file-outcomes",
            "_loaded_at": labelled["_loaded_at"],
        }
    )
    unlabelled = claims.assign(is_fraud=pd.array([pd.NA] * len(claims), dtype="Int32"))
    unlabelled["_loaded_at"] = unlabelled["_loaded_at"] - timedelta(days=3)  # before scoring
    return unlabelled, outcomes


def test_batch_decisions_are_judged_on_outcomes_that_landed_after_them() -> None:
    scores, _log_rows, claims = _production(4_000)
    unlabelled, outcomes = _outcomes_apart(claims)
    decisions = production_decisions(
        fraud_scores=scores,
        inference_log=None,
        model_name="fraud_detector",
        model_version="3",
        window=WINDOW,
    )

    judged, counts = labelled_decisions(
        decisions, adjudications(unlabelled, outcomes, attributes=GROUP_COLUMNS)
    )

    assert counts["batch_decisions"] == len(scores) > 1_000
    assert counts["labelled_decisions"] == len(scores)
    assert counts["awaiting_label"] == 0
    expected = claims.set_index("claim_id").loc[judged["claim_id"], "is_fraud"].astype(int)
    assert judged["is_fraud"].tolist() == expected.tolist()
    # Without the outcomes nothing of it could be judged: the feed carried no label.
    _, unjudged = labelled_decisions(decisions, adjudications(unlabelled, attributes=GROUP_COLUMNS))
    assert unjudged["labelled_decisions"] == 0


def test_a_reversed_outcome_is_the_label_and_the_first_outcome_dates_it() -> None:
    decided = NOW - timedelta(days=10)
    decisions = production_decisions(
        fraud_scores=_scores([("C1", "3", 1, decided)]),
        inference_log=None,
        model_name="fraud_detector",
        model_version="3",
        window=WINDOW,
    )
    claims = _claims(["C1"], [None], [decided - timedelta(days=1)])
    found, appeal = decided + timedelta(days=2), decided + timedelta(days=9)
    outcomes = pd.DataFrame(
        {
            "claim_id": ["C1", "C1"],
            "is_fraud": [0, 1],  # the appeal (landed first, listed second) reversed it
            "adjudicated_at": pd.to_datetime([appeal, found], utc=True),
            "_loaded_at": pd.to_datetime([appeal, found], utc=True),
        }
    )
    labels = adjudications(claims, outcomes.iloc[::-1], attributes=GROUP_COLUMNS)
    assert labels[["claim_id", "is_fraud"]].to_dict("records") == [
        {"claim_id": "C1", "is_fraud": 0}
    ]
    assert labels["labelled_at"].iloc[0] == pd.Timestamp(found)
    judged, _ = labelled_decisions(decisions, labels)
    assert judged["is_fraud"].tolist() == [0]


def test_the_audit_task_reads_the_adjudications_table(governed_home: Path) -> None:
    settings = get_settings()
    _registered(settings)
    scores, log, claims = _production(4_000)
    unlabelled, outcomes = _outcomes_apart(claims)
    _land(settings, scores, log, unlabelled)
    table_store(settings).write_pandas(outcomes, ADJUDICATIONS)

    written = write_champion_audit(settings, now=NOW, pipeline_run_id="audit-outcomes")

    assert written.audit.verdict == PASS, written.audit.reason
    assert written.audit.counts["labelled_decisions"] == 4_000
    assert "adjudications" in _pdf_text(written.pdf)
