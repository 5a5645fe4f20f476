"""Scores of the lesson's first two stages, in the lesson's own terms.

Stage 1 (largest object): class accuracy, mean IoU of the predicted box with the largest
object's box, and the mean L1 distance of the four coordinates (the lesson prints it in pixels
of its 224 px input; here in [0, 1] image units). Stage 2 (multi-label): micro precision, recall
and F1 over every (image, class) decision at a threshold, and the per-element accuracy the
lesson prints.

The functions on tensors are pure; `score_largest` / `score_multilabel` run a predictor over a
dataset split first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from detviz.boxes import to_normalized_boxes
from detviz.data import DatasetIndex
from detviz.data.images import load_image
from detviz.data.targets import largest_object, multilabel_target


@dataclass(frozen=True)
class LargestObjectScores:
    """How well one class + one box per image matches each image's largest object.

    Attributes:
        accuracy: share of images whose predicted class is right. mean_iou: mean IoU of the
        predicted box with the target box. l1: mean absolute coordinate error, [0, 1] units.
        correct: (N,) bool per image. iou: (N,) per image. count: N.
    """

    accuracy: float
    mean_iou: float
    l1: float
    correct: Tensor
    iou: Tensor

    @property
    def count(self) -> int:
        return int(self.correct.numel())


@dataclass(frozen=True)
class MultiLabelScores:
    """Micro-averaged scores of C yes/no decisions per image at `threshold`.

    Attributes:
        precision, recall, f1: over all (image, class) pairs; 0.0 where a denominator is 0.
        accuracy: share of (image, class) decisions that are right (the lesson's number).
        per_class_f1: (C,) the same F1 per class. tp, fp, fn: counts over all pairs.
    """

    threshold: float
    precision: float
    recall: float
    f1: float
    accuracy: float
    per_class_f1: Tensor
    tp: int
    fp: int
    fn: int


def paired_iou(a: Tensor, b: Tensor) -> Tensor:
    """(N,) IoU of a[i] with b[i]; a, b: (N, 4) xyxy in the same units. 0 where the union is empty."""
    lt = torch.maximum(a[:, :2], b[:, :2])
    rb = torch.minimum(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=1)
    area_a = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(dim=1)
    area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(dim=1)
    union = area_a + area_b - inter
    return torch.where(union > 0, inter / union.clamp(min=torch.finfo(a.dtype).tiny), torch.zeros_like(union))


def largest_object_scores(
    pred_labels: Tensor, pred_boxes: Tensor, true_labels: Tensor, true_boxes: Tensor
) -> LargestObjectScores:
    """Scores of stage-1 predictions against the largest objects.

    Args:
        pred_labels, true_labels: (N,) class ids. pred_boxes, true_boxes: (N, 4) normalized xyxy.

    Raises:
        ValueError: the shapes disagree.
    """
    n = true_labels.shape[0]
    if pred_labels.shape != (n,) or pred_boxes.shape != (n, 4) or true_boxes.shape != (n, 4):
        raise ValueError(
            f"largest-object scores need (N,) labels and (N, 4) boxes for both sides, got predictions "
            f"{tuple(pred_labels.shape)}, {tuple(pred_boxes.shape)} and targets {tuple(true_labels.shape)}, "
            f"{tuple(true_boxes.shape)}."
        )
    correct = pred_labels == true_labels
    iou = paired_iou(pred_boxes.float(), true_boxes.float())
    l1 = (pred_boxes.float() - true_boxes.float()).abs().mean(dim=1)
    mean = (lambda t: float(t.float().mean())) if n else (lambda t: 0.0)
    return LargestObjectScores(mean(correct), mean(iou), mean(l1), correct, iou)


def multilabel_scores(probabilities: Tensor, targets: Tensor, threshold: float = 0.5) -> MultiLabelScores:
    """Micro precision / recall / F1 of `probabilities >= threshold` against 0/1 `targets`.

    Args:
        probabilities, targets: (N, C).

    Raises:
        ValueError: the shapes differ or the threshold is outside [0, 1].
    """
    if probabilities.shape != targets.shape or probabilities.dim() != 2:
        raise ValueError(
            f"multi-label scores need (N, C) probabilities and targets of the same shape, got "
            f"{tuple(probabilities.shape)} and {tuple(targets.shape)}."
        )
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"the threshold must be in [0, 1], got {threshold}.")
    predicted, truth = probabilities >= threshold, targets > 0.5
    tp_c = (predicted & truth).sum(dim=0)
    fp_c = (predicted & ~truth).sum(dim=0)
    fn_c = (~predicted & truth).sum(dim=0)
    tp, fp, fn = int(tp_c.sum()), int(fp_c.sum()), int(fn_c.sum())
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    denominator = (2 * tp_c + fp_c + fn_c).float()
    per_class = torch.where(denominator > 0, 2 * tp_c / denominator.clamp(min=1), torch.zeros_like(denominator))
    accuracy = float((predicted == truth).float().mean()) if predicted.numel() else 0.0
    return MultiLabelScores(
        threshold, precision, recall, _ratio(2 * tp, 2 * tp + fp + fn), accuracy, per_class, tp, fp, fn
    )


def _ratio(a: int, b: int) -> float:
    return a / b if b else 0.0


def _images(index: DatasetIndex, positions: Sequence[int], batch_size: int):
    """Yields the PIL images at `positions`, in batches."""
    for start in range(0, len(positions), batch_size):
        chunk = positions[start : start + batch_size]
        yield [load_image(index[i].image_path, (index[i].width, index[i].height)) for i in chunk]


@dataclass(frozen=True)
class LargestObjectRun:
    """A stage-1 model over a split: its scores and, per scored image, what it said.

    positions: (N,) index positions of the images with an object (the others are not scored).
    labels, scores: (N,) predicted class and its probability. boxes: (N, 4) normalized xyxy.
    targets: (N,) position of the largest object within each image's boxes.
    """

    scores: LargestObjectScores
    positions: list[int]
    labels: Tensor
    probabilities: Tensor
    boxes: Tensor
    targets: list[int]


def score_largest(
    predictor: Any,
    index: DatasetIndex,
    batch_size: int = 32,
    limit: int | None = None,
    progress: Callable | None = None,
) -> LargestObjectRun:
    """Runs a LargestObjectPredictor over the split's images that have an object and scores it.

    Args:
        limit: score only the first `limit` such images. progress: called with (done, total).

    Raises:
        DataError: an image cannot be read. NonFiniteOutputs: the model's outputs are broken.
    """
    positions, targets = [], []
    for i in range(len(index)):
        k = largest_object(index[i].boxes, index[i].labels, index[i].difficult)
        if k is not None:
            positions.append(i)
            targets.append(k)
    positions, targets = positions[:limit], targets[:limit]
    labels, probabilities, boxes = [], [], []
    for images in _images(index, positions, batch_size):
        for p, image in zip(predictor.predict(images), images, strict=True):
            labels.append(p.label)
            probabilities.append(p.score)
            boxes.append(to_normalized_boxes(p.box[None], image.width, image.height)[0])
        if progress:
            progress(len(labels), len(positions))
    true_labels = torch.tensor([int(index[i].labels[k]) for i, k in zip(positions, targets, strict=True)])
    true_boxes = (
        torch.stack([index[i].normalized_boxes()[k] for i, k in zip(positions, targets, strict=True)])
        if positions
        else torch.zeros(0, 4)
    )
    pred_boxes = torch.stack(boxes) if boxes else torch.zeros(0, 4)
    pred_labels = torch.tensor(labels, dtype=torch.long)
    scores = largest_object_scores(pred_labels, pred_boxes, true_labels.long(), true_boxes)
    return LargestObjectRun(scores, positions, pred_labels, torch.tensor(probabilities), pred_boxes, targets)


def score_multilabel(
    predictor: Any,
    index: DatasetIndex,
    threshold: float = 0.5,
    batch_size: int = 32,
    limit: int | None = None,
    progress: Callable | None = None,
) -> tuple[MultiLabelScores, Tensor, Tensor]:
    """Runs a MultiLabelPredictor over the split and scores it at `threshold`.

    Returns:
        (scores, probabilities (N, C), targets (N, C)).

    Raises:
        DataError: an image cannot be read. NonFiniteOutputs: the model's outputs are broken.
    """
    positions = list(range(len(index)))[:limit]
    probabilities = []
    for images in _images(index, positions, batch_size):
        probabilities += predictor.predict(images)
        if progress:
            progress(len(probabilities), len(positions))
    c = index.num_classes
    probs = torch.stack(probabilities) if probabilities else torch.zeros(0, c)
    targets = (
        torch.stack([multilabel_target(index[i].labels, c) for i in positions]) if positions else torch.zeros(0, c)
    )
    return multilabel_scores(probs, targets, threshold), probs, targets
