"""Evaluation: Pascal VOC mAP as the official devkit computes it, COCO mAP as pycocotools does,
a TIDE-style error breakdown, and fast threshold sweeps.

Inputs are per image. Detections: objects with `.boxes (N, 4)`, `.scores (N,)`, `.labels (N,)`
(e.g. `postprocess` results) or tuples `(boxes, scores, labels)`. Ground truth: objects with
`.boxes (M, 4)`, `.labels (M,)`, `.difficult (M,)` (e.g. `ImageRecord`) or tuples
`(boxes, labels[, difficult])`. Boxes are xyxy, detections and ground truth in the same units.

VOC protocol (the devkit's `voc_eval`): per class, detections in descending score (ties keep
their input order: image order, then order within the image); each detection is compared with
the ground truth of its class in its image that it overlaps most; it is a true positive when
that IoU is above the threshold and that object was not already taken by a higher-scoring
detection; if it was taken, it is a false positive (a duplicate) even when another object would
have fitted: the VOC rule, unlike COCO's. An object marked difficult is neither a positive nor,
when a detection hits it, a false positive (unless `use_difficult`). The devkit computes IoU on
1-based inclusive pixel boxes with "+1" in widths and heights; DESIGN's pixel convention
(xmin - 1, ymin - 1, xmax, ymax) makes the plain IoU used here equal to it.

COCO protocol (pycocotools' COCOeval, bbox): IoU thresholds 0.50:0.05:0.95, 101 recall points,
at most 1 / 10 / 100 detections per image and class, areas all / small (< 32^2) / medium /
large (> 96^2) in pixels^2; a detection takes the unmatched object it overlaps most; crowd
objects (here: difficult ones, unless `use_difficult`) are ignored regions.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from detviz.anchors import Anchors
from detviz.checks import check_probability, check_tensor
from detviz.postprocess import Candidates, find_candidates, first_per_image, grouped_nms

METHODS = ("11point", "all")
TP, FP, DUPLICATE, IGNORED = 0, 1, 2, 3  # detection status in a VOC evaluation
STATUS_NAMES = ("TP", "FP", "duplicate", "ignored (difficult)")
DEVKIT_EPS = float(torch.finfo(torch.float64).eps)  # the devkit's np.finfo(np.float64).eps
VOC07_RECALLS = [i * 0.1 for i in range(11)]  # the devkit's np.arange(0., 1.1, 0.1), value for value


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
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}.")
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
        counts = torch.tensor([p[0].shape[0] for p in parts], dtype=torch.int64)
        return torch.cat([torch.zeros(1, dtype=torch.int64), torch.cumsum(counts, 0)])

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


def _check_iou_threshold(iou_threshold: float) -> None:
    if not 0.0 < iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}.")


# --- VOC ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClassCurve:
    """One class's precision-recall curve, detections in evaluation order.

    precision, recall, scores: (K,) float64 after each of the class's K detections.
    """

    precision: Tensor
    recall: Tensor
    scores: Tensor


@dataclass(frozen=True)
class VOCResult:
    """A Pascal VOC evaluation.

    Attributes:
        ap: (C,) float64, NaN for a class without (non-difficult) ground truth.
        map: mean of the non-NaN APs (NaN if there is none).
        curves: per class, the precision-recall curve.
        status: per image, (N_i,) int64 TP / FP / DUPLICATE / IGNORED for each detection, in
            the input order.
        matched_gt: per image, (N_i,) int64 index (in that image's ground truth) of the object
            each detection was compared with (-1 when no object of its class overlaps it).
        found: per image, (M_i,) bool, the object was found by a true positive.
        num_gt, num_det, num_tp, num_fp: (C,) int64 counts (num_fp counts duplicates too).
        method, iou_threshold, use_difficult: how it was computed.
    """

    ap: Tensor
    map: float
    curves: list[ClassCurve]
    status: list[Tensor]
    matched_gt: list[Tensor]
    found: list[Tensor]
    num_gt: Tensor
    num_det: Tensor
    num_tp: Tensor
    num_fp: Tensor
    method: str
    iou_threshold: float
    use_difficult: bool

    def describe(self) -> str:
        """One sentence on how this number was computed."""
        way = "VOC07 11-point interpolated" if self.method == "11point" else "all-point (VOC2010+)"
        diff = "difficult objects counted" if self.use_difficult else "difficult objects ignored"
        return f"mAP@{self.iou_threshold:g} {way} AP, {diff}, devkit matching."


def pairwise_box_iou_with(det_boxes: Tensor, gt_boxes: Tensor) -> Tensor:
    """IoU of each detection (D, 4) with each of its candidate objects (D, G, 4): (D, G)."""
    lt = torch.maximum(det_boxes[:, None, :2], gt_boxes[..., :2])
    rb = torch.minimum(det_boxes[:, None, 2:], gt_boxes[..., 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    area_d = (det_boxes[:, 2] - det_boxes[:, 0]) * (det_boxes[:, 3] - det_boxes[:, 1])
    area_g = (gt_boxes[..., 2] - gt_boxes[..., 0]) * (gt_boxes[..., 3] - gt_boxes[..., 1])
    return inter / (area_d[:, None] + area_g - inter)


def _padded_gt(flat: Flat) -> tuple[Tensor, Tensor, Tensor]:
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
    gt_boxes, gt_labels, _ = _padded_gt(flat)
    d = flat.det_labels.numel()
    ovmax = torch.full((d,), -math.inf, dtype=torch.float64)
    jmax = torch.full((d,), -1, dtype=torch.int64)
    if gt_labels.shape[1] == 0:
        return ovmax, jmax
    for s in range(0, d, block):  # blocks bound the (block, G) IoU memory
        img = flat.det_image[s : s + block]
        iou = pairwise_box_iou_with(flat.det_boxes[s : s + block], gt_boxes[img])
        labels = gt_labels[img]
        mine = flat.det_labels[s : s + block, None]
        keep = (labels == mine) if same_class else (labels != mine) & (labels >= 0)
        iou = torch.where(keep, iou, -math.inf)
        ovmax[s : s + block], jmax[s : s + block] = iou.max(dim=1)
    jmax = torch.where(torch.isinf(ovmax), -1, jmax)
    return ovmax, jmax


def voc_map(
    detections: Sequence[Any],
    ground_truths: Sequence[Any],
    num_classes: int,
    iou_threshold: float = 0.5,
    method: str = "11point",
    use_difficult: bool = False,
) -> VOCResult:
    """Pascal VOC mAP (module docstring for the protocol).

    Args:
        detections, ground_truths: one entry per image (module docstring).
        num_classes: C.
        iou_threshold: in (0, 1]; a detection needs IoU above it.
        method: "11point" (VOC2007) or "all" (all-point area, VOC2010+).
        use_difficult: count difficult objects as ordinary ones.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}.")
    _check_iou_threshold(iou_threshold)
    return voc_map_flat(
        flatten(detections, ground_truths, num_classes), num_classes, iou_threshold, method, use_difficult
    )


