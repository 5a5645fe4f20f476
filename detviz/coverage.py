"""How well a set of anchors covers a dataset's objects.

An object whose best anchor overlaps it by less than the matching threshold only ever gets a
forced anchor, a poor starting point for its box; the share of such objects bounds what a
detector with these anchors will find ("best possible recall").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from detviz.anchors import AnchorConfig, Anchors, make_anchors
from detviz.boxes import pairwise_iou, to_normalized_boxes
from detviz.data.records import DatasetIndex
from detviz.data.stats import object_relative_size

SIZE_BINS = (0.0, 0.1, 0.2, 0.4, 1.0)  # sqrt(box area / image area): tiny, small, medium, large
SIZE_NAMES = ("tiny (< 0.1)", "small (0.1-0.2)", "medium (0.2-0.4)", "large (> 0.4)")
ROWS_PER_BLOCK = 2048  # objects per IoU block: bounds memory for big datasets x 8,732 anchors


@dataclass(frozen=True)
class Coverage:
    """Per object of a dataset: its best anchor and that IoU.

    Attributes:
        best_iou: (M,) float32. best_anchor: (M,) int64.
        image, labels: (M,) int64 the object's image and class. size: (M,) relative size.
        num_anchors: A.
    """

    best_iou: Tensor
    best_anchor: Tensor
    image: Tensor
    labels: Tensor
    size: Tensor
    num_anchors: int

    def share_below(self, threshold: float) -> float:
        """Share of objects whose best anchor IoU is at most `threshold` (0 for no objects)."""
        return float((self.best_iou <= threshold).float().mean()) if self.best_iou.numel() else 0.0


def anchor_coverage(index: DatasetIndex, anchors: AnchorConfig | Anchors) -> Coverage:
    """Best anchor IoU of every object of `index` (boxes normalized per image)."""
    anchors = make_anchors(anchors) if isinstance(anchors, AnchorConfig) else anchors
    image = index.object_image()
    boxes = to_normalized_boxes(index.boxes, index.widths[image], index.heights[image])
    best_iou = torch.zeros(boxes.shape[0])
    best_anchor = torch.zeros(boxes.shape[0], dtype=torch.int64)
    for start in range(0, boxes.shape[0], ROWS_PER_BLOCK):  # blocks bound the (objects, anchors) matrix
        iou = pairwise_iou(boxes[start : start + ROWS_PER_BLOCK], anchors.boxes)
        best_iou[start : start + ROWS_PER_BLOCK], best_anchor[start : start + ROWS_PER_BLOCK] = iou.max(1)
    return Coverage(best_iou, best_anchor, image, index.labels.clone(), object_relative_size(index), len(anchors))


@dataclass(frozen=True)
class CoverageRow:
    group: str
    objects: int
    below: int  # objects whose best IoU is at most the threshold
    mean_best_iou: float

    @property
    def share_below(self) -> float:
        return self.below / self.objects if self.objects else 0.0


def coverage_by_class(coverage: Coverage, classes: Sequence[str], threshold: float) -> list[CoverageRow]:
    """One row per class (and one for all objects first)."""
    return [_row("all objects", coverage, torch.ones_like(coverage.labels, dtype=torch.bool), threshold)] + [
        _row(name, coverage, coverage.labels == c, threshold) for c, name in enumerate(classes)
    ]


def coverage_by_size(coverage: Coverage, threshold: float) -> list[CoverageRow]:
    """One row per object size bin (SIZE_NAMES)."""
    rows = []
    for name, lo, hi in zip(SIZE_NAMES, SIZE_BINS[:-1], SIZE_BINS[1:], strict=True):
        rows.append(
            _row(
                name,
                coverage,
                (coverage.size >= lo) & (coverage.size < hi if hi < 1 else coverage.size <= hi),
                threshold,
            )
        )
    return rows


def _row(name: str, coverage: Coverage, mask: Tensor, threshold: float) -> CoverageRow:
    best = coverage.best_iou[mask]
    return CoverageRow(
        name, int(best.numel()), int((best <= threshold).sum()), float(best.mean()) if best.numel() else float("nan")
    )


def worst_covered(coverage: Coverage, count: int = 12) -> Tensor:
    """Positions (in the dataset's flat object list) of the `count` worst-covered objects."""
    return torch.argsort(coverage.best_iou, stable=True)[:count]
