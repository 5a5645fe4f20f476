"""torch Datasets over a `DatasetIndex`: resized images, normalized boxes, box-aware augmentation.

Images are squeezed to a square `image_size` without cropping (as in the lesson), so a box's
normalized coordinates are the same before and after resizing. Augmentation uses
`torchvision.transforms.v2` with `tv_tensors.BoundingBoxes`, so boxes follow every flip, crop
and zoom; boxes are clipped to the image and degenerate ones dropped with their labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2.functional import to_pil_image

from detviz.boxes import to_pixel_boxes
from detviz.data.images import IMAGENET_MEAN, load_image
from detviz.data.records import DatasetIndex
from detviz.data.targets import largest_object, multilabel_target

IGNORE = -1  # label of a padding slot in a batch; `valid` is False there
MIN_BOX_PIXELS = 2.0  # after augmentation, boxes narrower or shorter than this are dropped


@dataclass
class DetectionSample:
    """One image ready for a model.

    Attributes:
        image: (3, S, S) float32 in [0, 1].
        boxes: (N, 4) float32 xyxy normalized to [0, 1].
        labels: (N,) int64. difficult: (N,) bool.
        index: position of the image in the DatasetIndex.
    """

    image: Tensor
    boxes: Tensor
    labels: Tensor
    difficult: Tensor
    index: int


@dataclass
class DetectionBatch:
    """A padded batch (DESIGN): G is the largest object count in the batch.

    Attributes:
        images: (B, 3, S, S) float32. boxes: (B, G, 4) float32 normalized xyxy.
        labels: (B, G) int64, IGNORE where not valid. valid: (B, G) bool.
        difficult: (B, G) bool. indices: (B,) int64 positions in the DatasetIndex.
    """

    images: Tensor
    boxes: Tensor
    labels: Tensor
    valid: Tensor
    difficult: Tensor
    indices: Tensor

    def to(self, device: torch.device | str, non_blocking: bool = False) -> DetectionBatch:
        return DetectionBatch(*(t.to(device, non_blocking=non_blocking) for t in self.__dict__.values()))


def build_transform(image_size: int, augment: bool) -> v2.Compose:
    """The sample transform: (augmentation,) squeeze to image_size x image_size, sanitize boxes."""
    steps: list = [v2.ToImage()]
    if augment:
        fill = {tv_tensors.Image: [round(255 * m) for m in IMAGENET_MEAN], "others": 0}
        steps += [
            # colour jitter with a small hue shift: colour stays a cue (no channel shuffling)
            v2.RandomApply([v2.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.02)], p=0.8),
            v2.RandomZoomOut(fill=fill, side_range=(1.0, 2.0), p=0.3),
            v2.RandomApply([v2.RandomIoUCrop()], p=0.5),
            v2.RandomHorizontalFlip(p=0.5),
        ]
    steps += [
        v2.Resize((image_size, image_size), antialias=True),
        v2.ClampBoundingBoxes(),
        v2.SanitizeBoundingBoxes(min_size=MIN_BOX_PIXELS, labels_getter=_labels_and_flags),
        v2.ToDtype(torch.float32, scale=True),
    ]
    return v2.Compose(steps)


def _labels_and_flags(sample: dict) -> tuple[Tensor, Tensor]:
    return sample["labels"], sample["difficult"]


class DetectionDataset(Dataset):
    """Images of a `DatasetIndex` as `DetectionSample`s.

    Args:
        index: the dataset.
        image_size: side S of the square model input.
        augment: apply random colour jitter, zoom-out, SSD-style IoU crop and horizontal flip.
    """

    def __init__(self, index: DatasetIndex, image_size: int = 224, augment: bool = False):
        if image_size < 16:
            raise ValueError(f"image_size must be >= 16 pixels, got {image_size}.")
        self.index = index
        self.image_size = image_size
        self.augment = augment
        self.transform = build_transform(image_size, augment)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> DetectionSample:
        record = self.index[i]
        image = load_image(record.image_path, (record.width, record.height))
        sample = self.transform(
            {
                "image": image,
                "boxes": tv_tensors.BoundingBoxes(
                    record.boxes,
                    format="XYXY",
                    canvas_size=(record.height, record.width),
                ),
                "labels": record.labels,
                "difficult": record.difficult,
            }
        )
        s = float(self.image_size)
        return DetectionSample(
            image=sample["image"].as_subclass(Tensor),
            boxes=sample["boxes"].as_subclass(Tensor).float().reshape(-1, 4) / s,
            labels=sample["labels"],
            difficult=sample["difficult"],
            index=record.index,
        )


def collate_detection(samples: Sequence[DetectionSample]) -> DetectionBatch:
    """Stacks samples into a padded `DetectionBatch` (G = most objects in any sample, may be 0)."""
    b = len(samples)
    g = max((len(s.labels) for s in samples), default=0)
    boxes = torch.zeros(b, g, 4)
    labels = torch.full((b, g), IGNORE, dtype=torch.int64)
    valid = torch.zeros(b, g, dtype=torch.bool)
    difficult = torch.zeros(b, g, dtype=torch.bool)
    for j, s in enumerate(samples):  # B small copies; padding is not worth vectorising
        n = len(s.labels)
        boxes[j, :n], labels[j, :n], valid[j, :n], difficult[j, :n] = (
            s.boxes,
            s.labels,
            True,
            s.difficult,
        )
    return DetectionBatch(
        images=torch.stack([s.image for s in samples]),
        boxes=boxes,
        labels=labels,
        valid=valid,
        difficult=difficult,
        indices=torch.tensor([s.index for s in samples], dtype=torch.int64),
    )


# --- the lesson's first stages ---------------------------------------------------------


class LargestObjectDataset(Dataset):
    """Stage 1 of the lesson: each image with the class and box of its largest object.

    Images without objects (after augmentation too) are left out of `indices` / give
    label -1 with a zero box. Items: (image (3,S,S), label int64, box (4,) normalized xyxy).
    """

    def __init__(self, index: DatasetIndex, image_size: int = 224, augment: bool = False):
        self.detection = DetectionDataset(index, image_size, augment)
        self.indices = [i for i, n in enumerate(index.objects_per_image().tolist()) if n > 0]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor, Tensor]:
        s = self.detection[self.indices[i]]
        k = largest_object(s.boxes, s.labels, s.difficult)
        if k is None:
            return s.image, torch.tensor(IGNORE), torch.zeros(4)
        return s.image, s.labels[k], s.boxes[k]


class MultiLabelDataset(Dataset):
    """Stage 2 of the lesson: each image with the set of classes in it, as a (C,) 0/1 vector."""

    def __init__(self, index: DatasetIndex, image_size: int = 224, augment: bool = False):
        self.detection = DetectionDataset(index, image_size, augment)
        self.num_classes = index.num_classes

    def __len__(self) -> int:
        return len(self.detection)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        s = self.detection[i]
        return s.image, multilabel_target(s.labels, self.num_classes)


def augmented_copies(
    index: DatasetIndex,
    position: int,
    copies: int,
    image_size: int = 224,
    seed: int = 0,
) -> list[DetectionSample]:
    """`copies` augmented versions of one image, reproducible from `seed`.

    The global torch random state is left as it was.
    """
    dataset = DetectionDataset(index.subset([position]), image_size, augment=True)
    samples = []
    with torch.random.fork_rng(devices=[]):
        for j in range(copies):
            torch.manual_seed(seed * 1_000_003 + j)
            sample = dataset[0]
            sample.index = position
            samples.append(sample)
    return samples


def sample_to_pil(sample: DetectionSample) -> tuple[Image.Image, Tensor]:
    """The sample's image as a PIL image and its boxes (N, 4) in that image's pixels."""
    size = sample.image.shape[-1]
    return to_pil_image(sample.image.clamp(0, 1)), to_pixel_boxes(sample.boxes, size, size)
