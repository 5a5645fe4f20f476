"""Whole-dataset statistics and image filters, vectorised over all objects of an index.

`summarize` works on the index's numpy arrays and never imports torch (the app's first page
stays fast); the filters and `object_relative_size` return torch tensors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from detviz.data.records import DatasetIndex, IndexArrays

if TYPE_CHECKING:
    from torch import Tensor

DifficultFilter = Literal["any", "with", "without"]


@dataclass(frozen=True)
class DatasetSummary:
    """Counts and per-object measures of a dataset, as numpy arrays (`torch.from_numpy` makes tensors).

    Attributes:
        class_counts, class_difficult: (C,) int64 objects (and difficult objects) per class.
        objects_per_image: (N,) int64.
        relative_size: (M,) float32 sqrt(box area / image area), 0..1: an object's side as a
            share of the image's.
        aspect_ratio: (M,) float32 box width / height.
    """

    num_images: int
    num_objects: int
    num_difficult: int
    num_truncated: int
    images_without_objects: int
    class_counts: np.ndarray
    class_difficult: np.ndarray
    objects_per_image: np.ndarray
    relative_size: np.ndarray
    aspect_ratio: np.ndarray


def relative_sizes(arrays: IndexArrays) -> np.ndarray:
    """(M,) float32 sqrt(box area / image area) of every object, in float32 arithmetic throughout."""
    img = arrays.object_image()
    w = arrays.boxes[:, 2] - arrays.boxes[:, 0]
    h = arrays.boxes[:, 3] - arrays.boxes[:, 1]
    area = (arrays.widths[img] * arrays.heights[img]).astype(np.float32)
    return np.sqrt(w * h / area)


def object_relative_size(index: DatasetIndex) -> Tensor:
    """(M,) float32 sqrt(box area / image area) of every object (`relative_sizes` as a tensor)."""
    import torch

    return torch.from_numpy(relative_sizes(index.arrays))


def summarize(index: DatasetIndex) -> DatasetSummary:
    """Summary statistics of the whole index (all zeros for an empty one); no torch needed."""
    a = index.arrays
    c = index.num_classes
    w = a.boxes[:, 2] - a.boxes[:, 0]
    h = a.boxes[:, 3] - a.boxes[:, 1]
    per_image = a.objects_per_image()
    return DatasetSummary(
        num_images=len(index),
        num_objects=index.num_objects,
        num_difficult=int(a.difficult.sum()),
        num_truncated=int(a.truncated.sum()),
        images_without_objects=int((per_image == 0).sum()),
        class_counts=np.bincount(a.labels, minlength=c).astype(np.int64, copy=False),
        class_difficult=np.bincount(a.labels[a.difficult], minlength=c).astype(np.int64, copy=False),
        objects_per_image=per_image,
        relative_size=relative_sizes(a),
        aspect_ratio=w / h,
    )


def filter_images(
    index: DatasetIndex,
    classes: Sequence[int] | None = None,
    min_objects: int = 0,
    max_objects: int | None = None,
    size_range: tuple[float, float] = (0.0, 1.0),
    difficult: DifficultFilter = "any",
) -> Tensor:
    """Positions of the images that pass every filter, in dataset order.

    Args:
        classes: keep images with at least one object of these labels whose relative size
            lies in `size_range` (None: no class filter).
        min_objects, max_objects: bounds on the image's object count, inclusive.
        size_range: (lo, hi) on sqrt(box area / image area); when narrower than (0, 1) an
            image needs an object in the range.
        difficult: "any"; "with" (at least one difficult object); "without" (none).

    Returns:
        (K,) int64 image positions.
    """
    import torch

    if difficult not in ("any", "with", "without"):
        raise ValueError(f"difficult must be 'any', 'with' or 'without', got {difficult!r}.")
    lo, hi = size_range
    if not 0.0 <= lo <= hi:
        raise ValueError(f"size_range must satisfy 0 <= lo <= hi, got {size_range}.")
    n = len(index)
    per_image = index.objects_per_image()
    keep = per_image >= min_objects
    if max_objects is not None:
        keep &= per_image <= max_objects
    img = index.object_image()
    if classes is not None or (lo, hi) != (0.0, 1.0):
        size = object_relative_size(index)
        match = (size >= lo) & (size <= hi)
        if classes is not None:
            match &= torch.isin(index.labels, torch.as_tensor(list(classes), dtype=torch.int64))
        keep &= torch.bincount(img[match], minlength=n) > 0
    if difficult != "any":
        has_difficult = torch.bincount(img[index.difficult], minlength=n) > 0
        keep &= has_difficult if difficult == "with" else ~has_difficult
    return torch.nonzero(keep).flatten()
