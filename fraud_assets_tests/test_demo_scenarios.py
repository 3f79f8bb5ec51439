"""Both demo scenarios end to end: real jobs, real sensors, a persistent instance.

One FRAUD_HOME and DAGSTER_HOME for the module: the drift scenario builds the baseline
champion and the bias scenario reuses it, as `make demo-drift && make demo-bias` would.
"""

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import (
    AssetKey,
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    Definitions,
    RunsFilter,
)
from dagster._core.execution.stats import StepEventStatus

from fraud_assets import keys
from fraud_assets.checks import CHECK_FALSE_POSITIVE_RATE_RATIO
from fraud_assets.governance.policy import pinned_policy
from fraud_assets.local.demo import ScenarioReport, persistent_instance, run_scenario
from fraud_assets.resources.alerts import AlertResource
from fraud_assets.sensors import DRIFT_SENSOR, NEW_CLAIMS_SENSOR
from fraud_assets.settings import FraudSettings, get_settings
from fraud_assets_tests.alerts_support import WebhookReceiver

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_home(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[DagsterInstance, FraudSettings]]:
    home = tmp_path_factory.mktemp("demo") / "fraud_home"
    home.mkdir()
    with pytest.MonkeyPatch.context() as env:
        for name in list(os.environ):
            if name.startswith("FRAUD_") or name == "DAGSTER_HOME":
                env.delenv(name)
        env.setenv("FRAUD_HOME", str(home))
        env.setenv("FRAUD_SYNTHETIC_ROWS", "6000")
        env.setenv("PYSPARK_PYTHON", sys.executable)
        settings = get_settings()
        with persistent_instance(settings) as instance:
            assert Path(instance.root_directory) == home / "dagster_home"
            yield instance, settings


def _defs() -> Definitions:
    from fraud_assets.definitions import defs

    return defs


def _assert_ok(report: ScenarioReport) -> None:
    assert report.ok, report.summary()


def test_drift_scenario_retrains_once_per_episode(
    demo_home: tuple[DagsterInstance, FraudSettings],
) -> None:
    instance, settings = demo_home

    report = run_scenario("drift", defs=_defs(), instance=instance, settings=settings)

    _assert_ok(report)
    assert report.facts["drift_level"] == "major"
    assert report.facts["max_psi"] >= settings.thresholds.psi_error
    ingestion = instance.get_runs(
        RunsFilter(job_name=keys.INGESTION_JOB, tags={"dagster/sensor_name": NEW_CLAIMS_SENSOR})
    )
    assert len(ingestion) == 1 and ingestion[0].status == DagsterRunStatus.SUCCESS
    source = str(ingestion[0].run_config["ops"]["raw_claims"]["config"]["source_path"])  # type: ignore[index]
    assert source.startswith(str(settings.landing_path)) and "drift1" in source
    retraining = instance.get_runs(RunsFilter(job_name=keys.RETRAINING_JOB))
    assert [r.run_id for r in retraining] == [report.facts["retraining_run_id"]]
    (run,) = retraining
    assert run.status == DagsterRunStatus.SUCCESS
    assert run.tags["dagster/sensor_name"] == DRIFT_SENSOR
    assert run.tags["dagster/run_key"].startswith("psi_report:")
    assert float(run.tags["fraud_assets/max_psi"]) == pytest.approx(
        report.facts["max_psi"], abs=1e-4
    )
    assert [s.name for s in report.steps][-1] == "same episode"


def test_bias_scenario_blocks_promotion_and_alerts(
    demo_home: tuple[DagsterInstance, FraudSettings], webhook_receiver: WebhookReceiver
) -> None:
    instance, settings = demo_home
    alerts = AlertResource(
        sink="webhook",
        webhook_url=webhook_receiver.url,
        dagster_base_url="http://dagster.test:3000",
        backoff_seconds=0.01,
    )

    report = run_scenario(
        "bias", defs=_defs(), instance=instance, settings=settings, resources={"alerts": alerts}
    )

    _assert_ok(report)
    assert report.facts["champion_after"] == report.facts["champion_before"]
    # Proxy bias falsely accuses one group: the false-positive-rate gate catches it.
    assert CHECK_FALSE_POSITIVE_RATE_RATIO in report.facts["failed_fairness_checks"]
    run_id = report.facts["retraining_run_id"]
    run = instance.get_run_by_id(run_id)
    assert run is not None and run.status == DagsterRunStatus.FAILURE
    # The failed blocking check fails its step; Dagster then never starts registered_model.
    steps = {stat.step_key: stat.status for stat in instance.get_run_step_stats(run_id)}
    assert steps["fairness_report"] == StepEventStatus.FAILURE
    assert "registered_model" not in steps
    materialized = {
        record.event_log_entry.get_dagster_event().asset_key
        for record in instance.get_records_for_run(
            run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION
        ).records
    }
    assert AssetKey(keys.FAIRNESS_REPORT) in materialized
    assert AssetKey(keys.REGISTERED_MODEL) not in materialized
    check_alerts = [b for b in webhook_receiver.received if b["kind"] == "check_failed"]
    fairness = [b for b in check_alerts if b["run_id"] == run_id]
    assert {b["check"] for b in fairness} == set(report.facts["failed_fairness_checks"])
    fpr = next(b for b in fairness if b["check"] == CHECK_FALSE_POSITIVE_RATE_RATIO)
    assert fpr["asset"] == "fairness_report"
    # The biased attribute fails; the alert names the first failing attribute and its value.
    failing = fpr["details"]["failing_attributes"]
    assert "patient_gender" in failing and fpr["subject"] == failing[0]
    threshold = pinned_policy(settings.target).threshold("false_positive_rate_ratio")
    assert fpr["value"] < fpr["threshold"] == threshold
    assert fpr["details"]["patient_gender.false_positive_rate_ratio"] < threshold
    assert fpr["run_url"] == f"http://dagster.test:3000/runs/{run_id}"
    run_alerts = [b for b in webhook_receiver.received if b["kind"] == "run_failed"]
    assert [b["run_id"] for b in run_alerts] == [run_id]
