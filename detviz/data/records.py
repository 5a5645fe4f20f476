"""Dataset index: every image's file, size and ground truth, held as flat arrays.

A reader (VOC, COCO, demo) turns annotation files into a `DatasetIndex`. The index keeps all
objects of all images in one set of numpy arrays (`boxes (M, 4)`, `labels (M,)`, ...) plus
`offsets (N + 1,)`, so statistics and filters over a whole dataset are vectorised, and
`index[i]` is a cheap view of one image as an `ImageRecord`.

The arrays are numpy (`index.arrays`), so reading a dataset and summarizing it never imports
torch (the app's first page stays fast); `index.boxes`, `index.labels`, ... are the same arrays
as torch tensors, sharing memory, made on first use.

Boxes here are in PIXELS, xyxy, with DESIGN's convention (VOC: xmin - 1, ymin - 1, xmax, ymax);
the math works on normalized boxes, see `ImageRecord.normalized_boxes`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from torch import Tensor


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
        from detviz.boxes import to_normalized_boxes  # torch-heavy: imported only where boxes are used

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


class IndexArrays(NamedTuple):
    """A `DatasetIndex`'s per-image and per-object data as numpy arrays (N images, M objects).

    For callers that must not import torch (reading and summarizing a dataset); everyone else
    can use the index's tensors (`index.boxes`, ...), which share this memory.

    Attributes:
        widths, heights: (N,) int64 pixel sizes.
        offsets: (N + 1,) int64; objects of image i are rows offsets[i]:offsets[i + 1].
        boxes: (M, 4) float32 pixel xyxy.
        labels: (M,) int64 in 0 .. C-1. difficult, truncated: (M,) bool.
    """

    widths: np.ndarray
    heights: np.ndarray
    offsets: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    difficult: np.ndarray
    truncated: np.ndarray

    def objects_per_image(self) -> np.ndarray:
        """(N,) int64 number of objects in each image."""
        return np.diff(self.offsets)

    def object_image(self) -> np.ndarray:
        """(M,) int64 index of the image each object belongs to."""
        return np.repeat(np.arange(len(self.widths), dtype=np.int64), self.objects_per_image())


# Each array's dtype and shape, "N" images and "M" objects (IndexArrays' documentation).
ARRAY_LAYOUT: dict[str, tuple[type, tuple[str | int, ...]]] = {
    "widths": (np.int64, ("N",)),
    "heights": (np.int64, ("N",)),
    "offsets": (np.int64, ("N + 1",)),
    "boxes": (np.float32, ("M", 4)),
    "labels": (np.int64, ("M",)),
    "difficult": (np.bool_, ("M",)),
    "truncated": (np.bool_, ("M",)),
}


class _TensorView:
    """A `DatasetIndex` attribute: the array of the same name in `index.arrays` as a torch tensor
    sharing its memory. Made (and torch imported) on first use, then kept in the instance, which
    later lookups find first (as functools.cached_property does)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, index: DatasetIndex | None, owner: type | None = None) -> Tensor:
        if index is None:
            return self  # type: ignore[return-value]  # the class attribute, for introspection
        tensor = index.__dict__[self.name] = _tensor(getattr(index.arrays, self.name))
        return tensor


