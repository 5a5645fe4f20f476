"""Figure builders for the app: pure functions, data in, plotly figure (or thumbnail) out.

Images are drawn in pixel coordinates with DESIGN's box convention: pixel column c covers
x in [c, c + 1], so a box (x1, y1, x2, y2) lines up with the pixel edges it names.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import plotly.graph_objects as go
import torch
from PIL import Image, ImageDraw
from plotly.colors import qualitative
from torch import Tensor

# Bright, mutually distinct colours that stay visible on photographs; 30 before any repeats.
PALETTE: tuple[str, ...] = tuple(qualitative.Plotly) + tuple(qualitative.D3) + tuple(qualitative.Dark24[:10])
LOG_TICKS = (0.1, 0.2, 0.25, 0.5, 1, 2, 4, 5, 10)
MAX_HOVER_BOXES = 300
THUMB_BACKGROUND = (240, 242, 246)  # above this many boxes, hover targets would make the figure sluggish
FONT = dict(family="Inter, Segoe UI, Helvetica, Arial, sans-serif")


def class_color(label: int) -> str:
    """A stable colour (hex) for a class id."""
    return PALETTE[int(label) % len(PALETTE)]


def text_color(background: str) -> str:
    """Black or white, whichever reads better on the hex background colour."""
    r, g, b = (int(background[i : i + 2], 16) for i in (1, 3, 5))
    return "#111111" if 0.299 * r + 0.587 * g + 0.114 * b > 150 else "#ffffff"


def _rgba(hex_color: str, alpha: float) -> str:
    r, g, b = (int(hex_color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def image_data_uri(image: Image.Image, quality: int = 90) -> str:
    """The image as a JPEG data URI (compact for the browser, unlike a pixel array)."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def image_figure(image: Image.Image, title: str | None = None, height: int = 560) -> go.Figure:
    """A figure showing the image in pixel coordinates (y down), axes hidden, aspect kept."""
    w, h = image.size
    fig = go.Figure(go.Image(source=image_data_uri(image), x0=0.5, y0=0.5, dx=1, dy=1, hoverinfo="skip"))
    fig.update_xaxes(visible=False, range=[0, w], constrain="domain")
    fig.update_yaxes(visible=False, range=[h, 0], scaleanchor="x", constrain="domain")
    fig.update_layout(
        height=height,
        margin=dict(l=0, r=0, t=36 if title else 0, b=0),
        title=dict(text=title, x=0.0, font=dict(size=15)) if title else None,
        showlegend=False,
        dragmode="pan",
        font=FONT,
        hoverlabel=dict(font_size=13),
    )
    return fig


def add_boxes(
    fig: go.Figure,
    boxes: Tensor,
    labels: Tensor,
    class_names: Sequence[str],
    difficult: Tensor | None = None,
    truncated: Tensor | None = None,
    emphasis: int | None = None,
    show_labels: bool = True,
) -> go.Figure:
    """Draws pixel xyxy boxes as rectangle shapes with a class tag, and hover targets.

    Args:
        boxes: (N, 4) pixel xyxy. labels: (N,) class ids. difficult, truncated: (N,) bool.
        emphasis: index of one box to stress; the others are faded.
        show_labels: write "class" tags at the boxes' top-left corners.

    Hover over a box shows its number, class, pixel box, size and flags. Difficult boxes are
    dashed.
    """
    n = boxes.shape[0]
    difficult = difficult if difficult is not None else torch.zeros(n, dtype=torch.bool)
    truncated = truncated if truncated is not None else torch.zeros(n, dtype=torch.bool)
    for k in range(n):  # one shape per box: plotly has no vectorised rectangles
        x1, y1, x2, y2 = (float(v) for v in boxes[k])
        label = int(labels[k])
        color = class_color(label)
        faded = emphasis is not None and k != emphasis
        name = class_names[label] if 0 <= label < len(class_names) else f"class {label}"
        fig.add_shape(
            type="rect",
            x0=x1,
            y0=y1,
            x1=x2,
            y1=y2,
            line=dict(color=color, width=4 if k == emphasis else 2, dash="dash" if difficult[k] else "solid"),
            fillcolor=_rgba(color, 0.18 if k == emphasis else 0.0),
            opacity=0.35 if faded else 1.0,
            name=f"box {k + 1}",
        )
        if show_labels and not faded:
            fig.add_annotation(
                x=x1,
                y=y1,
                text=name,
                showarrow=False,
                xanchor="left",
                yanchor="bottom",
                font=dict(color=text_color(color), size=12),
                bgcolor=color,
                borderpad=2,
            )
        if n <= MAX_HOVER_BOXES:
            flags = ", ".join(f for f, on in (("difficult", difficult[k]), ("truncated", truncated[k])) if on)
            fig.add_trace(
                go.Scatter(
                    x=[x1, x2, x2, x1, x1],
                    y=[y1, y1, y2, y2, y1],
                    mode="lines",
                    fill="toself",
                    fillcolor="rgba(0,0,0,0)",
                    line=dict(width=0),
                    hoveron="fills",
                    name=f"{k + 1}: {name}",
                    hovertemplate=(
                        f"<b>{k + 1}: {name}</b><br>box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) px"
                        f"<br>{x2 - x1:g} x {y2 - y1:g} px" + (f"<br>{flags}" if flags else "") + "<extra></extra>"
                    ),
                )
            )
    return fig


