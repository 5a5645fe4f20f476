"""COCOeval (bbox) by the libraries `detviz.evaluate.coco_map` is checked and timed against:
pycocotools (Python loops over images and classes) and faster-coco-eval (the same in C++)."""

from __future__ import annotations

import contextlib
import io
from typing import Any

LIBRARIES = ("pycocotools", "faster-coco-eval")


def coco_json(detections, ground_truths, num_classes: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The ground truth as a COCO dataset dict and the detections as a COCO results list.

    detections: per image (boxes, scores, labels); ground_truths: per image (boxes, labels,
    difficult), pixel xyxy boxes; image i has id i + 1, class c category id c + 1, and a
    difficult object is a crowd region (iscrowd 1).
    """
    images = [{"id": i + 1, "width": 640, "height": 640} for i in range(len(ground_truths))]
    annotations = []
    for i, (boxes, labels, difficult) in enumerate(ground_truths):
        for b, label, crowd in zip(boxes.tolist(), labels.tolist(), difficult.tolist(), strict=True):
            w, h = b[2] - b[0], b[3] - b[1]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i + 1,
                    "category_id": label + 1,
                    "bbox": [b[0], b[1], w, h],
                    "area": w * h,
                    "iscrowd": int(crowd),
                }
            )
    results = [
        {"image_id": i + 1, "category_id": label + 1, "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "score": s}
        for i, (boxes, scores, labels) in enumerate(detections)
        for b, s, label in zip(boxes.tolist(), scores.tolist(), labels.tolist(), strict=True)
    ]
    categories = [{"id": c + 1, "name": str(c)} for c in range(num_classes)]
    return {"images": images, "annotations": annotations, "categories": categories}, results


def prepared_eval(dataset: dict[str, Any], results: list[dict[str, Any]], library: str = "pycocotools"):
    """A COCOeval (bbox) of the library on indexed ground truth and loaded results, not yet run:
    `.evaluate()`, `.accumulate()`, `.summarize()` then give `.stats` and `.eval`."""
    if library == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    elif library == "faster-coco-eval":
        from faster_coco_eval import COCO
        from faster_coco_eval import COCOeval_faster as COCOeval
    else:
        raise ValueError(f"library must be one of {', '.join(LIBRARIES)}, got {library!r}.")
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = dataset
        gt.createIndex()
        return COCOeval(gt, gt.loadRes(results), "bbox")


def run_eval(evaluator) -> Any:
    """evaluate, accumulate and summarize (quietly); returns the evaluator."""
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator
