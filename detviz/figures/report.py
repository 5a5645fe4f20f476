"""A page's figures as a set, computed from a checkpoint and a dataset without the app: what
`python -m detviz.figures export` writes for a report, and the loss numbers the Losses page shows.

Each `x_figures()` returns {name: Figure}; the names are the ones the page's own exports use, so
a figure saved from the app and one written by the CLI have the same file name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import plotly.graph_objects as go
import torch
from PIL import Image
from torch import Tensor

from detviz.anchors import AnchorConfig, Anchors, make_anchors
from detviz.boxes import to_normalized_boxes
from detviz.coverage import anchor_coverage
from detviz.data import DatasetIndex
from detviz.evaluate import class_confusion, error_breakdown_flat, sweep_dataset
from detviz.figures.anchors import anchor_overlay_figure, coverage_figure
from detviz.figures.evaluation import (
    ap_bar_figure,
    confusion_figure,
    error_breakdown_figure,
    pr_curves_figure,
    surface_figure,
)
from detviz.figures.image import ImageEncoder, image_data_uri
from detviz.figures.losses import loss_curves_figure, loss_map_figure, loss_share_figure, p_t_histogram
from detviz.inference import Detector
from detviz.losses import (
    FOCAL_ALPHA,
    FOCAL_GAMMA,
    LossBreakdown,
    SSDLossDetails,
    loss_breakdown,
    loss_curve,
    ssd_loss_details,
)
from detviz.matching import DEFAULT_IOU_THRESHOLD, match_anchors
from detviz.postprocess import DEFAULT_MAX_DETECTIONS, DEFAULT_NMS_IOU

PAGES = ("evaluate", "losses", "anchors")  # the pages `python -m detviz.figures export` knows
OTHER_GAMMAS = (0.0, 0.5, 1.0, 2.0, 5.0)  # RetinaNet's figure 1
DEFAULT_ALPHA, DEFAULT_GAMMA = FOCAL_ALPHA, FOCAL_GAMMA  # RetinaNet's best pair; the Losses page's defaults
LOSS_VIEWS = ("class loss", "box loss", "class + box")  # what a loss map shows; URL values of ?lossview=
# The threshold surface's grid: the Evaluate page's and the report's
SURFACE_SCORES = (0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7)
SURFACE_NMS = (0.3, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
EVALUATE_SCORE, EVALUATE_IOU = 0.01, 0.5  # the Evaluate page's defaults: nearly every detection, VOC's IoU
# VOC all-point AP (VOC2010+): the headline mAP of Predictions, Evaluate, the model card and the runs
MAP_METHOD = "all"
COVERAGE_THRESHOLD = 0.5  # the Anchors page's default matching IoU


def focal_curves(
    alpha: float, gamma: float
) -> tuple[dict[str, tuple[Tensor, Tensor]], dict[str, tuple[Tensor, Tensor]]]:
    """The Losses page's curves against p_t: BCE, focal for an object and for background (alpha and
    gamma as given), focal without alpha at the other gammas; and the down-weighting factors.

    Returns:
        (curves, factors) as `loss_curves_figure` takes them: name -> (p_t (199,), value (199,)).
    """
    p = torch.linspace(0.005, 0.995, 199)
    curves = {
        "BCE": (p, loss_curve(p, "bce")),
        f"focal, object class (alpha {alpha:g})": (p, loss_curve(p, "focal", alpha, gamma, positive=True)),
        f"focal, background (1 - alpha = {1 - alpha:g})": (p, loss_curve(p, "focal", alpha, gamma, positive=False)),
    }
    curves |= {f"focal gamma={g:g}, no alpha": (p, loss_curve(p, "focal", None, g)) for g in OTHER_GAMMAS if g != gamma}
    factors = {f"(1 - p_t)^{gamma:g}": (p, (1 - p) ** gamma)}
    factors |= {f"(1 - p_t)^{g:g}": (p, (1 - p) ** g) for g in OTHER_GAMMAS if g != gamma}
    return curves, factors


class LossComparison(NamedTuple):
    """One image's SSD loss under BCE and under focal loss, taken apart (see SSDLossDetails)."""

    bce: SSDLossDetails
    focal: SSDLossDetails

    @property
    def parts(self) -> dict[str, LossBreakdown]:
        """Where the image's loss comes from, under "BCE" and under "focal"."""
        return {"BCE": loss_breakdown(self.bce), "focal": loss_breakdown(self.focal)}


def compare_losses(
    class_logits: Tensor,
    box_activations: Tensor,
    gt_boxes: Tensor,
    gt_labels: Tensor,
    anchors: Anchors,
    alpha: float = DEFAULT_ALPHA,
    gamma: float = DEFAULT_GAMMA,
    coding: str = "tanh",
) -> LossComparison:
    """BCE and focal loss of one image's outputs, matched at DEFAULT_IOU_THRESHOLD as in training.

    Args:
        class_logits: (1, A, C + 1). box_activations: (1, A, 4).
        gt_boxes: (G, 4) xyxy normalized. gt_labels: (G,) int64. G may be 0.
    """
    args = (gt_boxes[None], gt_labels[None], torch.ones(1, gt_boxes.shape[0], dtype=torch.bool), anchors)
    common = dict(iou_threshold=DEFAULT_IOU_THRESHOLD, coding=coding)
    bce = ssd_loss_details(class_logits, box_activations, *args, classification="bce", **common)
    focal = ssd_loss_details(class_logits, box_activations, *args, classification="focal", alpha=alpha, gamma=gamma,
                             **common)  # fmt: skip
    return LossComparison(bce, focal)


