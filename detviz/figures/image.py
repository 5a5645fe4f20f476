"""The picture and what is drawn on it: the image as a figure, boxes, tags, thumbnails.

Images are drawn in pixel coordinates with DESIGN's box convention: pixel column c covers
x in [c, c + 1], so a box (x1, y1, x2, y2) lines up with the pixel edges it names.

Every builder that shows an image takes `encode`, the function that turns it into a data URI:
the plain `image_data_uri` by default; the app passes a cached one (pages/ui/cache.py), since
every slider move redraws the same picture.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Sequence

import numpy as np
import plotly.graph_objects as go
import torch
from PIL import Image, ImageDraw
from torch import Tensor

from detviz.figures.style import ACCENT, chart_layout, class_color, class_name, rgba, text_color, unchecked

MAX_HOVER_BOXES = 300  # above this many boxes, hover targets would make the figure sluggish
THUMB_BACKGROUND = (240, 242, 246)
JPEG_QUALITY = 90

ImageEncoder = Callable[[Image.Image], str]


def image_data_uri(image: Image.Image, quality: int = JPEG_QUALITY) -> str:
    """The image as a JPEG data URI (compact for the browser, unlike a pixel array)."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def image_layout(image: Image.Image, title: str | None = None, height: int = 560) -> dict:
    """The layout that shows an image in pixel coordinates (y down), axes hidden, aspect kept."""
    w, h = image.size
    return chart_layout(
        dict(text=title, x=0.0, font=dict(size=15)) if title else None,
        height,
        top=36 if title else 0,
        xaxis=dict(visible=False, range=[0, w], constrain="domain"),
        yaxis=dict(visible=False, range=[h, 0], scaleanchor="x", constrain="domain"),
        showlegend=False,
        dragmode="pan",
        hoverlabel=dict(font=dict(size=13)),
    )


def image_trace(image: Image.Image, encode: ImageEncoder = image_data_uri) -> go.Image:
    """The image as a trace, its pixel c covering x in [c, c + 1] (built `unchecked`)."""
    return unchecked(go.Image, source=encode(image), x0=0.5, y0=0.5, dx=1, dy=1, hoverinfo="skip")


def image_figure(
    image: Image.Image, title: str | None = None, height: int = 560, *, encode: ImageEncoder = image_data_uri
) -> go.Figure:
    """A figure showing the image in pixel coordinates (y down), axes hidden, aspect kept."""
    return go.Figure(image_trace(image, encode), layout=image_layout(image, title, height))


def tag(
    box: Tensor | Sequence[float], text: str, color: str, anchor: str = "bottom", size: int = 11, pad: int = 1
) -> dict:
    """A filled text tag at a pixel box's top-left corner (above it, or inside with anchor "top")."""
    x1, y1 = (float(v) for v in box[:2])
    return dict(x=x1, y=y1, text=text, showarrow=False, xanchor="left", yanchor=anchor,
                font=dict(color=text_color(color), size=size), bgcolor=color, borderpad=pad)  # fmt: skip


