"""Dataset index: every image's file, size and ground truth, held as flat tensors.

A reader (VOC, COCO, demo) turns annotation files into a `DatasetIndex`. The index keeps all
objects of all images in one set of tensors (`boxes (M, 4)`, `labels (M,)`, ...) plus
`offsets (N + 1,)`, so statistics and filters over a whole dataset are vectorised, and
`index[i]` is a cheap view of one image as an `ImageRecord`.

Boxes here are in PIXELS, xyxy, with DESIGN's convention (VOC: xmin - 1, ymin - 1, xmax, ymax);
the math works on normalized boxes, see `ImageRecord.normalized_boxes`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from detviz.boxes import to_normalized_boxes


class DataError(ValueError):
    """A dataset file is missing or malformed. The message names the file and the problem."""


@dataclass(frozen=True)
class ImageRecord:
    """One image and its ground truth.

    Attributes:
        index: position of the image in its `DatasetIndex`.
        image_id: the dataset's id for the image (VOC file stem, COCO image id).
        image_path: where the image file is.
        width, height: image size in pixels, as the annotation states it.
        boxes: (N, 4) float32, pixel xyxy.
        labels: (N,) int64 in 0 .. C-1.
        difficult: (N,) bool, VOC "difficult" (COCO: `ignore` or `iscrowd`).
        truncated: (N,) bool, VOC "truncated".
    """

    index: int
    image_id: str
    image_path: Path
    width: int
    height: int
    boxes: Tensor
    labels: Tensor
    difficult: Tensor
    truncated: Tensor

    @property
    def num_objects(self) -> int:
        return int(self.labels.numel())

    def normalized_boxes(self) -> Tensor:
        """(N, 4) float32 xyxy boxes divided by the image size, in [0, 1]."""
        return to_normalized_boxes(self.boxes, self.width, self.height)


@dataclass(frozen=True)
class Annotation:
    """One image's annotation as a reader produced it, before it joins an index."""

    image_id: str
    image_path: Path
    width: int
    height: int
    boxes: list[tuple[float, float, float, float]]
    labels: list[int]
    difficult: list[bool]
    truncated: list[bool]


