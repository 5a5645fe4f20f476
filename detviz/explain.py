"""The words: why an anchor is positive or negative (in numbers and one sentence), what NMS did
with a candidate and why, why each way of scoring mAP differs; and which anchor a click on a
figure picked.

Pure functions over a `Match` (detviz.matching) or an `NMSTrace` (detviz.postprocess), so the
pages only display what they return.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

import torch
from torch import Tensor

from detviz.codes import NMSDecision
from detviz.matching import NO_MATCH, Match
from detviz.postprocess import NMSTrace


@dataclass(frozen=True)
class AnchorStory:
    """Everything about one anchor's matching.

    Attributes:
        anchor: its index. box: (4,) xyxy normalized.
        ious: (G,) its IoU with every ground truth.
        assigned: the ground truth it is assigned to (forced or best overlap), None when it
            overlaps nothing. forced: it is that ground truth's forced anchor.
        positive: it predicts an object (target class and box below), else background.
        target_class: class index of the target, `background` for a negative.
        target_box: (4,) xyxy normalized of the target object, None for a negative.
        reason: one sentence saying why.
    """

    anchor: int
    box: Tensor
    ious: Tensor
    assigned: int | None
    forced: bool
    positive: bool
    target_class: int
    target_box: Tensor | None
    reason: str


def explain_anchor(
    match: Match,
    anchor: int,
    anchor_boxes: Tensor,
    gt_boxes: Tensor,
    gt_labels: Tensor,
    class_names: Sequence[str],
) -> AnchorStory:
    """The matching of one anchor, with the reason in words.

    Args:
        match: `match_anchors` of this image (G ground truths, A anchors).
        anchor: index in [0, A).
        anchor_boxes: (A, 4) the anchors that were matched. gt_boxes: (G, 4). gt_labels: (G,).
        class_names: C names; the background class is C.

    Raises:
        ValueError: anchor out of range.
    """
    num_anchors = anchor_boxes.shape[0]
    if isinstance(anchor, bool) or not 0 <= anchor < num_anchors:
        raise ValueError(f"anchor must be in [0, {num_anchors}), got {anchor}.")
    background = len(class_names)
    ious = match.iou[:, anchor] if match.iou.shape[0] else torch.zeros(0)
    forced = bool(match.forced[anchor])
    positive = bool(match.positive[anchor])
    assigned = int(match.best_gt[anchor])
    assigned = None if assigned == NO_MATCH or (not forced and float(match.argmax_iou[anchor]) <= 0) else assigned
    threshold = match.iou_threshold

    def name(g: int) -> str:
        return f"object {g + 1} ({class_names[int(gt_labels[g])]})"

    if gt_boxes.shape[0] == 0:
        reason = "Negative: the image has no objects, so every anchor is background."
    elif forced:
        reason = f"Positive by force: it is the best anchor of {name(assigned)} (IoU {float(ious[assigned]):.3f})"
        best = int(match.argmax_gt[anchor])
        if best != assigned:
            reason += f", although it overlaps {name(best)} more (IoU {float(ious[best]):.3f})"
        reason += f", so it learns that object whatever the threshold ({threshold:g})."
    elif positive:
        reason = (
            f"Positive: it overlaps {name(assigned)} most, with IoU {float(ious[assigned]):.3f} "
            f"above the threshold {threshold:g}."
        )
    elif assigned is None:
        reason = "Negative: it overlaps no object at all, so it learns background."
    else:
        reason = (
            f"Negative: its best overlap, {name(assigned)}, has IoU {float(ious[assigned]):.3f}, not above the "
            f"threshold {threshold:g}, and it is no object's best anchor, so it learns background."
        )
    return AnchorStory(
        anchor=anchor,
        box=anchor_boxes[anchor],
        ious=ious,
        assigned=assigned,
        forced=forced,
        positive=positive,
        target_class=int(gt_labels[assigned]) if positive and assigned is not None else background,
        target_box=gt_boxes[assigned] if positive and assigned is not None else None,
        reason=reason,
    )


def clicked_anchor(points: Sequence[Any] | None, num_anchors: int) -> int | None:
    """The anchor a plotly click picked: the first point whose customdata is an anchor index.

    Args:
        points: `selection.points` of a Streamlit plotly event (dicts); customdata may be a
            number, a list whose first item is one, or (a row of a 2-D numpy customdata, sent
            as a typed array) a dict whose key "0" holds one.
        num_anchors: A; indices outside [0, A) are ignored.

    Returns:
        The anchor index, or None when no point carries one (an empty selection, a click on
        the image or a ground-truth box).
    """
    for point in points or ():
        if not isinstance(point, dict):
            continue
        data = point.get("customdata")
        if isinstance(data, dict):  # a row of a 2-D numpy customdata comes back as {"0": ..., "1": ...}
            data = data.get("0")
        if isinstance(data, (list, tuple)):
            data = data[0] if data else None
        if isinstance(data, bool) or not isinstance(data, Real):
            continue
        if isinstance(data, Integral) or float(data).is_integer():
            index = int(data)
            if 0 <= index < num_anchors:
                return index
    return None


def trace_of_classes(trace: NMSTrace, labels: Sequence[int]) -> NMSTrace:
    """The trace with only the candidates of these classes, in the same order; `suppressed_by`
    renumbered to positions in the new trace. NMS works per class, so every suppressor of a kept
    candidate is of its class and stays."""
    mine = torch.isin(trace.labels, torch.tensor(labels, dtype=torch.int64))
    positions = torch.full_like(trace.status, -1)
    positions[mine] = torch.arange(int(mine.sum()))
    by = trace.suppressed_by[mine]
    by = torch.where(by >= 0, positions[by.clamp(min=0)], -1)
    fields = {k: v[mine] for k, v in trace.__dict__.items()}
    return type(trace)(**(fields | {"suppressed_by": by}))


def nms_decision(trace: NMSTrace, k: int, class_names: Sequence[str]) -> str:
    """One sentence (Markdown) on what NMS did with candidate k of the trace, and why."""
    name = f"**candidate {k}** ({class_names[int(trace.labels[k])]} {float(trace.scores[k]):.3f})"
    status = int(trace.status[k])
    if status == NMSDecision.SUPPRESSED:
        by = int(trace.suppressed_by[k])
        return (f"{name} overlaps candidate {by} ({float(trace.scores[by]):.3f}), already kept, by IoU "
                f"{float(trace.suppression_iou[k]):.2f}, above the NMS threshold: **suppressed**.")  # fmt: skip
    same = (trace.labels[:k] == trace.labels[k]) & (trace.status[:k] != NMSDecision.SUPPRESSED)
    why = "no better box of its class overlaps it enough" if bool(same.any()) else "no better box of its class"
    if status == NMSDecision.OVER_LIMIT:
        return f"{name}: NMS keeps it ({why}), but it is beyond the max-detections limit: **dropped**."
    return f"{name}: {why}: **kept**."


def nms_decision_label(trace: NMSTrace, k: int) -> str:
    """Candidate k's NMS decision in a few words: "kept", "over the limit", or "suppressed by
    candidate 3 (IoU 0.62)"."""
    by = int(trace.suppressed_by[k])
    label = NMSDecision(int(trace.status[k])).label
    return label + (f" by candidate {by} (IoU {float(trace.suppression_iou[k]):.2f})" if by >= 0 else "")


