"""Detections and NMS: what the detector found on the image, what NMS did to the other
candidates and why, how the evaluation scored each detection, and one anchor's class scores.

`detections_figure` is assembled from small builders, one per layer, bottom to top: ground
truth (and missed objects), candidate boxes, the NMS step being looked at, clickable markers.
Each appends its traces to a list and the figure is built once, `unchecked`: a slider move
rebuilds it, and plotly's validation would be most of that move's time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

import plotly.graph_objects as go
import torch
from PIL import Image
from torch import Tensor

from detviz.codes import DETECTION_OUTCOMES, NMSDecision, Outcome
from detviz.figures.image import ImageEncoder, image_data_uri, image_layout, image_trace, rectangles, tag
from detviz.figures.style import (
    HIGHLIGHT,
    MISSED_COLOR,
    MUTED,
    chart_layout,
    class_color,
    class_name,
    legend,
    unchecked,
    unchecked_figure,
)

if TYPE_CHECKING:
    from detviz.postprocess import NMSTrace

GROUND_TRUTH_COLOR = "#f7fafc"  # light dashes: visible on photographs, quieter than the detections
MAX_SUPPRESSED_DRAWN = 30  # more dotted outlines than this hide the image (low score threshold)
TAG_FONT_SIZE = 11  # the "class score" tags (detviz.figures.image.tag's default)
# a tag's size on screen, per font pixel: a character's mean width, the line height plus padding
TAG_CHAR_WIDTH, TAG_HEIGHT = 0.6, 1.45
# the legend below and a column narrower than height x aspect shrink the image: count on this
# share of the figure's height per image height when telling which tags would overlap
SCALE_SHARE = 0.75
NOTE_LINE = 17  # screen pixels above the image per line of the "N more not drawn" note
NOT_DRAWN_NOTE = "not drawn"  # the note annotation's name, for finding it
NOTE_COLOR = "#4a5568"  # grey text on the page background


class _DetectionsInfo(NamedTuple):
    kept: Tensor  # (M,) bool, the kept candidates drawn
    suppressed: Tensor  # (M,) bool, the suppressed candidates drawn
    stressed: list[int]  # candidates drawn thick: the step-through's current one, the selected one
    labelled: list[int]  # candidates with a "class score" tag, best first
    suppressed_left_out: int  # suppressed candidates decided so far but not drawn (over the cap)
    over_limit: int  # candidates decided so far that NMS kept but max_detections dropped (never drawn)
    labels_hidden: int  # kept candidates whose tag would have covered a better one's


def _get_detections_info(
    trace: NMSTrace,
    show_suppressed: bool,
    upto: int | None,
    selected: int | None,
    *,
    max_suppressed: int | None = MAX_SUPPRESSED_DRAWN,
    label_all: bool = False,
    class_names: Sequence[str] = (),
    tag_size: tuple[float, float] = (0.0, 0.0),
) -> _DetectionsInfo:
    """Which candidates `detections_figure` draws and tags (see its Args); `tag_size` is a tag's
    (width per character, height) in image pixels, for telling which tags would overlap."""
    m = trace.status.shape[0]
    shown_upto = m if upto is None else max(0, min(int(upto), m))
    visible = torch.arange(m) < shown_upto
    kept = visible & (trace.status == NMSDecision.KEPT)
    suppressed = visible & (trace.status == NMSDecision.SUPPRESSED)
    decided = int(suppressed.sum())
    if not show_suppressed:
        suppressed = torch.zeros(m, dtype=torch.bool)
    elif max_suppressed is not None and decided > max_suppressed:
        order = torch.sort(trace.scores.masked_fill(~suppressed, -torch.inf), descending=True, stable=True).indices
        suppressed = torch.zeros(m, dtype=torch.bool)
        suppressed[order[:max_suppressed]] = True
    left_out = decided - int(suppressed.sum()) if show_suppressed else 0
    over_limit = int((visible & (trace.status == NMSDecision.OVER_LIMIT)).sum())
    stressed = [k for k in (shown_upto - 1 if upto is not None else None, selected) if k is not None and 0 <= k < m]
    if label_all:
        labelled, hidden = _by_score(trace, kept | suppressed), 0
    else:
        labelled = _unoverlapped(trace, _by_score(trace, kept), class_names, tag_size)
        hidden = int(kept.sum()) - len(labelled)
    return _DetectionsInfo(kept, suppressed, list(dict.fromkeys(stressed)), labelled, left_out, over_limit, hidden)


def _by_score(trace: NMSTrace, chosen: Tensor) -> list[int]:
    """Positions of the chosen (M,) bool candidates, best score first (ties: trace order)."""
    positions = torch.nonzero(chosen).flatten()
    return positions[torch.sort(trace.scores[positions], descending=True, stable=True).indices].tolist()


def _tag_text(trace: NMSTrace, i: int, class_names: Sequence[str]) -> str:
    return f"{class_name(class_names, int(trace.labels[i]))} {float(trace.scores[i]):.2f}"


def _unoverlapped(
    trace: NMSTrace, order: list[int], class_names: Sequence[str], tag_size: tuple[float, float]
) -> list[int]:
    """The candidates of `order` (best first) whose tag, above the box's top-left corner, covers
    no better candidate's tag: at a high NMS IoU the kept boxes pile up and so would their tags.
    A loop over the kept boxes (at most max_detections, 100 by default) with a check against
    the tags placed so far: quadratic in a small number."""
    char_w, tag_h = tag_size
    placed: list[tuple[float, float, float, float]] = []
    chosen = []
    for i in order:
        x1, y1 = float(trace.boxes[i, 0]), float(trace.boxes[i, 1])
        rect = (x1, y1 - tag_h, x1 + char_w * (len(_tag_text(trace, i, class_names)) + 1), y1)
        if any(rect[0] < b[2] and b[0] < rect[2] and rect[1] < b[3] and b[1] < rect[3] for b in placed):
            continue
        placed.append(rect)
        chosen.append(i)
    return chosen


def _add_ground_truth(
    traces: list,
    gt_boxes: Tensor | None,
    gt_labels: Tensor | None,
    missed: Tensor | None,
    class_names: Sequence[str],
) -> list[dict]:
    """Draws the ground truth (thin light dashes) and the missed objects (thick); returns the
    "missed <class>" tags."""
    if gt_boxes is None or not gt_boxes.shape[0]:
        return []
    traces.append(rectangles(gt_boxes, GROUND_TRUTH_COLOR, "ground truth", width=2, dash="dash"))
    if missed is None or not bool(missed.any()):
        return []
    gone = torch.nonzero(missed).flatten()
    traces.append(rectangles(gt_boxes[gone], MISSED_COLOR, "missed object", width=3, dash="dash"))
    labels = [int(gt_labels[g]) if gt_labels is not None else -1 for g in gone.tolist()]
    return [tag(gt_boxes[g], f"missed {class_name(class_names, label, 'object')}", MISSED_COLOR, anchor="top")
            for g, label in zip(gone.tolist(), labels, strict=True)]  # fmt: skip


def _add_candidates(
    traces: list, trace: NMSTrace, info: _DetectionsInfo, class_names: Sequence[str], outcome: Tensor | None
) -> list[dict]:
    """Draws the suppressed boxes (thin dots, per class) and the kept ones (per class, or per
    outcome); returns the labelled candidates' "<class> <score>" tags, the suppressed ones'
    (label_all) first, so the kept ones' lie on top."""
    for label in torch.unique(trace.labels[info.kept | info.suppressed]).tolist():
        name = class_name(class_names, label)
        mine = trace.labels == label
        gone = torch.nonzero(mine & info.suppressed).flatten()
        if gone.numel():
            traces.append(rectangles(trace.boxes[gone], class_color(label), f"{name}: suppressed", 1, "dot", 0.6))
        if outcome is None:
            kept = torch.nonzero(mine & info.kept).flatten()
            if kept.numel():
                traces.append(rectangles(trace.boxes[kept], class_color(label), f"{name}: kept", width=3))
    if outcome is not None:
        for code in DETECTION_OUTCOMES:
            kept = torch.nonzero(info.kept & (outcome == code)).flatten()
            if kept.numel():
                traces.append(rectangles(trace.boxes[kept], code.colour, code.label, width=3))
    tags, gone_tags = [], []
    for i in info.labelled:
        label = int(trace.labels[i])
        text = _tag_text(trace, i, class_names)
        if bool(info.kept[i]):
            color = class_color(label) if outcome is None else Outcome(int(outcome[i])).colour
            tags.append(tag(trace.boxes[i], text, color, size=TAG_FONT_SIZE))
        else:
            gone_tags.append(tag(trace.boxes[i], text, class_color(label), size=TAG_FONT_SIZE - 2) | {"opacity": 0.7})
    return gone_tags + tags


