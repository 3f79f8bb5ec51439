"""Every asset check, declared once: its asset, name, severity, blocking, promotion role,
description and the settings it reads.

The Dagster ``AssetCheckSpec``s, the severity tasks report, the promotion gates the register
step judges and the checks table in docs/models.md are all derived from ``CHECKS``; a check's
verdict is computed by its own function next to the data (``fraud_assets.claims``,
``fraud_assets.ml.evaluation``, ``fraud_assets.governance.gates``). No Dagster import here:
the task runtime reads this table on clusters that have no Dagster installed.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from fraud_assets.keys import (
    CATBOOST_MODEL,
    CHAMPION_FAIRNESS_AUDIT,
    CLAIM_FEATURES,
    CLAIMS,
    FAIRNESS_REPORT,
    MODEL_EVALUATION,
    PSI_REPORT,
    RAW_CLAIMS,
    XGBOOST_MODEL,
)

Severity = Literal["ERROR", "WARN"]
# A fairness figure fails with ERROR when the pinned policy gates it, else with WARN; the
# same policy decides whether it gates promotion.
POLICY_DECIDES: Final = "policy decides"
# Drift: WARN from thresholds.psi_warn, ERROR from thresholds.psi_error.
PSI_DECIDES: Final = "PSI level decides"
# The champion audit: ERROR when it fails, WARN when there are too few labels to judge.
AUDIT_DECIDES: Final = "audit verdict decides"
SeverityRule = Severity | Literal["policy decides", "PSI level decides", "audit verdict decides"]


# Check names, per asset.
CHECK_RAW_SCHEMA = "raw_schema_has_required_columns"
CHECK_RAW_NOT_EMPTY = "raw_not_empty"
CHECK_NO_FILE_QUARANTINED = "no_file_quarantined"
CHECK_SCHEMA = "schema_matches_contract"
CHECK_UNIQUE_CLAIM_ID = "claim_id_unique"
CHECK_QUARANTINE_RATE = "quarantine_rate_within_limit"
CHECK_VALUE_RANGES = "values_in_range"
CHECK_NULL_RATES = "null_rates_within_limit"
CHECK_RECONCILES = "bronze_equals_silver_plus_quarantine"
CHECK_FEATURES_COMPLETE = "features_complete"
CHECK_HOLDOUT_SEPARATED = "holdout_shares_no_label_unit"
CHECK_MODEL_ROC_AUC = "holdout_roc_auc_above_floor"
CHECK_ROC_AUC_FLOOR = "roc_auc_floor"
CHECK_PR_AUC_FLOOR = "pr_auc_floor"
CHECK_NO_REGRESSION = "no_regression_vs_champion"
CHECK_DISPARATE_IMPACT = "disparate_impact_ratio"
CHECK_FALSE_POSITIVE_RATE_RATIO = "false_positive_rate_ratio"
CHECK_EQUAL_OPPORTUNITY = "equal_opportunity_difference"
CHECK_MIN_GROUP_SIZE = "min_group_size"
CHECK_FAIRNESS_POLICY = "policy_at_least_pinned"
CHECK_FEATURE_DRIFT = "feature_drift"
CHECK_SCORE_DRIFT = "score_drift"
CHECK_CHAMPION_FAIRNESS = "champion_fair_on_labelled_decisions"


@dataclass(frozen=True)
class CheckDeclaration:
    """One asset check.

    ``severity`` is the severity it fails with, or the rule that decides it per run.
    ``blocking``: a failure with severity ERROR stops the asset's downstream steps in the
    same run. ``gates_promotion``: ``registered_model`` moves ``champion`` only when the
    check's latest verdict since the candidate was evaluated passed. ``settings`` are the
    ``FraudSettings`` fields (``thresholds.<name>``, ``<name>``) or fairness policy fields
    (``fairness_policy.<name>``) its verdict reads.
    """

    asset: str
    name: str
    severity: SeverityRule
    blocking: bool
    gates_promotion: bool | Literal["policy decides"]
    description: str
    settings: tuple[str, ...] = ()

    def severity_of(self, reported: Severity | None = None) -> Severity:
        """The severity an outcome of this check carries.

        A check of fixed severity takes it from here (``reported``, if given, must agree);
        one whose severity a rule decides needs the verdict's ``reported`` severity.
        """
        if self.severity in ("ERROR", "WARN"):
            fixed: Severity = "ERROR" if self.severity == "ERROR" else "WARN"
            if reported is not None and reported != fixed:
                raise ValueError(
                    f"{self.asset}.{self.name} is declared {fixed}, the verdict says {reported}"
                )
            return fixed
        if reported is None:
            raise ValueError(
                f"{self.asset}.{self.name}: the {self.severity!r} rule needs the verdict's severity"
            )
        return reported


_FAIRNESS_POLICY_SETTINGS = (
    "fairness_policy.gates",
    "fairness_policy.advisories",
    "fairness_policy.attributes",
    "fairness_policy.confidence_level",
    "fairness_policy.min_group_size",
    "fairness_policy.interval",
    "fairness_policy.clusters",
)


def _holdout_roc_auc(model_asset: str) -> CheckDeclaration:
    """Each trained model's own ROC AUC floor: a warning, model_evaluation holds the gate."""
    return CheckDeclaration(
        model_asset,
        CHECK_MODEL_ROC_AUC,
        severity="WARN",
        blocking=False,
        gates_promotion=False,
        description="Holdout ROC AUC at or above thresholds.roc_auc_min (warning only)",
        settings=("thresholds.roc_auc_min",),
    )