def voc_map_flat(flat: Flat, num_classes: int, iou_threshold: float, method: str, use_difficult: bool) -> VOCResult:
    """`voc_map` on already flattened input (the threshold sweep calls this directly)."""
    d = flat.det_labels.numel()
    ovmax, jmax = best_overlap(flat)
    eligible = ovmax > iou_threshold
    gt_index = torch.where(jmax >= 0, flat.gt_start[flat.det_image] + jmax, 0)
    hits_difficult = eligible & flat.gt_difficult[gt_index] if flat.gt_labels.numel() else eligible & False
    ignored = hits_difficult & (not use_difficult)
    candidate = eligible & ~ignored

    # evaluation order: by class, then descending score; ties keep the input order
    order = torch.argsort(-flat.det_scores, stable=True)
    order = order[torch.argsort(flat.det_labels[order], stable=True)]
    position = torch.empty(d, dtype=torch.int64)
    position[order] = torch.arange(d)
    first = torch.full((max(flat.gt_labels.numel(), 1),), d, dtype=torch.int64)
    first = first.scatter_reduce(0, gt_index[candidate], position[candidate], "amin")
    tp = candidate & (position == first[gt_index])
    status = torch.full((d,), FP, dtype=torch.int64)
    status[candidate & ~tp] = DUPLICATE
    status[tp] = TP
    status[ignored] = IGNORED

    counted = ~flat.gt_difficult | use_difficult
    num_gt = torch.bincount(flat.gt_labels[counted], minlength=num_classes)
    num_det = torch.bincount(flat.det_labels, minlength=num_classes)
    ap = torch.full((num_classes,), math.nan, dtype=torch.float64)
    curves = []
    sorted_labels = flat.det_labels[order]
    bounds = torch.searchsorted(sorted_labels, torch.arange(num_classes + 1))
    tp_sorted = (status[order] == TP).double()
    fp_sorted = ((status[order] == FP) | (status[order] == DUPLICATE)).double()
    for c in range(num_classes):  # C small curves; the matching above is batched
        lo, hi = int(bounds[c]), int(bounds[c + 1])
        tp_cum = torch.cumsum(tp_sorted[lo:hi], 0)
        fp_cum = torch.cumsum(fp_sorted[lo:hi], 0)
        npos = int(num_gt[c])
        recall = tp_cum / npos if npos else torch.full_like(tp_cum, math.nan)
        precision = tp_cum / torch.clamp(tp_cum + fp_cum, min=DEVKIT_EPS)
        curves.append(ClassCurve(precision, recall, flat.det_scores[order][lo:hi]))
        if npos:
            ap[c] = _average_precision(recall, precision, method)
    valid = ap[~torch.isnan(ap)]
    found = torch.zeros(flat.gt_labels.numel(), dtype=torch.bool)
    found[gt_index[tp]] = True
    det_split = flat.det_start.diff().tolist()
    gt_split = flat.gt_start.diff().tolist()
    return VOCResult(
        ap=ap,
        map=float(valid.mean()) if valid.numel() else math.nan,
        curves=curves,
        status=list(status.split(det_split)),
        matched_gt=list(jmax.split(det_split)),
        found=list(found.split(gt_split)),
        num_gt=num_gt,
        num_det=num_det,
        num_tp=torch.bincount(flat.det_labels[tp], minlength=num_classes),
        num_fp=torch.bincount(flat.det_labels[(status == FP) | (status == DUPLICATE)], minlength=num_classes),
        method=method,
        iou_threshold=float(iou_threshold),
        use_difficult=use_difficult,
    )


def _average_precision(recall: Tensor, precision: Tensor, method: str) -> float:
    """The devkit's voc_ap: 11-point interpolation, or the area under the precision envelope."""
    if method == "11point":
        # max precision where recall >= t: recall never falls, so that is the precision envelope
        # at the first such point; the devkit adds p / 11 eleven times, summing first keeps a
        # perfect AP at exactly 1.0
        n = recall.numel()
        if n == 0:
            return 0.0
        envelope = torch.flip(torch.cummax(torch.flip(precision, [0]), 0).values, [0])
        first = torch.searchsorted(recall, torch.tensor(VOC07_RECALLS, dtype=recall.dtype), side="left")
        return sum(float(envelope[i]) if i < n else 0.0 for i in first.tolist()) / 11
    mrec = torch.cat([torch.zeros(1, dtype=torch.float64), recall, torch.ones(1, dtype=torch.float64)])
    mpre = torch.cat([torch.zeros(1, dtype=torch.float64), precision, torch.zeros(1, dtype=torch.float64)])
    mpre = torch.flip(torch.cummax(torch.flip(mpre, [0]), 0).values, [0])  # precision envelope
    steps = torch.nonzero(mrec[1:] != mrec[:-1]).flatten()
    return float(((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]).sum())


# --- COCO --------------------------------------------------------------------------------

# numpy's linspace, not torch's: the two round some values differently (0.7 vs 0.7000000000000001),
# and a recall landing exactly on a threshold then samples a different precision
COCO_IOU_THRESHOLDS = torch.from_numpy(np.linspace(0.5, 0.95, 10))
COCO_RECALLS = torch.from_numpy(np.linspace(0.0, 1.0, 101))
COCO_MAX_DETS = (1, 10, 100)
COCO_AREAS = ((0.0, 1e10), (0.0, 32.0**2), (32.0**2, 96.0**2), (96.0**2, 1e10))  # all, small, medium, large
COCO_STAT_NAMES = (
    "AP @[.50:.95] all",
    "AP @.50 all",
    "AP @.75 all",
    "AP small",
    "AP medium",
    "AP large",
    "AR @1 all",
    "AR @10 all",
    "AR @100 all",
    "AR small",
    "AR medium",
    "AR large",
)