def ground_truth_figure(
    image: Image.Image,
    boxes: Tensor,
    labels: Tensor,
    class_names: Sequence[str],
    difficult: Tensor | None = None,
    truncated: Tensor | None = None,
    emphasis: int | None = None,
    title: str | None = None,
    height: int = 560,
) -> go.Figure:
    """The image with its ground-truth boxes (see `add_boxes`)."""
    fig = image_figure(image, title=title, height=height)
    return add_boxes(fig, boxes, labels, class_names, difficult, truncated, emphasis)


def multilabel_figure(class_names: Sequence[str], target: Tensor) -> go.Figure:
    """The multi-label target as a one-row strip: 1 for each class present."""
    present = [int(v) for v in target.tolist()]
    fig = go.Figure(
        go.Heatmap(
            z=[present],
            x=list(class_names),
            y=["target"],
            zmin=0,
            zmax=1,
            colorscale=[[0, "#eef1f5"], [1, "#2b6cb0"]],
            showscale=False,
            xgap=2,
            text=[[str(v) for v in present]],
            texttemplate="%{text}",
            hovertemplate="%{x}: %{z}<extra></extra>",
        )
    )
    fig.update_layout(height=110, margin=dict(l=0, r=0, t=8, b=0), font=FONT)
    fig.update_yaxes(visible=False)
    return fig


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
    fig.update_layout(
        barmode="stack",
        title="Objects per class",
        height=340,
        margin=dict(l=0, r=0, t=40, b=0),
        legend=dict(orientation="h", y=1.12, x=1, xanchor="right"),
        font=FONT,
    )
    fig.update_yaxes(title="objects")
    return fig


def histogram_figure(
    values: Tensor,
    title: str,
    x_title: str,
    bins: int = 40,
    log_x: bool = False,
    integer: bool = False,
) -> go.Figure:
    """Histogram of a 1-D tensor. `log_x` bins on a log scale (for ratios); `integer` gives one bar per value."""
    v = values.float()
    if integer:
        top = int(v.max()) if v.numel() else 0
        counts = torch.bincount(v.long(), minlength=top + 1)
        trace = go.Bar(
            x=list(range(top + 1)),
            y=counts.tolist(),
            marker_color="#2b6cb0",
            hovertemplate=f"{x_title} %{{x}}: %{{y}}<extra></extra>",
        )
    else:
        data = torch.log10(v) if log_x else v
        lo, hi = (float(data.min()), float(data.max())) if data.numel() else (0.0, 1.0)
        hi = hi if hi > lo else lo + 1e-6
        counts = torch.histc(data, bins=bins, min=lo, max=hi)
        edges = torch.linspace(lo, hi, bins + 1)
        centers = (edges[:-1] + edges[1:]) / 2
        widths = edges[1:] - edges[:-1]
        if log_x:
            centers, widths = 10**centers, 10 ** edges[1:] - 10 ** edges[:-1]
        trace = go.Bar(
            x=centers.tolist(),
            y=counts.tolist(),
            width=widths.tolist(),
            marker_color="#2b6cb0",
            hovertemplate=f"{x_title} %{{x:.3g}}: %{{y}}<extra></extra>",
        )
    fig = go.Figure(trace)
    fig.update_layout(
        title=title,
        height=300,
        margin=dict(l=0, r=0, t=40, b=0),
        bargap=0.05,
        font=FONT,
    )
    fig.update_xaxes(title=x_title, type="log" if log_x else "linear")
    if log_x:
        fig.update_xaxes(tickvals=LOG_TICKS, ticktext=[f"{t:g}" for t in LOG_TICKS])
    fig.update_yaxes(title="count")
    return fig


