"""One typed settings object for the whole project.

Every value is read from an environment variable (prefix ``FRAUD_``, nested fields joined
with ``__``, for example ``FRAUD_THRESHOLDS__ROC_AUC_MIN=0.8``), then from the per-target
overrides below, then from the defaults. Catalog, schema, model and experiment names per
target come from the bundle's own variables in ``databricks.yml``, so there is one source.

Nothing here builds a client or a session; ``get_settings()`` is called at the point of use.
"""

from __future__ import annotations

import json
import os
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Target = Literal["dev", "staging", "prod"]
ComputeMode = Literal["local", "databricks"]
LaunchStyle = Literal["job_cluster", "serverless", "run_now"]
AlertSink = Literal["log", "webhook", "slack"]
OperatingPointKind = Literal["flag_rate", "min_precision", "fixed"]
# Who a fraud label belongs to: one claim, every claim of a provider, or of a patient.
LabelUnit = Literal["claim", "provider", "patient"]
SplitStrategy = Literal["out_of_time", "random"]
# auto: a candidate that passes every gate becomes champion; approval: it becomes challenger
# and waits for an approved promotion (docs/deployment.md, "Prod approval policy").
PromotionMode = Literal["auto", "approval"]

REPO_ROOT = Path(__file__).resolve().parents[1]


_MOVED_TO_FAIRNESS_POLICY = {
    "disparate_impact_min",
    "equal_opportunity_max",
    "min_group_size",
    "bootstrap_samples",
    "confidence_level",
}


class Thresholds(BaseModel):
    """Every gate's threshold. Assets and checks read these; they never hard-code numbers."""

    # data quality
    max_null_rate: float = Field(0.02, description="Highest null rate allowed per required column")
    max_quarantine_rate: float = Field(
        0.05,
        description="Largest share of a batch's rows quarantined; above it the blocking "
        "quarantine_rate_within_limit check stops training",
    )
    min_claim_amount: float = 0.0
    max_claim_amount: float = 1_000_000.0
    max_patient_age: int = 120
    max_length_of_stay: int = 365
    min_num_procedures: int = Field(
        0,
        description="A claim bills at least this many procedures (0: an inpatient stay "
        "often bills none)",
    )
    max_num_procedures: int = 100
    # model quality
    operating_threshold: float = Field(
        0.5,
        description="Score at or above which a claim is flagged when operating_point.kind is "
        "fixed, and for a model whose run recorded no threshold",
    )
    roc_auc_min: float = 0.70
    pr_auc_lift_min: float = Field(
        2.0,
        description="PR AUC must reach the precision whose odds are this multiple of the "
        "prevalence's odds: k*p / (1 - p + k*p)",
    )
    regression_tolerance: float = Field(
        0.02, description="Largest ROC AUC drop allowed versus champion"
    )
    # fairness: the pinned policy in fraud_assets/governance/fairness_policy.yaml
    # drift
    psi_warn: float = 0.1
    psi_error: float = 0.2
    psi_bins: int = 10
    psi_epsilon: float = 1e-4
    psi_min_bucket_count: int = Field(
        50, description="Fewest expected rows per PSI bucket in the smaller sample"
    )

    @model_validator(mode="before")
    @classmethod
    def _moved_to_the_fairness_policy(cls, values: Any) -> Any:
        moved = sorted(set(values) & _MOVED_TO_FAIRNESS_POLICY) if isinstance(values, dict) else []
        if moved:
            raise ValueError(
                f"{', '.join(f'FRAUD_THRESHOLDS__{m.upper()}' for m in moved)}: fairness "
                "thresholds moved to the pinned policy "
                "(fraud_assets/governance/fairness_policy.yaml); override one run with "
                "FRAUD_FAIRNESS__GATES='{\"false_positive_rate_ratio\": 0.8}', "
                "FRAUD_FAIRNESS__CONFIDENCE_LEVEL or FRAUD_FAIRNESS__MIN_GROUP_SIZE"
            )
        return values

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        if not self.psi_warn < self.psi_error:
            raise ValueError(
                f"psi_warn ({self.psi_warn}) must be below psi_error ({self.psi_error})"
            )
        if not 0.0 < self.operating_threshold < 1.0:
            raise ValueError("operating_threshold must lie strictly between 0 and 1")
        return self


class OperatingPoint(BaseModel):
    """How the score threshold that flags a claim for review is chosen on the holdout."""

    kind: OperatingPointKind = "flag_rate"
    flag_rate: float = Field(
        0.05, gt=0.0, lt=1.0, description="Share of claims investigators can review"
    )
    min_precision: float = Field(
        0.5, gt=0.0, lt=1.0, description="Lowest share of flagged claims that must be fraud"
    )