@dataclass(frozen=True)
class COCOResult:
    """A COCO evaluation.

    Attributes:
        stats: (12,) float64, COCOeval.stats in its order (COCO_STAT_NAMES); -1 where undefined.
        precision: (T, R, K, A, M) as COCOeval.eval["precision"] (-1 for absent classes).
        recall: (T, K, A, M) as COCOeval.eval["recall"].
    """

    stats: Tensor
    precision: Tensor
    recall: Tensor


def coco_map(
    detections: Sequence[Any], ground_truths: Sequence[Any], num_classes: int, use_difficult: bool = False
) -> Tensor:
    """The twelve numbers of pycocotools' COCOeval.stats (bbox), in its order.

    Boxes must be in pixels: areas decide small / medium / large. Difficult objects are crowd
    regions (ignored, matched by intersection over the detection's area) unless `use_difficult`.
    """
    return coco_eval(detections, ground_truths, num_classes, use_difficult).stats


def coco_eval(
    detections: Sequence[Any], ground_truths: Sequence[Any], num_classes: int, use_difficult: bool = False
) -> COCOResult:
    """COCOeval (bbox) with its precision and recall arrays; `coco_map` for the arguments."""
    return coco_eval_flat(flatten(detections, ground_truths, num_classes), num_classes, use_difficult)


def coco_eval_flat(flat: Flat, num_classes: int, use_difficult: bool = False) -> COCOResult:
    """`coco_eval` on already flattened input (boxes in pixels)."""
    crowd_all = flat.gt_difficult & (not use_difficult)
    t, r, k, a, m = len(COCO_IOU_THRESHOLDS), len(COCO_RECALLS), num_classes, len(COCO_AREAS), len(COCO_MAX_DETS)
    precision = -torch.ones(t, r, k, a, m, dtype=torch.float64)
    recall = -torch.ones(t, k, a, m, dtype=torch.float64)

    # groups: (image, class) pairs with objects or detections, image-major as pycocotools
    det_key = flat.det_image * num_classes + flat.det_labels
    gt_key = flat.gt_image * num_classes + flat.gt_labels
    keys = torch.unique(torch.cat([det_key, gt_key]))  # sorted: by image, then class
    n = keys.numel()
    if n == 0:
        return COCOResult(_coco_stats(precision, recall), precision, recall)
    det_group = torch.searchsorted(keys, det_key)
    gt_group = torch.searchsorted(keys, gt_key)

    # detections of a group in descending score (stable), the best max(COCO_MAX_DETS) of them
    order = torch.argsort(-flat.det_scores, stable=True)
    order = order[torch.argsort(det_group[order], stable=True)]
    counts = torch.bincount(det_group, minlength=n)
    rank = torch.arange(order.numel()) - (torch.cumsum(counts, 0) - counts)[det_group[order]]
    keep = rank < COCO_MAX_DETS[-1]
    order, rank = order[keep], rank[keep]
    dm = int(rank.max()) + 1 if rank.numel() else 0
    dt_valid = torch.zeros(n, dm, dtype=torch.bool)
    dt_boxes = torch.zeros(n, dm, 4, dtype=torch.float64)
    dt_scores = torch.zeros(n, dm, dtype=torch.float64)
    dt_valid[det_group[order], rank] = True
    dt_boxes[det_group[order], rank] = flat.det_boxes[order]
    dt_scores[det_group[order], rank] = flat.det_scores[order]

    # objects of a group in their input order
    g_counts = torch.bincount(gt_group, minlength=n)
    g_order = torch.argsort(gt_group, stable=True)
    g_rank = torch.empty_like(gt_group)
    g_rank[g_order] = torch.arange(gt_group.numel()) - (torch.cumsum(g_counts, 0) - g_counts)[gt_group[g_order]]
    gm = int(g_counts.max()) if gt_group.numel() else 0
    gt_valid = torch.zeros(n, gm, dtype=torch.bool)
    gt_boxes = torch.zeros(n, gm, 4, dtype=torch.float64)
    gt_crowd = torch.zeros(n, gm, dtype=torch.bool)
    gt_valid[gt_group, g_rank] = True
    gt_boxes[gt_group, g_rank] = flat.gt_boxes
    gt_crowd[gt_group, g_rank] = crowd_all

    matched, ignored = _coco_match(dt_boxes, dt_valid, gt_boxes, gt_valid, gt_crowd)  # (n, A, T, Dm)
    gt_area = (gt_boxes[..., 2] - gt_boxes[..., 0]) * (gt_boxes[..., 3] - gt_boxes[..., 1])
    group_class = keys % num_classes
    for kk in range(num_classes):  # K x A x M small accumulations; the matching is batched
        groups = torch.nonzero(group_class == kk).flatten()
        if groups.numel() == 0:
            continue
        for aa, (lo, hi) in enumerate(COCO_AREAS):
            g_ok = gt_valid[groups] & ~gt_crowd[groups]
            area = gt_area[groups]
            npig = int((g_ok & (area >= lo) & (area <= hi)).sum())
            if npig == 0:
                continue
            for mm, max_det in enumerate(COCO_MAX_DETS):
                sel = dt_valid[groups, :max_det]  # (G, min(Dm, max_det)), image-major as pycocotools
                scores = dt_scores[groups, :max_det][sel]
                hit = matched[groups, aa, :, :max_det].permute(1, 0, 2)[:, sel]  # (T, nd)
                ign = ignored[groups, aa, :, :max_det].permute(1, 0, 2)[:, sel]
                idx = torch.argsort(-scores, stable=True)
                hit, ign = hit[:, idx], ign[:, idx]
                tp = torch.cumsum(hit & ~ign, 1).double()
                fp = torch.cumsum(~hit & ~ign, 1).double()
                nd = scores.numel()
                recall[:, kk, aa, mm] = tp[:, -1] / npig if nd else 0.0
                if nd == 0:
                    precision[:, :, kk, aa, mm] = 0.0
                    continue
                rc = tp / npig
                pr = tp / (fp + tp + DEVKIT_EPS)  # np.spacing(1) == eps
                pr = torch.flip(torch.cummax(torch.flip(pr, [1]), 1).values, [1])
                inds = torch.searchsorted(rc.contiguous(), COCO_RECALLS.expand(t, r).contiguous(), side="left")
                q = torch.gather(pr, 1, inds.clamp(max=nd - 1))
                precision[:, :, kk, aa, mm] = torch.where(inds < nd, q, 0.0)
    return COCOResult(_coco_stats(precision, recall), precision, recall)


