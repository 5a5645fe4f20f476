"""Losses: BCE and focal loss against p_t, where on the image a loss comes from, what share
each part of a loss takes, and how sure the model is about each anchor."""

from __future__ import annotations

from typing import TYPE_CHECKING

import plotly.graph_objects as go
import torch
from PIL import Image
from torch import Tensor

from detviz.figures.image import ImageEncoder, image_data_uri, image_figure
from detviz.figures.style import (
    BCE_COLOR,
    FOCAL_COLOR,
    PALETTE,
    POSITIVE_COLOR,
    chart_layout,
    legend,
)

if TYPE_CHECKING:
    from detviz.anchors import Anchors

PART_COLORS = {"box": "#718096", "positives": POSITIVE_COLOR, "hard negatives": "#dd6b20", "easy negatives": BCE_COLOR}


def loss_curves_figure(
    curves: dict[str, tuple[Tensor, Tensor]], factors: dict[str, tuple[Tensor, Tensor]]
) -> go.Figure:
    """Loss against p_t (left, log y) and focal loss's down-weighting factor (right).

    Args:
        curves: name -> (p_t, loss), e.g. "BCE", "focal gamma=2". The first two are drawn thick.
        factors: name -> (p_t, factor), e.g. "(1 - p_t)^2". The first is drawn thick.

    Two side-by-side axes laid out by hand, in one construction (make_subplots and per-trace
    row/col additions cost tens of ms, and this figure follows a slider).
    """
    traces = []
    for k, (name, (p, v)) in enumerate(curves.items()):
        color = BCE_COLOR if name.lower().startswith("bce") else PALETTE[(k + 1) % len(PALETTE)]
        traces.append(
            go.Scatter(x=p.double().numpy(), y=v.double().numpy(), name=name, mode="lines",
                       line=dict(color=color, width=3.5 if k < 2 else 2, dash="solid" if k < 2 else "dot"),
                       hovertemplate=f"{name}<br>p_t %{{x:.3f}}: loss %{{y:.4g}}<extra></extra>")
        )  # fmt: skip
    for k, (name, (p, v)) in enumerate(factors.items()):
        color = FOCAL_COLOR if k == 0 else PALETTE[(k + 2) % len(PALETTE)]
        traces.append(
            go.Scatter(x=p.double().numpy(), y=v.double().numpy(), name=name, mode="lines", showlegend=False,
                       xaxis="x2", yaxis="y2", line=dict(color=color, width=3 if k == 0 else 1.5,
                                                         dash="solid" if k == 0 else "dot"),
                       hovertemplate=f"{name}<br>p_t %{{x:.3f}}: weight %{{y:.4g}}<extra></extra>")
        )  # fmt: skip
    p_t_axis = dict(title="p_t (probability of the right answer)", range=[0, 1])
    layout = chart_layout(
        height=380,
        legend=legend("below", y=-0.22, yanchor=None),
        xaxis=dict(domain=[0, 0.46], **p_t_axis),
        xaxis2=dict(domain=[0.54, 1], anchor="y2", **p_t_axis),
        yaxis=dict(type="log", title="loss", range=[-4, 1], dtick=1),
        yaxis2=dict(title="weight", rangemode="tozero", anchor="x2"),
        annotations=[
            dict(text=text, x=x, y=1.0, xref="paper", yref="paper", xanchor="center", yanchor="bottom",
                 showarrow=False, font=dict(size=14))
            for text, x in (("loss of one class element", 0.23), ("weight focal loss puts on it", 0.77))
        ],
    )  # fmt: skip
    return go.Figure(traces, layout=layout)


def cell_loss_map(anchors: Anchors, values: Tensor, level: int) -> Tensor:
    """(g, g) the sum of `values` (A,) over the shapes of each cell of one level (row-major)."""
    g = anchors.grids[level]
    sel = anchors.level == level
    flat = anchors.row[sel] * g + anchors.col[sel]
    return torch.zeros(g * g, dtype=torch.float64).index_add_(0, flat, values[sel].double()).reshape(g, g)


