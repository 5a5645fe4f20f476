"""Detections and NMS: what the detector found on the image, what NMS did to the other
candidates and why, how the evaluation scored each detection, and one anchor's class scores.

`detections_figure` is assembled from small builders, one per layer, bottom to top: ground
truth (and missed objects), candidate boxes, the NMS step being looked at, clickable markers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

import plotly.graph_objects as go
import torch
from PIL import Image
from torch import Tensor

from detviz.codes import DETECTION_OUTCOMES, NMSDecision, Outcome
from detviz.figures.image import ImageEncoder, add_rectangles, image_data_uri, image_figure, tag
from detviz.figures.style import HIGHLIGHT, MISSED_COLOR, MUTED, chart_layout, class_color, class_name, legend

if TYPE_CHECKING:
    from detviz.postprocess import NMSTrace

GROUND_TRUTH_COLOR = "#f7fafc"  # light dashes: visible on photographs, quieter than the detections


class _DetectionsInfo(NamedTuple):
    kept: Tensor  # (M,) bool, the kept candidates drawn
    suppressed: Tensor  # (M,) bool, the suppressed candidates drawn
    stressed: list[int]  # candidates drawn thick: the step-through's current one, the selected one


def _get_detections_info(
    trace: NMSTrace, show_suppressed: bool, upto: int | None, selected: int | None
) -> _DetectionsInfo:
    """Which candidates `detections_figure` draws (see its Args)."""
    m = trace.status.shape[0]
    shown_upto = m if upto is None else max(0, min(int(upto), m))
    visible = torch.arange(m) < shown_upto
    kept = visible & (trace.status == NMSDecision.KEPT)
    suppressed = (
        visible & (trace.status == NMSDecision.SUPPRESSED) if show_suppressed else torch.zeros(m, dtype=torch.bool)
    )
    stressed = [k for k in (shown_upto - 1 if upto is not None else None, selected) if k is not None and 0 <= k < m]
    return _DetectionsInfo(kept, suppressed, list(dict.fromkeys(stressed)))


def _add_ground_truth(
    fig: go.Figure,
    gt_boxes: Tensor | None,
    gt_labels: Tensor | None,
    missed: Tensor | None,
    class_names: Sequence[str],
) -> list[dict]:
    """Draws the ground truth (thin light dashes) and the missed objects (thick); returns the
    "missed <class>" tags."""
    if gt_boxes is None or not gt_boxes.shape[0]:
        return []
    add_rectangles(fig, gt_boxes, GROUND_TRUTH_COLOR, "ground truth", width=2, dash="dash")
    if missed is None or not bool(missed.any()):
        return []
    gone = torch.nonzero(missed).flatten()
    add_rectangles(fig, gt_boxes[gone], MISSED_COLOR, "missed object", width=3, dash="dash")
    labels = [int(gt_labels[g]) if gt_labels is not None else -1 for g in gone.tolist()]
    return [tag(gt_boxes[g], f"missed {class_name(class_names, label, 'object')}", MISSED_COLOR, anchor="top")
            for g, label in zip(gone.tolist(), labels, strict=True)]  # fmt: skip


def _add_candidates(
    fig: go.Figure, trace: NMSTrace, info: _DetectionsInfo, class_names: Sequence[str], outcome: Tensor | None
) -> list[dict]:
    """Draws the suppressed boxes (dotted, per class) and the kept ones (per class, or per
    outcome); returns the kept boxes' "<class> <score>" tags."""
    for label in torch.unique(trace.labels[info.kept | info.suppressed]).tolist():
        name = class_name(class_names, label)
        mine = trace.labels == label
        gone = torch.nonzero(mine & info.suppressed).flatten()
        if gone.numel():
            add_rectangles(fig, trace.boxes[gone], class_color(label), f"{name}: suppressed", 1, "dot", 0.6)
        if outcome is None:
            kept = torch.nonzero(mine & info.kept).flatten()
            if kept.numel():
                add_rectangles(fig, trace.boxes[kept], class_color(label), f"{name}: kept", width=3)
    if outcome is not None:
        for code in DETECTION_OUTCOMES:
            kept = torch.nonzero(info.kept & (outcome == code)).flatten()
            if kept.numel():
                add_rectangles(fig, trace.boxes[kept], code.colour, code.label, width=3)
    tags = []
    for i in torch.nonzero(info.kept).flatten().tolist():
        label = int(trace.labels[i])
        color = class_color(label) if outcome is None else Outcome(int(outcome[i])).colour
        tags.append(tag(trace.boxes[i], f"{class_name(class_names, label)} {float(trace.scores[i]):.2f}", color))
    return tags


def _add_step(fig: go.Figure, trace: NMSTrace, stressed: Sequence[int]) -> None:
    """Draws the stressed candidates thick, each with a dotted line to the box that suppressed it."""
    for k in stressed:
        add_rectangles(fig, trace.boxes[k : k + 1], HIGHLIGHT, f"candidate {k}", width=5)
        by = int(trace.suppressed_by[k])
        if by >= 0:
            a = ((trace.boxes[k, :2] + trace.boxes[k, 2:]) / 2).tolist()
            b = ((trace.boxes[by, :2] + trace.boxes[by, 2:]) / 2).tolist()
            fig.add_trace(go.Scatter(x=[a[0], b[0]], y=[a[1], b[1]], mode="lines+markers", hoverinfo="skip",
                                     line=dict(color=HIGHLIGHT, width=2, dash="dot"),
                                     name=f"suppressed by candidate {by}"))  # fmt: skip


