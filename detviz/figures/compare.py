"""Two models compared: AP per class side by side (grouped bars), and what fixing each kind of
error would add to mAP, B minus A.

The numbers come from `detviz.evaluate.compare` (an APComparison, an ErrorDifference); the
figures only choose what to draw and in which order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

import plotly.graph_objects as go
import torch

from detviz.codes import ERROR_TYPES
from detviz.figures.style import ACCENT, chart_layout, legend

if TYPE_CHECKING:
    from detviz.evaluate.compare import APComparison, ErrorDifference

MODEL_COLORS = (ACCENT, "#dd6b20")  # model A, model B: the same two colours on every comparison figure


class _APCompareInfo(NamedTuple):
    names: list[str]  # class names drawn, best first by the better of the two APs
    ap_a: list[float]
    ap_b: list[float]


def _get_ap_compare_info(comparison: APComparison, class_names: Sequence[str]) -> _APCompareInfo:
    """The classes with ground truth, ordered by the higher of their two APs (best first)."""
    best = torch.fmax(comparison.ap_a, comparison.ap_b)
    order = [k for k in torch.argsort(-torch.nan_to_num(best, nan=-1.0), stable=True).tolist()
             if comparison.num_gt[k] > 0]  # fmt: skip
    return _APCompareInfo(
        names=[class_names[int(comparison.classes[k])] for k in order],
        ap_a=[float(comparison.ap_a[k]) for k in order],
        ap_b=[float(comparison.ap_b[k]) for k in order],
    )


def ap_compare_figure(
    comparison: APComparison, class_names: Sequence[str], model_names: tuple[str, str], title: str = "AP per class"
) -> go.Figure:
    """Grouped bars: for each class with ground truth, model A's AP next to model B's.

    model_names: how the legend names A and B (e.g. their checkpoint files)."""
    info = _get_ap_compare_info(comparison, class_names)
    fig = go.Figure()
    for side, (label, values) in enumerate(zip(model_names, (info.ap_a, info.ap_b), strict=True)):
        tag = "AB"[side]
        fig.add_trace(go.Bar(
            x=info.names, y=values, name=f"{tag}: {label}", marker_color=MODEL_COLORS[side],
            hovertemplate=f"{tag} ({label})<br>%{{x}}: AP %{{y:.3f}}<extra></extra>",
        ))  # fmt: skip
    fig.update_layout(chart_layout(title, 320, barmode="group", legend=legend("top right"),
                                   yaxis=dict(range=[0, 1], title="AP")))  # fmt: skip
    return fig


def _signed(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:+.3f}"


def _padded_range(values: list[float], pad: float = 0.3) -> list[float]:
    """An axis range holding 0 and every value, with room on both sides for the bars' text."""
    low, high = min([0.0, *values]), max([0.0, *values])
    span = (high - low) or 0.01
    return [low - pad * span if low < 0 else -0.05 * span, high + pad * span if high > 0 else 0.05 * span]


def error_difference_figure(difference: ErrorDifference, model_names: tuple[str, str]) -> go.Figure:
    """One bar per error type: the mAP fixing it would add for B minus that for A (a bar to the
    right: B loses more to this kind of error); the hover gives both counts and both gains.

    NaN differences (no ground truth) are drawn as 0 and written "–"."""
    gains = [0.0 if math.isnan(v) else v for v in difference.gain_difference.tolist()]
    a_name, b_name = model_names
    fig = go.Figure(go.Bar(
        x=gains, y=difference.names, orientation="h", marker_color=[t.colour for t in ERROR_TYPES],
        customdata=torch.stack([difference.counts_a.double(), difference.counts_b.double(), difference.gain_a,
                                difference.gain_b], 1).numpy(),
        text=[_signed(v) for v in difference.gain_difference.tolist()], textposition="outside", cliponaxis=False,
        hovertemplate="%{y}: fixing them adds %{x:+.3f} mAP more for B than for A<br>"
                      f"A ({a_name}): %{{customdata[0]}} errors, %{{customdata[2]:+.3f}} mAP if fixed<br>"
                      f"B ({b_name}): %{{customdata[1]}} errors, %{{customdata[3]:+.3f}} mAP if fixed<extra></extra>",
    ))  # fmt: skip
    fig.update_layout(chart_layout("mAP gained by fixing each kind of error: B minus A", 300,
                                   xaxis=dict(title="B minus A, mAP added", zeroline=True, range=_padded_range(gains)),
                                   yaxis=dict(autorange="reversed")))  # fmt: skip
    return fig