def loss_map_figure(
    image: Image.Image,
    anchors: Anchors,
    share: Tensor,
    level: int,
    title: str,
    height: int = 420,
    *,
    encode: ImageEncoder = image_data_uri,
) -> go.Figure:
    """The image under a heat map of where a loss comes from on one level.

    Args:
        share: (A,) each anchor's share of the loss (sums to 1 over all anchors).
        level: the level drawn: each cell shows the summed share of its anchors.
        encode: the image -> data URI function (see detviz.figures.image).
    """
    w, h = image.size
    g = anchors.grids[level]
    cells = cell_loss_map(anchors, share, level) * 100
    fig = image_figure(image, title=title, height=height, encode=encode)
    fig.add_trace(
        go.Heatmap(
            z=cells.tolist(),
            x=[(c + 0.5) * w / g for c in range(g)],
            y=[(r + 0.5) * h / g for r in range(g)],
            text=[[f"cell ({r}, {c})" for c in range(g)] for r in range(g)],
            hovertemplate="%{text}<br>%{z:.2f}% of the loss<extra></extra>",
            opacity=0.62,
            colorscale="Inferno",
            zmin=0,
            zmax=max(float(cells.max()), 1e-9),
            colorbar=dict(title="% of loss", thickness=10),
        )
    )
    return fig


def _get_loss_share_info(parts: dict[str, dict[str, float]]) -> dict[str, list[float]]:
    """Part name -> its share of each loss's total (losses in `parts` order, parts in order of
    first appearance; a loss without the part gets 0, a loss summing to 0 gets 0 shares)."""
    totals = [max(sum(values.values()), 1e-12) for values in parts.values()]
    part_names = dict.fromkeys(p for values in parts.values() for p in values)
    return {
        part: [values.get(part, 0.0) / total for values, total in zip(parts.values(), totals, strict=True)]
        for part in part_names
    }


def loss_share_figure(parts: dict[str, dict[str, float]]) -> go.Figure:
    """Stacked bars: for each loss (row), the share of its total that each part contributes.

    Args:
        parts: loss name -> part name -> loss value (shares are computed here).
    """
    fig = go.Figure()
    names = list(parts)
    for part, shares in _get_loss_share_info(parts).items():
        fig.add_trace(
            go.Bar(
                y=names,
                x=shares,
                name=part,
                orientation="h",
                marker_color=PART_COLORS.get(part),
                text=[f"{s:.0%}" if s >= 0.04 else "" for s in shares],
                textposition="inside",
                customdata=[parts[n].get(part, 0.0) for n in names],
                hovertemplate=f"%{{y}}: {part} %{{x:.1%}} (loss %{{customdata:.4g}})<extra></extra>",
            )
        )
    fig.update_layout(chart_layout(height=110 + 50 * len(names), top=30, legend=legend("above left"), barmode="stack"))
    fig.update_xaxes(tickformat=".0%", range=[0, 1], title="share of the image's loss")
    return fig


def _get_p_t_info(p_t: Tensor, positive: Tensor, bins: int) -> tuple[list[float], dict[str, list[float]]]:
    """(bin centres over [0, 1], {"negatives": counts, "positives": counts})."""
    edges = torch.linspace(0, 1, bins + 1)
    centers = ((edges[:-1] + edges[1:]) / 2).tolist()
    counts = {name: torch.histc(p_t[mask].float(), bins=bins, min=0, max=1).tolist()
              for name, mask in (("negatives", ~positive), ("positives", positive))}  # fmt: skip
    return centers, counts


def p_t_histogram(p_t: Tensor, positive: Tensor, bins: int = 50) -> go.Figure:
    """How sure the model is about each anchor: p_t of positives and negatives, log counts."""
    fig = go.Figure()
    centers, counts = _get_p_t_info(p_t, positive, bins)
    sizes = {"negatives": int((~positive).sum()), "positives": int(positive.sum())}
    for name, color in (("negatives", BCE_COLOR), ("positives", POSITIVE_COLOR)):
        fig.add_trace(
            go.Bar(
                x=centers,
                y=counts[name],
                name=f"{name} ({sizes[name]:,})",
                marker_color=color,
                opacity=0.75,
                width=1 / bins,
                hovertemplate=f"{name}<br>p_t %{{x:.2f}}: %{{y}} anchors<extra></extra>",
            )
        )
    fig.update_layout(chart_layout(height=300, top=10, legend=legend("top right", y=1.08), barmode="overlay"))
    fig.update_xaxes(title="p_t of the anchor's worst class (1 = easy)", range=[0, 1])
    fig.update_yaxes(title="anchors", type="log", dtick=1)
    return fig