def _candidate_hover(trace: NMSTrace, i: int, class_names: Sequence[str], outcome: Tensor | None) -> str:
    """What hovering candidate `i`'s marker says: class, score, anchor, and what NMS (and the
    evaluation) decided."""
    name = class_name(class_names, int(trace.labels[i]))
    line = f"candidate {i}: {name} {float(trace.scores[i]):.3f}, anchor {int(trace.anchor[i])}"
    if int(trace.status[i]) == NMSDecision.SUPPRESSED:
        by = int(trace.suppressed_by[i])
        return (
            line
            + f"<br>suppressed by candidate {by} ({float(trace.scores[by]):.3f}), IoU {float(trace.suppression_iou[i]):.2f}"
        )
    return line + "<br>kept" + (f": {Outcome(int(outcome[i])).label}" if outcome is not None else "")


def _add_markers(
    fig: go.Figure, trace: NMSTrace, info: _DetectionsInfo, class_names: Sequence[str], outcome: Tensor | None
) -> None:
    """Clickable markers at the drawn candidates' centres, the candidate's position as customdata."""
    shown = torch.nonzero(info.kept | info.suppressed).flatten()
    if not shown.numel():
        return
    centers = ((trace.boxes[shown, :2] + trace.boxes[shown, 2:]) / 2).double().numpy()
    fig.add_trace(
        go.Scatter(
            x=centers[:, 0],
            y=centers[:, 1],
            mode="markers",
            text=[_candidate_hover(trace, i, class_names, outcome) for i in shown.tolist()],
            name="candidates",
            marker=dict(
                size=8,
                color=[class_color(int(trace.labels[i])) for i in shown.tolist()],
                symbol=["circle" if int(trace.status[i]) == NMSDecision.KEPT else "x" for i in shown.tolist()],
                line=dict(color="white", width=1),
            ),
            customdata=shown.numpy(),
            hovertemplate="%{text}<extra></extra>",
            showlegend=False,
        )
    )


def detections_figure(
    image: Image.Image,
    trace: NMSTrace,
    class_names: Sequence[str],
    show_suppressed: bool = True,
    gt_boxes: Tensor | None = None,
    gt_labels: Tensor | None = None,
    height: int = 560,
    outcome: Tensor | None = None,
    missed: Tensor | None = None,
    upto: int | None = None,
    selected: int | None = None,
    *,
    encode: ImageEncoder = image_data_uri,
) -> go.Figure:
    """Detections and what NMS did to the other candidates (pixel boxes).

    Args:
        trace: an NMSTrace in pixels (`to_pixels`), M candidates best first: kept boxes solid
            with "class score" tags, suppressed ones dotted and faded, each with a hover naming
            the box that suppressed it. Markers at the box centres carry the candidate's
            position as customdata (for clicks).
        gt_boxes, gt_labels: (G, 4), (G,) ground truth, drawn as thin light dashes.
        outcome: (M,) int64 detviz.codes.Outcome of each candidate (Outcome.NOT_DETECTION for
            candidates that are not detections): kept boxes are then coloured by outcome
            instead of by class.
        missed: (G,) bool objects no detection found, drawn thick dashed with a "missed" tag.
        upto: NMS step-through: only the first `upto` candidates are drawn, the last of them
            stressed, with a line to the kept box that suppressed it.
        selected: a candidate to stress (clicked).
        encode: the image -> data URI function (see detviz.figures.image).
    """
    fig = image_figure(image, height=height, encode=encode)
    info = _get_detections_info(trace, show_suppressed, upto, selected)
    annotations = _add_ground_truth(fig, gt_boxes, gt_labels, missed, class_names)
    annotations += _add_candidates(fig, trace, info, class_names, outcome)
    _add_step(fig, trace, info.stressed)
    _add_markers(fig, trace, info, class_names, outcome)
    fig.update_layout(showlegend=True, legend=legend("below"), annotations=annotations)
    return fig


def class_scores_figure(scores: Tensor, class_names: Sequence[str], chosen: int | None = None) -> go.Figure:
    """One anchor's score for every class (sigmoid of its logits), the chosen class stressed.

    scores: (C,) in [0, 1] (background excluded)."""
    values = scores.double().numpy()
    colors = [class_color(c) if c == chosen else MUTED for c in range(len(values))]
    fig = go.Figure(go.Bar(x=list(class_names), y=values, marker_color=colors,
                           hovertemplate="%{x}: %{y:.4f}<extra></extra>"))  # fmt: skip
    fig.update_layout(chart_layout("Score per class", 240, top=30, yaxis=dict(range=[0, 1], title="sigmoid(logit)")))
    return fig