def _coco_match(dt_boxes: Tensor, dt_valid: Tensor, gt_boxes: Tensor, gt_valid: Tensor, gt_crowd: Tensor):
    """COCOeval.evaluateImg for all groups, area ranges and IoU thresholds at once.

    Returns (matched, ignored), each (n, A, T, Dm) bool. Loops over detection rank only (at most
    100): each detection's match depends on the objects taken by the better ones before it.
    """
    n, dm = dt_valid.shape
    gm = gt_valid.shape[1]
    a, t = len(COCO_AREAS), len(COCO_IOU_THRESHOLDS)
    matched = torch.zeros(n, a, t, dm, dtype=torch.bool)
    ignored = torch.zeros(n, a, t, dm, dtype=torch.bool)
    if dm == 0:
        return matched, ignored
    # IoU, crowd objects by intersection over the detection's area (maskUtils.iou)
    lt = torch.maximum(dt_boxes[:, :, None, :2], gt_boxes[:, None, :, :2])
    rb = torch.minimum(dt_boxes[:, :, None, 2:], gt_boxes[:, None, :, 2:])
    wh = rb - lt
    inter = torch.where((wh[..., 0] > 0) & (wh[..., 1] > 0), wh[..., 0] * wh[..., 1], 0.0)
    dt_area = (dt_boxes[..., 2] - dt_boxes[..., 0]) * (dt_boxes[..., 3] - dt_boxes[..., 1])
    gt_area = (gt_boxes[..., 2] - gt_boxes[..., 0]) * (gt_boxes[..., 3] - gt_boxes[..., 1])
    union = torch.where(gt_crowd[:, None, :], dt_area[:, :, None], dt_area[:, :, None] + gt_area[:, None, :] - inter)
    iou = inter / union  # (n, Dm, Gm)

    lo = torch.tensor([r[0] for r in COCO_AREAS], dtype=torch.float64)
    hi = torch.tensor([r[1] for r in COCO_AREAS], dtype=torch.float64)
    gt_ignore = gt_crowd[:, None, :] | (gt_area[:, None, :] < lo[:, None]) | (gt_area[:, None, :] > hi[:, None])
    gt_ignore = gt_ignore[:, :, None, :]  # (n, A, 1, Gm)
    thresholds = torch.clamp(COCO_IOU_THRESHOLDS, max=1 - 1e-10)[None, None, :, None]
    taken = torch.zeros(n, a, t, gm, dtype=torch.bool)
    position = torch.arange(gm)
    for k in range(dm):
        g = torch.nonzero(dt_valid[:, k]).flatten()  # the groups that have a k-th detection
        row = iou[g, k, None, None, :]  # (g, 1, 1, Gm)
        ok = gt_valid[g, None, None, :] & (~taken[g] | gt_crowd[g, None, None, :]) & (row >= thresholds)
        pick, found = _last_best(row, ok & ~gt_ignore[g], position)
        pick_ig, found_ig = _last_best(row, ok & gt_ignore[g], position)
        pick = torch.where(found, pick, pick_ig)
        hit = found | found_ig
        matched[g, :, :, k] = hit
        ignored[g, :, :, k] = ~found & found_ig
        taken[g] |= hit[..., None] & (position == pick[..., None])
    dt_outside = (dt_area[:, None, :] < lo[:, None]) | (dt_area[:, None, :] > hi[:, None])  # (n, A, Dm)
    ignored |= ~matched & dt_outside[:, :, None, :]
    return matched, ignored


def _last_best(iou: Tensor, allowed: Tensor, position: Tensor) -> tuple[Tensor, Tensor]:
    """Index of the largest allowed IoU along the last dim, the last of equal ones (pycocotools
    keeps replacing its match on `>=`), and whether any was allowed."""
    value = torch.where(allowed, iou, -1.0)
    best = value.max(-1, keepdim=True).values
    pick = torch.where(allowed & (value == best), position, -1).max(-1).values
    return pick, pick >= 0


def _coco_stats(precision: Tensor, recall: Tensor) -> Tensor:
    def mean(s: Tensor) -> float:
        s = s[s > -1]
        return float(s.mean()) if s.numel() else -1.0

    t50, t75 = 0, 5  # indices of IoU 0.50 and 0.75
    last = len(COCO_MAX_DETS) - 1
    return torch.tensor(
        [
            mean(precision[:, :, :, 0, last]),
            mean(precision[t50, :, :, 0, last]),
            mean(precision[t75, :, :, 0, last]),
            mean(precision[:, :, :, 1, last]),
            mean(precision[:, :, :, 2, last]),
            mean(precision[:, :, :, 3, last]),
            mean(recall[:, :, 0, 0]),
            mean(recall[:, :, 0, 1]),
            mean(recall[:, :, 0, last]),
            mean(recall[:, :, 1, last]),
            mean(recall[:, :, 2, last]),
            mean(recall[:, :, 3, last]),
        ],
        dtype=torch.float64,
    )


# --- error breakdown ---------------------------------------------------------------------

ERROR_TYPES = ("classification", "localisation", "both", "duplicate", "background", "missed")
CLS, LOC, BOTH, DUPE, BKG, MISS = range(6)
NO_ERROR = -1
BACKGROUND_IOU = 0.1  # TIDE's background threshold: below it a box overlaps no object at all


@dataclass(frozen=True)
class ErrorBreakdown:
    """Why a detector loses mAP, in the spirit of TIDE (Bolya et al., 2020).

    Each false positive is one of: classification (it sits on an object of another class,
    IoU above the threshold), localisation (right class, IoU between BACKGROUND_IOU and the
    threshold), both (wrong class and poorly placed), duplicate (its object was already found),
    background (it overlaps no object). Missed: objects no detection found.

    Attributes:
        error: per image, (N_i,) int64 error type of each detection (NO_ERROR for true
            positives and detections on difficult objects).
        missed: per image, (M_i,) bool objects nobody found (difficult ones never count).
        counts: (C, 6) int64 per class and error type (false positives by their predicted
            class, missed objects by theirs).
        delta_map: mAP gained if every error of a type were fixed (an oracle, as TIDE: a
            classification or localisation error corrected, one true positive kept per object,
            a duplicate / both / background detection removed, a missed object dropped from the
            ground truth; `error_breakdown` says where it differs from TIDE).
        base: the VOC evaluation the breakdown starts from.
    """

    error: list[Tensor]
    missed: list[Tensor]
    counts: Tensor
    delta_map: dict[str, float]
    base: VOCResult