def render_thumbnail(
    image: Image.Image,
    boxes: Tensor,
    labels: Tensor,
    difficult: Tensor | None = None,
    size: int = 200,
    square: bool = False,
) -> Image.Image:
    """A small copy of the image (longest side `size`) with its boxes drawn in class colours.

    Thumbnails are raster images, not plotly figures: a grid of two dozen interactive
    figures would be slow to send and to draw. `square` centres it on a size x size
    canvas, so a grid of differently shaped images lines up.
    """
    scale = size / max(image.size)
    thumb = image.convert("RGB").resize(
        (max(1, round(image.width * scale)), max(1, round(image.height * scale))),
        Image.Resampling.BILINEAR,
    )
    draw = ImageDraw.Draw(thumb)
    for k in range(boxes.shape[0]):
        x1, y1, x2, y2 = (float(v) * scale for v in boxes[k])
        color = class_color(int(labels[k]))
        if difficult is not None and bool(difficult[k]):
            _dashed_rect(draw, (x1, y1, x2 - 1, y2 - 1), color)
        else:
            draw.rectangle((x1, y1, x2 - 1, y2 - 1), outline=color, width=2)
    if not square:
        return thumb
    canvas = Image.new("RGB", (size, size), THUMB_BACKGROUND)
    canvas.paste(thumb, ((size - thumb.width) // 2, (size - thumb.height) // 2))
    return canvas


def _dashed_rect(
    draw: ImageDraw.ImageDraw,
    box: tuple[float, float, float, float],
    color: str,
    dash: float = 4,
) -> None:
    x1, y1, x2, y2 = box
    for (ax, ay), (bx, by) in (
        ((x1, y1), (x2, y1)),
        ((x2, y1), (x2, y2)),
        ((x2, y2), (x1, y2)),
        ((x1, y2), (x1, y1)),
    ):
        length = max(abs(bx - ax), abs(by - ay))
        steps = max(1, int(length // (2 * dash)))
        for s in range(steps + 1):
            t0, t1 = (
                min(1.0, 2 * s * dash / max(length, 1e-6)),
                min(1.0, (2 * s + 1) * dash / max(length, 1e-6)),
            )
            draw.line(
                (
                    ax + (bx - ax) * t0,
                    ay + (by - ay) * t0,
                    ax + (bx - ax) * t1,
                    ay + (by - ay) * t1,
                ),
                fill=color,
                width=2,
            )


def lr_finder_figure(result: dict) -> go.Figure:
    """The learning-rate finder's curve: loss (raw and smoothed) against a log learning rate,
    with the suggested rate marked."""
    fig = go.Figure(
        [
            go.Scatter(
                x=result["lrs"],
                y=result["losses"],
                mode="lines",
                name="loss",
                line=dict(color="#cbd5e0"),
                hovertemplate="lr %{x:.2g}: loss %{y:.4g}<extra></extra>",
            ),
            go.Scatter(
                x=result["lrs"],
                y=result["smoothed"],
                mode="lines",
                name="smoothed",
                line=dict(color="#2b6cb0"),
                hovertemplate="lr %{x:.2g}: smoothed %{y:.4g}<extra></extra>",
            ),
        ]
    )
    fig.add_vline(
        x=result["suggestion"],
        line=dict(color="#c53030", dash="dash"),
        annotation_text=f"suggested {result['suggestion']:.2g}",
        annotation_position="top",
    )
    fig.update_xaxes(type="log", title="learning rate")
    fig.update_yaxes(title="loss")
    if result["smoothed"]:
        low, high = min(result["smoothed"]), result["smoothed"][0]
        fig.update_yaxes(range=[low - 0.1 * abs(high - low), high + 0.5 * abs(high - low)])
    fig.update_layout(
        title="Learning-rate finder",
        height=340,
        margin=dict(l=0, r=0, t=40, b=0),
        font=FONT,
        legend=dict(orientation="h", y=1.12, x=1, xanchor="right"),
    )
    return fig
