"""The fairness audit report: a self-contained HTML file and a PDF a reviewer can archive.

In the HTML, charts are embedded as base64 PNG and every table is inline, so the file needs
nothing else to open: no server, no MLflow, no network. The PDF carries the same verdicts,
provenance and tables, drawn with matplotlib's PDF backend (no system libraries needed),
with real text a reader can search and copy.
"""

from __future__ import annotations

import html
import io
import os
import tempfile
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import matplotlib as mpl
import pandas as pd
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure
from matplotlib.image import imread

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
    """What the audit is about: the model, the data version and when it was produced.

    ``overall`` replaces the verdict derived from the gates (the champion audit's
    "insufficient labels"); ``evidence`` is what the figures were computed on (window,
    counts, label coverage); ``note`` says in one sentence why the verdict is what it is.
    """

    model: Mapping[str, Any]
    data_version: Mapping[str, Any]
    thresholds: Mapping[str, Any]
    generated_at: datetime
    pipeline_run_id: str
    title: str = "Fairness audit: claims fraud model"
    overall: str | None = None
    evidence: Mapping[str, Any] = field(default_factory=dict)
    note: str | None = None


def render_fairness_audit(
    report: FairnessReport | None,
    gates: FairnessGates | None,
    *,
    chart_png: bytes | None,
    context: AuditContext,
) -> str:
    """The audit as a complete HTML document (every value escaped).

    Without a report (too little data to compute one) the verdict, provenance, evidence and
    policy are still written, and the document says the figures were not computed.
    """
    verdicts = _named_verdicts(gates) if gates is not None else []
    overall, passed = _overall(gates, context)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Fairness audit {_e(context.generated_at.isoformat())}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{_e(context.title)}</h1>",
        f'<p>Overall verdict: <span class="{_cls(passed)}">{_e(overall)}</span></p>',
        *([f"<p>{_e(context.note)}</p>"] if context.note else []),
        *(
            ["<h2>Decisions judged</h2>", _definition_list(context.evidence)]
            if context.evidence
            else []
        ),
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
        _verdict_table(verdicts) if verdicts else f"<p>{_e(_NOT_COMPUTED)}</p>",
        "<h2>Policy and thresholds</h2>",
        _definition_list(context.thresholds),
    ]
    if chart_png is not None:
        parts += [
            "<h2>Selection rate and true positive rate per group</h2>",
            f'<img alt="fairness chart" src="{png_data_uri(chart_png)}">',
        ]
    if report is not None:
        parts += [
            "<h2>Cross-group figures</h2>",
            f"<p>{_e(_interval_note(report))}</p>",
            _table(_figures_view(report.figures)),
            "<h2>Groups</h2>",
            _table(_groups_view(report.groups)),
        ]
    parts.append("</body></html>")
    return "\n".join(parts)


_NOT_COMPUTED = "No fairness figures were computed: too few labelled decisions to judge."


def _overall(gates: FairnessGates | None, context: AuditContext) -> tuple[str, bool]:
    """The overall verdict as shown, and whether it is a pass."""
    if context.overall is not None:
        return context.overall.upper(), context.overall.lower() == "pass"
    if gates is None:
        raise ValueError("an audit without gates needs an overall verdict in its context")
    passed = not gates.blocking_failures
    return ("PASS" if passed else "FAIL"), passed


AUDIT_PREFIX = "fairness_audit"


def write_fairness_audit(
    document: str, reports_dir: Path, *, generated_at: datetime, prefix: str = AUDIT_PREFIX
) -> Path:
    """Write ``<prefix>_<UTC timestamp>.html`` atomically and return its path."""
    return _write(document.encode("utf-8"), reports_dir, generated_at, "html", prefix)


def write_fairness_audit_pdf(
    pdf: bytes, reports_dir: Path, *, generated_at: datetime, prefix: str = AUDIT_PREFIX
) -> Path:
    """Write ``<prefix>_<UTC timestamp>.pdf`` atomically and return its path."""
    return _write(pdf, reports_dir, generated_at, "pdf", prefix)


