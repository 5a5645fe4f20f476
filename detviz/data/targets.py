"""Targets of the lesson's first stages: the largest object, and the set of classes present.

Kept apart from `dataset.py` so the app can use them without importing torchvision.
"""

from __future__ import annotations

import torch
from torch import Tensor


def largest_object(boxes: Tensor, labels: Tensor, difficult: Tensor | None = None) -> int | None:
    """Position of the largest object by box area, or None when there is none.

    Difficult objects count only when the image has nothing else (the lesson skips them).
    Ties go to the first object.

    Args:
        boxes: (N, 4) xyxy, any scale. labels: (N,). difficult: (N,) bool or None.
    """
    if boxes.shape[0] == 0:
        return None
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    if difficult is not None and bool((~difficult).any()):
        area = torch.where(difficult, torch.full_like(area, -1.0), area)
    return int(torch.argmax(area))  # argmax returns the first maximum


def multilabel_target(labels: Tensor, num_classes: int) -> Tensor:
    """(C,) float32 with 1 for every class present in `labels` (N,), else 0."""
    target = torch.zeros(num_classes, dtype=torch.float32)
    target[labels] = 1.0
    return target