class FairnessOverrides(BaseModel):
    """Run-time changes to the pinned fairness policy (FRAUD_FAIRNESS__*); unset keeps it."""

    gates: dict[str, float] | None = None
    confidence_level: float | None = None
    min_group_size: int | None = None
    clusters: list[str] | None = None


class Schedules(BaseModel):
    """Cron strings for the three schedules, and whether automation starts on its own."""

    timezone: str = "America/Los_Angeles"
    # auto: running in staging and prod where the bundle names Dagster the orchestrator,
    # stopped elsewhere (a laptop or dev workspace should not start jobs on its own).
    start: Literal["auto", "running", "stopped"] = "auto"
    ingestion_cron: str = "0 2 * * *"
    drift_monitoring_cron: str = "0 */6 * * *"
    fairness_audit_cron: str = "0 6 * * 0"


class DatabricksSettings(BaseModel):
    """How heavy steps launch on Databricks. Credentials are read by the resource, not here."""

    launch_style: LaunchStyle = "job_cluster"
    # The job cluster's shape defaults to the bundle's (databricks.yml variables, for the
    # target: FraudSettings fills them), so a Dagster-launched cluster and a bundle job's match.
    spark_version: str = Field(default_factory=lambda: _bundle_cluster("dev")["spark_version"])
    node_type_id: str = Field(default_factory=lambda: _bundle_cluster("dev")["node_type_id"])
    min_workers: int = Field(default_factory=lambda: _bundle_cluster("dev")["min_workers"])
    max_workers: int = Field(default_factory=lambda: _bundle_cluster("dev")["max_workers"])
    policy_id: str | None = Field(
        default_factory=lambda: _bundle_cluster("dev")["policy_id"],
        description="Cluster policy id; wins over policy_name",
    )
    policy_name: str | None = Field(
        default_factory=lambda: _bundle_cluster("dev")["policy_name"],
        description="Cluster policy looked up by name at launch, as the bundle's "
        "cluster_policy_id lookup does",
    )
    wheel_path: str | None = Field(
        None,
        description="The project's wheel on the workspace, for job_cluster and serverless "
        "(a Volume or workspace file; scripts/deploy.py uploads it and sets this). Unset: "
        "those styles refuse to launch; run_now runs the bundle's own wheel",
    )
    volume_path: str | None = Field(None, description="UC Volume for serverless Pipes messages")
    job_ids: dict[str, int] = Field(
        default_factory=dict, description="Bundle job id per task (run_now)"
    )
    poll_interval_seconds: float = 5.0
    timeout_seconds: float = 3600.0
    job_name_template: str = Field(
        "fraud_assets_{target}_{task}",
        description="Name of the bundle's step job, for run_now without a job id",
    )
    serverless_environment_version: str = Field(
        "4", description="Serverless environment version (4: Spark 4, like DBR 17) for the wheel"
    )
    data_security_mode: str = Field(
        "SINGLE_USER", description="Job cluster access mode; Unity Catalog needs SINGLE_USER"
    )
    message_poll_interval_seconds: float = Field(
        10.0, description="How often Dagster reads Pipes message chunks from DBFS or the Volume"
    )
    forward_stdio: bool = Field(
        True,
        description="Send the task's stdout/stderr to Dagster as Pipes messages "
        "(costs a few seconds per step to drain)",
    )
    api_retry_attempts: int = Field(
        5, description="Retries of 500/502/504 answers per API call (the SDK retries 429/503)"
    )
    api_retry_backoff_seconds: float = Field(
        1.0, description="Backoff factor of those retries: 0, 2, 4, 8... times this, with jitter"
    )
    api_retry_timeout_seconds: int = Field(
        300, description="Deadline of the SDK's own retries of 429/503 answers per API call"
    )
    launch_retries: int = Field(
        3,
        ge=0,
        description="Dagster retries of a launched step after a transient failure "
        "(API 5xx/429, lost connection, a run the platform ended INTERNAL_ERROR)",
    )
    launch_retry_delay_seconds: float = Field(
        60.0,
        ge=0,
        description="Wait before the first of those retries; doubled for each next one",
    )


