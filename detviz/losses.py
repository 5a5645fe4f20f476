"""Losses: the SSD loss of the lesson (BCE or focal classification + L1 on decoded boxes), and
the losses of its first two stages (largest object; multi-label).

Classification uses one sigmoid per real class (C of them): an anchor matched to nothing has
the all-zero target, so "background" is learned as "none of the classes" (the lesson's trick:
the head's background column is not used by the loss). Focal loss multiplies each element's
BCE by alpha_t (1 - p_t)^gamma, as RetinaNet and torchvision.ops.sigmoid_focal_loss do.

Normalization:
- "lesson" (default): summed over images, each image contributing the mean L1 over its
  positive anchors' coordinates, and its class loss summed over anchors x classes, divided
  by C.
- "num_positives" (RetinaNet): both sums over the batch divided by the number of positive
  anchors in the batch (at least 1).
An image without objects adds no box loss and an all-background class loss; with no positive
anchor in the whole batch the box loss is 0, never NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from detviz.anchors import Anchors
from detviz.boxes import CODINGS, activations_to_boxes, decode_boxes
from detviz.checks import (
    check_box_values,
    check_boxes,
    check_choice,
    check_labels,
    check_probability,
    check_same_device,
    check_tensor,
)
from detviz.matching import DEFAULT_IOU_THRESHOLD, BatchMatch, match_batch, match_positives, match_targets

CLASSIFICATIONS = ("bce", "focal")
NORMALIZATIONS = ("lesson", "num_positives")
FOCAL_ALPHA = 0.25  # RetinaNet's defaults, also the lesson's
FOCAL_GAMMA = 2.0
# The lesson's largest-object loss is L1 on 224-pixel boxes + 20 x cross-entropy; on boxes
# normalized to [0, 1] the same balance is L1 + (20 / 224) x cross-entropy.
LESSON_CLASS_WEIGHT = 20 / 224
LOSS_BLOCK_ELEMENTS = 1 << 18  # logits per block in class_loss_sum: 1 MB of float32, cache-sized


def classification_elements(
    class_logits: Tensor,
    target_class: Tensor,
    classification: str = "bce",
    alpha: float = FOCAL_ALPHA,
    gamma: float = FOCAL_GAMMA,
) -> tuple[Tensor, Tensor]:
    """Per-element classification loss and p_t.

    Args:
        class_logits: (..., C + 1); the last column (background) is not used.
        target_class: (...) int64 in 0 .. C, C meaning background (all-zero target).
        classification: "bce" or "focal".

    Returns:
        loss: (..., C) float32 BCE, or focal loss, of every class of every anchor.
        p_t: (..., C) float32 probability the model gives the right answer for that class.
    """
    check_choice("classification", classification, CLASSIFICATIONS)
    num_classes = class_logits.shape[-1] - 1
    logits = class_logits[..., :num_classes].float()
    target = F.one_hot(target_class, num_classes + 1)[..., :num_classes].float()  # background -> all zeros
    loss = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p = torch.sigmoid(logits)
    p_t = p * target + (1 - p) * (1 - target)
    if classification == "focal":
        alpha_t = alpha * target + (1 - alpha) * (1 - target)
        loss = loss * alpha_t * (1 - p_t) ** gamma
    return loss, p_t


def loss_curve(
    p_t: Tensor,
    classification: str = "bce",
    alpha: float | None = None,
    gamma: float = FOCAL_GAMMA,
    positive: bool = True,
) -> Tensor:
    """The loss of one class element as a function of p_t, computed by `classification_elements`
    (the very loss training uses).

    Args:
        p_t: (N,) probabilities in (0, 1) of the right answer.
        classification: "bce" or "focal".
        alpha: focal alpha (weight of the positive class; a negative element gets 1 - alpha);
            None for no alpha weighting (alpha_t = 1).
        positive: the element's target is 1 (an object's class) or 0 (background).

    Returns:
        (N,) float32 loss.
    """
    logit = torch.logit(p_t.double().clamp(1e-12, 1 - 1e-12)).float()
    logits = torch.stack([logit if positive else -logit, torch.zeros_like(logit)], -1)  # (N, 2): class, background
    target = torch.full(p_t.shape, 0 if positive else 1, dtype=torch.int64)
    loss, _ = classification_elements(logits, target, classification, 0.5 if alpha is None else alpha, gamma)
    return loss[..., 0] * 2 if alpha is None and classification == "focal" else loss[..., 0]


@dataclass(frozen=True)
class SSDLossDetails:
    """The SSD loss of a batch, taken apart.

    Attributes:
        loss, loss_box, loss_cls: scalars; loss = loss_box + loss_cls.
        num_positives: scalar int64, positive anchors in the batch.
        anchor_loss_box, anchor_loss_cls: (B, A) each anchor's share of loss_box and
            loss_cls (they sum to them).
        p_t: (B, A) per anchor, the p_t of its worst-classified class: for a background anchor
            1 - the highest class probability, for a positive one at most the probability of
            its class. Near 1 means easy, near 0 hard.
        element_loss, element_p_t: (B, A, C) per anchor and class.
        positive: (B, A) bool. target_class: (B, A), C for background. target_boxes: (B, A, 4).
        pred_boxes: (B, A, 4) decoded boxes. match: the matching used.
    """

    loss: Tensor
    loss_box: Tensor
    loss_cls: Tensor
    num_positives: Tensor
    anchor_loss_box: Tensor
    anchor_loss_cls: Tensor
    p_t: Tensor
    element_loss: Tensor
    element_p_t: Tensor
    positive: Tensor
    target_class: Tensor
    target_boxes: Tensor
    pred_boxes: Tensor
    match: BatchMatch


def ssd_loss_details(
    class_logits: Tensor,
    box_activations: Tensor,
    gt_boxes: Tensor,
    gt_labels: Tensor,
    gt_valid: Tensor,
    anchors: Anchors,
    classification: str = "bce",
    iou_threshold: float = DEFAULT_IOU_THRESHOLD,
    alpha: float = FOCAL_ALPHA,
    gamma: float = FOCAL_GAMMA,
    normalization: str = "lesson",
    coding: str = "tanh",
) -> SSDLossDetails:
    """The SSD loss with its per-anchor breakdown (arguments as `ssd_loss`)."""
    _check_inputs(class_logits, box_activations, gt_boxes, gt_labels, gt_valid, anchors, normalization, coding)
    match = match_batch(gt_boxes, gt_valid, anchors.boxes, iou_threshold)
    num_classes = class_logits.shape[-1] - 1
    target_class, target_boxes = match_targets(match, gt_boxes, gt_labels, num_classes)
    positive = match.positive

    element_loss, element_p_t = classification_elements(class_logits, target_class, classification, alpha, gamma)
    pred_boxes = activations_to_boxes(box_activations.float(), anchors, coding)
    l1 = (pred_boxes - target_boxes).abs().sum(-1) * positive  # (B, A), zero off the positives
    n_pos = positive.sum(1)  # (B,)

    if normalization == "lesson":
        anchor_box = l1 / (4 * n_pos.clamp(min=1))[:, None]  # mean over each image's positive coordinates
        anchor_cls = element_loss.sum(-1) / num_classes
    else:
        total = n_pos.sum().clamp(min=1)
        anchor_box = l1 / total
        anchor_cls = element_loss.sum(-1) / total
    loss_box, loss_cls = anchor_box.sum(), anchor_cls.sum()
    return SSDLossDetails(
        loss=loss_box + loss_cls,
        loss_box=loss_box,
        loss_cls=loss_cls,
        num_positives=n_pos.sum(),
        anchor_loss_box=anchor_box,
        anchor_loss_cls=anchor_cls,
        p_t=element_p_t.min(-1).values,
        element_loss=element_loss,
        element_p_t=element_p_t,
        positive=positive,
        target_class=target_class,
        target_boxes=target_boxes,
        pred_boxes=pred_boxes,
        match=match,
    )


def synthetic_outputs(
    target_class: Tensor, num_classes: int, p_positive: float, p_negative: float, spread: float = 1.0, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """Made-up head outputs for teaching: how the losses weigh anchors of a chosen confidence.

    Args:
        target_class: (B, A) int64 targets from matching, num_classes meaning background.
        p_positive: typical p_t of an object's own class on its positive anchors.
        p_negative: typical p_t of every other (anchor, class) element, background included.
        spread: standard deviation of the logits around those values (seeded noise).

    Returns:
        class_logits (B, A, C + 1) and box_activations (B, A, 4) of zeros (boxes = anchors).
    """
    check_probability("p_positive", p_positive, low_open=True, high_open=True)
    check_probability("p_negative", p_negative, low_open=True, high_open=True)
    generator = torch.Generator().manual_seed(seed)
    shape = (*target_class.shape, num_classes + 1)
    noise = torch.randn(shape, generator=generator) * spread
    logits = noise - torch.logit(torch.tensor(p_negative, dtype=torch.float64)).float()  # p(class) = 1 - p_negative
    target = F.one_hot(target_class.cpu(), num_classes + 1).bool()
    target[..., num_classes] = False
    logits[target] = noise[target] + torch.logit(torch.tensor(p_positive, dtype=torch.float64)).float()
    return logits, torch.zeros(*target_class.shape, 4)


EASY_P_T = 0.9  # a negative anchor whose worst class has p_t above this is "easy"


@dataclass(frozen=True)
class LossBreakdown:
    """Where one image's SSD loss comes from.

    Attributes:
        box: box loss (positives only). positive_cls: class loss of the positive anchors.
        hard_negative_cls, easy_negative_cls: class loss of the negatives with p_t at most /
            above EASY_P_T.
        positives, hard_negatives, easy_negatives: anchor counts.
    """

    box: float
    positive_cls: float
    hard_negative_cls: float
    easy_negative_cls: float
    positives: int
    hard_negatives: int
    easy_negatives: int

    @property
    def total(self) -> float:
        return self.box + self.positive_cls + self.hard_negative_cls + self.easy_negative_cls


def loss_breakdown(details: SSDLossDetails, image: int = 0) -> LossBreakdown:
    """Splits image `image` of `details` into box loss and class loss of positives, hard and easy
    negatives (the parts sum to that image's loss)."""
    positive = details.positive[image]
    easy = ~positive & (details.p_t[image] > EASY_P_T)
    hard = ~positive & ~easy
    cls = details.anchor_loss_cls[image]
    return LossBreakdown(
        box=float(details.anchor_loss_box[image].sum()),
        positive_cls=float(cls[positive].sum()),
        hard_negative_cls=float(cls[hard].sum()),
        easy_negative_cls=float(cls[easy].sum()),
        positives=int(positive.sum()),
        hard_negatives=int(hard.sum()),
        easy_negatives=int(easy.sum()),
    )


def ssd_loss(
    class_logits: Tensor,
    box_activations: Tensor,
    gt_boxes: Tensor,
    gt_labels: Tensor,
    gt_valid: Tensor,
    anchors: Anchors,
    classification: str = "bce",
    iou_threshold: float = DEFAULT_IOU_THRESHOLD,
    alpha: float = FOCAL_ALPHA,
    gamma: float = FOCAL_GAMMA,
    normalization: str = "lesson",
    coding: str = "tanh",
) -> dict[str, Tensor]:
    """The SSD loss of a batch (module docstring for the definition).

    The training path: it builds no per-element targets (see `class_loss_sum`) and decodes
    only the positive anchors' boxes; `ssd_loss_details` gives the same numbers, taken apart.

    Args:
        class_logits: (B, A, C + 1), last column background. box_activations: (B, A, 4).
        gt_boxes: (B, G, 4) xyxy normalized; gt_labels: (B, G) int64; gt_valid: (B, G) bool.
        anchors: A anchors, on the same device.
        classification: "bce" or "focal" (alpha, gamma). iou_threshold: for matching.
        normalization: "lesson" or "num_positives". coding: "tanh" or "variance".

    Returns:
        {"loss", "loss_box", "loss_cls", "num_positives"}: scalars, loss = loss_box + loss_cls.
    """
    _check_inputs(class_logits, box_activations, gt_boxes, gt_labels, gt_valid, anchors, normalization, coding)
    img, anchor, gt = match_positives(gt_boxes, gt_valid, anchors.boxes, iou_threshold)  # the P positive anchors
    num_classes = class_logits.shape[-1] - 1
    pred = decode_boxes(
        box_activations[img, anchor].float(),
        anchors.centers[anchor],
        anchors.sizes[anchor],
        anchors.cell_size[anchor],
        coding,
    )
    l1 = (pred - gt_boxes[img, gt].float()).abs().sum(-1)  # (P,)
    n_pos = torch.bincount(img, minlength=class_logits.shape[0])  # (B,)
    cls_sum = class_loss_sum(class_logits, img, anchor, gt_labels[img, gt], classification, alpha, gamma)
    if normalization == "lesson":
        loss_box = (l1 / (4 * n_pos[img])).sum()  # sum over images of the mean over their positive coordinates
        loss_cls = cls_sum / num_classes
    else:
        total = n_pos.sum().clamp(min=1)
        loss_box, loss_cls = l1.sum() / total, cls_sum / total
    return {"loss": loss_box + loss_cls, "loss_box": loss_box, "loss_cls": loss_cls, "num_positives": n_pos.sum()}


def class_loss_sum(
    class_logits: Tensor,
    pos_image: Tensor,
    pos_anchor: Tensor,
    pos_label: Tensor,
    classification: str = "bce",
    alpha: float = FOCAL_ALPHA,
    gamma: float = FOCAL_GAMMA,
) -> Tensor:
    """Sum of `classification_elements` over all anchors and classes, without building targets.

    Every element is first taken as a target-0 element (background for its class); the P
    positive (anchor, class) elements are then corrected: one pass over the logits, in
    cache-sized blocks, instead of building (B, A, C) targets, weights and p_t.

    Args:
        class_logits: (B, A, C + 1). pos_image, pos_anchor, pos_label: (P,) the positive
            anchors and their classes.
    """
    check_choice("classification", classification, CLASSIFICATIONS)
    num_classes = class_logits.shape[-1] - 1
    # The element function runs over blocks of whole contiguous rows (the background column is
    # left out of the block's sum): on a CPU, one pass over a (64, 8732, 21) tensor spends most
    # of its time allocating and page-faulting temporaries of that size, while 1 MB blocks are
    # reused from the cache; about 4x faster for focal loss, and the same on a GPU.
    rows = class_logits.reshape(-1, num_classes + 1)
    step = max(1, LOSS_BLOCK_ELEMENTS // (num_classes + 1))
    if classification == "bce":
        # a block's flattened elements: 1 for a class, 0 for the background column; a dot
        # product with it sums the classes faster than subtracting a strided column after
        is_class = torch.ones(min(step, rows.shape[0]), num_classes + 1, dtype=torch.float32, device=rows.device)
        is_class[:, num_classes] = 0
        is_class = is_class.flatten()
    total = class_logits.new_zeros((), dtype=torch.float32)
    for start in range(0, rows.shape[0], step):
        block = rows[start : start + step].float()
        if classification == "bce":
            total = total + torch.dot(F.softplus(block).flatten(), is_class[: block.numel()])
        else:
            total = total + _focal_negative_sum(block, gamma)
    x_pos = class_logits[pos_image, pos_anchor, pos_label].float()
    if classification == "bce":
        return total - x_pos.sum()  # BCE(x, 1) = BCE(x, 0) - x
    p_pos = torch.sigmoid(x_pos)
    as_positive = alpha * (1 - p_pos).pow(gamma) * F.softplus(-x_pos)  # alpha (1 - p)^gamma BCE(x, 1)
    return total * (1 - alpha) - _focal_negative(x_pos, alpha, gamma).sum() + as_positive.sum()


def _focal_negative_sum(logits: Tensor, gamma: float) -> Tensor:
    """Sum over (N, C + 1) logits, background column left out, of sigmoid(x)^gamma softplus(x):
    the focal loss of target-0 elements without the constant (1 - alpha), which the caller
    multiplies the total by once. Dot products sum the products without writing them out."""
    num_classes = logits.shape[1] - 1
    weight = _focal_weight(logits, gamma)
    loss = F.softplus(logits)
    return torch.dot(weight.flatten(), loss.flatten()) - torch.dot(weight[:, num_classes], loss[:, num_classes])


def _focal_negative(logits: Tensor, alpha: float, gamma: float) -> Tensor:
    """(1 - alpha) sigmoid(x)^gamma softplus(x), element-wise (no in-place ops: autograd needs them)."""
    return _focal_weight(logits, gamma) * F.softplus(logits) * (1 - alpha)


def _focal_weight(logits: Tensor, gamma: float) -> Tensor:
    """sigmoid(x)^gamma, the weight focal loss puts on a target-0 element (a product for gamma 2)."""
    p = torch.sigmoid(logits)
    return p * p if gamma == 2.0 else p.pow(gamma)


def _check_inputs(
    class_logits: Tensor,
    box_activations: Tensor,
    gt_boxes: Tensor,
    gt_labels: Tensor,
    gt_valid: Tensor,
    anchors: Anchors,
    normalization: str,
    coding: str,
) -> None:
    """The checks `ssd_loss` and `ssd_loss_details` share: shapes and dtypes first, then
    devices, then values (which need one device), then the options; matching checks the
    threshold."""
    check_tensor("class_logits", class_logits, ["B", len(anchors), "C+1"], floating=True)
    b, a, c1 = class_logits.shape
    if c1 < 2:
        raise ValueError(
            f"class_logits must have C + 1 >= 2 columns (classes + background), got shape ({b}, {a}, {c1})."
        )
    check_tensor("box_activations", box_activations, [b, a, 4], floating=True)
    check_tensor("gt_boxes", gt_boxes, [b, "G", 4], floating=True)
    g = gt_boxes.shape[1]
    check_tensor("gt_labels", gt_labels, [b, g], floating=False)
    check_tensor("gt_valid", gt_valid, [b, g])
    if gt_valid.dtype != torch.bool:
        raise ValueError(f"gt_valid must be a bool tensor, got {gt_valid.dtype}.")
    check_same_device(
        class_logits=class_logits,
        box_activations=box_activations,
        gt_boxes=gt_boxes,
        gt_labels=gt_labels,
        gt_valid=gt_valid,
        anchors=anchors.boxes,
    )
    check_box_values("gt_boxes", gt_boxes)
    check_labels("gt_labels", gt_labels, c1 - 1, gt_valid)
    check_choice("normalization", normalization, NORMALIZATIONS)
    check_choice("coding", coding, CODINGS)


def largest_object_loss(
    class_logits: Tensor,
    box_activations: Tensor,
    target_class: Tensor,
    target_boxes: Tensor,
    class_weight: float = LESSON_CLASS_WEIGHT,
) -> dict[str, Tensor]:
    """Stage 1 of the lesson: one class and one box per image.

    The box is sigmoid(box_activations), normalized xyxy (the lesson: sigmoid x 224 pixels).
    Images whose target_class is negative (no object) are left out.

    Args:
        class_logits: (B, C). box_activations: (B, 4). target_class: (B,) int64.
        target_boxes: (B, 4) normalized xyxy.

    Returns:
        {"loss", "loss_box", "loss_cls"}, loss = loss_box + class_weight * loss_cls.
    """
    check_tensor("class_logits", class_logits, ["B", "C"], floating=True)
    n = class_logits.shape[0]
    check_tensor("box_activations", box_activations, [n, 4], floating=True)
    check_tensor("target_class", target_class, [n], floating=False)
    check_boxes("target_boxes", target_boxes, [n, 4])
    check_labels("target_class", target_class, class_logits.shape[1], target_class >= 0)
    keep = target_class >= 0
    if not bool(keep.any()):
        zero = class_logits.sum() * 0.0
        return {"loss": zero, "loss_box": zero, "loss_cls": zero}
    loss_box = F.l1_loss(torch.sigmoid(box_activations[keep].float()), target_boxes[keep].float())
    loss_cls = F.cross_entropy(class_logits[keep].float(), target_class[keep])
    return {"loss": loss_box + class_weight * loss_cls, "loss_box": loss_box, "loss_cls": loss_cls}


def multilabel_loss(class_logits: Tensor, targets: Tensor) -> Tensor:
    """Stage 2 of the lesson: mean BCE of (B, C) logits against (B, C) 0/1 targets."""
    check_tensor("class_logits", class_logits, ["B", "C"], floating=True)
    check_tensor("targets", targets, list(class_logits.shape), floating=True)
    return F.binary_cross_entropy_with_logits(class_logits.float(), targets.float())
