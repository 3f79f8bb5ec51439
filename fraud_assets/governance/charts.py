"""PNG charts for the fairness and drift reports (matplotlib's object API: no pyplot state).

Charts travel as markdown images with a base64 data URI (the Dagster UI renders them in
asset metadata), so they are drawn at a low resolution to stay small.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from fraud_assets.governance._fairness import STATUS_OK

CHART_DPI = 80
_OK_COLOR = "#4C72B0"
_INSUFFICIENT_COLOR = "#BBBBBB"
_LEVEL_COLORS = {"none": "#55A868", "minor": "#DD8452", "major": "#C44E52"}


def fairness_chart(
    groups: pd.DataFrame,
    *,
    disparate_impact_min: float,
    equal_opportunity_max: float,
    confidence_level: float,
) -> bytes:
    """Selection rate and TPR per group of each single attribute, with CIs and the gate lines.

    The selection-rate panel marks ``disparate_impact_min`` x the highest sufficient group's
    rate (the four-fifths floor); the TPR panel marks the highest TPR minus
    ``equal_opportunity_max``. Groups below the minimum size are grey.
    """
    single = groups.loc[~groups["intersection"]]
    slices = list(dict.fromkeys(single["slice"]))
    if not slices:
        raise ValueError("no single-attribute groups to chart")
    fig = Figure(figsize=(9, 2.6 * len(slices)), layout="constrained")
    axes = fig.subplots(len(slices), 2, squeeze=False)
    for row, name in enumerate(slices):
        data = single.loc[single["slice"] == name]
        ok = (data["status"] == STATUS_OK).to_numpy()
        _rate_panel(
            axes[row][0],
            data,
            "selection_rate",
            title=f"{name}: selection rate",
            floor=_floor(data["selection_rate"], ok, lambda top: disparate_impact_min * top),
            floor_label=f"{disparate_impact_min:g} x highest",
        )
        _rate_panel(
            axes[row][1],
            data,
            "true_positive_rate",
            title=f"{name}: true positive rate",
            floor=_floor(data["true_positive_rate"], ok, lambda top: top - equal_opportunity_max),
            floor_label=f"highest - {equal_opportunity_max:g}",
        )
    fig.legend(
        handles=[
            Patch(color=_OK_COLOR, label=f"group ({confidence_level:.0%} CI)"),
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


def _floor(rates: pd.Series, ok: np.ndarray, line: Callable[[float], float]) -> float | None:
    values = rates.to_numpy(dtype=float)[ok]
    values = values[~np.isnan(values)]
    if values.size < 2:
        return None
    return float(line(float(values.max())))


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
