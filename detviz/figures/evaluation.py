"""Evaluation: precision-recall curves, AP per class, the confusion matrix, the error
breakdown, and mAP over the threshold grid."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go
import torch
from torch import Tensor

from detviz.codes import ERROR_TYPES
from detviz.figures.style import PALETTE, chart_layout, class_color, legend, unchecked, unchecked_figure

if TYPE_CHECKING:
    from detviz.evaluate import ClassCurve


def pr_curves_figure(curves: dict[str, ClassCurve], height: int = 380, title: str = "Precision-recall") -> go.Figure:
    """Precision against recall for each named ClassCurve; hover shows the score threshold that
    gives each point (the score of the detection that reaches it). Built `unchecked`: the
    Predictions page rebuilds it on every slider move."""
    traces = []
    for k, (name, curve) in enumerate(curves.items()):
        if curve.recall.numel() == 0 or bool(torch.isnan(curve.recall).all()):
            continue
        recall = np.concatenate([[0.0], curve.recall.double().numpy()])
        precision = np.concatenate([[1.0], curve.precision.double().numpy()])
        scores = np.concatenate([[np.nan], curve.scores.double().numpy()])
        traces.append(unchecked(
            go.Scatter, x=recall, y=precision, mode="lines", name=name, line=dict(color=PALETTE[k % len(PALETTE)], width=2),
            customdata=scores, line_shape="hv",
            hovertemplate=f"{name}<br>recall %{{x:.3f}}, precision %{{y:.3f}}<br>score threshold %{{customdata:.3f}}"
                          "<extra></extra>",
        ))  # fmt: skip
    layout = chart_layout(title, height, legend=legend("side"), xaxis=dict(title=dict(text="recall"), range=[0, 1.01]),
                          yaxis=dict(title=dict(text="precision"), range=[0, 1.02]))  # fmt: skip
    return unchecked_figure(traces, layout)


def _ap_order(ap: Tensor) -> list[int]:
    """Class ids by AP, best first, classes without ground truth (NaN) left out."""
    return [c for c in torch.argsort(-torch.nan_to_num(ap, nan=-1.0)).tolist() if not torch.isnan(ap[c])]


def ap_bar_figure(ap: Tensor, class_names: Sequence[str], title: str = "AP per class") -> go.Figure:
    """A bar per class with its AP (classes without ground truth left out), best first."""
    order = _ap_order(ap)
    fig = go.Figure(go.Bar(
        x=[class_names[c] for c in order], y=[float(ap[c]) for c in order],
        marker_color=[class_color(c) for c in order], hovertemplate="%{x}: AP %{y:.3f}<extra></extra>",
    ))  # fmt: skip
    fig.update_layout(chart_layout(title, 300, yaxis=dict(range=[0, 1], title="AP")))
    return fig


def _row_shares(matrix: Tensor) -> np.ndarray:
    """(R, K) float64 each count divided by its row's total (rows without counts stay 0)."""
    z = matrix.double().numpy()
    return z / np.maximum(z.sum(1, keepdims=True), 1)


def confusion_figure(matrix: Tensor, class_names: Sequence[str]) -> go.Figure:
    """Counts of (true class, predicted class), with a background row and a missed column."""
    rows = [*class_names, "background"]
    cols = [*class_names, "missed"]
    z = matrix.double().numpy()
    fig = go.Figure(go.Heatmap(
        z=_row_shares(matrix), x=cols, y=rows, customdata=z, colorscale="Blues", zmin=0, zmax=1,
        text=z.astype(int), texttemplate="%{text}", colorbar=dict(title="share of row", tickformat=".0%"),
        hovertemplate="true %{y}, predicted %{x}: %{customdata:.0f} (%{z:.1%} of the row)<extra></extra>",
    ))  # fmt: skip
    fig.update_layout(chart_layout("Which classes get mixed up", 120 + 34 * len(rows), xaxis=dict(title="predicted"),
                                   yaxis=dict(title="true", autorange="reversed")))  # fmt: skip
    return fig


def _error_gains(delta_map: dict[str, float]) -> list[float]:
    """The mAP fixing each error type adds, in ERROR_TYPES order: missing or NaN is 0, never below 0."""
    gains = [delta_map.get(t.name, 0.0) for t in ERROR_TYPES]
    return [max(0.0, v) if v == v else 0.0 for v in gains]


def error_breakdown_figure(delta_map: dict[str, float], counts: Tensor) -> go.Figure:
    """mAP each error type would add if fixed (bars), with how many errors of that type (hover).

    counts: (len(ERROR_TYPES),) totals in detviz.codes.ERROR_TYPES order."""
    values = _error_gains(delta_map)
    fig = go.Figure(go.Bar(
        x=values, y=[t.name for t in ERROR_TYPES], orientation="h", customdata=counts.numpy(),
        marker_color=[t.colour for t in ERROR_TYPES],
        hovertemplate="%{y}: %{customdata} errors, fixing them adds %{x:.3f} mAP<extra></extra>",
        text=[f"+{v:.3f} ({int(c)})" for v, c in zip(values, counts.tolist(), strict=True)], textposition="outside",
    ))  # fmt: skip
    fig.update_layout(chart_layout("mAP gained by fixing each kind of error (count in brackets)", 300, right=40,
                                   xaxis=dict(title="mAP added"), yaxis=dict(autorange="reversed")))  # fmt: skip
    return fig


def _best_cell(z: np.ndarray) -> tuple[int, int]:
    """(row, column) of the highest finite value; (0, 0) when there is none."""
    if not np.isfinite(z).any():
        return 0, 0
    row, column = np.unravel_index(np.nanargmax(z), z.shape)
    return int(row), int(column)


def surface_figure(
    values: Tensor, score_thresholds: Sequence[float], nms_ious: Sequence[float], current: tuple[float, float]
) -> go.Figure:
    """mAP over (score threshold, NMS IoU) as a heat map, the current setting marked.

    values: (S, N) for score_thresholds x nms_ious."""
    z = values.double().numpy()
    best = _best_cell(z)
    fig = go.Figure(go.Heatmap(
        z=z, x=[f"{v:g}" for v in nms_ious], y=[f"{v:g}" for v in score_thresholds], colorscale="Viridis",
        texttemplate="%{z:.3f}", colorbar=dict(title="mAP"),
        hovertemplate="score threshold %{y}, NMS IoU %{x}: mAP %{z:.4f}<extra></extra>",
    ))  # fmt: skip
    fig.add_trace(go.Scatter(
        x=[f"{nms_ious[best[1]]:g}"], y=[f"{score_thresholds[best[0]]:g}"], mode="markers", name="best",
        marker=dict(symbol="star", size=16, color="white", line=dict(color="black", width=1)), hoverinfo="skip",
    ))  # fmt: skip
    fig.update_layout(chart_layout(
        f"mAP over thresholds (now: score {current[0]:g}, NMS IoU {current[1]:g}; star: best)", 360,
        xaxis=dict(title="NMS IoU", type="category"), yaxis=dict(title="score threshold", type="category"),
        showlegend=False,
    ))  # fmt: skip
    return fig