def error_breakdown(
    detections: Sequence[Any],
    ground_truths: Sequence[Any],
    num_classes: int,
    iou_threshold: float = 0.5,
    method: str = "all",
    use_difficult: bool = False,
    background_iou: float = BACKGROUND_IOU,
) -> ErrorBreakdown:
    """Classifies every false positive and missed object, and says what fixing each type is worth.

    The oracle fixes one type at a time, as TIDE does: a classification or localisation error
    takes its object's class or box, and each object keeps one true positive, the highest-scoring
    of its old true positive and its corrected detections (the others are dropped, never left as
    duplicates); both, duplicate and background errors are removed; missed objects leave the
    ground truth.

    Where this differs from TIDE (tidecv 1.0.1) on purpose; tests/test_error_breakdown.py checks
    that it agrees with tidecv everywhere else:
    - matching and AP are the VOC devkit's (`method`, all-point by default; IoU strictly above
      the threshold; a detection whose best object is taken is a duplicate), not COCO's greedy
      matching and 101-point AP (TIDE reports AP x 100, and scores a class with detections but
      no objects as AP 0 where VOC leaves it out);
    - the test order: duplicates first, then classification before localisation, so a box on an
      object of another class (IoU above the threshold) that also overlaps one of its own class
      loosely is a classification error; TIDE tests localisation, then classification, then
      duplicate;
    - a corrected detection that outscores its object's true positive replaces it; TIDE drops
      the correction whenever the object was found, and chooses one correction per object across
      classification and localisation errors together;
    - missed counts every object no true positive found; TIDE leaves out the objects a
      classification or localisation error sits on.
    """
    flat = flatten(detections, ground_truths, num_classes)
    return error_breakdown_flat(flat, num_classes, iou_threshold, method, use_difficult, background_iou)


