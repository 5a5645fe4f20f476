"""Evaluation: Pascal VOC mAP as the official devkit computes it, COCO mAP as pycocotools does,
a TIDE-style error breakdown, a confusion matrix, a metric audit and fast threshold sweeps.

One module per topic, all re-exported here (`from detviz.evaluate import voc_map, coco_map`):

- inputs: the per-image input forms, checked and flattened into `Flat`; overlaps.
- voc: `voc_map` (the devkit's protocol; see its module docstring).
- coco: `coco_map` / `coco_eval` (pycocotools' COCOeval, bbox) and `coco_results`.
- errors: `error_breakdown` (TIDE-style), `image_error_counts`, `worst_images`.
- confusion: `class_confusion`. audit: `metric_audit`.
- compare: two models lined up (`compare_ap`, `compare_errors`, `compare_image`, `mean_ap`).
- sweep: `ThresholdSweep`, and the one loop over a dataset (`dataset_outputs`) behind
  `detect_dataset` (the CLI) and `sweep_dataset` (the app).
- __main__: the command line, `python -m detviz.evaluate`.

The codes in results (Outcome, ErrorKind, ERROR_TYPES) are in `detviz.codes`.
"""

from detviz.codes import BACKGROUND_IOU, ERROR_TYPES, NO_ERROR, ErrorKind, ErrorType, Outcome
from detviz.evaluate.audit import AuditRow, metric_audit
from detviz.evaluate.coco import (
    COCO_AREAS,
    COCO_IOU_THRESHOLDS,
    COCO_MAX_DETS,
    COCO_RECALLS,
    COCO_STAT_NAMES,
    COCOResult,
    coco_eval,
    coco_eval_flat,
    coco_map,
    coco_results,
)
from detviz.evaluate.compare import (
    APComparison,
    ErrorDifference,
    ImageComparison,
    compare_ap,
    compare_errors,
    compare_image,
    mean_ap,
)
from detviz.evaluate.confusion import class_confusion
from detviz.evaluate.errors import (
    BKG,
    BOTH,
    CLS,
    DUPE,
    LOC,
    MISS,
    ErrorBreakdown,
    error_breakdown,
    error_breakdown_flat,
    image_error_counts,
    worst_images,
)
from detviz.evaluate.inputs import METHODS, Flat, batched_iou, best_overlap, flatten, offsets, scale_flat
from detviz.evaluate.sweep import (
    SWEEP_FLOOR,
    DatasetSweep,
    OutputBatch,
    ThresholdSweep,
    dataset_outputs,
    detect_dataset,
    sweep_dataset,
)
from detviz.evaluate.voc import (
    DEVKIT_EPS,
    DUPLICATE,
    FP,
    IGNORED,
    TP,
    VOC07_RECALLS,
    ClassCurve,
    VOCResult,
    voc_map,
    voc_map_flat,
)


def main(argv: list[str] | None = None) -> int:
    """`python -m detviz.evaluate` from Python (detviz/evaluate/__main__.py); returns the exit status."""
    # imported when called: importing detviz.evaluate.__main__ with the package would make
    # `python -m detviz.evaluate` warn that the module was already imported
    from detviz.evaluate.__main__ import main as cli_main

    return cli_main(argv)


__all__ = [
    "BACKGROUND_IOU",
    "BKG",
    "BOTH",
    "CLS",
    "COCO_AREAS",
    "COCO_IOU_THRESHOLDS",
    "COCO_MAX_DETS",
    "COCO_RECALLS",
    "COCO_STAT_NAMES",
    "DEVKIT_EPS",
    "DUPE",
    "DUPLICATE",
    "ERROR_TYPES",
    "FP",
    "IGNORED",
    "LOC",
    "METHODS",
    "MISS",
    "NO_ERROR",
    "SWEEP_FLOOR",
    "TP",
    "VOC07_RECALLS",
    "APComparison",
    "AuditRow",
    "COCOResult",
    "ClassCurve",
    "DatasetSweep",
    "ErrorBreakdown",
    "ErrorDifference",
    "ErrorKind",
    "ErrorType",
    "Flat",
    "ImageComparison",
    "Outcome",
    "OutputBatch",
    "ThresholdSweep",
    "VOCResult",
    "batched_iou",
    "best_overlap",
    "class_confusion",
    "coco_eval",
    "coco_eval_flat",
    "coco_map",
    "coco_results",
    "compare_ap",
    "compare_errors",
    "compare_image",
    "dataset_outputs",
    "detect_dataset",
    "error_breakdown",
    "error_breakdown_flat",
    "flatten",
    "image_error_counts",
    "main",
    "mean_ap",
    "metric_audit",
    "offsets",
    "scale_flat",
    "sweep_dataset",
    "voc_map",
    "voc_map_flat",
    "worst_images",
]
