"""The fairness audit report: one self-contained HTML file a reviewer can archive or email.

Charts are embedded as base64 PNG and every table is inline, so the file needs nothing else
to open: no server, no MLflow, no network.
"""

from __future__ import annotations

import html
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from fraud_assets.governance._fairness import FIGURES, GROUP_METRICS, FairnessReport
from fraud_assets.governance.charts import png_data_uri
from fraud_assets.governance.gates import FairnessGates, GateVerdict

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; font-size: 0.85rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: right; }
th { background: #f3f3f3; }
td:first-child, th:first-child { text-align: left; }
.pass { color: #1b7f3b; font-weight: 600; }
.fail { color: #b3261e; font-weight: 600; }
img { max-width: 100%; }
dl { display: grid; grid-template-columns: max-content auto; gap: 0.2rem 1rem; }
dt { font-weight: 600; }
"""


@dataclass(frozen=True)
class AuditContext:
    """What the audit is about: the model, the data version and when it was produced."""

    model: Mapping[str, Any]
    data_version: Mapping[str, Any]
    thresholds: Mapping[str, Any]
    generated_at: datetime
    pipeline_run_id: str


def render_fairness_audit(
    report: FairnessReport,
    gates: FairnessGates,
    *,
    chart_png: bytes,
    context: AuditContext,
) -> str:
    """The audit as a complete HTML document (every value escaped)."""
    verdicts = [
        ("Disparate impact", gates.disparate_impact),
        ("Equal opportunity", gates.equal_opportunity),
        ("Minimum group size", gates.min_group_size),
    ]
    overall = all(v.passed for _, v in verdicts)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Fairness audit {_e(context.generated_at.isoformat())}</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>Fairness audit: claims fraud model</h1>",
        f'<p>Overall verdict: <span class="{_cls(overall)}">'
        f"{'PASS' if overall else 'FAIL'}</span></p>",
        "<h2>Provenance</h2>",
        _definition_list(
            {
                "Generated at": context.generated_at.isoformat(),
                "Pipeline run": context.pipeline_run_id,
                **{f"Model {k}": v for k, v in context.model.items()},
                **{f"Data {k}": v for k, v in context.data_version.items()},
            }
        ),
        "<h2>Verdicts</h2>",
        _verdict_table(verdicts),
        "<h2>Thresholds</h2>",
        _definition_list(context.thresholds),
        "<h2>Selection rate and true positive rate per group</h2>",
        f'<img alt="fairness chart" src="{png_data_uri(chart_png)}">',
        "<h2>Cross-group figures</h2>",
        "<p>Single attributes are gated; intersections are reported only. Intervals are "
        f"simultaneous {_e(report.parameters.get('confidence_level'))} bootstrap intervals "
        f"over {_e(report.parameters.get('bootstrap_samples'))} resamples.</p>",
        _table(_figures_view(report.figures)),
        "<h2>Groups</h2>",
        _table(_groups_view(report.groups)),
        "</body></html>",
    ]
    return "\n".join(parts)


def write_fairness_audit(document: str, reports_dir: Path, *, generated_at: datetime) -> Path:
    """Write ``fairness_audit_<UTC timestamp>.html`` atomically and return its path."""
    reports_dir.mkdir(parents=True, exist_ok=True)
    stamp = generated_at.strftime("%Y%m%dT%H%M%SZ")
    target = reports_dir / f"fairness_audit_{stamp}.html"
    handle, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", dir=reports_dir)
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        out.write(document)
    Path(tmp_name).replace(target)
    return target


def _figures_view(figures: pd.DataFrame) -> pd.DataFrame:
    view = pd.DataFrame({"slice": figures["slice"], "gated": ~figures["intersection"]})
    view["sufficient groups"] = [
        f"{s} of {g}" for s, g in zip(figures["sufficient_groups"], figures["groups"], strict=True)
    ]
    for figure in FIGURES:
        view[figure.replace("_", " ")] = [
            _with_ci(p, lo, hi)
            for p, lo, hi in zip(
                figures[figure],
                figures[f"{figure}_ci_low"],
                figures[f"{figure}_ci_high"],
                strict=True,
            )
        ]
    return view


def _groups_view(groups: pd.DataFrame) -> pd.DataFrame:
    view = groups[["slice", "group", "size", "positives", "flagged", "status"]].copy()
    for metric in GROUP_METRICS:
        view[metric.replace("_", " ")] = [
            _with_ci(p, lo, hi)
            for p, lo, hi in zip(
                groups[metric], groups[f"{metric}_ci_low"], groups[f"{metric}_ci_high"], strict=True
            )
        ]
    return view


def _with_ci(point: float, low: float, high: float) -> str:
    if pd.isna(point):
        return "undefined"
    return f"{point:.3f} [{low:.3f}, {high:.3f}]"


def _verdict_table(verdicts: list[tuple[str, GateVerdict]]) -> str:
    rows = "".join(
        f'<tr><td>{_e(name)}</td><td class="{_cls(v.passed)}">{"pass" if v.passed else "FAIL"}'
        f'</td><td style="text-align:left">{_e(v.description)}</td></tr>'
        for name, v in verdicts
    )
    return f"<table><tr><th>gate</th><th>verdict</th><th>why</th></tr>{rows}</table>"


def _definition_list(items: Mapping[str, Any]) -> str:
    body = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in items.items())
    return f"<dl>{body}</dl>"


def _table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, escape=True, border=0)


def _cls(passed: bool) -> str:
    return "pass" if passed else "fail"


def _e(value: object) -> str:
    return html.escape(str(value))