# A4 in inches; a table page holds this many rows.
_PORTRAIT = (8.27, 11.69)
_LANDSCAPE = (11.69, 8.27)
_ROWS_PER_PAGE = 28


def render_fairness_audit_pdf(
    report: FairnessReport | None,
    gates: FairnessGates | None,
    *,
    chart_png: bytes | None,
    context: AuditContext,
) -> bytes:
    """The audit as a PDF: verdicts and provenance, the chart, then every table."""
    verdicts = _named_verdicts(gates) if gates is not None else []
    overall = _overall(gates, context)
    buffer = io.BytesIO()
    # Type 42 (TrueType) fonts keep the text extractable; the default Type 3 does not.
    with mpl.rc_context({"pdf.fonttype": 42}), PdfPages(buffer, metadata=_pdf_info(context)) as pdf:
        for page in _summary_pages(verdicts, overall, context):
            pdf.savefig(page)
        if chart_png is not None:
            pdf.savefig(_chart_page(chart_png))
        if report is not None:
            for title, frame in (
                (f"Cross-group figures. {_interval_note(report)}", _figures_view(report.figures)),
                (
                    "Selection rate, TPR and FPR per group, with intervals",
                    _groups_view(report.groups),
                ),
            ):
                for page in _table_pages(title, frame):
                    pdf.savefig(page)
    return buffer.getvalue()


def _named_verdicts(gates: FairnessGates) -> list[tuple[str, GateVerdict]]:
    """Every fairness check, named for a reader, gated figures first."""
    return [
        (_CHECK_TITLES.get(name, name), verdict)
        for name, verdict in sorted(
            gates.verdicts.items(), key=lambda item: item[1].severity != "ERROR"
        )
    ]


_CHECK_TITLES = {
    "false_positive_rate_ratio": "False positive rate ratio",
    "equal_opportunity_difference": "Equal opportunity",
    "disparate_impact_ratio": "Disparate impact",
    "min_group_size": "Minimum group size",
    "policy_at_least_pinned": "Policy at least the pinned one",
}


def _interval_note(report: FairnessReport) -> str:
    level = report.parameters.get("confidence_level")
    return (
        "Single attributes are judged; intersections are reported only. Cross-group intervals "
        f"are simultaneous {level} intervals ({report.parameters.get('interval')}: MOVER-Wilson "
        "per pair of groups, Bonferroni over the pairs); group intervals are Wilson."
    )


def _pdf_info(context: AuditContext) -> dict[str, Any]:
    return {
        "Title": f"{context.title} {context.generated_at.isoformat()}",
        "Subject": f"Claims fraud model {context.model.get('name', '')}",
        "Creator": "fraud_assets",
    }


def _summary_pages(
    verdicts: list[tuple[str, GateVerdict]], overall: tuple[str, bool], context: AuditContext
) -> list[Figure]:
    writer = _TextWriter()
    writer.line(context.title, size=16, weight="bold")
    writer.line(
        f"Overall verdict: {overall[0]}",
        size=13,
        weight="bold",
        color=_verdict_color(overall[1]),
    )
    if context.note:
        writer.wrapped(context.note)
    if context.evidence:
        writer.gap()
        writer.line("Decisions judged", size=12, weight="bold")
        for key, value in context.evidence.items():
            writer.wrapped(f"{key}: {value}")
    writer.gap()
    writer.line("Verdict per gate", size=12, weight="bold")
    if not verdicts:
        writer.wrapped(_NOT_COMPUTED)
    for name, verdict in verdicts:
        writer.line(
            f"{name}: {_verdict_word(verdict)}",
            weight="bold",
            color=_verdict_color(verdict.passed),
        )
        writer.wrapped(verdict.description, indent=1)
    writer.gap()
    writer.line("Provenance", size=12, weight="bold")
    provenance = {
        "Generated at": context.generated_at.isoformat(),
        "Pipeline run": context.pipeline_run_id,
        **{f"Model {k}": v for k, v in context.model.items()},
        **{f"Data {k}": v for k, v in context.data_version.items()},
    }
    for key, value in provenance.items():
        writer.wrapped(f"{key}: {value}")
    writer.gap()
    writer.line("Policy and thresholds", size=12, weight="bold")
    for key, value in context.thresholds.items():
        writer.wrapped(f"{key}: {value}")
    return writer.pages


