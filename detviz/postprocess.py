"""Post-processing: box activations and class logits -> detections, with NMS.

Per image: decode the boxes; score every (anchor, class) pair with its own sigmoid (the
model is trained with BCE / focal loss, so the background column is not used); keep the
pairs above `score_threshold` (at most `max_candidates` of the best); non-maximum suppression
per class (`torchvision.ops.batched_nms`); keep the best `max_detections`.

With `return_trace=True` each result also says, for every candidate, whether NMS kept it and
if not which kept box suppressed it at what IoU: computed after NMS in one vectorised step,
and equal to what a step-by-step greedy NMS would report.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from detviz.anchors import Anchors
from detviz.boxes import CODINGS, decode_boxes, pairwise_iou
from detviz.checks import check_choice, check_positive_int, check_probability, check_same_device, check_tensor
from detviz.codes import NMSDecision

DEFAULT_SCORE_THRESHOLD = 0.05  # SSD's usual evaluation threshold
DEFAULT_NMS_IOU = 0.45  # SSD's NMS IoU
DEFAULT_MAX_DETECTIONS = 100
DEFAULT_MAX_CANDIDATES = 1000  # best-scoring pairs that go into NMS (torchvision's SSD keeps 400 per class)

# the NMSDecision codes under the names pages and tests import from here
KEPT, SUPPRESSED, OVER_LIMIT = NMSDecision.KEPT, NMSDecision.SUPPRESSED, NMSDecision.OVER_LIMIT


@dataclass(frozen=True)
class NMSTrace:
    """What happened to every candidate of one image, in descending score order.

    Attributes:
        boxes: (M, 4) xyxy normalized. scores: (M,). labels: (M,) int64. anchor: (M,) int64.
        status: (M,) int64 NMSDecision: KEPT, SUPPRESSED by NMS, or OVER_LIMIT (kept by NMS but
            beyond max_detections).
        suppressed_by: (M,) int64 position (in this trace) of the kept box that suppressed the
            candidate, -1 when it was not suppressed.
        suppression_iou: (M,) IoU with that box, 0 when not suppressed.
    """

    boxes: Tensor
    scores: Tensor
    labels: Tensor
    anchor: Tensor
    status: Tensor
    suppressed_by: Tensor
    suppression_iou: Tensor


@dataclass(frozen=True)
class Detections:
    """Detections of one image, best first.

    Attributes:
        boxes: (N, 4) xyxy normalized. scores: (N,). labels: (N,) int64 in 0 .. C-1.
        anchor: (N,) int64 the anchor each detection came from.
        trace: the candidates and NMS decisions, when asked for.
    """

    boxes: Tensor
    scores: Tensor
    labels: Tensor
    anchor: Tensor
    trace: NMSTrace | None = None

    def __len__(self) -> int:
        return self.scores.shape[0]


@dataclass(frozen=True)
class Candidates:
    """(anchor, class) pairs scoring above a threshold, grouped by image, best first in each.

    Attributes:
        image, anchor, label: (P,) int64. boxes: (P, 4) decoded xyxy normalized. scores: (P,).
        num_images: B.
    """

    image: Tensor
    anchor: Tensor
    label: Tensor
    boxes: Tensor
    scores: Tensor
    num_images: int

    def __len__(self) -> int:
        return self.scores.shape[0]

    def subset(self, mask: Tensor) -> Candidates:
        """The candidates where `mask` (P,) is True, in the same order."""
        return Candidates(
            self.image[mask], self.anchor[mask], self.label[mask], self.boxes[mask], self.scores[mask], self.num_images
        )


def find_candidates(
    class_logits: Tensor,
    box_activations: Tensor,
    anchors: Anchors,
    score_threshold: float = DEFAULT_SCORE_THRESHOLD,
    max_candidates: int = DEFAULT_MAX_CANDIDATES,
    coding: str = "tanh",
) -> Candidates:
    """The first half of `postprocess`: threshold the class scores and decode the survivors.

    Args: as `postprocess`. Raises ValueError on bad arguments or non-finite outputs.
    """
    check_tensor("class_logits", class_logits, ["B", len(anchors), "C+1"], floating=True)
    b, a, c1 = class_logits.shape
    check_tensor("box_activations", box_activations, [b, a, 4], floating=True)
    check_same_device(class_logits=class_logits, box_activations=box_activations, anchors=anchors.boxes)
    if not 0.0 <= score_threshold < 1.0:
        raise ValueError(f"score_threshold must be in [0, 1), got {score_threshold}.")
    check_positive_int("max_candidates", max_candidates)
    check_choice("coding", coding, CODINGS)
    if not bool(torch.isfinite(class_logits.sum())):  # one cheap pass; NaN or inf anywhere shows in the sum
        raise ValueError("class_logits contains NaN or inf; the model's output is broken.")
    num_classes = c1 - 1

    # compare logits with logit(threshold), so only the survivors go through a sigmoid
    cut = math.log(score_threshold / (1 - score_threshold)) if score_threshold > 0 else -math.inf
    flat = torch.nonzero((class_logits > cut).view(-1)).squeeze(1)  # positions in (B, A, C + 1), image-major
    flat = flat[flat % c1 != num_classes]  # the background column is not a class

    # best first within each image (nonzero already grouped them by image), at most max_candidates;
    # only the flat positions and logits are reordered, the indices follow from the positions
    cand_logits, order = torch.sort(class_logits.reshape(-1)[flat], descending=True, stable=True)
    flat = flat[order]
    if b > 1:
        order = torch.argsort(flat // (a * c1), stable=True)
        flat, cand_logits = flat[order], cand_logits[order]
    if flat.numel() > max_candidates:
        img = flat // (a * c1)
        within = _rank_in_image(img, torch.bincount(img, minlength=b)) < max_candidates
        flat, cand_logits = flat[within], cand_logits[within]
    row, label = flat // c1, flat % c1  # row: image * A + anchor
    img, anchor = row // a, row % a

    # index_select, not [row]: indexing 1,000+ rows runs on parallel threads (see grouped_nms)
    act = box_activations.reshape(-1, 4).index_select(0, row).float()
    boxes = decode_boxes(act, anchors.centers[anchor], anchors.sizes[anchor], anchors.cell_size[anchor], coding)
    if not bool(torch.isfinite(boxes).all()):
        raise ValueError("box_activations gives non-finite boxes (NaN or inf); the model's output is broken.")
    return Candidates(img, anchor, label, boxes, torch.sigmoid(cand_logits.float()), b)


def select(candidates: Candidates, nms_iou: float, max_detections: int) -> tuple[Tensor, Tensor]:
    """The second half of `postprocess`: NMS per image and class, then the best per image.

    Returns:
        kept: positions of the candidates NMS keeps, grouped by image, best first.
        final: the first max_detections of them in each image.
    """
    check_probability("nms_iou", nms_iou, low_open=True)
    check_positive_int("max_detections", max_detections)
    kept = grouped_nms(candidates.boxes, candidates.scores, candidates.label, candidates.image, nms_iou)
    return kept, first_per_image(kept, candidates.image, candidates.num_images, max_detections)


def first_per_image(positions: Tensor, image: Tensor, num_images: int, limit: int) -> Tensor:
    """The first `limit` of `positions` (ascending, so grouped by image, best first) in each image."""
    if num_images == 1:
        return positions[:limit]
    counts = torch.bincount(image[positions], minlength=num_images)
    return positions[_rank_in_image(image[positions], counts) < limit]


NMS_CHUNK = 256  # boxes per batched_nms call: balances its per-call cost against its O(n^2) loop


def grouped_nms(boxes: Tensor, scores: Tensor, labels: Tensor, image: Tensor, nms_iou: float) -> Tensor:
    """NMS within each (image, class) group. Returns the kept positions in ascending order (for
    candidates grouped by image and best first, that is still by image, best first).

    One batched_nms call compares every pair of its boxes in an O(n^2) C++ loop (or, past 1,000
    boxes, loops over the groups in Python), so past 1.5 x NMS_CHUNK boxes the groups are sent in
    chunks of about NMS_CHUNK boxes: few calls, and no comparisons across far-apart groups.
    """
    width = int(labels.max()) + 1 if labels.numel() else 1
    group = image * width + labels
    if boxes.shape[0] < NMS_CHUNK * 3 // 2:
        return torch.sort(_batched_nms(boxes, scores, group, nms_iou)).values
    order = torch.argsort(group, stable=True)  # groups together, each still best first
    bounds = _chunk_bounds(torch.unique_consecutive(group[order], return_counts=True)[1].tolist())
    # one small gather per chunk, not one of everything: torch indexes 1,000+ rows on parallel
    # threads, which costs milliseconds when the other core is busy (a server under load)
    parts = [order[a:b] for a, b in itertools.pairwise(bounds)]
    kept = [part[_batched_nms(boxes[part], scores[part], group[part], nms_iou)] for part in parts]
    return torch.sort(torch.cat(kept)).values


def _chunk_bounds(counts: list[int]) -> list[int]:
    """Where to cut a run of groups of `counts` boxes into parts of about NMS_CHUNK boxes, never
    inside a group. Returns the first position of each part, then the total: 0, ..., sum(counts).

    round(total / NMS_CHUNK) parts of equal length L (3/4 to 5/4 NMS_CHUNK from 1.5 NMS_CHUNK
    boxes on); a group joins the part its first box falls in, so a chunk is L give or take one
    group, and there is no small last chunk (a batched_nms call costs some 50 us on CPU however
    few its boxes).
    """
    total = sum(counts)
    parts = max(1, round(total / NMS_CHUNK))
    bounds, begin = [0], 0
    for count in counts:
        if begin * parts // total > bounds[-1] * parts // total:
            bounds.append(begin)
        begin += count
    return [*bounds, total]


def _batched_nms(boxes: Tensor, scores: Tensor, group: Tensor, nms_iou: float) -> Tensor:
    """torchvision.ops.batched_nms in float64, imported on first use: torchvision takes seconds to
    import, and the app's pages that only draw boxes never need it.

    batched_nms keeps groups apart by shifting each group's boxes by group x (largest coordinate
    + 1). With (image, class) groups over a dataset the shifts reach thousands, where float32
    keeps only about three decimals of a normalized box: IoUs near the threshold then depended
    on which other groups shared the call (one image alone, or the whole live set, decided
    differently). float64 keeps the IoUs exact to ~1e-12 at any shift.
    """
    from torchvision.ops import batched_nms

    return batched_nms(boxes.double(), scores.double(), group, nms_iou)


def _rank_in_image(image: Tensor, counts: Tensor) -> Tensor:
    """Position of each row within its image, for rows grouped by image."""
    return torch.arange(image.numel(), device=image.device) - (torch.cumsum(counts, 0) - counts)[image]


def postprocess(
    class_logits: Tensor,
    box_activations: Tensor,
    anchors: Anchors,
    score_threshold: float = DEFAULT_SCORE_THRESHOLD,
    nms_iou: float = DEFAULT_NMS_IOU,
    max_detections: int = DEFAULT_MAX_DETECTIONS,
    max_candidates: int = DEFAULT_MAX_CANDIDATES,
    coding: str = "tanh",
    return_trace: bool = False,
) -> list[Detections]:
    """Turns a batch of head outputs into detections (module docstring for the steps).

    Args:
        class_logits: (B, A, C + 1), last column background. box_activations: (B, A, 4).
        anchors: A anchors on the same device.
        score_threshold: in [0, 1); a pair is a candidate when its probability exceeds it.
        nms_iou: in (0, 1]; a box overlapping a better one of its class by more is dropped.
        max_detections, max_candidates: positive limits per image.
        coding: the box coding the head was trained with.
        return_trace: also return each candidate's fate (`Detections.trace`).

    Returns:
        One `Detections` per image (empty when nothing passes the threshold).
    """
    check_probability("nms_iou", nms_iou, low_open=True)
    check_positive_int("max_detections", max_detections)
    cands = find_candidates(class_logits, box_activations, anchors, score_threshold, max_candidates, coding)
    kept, final = select(cands, nms_iou, max_detections)
    results = []
    for i in range(cands.num_images):  # B small slices; the work above is batched
        mine = final if cands.num_images == 1 else final[cands.image[final] == i]
        trace = None
        if return_trace:
            members = torch.nonzero(cands.image == i).flatten()
            trace = _trace(
                cands.boxes[members],
                cands.scores[members],
                cands.label[members],
                cands.anchor[members],
                members,
                kept,
                mine,
                nms_iou,
            )
        results.append(Detections(cands.boxes[mine], cands.scores[mine], cands.label[mine], cands.anchor[mine], trace))
    return results


def _trace(
    boxes: Tensor,
    scores: Tensor,
    labels: Tensor,
    anchor: Tensor,
    members: Tensor,
    keep: Tensor,
    final: Tensor,
    nms_iou: float,
) -> NMSTrace:
    """Every candidate's fate. members: (M,) their positions in the batch's candidate list,
    already in descending score order; keep: kept by NMS (any image); final: kept and within
    max_detections (this image)."""
    m = members.numel()
    kept = torch.isin(members, keep)
    status = torch.full((m,), NMSDecision.SUPPRESSED, dtype=torch.int64, device=boxes.device)
    status[kept] = NMSDecision.OVER_LIMIT
    status[torch.isin(members, final)] = NMSDecision.KEPT
    suppressed_by = torch.full((m,), -1, dtype=torch.int64, device=boxes.device)
    suppression_iou = torch.zeros(m, device=boxes.device)
    loser, winner = torch.nonzero(~kept).flatten(), torch.nonzero(kept).flatten()
    if loser.numel() and winner.numel():
        iou = pairwise_iou(boxes[loser], boxes[winner])  # (losers, kept)
        # greedy NMS removes a box at the first kept box of its class, earlier in score order,
        # that overlaps it by more than the threshold
        able = (
            (labels[loser][:, None] == labels[winner][None, :]) & (winner[None, :] < loser[:, None]) & (iou > nms_iou)
        )
        first = torch.where(able, torch.arange(winner.numel(), device=boxes.device), winner.numel()).min(1).values
        found = first < winner.numel()
        suppressed_by[loser[found]] = winner[first[found]]
        suppression_iou[loser[found]] = iou[found, first[found]]
    return NMSTrace(boxes, scores, labels, anchor, status, suppressed_by, suppression_iou)