def add_boxes(
    fig: go.Figure,
    boxes: Tensor,
    labels: Tensor,
    class_names: Sequence[str],
    *,
    show_labels: bool = True,
    emphasis: int | None = None,
    difficult: Tensor | None = None,
    truncated: Tensor | None = None,
) -> go.Figure:
    """Draws pixel xyxy boxes as rectangle shapes with a class tag, and hover targets.

    Args:
        boxes: (N, 4) pixel xyxy. labels: (N,) class ids.
        show_labels: write "class" tags at the boxes' top-left corners.
        emphasis: index of one box to stress; the others are faded.
        difficult, truncated: (N,) bool.

    Hover over a box shows its number, class, pixel box, size and flags. Difficult boxes are
    dashed.
    """
    n = boxes.shape[0]
    difficult = (difficult if difficult is not None else torch.zeros(n, dtype=torch.bool)).tolist()
    truncated = (truncated if truncated is not None else torch.zeros(n, dtype=torch.bool)).tolist()
    shapes, annotations, traces = [], [], []
    for k, ((x1, y1, x2, y2), label) in enumerate(zip(boxes.tolist(), labels.tolist(), strict=True)):
        color = class_color(label)
        faded = emphasis is not None and k != emphasis
        name = class_name(class_names, label)
        shapes.append(
            dict(
                type="rect",
                x0=x1,
                y0=y1,
                x1=x2,
                y1=y2,
                line=dict(color=color, width=4 if k == emphasis else 2, dash="dash" if difficult[k] else "solid"),
                fillcolor=rgba(color, 0.18 if k == emphasis else 0.0),
                opacity=0.35 if faded else 1.0,
                name=f"box {k + 1}",
            )
        )
        if show_labels and not faded:
            annotations.append(tag((x1, y1), name, color, size=12, pad=2))
        if n <= MAX_HOVER_BOXES:
            flags = ", ".join(f for f, on in (("difficult", difficult[k]), ("truncated", truncated[k])) if on)
            traces.append(
                go.Scatter(
                    x=[x1, x2, x2, x1, x1],
                    y=[y1, y1, y2, y2, y1],
                    mode="lines",
                    fill="toself",
                    fillcolor="rgba(0,0,0,0)",
                    line=dict(width=0, color=color),  # the hover label's colour
                    hoveron="fills",
                    name=f"{k + 1}: {name}",
                    showlegend=False,
                    # hovering on a fill, plotly.js ignores hovertemplate and shows the trace's
                    # text when it is one string (else its name): the details go there
                    text=(
                        f"<b>{k + 1}: {name}</b><br>box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) px"
                        f"<br>{x2 - x1:g} x {y2 - y1:g} px" + (f"<br>{flags}" if flags else "")
                    ),
                    hoverinfo="text",
                )
            )
    # one update each: plotly re-validates the whole layout on every add_shape / add_annotation
    fig.update_layout(shapes=[*fig.layout.shapes, *shapes], annotations=[*fig.layout.annotations, *annotations])
    fig.add_traces(traces)
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
    *,
    encode: ImageEncoder = image_data_uri,
) -> go.Figure:
    """The image with its ground-truth boxes (see `add_boxes`)."""
    fig = image_figure(image, title=title, height=height, encode=encode)
    return add_boxes(fig, boxes, labels, class_names, difficult=difficult, truncated=truncated, emphasis=emphasis)


def rect_path(boxes: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Outlines of many xyxy boxes as one polyline, NaN between boxes: one plotly trace for
    thousands of rectangles (one shape each would make the figure crawl), and numpy arrays,
    which plotly validates and serializes in one piece instead of element by element."""
    b = boxes.detach().double().cpu().numpy().reshape(-1, 4)
    gap = np.full(len(b), np.nan)
    xs = np.stack([b[:, 0], b[:, 2], b[:, 2], b[:, 0], b[:, 0], gap], 1).ravel()
    ys = np.stack([b[:, 1], b[:, 1], b[:, 3], b[:, 3], b[:, 1], gap], 1).ravel()
    return xs, ys


def rectangles(
    boxes: Tensor, color: str, name: str, width: float = 1.0, dash: str = "solid", opacity: float = 1.0
) -> go.Scatter:
    """Pixel xyxy boxes as a single line trace (no hover; built `unchecked`)."""
    xs, ys = rect_path(boxes)
    return unchecked(go.Scatter, x=xs, y=ys, mode="lines", line=dict(color=color, width=width, dash=dash),
                     opacity=opacity, name=name, hoverinfo="skip", showlegend=True)  # fmt: skip


def add_rectangles(
    fig: go.Figure, boxes: Tensor, color: str, name: str, width: float = 1.0, dash: str = "solid", opacity: float = 1.0
) -> go.Figure:
    """Adds pixel xyxy boxes as a single line trace (no hover)."""
    return fig.add_trace(rectangles(boxes, color, name, width, dash, opacity))


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
            colorscale=[[0, "#eef1f5"], [1, ACCENT]],
            showscale=False,
            xgap=2,
            text=[[str(v) for v in present]],
            texttemplate="%{text}",
            hovertemplate="%{x}: %{z}<extra></extra>",
        )
    )
    fig.update_layout(chart_layout(height=110, top=8))
    fig.update_yaxes(visible=False)
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
