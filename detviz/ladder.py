"""The lesson's ladder: one trained model per stage, what each stage's model is judged by, the
numbers the lesson printed, and why a 4x4 grid misses the objects it misses.

The shipped files are made by `python -m detviz.train.demo_checkpoint --ladder` (their recipe is
there); checkpoints/metrics.json holds each one's measured val numbers (`read_ladder_metrics`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torchvision.ops import box_iou

from detviz.anchors import Anchors


@dataclass(frozen=True)
class StageModel:
    """A rung of the ladder: the shipped file, the walkthrough stage showing it, the model kind it
    must be, and the val metric (a key of its metrics.json row) that says how good it is."""

    file: str
    stage: str
    kind: str
    metric: str
    metric_name: str


LADDER = (
    StageModel("lesson_largest.pt", "1. Largest object", "largest", "accuracy", "class accuracy"),
    StageModel("lesson_multilabel.pt", "2. Every class", "multilabel", "f1", "micro F1"),
    StageModel("lesson_4x4_bce.pt", "3. SSD on a 4x4 grid", "ssd", "map_all", "mAP@0.5"),
    StageModel("lesson_multiscale_bce.pt", "5. Many scales (BCE)", "ssd-multiscale", "map_all", "mAP@0.5"),
    StageModel("lesson_multiscale_focal.pt", "6. Focal loss", "ssd-multiscale", "map_all", "mAP@0.5"),
)
BY_FILE = {m.file: m for m in LADDER}
NEXT_STEP = {  # what each stage cannot do, which the next one fixes
    "lesson_largest.pt": "one object per image: the next model names every class present",
    "lesson_multilabel.pt": "classes but no boxes, and two of a class look like one: an SSD head gives each cell a box",
    "lesson_4x4_bce.pt": "one square per cell: small objects and two objects in a cell are missed; more grids, zooms "
    "and aspect ratios (189 anchors)",
    "lesson_multiscale_bce.pt": "BCE lets the many easy background anchors swamp the loss: focal loss turns them down",
    "lesson_multiscale_focal.pt": "several anchors fire on one object: non-maximum suppression keeps the best",
}

# What the lesson printed for its own models on Pascal VOC 2007 (224 px, pretrained ResNet34):
# the largest-object model's last epoch (accuracy, box L1 in input pixels) and the multi-label
# model's per-element accuracy. It printed no mAP for its SSD models.
LESSON_PRINTED = {
    "lesson_largest.pt": {"accuracy": 0.8188, "l1_pixels": 18.37, "input": 224},
    "lesson_multilabel.pt": {"accuracy": 0.9777},
}


def file_sha256(path: str | Path) -> str:
    """The file's SHA-256 (hex): metrics.json records it, so a number is shown only for the file it measured."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def recorded_metric(rows: dict[str, dict[str, Any]], path: str | Path, metric: str, demo: dict) -> float | None:
    """The metric metrics.json `rows` recorded for this very file (same name and SHA-256) on the
    val split of the demo dataset with these settings (`demo`: its demo.json), else None."""
    row = rows.get(Path(path).name)
    if not row or row.get("sha256") != file_sha256(path) or row.get("demo") != demo:
        return None
    if not isinstance(row.get(metric), int | float):
        return None
    return float(row[metric])


class LadderMetricsError(ValueError):
    """checkpoints/metrics.json cannot be read (the message names the file and the problem)."""


def read_ladder_metrics(path: str | Path) -> dict[str, dict[str, Any]]:
    """The measured rows of checkpoints/metrics.json by file name ({} when the file is missing).

    Raises:
        LadderMetricsError: the file is not a JSON list of objects with a "file" name.
    """
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        rows = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise LadderMetricsError(f"{path}: not readable JSON ({e}).") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) and isinstance(r.get("file"), str) for r in rows):
        raise LadderMetricsError(f"{path}: expected a list of objects, each with a 'file' name.")
    return {r["file"]: r for r in rows}


def found_objects(
    det_boxes: Tensor, det_labels: Tensor, gt_boxes: Tensor, gt_labels: Tensor, iou_threshold: float = 0.5
) -> Tensor:
    """(G,) bool: objects that some detection of their class overlaps by `iou_threshold` or more.

    Args:
        det_boxes: (D, 4), gt_boxes: (G, 4) xyxy in the same units. det_labels: (D,). gt_labels: (G,).
    """
    if len(det_boxes) == 0 or len(gt_boxes) == 0:
        return torch.zeros(len(gt_boxes), dtype=torch.bool)
    overlap = box_iou(gt_boxes.float(), det_boxes.float()) * (gt_labels[:, None] == det_labels[None, :])
    return overlap.max(dim=1).values >= iou_threshold


@dataclass(frozen=True)
class GridReport:
    """What a one-grid SSD did on one image.

    Attributes:
        fired: (F, 2) int64 (row, col) of the cells whose anchors gave a kept detection.
        found: (G,) bool objects matched by a detection of their class at IoU >= 0.5.
        reasons: per object, "" when found, else why the grid misses it: "small" (no anchor
            overlaps it by `small_iou` or more), "shares a cell" (another object's centre is in
            its cell), or "box or class off" (the model had the anchor but got it wrong).
        best_anchor_iou: (G,) the best IoU of each object with any anchor.
    """

    fired: Tensor
    found: Tensor
    reasons: list[str]
    best_anchor_iou: Tensor


def grid_report(
    anchors: Anchors,
    det_boxes: Tensor,
    det_labels: Tensor,
    det_anchor: Tensor,
    gt_boxes: Tensor,
    gt_labels: Tensor,
    iou_threshold: float = 0.5,
    small_iou: float = 0.4,
) -> GridReport:
    """Which cells fired and why objects were missed, for a model on one grid (the lesson's 4x4).

    Args:
        anchors: one level (grids == (g,)). det_*: (D, 4) normalized xyxy, (D,), (D,) anchor index.
        gt_boxes: (G, 4) normalized xyxy. gt_labels: (G,).
        small_iou: below this best-anchor IoU an object counts as too small (or too thin) for
            the grid: the lesson's matching threshold is 0.4-0.5.

    Raises:
        ValueError: the anchors have more than one level.
    """
    if len(anchors.grids) != 1:
        raise ValueError(f"grid_report explains one-grid models; these anchors have grids {anchors.grids}.")
    g = anchors.grids[0]
    fired = (
        torch.stack([anchors.row[det_anchor], anchors.col[det_anchor]], 1).unique(dim=0)
        if len(det_anchor)
        else torch.zeros(0, 2, dtype=torch.long)
    )
    n = gt_boxes.shape[0]
    if n == 0:
        return GridReport(fired, torch.zeros(0, dtype=torch.bool), [], torch.zeros(0))
    found = found_objects(det_boxes, det_labels, gt_boxes, gt_labels, iou_threshold)
    best = box_iou(gt_boxes, anchors.boxes.to(gt_boxes)).max(dim=1).values
    centres = (gt_boxes[:, :2] + gt_boxes[:, 2:]) / 2
    cells = (centres * g).floor().clamp(0, g - 1).long()
    cell_id = cells[:, 1] * g + cells[:, 0]  # row-major, as the anchors
    crowded = (cell_id[:, None] == cell_id[None, :]).sum(dim=1) > 1
    reasons = [
        "" if found[k] else "small" if best[k] < small_iou else "shares a cell" if crowded[k] else "box or class off"
        for k in range(n)
    ]
    return GridReport(fired, found, reasons, best)