class DatasetIndex:
    """All images of one dataset split with their ground truth.

    The per-image and per-object arrays are given as numpy arrays or torch tensors (converted
    with `.numpy()`, sharing memory) and kept as numpy in `arrays`; the attributes of the same
    names return them as torch tensors (sharing that memory, made on first use).

    Attributes:
        classes: class names; label `i` is `classes[i]`, background is `len(classes)`.
        image_ids, image_paths: per image, length N.
        arrays: the numpy arrays below, for callers that must not import torch.
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

    Raises:
        ValueError: an array's shape does not fit the others (names it, the shape seen and expected).
    """

    def __init__(
        self,
        classes: Sequence[str],
        image_ids: Sequence[str],
        image_paths: Sequence[Path],
        widths: np.ndarray | Tensor,
        heights: np.ndarray | Tensor,
        offsets: np.ndarray | Tensor,
        boxes: np.ndarray | Tensor,
        labels: np.ndarray | Tensor,
        difficult: np.ndarray | Tensor,
        truncated: np.ndarray | Tensor,
        source: str = "",
        problems: Sequence[str] = (),
        warnings: Sequence[str] = (),
        category_ids: list[int] | None = None,  # COCO: the json's category id of each label
        class_note: str = "",
    ) -> None:
        self.classes = list(classes)
        self.image_ids = list(image_ids)
        self.image_paths = list(image_paths)
        given = {
            "widths": widths,
            "heights": heights,
            "offsets": offsets,
            "boxes": boxes,
            "labels": labels,
            "difficult": difficult,
            "truncated": truncated,
        }
        self.arrays = IndexArrays(**{name: _array(value, ARRAY_LAYOUT[name][0]) for name, value in given.items()})
        _check_shapes(self.arrays, len(self.image_ids))
        self.source = source
        self.problems = list(problems)
        self.warnings = list(warnings)
        self.category_ids = category_ids
        self.class_note = class_note

    def __repr__(self) -> str:
        return (
            f"DatasetIndex({self.source!r}, {len(self)} images, {self.num_objects} objects, {self.num_classes} classes)"
        )

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
        counts = np.array([len(a.labels) for a in annotations], dtype=np.int64)
        return cls(
            classes=classes,
            image_ids=[a.image_id for a in annotations],
            image_paths=[a.image_path for a in annotations],
            widths=np.array([a.width for a in annotations], dtype=np.int64),
            heights=np.array([a.height for a in annotations], dtype=np.int64),
            offsets=_offsets(counts),
            boxes=np.array([b for a in annotations for b in a.boxes], dtype=np.float32).reshape(-1, 4),
            labels=np.array([x for a in annotations for x in a.labels], dtype=np.int64),
            difficult=np.array([x for a in annotations for x in a.difficult], dtype=np.bool_),
            truncated=np.array([x for a in annotations for x in a.truncated], dtype=np.bool_),
            source=source,
            problems=problems,
            warnings=warnings,
        )

    # The arrays as torch tensors sharing their memory (see Attributes), made on first use.
    widths = _TensorView()
    heights = _TensorView()
    offsets = _TensorView()
    boxes = _TensorView()
    labels = _TensorView()
    difficult = _TensorView()
    truncated = _TensorView()

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, i: int) -> ImageRecord:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"image index {i} is out of range for a dataset of {n} images")
        i %= n
        a = self.arrays
        lo, hi = int(a.offsets[i]), int(a.offsets[i + 1])
        return ImageRecord(
            index=i,
            image_id=self.image_ids[i],
            image_path=self.image_paths[i],
            width=int(a.widths[i]),
            height=int(a.heights[i]),
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
        return len(self.arrays.labels)

    def objects_per_image(self) -> Tensor:
        """(N,) int64 number of objects in each image (`arrays.objects_per_image()` without torch)."""
        return _tensor(self.arrays.objects_per_image())

    def object_image(self) -> Tensor:
        """(M,) int64 index of the image each object belongs to (`arrays.object_image()` without torch)."""
        return _tensor(self.arrays.object_image())

    def position_of(self, image_id: str) -> int | None:
        """Index of the image with this id, or None when the dataset has no such image."""
        try:
            return self.image_ids.index(image_id)
        except ValueError:
            return None

    def subset(self, indices: Sequence[int] | np.ndarray | Tensor) -> DatasetIndex:
        """A new index holding only the images at `indices`, in that order."""
        a = self.arrays
        idx = _array(indices, np.int64).reshape(-1)
        counts = a.objects_per_image()[idx]
        offsets = _offsets(counts)
        rows = np.repeat(a.offsets[idx] - offsets[:-1], counts) + np.arange(offsets[-1], dtype=np.int64)
        image_positions = idx.tolist()
        return DatasetIndex(
            classes=self.classes,
            image_ids=[self.image_ids[i] for i in image_positions],
            image_paths=[self.image_paths[i] for i in image_positions],
            widths=a.widths[idx],
            heights=a.heights[idx],
            offsets=offsets,
            boxes=a.boxes[rows],
            labels=a.labels[rows],
            difficult=a.difficult[rows],
            truncated=a.truncated[rows],
            source=self.source,
            problems=self.problems,
            warnings=self.warnings,
            category_ids=self.category_ids,
            class_note=self.class_note,
        )


def _offsets(counts: np.ndarray) -> np.ndarray:
    """(N + 1,) int64 running total of per-image object counts (N,), starting at 0."""
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return offsets


def as_numpy(value: Any, dtype: type | None = None) -> np.ndarray:
    """`value` (a numpy array, a sequence or a torch tensor on any device) as a numpy array of
    `dtype` (default: its own), sharing memory where it can. Never imports torch: a tensor exists
    only where torch already was."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=dtype)


def _array(value: Any, dtype: type) -> np.ndarray:
    """`as_numpy(value, dtype)`, copied when read-only (torch.from_numpy warns on such memory)."""
    array = as_numpy(value, dtype)
    return array if array.flags.writeable else array.copy()


def _tensor(array: np.ndarray) -> Tensor:
    import torch

    return torch.from_numpy(array)


def _check_shapes(arrays: IndexArrays, num_images: int) -> None:
    num_objects = arrays.labels.size
    sizes = {"N": num_images, "N + 1": num_images + 1, "M": num_objects}
    for name, (_, dims) in ARRAY_LAYOUT.items():
        expected = tuple(sizes.get(d, d) for d in dims)
        seen = getattr(arrays, name).shape
        if seen != expected:
            raise ValueError(
                f"DatasetIndex: {name} has shape {seen}, expected ({', '.join(map(str, dims))}) = {expected} "
                f"for {num_images} images and {num_objects} objects (the length of labels)."
            )
    if arrays.offsets[0] != 0 or arrays.offsets[-1] != num_objects or (np.diff(arrays.offsets) < 0).any():
        raise ValueError(
            f"DatasetIndex: offsets must rise from 0 to the number of objects ({num_objects}), "
            f"got {arrays.offsets[0]} .. {arrays.offsets[-1]}."
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
