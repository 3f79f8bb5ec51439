"""Every place a check is used agrees with its one declaration in ``fraud_assets.checks``."""

from __future__ import annotations

import ast
import dataclasses
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from dagster import Definitions

from fraud_assets import checks, keys
from fraud_assets.checks import CHECKS, POLICY_DECIDES, CheckDeclaration, promotion_gates
from fraud_assets.governance.gates import (
    MIN_GROUP_SIZE_CHECK,
    POLICY_CHECK,
    DriftGates,
    GateVerdict,
)
from fraud_assets.governance.policy import GATEABLE_FIGURES, FairnessPolicy, pinned_policy
from fraud_assets.ml import registry
from fraud_assets.settings import FraudSettings, Thresholds
from fraud_assets.tasks._runtime import CheckOutcome

REPO = Path(__file__).resolve().parents[1]
TASKS = REPO / "fraud_assets" / "tasks"
TARGETS = ("dev", "prod")


@pytest.fixture(scope="module")
def defs() -> Definitions:
    from fraud_assets.definitions import defs

    return defs


def test_the_loaded_check_specs_are_the_declared_ones(defs: Definitions) -> None:
    graph = defs.resolve_asset_graph()
    loaded = {
        (key.asset_key.to_user_string(), key.name): (
            graph.get(key).blocking,
            graph.get(key).description,
        )
        for key in graph.asset_check_keys
    }
    declared = {(c.asset, c.name): (c.blocking, c.description) for c in CHECKS}
    assert loaded == declared


def test_each_assets_check_specs_keep_the_declared_order(defs: Definitions) -> None:
    for assets_def in defs.resolve_asset_graph().assets_defs:
        for key in assets_def.keys:
            in_spec_order = [s.name for s in assets_def.check_specs if s.asset_key == key]
            assert in_spec_order == checks.names_of(key.to_user_string()), key


# What the pinned policies gate today, written out: the table's derivation must give exactly
# this (a copy of the derivation here could not disagree with it).
MODEL_QUALITY = ["roc_auc_floor", "pr_auc_floor", "no_regression_vs_champion"]
ALWAYS_GATING_FAIRNESS = ["min_group_size", "policy_at_least_pinned"]


def test_promotion_gates_are_the_declared_ones_for_every_pinned_policy() -> None:
    expected = {
        "model_evaluation": MODEL_QUALITY,
        "fairness_report": [
            "false_positive_rate_ratio",
            "equal_opportunity_difference",
            *ALWAYS_GATING_FAIRNESS,
        ],
    }
    for target in TARGETS:
        assert promotion_gates(set(pinned_policy(target).gates)) == expected, target


def test_a_figure_gates_promotion_only_when_the_policy_gates_it() -> None:
    assert promotion_gates({"disparate_impact_ratio"}) == {
        "model_evaluation": MODEL_QUALITY,
        "fairness_report": ["disparate_impact_ratio", *ALWAYS_GATING_FAIRNESS],
    }


def test_every_promotion_gate_blocks_and_fails_with_error_or_by_policy() -> None:
    every_figure = set(GATEABLE_FIGURES)
    for asset, names in checks.promotion_gates(every_figure).items():
        for name in names:
            check = checks.declared(asset, name)
            assert check.blocking, f"{asset}.{name} gates promotion but does not block"
            assert check.severity in ("ERROR", POLICY_DECIDES), f"{asset}.{name}"


def test_the_registry_judges_exactly_the_declared_promotion_gates() -> None:
    for target in TARGETS:
        gated = set(pinned_policy(target).gates)
        expected = promotion_gates(gated)
        every_pass: dict[tuple[str, str], bool | str] = {
            (asset, name): True for asset, names in expected.items() for name in names
        }
        report = registry.judge_promotion(every_pass, gated_figures=gated)
        assert report.passed, report.reason
        assert set(report.verdicts) == {f"{asset}.{name}" for asset, name in every_pass}
        for gate in every_pass:
            missing = registry.judge_promotion(
                {k: v for k, v in every_pass.items() if k != gate}, gated_figures=gated
            )
            assert missing.verdicts[".".join(gate)] == registry.MISSING
            assert not missing.passed
        # An advisory figure failing, and a check that gates nothing failing, block nothing.
        advisory = {
            (keys.FAIRNESS_REPORT, figure): False for figure in set(GATEABLE_FIGURES) - gated
        }
        others = {
            (c.asset, c.name): False for c in CHECKS if c.gates_promotion is False and c.blocking
        }
        assert registry.judge_promotion(
            {**every_pass, **advisory, **others}, gated_figures=gated
        ).passed


def test_the_register_step_judges_with_the_declared_gates() -> None:
    source = (TASKS / "register.py").read_text(encoding="utf-8")
    called = {
        node.func.attr
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
    }
    assert "judge_promotion" in called
    assert "judge_gates" not in called and "promotion_gates" not in called


def test_the_docs_checks_table_is_generated_from_the_declarations() -> None:
    document = (REPO / checks.DOCS_TABLE_FILE).read_text(encoding="utf-8")
    assert checks.with_docs_table(document) == document, (
        f"{checks.DOCS_TABLE_FILE} is stale: run `python -m fraud_assets.checks`"
    )


