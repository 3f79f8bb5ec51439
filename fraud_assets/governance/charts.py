"""PNG charts for the fairness and drift reports (matplotlib's object API: no pyplot state).

Charts travel as markdown images with a base64 data URI (the Dagster UI renders them in
asset metadata), so they are drawn at a low resolution to stay small.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from fraud_assets.governance._fairness import FIGURE_RATES, STATUS_OK
from fraud_assets.governance.policy import GATEABLE_FIGURES, FairnessPolicy

CHART_DPI = 80
_OK_COLOR = "#4C72B0"
_INSUFFICIENT_COLOR = "#BBBBBB"
_LEVEL_COLORS = {"none": "#55A868", "minor": "#DD8452", "major": "#C44E52"}


def fairness_chart(groups: pd.DataFrame, *, policy: FairnessPolicy) -> bytes:
    """Per single attribute, the rate behind each gateable figure, with CIs and the gate line.

    A ratio figure's panel marks threshold x the highest sufficient group's rate (e.g. the
    four-fifths floor); a difference figure's marks the highest rate minus the threshold.
    Panel titles say whether the policy gates the figure. Groups below the minimum size are grey.
    """
    single = groups.loc[~groups["intersection"]]
    slices = list(dict.fromkeys(single["slice"]))
    if not slices:
        raise ValueError("no single-attribute groups to chart")
    panels = [
        (figure, rule, FIGURE_RATES[figure][0], policy.threshold(figure))
        for figure, rule in GATEABLE_FIGURES.items()
    ]
    fig = Figure(figsize=(4.2 * len(panels), 2.6 * len(slices)), layout="constrained")
    axes = fig.subplots(len(slices), len(panels), squeeze=False)
    for row, name in enumerate(slices):
        data = single.loc[single["slice"] == name]
        ok = (data["status"] == STATUS_OK).to_numpy()
        for column, (figure, rule, rate, threshold) in enumerate(panels):
            role = "gated" if figure in policy.gates else "reported"
            floor: float | None = None
            label = ""
            if threshold is not None:
                top = _highest(data[rate], ok)
                if top is not None:
                    floor = threshold * top if rule.fails_below else top - threshold
                label = (
                    f"{threshold:g} x highest" if rule.fails_below else f"highest - {threshold:g}"
                )
            _rate_panel(
                axes[row][column],
                data,
                rate,
                title=f"{name}: {rate.replace('_', ' ')} ({role})",
                floor=floor,
                floor_label=label,
            )
    fig.legend(
        handles=[
            Patch(color=_OK_COLOR, label=f"group ({policy.confidence_level:.0%} CI)"),
            Patch(color=_INSUFFICIENT_COLOR, label="insufficient data"),
            Line2D([], [], color="#C44E52", linestyle="--", label="gate line"),
        ],
        loc="outside lower center",
        ncols=3,
    )
    return figure_png(fig)


def psi_chart(report: pd.DataFrame, *, warn: float, error: float) -> bytes:
    """PSI per feature (and the score) as horizontal bars, with the minor and major lines."""
    if report.empty:
        raise ValueError("no PSI rows to chart")
    data = report.sort_values("psi")
    fig = Figure(figsize=(8, 0.32 * len(data) + 1.6), layout="constrained")
    ax = fig.subplots()
    colors = [_LEVEL_COLORS[level] for level in data["drift_level"]]
    ax.barh(data["feature"], data["psi"], color=colors)
    ax.axvline(warn, color=_LEVEL_COLORS["minor"], linestyle="--", label=f"minor ({warn:g})")
    ax.axvline(error, color=_LEVEL_COLORS["major"], linestyle="--", label=f"major ({error:g})")
    ax.set_xlabel("population stability index")
    ax.set_xlim(0, max(float(data["psi"].max()), error) * 1.1)
    ax.legend(loc="lower right")
    ax.set_title("Drift against the champion's training data")
    return figure_png(fig)


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def markdown_image(alt: str, png: bytes) -> str:
    """The PNG as a markdown image, the pattern Dagster documents for plots in metadata."""
    return f"![{alt}]({png_data_uri(png)})"


def _highest(rates: pd.Series, ok: np.ndarray) -> float | None:
    """The highest rate among sufficient groups, when at least two have one."""
    values = rates.to_numpy(dtype=float)[ok]
    values = values[~np.isnan(values)]
    if values.size < 2:
        return None
    return float(values.max())


def _rate_panel(
    ax: Axes, data: pd.DataFrame, metric: str, *, title: str, floor: float | None, floor_label: str
) -> None:
    x = np.arange(len(data))
    values = data[metric].to_numpy(dtype=float)
    low = data[f"{metric}_ci_low"].to_numpy(dtype=float)
    high = data[f"{metric}_ci_high"].to_numpy(dtype=float)
    colors = [_OK_COLOR if s == STATUS_OK else _INSUFFICIENT_COLOR for s in data["status"]]
    heights = np.nan_to_num(values)
    ax.bar(x, heights, color=colors)
    error = np.vstack([np.clip(values - low, 0, None), np.clip(high - values, 0, None)])
    ax.errorbar(x, heights, yerr=np.nan_to_num(error), fmt="none", ecolor="black", capsize=3)
    if floor is not None:
        ax.axhline(floor, color="#C44E52", linestyle="--", label=floor_label)
        ax.legend(loc="lower right", fontsize="small")
    ax.set_xticks(x, [str(g) for g in data["group"]], rotation=20, ha="right")
    ax.set_ylim(0, max(1e-3, float(np.nanmax(np.append(high, values)))) * 1.15)
    ax.set_title(title)


def figure_png(fig: Figure, *, dpi: int = CHART_DPI) -> bytes:
    """The figure as a palette PNG.

    Charts ride along in every materialization's metadata; flat-colour charts lose nothing
    visible in a 128-colour palette, which makes the file about three times smaller.
    """
    from PIL import Image

    rendered = io.BytesIO()
    fig.savefig(rendered, format="png", dpi=dpi)
    rendered.seek(0)
    with Image.open(rendered) as image:
        palette = image.convert("RGB").quantize(colors=128)
    buffer = io.BytesIO()
    palette.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