class ServingSettings(BaseModel):
    """The real-time scoring service: where it listens, how it splits traffic, how it logs."""

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    challenger_traffic: float = Field(
        0.1, ge=0.0, le=1.0, description="Share of claims the challenger alias answers"
    )
    routing_salt: str = Field(
        "fraud-ab-1", description="Hashed with claim_id; a new salt reshuffles the A/B groups"
    )
    shadow: bool = Field(
        False, description="Challenger scores its share too, but the champion always answers"
    )
    request_shape: Literal["claim", "features"] = Field(
        "claim",
        description="What a request record carries: a canonical claim, whose features the "
        "service computes from the online view, or claim_id plus the gold features",
    )
    max_records: int = Field(1000, ge=1, description="Most claims accepted in one request")
    # 1,000 claims (max_records) of the contract serialize to well under 1 MB
    # (test_serving_limits.py): 4 MiB leaves room for long ids and codes, and a body is 413
    # long before it could grow the server's memory.
    max_request_bytes: int = Field(
        4 * 1024 * 1024, ge=1024, description="Largest request body; larger ones are 413"
    )
    reload_seconds: float = Field(
        15.0, ge=0, description="How often the registry is polled for alias moves; 0 disables"
    )
    batch_max_wait_ms: float = Field(
        1.0, ge=0, le=50, description="Longest a request waits for others to share a prediction"
    )
    batch_max_rows: int = Field(256, ge=1, description="Most claims scored in one prediction")
    log_flush_rows: int = Field(500, ge=1, description="Buffered inference-log rows per write")
    log_flush_seconds: float = Field(5.0, gt=0, description="Longest wait before a buffered write")
    log_max_buffer_rows: int = Field(
        100_000, ge=1, description="Unwritten rows at which scoring answers 503 (log is down)"
    )
    log_window_minutes: int = Field(
        60, ge=1, le=1440, description="Width of an inference_log window_id for realtime rows"
    )
    endpoint_name: str | None = Field(
        None,
        description="Databricks serving endpoint re-pointed after every alias move "
        "(default fraud-detector-<target>, the name deploy/serving gives it)",
    )
    endpoint_update_timeout_seconds: float = Field(
        1200.0,
        ge=0,
        description="How long an alias move waits for the endpoint to apply the new versions; "
        "0 sends the update without waiting",
    )


class PromotionSettings(BaseModel):
    """Who may move ``champion``: the gates alone (auto), or the gates and a named approver."""

    mode: PromotionMode = Field(
        "auto",
        description="auto: a gate-passing candidate becomes champion; approval: it becomes "
        "challenger awaiting approval and champion moves only with approval metadata "
        "(default: approval in prod, auto elsewhere)",
    )


class Owners(BaseModel):
    """Who answers for the assets, as Dagster shows it: ``team:<name>`` or an email address."""

    ml: str = Field("team:fraud-ml", description="Owner of data, features, models and scores")
    governance: str = Field(
        "team:ml-governance", description="Owner of the fairness and drift gates and promotion"
    )

    @model_validator(mode="after")
    def _dagster_owners(self) -> Owners:
        for name, owner in self.model_dump().items():
            if not (owner.startswith("team:") and len(owner) > 5) and "@" not in owner:
                raise ValueError(
                    f"FRAUD_OWNERS__{name.upper()}={owner!r}: an owner is 'team:<name>' "
                    "or an email address"
                )
        return self


