"""Epoch snapshots: what a model predicted on one image after one epoch of training, with the
ground truth, so that scrubbing through the epochs shows detections form.

SSD kinds show their detections (box, "class score" tag), "largest" its one box, both over the
image with the ground truth as light dashes (the style of `detections_figure`); "multilabel" shows
a bar per class (its probability) with the classes truly present marked.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

import plotly.graph_objects as go
import torch
from PIL import Image
from torch import Tensor

from detviz.boxes import to_pixel_boxes
from detviz.figures.detections import GROUND_TRUTH_COLOR
from detviz.figures.image import ImageEncoder, add_rectangles, image_data_uri, image_figure, tag
from detviz.figures.style import ACCENT, MUTED, REFERENCE, chart_layout, class_color, class_name, legend

if TYPE_CHECKING:
    from detviz.train.snapshots import ImageSnapshot

PRESENT_THRESHOLD = 0.5  # a multi-label probability above this says "present" (sigmoid's midpoint)


class _SnapshotInfo(NamedTuple):
    boxes: Tensor  # (N, 4) pixel xyxy of the predicted boxes, best first
    labels: list[int]  # (N,) their classes
    tags: list[str]  # (N,) "class score"
    title: str


def _get_snapshot_info(
    snapshot: ImageSnapshot, kind: str, epoch: int, width: int, height: int, class_names: Sequence[str]
) -> _SnapshotInfo:
    """What `snapshot_figure` draws for an SSD or "largest" snapshot: pixel boxes, tags, title."""
    boxes = to_pixel_boxes(snapshot.boxes, width, height)
    labels = [int(v) for v in snapshot.labels.tolist()]
    tags = [f"{class_name(class_names, c)} {s:.2f}" for c, s in zip(labels, snapshot.scores.tolist(), strict=True)]
    if kind == "largest":
        title = f"Epoch {epoch + 1}: largest object {tags[0]}" if tags else f"Epoch {epoch + 1}"
    else:
        count = f"{len(tags)} detection{'s' if len(tags) != 1 else ''}" if tags else "no detection"
        title = f"Epoch {epoch + 1}: {count}"
    return _SnapshotInfo(boxes, labels, tags, title)


class _ProbabilitiesInfo(NamedTuple):
    probabilities: list[float]  # (C,)
    present: list[bool]  # (C,) the class is in the image (ground truth)
    predicted: list[bool]  # (C,) probability above PRESENT_THRESHOLD
    title: str


def _get_probabilities_info(
    probabilities: Tensor, gt_labels: Tensor | None, epoch: int, num_classes: int
) -> _ProbabilitiesInfo:
    """What `snapshot_figure` draws for a multi-label snapshot: bars, truth, title."""
    values = [float(v) for v in probabilities.tolist()]
    truth = set(gt_labels.tolist()) if gt_labels is not None else set()
    present = [c in truth for c in range(num_classes)]
    predicted = [v > PRESENT_THRESHOLD for v in values]
    right = sum(p == t for p, t in zip(predicted, present, strict=True))
    return _ProbabilitiesInfo(values, present, predicted, f"Epoch {epoch + 1}: {right} of {num_classes} classes right")


def snapshot_figure(
    image: Image.Image,
    snapshot: ImageSnapshot,
    class_names: Sequence[str],
    kind: str,
    epoch: int,
    gt_boxes: Tensor | None = None,
    gt_labels: Tensor | None = None,
    height: int = 480,
    *,
    encode: ImageEncoder = image_data_uri,
) -> go.Figure:
    """One image's snapshot at one epoch.

    Args:
        image: the image (its pixel size scales the snapshot's normalized boxes).
        snapshot: detviz.train.snapshots.ImageSnapshot of that image. kind: the model kind.
        epoch: 0-based epoch (shown 1-based in the title).
        gt_boxes, gt_labels: (G, 4) pixel xyxy, (G,) ground truth: light dashes on the image; for
            "multilabel", the classes present, marked on their bars.
        encode: the image -> data URI function (see detviz.figures.image).

    Returns:
        SSD kinds and "largest": the image with the predicted boxes (class colours, "class score"
        tags) over the ground truth. "multilabel": probability bars per class (filled when above
        PRESENT_THRESHOLD), a diamond on the classes present, the threshold as a line.
    """
    if kind == "multilabel":
        return _probabilities_figure(snapshot, class_names, epoch, gt_labels, height)
    info = _get_snapshot_info(snapshot, kind, epoch, image.width, image.height, class_names)
    fig = image_figure(image, title=info.title, height=height, encode=encode)
    if gt_boxes is not None and gt_boxes.shape[0]:
        add_rectangles(fig, gt_boxes, GROUND_TRUTH_COLOR, "ground truth", width=2, dash="dash")
    for label in dict.fromkeys(info.labels):
        mine = torch.tensor([c == label for c in info.labels])
        add_rectangles(fig, info.boxes[mine], class_color(label), class_name(class_names, label), width=3)
    tags = [tag(b, t, class_color(c)) for b, t, c in zip(info.boxes, info.tags, info.labels, strict=True)]
    fig.update_layout(showlegend=True, legend=legend("below"), annotations=tags)
    return fig


def _probabilities_figure(
    snapshot: ImageSnapshot, class_names: Sequence[str], epoch: int, gt_labels: Tensor | None, height: int
) -> go.Figure:
    probabilities = snapshot.probabilities if snapshot.probabilities is not None else torch.zeros(0)
    names = [class_name(class_names, c) for c in range(probabilities.shape[0])]
    info = _get_probabilities_info(probabilities, gt_labels, epoch, len(names))
    fig = go.Figure(
        go.Bar(x=names, y=info.probabilities, name="probability",
               marker_color=[ACCENT if p else MUTED for p in info.predicted],
               hovertemplate="%{x}: %{y:.3f}<extra></extra>")
    )  # fmt: skip
    shown = [n for n, p in zip(names, info.present, strict=True) if p]
    fig.add_trace(go.Scatter(x=shown, y=[1.0] * len(shown), mode="markers", name="in the image (ground truth)",
                             marker=dict(symbol="diamond", size=12, color=REFERENCE), hoverinfo="skip"))  # fmt: skip
    fig.add_hline(y=PRESENT_THRESHOLD, line=dict(color=REFERENCE, dash="dot", width=1))
    fig.update_layout(chart_layout(info.title, height, legend=legend("top right"), showlegend=True,
                                   yaxis=dict(range=[0, 1.08], title="probability")))  # fmt: skip
    return fig
