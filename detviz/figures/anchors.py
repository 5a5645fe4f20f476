"""Anchors and matching: anchors over the image, the matching rule step by step, the IoU
matrix, and how well a configuration covers a dataset's objects.

Every drawn anchor can be clicked: markers at anchor centres (and on heat-map cells) carry
`anchor_customdata`, whose first number is the anchor index (see detviz.explain.clicked_anchor).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import plotly.graph_objects as go
import torch
from PIL import Image
from torch import Tensor

from detviz.boxes import to_pixel_boxes
from detviz.figures.image import ImageEncoder, add_boxes, add_rectangles, image_data_uri, image_figure
from detviz.figures.style import (
    FORCED_COLOR,
    LEVEL_COLORS,
    NEGATIVE_COLOR,
    POSITIVE_COLOR,
    REFERENCE,
    chart_layout,
    class_color,
    legend,
)

if TYPE_CHECKING:
    from detviz.anchors import Anchors
    from detviz.matching import Match

MAX_ANCHOR_MARKERS = 1500  # clickable anchor centres per figure; more would be a carpet of dots
MAX_CLICKABLE_CELLS = 20_000  # IoU heat map cells; past this only the non-zero ones get a marker
SELECTED_COLOR = "#e53e3e"

ANCHOR_HOVER = (
    "anchor %{customdata[0]}<br>level %{customdata[1]} (%{customdata[2]}x%{customdata[2]}), row %{customdata[3]}, "
    "column %{customdata[4]}<br>shape %{customdata[5]}: %{customdata[6]:.3f} x %{customdata[7]:.3f}"
)


def anchor_customdata(anchors: Anchors, indices: Tensor, extra: Tensor | None = None) -> np.ndarray:
    """(N, 8 or 9) float64 per anchor: index, level, grid, row, col, shape, width, height (and
    `extra`), for ANCHOR_HOVER. Numbers, not hover strings: plotly sends them as one typed array,
    and a click reports the anchor index first."""
    grids = torch.tensor(anchors.grids)[anchors.level[indices]]
    columns = [indices, anchors.level[indices], grids, anchors.row[indices], anchors.col[indices],
               anchors.shape_index[indices], anchors.sizes[indices, 0], anchors.sizes[indices, 1]]  # fmt: skip
    if extra is not None:
        columns.append(extra)
    return torch.stack([c.double() for c in columns], 1).numpy()


def add_anchor_points(
    fig: go.Figure,
    anchors: Anchors,
    indices: Tensor,
    width: int,
    height: int,
    color: str,
    best_iou: Tensor | None = None,
    size: int = 7,
) -> go.Figure:
    """Clickable markers at the centres of some anchors; customdata starts with the anchor index."""
    centres = (anchors.centers[indices] * torch.tensor([width, height])).double().numpy()
    hover = ANCHOR_HOVER + ("<br>best IoU %{customdata[8]:.3f}" if best_iou is not None else "")
    fig.add_trace(
        go.Scatter(
            x=centres[:, 0],
            y=centres[:, 1],
            mode="markers",
            name="anchor centres",
            marker=dict(size=size, color=color, line=dict(color="white", width=1)),
            customdata=anchor_customdata(anchors, indices, best_iou),
            hovertemplate=hover + "<extra></extra>",
            showlegend=False,
        )
    )
    return fig


def anchor_overlay_figure(
    image: Image.Image,
    anchors: Anchors,
    mode: str,
    level: int = 0,
    row: int = 0,
    col: int = 0,
    gt_boxes: Tensor | None = None,
    gt_labels: Tensor | None = None,
    class_names: Sequence[str] = (),
    positive: Tensor | None = None,
    best_gt: Tensor | None = None,
    height: int = 560,
    *,
    encode: ImageEncoder = image_data_uri,
) -> go.Figure:
    """The image with anchors drawn.

    Args:
        image: shown at its own pixel size; anchors (normalized) are scaled to it.
        mode: "grid" (each level's cell lines), "level" (every anchor of `level`), or "cell" (the
            shapes of cell (`row`, `col`) of `level`).
        gt_boxes, gt_labels: ground truth in pixels, drawn in class colours.
        positive, best_gt: (A,) the anchors matched to an object and which: drawn in its colour.
        encode: the image -> data URI function (see detviz.figures.image).
    """
    w, h = image.size
    fig = image_figure(image, height=height, encode=encode)
    if mode == "grid":
        for lvl, g in enumerate(anchors.grids):
            step = float(anchors.cell_size[anchors.level == lvl][0])
            lines_x, lines_y = [], []
            for k in range(round(1 / step) + 1):
                v = min(k * step, 1.0)
                lines_x += [v * w, v * w, None, 0, w, None]
                lines_y += [0, h, None, v * h, v * h, None]
            fig.add_trace(
                go.Scatter(
                    x=lines_x,
                    y=lines_y,
                    mode="lines",
                    name=f"level {lvl}: {g}x{g}",
                    hoverinfo="skip",
                    line=dict(color=LEVEL_COLORS[lvl % len(LEVEL_COLORS)], width=1.5 + lvl),
                )
            )
    else:
        sel = anchors.level == level
        if mode == "cell":
            sel &= (anchors.row == row) & (anchors.col == col)
        idx = torch.nonzero(sel).flatten()
        color = LEVEL_COLORS[level % len(LEVEL_COLORS)]
        add_rectangles(
            fig,
            to_pixel_boxes(anchors.boxes[idx], w, h),
            color,
            f"level {level} anchors",
            width=1.0 if mode == "level" else 2.0,
            opacity=0.5 if mode == "level" and idx.numel() > 64 else 1.0,
        )
        if idx.numel() <= 400:
            add_anchor_points(fig, anchors, idx, w, h, color, size=6)
    if positive is not None and best_gt is not None and gt_labels is not None and bool(positive.any()):
        for g in torch.unique(best_gt[positive]).tolist():
            mine = torch.nonzero(positive & (best_gt == g)).flatten()
            add_rectangles(
                fig,
                to_pixel_boxes(anchors.boxes[mine], w, h),
                class_color(int(gt_labels[g])),
                f"anchors of object {g + 1}",
                width=2.5,
                dash="dot",
            )
    if gt_boxes is not None and gt_labels is not None:
        add_boxes(fig, gt_boxes, gt_labels, class_names)
    fig.update_layout(showlegend=True, legend=legend("below"))
    return fig


class _AnchorGroup(NamedTuple):
    indices: Tensor  # (K,) int64 anchors drawn alike
    color: str
    name: str  # legend entry
    width: float
    opacity: float


def _get_matching_groups(match: Match, step: int, gt_labels: Tensor, class_names: Sequence[str]) -> list[_AnchorGroup]:
    """The anchors each step of the matching rule draws, one group per colour (see matching_figure)."""
    if step == 1:
        shown = torch.nonzero(match.argmax_iou > 0).flatten()
        return [
            _AnchorGroup(
                shown[match.argmax_gt[shown] == g], class_color(c), f"best: {g + 1} {class_names[c]}", 1.0, 0.6
            )
            for g, c in enumerate(gt_labels.tolist())
        ]
    forced = _AnchorGroup(
        torch.nonzero(match.forced).flatten(), FORCED_COLOR, "forced (best anchor of an object)", 2.5, 1.0
    )
    if step == 2:
        return [forced]
    above = torch.nonzero(match.positive & ~match.forced).flatten()
    return [
        _AnchorGroup(above, POSITIVE_COLOR, f"positive: IoU > {match.iou_threshold:g}", 2.0, 1.0),
        forced._replace(name="positive by force"),
    ]


def _marker_cut(match: Match, groups: Sequence[_AnchorGroup]) -> float:
    """The lowest best IoU that still gets a clickable marker: at most MAX_ANCHOR_MARKERS
    markers, the best-overlapping first; -1 (all of them) when they fit."""
    everything = torch.cat([g.indices for g in groups]) if groups else torch.zeros(0, dtype=torch.int64)
    if everything.numel() <= MAX_ANCHOR_MARKERS:
        return -1.0
    return float(match.argmax_iou[everything].sort(descending=True, stable=True).values[MAX_ANCHOR_MARKERS - 1])


def matching_figure(
    image: Image.Image,
    anchors: Anchors,
    match: Match,
    step: int,
    gt_boxes: Tensor,
    gt_labels: Tensor,
    class_names: Sequence[str],
    selected: int | None = None,
    show_negatives: bool = False,
    height: int = 560,
    *,
    encode: ImageEncoder = image_data_uri,
) -> go.Figure:
    """The matching rule drawn step by step on the image (pixels).

    step 1: each anchor coloured by the object it overlaps most (anchors overlapping nothing
    hidden); 2: the forced anchors, one per object; 3: the positives (above the threshold, and
    forced). A marker at each drawn anchor's centre can be clicked. `encode`: the image -> data
    URI function (see detviz.figures.image).
    """
    w, h = image.size
    pixel_boxes = to_pixel_boxes(anchors.boxes, w, h)  # (A, 4)
    fig = image_figure(image, height=height, encode=encode)
    if show_negatives and step == 3:
        negative = torch.nonzero(~match.positive).flatten()
        add_rectangles(fig, pixel_boxes[negative], NEGATIVE_COLOR, "negative", width=0.7, opacity=0.35)
    groups = _get_matching_groups(match, step, gt_labels, class_names)
    for group in groups:
        add_rectangles(fig, pixel_boxes[group.indices], group.color, group.name, group.width, opacity=group.opacity)
    add_boxes(fig, gt_boxes, gt_labels, class_names)  # under the markers: their hover areas must not catch clicks
    # clickable centre markers, one trace per colour (a per-point colour list is slow to validate)
    cut = _marker_cut(match, groups)
    for group in groups:
        indices = group.indices[match.argmax_iou[group.indices] >= cut]
        add_anchor_points(fig, anchors, indices, w, h, group.color, match.argmax_iou[indices])
    if selected is not None:
        add_rectangles(fig, pixel_boxes[selected : selected + 1], SELECTED_COLOR, f"anchor {selected}", width=4)
    fig.update_layout(showlegend=True, legend=legend("below"), clickmode="event+select")
    return fig


def _clickable_cells(z: Tensor) -> Tensor:
    """(K, 2) (row, column) of the heat-map cells that get a click marker: every cell, or past
    MAX_CLICKABLE_CELLS only the non-zero ones."""
    n_rows, n_cols = z.shape
    if n_rows * n_cols > MAX_CLICKABLE_CELLS:
        return torch.nonzero(z > 0)
    return torch.stack(torch.meshgrid(torch.arange(n_rows), torch.arange(n_cols), indexing="ij"), -1).reshape(-1, 2)


def _level_marks(anchors: Anchors, levels: list[int]) -> tuple[list[dict], list[dict]]:
    """(separator shapes, level-name annotations) over heat-map columns whose anchors are on `levels`."""
    n_cols = len(levels)
    starts = [k for k in range(n_cols) if k == 0 or levels[k] != levels[k - 1]]
    separators, level_names = [], []  # laid out in one update: each add_vline costs ~3 ms
    for k, end in zip(starts, [*starts[1:], n_cols], strict=True):
        if k > 0:
            separators.append(dict(type="line", x0=k - 0.5, x1=k - 0.5, y0=0, y1=1, yref="paper",
                                   line=dict(color="#2d3748", width=1, dash="dot")))  # fmt: skip
        if (end - k) * 12 >= n_cols or n_cols <= 64:  # a label only where it has room
            g = anchors.grids[levels[k]]
            level_names.append(dict(x=k - 0.5, y=1.0, yref="paper", yanchor="bottom", xanchor="left",
                                    text=f"level {levels[k]} ({g}x{g})", showarrow=False, font=dict(size=11)))  # fmt: skip
    return separators, level_names


def iou_heatmap(
    iou: Tensor,
    anchors: Anchors,
    gt_labels: Tensor,
    class_names: Sequence[str],
    columns: Tensor | None = None,
    threshold: float | None = None,
    selected: int | None = None,
) -> go.Figure:
    """The Jaccard matrix: one row per object, one column per anchor, levels in order.

    Args:
        iou: (G, A). columns: increasing indices of the anchors to show (all by default; a
            level, or the anchors that overlap something, for big sets).
        threshold: outline the cells above it. selected: outline this anchor's column.

    Heatmap cells do not report clicks in Streamlit, so an invisible marker sits on every cell
    (every non-zero cell past MAX_CLICKABLE_CELLS cells) with the anchor index as customdata.
    """
    columns = torch.arange(iou.shape[1]) if columns is None else columns
    z = iou[:, columns]
    n_rows, n_cols = z.shape
    rows = [f"{g + 1}: {class_names[c]}" for g, c in enumerate(gt_labels.tolist())]
    fig = go.Figure(
        go.Heatmap(
            z=z.double().numpy(),
            x=np.arange(n_cols),
            y=np.arange(n_rows),
            zmin=0,
            zmax=1,
            colorscale="Blues",
            hoverinfo="skip",  # the markers below carry the hover and the clicks
            colorbar=dict(title="IoU", thickness=12),
        )
    )
    if n_cols <= 64:
        fig.update_traces(
            text=[[f"{v:.2f}" if v > 0 else "" for v in row] for row in z.tolist()], texttemplate="%{text}"
        )
    cells = _clickable_cells(z)
    marker = dict(size=max(4, min(24, 900 // max(n_cols, 1))), color="rgba(0,0,0,0)", symbol="square")
    cell_traces = []
    for g in range(n_rows):  # one trace per object: its name in the hover, the numbers as customdata
        cols_g = cells[cells[:, 0] == g, 1]
        anchors_g = columns[cols_g]
        cell_traces.append(
            go.Scatter(
                x=cols_g.numpy(),
                y=np.full(cols_g.numel(), g),
                mode="markers",
                marker=marker,
                customdata=anchor_customdata(anchors, anchors_g, z[g, cols_g]),
                hovertemplate=f"<b>{rows[g]}</b><br>{ANCHOR_HOVER}<br>IoU %{{customdata[8]:.4f}}<extra></extra>",
                showlegend=False,
                name=f"cells of object {g + 1}",
            )
        )
    fig.add_traces(cell_traces)
    separators, level_names = _level_marks(anchors, anchors.level[columns].tolist())
    if threshold is not None:
        above = torch.nonzero(z > threshold).double()
        cell_boxes = torch.stack([above[:, 1] - 0.5, above[:, 0] - 0.5, above[:, 1] + 0.5, above[:, 0] + 0.5], 1)
        add_rectangles(fig, cell_boxes, SELECTED_COLOR, f"IoU > {threshold:g}", width=2)
    if selected is not None and bool((columns == selected).any()):
        k = int(torch.nonzero(columns == selected)[0])
        add_rectangles(fig, torch.tensor([[k - 0.5, -0.5, k + 0.5, n_rows - 0.5]]), "#d69e2e", f"anchor {selected}", 3)
    ticks = list(range(0, n_cols, max(1, n_cols // 24)))
    fig.update_layout(
        chart_layout(
            height=150 + 34 * max(1, n_rows),
            top=30,
            clickmode="event+select",
            dragmode=False,
            hovermode="closest",
            showlegend=False,
            shapes=separators,
            annotations=level_names,
        )
    )
    tick_text = [str(c) for c in columns[ticks].tolist()] if ticks else []
    fig.update_xaxes(title="anchor", tickvals=ticks, ticktext=tick_text, showgrid=False, range=[-0.5, n_cols - 0.5])
    fig.update_yaxes(
        tickvals=list(range(n_rows)), ticktext=rows, autorange="reversed", showgrid=False, range=[n_rows - 0.5, -0.5]
    )
    return fig


def _get_coverage_info(values: Tensor, bins: int) -> tuple[list[float], list[float]]:
    """(bin centres, share of the objects in each bin) of best-IoU values in [0, 1]; shares of
    an empty set are all 0."""
    counts = torch.histc(values.float(), bins=bins, min=0.0, max=1.0)
    share = (counts / max(values.numel(), 1)).tolist()
    centres = ((torch.arange(bins) + 0.5) / bins).tolist()
    return centres, share


def coverage_figure(best_iou: dict[str, Tensor], threshold: float, bins: int = 40) -> go.Figure:
    """Histograms of each object's best anchor IoU, one per anchor configuration."""
    fig = go.Figure()
    for k, (name, values) in enumerate(best_iou.items()):
        centres, share = _get_coverage_info(values, bins)
        fig.add_trace(
            go.Bar(
                x=centres,
                y=share,
                name=name,
                opacity=0.6,
                marker_color=LEVEL_COLORS[k % len(LEVEL_COLORS)],
                hovertemplate=f"{name}<br>best IoU %{{x:.3f}}: %{{y:.1%}} of objects<extra></extra>",
            )
        )
    fig.update_layout(chart_layout(
        "Best anchor IoU of each object", 340, legend=legend("top right"), barmode="overlay", bargap=0.02,
        xaxis=dict(title="best IoU with any anchor", range=[0, 1]),
        yaxis=dict(title="share of objects", tickformat=".0%"),
        shapes=[dict(type="line", x0=threshold, x1=threshold, y0=0, y1=1, yref="paper",
                     line=dict(color=REFERENCE, dash="dash"))],
        annotations=[dict(x=threshold, y=1, yref="paper", text=f"threshold {threshold:g}", showarrow=False,
                          xanchor="left", yanchor="bottom")],
    ))  # fmt: skip
    return fig