def error_breakdown_flat(
    flat: Flat,
    num_classes: int,
    iou_threshold: float = 0.5,
    method: str = "all",
    use_difficult: bool = False,
    background_iou: float = BACKGROUND_IOU,
) -> ErrorBreakdown:
    """`error_breakdown` on already flattened input (a threshold sweep's detections)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}.")
    _check_iou_threshold(iou_threshold)
    if not 0.0 <= background_iou <= iou_threshold:
        raise ValueError(f"background_iou must be in [0, iou_threshold], got {background_iou}.")
    base = voc_map_flat(flat, num_classes, iou_threshold, method, use_difficult)
    status = torch.cat(base.status) if base.status else torch.zeros(0, dtype=torch.int64)
    iou_same, j_same = best_overlap(flat, same_class=True)
    iou_other, j_other = best_overlap(flat, same_class=False)

    error = torch.full_like(status, NO_ERROR)
    fp = status == FP
    error[status == DUPLICATE] = DUPE
    error[fp & (iou_other > iou_threshold)] = CLS
    error[fp & (error == NO_ERROR) & (iou_same >= background_iou)] = LOC
    error[fp & (error == NO_ERROR) & (iou_other >= background_iou)] = BOTH
    error[fp & (error == NO_ERROR)] = BKG
    found = torch.cat(base.found) if base.found else torch.zeros(0, dtype=torch.bool)
    counted = ~flat.gt_difficult | use_difficult
    missed = ~found & counted

    counts = torch.zeros(num_classes, len(ERROR_TYPES), dtype=torch.int64)
    for kind in (CLS, LOC, BOTH, DUPE, BKG):
        counts[:, kind] = torch.bincount(flat.det_labels[error == kind], minlength=num_classes)
    counts[:, MISS] = torch.bincount(flat.gt_labels[missed], minlength=num_classes)

    def score(fixed: Flat) -> float:
        return voc_map_flat(fixed, num_classes, iou_threshold, method, use_difficult).map

    def corrected(kind: int, new_boxes: Tensor | None, new_labels: Tensor | None) -> float:
        """Fix the detections of `kind`, then keep one true positive per object: of a found
        object's true positive and the corrected detections now on it, the first in evaluation
        order (the highest score) stays and the others are dropped, never left as duplicates."""
        sel = error == kind
        boxes, labels = flat.det_boxes.clone(), flat.det_labels.clone()
        if new_boxes is not None:
            boxes[sel] = new_boxes[sel]
        if new_labels is not None:
            labels[sel] = new_labels[sel]
        fixed = _with_detections(flat, torch.ones_like(sel), boxes, labels)
        again = voc_map_flat(fixed, num_classes, iou_threshold, method, use_difficult)
        dropped = (sel | (status == TP)) & (torch.cat(again.status) == DUPLICATE)
        return score(_with_detections(fixed, ~dropped))

    gt_index_same = torch.where(j_same >= 0, flat.gt_start[flat.det_image] + j_same, 0)
    gt_index_other = torch.where(j_other >= 0, flat.gt_start[flat.det_image] + j_other, 0)
    have_gt = flat.gt_labels.numel() > 0
    fixed_map = {
        "classification": corrected(CLS, None, flat.gt_labels[gt_index_other]) if have_gt else base.map,
        "localisation": corrected(LOC, flat.gt_boxes[gt_index_same], None) if have_gt else base.map,
        "both": score(_with_detections(flat, error != BOTH)),
        "duplicate": score(_with_detections(flat, error != DUPE)),
        "background": score(_with_detections(flat, error != BKG)),
        "missed": score(_with_ground_truth(flat, ~missed)),
    }
    delta = {
        k: (v - base.map) if not (math.isnan(v) or math.isnan(base.map)) else math.nan for k, v in fixed_map.items()
    }
    det_split = flat.det_start.diff().tolist()
    return ErrorBreakdown(
        error=list(error.split(det_split)),
        missed=list(missed.split(flat.gt_start.diff().tolist())),
        counts=counts,
        delta_map=delta,
        base=base,
    )


def _with_detections(flat: Flat, keep: Tensor, boxes: Tensor | None = None, labels: Tensor | None = None) -> Flat:
    """The same evaluation input with only the detections where `keep`, optionally changed."""
    boxes = flat.det_boxes if boxes is None else boxes
    labels = flat.det_labels if labels is None else labels
    counts = torch.bincount(flat.det_image[keep], minlength=flat.num_images)
    start = torch.cat([torch.zeros(1, dtype=torch.int64), torch.cumsum(counts, 0)])
    return dataclasses.replace(
        flat,
        det_image=flat.det_image[keep],
        det_boxes=boxes[keep],
        det_scores=flat.det_scores[keep],
        det_labels=labels[keep],
        det_start=start,
    )


def _with_ground_truth(flat: Flat, keep: Tensor) -> Flat:
    """The same evaluation input with only the objects where `keep`."""
    counts = torch.bincount(flat.gt_image[keep], minlength=flat.num_images)
    start = torch.cat([torch.zeros(1, dtype=torch.int64), torch.cumsum(counts, 0)])
    return dataclasses.replace(
        flat,
        gt_image=flat.gt_image[keep],
        gt_boxes=flat.gt_boxes[keep],
        gt_labels=flat.gt_labels[keep],
        gt_difficult=flat.gt_difficult[keep],
        gt_start=start,
    )


def image_error_counts(breakdown: ErrorBreakdown) -> Tensor:
    """(N, 6) int64: per image, how many detections of each error type and how many missed objects."""
    rows = []
    for error, missed in zip(breakdown.error, breakdown.missed, strict=True):
        counts = torch.bincount(error[error >= 0], minlength=len(ERROR_TYPES))[: len(ERROR_TYPES)].clone()
        counts[MISS] = int(missed.sum())
        rows.append(counts)
    return torch.stack(rows) if rows else torch.zeros(0, len(ERROR_TYPES), dtype=torch.int64)


def worst_images(breakdown: ErrorBreakdown, scores: Sequence[Tensor], k: int = 12) -> list[int]:
    """Up to k images with the most weighty mistakes, worst first: each missed object counts 1,
    each false positive its score (at an evaluation threshold like 0.01, a hundred barely
    believed boxes should not outrank one confident mistake). Ties go to the lower index;
    images without a mistake are left out.

    scores: per image, (N_i,) the detections' scores, as in the evaluation.
    """
    weights = [
        float(missed.sum()) + float(s[error >= 0].sum())
        for error, missed, s in zip(breakdown.error, breakdown.missed, scores, strict=True)
    ]
    total = torch.tensor(weights, dtype=torch.float64)
    order = torch.argsort(-total, stable=True)
    return [int(i) for i in order[:k] if float(total[i]) > 0]


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
    gt_boxes, gt_labels, _ = _padded_gt(flat)
    d = flat.det_labels.numel()
    true = torch.full((d,), c, dtype=torch.int64)
    reached = torch.zeros(flat.gt_labels.numel(), dtype=torch.bool)
    if gt_labels.shape[1] and d:
        iou = pairwise_box_iou_with(flat.det_boxes, gt_boxes[flat.det_image])  # (D, G)
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


def scale_flat(flat: Flat, sizes: Tensor) -> Flat:
    """The same input with normalized boxes scaled to pixels; sizes: (N, 2) width, height per image."""
    scale = sizes.double().repeat(1, 2)  # (N, 4): w, h, w, h
    return dataclasses.replace(
        flat, det_boxes=flat.det_boxes * scale[flat.det_image], gt_boxes=flat.gt_boxes * scale[flat.gt_image]
    )


@dataclass(frozen=True)
class AuditRow:
    """One way of scoring the same detections: its name, settings, mAP and why it differs."""

    protocol: str
    score_threshold: float
    difficult: str
    value: float
    why: str


def metric_audit(
    sweep: ThresholdSweep, sizes: Tensor, nms_iou: float = 0.45, max_detections: int = 100, high: float = 0.3
) -> list[AuditRow]:
    """The same model's detections scored the ways papers and tools do, each with one sentence on
    why its number differs from the first row (VOC07 11-point at score 0.01, difficult ignored).

    Args:
        sweep: the model's outputs over a dataset. sizes: (N, 2) image width, height in pixels
            (COCO's small / medium / large areas are in pixels).
        high: the "deployment" score threshold compared with the evaluation one (0.01).
    """
    low = max(0.01, sweep.floor)

    def voc(method: str, score: float, difficult: bool = False) -> float:
        return sweep.evaluate(score, nms_iou, max_detections, 0.5, method, difficult).map

    def coco(score: float) -> Tensor:
        flat = scale_flat(sweep.detections(score, nms_iou, max_detections), sizes)
        return coco_eval_flat(flat, sweep.num_classes).stats

    ref = voc("11point", low)
    stats = coco(low)
    rows = [
        ("VOC07 11-point", low, "ignored", ref, "The reference: precision read at 11 recall levels (0, 0.1, ... 1)."),
        ("all-point (VOC2010+)", low, "ignored", voc("all", low),
         "Area under the whole precision envelope instead of 11 samples; the two differ by the envelope's steps."),
        ("VOC07 11-point", low, "counted", voc("11point", low, True),
         "Difficult objects become objects to find: the ones the model misses lower recall, the ones it finds "
         "turn ignored detections into true positives."),
        ("VOC07 11-point", high, "ignored", voc("11point", high),
         f"A score threshold of {high:g} cuts the low-scoring tail of every PR curve: recall stops early and the "
         "area it would have added is lost, so mAP is scored at a low threshold."),
        ("all-point (VOC2010+)", high, "ignored", voc("all", high),
         f"The same cut at {high:g}, measured without the 11-point sampling."),
        ("COCO AP@0.5", low, "crowd", float(stats[1]),
         "IoU 0.5 as VOC, but 101 recall points, at most 100 detections per image and class, and a detection "
         "that finds its object taken may match another one; difficult objects are ignored regions (crowd)."),
        ("COCO AP@[.5:.95]", low, "crowd", float(stats[0]),
         "Averages AP over IoU thresholds 0.5 to 0.95: boxes must also sit tightly, so it is much lower."),
        ("COCO AP@[.5:.95]", high, "crowd", float(coco(high)[0]),
         f"The strict COCO number with the {high:g} cut as well."),
    ]  # fmt: skip
    return [AuditRow(*row) for row in rows]


# --- threshold sweeps --------------------------------------------------------------------

SWEEP_FLOOR = 0.001  # candidates are kept down to this score, so any threshold above it can be asked for


class ThresholdSweep:
    """Raw head outputs of a dataset, reduced once to their candidates; then post-processing and
    VOC mAP for any (score threshold, NMS IoU, max detections) at slider speed.

    Build it with `add_batch` for each batch of raw outputs, in dataset order (or with
    `from_outputs`); the ground truth normalized like the boxes the head predicts.
    """

    def __init__(
        self, ground_truths: Sequence[Any], num_classes: int, floor: float = SWEEP_FLOOR, coding: str = "tanh"
    ):
        self.num_classes = num_classes
        self.floor = floor
        self.coding = coding
        no_detections = [(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64))] * len(ground_truths)
        self._gt = flatten(no_detections, ground_truths, num_classes)
        self._parts: list[Candidates] = []
        self._seen = 0
        self._kept: dict[float, Tensor] = {}
        self._results: dict[tuple, VOCResult] = {}  # the last few evaluations, for moves back
        self._lock = threading.Lock()

    @classmethod
    def from_outputs(
        cls,
        class_logits: Tensor,
        box_activations: Tensor,
        anchors: Anchors,
        ground_truths: Sequence[Any],
        floor: float = SWEEP_FLOOR,
        coding: str = "tanh",
        batch_size: int = 64,
    ) -> ThresholdSweep:
        """A sweep over outputs already in memory: (N, A, C + 1) logits, (N, A, 4) activations."""
        sweep = cls(ground_truths, class_logits.shape[-1] - 1, floor, coding)
        for s in range(0, class_logits.shape[0], batch_size):
            sweep.add_batch(class_logits[s : s + batch_size], box_activations[s : s + batch_size], anchors)
        return sweep

    def add_batch(self, class_logits: Tensor, box_activations: Tensor, anchors: Anchors) -> None:
        """Adds the next images' raw outputs: (B, A, C + 1) logits and (B, A, 4) activations."""
        if self._seen + class_logits.shape[0] > self._gt.num_images:
            raise ValueError(
                f"outputs for {self._seen + class_logits.shape[0]} images but ground truth for {self._gt.num_images}."
            )
        c = find_candidates(class_logits, box_activations, anchors, self.floor, coding=self.coding)
        self._parts.append(
            Candidates(
                c.image.cpu() + self._seen,
                c.anchor.cpu(),
                c.label.cpu(),
                c.boxes.cpu().double(),
                c.scores.cpu().double(),
                0,
            )
        )
        self._seen += class_logits.shape[0]
        self.__dict__.pop("candidates", None)  # joined again on next use
        self._kept.clear()
        self._results.clear()

    @functools.cached_property
    def candidates(self) -> Candidates:
        """All candidates (score above the floor), grouped by image, best first."""
        if self._seen != self._gt.num_images:
            raise ValueError(f"outputs cover {self._seen} images but the ground truth {self._gt.num_images}.")
        fields = ("image", "anchor", "label", "boxes", "scores")
        joined = (
            {f: torch.cat([getattr(p, f) for p in self._parts]) for f in fields}
            if self._parts
            else {
                "image": torch.zeros(0, dtype=torch.int64),
                "anchor": torch.zeros(0, dtype=torch.int64),
                "label": torch.zeros(0, dtype=torch.int64),
                "boxes": torch.zeros(0, 4, dtype=torch.float64),
                "scores": torch.zeros(0, dtype=torch.float64),
            }
        )
        return Candidates(**joined, num_images=self._gt.num_images)

    def kept_by_nms(self, nms_iou: float) -> Tensor:
        """Positions of the candidates NMS keeps at this IoU, cached per IoU.

        Greedy NMS decides about a box from better-scoring boxes only, so NMS on the candidates
        above any score threshold keeps exactly these positions' share above it: a new score
        threshold or detection limit needs no new NMS.
        """
        if nms_iou not in self._kept:
            check_probability("nms_iou", nms_iou, low_open=True)
            c = self.candidates
            self._kept[nms_iou] = grouped_nms(c.boxes, c.scores, c.label, c.image, nms_iou)
        return self._kept[nms_iou]

    def warm(self, nms_ious: Sequence[float], stop: threading.Event | None = None) -> None:
        """Runs NMS for each IoU in turn (those not cached yet), so later moves to them are
        instant; meant for a background thread while the user looks at the first result.
        Returns early once `stop` is set."""
        for nms_iou in nms_ious:
            if stop is not None and stop.is_set():
                return
            self.kept_by_nms(nms_iou)

    def detections(self, score_threshold: float, nms_iou: float, max_detections: int) -> Flat:
        """Post-processed detections of every image, with the ground truth, ready to evaluate."""
        if not self.floor <= score_threshold < 1.0:
            raise ValueError(f"score_threshold must be in [{self.floor}, 1) for this sweep, got {score_threshold}.")
        if isinstance(max_detections, bool) or not isinstance(max_detections, int) or max_detections < 1:
            raise ValueError(f"max_detections must be a positive integer, got {max_detections!r}.")
        c = self.candidates
        kept = self.kept_by_nms(nms_iou)
        final = first_per_image(kept[c.scores[kept] > score_threshold], c.image, c.num_images, max_detections)
        counts = torch.bincount(c.image[final], minlength=self._gt.num_images)
        start = torch.cat([torch.zeros(1, dtype=torch.int64), torch.cumsum(counts, 0)])
        return dataclasses.replace(
            self._gt,
            det_image=c.image[final],
            det_boxes=c.boxes[final],
            det_scores=c.scores[final],
            det_labels=c.label[final],
            det_start=start,
        )

    def evaluate(
        self,
        score_threshold: float = 0.01,
        nms_iou: float = 0.45,
        max_detections: int = 100,
        iou_threshold: float = 0.5,
        method: str = "11point",
        use_difficult: bool = False,
    ) -> VOCResult:
        """VOC mAP of the outputs post-processed with these settings (the last 32 are remembered)."""
        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}.")
        _check_iou_threshold(iou_threshold)
        key = (score_threshold, nms_iou, max_detections, iou_threshold, method, use_difficult)
        if key not in self._results:
            flat = self.detections(score_threshold, nms_iou, max_detections)
            result = voc_map_flat(flat, self.num_classes, iou_threshold, method, use_difficult)
            with self._lock:  # app sessions share a sweep
                if len(self._results) >= 32:
                    self._results.pop(next(iter(self._results)))
                self._results[key] = result
        return self._results[key]

    def surface(
        self,
        score_thresholds: Sequence[float],
        nms_ious: Sequence[float],
        max_detections: int = 100,
        iou_threshold: float = 0.5,
        method: str = "11point",
    ) -> Tensor:
        """(S, N) mAP over a grid of score thresholds x NMS IoUs."""
        rows = [
            [self.evaluate(s, n, max_detections, iou_threshold, method).map for n in nms_ious] for s in score_thresholds
        ]
        return torch.tensor(rows, dtype=torch.float64)