def _boxes(n: int, what: str = "") -> str:
    """ "1 kept box", "3 kept boxes"."""
    return f"{n} {what + ' ' if what else ''}box{'' if n == 1 else 'es'}"


def _note(info: _DetectionsInfo) -> dict | None:
    """The line above the image saying what is not drawn or not tagged, or None when all is."""
    lines = []
    if info.suppressed_left_out:
        drawn = int(info.suppressed.sum())
        best = f" (the {drawn} best are)" if drawn else ""
        lines.append(f"{_boxes(info.suppressed_left_out, 'more suppressed')} not drawn{best}")
    if info.over_limit:
        lines.append(f"{_boxes(info.over_limit)} over the max-detections limit not drawn")
    if info.labels_hidden:
        lines.append(f"{_boxes(info.labels_hidden, 'kept')} without a tag, where it would cover a better one's")
    if not lines:
        return None
    return dict(text="<br>".join(lines), align="left", x=0, y=1, xref="paper", yref="paper", xanchor="left", yanchor="bottom",
                showarrow=False, font=dict(size=12, color=NOTE_COLOR), name=NOT_DRAWN_NOTE)  # fmt: skip


def _add_step(traces: list, trace: NMSTrace, stressed: Sequence[int]) -> None:
    """Draws the stressed candidates thick, each with a dotted line to the box that suppressed it."""
    for k in stressed:
        traces.append(rectangles(trace.boxes[k : k + 1], HIGHLIGHT, f"candidate {k}", width=5))
        by = int(trace.suppressed_by[k])
        if by >= 0:
            a = ((trace.boxes[k, :2] + trace.boxes[k, 2:]) / 2).tolist()
            b = ((trace.boxes[by, :2] + trace.boxes[by, 2:]) / 2).tolist()
            traces.append(unchecked(go.Scatter, x=[a[0], b[0]], y=[a[1], b[1]], mode="lines+markers",
                                    hoverinfo="skip", line=dict(color=HIGHLIGHT, width=2, dash="dot"),
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
    traces: list, trace: NMSTrace, info: _DetectionsInfo, class_names: Sequence[str], outcome: Tensor | None
) -> None:
    """Clickable markers at the drawn candidates' centres, the candidate's position as customdata."""
    shown = torch.nonzero(info.kept | info.suppressed).flatten()
    if not shown.numel():
        return
    centers = ((trace.boxes[shown, :2] + trace.boxes[shown, 2:]) / 2).double().numpy()
    traces.append(
        unchecked(
            go.Scatter,
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
    max_suppressed: int | None = MAX_SUPPRESSED_DRAWN,
    label_all: bool = False,
) -> go.Figure:
    """Detections and what NMS did to the other candidates (pixel boxes).

    Stays readable at a low score threshold or a high NMS IoU: only the `max_suppressed`
    best suppressed boxes are drawn, only kept boxes get tags, and a kept box whose tag would
    cover a better box's tag gets none; a line above the image counts what is left out.

    Args:
        trace: an NMSTrace in pixels (`to_pixels`), M candidates best first: kept boxes solid
            with "class score" tags, suppressed ones as thin faded dots, each with a hover naming
            the box that suppressed it. Markers at the drawn boxes' centres carry the
            candidate's position as customdata (for clicks). Candidates over the
            max-detections limit are not drawn.
        gt_boxes, gt_labels: (G, 4), (G,) ground truth, drawn as thin light dashes.
        outcome: (M,) int64 detviz.codes.Outcome of each candidate (Outcome.NOT_DETECTION for
            candidates that are not detections): kept boxes are then coloured by outcome
            instead of by class.
        missed: (G,) bool objects no detection found, drawn thick dashed with a "missed" tag.
        upto: NMS step-through: only the first `upto` candidates are drawn, the last of them
            stressed, with a line to the kept box that suppressed it.
        selected: a candidate to stress (clicked).
        encode: the image -> data URI function (see detviz.figures.image).
        max_suppressed: at most this many suppressed boxes are drawn, the best-scoring ones;
            None draws them all. The stressed candidates are drawn whatever the cap.
        label_all: tag every drawn box, suppressed ones too, even where tags overlap.
    """
    if max_suppressed is not None and max_suppressed < 0:
        raise ValueError(f"max_suppressed must be None or at least 0, got {max_suppressed}")
    traces = [image_trace(image, encode)]
    layout = image_layout(image, height=height)
    scale = SCALE_SHARE * height / max(image.size[1], 1)  # screen pixels per image pixel
    tag_size = (TAG_CHAR_WIDTH * TAG_FONT_SIZE / scale, TAG_HEIGHT * TAG_FONT_SIZE / scale)
    info = _get_detections_info(trace, show_suppressed, upto, selected, max_suppressed=max_suppressed,
                                label_all=label_all, class_names=class_names, tag_size=tag_size)  # fmt: skip
    annotations = _add_ground_truth(traces, gt_boxes, gt_labels, missed, class_names)
    annotations += _add_candidates(traces, trace, info, class_names, outcome)
    _add_step(traces, trace, info.stressed)
    _add_markers(traces, trace, info, class_names, outcome)
    note = _note(info)
    if note is not None:
        annotations.append(note)
        layout["margin"]["t"] += NOTE_LINE * (note["text"].count("<br>") + 1)
    layout.update(showlegend=True, legend=legend("below"), annotations=annotations)
    return unchecked_figure(traces, layout)


def class_scores_figure(scores: Tensor, class_names: Sequence[str], chosen: int | None = None) -> go.Figure:
    """One anchor's score for every class (sigmoid of its logits), the chosen class stressed.

    scores: (C,) in [0, 1] (background excluded)."""
    values = scores.double().numpy()
    colors = [class_color(c) if c == chosen else MUTED for c in range(len(values))]
    fig = go.Figure(go.Bar(x=list(class_names), y=values, marker_color=colors,
                           hovertemplate="%{x}: %{y:.4f}<extra></extra>"))  # fmt: skip
    fig.update_layout(chart_layout("Score per class", 240, top=30, yaxis=dict(range=[0, 1], title="sigmoid(logit)")))
    return fig
