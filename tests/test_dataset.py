"""torch Dataset, padding collate, augmentation properties, and the lesson's first-stage views."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from torchvision import tv_tensors

from detviz.data import read_voc
from detviz.data.dataset import (
    IGNORE,
    DetectionDataset,
    LargestObjectDataset,
    MultiLabelDataset,
    augmented_copies,
    build_transform,
    collate_detection,
    sample_to_pil,
)
from detviz.data.targets import largest_object, multilabel_target

S = 64  # model input side used in the property tests


@st.composite
def scenes(draw):
    """A random image size and up to 6 boxes inside it; label k identifies box k."""
    w, h = draw(st.integers(24, 120)), draw(st.integers(24, 120))
    n = draw(st.integers(0, 6))
    boxes = []
    for _ in range(n):
        x1, y1 = draw(st.integers(0, w - 4)), draw(st.integers(0, h - 4))
        x2, y2 = draw(st.integers(x1 + 3, w)), draw(st.integers(y1 + 3, h))
        boxes.append([x1, y1, x2, y2])
    return w, h, torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), draw(st.integers(0, 2**31 - 1))


def _augment(w: int, h: int, boxes: torch.Tensor, seed: int) -> dict:
    n = boxes.shape[0]
    torch.manual_seed(seed)
    return build_transform(S, augment=True)(
        {
            "image": Image.new("RGB", (w, h), (90, 140, 200)),
            "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(h, w)),
            "labels": torch.arange(n),
            "difficult": torch.arange(n) % 2 == 0,
        }
    )


@settings(max_examples=120, deadline=None)
@given(scenes())
def test_augmented_boxes_stay_inside_and_keep_their_labels_and_flags(scene) -> None:
    w, h, boxes, seed = scene
    out = _augment(w, h, boxes, seed)
    image, b = out["image"], out["boxes"].as_subclass(torch.Tensor)
    labels, difficult = out["labels"], out["difficult"]
    assert image.shape == (3, S, S) and image.dtype == torch.float32
    assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
    assert b.shape == (labels.shape[0], 4) and difficult.shape == labels.shape
    assert bool((b >= 0).all() and (b <= S).all())
    assert bool((b[:, 2] - b[:, 0] >= 2).all() and (b[:, 3] - b[:, 1] >= 2).all())
    assert len(set(labels.tolist())) == len(labels) and set(labels.tolist()) <= set(range(boxes.shape[0]))
    assert torch.equal(difficult, labels % 2 == 0)  # each flag travels with its box


def _axis_map(src: torch.Tensor, dst: torch.Tensor) -> list[tuple[float, float]]:
    """The two candidate maps x' = a x + b (kept / mirrored) taking interval src onto dst."""
    (s1, s2), (d1, d2) = src.tolist(), dst.tolist()
    a = (d2 - d1) / (s2 - s1)
    return [(a, d1 - a * s1), (-a, d2 + a * s1)]


@settings(max_examples=120, deadline=None)
@given(scenes())
def test_augmentation_moves_every_box_by_the_same_flip_scale_and_shift(scene) -> None:
    """Labels follow their boxes: unclipped output boxes are one affine image of their inputs."""
    w, h, boxes, seed = scene
    out = _augment(w, h, boxes, seed)
    b, labels = out["boxes"].as_subclass(torch.Tensor), out["labels"]
    inside = (b[:, :2] > 1e-3).all(1) & (b[:, 2:] < S - 1e-3).all(1)  # not clipped to the border
    b, src = b[inside], boxes[labels[inside]]
    for axis in (0, 1):
        cols = [axis, axis + 2]
        if b.shape[0] < 2 or float((src[0, cols[1]] - src[0, cols[0]]).abs()) == 0:
            continue
        fits = []
        for a, c in _axis_map(src[0, cols], b[0, cols]):
            mapped = torch.sort(src[:, cols] * a + c, dim=1).values
            fits.append(torch.allclose(mapped, b[:, cols], atol=1e-2))
        assert any(fits)


