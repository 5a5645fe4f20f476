"""The evaluation input: per-image detections and ground truth checked and flattened into one
`Flat`, the helpers that derive a changed `Flat` from it, and the overlaps every protocol reads.

Inputs are per image. Detections: objects with `.boxes (N, 4)`, `.scores (N,)`, `.labels (N,)`
(e.g. `postprocess` results) or tuples `(boxes, scores, labels)`. Ground truth: objects with
`.boxes (M, 4)`, `.labels (M,)`, `.difficult (M,)` (e.g. `ImageRecord`) or tuples
`(boxes, labels[, difficult])`. Boxes are xyxy, detections and ground truth in the same units.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from detviz.boxes import to_pixel_boxes
from detviz.checks import check_choice, check_positive_int, check_tensor

METHODS = ("11point", "all")


@dataclass(frozen=True)
class Flat:
    """Detections and ground truth of N images as flat tensors (image index per row)."""

    det_image: Tensor  # (D,) int64
    det_boxes: Tensor  # (D, 4) float64
    det_scores: Tensor  # (D,) float64
    det_labels: Tensor  # (D,) int64
    det_start: Tensor  # (N + 1,) int64
    gt_image: Tensor  # (M,) int64
    gt_boxes: Tensor  # (M, 4) float64
    gt_labels: Tensor  # (M,) int64
    gt_difficult: Tensor  # (M,) bool
    gt_start: Tensor  # (N + 1,) int64
    num_images: int


def _field(item: Any, name: str, position: int) -> Any:
    if hasattr(item, name):
        return getattr(item, name)
    if isinstance(item, (tuple, list)) and len(item) > position:
        return item[position]
    if isinstance(item, dict) and name in item:
        return item[name]
    return None


def flatten(detections: Sequence[Any], ground_truths: Sequence[Any], num_classes: int) -> Flat:
    """Checks and flattens per-image detections and ground truth (see the module docstring).

    Raises:
        ValueError: mismatched image counts, wrong shapes, labels outside 0..C-1, NaN scores or
            coordinates; the message names the image.
    """
    if len(detections) != len(ground_truths):
        raise ValueError(
            f"detections cover {len(detections)} images but ground_truths cover {len(ground_truths)}; "
            "give one entry per image to both."
        )
    check_positive_int("num_classes", num_classes)
    det_parts, gt_parts = [], []
    for i, (det, gt) in enumerate(zip(detections, ground_truths, strict=True)):
        boxes, scores, labels = (_field(det, n, p) for p, n in enumerate(("boxes", "scores", "labels")))
        if boxes is None or scores is None or labels is None:
            raise ValueError(f"detections[{i}] needs boxes, scores and labels.")
        boxes, scores, labels = torch.as_tensor(boxes), torch.as_tensor(scores), torch.as_tensor(labels)
        where = f"detections[{i}]"
        check_tensor(f"{where}.boxes", boxes.reshape(-1, 4) if boxes.numel() == 0 else boxes, ["N", 4])
        n = boxes.reshape(-1, 4).shape[0]
        check_tensor(f"{where}.scores", scores, [n])
        check_tensor(f"{where}.labels", labels, [n])
        _check_values(where, boxes.reshape(-1, 4), labels, num_classes)
        if bool(torch.isnan(scores).any()):
            raise ValueError(f"{where}.scores contains NaN.")
        det_parts.append((boxes.reshape(-1, 4).double().cpu(), scores.double().cpu(), labels.long().cpu()))

        g_boxes, g_labels, g_difficult = (_field(gt, n, p) for p, n in enumerate(("boxes", "labels", "difficult")))
        if g_boxes is None or g_labels is None:
            raise ValueError(f"ground_truths[{i}] needs boxes and labels.")
        g_boxes, g_labels = torch.as_tensor(g_boxes), torch.as_tensor(g_labels)
        where = f"ground_truths[{i}]"
        check_tensor(f"{where}.boxes", g_boxes.reshape(-1, 4) if g_boxes.numel() == 0 else g_boxes, ["M", 4])
        m = g_boxes.reshape(-1, 4).shape[0]
        check_tensor(f"{where}.labels", g_labels, [m])
        g_difficult = torch.zeros(m, dtype=torch.bool) if g_difficult is None else torch.as_tensor(g_difficult)
        check_tensor(f"{where}.difficult", g_difficult, [m])
        _check_values(where, g_boxes.reshape(-1, 4), g_labels, num_classes)
        gt_parts.append((g_boxes.reshape(-1, 4).double().cpu(), g_labels.long().cpu(), g_difficult.bool().cpu()))

    def cat(parts: list, k: int, dtype: torch.dtype, width: int | None = None) -> Tensor:
        tensors = [p[k] for p in parts]
        if not tensors:
            return torch.zeros((0, width) if width else (0,), dtype=dtype)
        return torch.cat(tensors).to(dtype)

    def starts(parts: list) -> Tensor:
        return offsets(torch.tensor([p[0].shape[0] for p in parts], dtype=torch.int64))

    det_start, gt_start = starts(det_parts), starts(gt_parts)
    n_img = len(detections)
    return Flat(
        det_image=torch.repeat_interleave(torch.arange(n_img), det_start.diff()),
        det_boxes=cat(det_parts, 0, torch.float64, 4),
        det_scores=cat(det_parts, 1, torch.float64),
        det_labels=cat(det_parts, 2, torch.int64),
        det_start=det_start,
        gt_image=torch.repeat_interleave(torch.arange(n_img), gt_start.diff()),
        gt_boxes=cat(gt_parts, 0, torch.float64, 4),
        gt_labels=cat(gt_parts, 1, torch.int64),
        gt_difficult=cat(gt_parts, 2, torch.bool),
        gt_start=gt_start,
        num_images=n_img,
    )


def _check_values(where: str, boxes: Tensor, labels: Tensor, num_classes: int) -> None:
    if boxes.numel() and not bool(torch.isfinite(boxes).all()):
        raise ValueError(f"{where}.boxes contains NaN or infinite coordinates.")
    if labels.is_floating_point() and labels.numel():  # an empty list is a float tensor; that is fine
        raise ValueError(f"{where}.labels must be integers, got {labels.dtype}.")
    if labels.numel() and bool(((labels < 0) | (labels >= num_classes)).any()):
        bad = labels[(labels < 0) | (labels >= num_classes)][0].item()
        raise ValueError(f"{where}.labels has label {bad}; labels must be in 0..{num_classes - 1}.")


def check_iou_threshold(iou_threshold: float) -> None:
    if not 0.0 < iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}.")


def check_method(method: str) -> None:
    check_choice("method", method, METHODS)


def offsets(counts: Tensor) -> Tensor:
    """Where each image's rows start in a flat tensor grouped by image: (N + 1,) int64, 0 then the
    running total of counts (N,) rows per image; image i's rows are [start[i], start[i + 1])."""
    return torch.cat([torch.zeros(1, dtype=torch.int64), torch.cumsum(counts, 0)])