AUDIT_REASONS = {  # metric_audit's rows: why each differs from the reference row; {high}: the cut
    "reference": "The reference: precision read at 11 recall levels (0, 0.1, ... 1).",
    "all_point": (
        "Area under the whole precision envelope instead of 11 samples; the two differ by the envelope's steps."
    ),
    "difficult": (
        "Difficult objects become objects to find: the ones the model misses lower recall, the ones it finds "
        "turn ignored detections into true positives."
    ),
    "cut": (
        "A score threshold of {high:g} cuts the low-scoring tail of every PR curve: recall stops early and the "
        "area it would have added is lost, so mAP is scored at a low threshold."
    ),
    "cut_all_point": "The same cut at {high:g}, measured without the 11-point sampling.",
    "coco_50": (
        "IoU 0.5 as VOC, but 101 recall points, at most 100 detections per image and class, and a detection "
        "that finds its object taken may match another one; difficult objects are ignored regions (crowd)."
    ),
    "coco": "Averages AP over IoU thresholds 0.5 to 0.95: boxes must also sit tightly, so it is much lower.",
    "coco_cut": "The strict COCO number with the {high:g} cut as well.",
}


def audit_reason(row: str, high: float) -> str:
    """Why the metric audit's row `row` (a key of AUDIT_REASONS) differs from the reference row;
    `high` is the audit's deployment score threshold."""
    return AUDIT_REASONS[row].format(high=high)