def test_without_augmentation_normalized_boxes_are_unchanged(demo_root: Path) -> None:
    index = read_voc(demo_root, "train")
    ds = DetectionDataset(index, image_size=96)
    for i in range(len(index)):
        sample = ds[i]
        assert sample.image.shape == (3, 96, 96) and sample.index == i
        torch.testing.assert_close(sample.boxes, index[i].normalized_boxes(), atol=1e-5, rtol=0)
        assert torch.equal(sample.labels, index[i].labels)
        assert torch.equal(sample.difficult, index[i].difficult)


def test_collate_pads_to_the_most_objects(demo_root: Path) -> None:
    index = read_voc(demo_root, "train")
    ds = DetectionDataset(index, image_size=64)
    samples = [ds[i] for i in range(5)]
    batch = collate_detection(samples)
    g = max(len(s.labels) for s in samples)
    assert batch.images.shape == (5, 3, 64, 64) and batch.boxes.shape == (5, g, 4)
    assert batch.labels.shape == batch.valid.shape == batch.difficult.shape == (5, g)
    for j, s in enumerate(samples):
        n = len(s.labels)
        assert batch.valid[j].tolist() == [True] * n + [False] * (g - n)
        assert torch.equal(batch.boxes[j, :n], s.boxes) and torch.equal(batch.labels[j, :n], s.labels)
        assert bool((batch.labels[j, n:] == IGNORE).all()) and bool((batch.boxes[j, n:] == 0).all())
    assert batch.indices.tolist() == [0, 1, 2, 3, 4]
    moved = batch.to("cpu")
    assert torch.equal(moved.boxes, batch.boxes)


def test_collate_of_images_without_objects_has_zero_width() -> None:
    from detviz.data.dataset import DetectionSample

    empty = DetectionSample(
        torch.zeros(3, 8, 8), torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.bool), 0
    )
    batch = collate_detection([empty, empty])
    assert batch.boxes.shape == (2, 0, 4) and batch.valid.shape == (2, 0)


def test_largest_object_rules() -> None:
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 20, 5], [0, 0, 30, 30]], dtype=torch.float32)
    labels = torch.tensor([3, 4, 5])
    assert largest_object(boxes, labels) == 2
    assert largest_object(boxes, labels, torch.tensor([False, False, True])) == 0  # tie 100 vs 100: the first
    assert largest_object(boxes, labels, torch.tensor([True, True, True])) == 2  # all difficult: use them
    assert largest_object(torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64)) is None


def test_multilabel_target() -> None:
    assert multilabel_target(torch.tensor([2, 0, 2]), 4).tolist() == [1.0, 0.0, 1.0, 0.0]
    assert multilabel_target(torch.zeros(0, dtype=torch.int64), 3).tolist() == [0.0, 0.0, 0.0]


def test_first_stage_views(demo_root: Path) -> None:
    index = read_voc(demo_root, "train")
    largest = LargestObjectDataset(index, image_size=64)
    image, label, box = largest[0]
    k = largest_object(index[0].boxes, index[0].labels, index[0].difficult)
    assert image.shape == (3, 64, 64) and int(label) == int(index[0].labels[k])
    torch.testing.assert_close(box, index[0].normalized_boxes()[k], atol=1e-5, rtol=0)
    multi = MultiLabelDataset(index, image_size=64)
    _, target = multi[3]
    assert target.tolist() == multilabel_target(index[3].labels, index.num_classes).tolist()
    assert len(multi) == len(index)


def test_augmented_copies_are_reproducible_and_leave_the_global_rng_alone(demo_root: Path) -> None:
    index = read_voc(demo_root, "train")
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = augmented_copies(index, 2, copies=3, image_size=64, seed=7)
    assert torch.equal(torch.rand(1), before)
    b = augmented_copies(index, 2, copies=3, image_size=64, seed=7)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x.image, y.image) and torch.equal(x.boxes, y.boxes) and x.index == 2
    image, boxes = sample_to_pil(a[0])
    assert image.size == (64, 64) and torch.allclose(boxes, a[0].boxes * 64)


def test_tiny_image_size_is_refused(demo_root: Path) -> None:
    with pytest.raises(ValueError, match=r"image_size must be >= 16 pixels, got 8"):
        DetectionDataset(read_voc(demo_root, "train"), image_size=8)
