"""Charts of a dataset as a whole: objects per class, histograms of sizes and counts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import plotly.graph_objects as go
import torch
from torch import Tensor

from detviz.figures.style import ACCENT, chart_layout, class_color, legend

LOG_TICKS = (0.1, 0.2, 0.25, 0.5, 1, 2, 4, 5, 10)


def class_count_figure(class_names: Sequence[str], counts: Tensor, difficult: Tensor | None = None) -> go.Figure:
    """Bar chart of objects per class, difficult ones stacked on top."""
    counts = counts.tolist()
    hard = difficult.tolist() if difficult is not None else [0] * len(counts)
    colors = [class_color(i) for i in range(len(counts))]
    fig = go.Figure(
        [
            go.Bar(
                x=list(class_names),
                y=[c - d for c, d in zip(counts, hard, strict=True)],
                name="objects",
                marker_color=colors,
                hovertemplate="%{x}: %{y} objects<extra></extra>",
            ),
            go.Bar(
                x=list(class_names),
                y=hard,
                name="difficult",
                marker_color=colors,
                marker_opacity=0.4,
                marker_pattern_shape="/",
                hovertemplate="%{x}: %{y} difficult<extra></extra>",
            ),
        ]
    )
    fig.update_layout(chart_layout("Objects per class", 340, legend=legend("top right"), barmode="stack"))
    fig.update_yaxes(title="objects")
    return fig


class _HistogramInfo(NamedTuple):
    x: list[float]  # bar centres (integer values with `integer`)
    y: list[float]  # counts
    width: list[float] | None  # bar widths; None: plotly's default (one per integer)


def _get_histogram_info(values: Tensor, bins: int, log_x: bool, integer: bool) -> _HistogramInfo:
    """The bars of `histogram_figure`: one per value 0..max with `integer`, else `bins` equal
    bins over the data's range (of log10 values with `log_x`, centres and widths back in values)."""
    v = values.float()
    if integer:
        top = int(v.max()) if v.numel() else 0
        return _HistogramInfo(list(range(top + 1)), torch.bincount(v.long(), minlength=top + 1).tolist(), None)
    data = torch.log10(v) if log_x else v
    lo, hi = (float(data.min()), float(data.max())) if data.numel() else (0.0, 1.0)
    hi = hi if hi > lo else lo + 1e-6
    counts = torch.histc(data, bins=bins, min=lo, max=hi)
    edges = torch.linspace(lo, hi, bins + 1)
    centers = (edges[:-1] + edges[1:]) / 2
    widths = edges[1:] - edges[:-1]
    if log_x:
        centers, widths = 10**centers, 10 ** edges[1:] - 10 ** edges[:-1]
    return _HistogramInfo(centers.tolist(), counts.tolist(), widths.tolist())


def histogram_figure(
    values: Tensor,
    title: str,
    x_title: str,
    bins: int = 40,
    log_x: bool = False,
    integer: bool = False,
) -> go.Figure:
    """Histogram of a 1-D tensor. `log_x` bins on a log scale (for ratios); `integer` gives one bar per value."""
    info = _get_histogram_info(values, bins, log_x, integer)
    value_format = "" if integer else ":.3g"
    trace = go.Bar(
        x=info.x,
        y=info.y,
        width=info.width,
        marker_color=ACCENT,
        hovertemplate=f"{x_title} %{{x{value_format}}}: %{{y}}<extra></extra>",
    )
    fig = go.Figure(trace)
    fig.update_layout(chart_layout(title, 300, bargap=0.05))
    fig.update_xaxes(title=x_title, type="log" if log_x else "linear")
    if log_x:
        fig.update_xaxes(tickvals=LOG_TICKS, ticktext=[f"{t:g}" for t in LOG_TICKS])
    fig.update_yaxes(title="count")
    return fig