# --- command line ------------------------------------------------------------------------


def detect_dataset(
    detector: Any,
    index: Any,
    score_threshold: float = 0.01,
    nms_iou: float = 0.45,
    max_detections: int = 100,
    batch_size: int = 16,
    progress: Any = None,
) -> list[Any]:
    """Runs a Detector over every image of a DatasetIndex; detections in pixels, one per image."""
    from detviz.data import load_image

    results = []
    for start in range(0, len(index), batch_size):
        records = [index[i] for i in range(start, min(start + batch_size, len(index)))]
        images = [load_image(r.image_path, (r.width, r.height)) for r in records]
        results += detector.detect(images, score_threshold, nms_iou, max_detections)
        if progress is not None:
            progress(len(results), len(index))
    return results


def coco_results(detections: Sequence[Any], index: Any) -> list[dict[str, Any]]:
    """Detections as a COCO results list (bbox [x, y, w, h] in pixels, category ids of the data)."""
    categories = index.category_ids or list(range(1, index.num_classes + 1))
    out = []
    for det, image_id in zip(detections, index.image_ids, strict=True):
        key: int | str = int(image_id) if str(image_id).isdigit() else image_id
        for box, score, label in zip(det.boxes.tolist(), det.scores.tolist(), det.labels.tolist(), strict=True):
            x1, y1, x2, y2 = box
            out.append(
                {
                    "image_id": key,
                    "category_id": int(categories[label]),
                    "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                    "score": round(score, 5),
                }
            )
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json
    import sys
    from pathlib import Path

    from tqdm import tqdm

    from detviz.checks import resolve_device
    from detviz.data import DataError
    from detviz.data.spec import open_dataset
    from detviz.inference import Detector
    from detviz.models import CheckpointError, compatibility_problems

    class OneLineParser(argparse.ArgumentParser):
        def error(self, message: str) -> Any:
            self.exit(2, f"error: {message} (see --help)\n")

    parser = OneLineParser(
        prog="python -m detviz.evaluate",
        description="Evaluate a checkpoint on a dataset.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--checkpoint", required=True, help="a detviz checkpoint (.pt)")
    parser.add_argument("--data", default="demo", help="dataset: demo | voc:<dir> | coco:<json>,<image dir>")
    parser.add_argument("--split", default="val", help="split of a VOC / demo dataset")
    parser.add_argument("--method", choices=("11point", "all", "coco"), default="11point", help="how AP is computed")
    parser.add_argument("--iou-threshold", type=float, default=0.5, help="VOC: IoU a detection needs")
    parser.add_argument("--use-difficult", action="store_true", help="count difficult objects as ordinary ones")
    parser.add_argument("--score-threshold", type=float, default=0.01, help="detections below this are dropped")
    parser.add_argument("--nms-iou", type=float, default=0.45, help="NMS IoU")
    parser.add_argument("--max-detections", type=int, default=100, help="detections kept per image")
    parser.add_argument("--device", default="cpu", help="auto | cpu | cuda | cuda:N | mps")
    parser.add_argument("--out", type=Path, default=Path("."), help="folder for metrics.json and coco_results.json")
    args = parser.parse_args(argv)
    try:
        detector = Detector.from_checkpoint(args.checkpoint, resolve_device(args.device))
        index = open_dataset(args.data, args.split)
        problems = compatibility_problems(detector.info, class_names=index.classes)
        if problems:
            raise ValueError(f"the checkpoint does not fit this dataset: {'; '.join(problems)}.")
        with tqdm(total=len(index), unit="img", desc="detecting", disable=None) as bar:
            detections = detect_dataset(
                detector,
                index,
                args.score_threshold,
                args.nms_iou,
                args.max_detections,
                progress=lambda done, _: bar.update(done - bar.n),
            )
        if args.method == "coco":
            stats = coco_map(detections, index, index.num_classes, args.use_difficult)
            metrics: dict[str, Any] = {
                "method": "coco",
                "stats": dict(zip(COCO_STAT_NAMES, stats.tolist(), strict=True)),
            }
            for name, value in metrics["stats"].items():
                print(f"{name:<22} {value:.4f}")
        else:
            r = voc_map(detections, index, index.num_classes, args.iou_threshold, args.method, args.use_difficult)
            print(f"{'class':<16} {'AP':>7} {'objects':>8} {'detections':>11} {'TP':>6} {'FP':>6}")
            for c, name in enumerate(index.classes):
                ap = "-" if math.isnan(r.ap[c]) else f"{float(r.ap[c]):.4f}"
                print(
                    f"{name:<16} {ap:>7} {int(r.num_gt[c]):>8} {int(r.num_det[c]):>11} {int(r.num_tp[c]):>6} "
                    f"{int(r.num_fp[c]):>6}"
                )
            print(f"{'mAP':<16} {r.map:>7.4f}   ({r.describe()})")
            metrics = {
                "method": args.method,
                "map": r.map,
                "description": r.describe(),
                "ap": {n: (None if math.isnan(v) else v) for n, v in zip(index.classes, r.ap.tolist(), strict=True)},
            }
        metrics |= {
            "checkpoint": str(args.checkpoint),
            "data": args.data,
            "split": args.split,
            "score_threshold": args.score_threshold,
            "nms_iou": args.nms_iou,
            "max_detections": args.max_detections,
            "images": len(index),
        }
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        (args.out / "coco_results.json").write_text(json.dumps(coco_results(detections, index)) + "\n")
        print(f"wrote {args.out / 'metrics.json'} and {args.out / 'coco_results.json'}")
    except (ValueError, DataError, CheckpointError, OSError, RuntimeError) as e:
        print(f"error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