CHECKS: Final[tuple[CheckDeclaration, ...]] = (
    # ingestion
    CheckDeclaration(
        RAW_CLAIMS,
        CHECK_RAW_SCHEMA,
        severity="ERROR",
        blocking=True,
        gates_promotion=False,
        description="Bronze has every canonical column (as text) and the lineage columns",
    ),
    CheckDeclaration(
        RAW_CLAIMS,
        CHECK_RAW_NOT_EMPTY,
        severity="ERROR",
        blocking=False,
        gates_promotion=False,
        description="The landed batch has at least one record",
    ),
    CheckDeclaration(
        RAW_CLAIMS,
        CHECK_NO_FILE_QUARANTINED,
        # ERROR so the failed-check sensor alerts; not blocking, so the other files of the
        # run still reach silver. A quarantined file is never retried, so it alerts once.
        severity="ERROR",
        blocking=False,
        gates_promotion=False,
        description=(
            "No landing-folder claim file was quarantined whole in this run (unreadable or "
            "unmappable; the reason is in the landed_files ledger)"
        ),
    ),
    CheckDeclaration(
        CLAIMS,
        CHECK_SCHEMA,
        severity="ERROR",
        blocking=True,
        gates_promotion=False,
        description="Silver columns and types equal the canonical claim schema",
    ),
    CheckDeclaration(
        CLAIMS,
        CHECK_UNIQUE_CLAIM_ID,
        severity="ERROR",
        blocking=True,
        gates_promotion=False,
        description="No claim_id appears twice in silver",
    ),
    CheckDeclaration(
        CLAIMS,
        CHECK_RECONCILES,
        severity="ERROR",
        blocking=True,
        gates_promotion=False,
        description="Latest batch: bronze rows = silver rows + quarantined rows, none twice",
    ),
    CheckDeclaration(
        CLAIMS,
        CHECK_QUARANTINE_RATE,
        severity="ERROR",
        blocking=True,
        gates_promotion=False,
        description="Latest batch: quarantined share at most max_quarantine_rate (5%)",
        settings=("thresholds.max_quarantine_rate",),
    ),
    CheckDeclaration(
        CLAIMS,
        CHECK_VALUE_RANGES,
        severity="WARN",
        blocking=False,
        gates_promotion=False,
        description="No out-of-range value in silver",
        settings=(
            "thresholds.min_claim_amount",
            "thresholds.max_claim_amount",
            "thresholds.max_patient_age",
            "thresholds.max_length_of_stay",
            "thresholds.min_num_procedures",
            "thresholds.max_num_procedures",
        ),
    ),
    CheckDeclaration(
        CLAIMS,
        CHECK_NULL_RATES,
        severity="WARN",
        blocking=False,
        gates_promotion=False,
        description="Share of landed rows missing each required column under its limit",
        settings=("thresholds.max_null_rate",),
    ),
    # features
    CheckDeclaration(
        CLAIM_FEATURES,
        CHECK_FEATURES_COMPLETE,
        severity="ERROR",
        blocking=True,
        gates_promotion=False,
        description="No nulls in model features and exactly one feature row per claim",
    ),
    CheckDeclaration(
        CLAIM_FEATURES,
        CHECK_HOLDOUT_SEPARATED,
        severity="WARN",
        blocking=False,
        gates_promotion=False,
        description=(
            "No entity of the label's unit (claim, provider or patient) has claims in both "
            "train and holdout; a WARN, since a custom split may share some on purpose"
        ),
        settings=("label_unit", "split_strategy"),
    ),
    # training
    _holdout_roc_auc(CATBOOST_MODEL),
    _holdout_roc_auc(XGBOOST_MODEL),
    # evaluation: the model quality gates
    CheckDeclaration(
        MODEL_EVALUATION,
        CHECK_ROC_AUC_FLOOR,
        severity="ERROR",
        blocking=True,
        gates_promotion=True,
        description="Candidate holdout ROC AUC at or above thresholds.roc_auc_min",
        settings=("thresholds.roc_auc_min",),
    ),
    CheckDeclaration(
        MODEL_EVALUATION,
        CHECK_PR_AUC_FLOOR,
        severity="ERROR",
        blocking=True,
        gates_promotion=True,
        description=(
            "Candidate PR AUC at least the precision with pr_auc_lift_min x the prevalence's odds"
        ),
        settings=("thresholds.pr_auc_lift_min",),
    ),
    CheckDeclaration(
        MODEL_EVALUATION,
        CHECK_NO_REGRESSION,
        severity="ERROR",
        blocking=True,
        gates_promotion=True,
        description=(
            "Candidate ROC AUC no more than thresholds.regression_tolerance below the champion's "
            "on the same holdout (passes when there is no champion)"
        ),
        settings=("thresholds.regression_tolerance",),
    ),
    # governance: one check per gateable fairness figure (the pinned policy decides which of
    # them gate), then the group-size and policy checks, which always gate. All are declared
    # blocking: only a failure with ERROR blocks, and an advisory figure fails with WARN.
    CheckDeclaration(
        FAIRNESS_REPORT,
        CHECK_FALSE_POSITIVE_RATE_RATIO,
        severity=POLICY_DECIDES,
        blocking=True,
        gates_promotion=POLICY_DECIDES,
        description=(
            "Per protected attribute: fails when the whole simultaneous interval of the lowest "
            "over the highest group false-positive rate (honest claims flagged) lies below the "
            "policy's threshold"
        ),
        settings=_FAIRNESS_POLICY_SETTINGS,
    ),
    CheckDeclaration(
        FAIRNESS_REPORT,
        CHECK_EQUAL_OPPORTUNITY,
        severity=POLICY_DECIDES,
        blocking=True,
        gates_promotion=POLICY_DECIDES,
        description=(
            "Per protected attribute: fails when the whole simultaneous interval of the highest "
            "minus the lowest group true-positive rate lies above the policy's threshold"
        ),
        settings=_FAIRNESS_POLICY_SETTINGS,
    ),
    CheckDeclaration(
        FAIRNESS_REPORT,
        CHECK_DISPARATE_IMPACT,
        severity=POLICY_DECIDES,
        blocking=True,
        gates_promotion=POLICY_DECIDES,
        description=(
            "Per protected attribute: fails when the whole simultaneous interval of the lowest "
            "over the highest group flag rate lies below the policy's threshold (the four-fifths "
            "rule of US employment law); advisory (WARN) unless the policy gates it"
        ),
        settings=_FAIRNESS_POLICY_SETTINGS,
    ),
    CheckDeclaration(
        FAIRNESS_REPORT,
        CHECK_MIN_GROUP_SIZE,
        severity="ERROR",
        blocking=True,
        gates_promotion=True,
        description=(
            "Every protected attribute has at least two groups of the policy's min_group_size "
            "claims; smaller groups are reported as insufficient data"
        ),
        settings=("fairness_policy.attributes", "fairness_policy.min_group_size"),
    ),
    CheckDeclaration(
        FAIRNESS_REPORT,
        CHECK_FAIRNESS_POLICY,
        severity="ERROR",
        blocking=True,
        gates_promotion=True,
        description=(
            "The policy in force (attributes, gated figures and thresholds, confidence, method) "
            "is at least as strict as the target's pinned policy"
        ),
        settings=_FAIRNESS_POLICY_SETTINGS,
    ),
    # drift: reported, never blocking; the drift sensor acts on an ERROR
    CheckDeclaration(
        PSI_REPORT,
        CHECK_FEATURE_DRIFT,
        severity=PSI_DECIDES,
        blocking=False,
        gates_promotion=False,
        description="Largest feature PSI: WARN from psi_warn, ERROR from psi_error",
        settings=("thresholds.psi_warn", "thresholds.psi_error"),
    ),
    CheckDeclaration(
        PSI_REPORT,
        CHECK_SCORE_DRIFT,
        severity=PSI_DECIDES,
        blocking=False,
        gates_promotion=False,
        description="Fraud score PSI: WARN from psi_warn, ERROR from psi_error",
        settings=("thresholds.psi_warn", "thresholds.psi_error"),
    ),
    # the weekly audit of the champion: reported (and alerted on), nothing downstream to stop
    CheckDeclaration(
        CHAMPION_FAIRNESS_AUDIT,
        CHECK_CHAMPION_FAIRNESS,
        severity=AUDIT_DECIDES,
        blocking=False,
        gates_promotion=False,
        description=(
            "The champion passes the promotion gate's fairness verdicts on its labelled "
            "production decisions: ERROR when it fails, WARN when too few labels to judge"
        ),
        settings=_FAIRNESS_POLICY_SETTINGS,
    ),
)