@dataclass
class DatasetIndex:
    """All images of one dataset split with their ground truth.

    Attributes:
        classes: class names; label `i` is `classes[i]`, background is `len(classes)`.
        image_ids, image_paths: per image, length N.
        widths, heights: (N,) int64 pixel sizes.
        offsets: (N + 1,) int64; objects of image i are rows offsets[i]:offsets[i + 1].
        boxes: (M, 4) float32 pixel xyxy of all M objects.
        labels: (M,) int64. difficult, truncated: (M,) bool.
        source: a short description of where the data came from.
        problems: one line per file that was skipped because it is broken (non-strict reading).
        warnings: one line per fix applied while reading (e.g. a box clipped to the image).
        category_ids: for COCO data, the json's category id of each label (for results files).
        class_note: one sentence when the reader inferred the class list (a VOC folder without
            classes.txt naming non-VOC classes); "" otherwise.
    """

    classes: list[str]
    image_ids: list[str]
    image_paths: list[Path]
    widths: Tensor
    heights: Tensor
    offsets: Tensor
    boxes: Tensor
    labels: Tensor
    difficult: Tensor
    truncated: Tensor
    source: str = ""
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    category_ids: list[int] | None = None  # COCO: the json's category id of each label
    class_note: str = ""

    @classmethod
    def from_annotations(
        cls,
        classes: Sequence[str],
        annotations: Sequence[Annotation],
        source: str = "",
        problems: Sequence[str] = (),
        warnings: Sequence[str] = (),
    ) -> DatasetIndex:
        """Builds an index from per-image annotations (the readers' common last step)."""
        counts = torch.tensor([len(a.labels) for a in annotations], dtype=torch.int64)
        offsets = torch.zeros(len(annotations) + 1, dtype=torch.int64)
        offsets[1:] = torch.cumsum(counts, 0)
        return cls(
            classes=list(classes),
            image_ids=[a.image_id for a in annotations],
            image_paths=[a.image_path for a in annotations],
            widths=torch.tensor([a.width for a in annotations], dtype=torch.int64),
            heights=torch.tensor([a.height for a in annotations], dtype=torch.int64),
            offsets=offsets,
            boxes=torch.tensor([b for a in annotations for b in a.boxes], dtype=torch.float32).reshape(-1, 4),
            labels=torch.tensor([x for a in annotations for x in a.labels], dtype=torch.int64),
            difficult=torch.tensor([x for a in annotations for x in a.difficult], dtype=torch.bool),
            truncated=torch.tensor([x for a in annotations for x in a.truncated], dtype=torch.bool),
            source=source,
            problems=list(problems),
            warnings=list(warnings),
        )

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, i: int) -> ImageRecord:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"image index {i} is out of range for a dataset of {n} images")
        i %= n
        lo, hi = int(self.offsets[i]), int(self.offsets[i + 1])
        return ImageRecord(
            index=i,
            image_id=self.image_ids[i],
            image_path=self.image_paths[i],
            width=int(self.widths[i]),
            height=int(self.heights[i]),
            boxes=self.boxes[lo:hi],
            labels=self.labels[lo:hi],
            difficult=self.difficult[lo:hi],
            truncated=self.truncated[lo:hi],
        )

    def __iter__(self) -> Iterator[ImageRecord]:
        return (self[i] for i in range(len(self)))

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def num_objects(self) -> int:
        return int(self.labels.numel())

    def objects_per_image(self) -> Tensor:
        """(N,) int64 number of objects in each image."""
        return self.offsets[1:] - self.offsets[:-1]

    def object_image(self) -> Tensor:
        """(M,) int64 index of the image each object belongs to."""
        return torch.repeat_interleave(torch.arange(len(self)), self.objects_per_image())

    def position_of(self, image_id: str) -> int | None:
        """Index of the image with this id, or None when the dataset has no such image."""
        try:
            return self.image_ids.index(image_id)
        except ValueError:
            return None

    def subset(self, indices: Sequence[int] | Tensor) -> DatasetIndex:
        """A new index holding only the images at `indices`, in that order."""
        idx = torch.as_tensor(indices, dtype=torch.int64).reshape(-1)
        counts = self.objects_per_image()[idx]
        offsets = torch.zeros(len(idx) + 1, dtype=torch.int64)
        offsets[1:] = torch.cumsum(counts, 0)
        starts = self.offsets[idx]
        rows = torch.repeat_interleave(starts - offsets[:-1], counts) + torch.arange(int(offsets[-1]))
        return DatasetIndex(
            classes=list(self.classes),
            image_ids=[self.image_ids[i] for i in idx.tolist()],
            image_paths=[self.image_paths[i] for i in idx.tolist()],
            widths=self.widths[idx],
            heights=self.heights[idx],
            offsets=offsets,
            boxes=self.boxes[rows],
            labels=self.labels[rows],
            difficult=self.difficult[rows],
            truncated=self.truncated[rows],
            source=self.source,
            problems=list(self.problems),
            warnings=list(self.warnings),
            category_ids=self.category_ids,
            class_note=self.class_note,
        )


def check_pixel_box(
    box: tuple[float, float, float, float], width: int, height: int, where: str
) -> tuple[tuple[float, float, float, float], str | None]:
    """Validates one pixel xyxy box and clips it to the image.

    Args:
        box: (x1, y1, x2, y2) in pixels, DESIGN convention.
        width, height: the image size the box belongs to.
        where: "file: object k (class)" prefix for messages.

    Returns:
        The box clipped to [0, width] x [0, height], and a warning line when clipping changed it.

    Raises:
        DataError: a coordinate is not finite, the box is empty (x2 <= x1 or y2 <= y1), or it lies
            entirely outside the image.
    """
    x1, y1, x2, y2 = box
    if not all(map(_finite, box)):
        raise DataError(f"{where} has a non-finite coordinate {list(box)}; fix the file or remove the object.")
    if x2 <= x1 or y2 <= y1:
        axis = "x" if x2 <= x1 else "y"
        raise DataError(
            f"{where} is empty: {axis}2 <= {axis}1 in pixel box {list(box)}; fix the file or remove the object."
        )
    clipped = (
        min(max(x1, 0.0), width),
        min(max(y1, 0.0), height),
        min(max(x2, 0.0), width),
        min(max(y2, 0.0), height),
    )
    if clipped == tuple(box):
        return clipped, None
    if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
        raise DataError(
            f"{where} lies entirely outside the {width}x{height} image: pixel box {list(box)}; fix the file or remove the object."
        )
    return (
        clipped,
        f"{where} extends outside the {width}x{height} image; clipped {list(box)} to {list(clipped)}.",
    )


def _finite(v: float) -> bool:
    return v == v and v not in (float("inf"), float("-inf"))
