"""A straightforward per-image SSD loss: the lesson's `ssd_loss` / `ssd_1_loss` structure (a
Python loop over images, and over ground truths when forcing anchors), on our conventions
and with detviz's matching rule, tie and conflict handling. The reference that
`detviz.losses.ssd_loss` is timed against and must equal."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import box_iou

from detviz.anchors import Anchors
from detviz.boxes import activations_to_boxes


def force_anchors_one_image(iou: Tensor) -> dict[int, int]:
    """{ground truth: forced anchor} for one image's (G, A) IoU matrix, in rounds as
    detviz.matching does: every ground truth wants its best free anchor; an anchor wanted by
    several goes to the highest IoU (then the lowest index); the others try again."""
    g = iou.shape[0]
    iou = iou.clone()
    assigned: dict[int, int] = {}
    pending = [j for j in range(g) if float(iou[j].max()) > 0]
    while pending:
        wants: dict[int, list[int]] = {}
        for j in pending:
            wants.setdefault(int(iou[j].argmax()), []).append(j)
        losers = []
        for anchor, gts in wants.items():
            winner = max(gts, key=lambda j, a=anchor: (float(iou[j, a]), -j))
            assigned[winner] = anchor
            iou[:, anchor] = -2.0  # taken
            losers += [j for j in gts if j != winner]
        pending = [j for j in losers if float(iou[j].max()) > 0]
    return assigned


def ssd_loss_loop(
    class_logits: Tensor,
    box_activations: Tensor,
    gt_boxes: Tensor,
    gt_labels: Tensor,
    gt_valid: Tensor,
    anchors: Anchors,
    classification: str = "bce",
    iou_threshold: float = 0.4,
    alpha: float = 0.25,
    gamma: float = 2.0,
) -> dict[str, Tensor]:
    """The lesson's normalization: sum over images of (mean L1 over positives, class loss / C)."""
    num_classes = class_logits.shape[-1] - 1
    loss_box = class_logits.new_zeros(())
    loss_cls = class_logits.new_zeros(())
    for b in range(class_logits.shape[0]):
        boxes, labels = gt_boxes[b][gt_valid[b]], gt_labels[b][gt_valid[b]]
        pred = activations_to_boxes(box_activations[b], anchors)
        if boxes.shape[0]:
            overlaps = box_iou(boxes, anchors.boxes)
            gt_overlap, gt_idx = overlaps.max(0)
            forced = torch.zeros(len(anchors), dtype=torch.bool)
            for j, anchor in force_anchors_one_image(overlaps).items():
                gt_idx[anchor] = j
                gt_overlap[anchor] = overlaps[j, anchor]
                forced[anchor] = True
            pos = forced | (gt_overlap > iou_threshold)
            gt_clas = labels[gt_idx]
            gt_clas[~pos] = num_classes
            if bool(pos.any()):
                loss_box = loss_box + (pred[pos] - boxes[gt_idx][pos]).abs().mean()
        else:
            gt_clas = torch.full((len(anchors),), num_classes, dtype=torch.int64)
        t = torch.eye(num_classes + 1)[gt_clas][:, :-1]  # one-hot, background column dropped
        x = class_logits[b][:, :-1]
        weight = None
        if classification == "focal":
            p = x.sigmoid()
            pt = p * t + (1 - p) * (1 - t)
            weight = (alpha * t + (1 - alpha) * (1 - t)) * (1 - pt).pow(gamma)
        loss_cls = loss_cls + F.binary_cross_entropy_with_logits(x, t, weight, reduction="sum") / num_classes
    return {"loss": loss_box + loss_cls, "loss_box": loss_box, "loss_cls": loss_cls}