def _chart_page(chart_png: bytes) -> Figure:
    fig = Figure(figsize=_LANDSCAPE)
    fig.suptitle("Selection rate and true positive rate per group (bars: interval)")
    ax = fig.add_axes((0.03, 0.03, 0.94, 0.88))
    ax.imshow(imread(io.BytesIO(chart_png), format="png"))
    ax.set_axis_off()
    return fig


def _table_pages(title: str, frame: pd.DataFrame) -> list[Figure]:
    pages = []
    chunks = range(0, max(len(frame), 1), _ROWS_PER_PAGE)
    for number, start in enumerate(chunks, start=1):
        fig = Figure(figsize=_LANDSCAPE)
        suffix = f" (page {number} of {len(chunks)})" if len(chunks) > 1 else ""
        fig.suptitle(textwrap.fill(title + suffix, 110), fontsize=11)
        ax = fig.add_axes((0.02, 0.02, 0.96, 0.88))
        ax.set_axis_off()
        chunk = frame.iloc[start : start + _ROWS_PER_PAGE].astype(str)
        if chunk.empty:
            ax.text(0, 1, "no rows", va="top")
        else:
            table = ax.table(
                cellText=chunk.to_numpy().tolist(),
                colLabels=list(chunk.columns),
                loc="upper center",
                cellLoc="left",
            )
            table.auto_set_font_size(False)
            table.set_fontsize(7)
            table.auto_set_column_width(list(range(len(chunk.columns))))
        pages.append(fig)
    return pages


class _TextWriter:
    """Lines of text down portrait pages, top to bottom, in figure coordinates; a line that
    would fall below the bottom margin starts a new page."""

    def __init__(self, *, top: float = 0.95, bottom: float = 0.04, left: float = 0.08) -> None:
        self.pages: list[Figure] = [Figure(figsize=_PORTRAIT)]
        self.top = top
        self.bottom = bottom
        self.y = top
        self.left = left

    def line(self, text: str, *, size: float = 9, indent: int = 0, **style: Any) -> None:
        step = 0.0022 * size + 0.008
        if self.y - step < self.bottom:
            self.pages.append(Figure(figsize=_PORTRAIT))
            self.y = self.top
        self.pages[-1].text(
            self.left + 0.03 * indent, self.y, text, fontsize=size, va="top", **style
        )
        self.y -= step

    def wrapped(self, text: str, *, indent: int = 0) -> None:
        for part in textwrap.wrap(str(text), width=100 - 4 * indent) or [""]:
            self.line(part, indent=indent)

    def gap(self) -> None:
        self.y -= 0.012


def _verdict_word(verdict: GateVerdict) -> str:
    if verdict.passed:
        return "pass"
    return "FAIL" if verdict.severity == "ERROR" else "advisory FAIL (not gated)"


def _verdict_color(passed: bool) -> str:
    return "#1b7f3b" if passed else "#b3261e"


def _write(
    data: bytes, reports_dir: Path, generated_at: datetime, suffix: str, prefix: str
) -> Path:
    reports_dir.mkdir(parents=True, exist_ok=True)
    stamp = generated_at.strftime("%Y%m%dT%H%M%SZ")
    target = reports_dir / f"{prefix}_{stamp}.{suffix}"
    handle, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", dir=reports_dir)
    with os.fdopen(handle, "wb") as out:
        out.write(data)
    # mkstemp creates 0600; a report is meant to be read by others (reviewers, CI uploads).
    os.chmod(tmp_name, 0o644)
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
        f'<tr><td>{_e(name)}</td><td class="{_cls(v.passed)}">{_e(_verdict_word(v))}'
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
