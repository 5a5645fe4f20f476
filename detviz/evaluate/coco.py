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
_THRESHOLDS = torch.clamp(COCO_IOU_THRESHOLDS, max=1 - 1e-10)  # as COCOeval.evaluateImg
_AREA_LO = torch.tensor([lo for lo, _ in COCO_AREAS], dtype=torch.float64)
_AREA_HI = torch.tensor([hi for _, hi in COCO_AREAS], dtype=torch.float64)
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
    """`coco_eval` on already flattened input (boxes in pixels).

    Vectorised over images and classes (pycocotools loops over both): detections are sorted once,
    overlaps are computed only for the (detection, object) pairs of one image and class, the
    greedy matching runs for all area ranges and IoU thresholds at once, and the precision /
    recall curves come from cumulative sums over one global score order.
    """
    crowd = flat.gt_difficult & (not use_difficult)
    dets = _ranked_detections(flat, num_classes)
    gt_key = flat.gt_image * num_classes + flat.gt_labels
    g_order = torch.argsort(gt_key, stable=True)  # by (image, class), input order inside
    gts = _Objects(
        key=gt_key[g_order],
        boxes=flat.gt_boxes[g_order],
        area=_area(flat.gt_boxes[g_order]),
        crowd=crowd[g_order],
        label=flat.gt_labels[g_order],
    )
    pairs = _overlapping_pairs(dets, gts)
    matched, true_pos = _greedy_match(dets, gts, pairs)  # (A, T, N) over the N detections with a pair
    precision, recall = _accumulate(dets, gts, pairs.det_of_active, matched, true_pos, num_classes)
    return COCOResult(_coco_stats(precision, recall), precision, recall)


@dataclass(frozen=True)
class _Detections:
    """The detections COCOeval looks at (the best max(COCO_MAX_DETS) of each image and class),
    in accumulation order: by class, then descending score, then image, then rank in the image."""

    key: Tensor  # (D,) int64 image * C + class
    label: Tensor  # (D,) int64
    rank: Tensor  # (D,) int64 position in its (image, class) group, best first
    boxes: Tensor  # (D, 4) float64
    area: Tensor  # (D,) float64


@dataclass(frozen=True)
class _Objects:
    """Ground truth sorted by (image, class), in input order inside a group."""

    key: Tensor  # (G,) int64 image * C + class
    boxes: Tensor  # (G, 4) float64
    area: Tensor  # (G,) float64
    crowd: Tensor  # (G,) bool
    label: Tensor  # (G,) int64


@dataclass(frozen=True)
class _Pairs:
    """(detection, object) pairs of the same image and class that overlap enough to match at the
    lowest IoU threshold, grouped by detection (in _Detections order), objects in group order."""

    iou: Tensor  # (P,) float64
    gt: Tensor  # (P,) int64 index into _Objects
    det_of_active: Tensor  # (N,) int64 the detections with at least one pair, ascending
    start: Tensor  # (N,) int64 first pair of each of those detections
    count: Tensor  # (N,) int64 its number of pairs


def _area(boxes: Tensor) -> Tensor:
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def _ranked_detections(flat: Flat, num_classes: int) -> _Detections:
    key = flat.det_image * num_classes + flat.det_labels
    by_score = torch.argsort(-flat.det_scores, stable=True)  # ties keep the input order, as mergesort
    by_group = by_score[torch.argsort(key[by_score], stable=True)]
    rank = torch.empty_like(key)
    rank[by_group] = _rank_in_run(key[by_group])
    by_class = by_score[torch.argsort(flat.det_labels[by_score], stable=True)]
    kept = by_class[rank[by_class] < COCO_MAX_DETS[-1]]  # the rest can take no object from these
    boxes = flat.det_boxes[kept]
    return _Detections(key[kept], flat.det_labels[kept], rank[kept], boxes, _area(boxes))


def _overlapping_pairs(dets: _Detections, gts: _Objects) -> _Pairs:
    lo = torch.searchsorted(gts.key, dets.key)
    count = torch.searchsorted(gts.key, dets.key, right=True) - lo
    det = torch.repeat_interleave(torch.arange(dets.key.numel()), count)
    gt = lo[det] + _rank_in_run(det)
    iou = batched_iou(dets.boxes[det, None], gts.boxes[gt, None], crowd=gts.crowd[gt, None])  # as maskUtils.iou
    iou = iou[:, 0, 0]
    close = iou >= _THRESHOLDS.min()  # NaN (empty boxes) never matches
    det, gt, iou = det[close], gt[close], iou[close]
    active, n_pairs = torch.unique_consecutive(det, return_counts=True)
    return _Pairs(iou, gt, active, torch.cumsum(n_pairs, 0) - n_pairs, n_pairs)


