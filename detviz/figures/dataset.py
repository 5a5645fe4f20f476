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
    bins over the data's range (of log10 values with `log_x`, centres and widths back in values).

    Float32 throughout, as torch.histc bins (`_histc_counts`); log10 and powers of 10 are taken in
    float64 and rounded to float32.

    Raises:
        ValueError: a value is not finite (or, with `log_x`, not positive).
    """
    v = as_numpy(values).astype(np.float32).reshape(-1)
    if integer:
        top = int(v.max()) if v.size else 0
        return _HistogramInfo(list(range(top + 1)), np.bincount(v.astype(np.int64), minlength=top + 1).tolist(), None)
    with np.errstate(divide="ignore", invalid="ignore"):  # reported below
        data = np.log10(v.astype(np.float64)).astype(np.float32) if log_x else v
    if not np.isfinite(data).all():
        need = "positive and finite" if log_x else "finite"
        raise ValueError(f"histogram values must be {need}; got {v[~np.isfinite(data)][:3].tolist()}.")
    lo, hi = (float(data.min()), float(data.max())) if data.size else (0.0, 1.0)
    hi = hi if hi > lo else lo + FLAT_RANGE
    counts = _histc_counts(data, bins, lo, hi)
    edges = _linspace_float32(lo, hi, bins + 1)
    centers = (edges[:-1] + edges[1:]) / np.float32(2)
    widths = edges[1:] - edges[:-1]
    if log_x:
        centers, widths = _exp10(centers), _exp10(edges[1:]) - _exp10(edges[:-1])
    return _HistogramInfo(centers.tolist(), counts.astype(np.float32).tolist(), widths.tolist())


def _histc_counts(data: np.ndarray, bins: int, lo: float, hi: float) -> np.ndarray:
    """(bins,) int64 counts of `data` in `bins` equal bins from lo to hi, as torch.histc counts.

    Like torch.histc on float32 data: the range ends are rounded to float32, a value's bin is
    int((x - lo) * bins / (hi - lo)) in float32 arithmetic, the last bin holds hi, values
    outside [lo, hi] are not counted, and a range empty in float32 puts every value in bin 0.
    """
    data = np.asarray(data, dtype=np.float32)
    left, right = np.float32(lo), np.float32(hi)
    inside = data[(data >= left) & (data <= right)]
    if right > left:
        pos = ((inside - left) * np.float32(bins) / (right - left)).astype(np.int64)
        pos[pos == bins] = bins - 1
    else:
        pos = np.zeros(len(inside), dtype=np.int64)
    return np.bincount(pos, minlength=bins).astype(np.int64, copy=False)


def _linspace_float32(lo: float, hi: float, steps: int) -> np.ndarray:
    """(steps,) float32 evenly spaced from lo to hi (both rounded to float32), as torch.linspace
    makes them: the first half lo + step * i, the second half hi - step * (steps - 1 - i), each
    rounded once to float32 (torch's build fuses the multiply-add; emulated in float64, where step * i
    is exact)."""
    start, end = np.float32(lo), np.float32(hi)
    step = np.float64((end - start) / np.float32(max(steps - 1, 1)))
    i = np.arange(steps)
    up = np.float64(start) + step * i
    down = np.float64(end) - step * (steps - 1 - i)
    return np.where(i < steps // 2, up, down).astype(np.float32)


def _exp10(x: np.ndarray) -> np.ndarray:
    """10 ** x of float32 values, taken in float64 and rounded to float32."""
    return np.power(10.0, x.astype(np.float64)).astype(np.float32)


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
