"""Two models on the same data, lined up: AP per class, the error breakdown and one image's
detections of model A and model B, with B minus A.

Nothing here scores a detection: each function takes the results the single-model view already
computed (`voc_map` / `error_breakdown` results, one image's outcomes) and lines them up, so a
comparison can never disagree with what each model shows on its own.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from detviz.checks import check_labels, check_tensor
from detviz.codes import ERROR_TYPES
from detviz.evaluate.errors import ErrorBreakdown
from detviz.evaluate.voc import VOCResult


def mean_ap(ap: Tensor, classes: Sequence[int] | None = None) -> float:
    """The mAP of the chosen classes: the mean of their APs, classes without ground truth (NaN)
    left out; NaN when none has any.

    ap: (C,) AP per class. classes: the class ids averaged over (default: all).
    """
    chosen = ap if classes is None else ap[list(classes)]
    valid = chosen[~torch.isnan(chosen)]
    return float(valid.mean()) if valid.numel() else math.nan


class APComparison(NamedTuple):
    """AP per class of two models on the same ground truth.

    Attributes:
        classes: (K,) int64 the class ids compared, in the order asked.
        ap_a, ap_b: (K,) float64 AP of each model, NaN for a class without ground truth.
        difference: (K,) float64 ap_b - ap_a (NaN where both are).
        num_gt: (K,) int64 objects of each class (difficult ones not counted).
        map_a, map_b: `mean_ap` of each over the K classes; map_difference: map_b - map_a.
    """

    classes: Tensor
    ap_a: Tensor
    ap_b: Tensor
    difference: Tensor
    num_gt: Tensor
    map_a: float
    map_b: float
    map_difference: float


def compare_ap(a: VOCResult, b: VOCResult, classes: Sequence[int] | None = None) -> APComparison:
    """AP per class of model A and model B, and B minus A.

    Args:
        a, b: the VOC evaluations of the two models on the same images.
        classes: the class ids to compare (default: all C).

    Raises:
        ValueError: the two were not computed the same way (method, IoU threshold, difficult
            objects) or not on the same ground truth (objects per class differ).
    """
    how_a, how_b = (a.method, a.iou_threshold, a.use_difficult), (b.method, b.iou_threshold, b.use_difficult)
    if how_a != how_b:
        raise ValueError(f"A and B were evaluated differently (method, IoU, difficult): {how_a} vs {how_b}.")
    if not torch.equal(a.num_gt, b.num_gt):
        raise ValueError(
            f"A and B were evaluated on different ground truth: objects per class {a.num_gt.tolist()} vs "
            f"{b.num_gt.tolist()}."
        )
    ids = torch.arange(a.ap.numel()) if classes is None else torch.as_tensor(list(classes), dtype=torch.int64)
    if ids.numel() and not 0 <= int(ids.min()) <= int(ids.max()) < a.ap.numel():
        raise ValueError(f"classes must be in [0, {a.ap.numel()}), got {ids.tolist()}.")
    map_a, map_b = mean_ap(a.ap, ids.tolist()), mean_ap(b.ap, ids.tolist())
    return APComparison(
        classes=ids,
        ap_a=a.ap[ids].double(),
        ap_b=b.ap[ids].double(),
        difference=(b.ap[ids] - a.ap[ids]).double(),
        num_gt=a.num_gt[ids],
        map_a=map_a,
        map_b=map_b,
        map_difference=map_b - map_a,
    )


class ErrorDifference(NamedTuple):
    """The error breakdown of two models side by side, per error type in ERROR_TYPES order.

    Attributes:
        names: (E,) the error types' names.
        counts_a, counts_b: (E,) int64 errors of each type, summed over the classes (missed:
            objects nobody found); count_difference: counts_b - counts_a.
        gain_a, gain_b: (E,) float64 mAP gained if every error of that type were fixed (each
            breakdown's `delta_map`); gain_difference: gain_b - gain_a (NaN where either is).
    """

    names: list[str]
    counts_a: Tensor
    counts_b: Tensor
    count_difference: Tensor
    gain_a: Tensor
    gain_b: Tensor
    gain_difference: Tensor


def compare_errors(a: ErrorBreakdown, b: ErrorBreakdown) -> ErrorDifference:
    """The error breakdown of B minus that of A, per error type.

    Raises:
        ValueError: the breakdowns have different classes or were not computed the same way.
    """
    if a.counts.shape != b.counts.shape:
        raise ValueError(f"A and B count errors over different classes: {tuple(a.counts.shape)} vs "
                         f"{tuple(b.counts.shape)}.")  # fmt: skip
    compare_ap(a.base, b.base)  # the same protocol and ground truth, or a ValueError
    names = [t.name for t in ERROR_TYPES]
    counts_a, counts_b = a.counts.sum(0), b.counts.sum(0)
    gain_a = torch.tensor([a.delta_map[n] for n in names], dtype=torch.float64)
    gain_b = torch.tensor([b.delta_map[n] for n in names], dtype=torch.float64)
    return ErrorDifference(names, counts_a, counts_b, counts_b - counts_a, gain_a, gain_b, gain_b - gain_a)


class ImageComparison(NamedTuple):
    """One image's detections by two models, per class, and the objects each found.

    Attributes:
        objects: (C,) int64 objects of each class that count (difficult ones do not).
        detections_a, detections_b: (C,) int64 each model's detections of each class.
        found_a, found_b: (C,) int64 objects of each class each model found.
        only_a, only_b: (M,) bool objects found by that model and not by the other.
    """

    objects: Tensor
    detections_a: Tensor
    detections_b: Tensor
    found_a: Tensor
    found_b: Tensor
    only_a: Tensor
    only_b: Tensor


def compare_image(
    gt_labels: Tensor,
    counted: Tensor,
    labels_a: Tensor,
    found_a: Tensor,
    labels_b: Tensor,
    found_b: Tensor,
    num_classes: int,
) -> ImageComparison:
    """What two models find on one image.

    Args:
        gt_labels: (M,) int64 the image's objects. counted: (M,) bool those that count (not
            difficult, of the classes shown).
        labels_a, labels_b: (N_a,), (N_b,) int64 each model's detections (kept by NMS).
        found_a, found_b: (M,) bool objects each model found (`VOCResult.found`).
        num_classes: C.

    Returns:
        An ImageComparison; all zeros for an image without objects and detections.

    Raises:
        ValueError: per-object inputs of different lengths, or a label outside [0, C).
    """
    m = check_tensor("gt_labels", gt_labels, ["M"], floating=False).shape[0]
    for name, t in (("counted", counted), ("found_a", found_a), ("found_b", found_b)):
        check_tensor(name, t, [m], floating=False)
    for name, t in (("gt_labels", gt_labels), ("labels_a", labels_a), ("labels_b", labels_b)):
        check_labels(name, check_tensor(name, t, ["N"]), num_classes)
    counted = counted.bool()
    hit_a, hit_b = found_a.bool() & counted, found_b.bool() & counted

    def per_class(labels: Tensor) -> Tensor:
        return torch.bincount(labels.long(), minlength=num_classes)

    return ImageComparison(
        objects=per_class(gt_labels[counted]),
        detections_a=per_class(labels_a),
        detections_b=per_class(labels_b),
        found_a=per_class(gt_labels[hit_a]),
        found_b=per_class(gt_labels[hit_b]),
        only_a=hit_a & ~hit_b,
        only_b=hit_b & ~hit_a,
    )
