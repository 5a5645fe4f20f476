"""Why an anchor is positive or negative, in numbers and one sentence; and which anchor a click
on a figure picked.

Pure functions over a `Match` (detviz.matching), so the pages only display what they return.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

import torch
from torch import Tensor

from detviz.matching import NO_MATCH, Match


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
