"""Charts of a dataset as a whole: objects per class, histograms of sizes and counts.

The numbers come from numpy (no torch import: these draw the app's first page); the values may
be numpy arrays, sequences or torch tensors.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import plotly.graph_objects as go

from detviz.data.records import as_numpy
from detviz.figures.style import ACCENT, chart_layout, class_color, legend

if TYPE_CHECKING:
    from torch import Tensor

    Values = np.ndarray | Tensor | Sequence[float]

LOG_TICKS = (0.1, 0.2, 0.25, 0.5, 1, 2, 4, 5, 10)
FLAT_RANGE = 1e-6  # the width given to the range of data whose values are all equal


def class_count_figure(class_names: Sequence[str], counts: Values, difficult: Values | None = None) -> go.Figure:
    """Bar chart of objects per class, difficult ones stacked on top.

    Args:
        counts, difficult: (C,) integer objects and difficult objects per class.
    """
    counts = as_numpy(counts).tolist()
    hard = as_numpy(difficult).tolist() if difficult is not None else [0] * len(counts)
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


def _get_histogram_info(values: Values, bins: int, log_x: bool, integer: bool) -> _HistogramInfo:
    """The bars of `histogram_figure`: one per value 0..max with `integer`, else `bins` equal
    bins over the data's range (np.histogram: each bin holds its left edge, the last one both;
    of log10 values with `log_x`, centres and widths back in values).

    Raises:
        ValueError: a value is not finite (or, with `log_x`, not positive).
    """
    v = as_numpy(values).astype(np.float64).reshape(-1)
    if integer:
        top = int(v.max()) if v.size else 0
        return _HistogramInfo(list(range(top + 1)), np.bincount(v.astype(np.int64), minlength=top + 1).tolist(), None)
    with np.errstate(divide="ignore", invalid="ignore"):  # reported below
        data = np.log10(v) if log_x else v
    if not np.isfinite(data).all():
        need = "positive and finite" if log_x else "finite"
        raise ValueError(f"histogram values must be {need}; got {v[~np.isfinite(data)][:3].tolist()}.")
    lo, hi = (float(data.min()), float(data.max())) if data.size else (0.0, 1.0)
    counts, edges = np.histogram(data, bins=bins, range=(lo, hi if hi > lo else lo + FLAT_RANGE))
    if log_x:
        edges = 10.0**edges
        centers = np.sqrt(edges[:-1] * edges[1:])  # the middle of the bin on the log axis
    else:
        centers = (edges[:-1] + edges[1:]) / 2
    return _HistogramInfo(centers.tolist(), counts.tolist(), (edges[1:] - edges[:-1]).tolist())


def histogram_figure(
    values: Values,
    title: str,
    x_title: str,
    bins: int = 40,
    log_x: bool = False,
    integer: bool = False,
) -> go.Figure:
    """Histogram of 1-D values (M,). `log_x` bins on a log scale (for ratios); `integer` gives one bar per value."""
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