def _greedy_match(dets: _Detections, gts: _Objects, pairs: _Pairs) -> tuple[Tensor, Tensor]:
    """COCOeval.evaluateImg's greedy matching, for every group, area range and IoU threshold.

    Returns (matched, true_pos), each (A, T, N) bool over the detections that have a pair:
    matched to some object, and matched to one that is not ignored. A detection takes the best
    free object of its group (not ignored first, then the largest IoU, the last of equal ones, as
    pycocotools keeps replacing its match on `>=`); crowd objects are never used up. Only the
    objects taken by better detections of the same group matter, so round i handles the i-th
    detection (with a pair) of every group at once: at most max(COCO_MAX_DETS) rounds.
    """
    n_a, n_t, n_gt = len(COCO_AREAS), len(COCO_IOU_THRESHOLDS), gts.key.numel()
    n = pairs.det_of_active.numel()
    if n == 0:
        return torch.zeros(n_a, n_t, 0, dtype=torch.bool), torch.zeros(n_a, n_t, 0, dtype=torch.bool)
    ignored = gts.crowd | _outside(gts.area)  # (A, G)
    taken = torch.zeros(n_a * n_t, n_gt + 1, dtype=torch.bool)  # the last column takes the misses

    # the rank of each detection among those with a pair in its group
    det = pairs.det_of_active
    by_group = torch.argsort(dets.key[det] * COCO_MAX_DETS[-1] + dets.rank[det])
    round_of = torch.empty_like(det)
    round_of[by_group] = _rank_in_run(dets.key[det][by_group])
    members = torch.argsort(round_of, stable=True)
    row = torch.arange(n_a * n_t).view(n_a, n_t, 1) * (n_gt + 1)
    done, handled, hits, founds = 0, [], [], []
    for size in torch.bincount(round_of).tolist():  # a loop over rank: each depends on the objects taken before
        j = members[done : done + size]
        done += size
        single = pairs.count[j] == 1  # most detections: a cheaper step without a choice to make
        for part in (j[single], j[~single]):
            if part.numel():
                hit, found, chosen = _match_step(part, pairs, gts.crowd, ignored, taken)
                taken.view(-1).index_fill_(0, (row + torch.where(hit, chosen, n_gt)).view(-1), True)
                handled.append(part)
                hits.append(hit)
                founds.append(found)
    back = torch.empty(n, dtype=torch.int64)
    back[torch.cat(handled)] = torch.arange(n)
    return torch.cat(hits, 2).index_select(2, back), torch.cat(founds, 2).index_select(2, back)


def _match_step(j: Tensor, pairs: _Pairs, crowd: Tensor, ignored: Tensor, taken: Tensor) -> tuple[Tensor, ...]:
    """One round of `_greedy_match` for the active detections j (n,), none of the same group.
    Returns hit, found (not ignored) and the object chosen, each (A, T, n)."""
    n_a, n_t, n = len(COCO_AREAS), len(COCO_IOU_THRESHOLDS), j.numel()
    q = int(pairs.count[j].max())
    if q == 1:
        iou, gt = pairs.iou[pairs.start[j]], pairs.gt[pairs.start[j]]  # (n,)
        allowed = (~taken.index_select(1, gt) | crowd[gt]).view(n_a, n_t, n) & (iou >= _THRESHOLDS[:, None])
        return allowed, allowed & ~ignored.index_select(1, gt)[:, None], gt.expand(n_a, n_t, n)
    slot = torch.arange(q)
    real = slot < pairs.count[j, None]  # (n, q)
    index = torch.where(real, pairs.start[j, None] + slot, pairs.start[j, None])
    iou, gt = pairs.iou[index], pairs.gt[index]  # (n, q)
    free = (~taken.index_select(1, gt.view(-1)) | crowd[gt].view(-1)).view(n_a, n_t, n, q)
    allowed = free & real & (iou >= _THRESHOLDS[:, None, None])  # (A, T, n, q)
    ig = ignored.index_select(1, gt.view(-1)).view(n_a, 1, n, q)
    pick, found = _last_best(iou, allowed & ~ig, slot)
    pick_ig, found_ig = _last_best(iou, allowed & ig, slot)
    pick = torch.where(found, pick, pick_ig).clamp(min=0)
    chosen = torch.gather(gt.expand(n_a, n_t, n, q), 3, pick[..., None])[..., 0]
    return found | found_ig, found, chosen


def _outside(area: Tensor) -> Tensor:
    """(A, X) bool: the area is outside each of COCO_AREAS (whose borders count as inside)."""
    return (area[None] < _AREA_LO[:, None]) | (area[None] > _AREA_HI[:, None])


