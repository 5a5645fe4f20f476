"""The metric audit: the same detections scored the ways papers and tools do (VOC07 11-point,
all-point, difficult objects counted, a deployment score threshold, COCO), side by side.

Only the numbers live here; the sentence on why each row differs is `explain.audit_reason`.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from detviz.evaluate.coco import coco_eval_flat
from detviz.evaluate.inputs import scale_flat
from detviz.evaluate.sweep import ThresholdSweep
from detviz.explain import audit_reason


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
    rows = [  # (the row's key in explain.AUDIT_REASONS, protocol, score threshold, difficult objects, mAP)
        ("reference", "VOC07 11-point", low, "ignored", ref),
        ("all_point", "all-point (VOC2010+)", low, "ignored", voc("all", low)),
        ("difficult", "VOC07 11-point", low, "counted", voc("11point", low, True)),
        ("cut", "VOC07 11-point", high, "ignored", voc("11point", high)),
        ("cut_all_point", "all-point (VOC2010+)", high, "ignored", voc("all", high)),
        ("coco_50", "COCO AP@0.5", low, "crowd", float(stats[1])),
        ("coco", "COCO AP@[.5:.95]", low, "crowd", float(stats[0])),
        ("coco_cut", "COCO AP@[.5:.95]", high, "crowd", float(coco(high)[0])),
    ]
    return [AuditRow(*row, why=audit_reason(key, high)) for key, *row in rows]
