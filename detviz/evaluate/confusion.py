"""Which classes a detector mixes up: a confusion matrix of detections against objects."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from detviz.evaluate.inputs import Flat, batched_iou, padded_gt


def class_confusion(flat: Flat, num_classes: int, iou_threshold: float = 0.5) -> Tensor:
    """(C + 1, C + 1) int64 counts: rows the true class (C: no object), columns the predicted
    class (C: nothing predicted).

    Each detection lands on the object of any class it overlaps most (above the threshold; row
    C, background, otherwise) in the column of its predicted class; each object that no
    detection of its class reaches above the threshold adds one to (its class, C). Difficult
    objects count as ordinary ones here: the matrix is about which classes get mixed up.
    """
    c = num_classes
    matrix = torch.zeros(c + 1, c + 1, dtype=torch.int64)
    gt_boxes, gt_labels, _ = padded_gt(flat)
    d = flat.det_labels.numel()
    true = torch.full((d,), c, dtype=torch.int64)
    reached = torch.zeros(flat.gt_labels.numel(), dtype=torch.bool)
    if gt_labels.shape[1] and d:
        iou = batched_iou(flat.det_boxes[:, None], gt_boxes[flat.det_image])[:, 0]  # (D, G)
        labels = gt_labels[flat.det_image]
        iou = torch.where(labels >= 0, iou, -math.inf)
        best, j = iou.max(dim=1)
        hit = best > iou_threshold
        true[hit] = labels[hit, j[hit]]
        same = (labels == flat.det_labels[:, None]) & (iou > iou_threshold)  # (D, G)
        det, slot = torch.nonzero(same, as_tuple=True)
        reached[flat.gt_start[flat.det_image[det]] + slot] = True
    matrix.index_put_((true, flat.det_labels), torch.ones(d, dtype=torch.int64), accumulate=True)
    missed = flat.gt_labels[~reached]
    matrix[:, c] += torch.bincount(missed, minlength=c + 1)[: c + 1]
    return matrix