def _accumulate(
    dets: _Detections, gts: _Objects, active: Tensor, matched: Tensor, true_pos: Tensor, k: int
) -> tuple[Tensor, Tensor]:
    """COCOeval.accumulate: precision (T, R, K, A, M) and recall (T, K, A, M), -1 where a class
    has no object that counts in an area range.

    Along one class's detections in score order, precision at the j-th true positive is
    j / (detections not ignored so far). Those that are not matched are ignored only when
    outside the area range, so that count is one cumulative sum over all detections plus a
    correction from the (few) matched ones. Interpolated precision at a recall threshold is the
    largest precision at or after the first point reaching it: the true positives are put in
    the bucket of the last threshold their recall reaches, and a reversed cumulative maximum
    over the 101 buckets finishes it.
    """
    n_t, n_r, n_a, n_m = len(COCO_IOU_THRESHOLDS), len(COCO_RECALLS), len(COCO_AREAS), len(COCO_MAX_DETS)
    counted = ~gts.crowd & ~_outside(gts.area)  # (A, G)
    npig = torch.zeros(n_a, k, dtype=torch.int64)
    npig.index_put_((torch.arange(n_a)[:, None].expand_as(counted), gts.label.expand_as(counted)), counted.long(),
                    accumulate=True)  # fmt: skip
    best = torch.zeros(n_m, n_a, n_t, k, n_r, dtype=torch.float64)  # per recall bucket
    found = torch.zeros(n_m, n_a, n_t, k, dtype=torch.int64)  # true positives

    inside = ~_outside(dets.area)  # (A, D)
    n_d, n = dets.rank.numel(), active.numel()
    class_start = torch.searchsorted(dets.label, dets.label)  # (D,) first position of the class
    # the matches that change the count: true positives outside the range, ignored ones inside it
    fixes = matched & (true_pos != inside[:, active][:, None])  # (A, T, N)
    event = torch.nonzero((fixes | true_pos).view(-1))[:, 0]  # sorted by (area, threshold, detection)
    ev_a, ev_t, ev_det = event // (n_t * n), event // n % n_t, active[event % n]
    ev_tp = true_pos.view(-1)[event]
    ev_at = ev_a * n_d  # flat indices into (A, D) rows are faster than 2-d fancy indexing
    ev_in = inside.view(-1)[ev_at + ev_det].long()
    ev_fix = ev_tp.long() - ev_in  # counted as inside the range: is it not ignored?
    for mm, max_det in enumerate(COCO_MAX_DETS):
        counts = ((dets.rank < max_det) & inside).long()  # (A, D) not ignored unless matched
        before = (torch.cumsum(counts, 1) - counts).view(-1)  # not ignored before each detection
        sel = torch.nonzero(dets.rank[ev_det] < max_det)[:, 0]
        at, d_, tp, fix, in_ = ev_at[sel], ev_det[sel], ev_tp[sel], ev_fix[sel], ev_in[sel]
        seg = (ev_a[sel] * n_t + ev_t[sel]) * k + dets.label[d_]  # (area, threshold, class), ascending
        first = _first_of_run(seg)
        fix_sum = torch.cumsum(fix, 0)
        tp_sum = torch.cumsum(tp, 0)
        not_ignored = before[at + d_] + in_ - before[at + class_start[d_]] + fix_sum - (fix_sum[first] - fix[first])
        hit = torch.nonzero(tp)[:, 0]
        j = (tp_sum - (tp_sum[first] - tp[first].long()))[hit].double()  # the j-th true positive of its class
        seg = seg[hit]
        pr = j / (not_ignored[hit].double() + DEVKIT_EPS)  # np.spacing(1) == eps
        rc = j / npig.view(-1)[at[hit] // n_d * k + seg % k]
        bucket = torch.searchsorted(COCO_RECALLS, rc, right=True) - 1
        best[mm].view(-1).scatter_reduce_(0, seg * n_r + bucket, pr, "amax")
        found[mm].view(-1).scatter_reduce_(0, seg, j.long(), "amax")
    precision = torch.flip(torch.cummax(torch.flip(best, [-1]), -1).values, [-1])
    absent = (npig == 0)[None, :, None, :]  # (1, A, 1, K)
    precision = torch.where(absent[..., None], -1.0, precision).permute(2, 4, 3, 1, 0)
    recall = torch.where(absent, -1.0, found.double() / npig[None, :, None, :].clamp(min=1)).permute(2, 3, 1, 0)
    return precision, recall


def _first_of_run(values: Tensor) -> Tensor:
    """For grouped values (X,) (equal ones next to each other), the index of the first of each run."""
    counts = torch.unique_consecutive(values, return_counts=True)[1]
    return torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)


def _rank_in_run(values: Tensor) -> Tensor:
    """For grouped values (X,), the position of each entry in its run of equal ones."""
    return torch.arange(values.numel()) - _first_of_run(values)


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
            out.append({"image_id": key, **coco_result(box, score, int(categories[label]))})
    return out


def coco_result(box: Sequence[float], score: float, category_id: int) -> dict[str, Any]:
    """One detection as COCO results write it: category_id, bbox [x, y, w, h] from a pixel xyxy
    box (to 0.01 px) and score (to 1e-5)."""
    x1, y1, x2, y2 = box
    return {
        "category_id": category_id,
        "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
        "score": round(score, 5),
    }