def loss_shares_figure(comparison: LossComparison) -> go.Figure:
    """The share of box loss, positives', hard and easy negatives' class loss under each loss."""
    return loss_share_figure({
        name: {"box": b.box, "positives": b.positive_cls, "hard negatives": b.hard_negative_cls,
               "easy negatives": b.easy_negative_cls} for name, b in comparison.parts.items()
    })  # fmt: skip


def loss_map(
    image: Image.Image,
    anchors: Anchors,
    details: SSDLossDetails,
    name: str,
    view: str = LOSS_VIEWS[0],
    level: int = 0,
    *,
    encode: ImageEncoder = image_data_uri,
) -> go.Figure:
    """Where image 0's `view` loss (one of LOSS_VIEWS) comes from on one level, as a heat map over
    the image, titled with the loss's `name` and the level's share of it."""
    if view not in LOSS_VIEWS:
        raise ValueError(f"view must be one of {', '.join(LOSS_VIEWS)}, got {view!r}.")
    cls, box = details.anchor_loss_cls[0], details.anchor_loss_box[0]
    per_anchor = (cls, box, cls + box)[LOSS_VIEWS.index(view)]  # (A,)
    total = float(per_anchor.sum())
    share = per_anchor / total if total > 0 else torch.zeros_like(per_anchor)
    on_level = float(share[anchors.level == level].sum())
    grid = anchors.grids[level]
    title = f"{name}: {view} by cell, the {grid}x{grid} level holds {on_level:.0%}"
    return loss_map_figure(image, anchors, share, level, title, encode=encode)


def loss_figures(
    image: Image.Image,
    comparison: LossComparison,
    anchors: Anchors,
    alpha: float = DEFAULT_ALPHA,
    gamma: float = DEFAULT_GAMMA,
    view: str = LOSS_VIEWS[0],
    level: int = 0,
) -> dict[str, go.Figure]:
    """The Losses page's figures: loss curves, loss shares, the BCE and focal loss maps, p_t."""
    figures = {
        "loss-curves": loss_curves_figure(*focal_curves(alpha, gamma)),
        "loss-shares": loss_shares_figure(comparison),
    }
    figures |= {
        f"loss-map-{name}": loss_map(image, anchors, details, name, view, level)
        for name, details in (("BCE", comparison.bce), ("focal", comparison.focal))
    }
    figures["p-t-histogram"] = p_t_histogram(comparison.bce.p_t[0], comparison.bce.positive[0])
    return figures


def anchor_figures(
    image: Image.Image,
    gt_boxes: Tensor,
    gt_labels: Tensor,
    class_names: Sequence[str],
    config: AnchorConfig,
    index: DatasetIndex,
    name: str = "anchors",
    threshold: float = COVERAGE_THRESHOLD,
) -> dict[str, go.Figure]:
    """The Anchors page's figures: every level's grid over the image with the anchors matched to each
    object, and the best IoU of every object of `index` with an anchor.

    Args:
        gt_boxes: (G, 4) pixel xyxy of the image. gt_labels: (G,) int64.
    """
    anchors = make_anchors(config)
    match = match_anchors(to_normalized_boxes(gt_boxes, *image.size), anchors.boxes, threshold)
    overlay = anchor_overlay_figure(image, anchors, "grid", gt_boxes=gt_boxes, gt_labels=gt_labels,
                                    class_names=class_names, positive=match.positive, best_gt=match.best_gt)  # fmt: skip
    coverage = coverage_figure({name: anchor_coverage(index, anchors).best_iou}, threshold)
    return {"anchor-overlay": overlay, "coverage": coverage}


def evaluate_figures(
    detector: Detector,
    index: DatasetIndex,
    score_threshold: float = EVALUATE_SCORE,
    nms_iou: float = DEFAULT_NMS_IOU,
    max_detections: int = DEFAULT_MAX_DETECTIONS,
    eval_iou: float = EVALUATE_IOU,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, go.Figure]:
    """The Evaluate page's figures for the detector on `index`: AP per class, PR
    curves per class, class confusion, the error breakdown and the threshold surface.

    Raises:
        NonFiniteOutputs: the model's outputs are NaN or inf.
    """
    classes = list(detector.classes)
    swept = sweep_dataset(detector, index, progress=progress).sweep
    flat = swept.detections(score_threshold, nms_iou, max_detections)
    breakdown = error_breakdown_flat(flat, len(classes), eval_iou, MAP_METHOD)
    base = breakdown.base
    surface = swept.surface(SURFACE_SCORES, SURFACE_NMS, max_detections, eval_iou, MAP_METHOD)
    return {
        "ap-per-class": ap_bar_figure(base.ap, classes),
        "pr-per-class": pr_curves_figure(
            {c: base.curves[k] for k, c in enumerate(classes)}, height=420, title="Precision-recall per class"
        ),
        "confusion": confusion_figure(class_confusion(flat, len(classes), eval_iou), classes),
        "error-breakdown": error_breakdown_figure(breakdown.delta_map, breakdown.counts.sum(0)),
        "threshold-surface": surface_figure(surface, SURFACE_SCORES, SURFACE_NMS, (score_threshold, nms_iou)),
    }
