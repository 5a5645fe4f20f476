"""A TIDE-style error breakdown: what kind of mistake each false positive is, which objects
were missed, what fixing each kind would add to mAP, and the images with the worst mistakes.

The kinds of error, their names, colours and descriptions are `detviz.codes.ErrorKind` /
`ERROR_TYPES`; this module decides which kind a detection is and what fixing it means.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from detviz.codes import BACKGROUND_IOU, ERROR_TYPES, NO_ERROR, ErrorKind, Outcome
from detviz.evaluate.inputs import (
    Flat,
    best_overlap,
    check_iou_threshold,
    check_method,
    flatten,
    with_detections,
    with_ground_truth,
)
from detviz.evaluate.voc import VOCResult, voc_map_flat

# the error codes under the names tests and pages import from detviz.evaluate
CLS, LOC, BOTH, DUPE, BKG, MISS = (
    ErrorKind.CLS,
    ErrorKind.LOC,
    ErrorKind.BOTH,
    ErrorKind.DUPE,
    ErrorKind.BKG,
    ErrorKind.MISS,
)


@dataclass(frozen=True)
class ErrorBreakdown:
    """Why a detector loses mAP, in the spirit of TIDE (Bolya et al., 2020).

    Each false positive is one of: classification (it sits on an object of another class,
    IoU above the threshold), localisation (right class, IoU between BACKGROUND_IOU and the
    threshold), both (wrong class and poorly placed), duplicate (its object was already found),
    background (it overlaps no object). Missed: objects no detection found.

    Attributes:
        error: per image, (N_i,) int64 ErrorKind of each detection (NO_ERROR for true
            positives and detections on difficult objects).
        missed: per image, (M_i,) bool objects nobody found (difficult ones never count).
        counts: (C, len(ERROR_TYPES)) int64 per class and error type, columns in ErrorKind
            order (false positives by their predicted class, missed objects by theirs).
        delta_map: per ERROR_TYPES name, in their order, mAP gained if every error of that
            type were fixed (an oracle, as TIDE: a
            classification or localisation error corrected, one true positive kept per object,
            a duplicate / both / background detection removed, a missed object dropped from the
            ground truth; `error_breakdown` says where it differs from TIDE).
        base: the VOC evaluation the breakdown starts from.
    """

    error: list[Tensor]
    missed: list[Tensor]
    counts: Tensor
    delta_map: dict[str, float]
    base: VOCResult


def error_breakdown(
    detections: Sequence[Any],
    ground_truths: Sequence[Any],
    num_classes: int,
    iou_threshold: float = 0.5,
    method: str = "all",
    use_difficult: bool = False,
    background_iou: float = BACKGROUND_IOU,
) -> ErrorBreakdown:
    """Classifies every false positive and missed object, and says what fixing each type is worth.

    The oracle fixes one type at a time, as TIDE does: a classification or localisation error
    takes its object's class or box, and each object keeps one true positive, the highest-scoring
    of its old true positive and its corrected detections (the others are dropped, never left as
    duplicates); both, duplicate and background errors are removed; missed objects leave the
    ground truth.

    Where this differs from TIDE (tidecv 1.0.1) on purpose; tests/test_error_breakdown.py checks
    that it agrees with tidecv everywhere else:
    - matching and AP are the VOC devkit's (`method`, all-point by default; IoU strictly above
      the threshold; a detection whose best object is taken is a duplicate), not COCO's greedy
      matching and 101-point AP (TIDE reports AP x 100, and scores a class with detections but
      no objects as AP 0 where VOC leaves it out);
    - the test order: duplicates first, then classification before localisation, so a box on an
      object of another class (IoU above the threshold) that also overlaps one of its own class
      loosely is a classification error; TIDE tests localisation, then classification, then
      duplicate;
    - a corrected detection that outscores its object's true positive replaces it; TIDE drops
      the correction whenever the object was found, and chooses one correction per object across
      classification and localisation errors together;
    - missed counts every object no true positive found; TIDE leaves out the objects a
      classification or localisation error sits on.
    """
    flat = flatten(detections, ground_truths, num_classes)
    return error_breakdown_flat(flat, num_classes, iou_threshold, method, use_difficult, background_iou)


def error_breakdown_flat(
    flat: Flat,
    num_classes: int,
    iou_threshold: float = 0.5,
    method: str = "all",
    use_difficult: bool = False,
    background_iou: float = BACKGROUND_IOU,
) -> ErrorBreakdown:
    """`error_breakdown` on already flattened input (a threshold sweep's detections)."""
    check_method(method)
    check_iou_threshold(iou_threshold)
    if not 0.0 <= background_iou <= iou_threshold:
        raise ValueError(f"background_iou must be in [0, iou_threshold], got {background_iou}.")
    base = voc_map_flat(flat, num_classes, iou_threshold, method, use_difficult)
    status = torch.cat(base.status) if base.status else torch.zeros(0, dtype=torch.int64)
    iou_same, j_same = best_overlap(flat, same_class=True)
    iou_other, j_other = best_overlap(flat, same_class=False)

    error = torch.full_like(status, NO_ERROR)
    fp = status == Outcome.FP
    error[status == Outcome.DUPLICATE] = ErrorKind.DUPE
    error[fp & (iou_other > iou_threshold)] = ErrorKind.CLS
    error[fp & (error == NO_ERROR) & (iou_same >= background_iou)] = ErrorKind.LOC
    error[fp & (error == NO_ERROR) & (iou_other >= background_iou)] = ErrorKind.BOTH
    error[fp & (error == NO_ERROR)] = ErrorKind.BKG
    found = torch.cat(base.found) if base.found else torch.zeros(0, dtype=torch.bool)
    counted = ~flat.gt_difficult | use_difficult
    missed = ~found & counted

    counts = torch.zeros(num_classes, len(ERROR_TYPES), dtype=torch.int64)
    for kind in ErrorKind:  # missed objects by their class, false positives by the class predicted
        labels = flat.gt_labels[missed] if kind == ErrorKind.MISS else flat.det_labels[error == kind]
        counts[:, kind] = torch.bincount(labels, minlength=num_classes)

    def score(fixed: Flat) -> float:
        return voc_map_flat(fixed, num_classes, iou_threshold, method, use_difficult).map

    def corrected(kind: int, new_boxes: Tensor | None, new_labels: Tensor | None) -> float:
        """Fix the detections of `kind`, then keep one true positive per object: of a found
        object's true positive and the corrected detections now on it, the first in evaluation
        order (the highest score) stays and the others are dropped, never left as duplicates."""
        sel = error == kind
        boxes, labels = flat.det_boxes.clone(), flat.det_labels.clone()
        if new_boxes is not None:
            boxes[sel] = new_boxes[sel]
        if new_labels is not None:
            labels[sel] = new_labels[sel]
        fixed = with_detections(flat, torch.ones_like(sel), boxes, labels)
        again = voc_map_flat(fixed, num_classes, iou_threshold, method, use_difficult)
        dropped = (sel | (status == Outcome.TP)) & (torch.cat(again.status) == Outcome.DUPLICATE)
        return score(with_detections(fixed, ~dropped))

    def removed(kind: int) -> float:
        return score(with_detections(flat, error != kind))

    gt_index_same = torch.where(j_same >= 0, flat.gt_start[flat.det_image] + j_same, 0)
    gt_index_other = torch.where(j_other >= 0, flat.gt_start[flat.det_image] + j_other, 0)
    have_gt = flat.gt_labels.numel() > 0
    oracles: dict[ErrorKind, Callable[[], float]] = {  # what fixing every error of a kind means
        ErrorKind.CLS: lambda: corrected(ErrorKind.CLS, None, flat.gt_labels[gt_index_other]) if have_gt else base.map,
        ErrorKind.LOC: lambda: corrected(ErrorKind.LOC, flat.gt_boxes[gt_index_same], None) if have_gt else base.map,
        ErrorKind.BOTH: lambda: removed(ErrorKind.BOTH),
        ErrorKind.DUPE: lambda: removed(ErrorKind.DUPE),
        ErrorKind.BKG: lambda: removed(ErrorKind.BKG),
        ErrorKind.MISS: lambda: score(with_ground_truth(flat, ~missed)),
    }
    fixed_map = {kind.type.name: oracles[kind]() for kind in ErrorKind}
    delta = {
        k: (v - base.map) if not (math.isnan(v) or math.isnan(base.map)) else math.nan for k, v in fixed_map.items()
    }
    det_split = flat.det_start.diff().tolist()
    return ErrorBreakdown(
        error=list(error.split(det_split)),
        missed=list(missed.split(flat.gt_start.diff().tolist())),
        counts=counts,
        delta_map=delta,
        base=base,
    )


def image_error_counts(breakdown: ErrorBreakdown) -> Tensor:
    """(N, len(ERROR_TYPES)) int64: per image, how many detections of each error type and how many
    missed objects, columns in ErrorKind order."""
    rows = []
    for error, missed in zip(breakdown.error, breakdown.missed, strict=True):
        counts = torch.bincount(error[error >= 0], minlength=len(ERROR_TYPES))[: len(ERROR_TYPES)].clone()
        counts[ErrorKind.MISS] = int(missed.sum())
        rows.append(counts)
    return torch.stack(rows) if rows else torch.zeros(0, len(ERROR_TYPES), dtype=torch.int64)


def worst_images(breakdown: ErrorBreakdown, scores: Sequence[Tensor], k: int = 12) -> list[int]:
    """Up to k images with the most weighty mistakes, worst first: each missed object counts 1,
    each false positive its score (at an evaluation threshold like 0.01, a hundred barely
    believed boxes should not outrank one confident mistake). Ties go to the lower index;
    images without a mistake are left out.

    scores: per image, (N_i,) the detections' scores, as in the evaluation.
    """
    weights = [
        float(missed.sum()) + float(s[error >= 0].sum())
        for error, missed, s in zip(breakdown.error, breakdown.missed, scores, strict=True)
    ]
    total = torch.tensor(weights, dtype=torch.float64)
    order = torch.argsort(-total, stable=True)
    return [int(i) for i in order[:k] if float(total[i]) > 0]