def _markdown_rows(document: str, header: str) -> list[list[str]]:
    lines = document.splitlines()
    start = lines.index(header) + 2
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip().strip("`") for cell in line.strip("|").split("|")])
    return rows


def test_the_data_contract_table_agrees_with_the_declarations() -> None:
    document = (REPO / "docs" / "data_contract.md").read_text(encoding="utf-8")
    rows = _markdown_rows(document, "| asset | check | blocking | what it verifies |")
    documented = {(asset, name): blocking.startswith("yes") for asset, name, blocking, _ in rows}
    declared = {
        (c.asset, c.name): c.blocking for c in CHECKS if c.asset in (keys.RAW_CLAIMS, "claims")
    }
    assert documented == declared


def test_the_governance_table_agrees_with_the_declarations() -> None:
    document = (REPO / "docs" / "governance.md").read_text(encoding="utf-8")
    rows = _markdown_rows(document, "| check | severity when it fails | fails when |")
    documented = {name: severity for name, severity, _ in rows}
    assert list(documented) == checks.FAIRNESS_CHECKS
    for name, severity in documented.items():
        declared = checks.declared(keys.FAIRNESS_REPORT, name).severity
        if declared == POLICY_DECIDES:
            assert severity.startswith("ERROR if") and "else WARN" in severity, name
        else:
            assert severity == declared, name


def test_the_fairness_and_drift_verdicts_are_the_declared_checks() -> None:
    # fairness_gates judges every gateable figure, then group sizes, then the policy.
    assert [*GATEABLE_FIGURES, MIN_GROUP_SIZE_CHECK, POLICY_CHECK] == checks.FAIRNESS_CHECKS
    assert [
        c.name for c in CHECKS if c.gates_promotion == POLICY_DECIDES
    ] == checks.FAIRNESS_FIGURE_CHECKS
    hints = typing.get_type_hints(DriftGates)
    drift_verdicts = [
        f.name for f in dataclasses.fields(DriftGates) if hints[f.name] is GateVerdict
    ]
    assert drift_verdicts == checks.names_of(keys.PSI_REPORT)


def test_the_fairness_audit_titles_name_declared_checks() -> None:
    from fraud_assets.governance.audit import _CHECK_TITLES

    assert list(_CHECK_TITLES) == checks.FAIRNESS_CHECKS


def _task_outcome_calls() -> list[tuple[str, ast.Call]]:
    calls = []
    for path in sorted(TASKS.glob("*.py")):
        if path.name == "_runtime.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                calls.append((path.name, node))
    return calls


def test_every_task_reports_its_checks_through_their_declarations() -> None:
    """A task builds each outcome with ``CheckOutcome.declared``, which refuses an undeclared
    check and takes the declared severity, never ``CheckOutcome(...)`` directly."""
    direct, declared_calls = [], 0
    for module, call in _task_outcome_calls():
        if isinstance(call.func, ast.Name) and call.func.id == "CheckOutcome":
            direct.append(module)
        if (
            isinstance(call.func, ast.Attribute)
            and call.func.attr == "declared"
            and isinstance(call.func.value, ast.Name)
            and call.func.value.id == "CheckOutcome"
        ):
            declared_calls += 1
            named = call.args[1] if len(call.args) > 1 else None
            # A check named by constant must be declared (others are checked at run time).
            if isinstance(named, ast.Attribute) and named.attr.startswith("CHECK_"):
                assert getattr(checks, named.attr) in {c.name for c in CHECKS}, module
    assert direct == [], f"tasks building CheckOutcome directly: {direct}"
    assert declared_calls >= 9


def test_an_undeclared_or_wrong_severity_outcome_is_refused() -> None:
    with pytest.raises(KeyError, match=r"raw_claims\.no_such_check is not declared"):
        CheckOutcome.declared("raw_claims", "no_such_check", passed=True)
    with pytest.raises(ValueError, match="declared WARN, the verdict says ERROR"):
        CheckOutcome.declared(keys.CLAIMS, checks.CHECK_NULL_RATES, passed=False, severity="ERROR")
    with pytest.raises(ValueError, match="needs the verdict's severity"):
        CheckOutcome.declared(keys.PSI_REPORT, checks.CHECK_SCORE_DRIFT, passed=False)
    outcome = CheckOutcome.declared(keys.CLAIMS, checks.CHECK_NULL_RATES, passed=False)
    assert (outcome.severity, outcome.description) == (
        "WARN",
        checks.declared(keys.CLAIMS, checks.CHECK_NULL_RATES).description,
    )


def _setting_exists(setting: str) -> bool:
    group, _, name = setting.rpartition(".")
    if group == "thresholds":
        return name in Thresholds.model_fields
    if group == "fairness_policy":
        return name in FairnessPolicy.model_fields
    return group == "" and name in FraudSettings.model_fields


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: f"{c.asset}.{c.name}")
def test_every_setting_a_check_reads_exists(check: CheckDeclaration) -> None:
    missing = [s for s in check.settings if not _setting_exists(s)]
    assert not missing, f"{check.asset}.{check.name} reads unknown settings {missing}"


def test_the_table_imports_without_dagster() -> None:
    code = "import sys; sys.modules['dagster'] = None; import fraud_assets.checks"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
