"""Two end-to-end demo scenarios: drift that triggers retraining, and bias that a gate stops.

    python -m fraud_assets.local.demo drift
    python -m fraud_assets.local.demo bias

Each scenario runs the real jobs in-process against the persistent Dagster instance in
``$DAGSTER_HOME`` (default ``$FRAUD_HOME/dagster_home``), evaluates the real sensors with
``build_sensor_context`` and launches what they request, so every run, check result and
sensor decision can be inspected afterwards in ``dagster dev``. Sensor cursors are kept
in ``$DAGSTER_HOME/fraud_demo_sensor_cursors.json`` so a second demo continues where the
first stopped, as the daemon would. The command exits non-zero when a scenario does not
reach its expected end state.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from dagster import (
    AssetCheckSeverity,
    AssetKey,
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    Definitions,
    ExecuteInProcessResult,
    RunRequest,
    RunsFilter,
    build_run_status_sensor_context,
    build_sensor_context,
)
from dagster._core.definitions.sensor_definition import SensorExecutionData

from fraud_assets import keys
from fraud_assets.local.spark_server import local_run_spark
from fraud_assets.sensors import (
    DRIFT_SENSOR,
    FAILED_CHECK_SENSOR,
    NEW_CLAIMS_SENSOR,
    RUN_FAILURE_SENSOR,
)
from fraud_assets.sensors.drift_policy import DriftCursor
from fraud_assets.settings import FraudSettings, get_settings

log = logging.getLogger("fraud_assets.local.demo")

Scenario = Literal["drift", "bias"]
SCENARIOS: tuple[Scenario, ...] = ("drift", "bias")
CURSOR_FILE = "fraud_demo_sensor_cursors.json"
# Seeds of the demo's landed batches: fixed, so a re-run lands the same claims again.
DRIFT_SEED_OFFSET = 101
BIAS_SEED_OFFSET = 202
# A biased batch several times the baseline's size, so retraining learns mostly from it.
BIAS_BATCH_FACTOR = 3
DEMO_FALSE_ACCUSATION_RATE = 0.15


@dataclass
class Step:
    """One step of a scenario and whether it reached what the scenario expects."""

    name: str
    ok: bool
    detail: str


@dataclass
class ScenarioReport:
    scenario: Scenario
    steps: list[Step] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.steps) and all(step.ok for step in self.steps)

    def summary(self) -> str:
        lines = [f"demo {self.scenario}: {'OK' if self.ok else 'FAILED'}"]
        lines += [f"  [{'ok' if s.ok else 'FAIL'}] {s.name}: {s.detail}" for s in self.steps]
        return "\n".join(lines)


class ScenarioFailed(RuntimeError):
    """A step did not reach the state the next steps depend on."""


class _SensorCursors:
    """Sensor cursors kept between demo invocations, as the daemon keeps them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._cursors: dict[str, str | None] = (
            json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        )

    def get(self, sensor_name: str) -> str | None:
        return self._cursors.get(sensor_name)

    def set(self, sensor_name: str, cursor: str | None) -> None:
        self._cursors[sensor_name] = cursor
        self.path.write_text(json.dumps(self._cursors, indent=2), encoding="utf-8")


