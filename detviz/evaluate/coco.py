"""COCO mAP as pycocotools does it, and detections written as a COCO results list.

The protocol (pycocotools' COCOeval, bbox): IoU thresholds 0.50:0.05:0.95, 101 recall points,
at most 1 / 10 / 100 detections per image and class, areas all / small (< 32^2) / medium /
large (> 96^2) in pixels^2; a detection takes the unmatched object it overlaps most; crowd
objects (here: difficult ones, unless `use_difficult`) are ignored regions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from detviz.evaluate.inputs import Flat, batched_iou, flatten
from detviz.evaluate.voc import DEVKIT_EPS

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
    iou = batched_iou(dt_boxes, gt_boxes, crowd=gt_crowd)  # (n, Dm, Gm); crowd as maskUtils.iou
    dt_area = (dt_boxes[..., 2] - dt_boxes[..., 0]) * (dt_boxes[..., 3] - dt_boxes[..., 1])
    gt_area = (gt_boxes[..., 2] - gt_boxes[..., 0]) * (gt_boxes[..., 3] - gt_boxes[..., 1])

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
