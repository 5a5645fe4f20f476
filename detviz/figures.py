"""Figure builders for the app: pure functions, data in, plotly figure (or thumbnail) out.

Images are drawn in pixel coordinates with DESIGN's box convention: pixel column c covers
x in [c, c + 1], so a box (x1, y1, x2, y2) lines up with the pixel edges it names.
"""

from __future__ import annotations

import base64
import io
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np
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


_URI_CACHE: dict[tuple[int, int], tuple[weakref.ref, str]] = {}


def image_data_uri(image: Image.Image, quality: int = 90) -> str:
    """The image as a JPEG data URI (compact for the browser, unlike a pixel array).

    Remembered per image object while it lives: the app's images come from caches, and every
    slider move redraws the same picture.
    """
    key = (id(image), quality)
    hit = _URI_CACHE.get(key)
    if hit is not None and hit[0]() is image:
        return hit[1]
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG", quality=quality)
    uri = "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()
    if len(_URI_CACHE) >= 64:
        _URI_CACHE.clear()
    _URI_CACHE[key] = (weakref.ref(image), uri)
    return uri


def image_figure(image: Image.Image, title: str | None = None, height: int = 560) -> go.Figure:
    """A figure showing the image in pixel coordinates (y down), axes hidden, aspect kept."""
    w, h = image.size
    layout = dict(
        xaxis=dict(visible=False, range=[0, w], constrain="domain"),
        yaxis=dict(visible=False, range=[h, 0], scaleanchor="x", constrain="domain"),
        height=height,
        margin=dict(l=0, r=0, t=36 if title else 0, b=0),
        showlegend=False,
        dragmode="pan",
        font=FONT,
        hoverlabel=dict(font_size=13),
    )
    if title:
        layout["title"] = dict(text=title, x=0.0, font=dict(size=15))
    image_trace = go.Image(source=image_data_uri(image), x0=0.5, y0=0.5, dx=1, dy=1, hoverinfo="skip")
    return go.Figure(image_trace, layout=layout)  # one construction: update_* calls cost ~1 ms each


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
    difficult = (difficult if difficult is not None else torch.zeros(n, dtype=torch.bool)).tolist()
    truncated = (truncated if truncated is not None else torch.zeros(n, dtype=torch.bool)).tolist()
    shapes, annotations, traces = [], [], []
    for k, ((x1, y1, x2, y2), label) in enumerate(zip(boxes.tolist(), labels.tolist(), strict=True)):
        color = class_color(label)
        faded = emphasis is not None and k != emphasis
        name = class_names[label] if 0 <= label < len(class_names) else f"class {label}"
        shapes.append(
            dict(
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
        )
        if show_labels and not faded:
            annotations.append(
                dict(
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
            )
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
    if result["smoothed"]:  # from the minimum to the highest point before it (the blow-up is cut)
        smoothed = result["smoothed"]
        lowest = min(range(len(smoothed)), key=smoothed.__getitem__)
        low, high = smoothed[lowest], max(smoothed[: lowest + 1])
        fig.update_yaxes(range=[low - 0.1 * abs(high - low), high + 0.5 * abs(high - low)])
    fig.update_layout(
        title="Learning-rate finder",
        height=340,
        margin=dict(l=0, r=0, t=40, b=0),
        font=FONT,
        legend=dict(orientation="h", y=1.12, x=1, xanchor="right"),
    )
    return fig


# --- anchors and matching ----------------------------------------------------------------

LEVEL_COLORS = ("#2b6cb0", "#dd6b20", "#2f855a", "#b83280", "#6b46c1", "#c05621", "#2c7a7b")
POSITIVE_COLOR, FORCED_COLOR, NEGATIVE_COLOR = "#38a169", "#dd6b20", "#a0aec0"
MAX_ANCHOR_MARKERS = 1500  # clickable anchor centres per figure; more would be a carpet of dots


def rect_path(boxes: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Outlines of many xyxy boxes as one polyline, NaN between boxes: one plotly trace for
    thousands of rectangles (one shape each would make the figure crawl), and numpy arrays,
    which plotly validates and serializes in one piece instead of element by element."""
    b = boxes.detach().double().cpu().numpy().reshape(-1, 4)
    gap = np.full(len(b), np.nan)
    xs = np.stack([b[:, 0], b[:, 2], b[:, 2], b[:, 0], b[:, 0], gap], 1).ravel()
    ys = np.stack([b[:, 1], b[:, 1], b[:, 3], b[:, 3], b[:, 1], gap], 1).ravel()
    return xs, ys


def add_rectangles(
    fig: go.Figure, boxes: Tensor, color: str, name: str, width: float = 1.0, dash: str = "solid", opacity: float = 1.0
) -> go.Figure:
    """Adds pixel xyxy boxes as a single line trace (no hover)."""
    xs, ys = rect_path(boxes)
    fig.add_trace(
        go.Scatter(
            x=xs,
            y=ys,
            mode="lines",
            line=dict(color=color, width=width, dash=dash),
            opacity=opacity,
            name=name,
            hoverinfo="skip",
            showlegend=True,
        )
    )
    return fig


ANCHOR_HOVER = (
    "anchor %{customdata[0]}<br>level %{customdata[1]} (%{customdata[2]}x%{customdata[2]}), row %{customdata[3]}, "
    "column %{customdata[4]}<br>shape %{customdata[5]}: %{customdata[6]:.3f} x %{customdata[7]:.3f}"
)


def anchor_customdata(anchors: Any, indices: Tensor, extra: Tensor | None = None) -> np.ndarray:
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
    anchors: Any,
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
    anchors: Any,
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
) -> go.Figure:
    """The image with anchors drawn.

    Args:
        image: shown at its own pixel size; anchors (normalized) are scaled to it.
        mode: "grid" (each level's cell lines), "level" (every anchor of `level`), or "cell" (the
            shapes of cell (`row`, `col`) of `level`).
        gt_boxes, gt_labels: ground truth in pixels, drawn in class colours.
        positive, best_gt: (A,) the anchors matched to an object and which: drawn in its colour.
    """
    w, h = image.size
    fig = image_figure(image, height=height)
    scale = torch.tensor([w, h, w, h], dtype=torch.float32)
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
            anchors.boxes[idx] * scale,
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
                anchors.boxes[mine] * scale,
                class_color(int(gt_labels[g])),
                f"anchors of object {g + 1}",
                width=2.5,
                dash="dot",
            )
    if gt_boxes is not None and gt_labels is not None:
        add_boxes(fig, gt_boxes, gt_labels, class_names)
    fig.update_layout(showlegend=True, legend=dict(orientation="h", y=-0.02, yanchor="top", x=0))
    return fig


def matching_figure(
    image: Image.Image,
    anchors: Any,
    match: Any,
    step: int,
    gt_boxes: Tensor,
    gt_labels: Tensor,
    class_names: Sequence[str],
    selected: int | None = None,
    show_negatives: bool = False,
    height: int = 560,
) -> go.Figure:
    """The matching rule drawn step by step on the image (pixels).

    step 1: each anchor coloured by the object it overlaps most (anchors overlapping nothing
    hidden); 2: the forced anchors, one per object; 3: the positives (above the threshold, and
    forced). A marker at each drawn anchor's centre can be clicked.
    """
    w, h = image.size
    scale = torch.tensor([w, h, w, h], dtype=torch.float32)
    fig = image_figure(image, height=height)
    if show_negatives and step == 3:
        negative = torch.nonzero(~match.positive).flatten()
        add_rectangles(fig, anchors.boxes[negative] * scale, NEGATIVE_COLOR, "negative", width=0.7, opacity=0.35)
    # groups of anchors: (indices, colour, legend name, line width, opacity)
    if step == 1:
        shown = torch.nonzero(match.argmax_iou > 0).flatten()
        labels = gt_labels.tolist()
        groups = [
            (shown[match.argmax_gt[shown] == g], class_color(c), f"best: {g + 1} {class_names[c]}", 1.0, 0.6)
            for g, c in enumerate(labels)
        ]
    elif step == 2:
        groups = [(torch.nonzero(match.forced).flatten(), FORCED_COLOR, "forced (best anchor of an object)", 2.5, 1.0)]
    else:
        groups = [
            (torch.nonzero(match.positive & ~match.forced).flatten(), POSITIVE_COLOR,
             f"positive: IoU > {match.iou_threshold:g}", 2.0, 1.0),
            (torch.nonzero(match.forced).flatten(), FORCED_COLOR, "positive by force", 2.5, 1.0),
        ]  # fmt: skip
    for indices, color, name, width, opacity in groups:
        add_rectangles(fig, anchors.boxes[indices] * scale, color, name, width=width, opacity=opacity)
    add_boxes(fig, gt_boxes, gt_labels, class_names)  # under the markers: their hover areas must not catch clicks
    # clickable centre markers, one trace per colour (a per-point colour list is slow to validate),
    # at most MAX_ANCHOR_MARKERS, the best-overlapping first
    everything = torch.cat([g[0] for g in groups]) if groups else torch.zeros(0, dtype=torch.int64)
    if everything.numel() > MAX_ANCHOR_MARKERS:
        cut = match.argmax_iou[everything].sort(descending=True, stable=True).values[MAX_ANCHOR_MARKERS - 1]
    else:
        cut = -1.0
    for indices, color, _, _, _ in groups:
        indices = indices[match.argmax_iou[indices] >= cut]
        add_anchor_points(fig, anchors, indices, w, h, color, match.argmax_iou[indices])
    if selected is not None:
        add_rectangles(fig, anchors.boxes[selected : selected + 1] * scale, "#e53e3e", f"anchor {selected}", width=4)
    fig.update_layout(
        showlegend=True, legend=dict(orientation="h", y=-0.02, yanchor="top", x=0), clickmode="event+select"
    )
    return fig


def iou_heatmap(
    iou: Tensor,
    anchors: Any,
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
    (every non-zero cell past 20,000 cells) with the anchor index as customdata.
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
    if n_rows * n_cols > 20_000:
        cells = torch.nonzero(z > 0)
    else:
        cells = torch.stack(torch.meshgrid(torch.arange(n_rows), torch.arange(n_cols), indexing="ij"), -1).reshape(
            -1, 2
        )
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
    levels = anchors.level[columns].tolist()
    starts = [k for k in range(n_cols) if k == 0 or levels[k] != levels[k - 1]]
    separators, level_names = [], []  # laid out in one update below: each add_vline costs ~3 ms
    for k, end in zip(starts, [*starts[1:], n_cols], strict=True):
        if k > 0:
            separators.append(dict(type="line", x0=k - 0.5, x1=k - 0.5, y0=0, y1=1, yref="paper",
                                   line=dict(color="#2d3748", width=1, dash="dot")))  # fmt: skip
        if (end - k) * 12 >= n_cols or n_cols <= 64:  # a label only where it has room
            g = anchors.grids[levels[k]]
            level_names.append(dict(x=k - 0.5, y=1.0, yref="paper", yanchor="bottom", xanchor="left",
                                    text=f"level {levels[k]} ({g}x{g})", showarrow=False, font=dict(size=11)))  # fmt: skip
    if threshold is not None:
        above = torch.nonzero(z > threshold).double()
        cell_boxes = torch.stack([above[:, 1] - 0.5, above[:, 0] - 0.5, above[:, 1] + 0.5, above[:, 0] + 0.5], 1)
        add_rectangles(fig, cell_boxes, "#e53e3e", f"IoU > {threshold:g}", width=2)
    if selected is not None and bool((columns == selected).any()):
        k = int(torch.nonzero(columns == selected)[0])
        add_rectangles(fig, torch.tensor([[k - 0.5, -0.5, k + 0.5, n_rows - 0.5]]), "#d69e2e", f"anchor {selected}", 3)
    ticks = list(range(0, n_cols, max(1, n_cols // 24)))
    fig.update_layout(
        height=150 + 34 * max(1, n_rows),
        margin=dict(l=0, r=0, t=30, b=0),
        font=FONT,
        clickmode="event+select",
        dragmode=False,
        hovermode="closest",
        showlegend=False,
        shapes=separators,
        annotations=level_names,
    )
    tick_text = [str(c) for c in columns[ticks].tolist()] if ticks else []
    fig.update_xaxes(title="anchor", tickvals=ticks, ticktext=tick_text, showgrid=False, range=[-0.5, n_cols - 0.5])
    fig.update_yaxes(
        tickvals=list(range(n_rows)), ticktext=rows, autorange="reversed", showgrid=False, range=[n_rows - 0.5, -0.5]
    )
    return fig


def coverage_figure(best_iou: dict[str, Tensor], threshold: float, bins: int = 40) -> go.Figure:
    """Histograms of each object's best anchor IoU, one per anchor configuration."""
    fig = go.Figure()
    for k, (name, values) in enumerate(best_iou.items()):
        counts = torch.histc(values.float(), bins=bins, min=0.0, max=1.0)
        share = (counts / max(values.numel(), 1)).tolist()
        centres = ((torch.arange(bins) + 0.5) / bins).tolist()
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
    fig.update_layout(
        barmode="overlay",
        bargap=0.02,
        title="Best anchor IoU of each object",
        height=340,
        margin=dict(l=0, r=0, t=40, b=0),
        font=FONT,
        legend=dict(orientation="h", y=1.12, x=1, xanchor="right"),
        xaxis=dict(title="best IoU with any anchor", range=[0, 1]),
        yaxis=dict(title="share of objects", tickformat=".0%"),
        shapes=[dict(type="line", x0=threshold, x1=threshold, y0=0, y1=1, yref="paper",
                     line=dict(color="#c53030", dash="dash"))],
        annotations=[dict(x=threshold, y=1, yref="paper", text=f"threshold {threshold:g}", showarrow=False,
                          xanchor="left", yanchor="bottom")],
    )  # fmt: skip
    return fig


# --- losses ------------------------------------------------------------------------------------

BCE_COLOR, FOCAL_COLOR = "#2b6cb0", "#dd6b20"


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
    layout = dict(
        xaxis=dict(domain=[0, 0.46], **p_t_axis),
        xaxis2=dict(domain=[0.54, 1], anchor="y2", **p_t_axis),
        yaxis=dict(type="log", title="loss", range=[-4, 1], dtick=1),
        yaxis2=dict(title="weight", rangemode="tozero", anchor="x2"),
        annotations=[
            dict(text=text, x=x, y=1.0, xref="paper", yref="paper", xanchor="center", yanchor="bottom",
                 showarrow=False, font=dict(size=14))
            for text, x in (("loss of one class element", 0.23), ("weight focal loss puts on it", 0.77))
        ],
        height=380,
        margin=dict(l=0, r=0, t=40, b=0),
        font=FONT,
        legend=dict(orientation="h", y=-0.22, x=0),
    )  # fmt: skip
    return go.Figure(traces, layout=layout)


def cell_loss_map(anchors: Any, values: Tensor, level: int) -> Tensor:
    """(g, g) the sum of `values` (A,) over the shapes of each cell of one level (row-major)."""
    g = anchors.grids[level]
    sel = anchors.level == level
    flat = anchors.row[sel] * g + anchors.col[sel]
    return torch.zeros(g * g, dtype=torch.float64).index_add_(0, flat, values[sel].double()).reshape(g, g)


def loss_map_figure(
    image: Image.Image, anchors: Any, share: Tensor, level: int, title: str, height: int = 420
) -> go.Figure:
    """The image under a heat map of where a loss comes from on one level.

    Args:
        share: (A,) each anchor's share of the loss (sums to 1 over all anchors).
        level: the level drawn: each cell shows the summed share of its anchors.
    """
    w, h = image.size
    g = anchors.grids[level]
    cells = cell_loss_map(anchors, share, level) * 100
    fig = image_figure(image, title=title, height=height)
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


def loss_share_figure(parts: dict[str, dict[str, float]]) -> go.Figure:
    """Stacked bars: for each loss (row), the share of its total that each part contributes.

    Args:
        parts: loss name -> part name -> loss value (shares are computed here).
    """
    colors = {"box": "#718096", "positives": "#38a169", "hard negatives": "#dd6b20", "easy negatives": "#2b6cb0"}
    fig = go.Figure()
    names = list(parts)
    part_names = list(dict.fromkeys(p for v in parts.values() for p in v))
    for part in part_names:
        shares = [parts[n].get(part, 0.0) / max(sum(parts[n].values()), 1e-12) for n in names]
        values = [parts[n].get(part, 0.0) for n in names]
        fig.add_trace(
            go.Bar(
                y=names,
                x=shares,
                name=part,
                orientation="h",
                marker_color=colors.get(part),
                text=[f"{s:.0%}" if s >= 0.04 else "" for s in shares],
                textposition="inside",
                customdata=values,
                hovertemplate=f"%{{y}}: {part} %{{x:.1%}} (loss %{{customdata:.4g}})<extra></extra>",
            )
        )
    fig.update_layout(
        barmode="stack",
        height=110 + 50 * len(names),
        margin=dict(l=0, r=0, t=30, b=0),
        font=FONT,
        legend=dict(orientation="h", y=1.02, yanchor="bottom", x=0),
    )
    fig.update_xaxes(tickformat=".0%", range=[0, 1], title="share of the image's loss")
    return fig


def p_t_histogram(p_t: Tensor, positive: Tensor, bins: int = 50) -> go.Figure:
    """How sure the model is about each anchor: p_t of positives and negatives, log counts."""
    fig = go.Figure()
    edges = torch.linspace(0, 1, bins + 1)
    centers = ((edges[:-1] + edges[1:]) / 2).tolist()
    for name, mask, color in (("negatives", ~positive, BCE_COLOR), ("positives", positive, POSITIVE_COLOR)):
        counts = torch.histc(p_t[mask].float(), bins=bins, min=0, max=1)
        fig.add_trace(
            go.Bar(
                x=centers,
                y=counts.tolist(),
                name=f"{name} ({int(mask.sum()):,})",
                marker_color=color,
                opacity=0.75,
                width=1 / bins,
                hovertemplate=f"{name}<br>p_t %{{x:.2f}}: %{{y}} anchors<extra></extra>",
            )
        )
    fig.update_layout(
        barmode="overlay",
        height=300,
        margin=dict(l=0, r=0, t=10, b=0),
        font=FONT,
        legend=dict(orientation="h", y=1.08, x=1, xanchor="right"),
    )
    fig.update_xaxes(title="p_t of the anchor's worst class (1 = easy)", range=[0, 1])
    fig.update_yaxes(title="anchors", type="log", dtick=1)
    return fig


# --- detections and NMS --------------------------------------------------------------------------


OUTCOME_COLORS = {"TP": "#38a169", "FP": "#e53e3e", "duplicate": "#dd6b20", "ignored (difficult)": "#a0aec0"}
MISSED_COLOR = "#d53f8c"


def detections_figure(
    image: Image.Image,
    trace: Any,
    class_names: Sequence[str],
    show_suppressed: bool = True,
    gt_boxes: Tensor | None = None,
    gt_labels: Tensor | None = None,
    height: int = 560,
    outcome: Tensor | None = None,
    missed: Tensor | None = None,
    upto: int | None = None,
    selected: int | None = None,
) -> go.Figure:
    """Detections and what NMS did to the other candidates (pixel boxes).

    Args:
        trace: an NMSTrace in pixels (`to_pixels`), M candidates best first: kept boxes solid
            with "class score" tags, suppressed ones dotted and faded, each with a hover naming
            the box that suppressed it. Markers at the box centres carry the candidate's
            position as customdata (for clicks).
        gt_boxes, gt_labels: (G, 4), (G,) ground truth, drawn as thin light dashes.
        outcome: (M,) int64 evaluation status of each candidate (detviz.evaluate TP, FP,
            DUPLICATE, IGNORED; -1 for candidates that are not detections): kept boxes are then
            coloured by outcome instead of by class.
        missed: (G,) bool objects no detection found, drawn thick dashed with a "missed" tag.
        upto: NMS step-through: only the first `upto` candidates are drawn, the last of them
            stressed, with a line to the kept box that suppressed it.
        selected: a candidate to stress (clicked).
    """
    from detviz.evaluate import STATUS_NAMES
    from detviz.postprocess import KEPT, SUPPRESSED

    fig = image_figure(image, height=height)
    m = trace.status.shape[0]
    shown_upto = m if upto is None else max(0, min(int(upto), m))
    visible = torch.arange(m) < shown_upto
    status = trace.status
    annotations = []
    if gt_boxes is not None and gt_boxes.shape[0]:
        add_rectangles(fig, gt_boxes, "#f7fafc", "ground truth", width=2, dash="dash")
        if missed is not None and bool(missed.any()):
            gone = torch.nonzero(missed).flatten()
            add_rectangles(fig, gt_boxes[gone], MISSED_COLOR, "missed object", width=3, dash="dash")
            for g in gone.tolist():
                label = int(gt_labels[g]) if gt_labels is not None else -1
                name = class_names[label] if 0 <= label < len(class_names) else "object"
                annotations.append(_tag(gt_boxes[g], f"missed {name}", MISSED_COLOR, anchor="top"))

    kept_mask = visible & (status == KEPT)
    gone_mask = visible & (status == SUPPRESSED) if show_suppressed else torch.zeros(m, dtype=torch.bool)
    for label in torch.unique(trace.labels[visible]).tolist():
        name = class_names[label] if 0 <= label < len(class_names) else f"class {label}"
        mine = trace.labels == label
        gone = torch.nonzero(mine & gone_mask).flatten()
        if gone.numel():
            add_rectangles(fig, trace.boxes[gone], class_color(label), f"{name}: suppressed", 1, "dot", 0.6)
        if outcome is None:
            kept = torch.nonzero(mine & kept_mask).flatten()
            if kept.numel():
                add_rectangles(fig, trace.boxes[kept], class_color(label), f"{name}: kept", width=3)
    if outcome is not None:
        for code, name in enumerate(STATUS_NAMES):
            kept = torch.nonzero(kept_mask & (outcome == code)).flatten()
            if kept.numel():
                add_rectangles(fig, trace.boxes[kept], OUTCOME_COLORS[name], name, width=3)
    for i in torch.nonzero(kept_mask).flatten().tolist():
        label = int(trace.labels[i])
        name = class_names[label] if 0 <= label < len(class_names) else f"class {label}"
        color = class_color(label) if outcome is None else OUTCOME_COLORS[STATUS_NAMES[int(outcome[i])]]
        annotations.append(_tag(trace.boxes[i], f"{name} {float(trace.scores[i]):.2f}", color))

    stress = [k for k in (shown_upto - 1 if upto is not None else None, selected) if k is not None and 0 <= k < m]
    for k in dict.fromkeys(stress):
        add_rectangles(fig, trace.boxes[k : k + 1], "#ffd400", f"candidate {k}", width=5)
        by = int(trace.suppressed_by[k])
        if by >= 0:
            a = ((trace.boxes[k, :2] + trace.boxes[k, 2:]) / 2).tolist()
            b = ((trace.boxes[by, :2] + trace.boxes[by, 2:]) / 2).tolist()
            fig.add_trace(go.Scatter(x=[a[0], b[0]], y=[a[1], b[1]], mode="lines+markers", hoverinfo="skip",
                                     line=dict(color="#ffd400", width=2, dash="dot"),
                                     name=f"suppressed by candidate {by}"))  # fmt: skip

    shown = torch.nonzero(kept_mask | gone_mask).flatten()
    if shown.numel():
        centers = ((trace.boxes[shown, :2] + trace.boxes[shown, 2:]) / 2).double().numpy()
        text = []
        for i in shown.tolist():
            label = int(trace.labels[i])
            name = class_names[label] if 0 <= label < len(class_names) else f"class {label}"
            line = f"candidate {i}: {name} {float(trace.scores[i]):.3f}, anchor {int(trace.anchor[i])}"
            if int(status[i]) == SUPPRESSED:
                by = int(trace.suppressed_by[i])
                line += f"<br>suppressed by candidate {by} ({float(trace.scores[by]):.3f}), IoU {float(trace.suppression_iou[i]):.2f}"
            else:
                line += "<br>kept" + (f": {STATUS_NAMES[int(outcome[i])]}" if outcome is not None else "")
            text.append(line)
        fig.add_trace(
            go.Scatter(
                x=centers[:, 0],
                y=centers[:, 1],
                mode="markers",
                text=text,
                name="candidates",
                marker=dict(
                    size=8,
                    color=[class_color(int(trace.labels[i])) for i in shown.tolist()],
                    symbol=["circle" if int(status[i]) == KEPT else "x" for i in shown.tolist()],
                    line=dict(color="white", width=1),
                ),
                customdata=shown.numpy(),
                hovertemplate="%{text}<extra></extra>",
                showlegend=False,
            )
        )
    fig.update_layout(
        showlegend=True,
        legend=dict(orientation="h", y=-0.02, yanchor="top", x=0),
        annotations=annotations,
    )
    return fig


def _tag(box: Tensor, text: str, color: str, anchor: str = "bottom") -> dict:
    """A filled text tag at a pixel box's top-left corner (above it, or inside with anchor "top")."""
    x1, y1 = box[:2].tolist()
    return dict(x=x1, y=y1, text=text, showarrow=False, xanchor="left", yanchor=anchor,
                font=dict(color=text_color(color), size=11), bgcolor=color, borderpad=1)  # fmt: skip


def class_scores_figure(scores: Tensor, class_names: Sequence[str], chosen: int | None = None) -> go.Figure:
    """One anchor's score for every class (sigmoid of its logits), the chosen class stressed.

    scores: (C,) in [0, 1] (background excluded)."""
    values = scores.double().numpy()
    colors = [class_color(c) if c == chosen else "#cbd5e0" for c in range(len(values))]
    fig = go.Figure(go.Bar(x=list(class_names), y=values, marker_color=colors,
                           hovertemplate="%{x}: %{y:.4f}<extra></extra>"))  # fmt: skip
    fig.update_layout(height=240, margin=dict(l=0, r=0, t=30, b=0), font=FONT, title="Score per class",
                      yaxis=dict(range=[0, 1], title="sigmoid(logit)"))  # fmt: skip
    return fig


def pr_curves_figure(curves: dict[str, Any], height: int = 380, title: str = "Precision-recall") -> go.Figure:
    """Precision against recall for each named ClassCurve; hover shows the score threshold that
    gives each point (the score of the detection that reaches it)."""
    fig = go.Figure()
    for k, (name, curve) in enumerate(curves.items()):
        if curve.recall.numel() == 0 or bool(torch.isnan(curve.recall).all()):
            continue
        recall = np.concatenate([[0.0], curve.recall.double().numpy()])
        precision = np.concatenate([[1.0], curve.precision.double().numpy()])
        scores = np.concatenate([[np.nan], curve.scores.double().numpy()])
        fig.add_trace(go.Scatter(
            x=recall, y=precision, mode="lines", name=name, line=dict(color=PALETTE[k % len(PALETTE)], width=2),
            customdata=scores, line_shape="hv",
            hovertemplate=f"{name}<br>recall %{{x:.3f}}, precision %{{y:.3f}}<br>score threshold %{{customdata:.3f}}"
                          "<extra></extra>",
        ))  # fmt: skip
    fig.update_layout(title=title, height=height, margin=dict(l=0, r=0, t=40, b=0), font=FONT,
                      xaxis=dict(title="recall", range=[0, 1.01]), yaxis=dict(title="precision", range=[0, 1.02]),
                      legend=dict(orientation="v", x=1.01, y=1))  # fmt: skip
    return fig


def ap_bar_figure(ap: Tensor, class_names: Sequence[str], title: str = "AP per class") -> go.Figure:
    """A bar per class with its AP (classes without ground truth left out), best first."""
    order = [c for c in torch.argsort(-torch.nan_to_num(ap, nan=-1.0)).tolist() if not torch.isnan(ap[c])]
    fig = go.Figure(go.Bar(
        x=[class_names[c] for c in order], y=[float(ap[c]) for c in order],
        marker_color=[class_color(c) for c in order], hovertemplate="%{x}: AP %{y:.3f}<extra></extra>",
    ))  # fmt: skip
    fig.update_layout(title=title, height=300, margin=dict(l=0, r=0, t=40, b=0), font=FONT,
                      yaxis=dict(range=[0, 1], title="AP"))  # fmt: skip
    return fig


def confusion_figure(matrix: Tensor, class_names: Sequence[str]) -> go.Figure:
    """Counts of (true class, predicted class), with a background row and a missed column."""
    rows = [*class_names, "background"]
    cols = [*class_names, "missed"]
    z = matrix.double().numpy()
    share = z / np.maximum(z.sum(1, keepdims=True), 1)
    fig = go.Figure(go.Heatmap(
        z=share, x=cols, y=rows, customdata=z, colorscale="Blues", zmin=0, zmax=1,
        text=z.astype(int), texttemplate="%{text}", colorbar=dict(title="share of row", tickformat=".0%"),
        hovertemplate="true %{y}, predicted %{x}: %{customdata:.0f} (%{z:.1%} of the row)<extra></extra>",
    ))  # fmt: skip
    fig.update_layout(title="Which classes get mixed up", height=120 + 34 * len(rows), font=FONT,
                      margin=dict(l=0, r=0, t=40, b=0), xaxis=dict(title="predicted"),
                      yaxis=dict(title="true", autorange="reversed"))  # fmt: skip
    return fig


def error_breakdown_figure(delta_map: dict[str, float], counts: Tensor) -> go.Figure:
    """mAP each error type would add if fixed (bars), with how many errors of that type (hover).

    counts: (6,) totals in detviz.evaluate.ERROR_TYPES order."""
    from detviz.evaluate import ERROR_TYPES

    names = list(ERROR_TYPES)
    values = [max(0.0, delta_map.get(n, 0.0)) if delta_map.get(n) == delta_map.get(n) else 0.0 for n in names]
    fig = go.Figure(go.Bar(
        x=values, y=names, orientation="h", customdata=counts.numpy(),
        marker_color=["#805ad5", "#dd6b20", "#b83280", "#d69e2e", "#e53e3e", MISSED_COLOR],
        hovertemplate="%{y}: %{customdata} errors, fixing them adds %{x:.3f} mAP<extra></extra>",
        text=[f"+{v:.3f} ({int(c)})" for v, c in zip(values, counts.tolist(), strict=True)], textposition="outside",
    ))  # fmt: skip
    fig.update_layout(title="mAP gained by fixing each kind of error (count in brackets)", height=300, font=FONT,
                      margin=dict(l=0, r=40, t=40, b=0), xaxis=dict(title="mAP added"),
                      yaxis=dict(autorange="reversed"))  # fmt: skip
    return fig


def surface_figure(
    values: Tensor, score_thresholds: Sequence[float], nms_ious: Sequence[float], current: tuple[float, float]
) -> go.Figure:
    """mAP over (score threshold, NMS IoU) as a heat map, the current setting marked.

    values: (S, N) for score_thresholds x nms_ious."""
    z = values.double().numpy()
    best = np.unravel_index(np.nanargmax(z), z.shape) if np.isfinite(z).any() else (0, 0)
    fig = go.Figure(go.Heatmap(
        z=z, x=[f"{v:g}" for v in nms_ious], y=[f"{v:g}" for v in score_thresholds], colorscale="Viridis",
        texttemplate="%{z:.3f}", colorbar=dict(title="mAP"),
        hovertemplate="score threshold %{y}, NMS IoU %{x}: mAP %{z:.4f}<extra></extra>",
    ))  # fmt: skip
    fig.add_trace(go.Scatter(
        x=[f"{nms_ious[best[1]]:g}"], y=[f"{score_thresholds[best[0]]:g}"], mode="markers", name="best",
        marker=dict(symbol="star", size=16, color="white", line=dict(color="black", width=1)), hoverinfo="skip",
    ))  # fmt: skip
    fig.update_layout(title=f"mAP over thresholds (now: score {current[0]:g}, NMS IoU {current[1]:g}; star: best)",
                      height=360, font=FONT, margin=dict(l=0, r=0, t=40, b=0),
                      xaxis=dict(title="NMS IoU", type="category"),
                      yaxis=dict(title="score threshold", type="category"), showlegend=False)  # fmt: skip
    return fig
