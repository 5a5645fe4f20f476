"""Pascal VOC mAP as the official devkit computes it.

The protocol (the devkit's `voc_eval`): per class, detections in descending score (ties keep
their input order: image order, then order within the image); each detection is compared with
the ground truth of its class in its image that it overlaps most; it is a true positive when
that IoU is above the threshold and that object was not already taken by a higher-scoring
detection; if it was taken, it is a false positive (a duplicate) even when another object would
have fitted: the VOC rule, unlike COCO's. An object marked difficult is neither a positive nor,
when a detection hits it, a false positive (unless `use_difficult`). The devkit computes IoU on
1-based inclusive pixel boxes with "+1" in widths and heights; DESIGN's pixel convention
(xmin - 1, ymin - 1, xmax, ymax) makes the plain IoU used here equal to it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from detviz.codes import Outcome
from detviz.evaluate.inputs import Flat, best_overlap, check_iou_threshold, check_method, flatten

DEVKIT_EPS = float(torch.finfo(torch.float64).eps)  # the devkit's np.finfo(np.float64).eps
VOC07_RECALLS = [i * 0.1 for i in range(11)]  # the devkit's np.arange(0., 1.1, 0.1), value for value
# the Outcome codes under the names tests and pages import from detviz.evaluate
TP, FP, DUPLICATE, IGNORED = Outcome.TP, Outcome.FP, Outcome.DUPLICATE, Outcome.IGNORED


@dataclass(frozen=True)
class ClassCurve:
    """One class's precision-recall curve, detections in evaluation order.

    precision, recall, scores: (K,) float64 after each of the class's K detections.
    """

    precision: Tensor
    recall: Tensor
    scores: Tensor


@dataclass(frozen=True)
class VOCResult:
    """A Pascal VOC evaluation.

    Attributes:
        ap: (C,) float64, NaN for a class without (non-difficult) ground truth.
        map: mean of the non-NaN APs (NaN if there is none).
        curves: per class, the precision-recall curve.
        status: per image, (N_i,) int64 Outcome (TP, FP, DUPLICATE, IGNORED) of each detection, in
            the input order.
        matched_gt: per image, (N_i,) int64 index (in that image's ground truth) of the object
            each detection was compared with (-1 when no object of its class overlaps it).
        found: per image, (M_i,) bool, the object was found by a true positive.
        num_gt, num_det, num_tp, num_fp: (C,) int64 counts (num_fp counts duplicates too).
        method, iou_threshold, use_difficult: how it was computed.
    """

    ap: Tensor
    map: float
    curves: list[ClassCurve]
    status: list[Tensor]
    matched_gt: list[Tensor]
    found: list[Tensor]
    num_gt: Tensor
    num_det: Tensor
    num_tp: Tensor
    num_fp: Tensor
    method: str
    iou_threshold: float
    use_difficult: bool

    def describe(self) -> str:
        """One sentence on how this number was computed."""
        way = "VOC07 11-point interpolated" if self.method == "11point" else "all-point (VOC2010+)"
        diff = "difficult objects counted" if self.use_difficult else "difficult objects ignored"
        return f"mAP@{self.iou_threshold:g} {way} AP, {diff}, devkit matching."


def voc_map(
    detections: Sequence[Any],
    ground_truths: Sequence[Any],
    num_classes: int,
    iou_threshold: float = 0.5,
    method: str = "11point",
    use_difficult: bool = False,
) -> VOCResult:
    """Pascal VOC mAP (module docstring for the protocol).

    Args:
        detections, ground_truths: one entry per image (module docstring).
        num_classes: C.
        iou_threshold: in (0, 1]; a detection needs IoU above it.
        method: "11point" (VOC2007) or "all" (all-point area, VOC2010+).
        use_difficult: count difficult objects as ordinary ones.
    """
    check_method(method)
    check_iou_threshold(iou_threshold)
    return voc_map_flat(
        flatten(detections, ground_truths, num_classes), num_classes, iou_threshold, method, use_difficult
    )


def voc_map_flat(flat: Flat, num_classes: int, iou_threshold: float, method: str, use_difficult: bool) -> VOCResult:
    """`voc_map` on already flattened input (the threshold sweep calls this directly)."""
    d = flat.det_labels.numel()
    ovmax, jmax = best_overlap(flat)
    eligible = ovmax > iou_threshold
    gt_index = torch.where(jmax >= 0, flat.gt_start[flat.det_image] + jmax, 0)
    hits_difficult = eligible & flat.gt_difficult[gt_index] if flat.gt_labels.numel() else eligible & False
    ignored = hits_difficult & (not use_difficult)
    candidate = eligible & ~ignored

    # evaluation order: by class, then descending score; ties keep the input order
    order = torch.argsort(-flat.det_scores, stable=True)
    order = order[torch.argsort(flat.det_labels[order], stable=True)]
    position = torch.empty(d, dtype=torch.int64)
    position[order] = torch.arange(d)
    first = torch.full((max(flat.gt_labels.numel(), 1),), d, dtype=torch.int64)
    first = first.scatter_reduce(0, gt_index[candidate], position[candidate], "amin")
    tp = candidate & (position == first[gt_index])
    status = torch.full((d,), Outcome.FP, dtype=torch.int64)
    status[candidate & ~tp] = Outcome.DUPLICATE
    status[tp] = Outcome.TP
    status[ignored] = Outcome.IGNORED

    counted = ~flat.gt_difficult | use_difficult
    num_gt = torch.bincount(flat.gt_labels[counted], minlength=num_classes)
    num_det = torch.bincount(flat.det_labels, minlength=num_classes)
    ap = torch.full((num_classes,), math.nan, dtype=torch.float64)
    curves = []
    sorted_labels = flat.det_labels[order]
    bounds = torch.searchsorted(sorted_labels, torch.arange(num_classes + 1))
    tp_sorted = (status[order] == Outcome.TP).double()
    fp_sorted = ((status[order] == Outcome.FP) | (status[order] == Outcome.DUPLICATE)).double()
    for c in range(num_classes):  # C small curves; the matching above is batched
        lo, hi = int(bounds[c]), int(bounds[c + 1])
        tp_cum = torch.cumsum(tp_sorted[lo:hi], 0)
        fp_cum = torch.cumsum(fp_sorted[lo:hi], 0)
        npos = int(num_gt[c])
        recall = tp_cum / npos if npos else torch.full_like(tp_cum, math.nan)
        precision = tp_cum / torch.clamp(tp_cum + fp_cum, min=DEVKIT_EPS)
        curves.append(ClassCurve(precision, recall, flat.det_scores[order][lo:hi]))
        if npos:
            ap[c] = _average_precision(recall, precision, method)
    valid = ap[~torch.isnan(ap)]
    found = torch.zeros(flat.gt_labels.numel(), dtype=torch.bool)
    found[gt_index[tp]] = True
    det_split = flat.det_start.diff().tolist()
    gt_split = flat.gt_start.diff().tolist()
    return VOCResult(
        ap=ap,
        map=float(valid.mean()) if valid.numel() else math.nan,
        curves=curves,
        status=list(status.split(det_split)),
        matched_gt=list(jmax.split(det_split)),
        found=list(found.split(gt_split)),
        num_gt=num_gt,
        num_det=num_det,
        num_tp=torch.bincount(flat.det_labels[tp], minlength=num_classes),
        num_fp=torch.bincount(
            flat.det_labels[(status == Outcome.FP) | (status == Outcome.DUPLICATE)], minlength=num_classes
        ),
        method=method,
        iou_threshold=float(iou_threshold),
        use_difficult=use_difficult,
    )


def _average_precision(recall: Tensor, precision: Tensor, method: str) -> float:
    """The devkit's voc_ap: 11-point interpolation, or the area under the precision envelope."""
    if method == "11point":
        # max precision where recall >= t: recall never falls, so that is the precision envelope
        # at the first such point; the devkit adds p / 11 eleven times, summing first keeps a
        # perfect AP at exactly 1.0
        n = recall.numel()
        if n == 0:
            return 0.0
        envelope = torch.flip(torch.cummax(torch.flip(precision, [0]), 0).values, [0])
        first = torch.searchsorted(recall, torch.tensor(VOC07_RECALLS, dtype=recall.dtype), side="left")
        return sum(float(envelope[i]) if i < n else 0.0 for i in first.tolist()) / 11
    mrec = torch.cat([torch.zeros(1, dtype=torch.float64), recall, torch.ones(1, dtype=torch.float64)])
    mpre = torch.cat([torch.zeros(1, dtype=torch.float64), precision, torch.zeros(1, dtype=torch.float64)])
    mpre = torch.flip(torch.cummax(torch.flip(mpre, [0]), 0).values, [0])  # precision envelope
    steps = torch.nonzero(mrec[1:] != mrec[:-1]).flatten()
    return float(((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]).sum())
