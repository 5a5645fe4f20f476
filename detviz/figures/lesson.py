"""Figures of the lesson walkthrough's trained models: the largest-object guess against its
target, class probabilities against the 0/1 truth, a one-grid SSD's detections on its grid, and
the ladder of every stage's val metric."""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go
from PIL import Image
from torch import Tensor

from detviz.figures.detections import detections_figure
from detviz.figures.image import ImageEncoder, image_data_uri, image_figure, tag
from detviz.figures.style import (
    ACCENT,
    HIGHLIGHT,
    MUTED,
    REFERENCE,
    chart_layout,
    class_color,
    class_name,
    legend,
    rgba,
)
from detviz.postprocess import NMSTrace


def largest_object_figure(
    image: Image.Image,
    target_box: Tensor | None,
    target_label: int | None,
    box: Tensor,
    label: int,
    score: float,
    class_names: Sequence[str],
    height: int = 480,
    *,
    encode: ImageEncoder = image_data_uri,
) -> go.Figure:
    """The model's one box (thick dashes, "model: class 93%") over the target box (solid, "target: class").

    Args:
        target_box: (4,) pixel xyxy of the largest object, or None (an image without objects).
        box: (4,) pixel xyxy the model predicts.
    """
    fig = image_figure(image, height=height, encode=encode)
    shapes, annotations = [], []
    if target_box is not None and target_label is not None:
        color = class_color(target_label)
        x1, y1, x2, y2 = target_box.tolist()
        shapes.append(dict(type="rect", x0=x1, y0=y1, x1=x2, y1=y2, line=dict(color=color, width=3),
                           fillcolor=rgba(color, 0.15), name="target"))  # fmt: skip
        annotations.append(tag((x1, y1), f"target: {class_name(class_names, target_label)}", color, size=12, pad=2))
    color = class_color(label)
    x1, y1, x2, y2 = box.tolist()
    shapes.append(dict(type="rect", x0=x1, y0=y1, x1=x2, y1=y2, line=dict(color=color, width=4, dash="dash"),
                       name="model"))  # fmt: skip
    annotations.append(
        tag((x1, y2), f"model: {class_name(class_names, label)} {score:.0%}", color, anchor="top", size=12, pad=2)
    )
    fig.update_layout(shapes=shapes, annotations=annotations)
    return fig


def class_probability_figure(
    class_names: Sequence[str], probabilities: Tensor, target: Tensor, threshold: float, height: int = 300
) -> go.Figure:
    """One bar per class: the model's probability, coloured when the class is in the image,
    with the 0/1 truth as a marker and the decision threshold as a line.

    Args:
        probabilities, target: (C,).
    """
    present = [bool(v > 0.5) for v in target.tolist()]
    p = probabilities.tolist()
    names = list(class_names)
    bars = go.Bar(
        x=names,
        y=p,
        marker_color=[ACCENT if t else MUTED for t in present],
        text=[f"{v:.0%}" for v in p],
        textposition="outside",
        name="model's probability",
        hovertemplate="%{x}: %{y:.1%}<extra></extra>",
    )
    truth = go.Scatter(
        x=names,
        y=[1.0 if t else 0.0 for t in present],
        mode="markers",
        marker=dict(symbol="line-ew-open", size=30, color="#1a202c", line=dict(width=3)),
        name="truth (1 = in the image)",
        hovertemplate="%{x}: truth %{y:.0f}<extra></extra>",
    )
    line = dict(type="line", xref="paper", x0=0, x1=1, y0=threshold, y1=threshold,
                line=dict(color=REFERENCE, dash="dot", width=2))  # fmt: skip
    note = dict(xref="paper", x=1, y=threshold, text=f"threshold {threshold:.0%}", showarrow=False, xanchor="right",
                yanchor="bottom", font=dict(color=REFERENCE, size=11), bgcolor="rgba(255,255,255,0.8)")  # fmt: skip
    layout = chart_layout(
        height=height,
        top=30,
        yaxis=dict(range=[0, 1.15], tickformat=".0%", title="probability"),
        legend=legend("above right"),
        shapes=[line],
        annotations=[note],
    )
    return go.Figure([bars, truth], layout=layout)


def grid_detections_figure(
    image: Image.Image,
    grid: int,
    trace: NMSTrace,
    fired: Tensor,
    class_names: Sequence[str],
    gt_boxes: Tensor,
    gt_labels: Tensor,
    missed: Tensor,
    height: int = 480,
    *,
    encode: ImageEncoder = image_data_uri,
) -> go.Figure:
    """A one-grid SSD's detections (see detections_figure: kept boxes tagged, missed objects
    stressed) over its grid lines, the cells that fired shaded.

    Args:
        grid: cells per side. fired: (F, 2) (row, col) of the cells that gave a detection.
        trace: in pixels. gt_boxes: (G, 4) pixels. missed: (G,) bool.
    """
    fig = detections_figure(image, trace, class_names, show_suppressed=False, gt_boxes=gt_boxes,
                            gt_labels=gt_labels, missed=missed, height=height, encode=encode)  # fmt: skip
    w, h = image.size
    xs, ys = [], []
    for k in range(grid + 1):
        xs += [k * w / grid, k * w / grid, None, 0, w, None]
        ys += [0, h, None, k * h / grid, k * h / grid, None]
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line=dict(color="white", width=1.5), opacity=0.8,
                             hoverinfo="skip", name=f"{grid}x{grid} grid"))  # fmt: skip
    cells = [
        dict(type="rect", x0=c * w / grid, y0=r * h / grid, x1=(c + 1) * w / grid, y1=(r + 1) * h / grid,
             fillcolor=rgba(HIGHLIGHT, 0.22), line=dict(width=0), layer="above", name=f"fired cell ({r}, {c})")
        for r, c in fired.tolist()
    ]  # fmt: skip
    fig.update_layout(shapes=[*fig.layout.shapes, *cells])
    return fig


def ladder_figure(stages: Sequence[str], values: Sequence[float | None], metric_names: Sequence[str]) -> go.Figure:
    """Every stage's val metric as a bar (None: no model), named by its metric, in ladder order."""
    shown = [v if v is not None else 0.0 for v in values]
    bars = go.Bar(
        x=list(stages),
        y=shown,
        marker_color=[ACCENT if v is not None else MUTED for v in values],
        text=[f"{n}<br>{v:.3f}" if v is not None else "no model" for n, v in zip(metric_names, values, strict=True)],
        textposition="outside",
        hovertemplate="%{x}<br>%{text}<extra></extra>",
        name="val metric",
    )
    return go.Figure(bars, layout=chart_layout(height=360, top=20, yaxis=dict(range=[0, 1.18], title="val metric")))