_BY_KEY: Final = {(check.asset, check.name): check for check in CHECKS}
if len(_BY_KEY) != len(CHECKS):
    raise RuntimeError("an asset check is declared twice in fraud_assets.checks.CHECKS")


def declared(asset: str, name: str) -> CheckDeclaration:
    """The declaration of ``asset``'s check ``name``; a KeyError names an undeclared one."""
    try:
        return _BY_KEY[(asset, name)]
    except KeyError:
        raise KeyError(f"{asset}.{name} is not declared in fraud_assets.checks.CHECKS") from None


def checks_of(asset: str) -> list[CheckDeclaration]:
    """``asset``'s checks, in declaration order."""
    return [check for check in CHECKS if check.asset == asset]


def names_of(asset: str) -> list[str]:
    return [check.name for check in checks_of(asset)]


# Fairness checks: the gateable figures first, then the checks that always gate.
FAIRNESS_FIGURE_CHECKS: Final = [
    c.name for c in checks_of(FAIRNESS_REPORT) if c.gates_promotion == POLICY_DECIDES
]
FAIRNESS_CHECKS: Final = names_of(FAIRNESS_REPORT)
MODEL_QUALITY_GATES: Final = [c.name for c in checks_of(MODEL_EVALUATION) if c.gates_promotion]