def batched_iou(boxes1: Tensor, boxes2: Tensor, crowd: Tensor | None = None) -> Tensor:
    """IoU of every box of boxes1 with every box of boxes2, in each of a batch of groups.

    Not `boxes.pairwise_iou`: that compares two flat lists (all pairs), while the evaluation
    compares each detection with the objects of its own image (or group), for all images at
    once; pairwise_iou would need a Python loop over the images or a (D, M) matrix across all
    of them. The arithmetic is the same (float64 here).

    Args:
        boxes1: (..., N, 4) xyxy. boxes2: (..., M, 4) xyxy, the same leading dims.
        crowd: (..., M) bool, optional: for these boxes of boxes2 the overlap is the
            intersection over boxes1's area (pycocotools' iscrowd), not over the union.

    Returns:
        (..., N, M) IoU.
    """
    lt = torch.maximum(boxes1[..., :, None, :2], boxes2[..., None, :, :2])
    rb = torch.minimum(boxes1[..., :, None, 2:], boxes2[..., None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    area1 = (boxes1[..., 2] - boxes1[..., 0]) * (boxes1[..., 3] - boxes1[..., 1])
    area2 = (boxes2[..., 2] - boxes2[..., 0]) * (boxes2[..., 3] - boxes2[..., 1])
    union = area1[..., :, None] + area2[..., None, :] - inter
    if crowd is not None:
        union = torch.where(crowd[..., None, :], area1[..., :, None], union)
    return inter / union


def padded_gt(flat: Flat) -> tuple[Tensor, Tensor, Tensor]:
    """Ground truth padded per image: boxes (N, G, 4), labels (N, G) (-1 padding), rank (M,)."""
    counts = flat.gt_start.diff()
    g = int(counts.max()) if counts.numel() and flat.gt_labels.numel() else 0
    rank = torch.arange(flat.gt_labels.numel()) - flat.gt_start[flat.gt_image]
    boxes = torch.zeros(flat.num_images, g, 4, dtype=torch.float64)
    labels = torch.full((flat.num_images, g), -1, dtype=torch.int64)
    boxes[flat.gt_image, rank] = flat.gt_boxes
    labels[flat.gt_image, rank] = flat.gt_labels
    return boxes, labels, rank


def best_overlap(flat: Flat, same_class: bool = True, block: int = 65536) -> tuple[Tensor, Tensor]:
    """For each detection, the object of its image (of its class, or of any other class when
    `same_class` is False) it overlaps most: (max IoU (D,), index in the image's ground truth
    (D,)); -inf and -1 when there is none. Equal IoUs go to the first object, as numpy's argmax."""
    gt_boxes, gt_labels, _ = padded_gt(flat)
    d = flat.det_labels.numel()
    ovmax = torch.full((d,), -math.inf, dtype=torch.float64)
    jmax = torch.full((d,), -1, dtype=torch.int64)
    if gt_labels.shape[1] == 0:
        return ovmax, jmax
    for s in range(0, d, block):  # blocks bound the (block, G) IoU memory
        img = flat.det_image[s : s + block]
        iou = batched_iou(flat.det_boxes[s : s + block, None], gt_boxes[img])[:, 0]
        labels = gt_labels[img]
        mine = flat.det_labels[s : s + block, None]
        keep = (labels == mine) if same_class else (labels != mine) & (labels >= 0)
        iou = torch.where(keep, iou, -math.inf)
        ovmax[s : s + block], jmax[s : s + block] = iou.max(dim=1)
    jmax = torch.where(torch.isinf(ovmax), -1, jmax)
    return ovmax, jmax


def with_detections(flat: Flat, keep: Tensor, boxes: Tensor | None = None, labels: Tensor | None = None) -> Flat:
    """The same evaluation input with only the detections where `keep`, optionally changed."""
    boxes = flat.det_boxes if boxes is None else boxes
    labels = flat.det_labels if labels is None else labels
    start = offsets(torch.bincount(flat.det_image[keep], minlength=flat.num_images))
    return dataclasses.replace(
        flat,
        det_image=flat.det_image[keep],
        det_boxes=boxes[keep],
        det_scores=flat.det_scores[keep],
        det_labels=labels[keep],
        det_start=start,
    )


def with_ground_truth(flat: Flat, keep: Tensor) -> Flat:
    """The same evaluation input with only the objects where `keep`."""
    start = offsets(torch.bincount(flat.gt_image[keep], minlength=flat.num_images))
    return dataclasses.replace(
        flat,
        gt_image=flat.gt_image[keep],
        gt_boxes=flat.gt_boxes[keep],
        gt_labels=flat.gt_labels[keep],
        gt_difficult=flat.gt_difficult[keep],
        gt_start=start,
    )


def scale_flat(flat: Flat, sizes: Tensor) -> Flat:
    """The same input with normalized boxes scaled to pixels; sizes: (N, 2) width, height per image."""
    det_boxes = to_pixel_boxes(flat.det_boxes, sizes[flat.det_image, 0], sizes[flat.det_image, 1])
    gt_boxes = to_pixel_boxes(flat.gt_boxes, sizes[flat.gt_image, 0], sizes[flat.gt_image, 1])
    return dataclasses.replace(flat, det_boxes=det_boxes, gt_boxes=gt_boxes)