class _Demo:
    def __init__(
        self,
        *,
        defs: Definitions,
        instance: DagsterInstance,
        settings: FraudSettings,
        resources: Mapping[str, Any],
        report: ScenarioReport,
    ) -> None:
        self.defs = defs
        self.repo = defs.get_repository_def()
        self.instance = instance
        self.settings = settings
        self.resources = resources
        self.report = report
        self.cursors = _SensorCursors(Path(instance.root_directory) / CURSOR_FILE)

    # --- reporting ---------------------------------------------------------------------

    def step(self, name: str, ok: bool, detail: str, *, required: bool = True) -> None:
        self.report.steps.append(Step(name, ok, detail))
        (log.info if ok else log.error)("[%s] %s: %s", "ok" if ok else "FAIL", name, detail)
        if required and not ok:
            raise ScenarioFailed(f"{name}: {detail}")

    # --- Dagster -------------------------------------------------------------------------

    def evaluate(self, sensor_name: str) -> SensorExecutionData:
        """One tick of a real sensor with its saved cursor, the way the daemon runs it."""
        sensor = self.repo.get_sensor_def(sensor_name)
        with build_sensor_context(
            instance=self.instance,
            cursor=self.cursors.get(sensor_name),
            repository_def=self.repo,
            resources=dict(self.resources),
            sensor_name=sensor_name,
        ) as context:
            data = sensor.evaluate_tick(context)
        self.cursors.set(sensor_name, data.cursor)
        requested = [r.run_key for r in data.run_requests or []]
        log.info(
            "sensor %s: %s",
            sensor_name,
            f"requested {requested}" if requested else (data.skip_message or "nothing"),
        )
        return data

    def launch(
        self, request: RunRequest, *, job_name: str, sensor_name: str
    ) -> ExecuteInProcessResult | None:
        """Run what a sensor requested, skipping a run key already launched (daemon rule)."""
        tags = dict(request.tags)
        tags["dagster/sensor_name"] = sensor_name
        if request.run_key:
            tags["dagster/run_key"] = request.run_key
            earlier = self.instance.get_runs(
                RunsFilter(
                    tags={"dagster/sensor_name": sensor_name, "dagster/run_key": request.run_key}
                ),
                limit=1,
            )
            if earlier:
                log.info(
                    "run key %s was launched before (run %s)", request.run_key, earlier[0].run_id
                )
                return None
        return self.run_job(request.job_name or job_name, run_config=request.run_config, tags=tags)

    def run_job(
        self,
        job_name: str,
        *,
        run_config: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> ExecuteInProcessResult:
        log.info("running %s ...", job_name)
        result = self.defs.resolve_job_def(job_name).execute_in_process(
            instance=self.instance,
            run_config=dict(run_config or {}),
            tags={"fraud_assets/demo": self.report.scenario, **(tags or {})},
            raise_on_error=False,
        )
        log.info(
            "%s run %s: %s", job_name, result.run_id, "success" if result.success else "FAILURE"
        )
        return result

    def alert_failed_runs(self, result: ExecuteInProcessResult) -> None:
        """Hand a failed run to the run-failure sensor, as the daemon does when a run fails."""
        run = self.instance.get_run_by_id(result.run_id)
        if run is None or run.status != DagsterRunStatus.FAILURE:
            return
        (failure,) = self.instance.get_records_for_run(
            result.run_id, of_type=DagsterEventType.RUN_FAILURE
        ).records
        sensor = self.repo.get_sensor_def(RUN_FAILURE_SENSOR)
        with build_run_status_sensor_context(
            sensor_name=RUN_FAILURE_SENSOR,
            dagster_event=failure.event_log_entry.get_dagster_event(),
            dagster_instance=self.instance,
            dagster_run=run,
            resources=dict(self.resources),
        ).for_run_failure() as context:
            sensor(context)

    # --- MLflow and data -----------------------------------------------------------------

    def champion(self) -> str | None:
        from fraud_assets.ml.registry import CHAMPION, alias_version
        from fraud_assets.ml.tracking import configure_mlflow, mlflow_client

        configure_mlflow(self.settings)
        version = alias_version(mlflow_client(), self.settings.registered_model_name, CHAMPION)
        return str(version.version) if version is not None else None

    def land(self, *, seed: int, n_rows: int, drift: float = 0.0, bias: float = 0.0) -> Path:
        from fraud_assets.claims.synthetic import ClaimShape, land_synthetic_batch

        # The demo's biased batch accuses 15% of women's honest claims, not the generator's
        # default 6%: with the realistic signal 6% sat near the gate's line, and the demo
        # must show a biased model the gate stops on every run.
        shape = ClaimShape(false_accusation_rate=DEMO_FALSE_ACCUSATION_RATE)
        return land_synthetic_batch(
            self.settings.landing_path,
            n_rows=n_rows,
            seed=seed,
            drift=drift,
            bias=bias,
            shape=shape,
        )

    # --- scenario building blocks ----------------------------------------------------------

    def ensure_champion(self) -> str:
        existing = self.champion()
        if existing is not None:
            self.step("baseline", True, f"champion is version {existing}; baseline reused")
            return existing
        result = self.run_job(keys.MAIN_JOB)
        self.alert_failed_runs(result)
        version = self.champion()
        self.step(
            "baseline",
            result.success and version is not None,
            f"{keys.MAIN_JOB} run {result.run_id} on clean synthetic claims: "
            f"{'success' if result.success else 'FAILURE'}, champion version {version}",
        )
        assert version is not None
        return version

    def ingest_landed(self, path: Path) -> ExecuteInProcessResult:
        """The new-claims sensor sees the landed file and its ingestion run runs."""
        data = self.evaluate(NEW_CLAIMS_SENSOR)
        requests = [
            r
            for r in data.run_requests or []
            if r.run_config["ops"]["raw_claims"]["config"]["source_path"] == str(path)
        ]
        self.step(
            "new claims sensor",
            len(requests) == 1,
            f"{len(data.run_requests or [])} ingestion run(s) requested, "
            f"{len(requests)} for {path.name}",
        )
        result = self.launch(
            requests[0], job_name=keys.INGESTION_JOB, sensor_name=NEW_CLAIMS_SENSOR
        )
        if result is None:
            raise ScenarioFailed(f"the ingestion of {path.name} was launched before")
        self.alert_failed_runs(result)
        self.step(
            "ingestion",
            result.success,
            f"{keys.INGESTION_JOB} run {result.run_id} for {path.name}: "
            f"{'success' if result.success else 'FAILURE'}",
        )
        return result


def _materialization_metadata(result: ExecuteInProcessResult, node: str) -> dict[str, Any]:
    events = result.asset_materializations_for_node(node)
    if not events:
        return {}
    return {k: getattr(v, "value", v) for k, v in events[-1].metadata.items()}


def _drift_scenario(demo: _Demo) -> None:
    settings = demo.settings
    demo.report.facts["champion_before"] = demo.ensure_champion()
    # Each demo is a new drift episode: forget an earlier demo's retraining cooldown.
    cursor = DriftCursor.parse(demo.cursors.get(DRIFT_SENSOR))
    demo.cursors.set(DRIFT_SENSOR, DriftCursor(last_storage_id=cursor.last_storage_id).dump())
    demo.evaluate(FAILED_CHECK_SENSOR)  # alerts up to now belong to earlier runs

    landed = demo.land(
        seed=settings.seed + DRIFT_SEED_OFFSET, n_rows=settings.synthetic_rows, drift=1.0
    )
    demo.step(
        "land drifted claims", True, f"{landed} ({settings.synthetic_rows} claims, drift=1.0)"
    )
    demo.ingest_landed(landed)

    monitoring = demo.run_job(keys.DRIFT_MONITORING_JOB)
    demo.alert_failed_runs(monitoring)
    psi = _materialization_metadata(monitoring, "psi_report")
    demo.report.facts.update(drift_level=psi.get("drift_level"), max_psi=psi.get("max_psi"))
    demo.step(
        "drift monitoring",
        monitoring.success and psi.get("drift_level") == "major",
        f"{keys.DRIFT_MONITORING_JOB} run {monitoring.run_id}: psi_report drift_level="
        f"{psi.get('drift_level')}, max_psi={psi.get('max_psi')}",
    )

    data = demo.evaluate(DRIFT_SENSOR)
    requests = list(data.run_requests or [])
    demo.step(
        "drift sensor",
        len(requests) == 1,
        f"requested {[r.run_key for r in requests]} for {keys.RETRAINING_JOB}",
    )
    retraining = demo.launch(requests[0], job_name=keys.RETRAINING_JOB, sensor_name=DRIFT_SENSOR)
    if retraining is None:
        raise ScenarioFailed(f"run key {requests[0].run_key} was launched before")
    demo.alert_failed_runs(retraining)
    demo.report.facts["retraining_run_id"] = retraining.run_id
    demo.report.facts["champion_after"] = demo.champion()
    demo.step(
        "retraining",
        retraining.success,
        f"{keys.RETRAINING_JOB} run {retraining.run_id}: "
        f"{'success' if retraining.success else 'FAILURE'}; champion is now version "
        f"{demo.report.facts['champion_after']}",
    )

    again = demo.evaluate(DRIFT_SENSOR)
    demo.step(
        "same episode",
        not again.run_requests,
        f"second evaluation requested nothing: {again.skip_message}",
    )
    demo.evaluate(FAILED_CHECK_SENSOR)


def _bias_scenario(demo: _Demo) -> None:
    settings = demo.settings
    before = demo.ensure_champion()
    demo.report.facts["champion_before"] = before
    demo.evaluate(FAILED_CHECK_SENSOR)  # alerts up to now belong to earlier runs

    rows = settings.synthetic_rows * BIAS_BATCH_FACTOR
    landed = demo.land(seed=settings.seed + BIAS_SEED_OFFSET, n_rows=rows, bias=1.0)
    demo.step("land biased claims", True, f"{landed} ({rows} claims, bias=1.0)")
    demo.ingest_landed(landed)

    retraining = demo.run_job(keys.RETRAINING_JOB, tags={"fraud_assets/trigger": "demo"})
    demo.report.facts["retraining_run_id"] = retraining.run_id
    failed_fairness = sorted(
        e.check_name
        for e in retraining.get_asset_check_evaluations()
        if e.asset_key == AssetKey(keys.FAIRNESS_REPORT)
        and not e.passed
        and e.severity == AssetCheckSeverity.ERROR
    )
    demo.report.facts["failed_fairness_checks"] = failed_fairness
    demo.step(
        "fairness gate",
        bool(failed_fairness),
        f"{keys.RETRAINING_JOB} run {retraining.run_id}: failed fairness checks {failed_fairness}",
    )
    registered = [
        e
        for e in retraining.get_asset_materialization_events()
        if e.asset_key == AssetKey(keys.REGISTERED_MODEL)
    ]
    demo.step(
        "registered_model not executed",
        not registered,
        "registered_model was not materialized in the run"
        if not registered
        else "registered_model was materialized despite the failed gate",
    )
    after = demo.champion()
    demo.report.facts["champion_after"] = after
    demo.step("champion unchanged", after == before, f"champion version {before} -> {after}")

    demo.alert_failed_runs(retraining)
    data = demo.evaluate(FAILED_CHECK_SENSOR)
    message = data.skip_message or ""
    demo.report.facts["alert_summary"] = message
    alerted = [f"fairness_report.{name}" for name in failed_fairness]
    demo.step(
        "check-failure alert",
        bool(alerted) and all(name in message for name in alerted) and "0 delivered" not in message,
        message,
    )


def run_scenario(
    scenario: Scenario,
    *,
    defs: Definitions,
    instance: DagsterInstance,
    resources: Mapping[str, Any] | None = None,
    settings: FraudSettings | None = None,
) -> ScenarioReport:
    """Run one scenario end to end; the report says which steps reached their goal.

    ``resources`` overrides the sensors' resources (for example the alert sink); by
    default they are the code location's own.
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown demo scenario {scenario!r}; choose one of {SCENARIOS}")
    report = ScenarioReport(scenario)
    demo = _Demo(
        defs=defs,
        instance=instance,
        settings=settings or get_settings(),
        resources={**dict(defs.resources or {}), **dict(resources or {})},
        report=report,
    )
    try:
        (_drift_scenario if scenario == "drift" else _bias_scenario)(demo)
    except ScenarioFailed as exc:
        log.error("demo %s stopped: %s", scenario, exc)
    log.info("%s", report.summary())
    return report


@contextmanager
def persistent_instance(settings: FraudSettings) -> Iterator[DagsterInstance]:
    """The instance under ``$DAGSTER_HOME``, which defaults to ``$FRAUD_HOME/dagster_home``."""
    home = Path(os.environ.get("DAGSTER_HOME") or settings.fraud_home / "dagster_home")
    home.mkdir(parents=True, exist_ok=True)
    # An empty dagster.yaml is the documented "defaults are fine"; without one every start
    # prints a notice saying so.
    (home / "dagster.yaml").touch(exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(home)
    with DagsterInstance.get() as instance:
        yield instance


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fraud_assets.local.demo",
        description="Run a demo scenario against the persistent Dagster instance.",
    )
    parser.add_argument("scenario", choices=SCENARIOS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = get_settings()
    with persistent_instance(settings) as instance, local_run_spark(settings):
        from fraud_assets.definitions import defs

        report = run_scenario(args.scenario, defs=defs, instance=instance, settings=settings)
        log.info(
            "inspect the runs: DAGSTER_HOME=%s dagster dev, then open %s/runs",
            os.environ["DAGSTER_HOME"],
            settings.dagster_base_url,
        )
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