def promotion_gates(gated_figures: Iterable[str]) -> dict[str, list[str]]:
    """The checks, by asset name, that gate promotion: ``registered_model`` does not run when
    one of them fails, and ``champion`` moves only when each has a passing verdict.

    ``gated_figures`` are the fairness figures the target's pinned policy gates.
    """
    gated = set(gated_figures)
    gates: dict[str, list[str]] = {}
    for check in CHECKS:
        if check.gates_promotion is True or (
            check.gates_promotion == POLICY_DECIDES and check.name in gated
        ):
            gates.setdefault(check.asset, []).append(check.name)
    return gates


DOCS_TABLE_START = "<!-- checks table: generated from fraud_assets/checks.py -->"
DOCS_TABLE_END = "<!-- end of checks table -->"
DOCS_TABLE_FILE = "docs/models.md"


def markdown_table() -> str:
    """Every check as the markdown table in docs/models.md (``python -m fraud_assets.checks``
    rewrites it there)."""
    lines = [
        "| asset | check | severity | blocking | gates promotion | reads | what it verifies |",
        "|---|---|---|---|---|---|---|",
    ]
    for check in CHECKS:
        promotion = (
            "if the policy gates it"
            if check.gates_promotion == POLICY_DECIDES
            else ("yes" if check.gates_promotion else "no")
        )
        reads = ", ".join(f"`{name}`" for name in check.settings) or "-"
        lines.append(
            f"| `{check.asset}` | `{check.name}` | {check.severity} | "
            f"{'yes' if check.blocking else 'no'} | {promotion} | {reads} | "
            f"{check.description} |"
        )
    return "\n".join(lines)


def with_docs_table(document: str) -> str:
    """``document`` with the text between the checks-table markers replaced by the table."""
    pattern = re.compile(re.escape(DOCS_TABLE_START) + r".*?" + re.escape(DOCS_TABLE_END), re.S)
    if not pattern.search(document):
        raise ValueError(f"no {DOCS_TABLE_START!r} ... {DOCS_TABLE_END!r} markers")
    block = f"{DOCS_TABLE_START}\n{markdown_table()}\n{DOCS_TABLE_END}"
    return pattern.sub(lambda _: block, document)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Rewrite the checks table in docs/models.md.")
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1])
    args = parser.parse_args(argv)
    path = args.repo / DOCS_TABLE_FILE
    path.write_text(with_docs_table(path.read_text(encoding="utf-8")), encoding="utf-8")


if __name__ == "__main__":
    main()