class FraudSettings(BaseSettings):
    """Everything configurable in fraud_assets, read from ``FRAUD_*`` environment variables."""

    model_config = SettingsConfigDict(
        env_prefix="FRAUD_", env_nested_delimiter="__", extra="ignore", frozen=True
    )

    target: Target = "dev"
    compute: ComputeMode = "local"
    home: Path = Field(Path(".fraud_home"), description="Root of the local lakehouse and MLflow")
    catalog: str | None = None
    schema_name: str | None = None
    model_name: str | None = None
    experiment_name: str | None = None

    protected_attributes: list[str] | None = Field(
        None, description="Attributes the fairness report judges (default: the pinned policy's)"
    )

    # source of claims: synthetic by default, else an external file and its mapping
    source_path: str | None = None
    source_mapping: str | None = None
    landing_dir: Path | None = None
    reports_dir: str | None = Field(
        None,
        description="Where audit reports (HTML and PDF) are written: default "
        "$FRAUD_HOME/reports locally, the bundle's reports Volume "
        "(/Volumes/<catalog>/<schema>/reports) on Databricks compute",
    )
    landing_mapping: str | None = Field(
        None, description="Mapping for landed files that have no <file>.mapping.yaml sidecar"
    )
    synthetic_claims: bool | None = Field(
        None,
        description="Generate synthetic claims when no source is set (default: only in dev, "
        "the laptop demo; staging and prod fail instead of replacing what landed)",
    )
    synthetic_rows: int = 20_000
    synthetic_shape: Literal["default", "realistic", "obvious"] = Field(
        "default",
        description="Synthetic claims: default, realistic (43 states, ~2,100 diagnosis codes, "
        "minors, late labels...) or obvious (every fraud pattern plain to see)",
    )
    seed: int = 42
    inject_drift: float = Field(0.0, description="0 = none, 1 = strong shift in amounts and mix")
    inject_bias: float = Field(0.0, description="0 = none, 1 = strong label bias against one group")
    holdout_fraction: float = 0.2
    split_strategy: SplitStrategy = Field(
        "out_of_time",
        description="Holdout = the most recent labelled claims (out_of_time), or a hash of "
        "the label unit's id (random)",
    )
    label_unit: LabelUnit | None = Field(
        None, description="Unit the label belongs to (default: the source mapping's, or claim)"
    )
    allowed_protected_inputs: list[str] = Field(
        default_factory=list,
        description="Protected attributes a model may use as inputs, by name (default none)",
    )
    operating_point: OperatingPoint = OperatingPoint()
    fairness: FairnessOverrides = FairnessOverrides()

    thresholds: Thresholds = Thresholds()
    schedules: Schedules = Schedules()
    databricks: DatabricksSettings = Field(default_factory=lambda: DatabricksSettings())
    serving: ServingSettings = ServingSettings()
    promotion: PromotionSettings = PromotionSettings()

    alert_sink: AlertSink = "log"
    alert_webhook_url: SecretStr | None = None
    slack_channel: str = "#fraud-alerts"
    retrain_cooldown_minutes: int = 360
    dagster_base_url: str = "http://localhost:3000"
    mlflow_ui_url: str = Field(
        "http://localhost:5000", description="MLflow UI that local metadata links to (mlflow-ui)"
    )
    owners: Owners = Owners()
    code_repository_url: str | None = Field(
        None,
        description="GitHub/GitLab URL the UI links source code to (default: the git remote)",
    )
    git_commit: str | None = Field(
        None,
        description="Commit the code came from (default: HEAD of this checkout); set it where "
        "there is no .git, such as a container image",
    )
    deployed_by: str | None = Field(
        None,
        description="Who moves a model when the run names no launcher (CI sets its actor)",
    )
    spark_master: str = Field("local[2]", description="Master of the local SparkSession")
    spark_driver_memory: str = Field("4g", description="Driver memory of the local SparkSession")

    @field_validator("git_commit", "deployed_by", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        if isinstance(value, str):
            return value.strip() or None
        return value

    @model_validator(mode="before")
    @classmethod
    def _target_defaults(cls, values: Any) -> Any:
        if not isinstance(values, dict):
            return values
        target = values.get("target") or "dev"
        bundle = bundle_variables(target)
        for key in ("catalog", "model_name", "experiment_name"):
            values.setdefault(key, bundle.get(key))
        values.setdefault("schema_name", bundle.get("schema"))
        given_databricks = values.get("databricks") or {}
        if isinstance(given_databricks, BaseModel):
            given_databricks = given_databricks.model_dump(exclude_unset=True)
        values["databricks"] = {**_bundle_cluster(target), **given_databricks}
        overrides = TARGET_THRESHOLD_OVERRIDES.get(target, {})
        if overrides:
            given = values.get("thresholds") or {}
            if isinstance(given, BaseModel):
                given = given.model_dump(exclude_unset=True)
            values["thresholds"] = {**overrides, **given}
        given_promotion = values.get("promotion") or {}
        if isinstance(given_promotion, BaseModel):
            given_promotion = given_promotion.model_dump(exclude_unset=True)
        values["promotion"] = {"mode": TARGET_PROMOTION_MODE[target], **given_promotion}
        return values

    @property
    def automation_running(self) -> bool:
        """Whether schedules and the sensors that launch jobs start running when deployed."""
        start = self.schedules.start
        if start != "auto":
            return start == "running"
        return (
            self.target in ("staging", "prod")
            and bundle_variables(self.target).get("orchestrator") == "dagster"
        )

    @property
    def synthetic_claims_allowed(self) -> bool:
        """Whether ingest may generate claims when no source is set."""
        if self.synthetic_claims is not None:
            return self.synthetic_claims
        return self.target == "dev"

    @property
    def fraud_home(self) -> Path:
        return self.home.resolve()

    @property
    def landing_path(self) -> Path:
        return (self.landing_dir or self.fraud_home / "landing").resolve()

    @property
    def reports_path(self) -> Path:
        """Where audit reports go: ``reports_dir``, else the target's reports Volume on
        Databricks compute (resources/reports-volume-resource.yml), else FRAUD_HOME/reports."""
        if self.reports_dir:
            return Path(self.reports_dir)
        if self.compute == "databricks":
            if not self.catalog or not self.schema_name:
                raise ValueError(
                    "catalog and schema must be set to find the reports Volume "
                    "(or set FRAUD_REPORTS_DIR=/Volumes/<catalog>/<schema>/<volume>)"
                )
            return Path("/Volumes") / self.catalog / self.schema_name / REPORTS_VOLUME
        return self.fraud_home / "reports"

    @property
    def registered_model_name(self) -> str:
        """Three-level UC name on a Databricks runtime, the bare name in the local registry."""
        name = self.model_name or "fraud_detector"
        if on_databricks_runtime():
            return f"{self.catalog}.{self.schema_name}.{name}"
        return name

    def to_payload(self) -> dict[str, Any]:
        """Settings as plain JSON for a launched task, secrets left out."""
        payload = json.loads(self.model_dump_json(exclude={"alert_webhook_url", *_PROCESS_FACTS}))
        payload["home"] = str(self.fraud_home)
        return payload

    @classmethod
    def from_payload(cls, payload: dict[str, Any] | None) -> FraudSettings:
        """Rebuild settings inside a task: the launcher's payload wins over the task's env."""
        if not payload:
            return cls()
        return cls(**payload)


# The bundle's UC Volume for audit reports (resources/reports-volume-resource.yml).
REPORTS_VOLUME = "reports"

# Stricter gates where the model touches real decisions. Env vars still win. (Fairness
# thresholds are pinned per target in fraud_assets/governance/fairness_policy.yaml.)
TARGET_THRESHOLD_OVERRIDES: dict[str, dict[str, Any]] = {
    "dev": {},
    "staging": {},
    "prod": {"roc_auc_min": 0.75},
}


# Prod's champion moves only with a person's approval; dev and staging follow the gates.
TARGET_PROMOTION_MODE: dict[str, PromotionMode] = {
    "dev": "auto",
    "staging": "auto",
    "prod": "approval",
}


# Facts about the process that reads them, not about the run: a launched task keeps its own.
_PROCESS_FACTS = {"git_commit", "deployed_by"}


def _bundle_file() -> Path:
    packaged = resources.files("fraud_assets") / "conf" / "databricks.yml"
    if packaged.is_file():
        return Path(str(packaged))
    return REPO_ROOT / "databricks.yml"


@cache
def _bundle() -> dict[str, Any]:
    path = _bundle_file()
    if not path.is_file():
        raise FileNotFoundError(f"databricks.yml not found at {path}; it holds per-target names")
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def bundle_variables(target: str) -> dict[str, Any]:
    """The bundle's variables resolved for one target: defaults, then the target's values."""
    bundle = _bundle()
    targets = bundle.get("targets") or {}
    if target not in targets:
        raise ValueError(f"unknown target {target!r}; databricks.yml defines {sorted(targets)}")
    resolved = {name: spec.get("default") for name, spec in (bundle.get("variables") or {}).items()}
    resolved.update((targets[target] or {}).get("variables") or {})
    return resolved


def _bundle_cluster(target: str) -> dict[str, Any]:
    """The bundle's job cluster shape for one target, as ``DatabricksSettings`` fields.

    ``cluster_policy_id`` is either an id or a ``lookup: {cluster_policy: <name>}``; a name is
    resolved at launch (``fraud_assets.databricks.launch.resolve_policy_id``).
    """
    variables = bundle_variables(target)
    policy = variables.get("cluster_policy_id")
    if policy is None:
        spec = (_bundle().get("variables") or {}).get("cluster_policy_id") or {}
        policy = spec.get("lookup") if isinstance(spec, dict) else None
    if isinstance(policy, dict) and "lookup" in policy:
        policy = policy["lookup"]
    policy_name = policy.get("cluster_policy") if isinstance(policy, dict) else None
    return {
        "spark_version": variables["spark_version"],
        "node_type_id": variables["node_type_id"],
        "min_workers": int(variables["min_workers"]),
        "max_workers": int(variables["max_workers"]),
        "policy_id": None if isinstance(policy, dict) else policy,
        "policy_name": policy_name,
    }


def on_databricks_runtime() -> bool:
    """True inside a Databricks cluster or serverless environment, where tasks use UC."""
    return "DATABRICKS_RUNTIME_VERSION" in os.environ


def get_settings() -> FraudSettings:
    """Read settings from the environment now (never cached: tests and sensors change env)."""
    return FraudSettings()
