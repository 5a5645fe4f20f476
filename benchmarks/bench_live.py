"""Predictions & NMS / Evaluate speed (issue 8), server-side on this CPU, on the shipped checkpoint.

- A slider move re-renders the Predictions page in <= 150 ms: the image's detections, the NMS
  step-through and the live mAP with its PR curves (AppTest: the script run after the move).
- The live mAP of 500 cached images follows a slider in <= 150 ms (the ThresholdSweep alone:
  a new score threshold, an NMS IoU seen before, and (issue 15) an NMS IoU never seen before).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

from benchmarks.common import Row, app_session, median_move_ms, report
from detviz.data import load_image, make_demo_dataset, read_voc
from detviz.evaluate import ThresholdSweep
from detviz.inference import Detector

ROOT = Path(__file__).resolve().parents[1]

GOAL_MS = 150.0
MOVES = 6
CHECKPOINT = ROOT / "checkpoints" / "demo_focal.pt"


def _median_ms(fn, values: list) -> float:
    times = []
    for k in range(MOVES):
        start = time.perf_counter()
        fn(values[k % len(values)])
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def sweep_rows(demo: Path) -> list[Row]:
    detector = Detector.from_checkpoint(CHECKPOINT)
    index = read_voc(demo, "train")
    n = 500
    truths, outputs = [], []
    for s in range(0, n, 25):
        records = [index[i] for i in range(s, s + 25)]
        images = [load_image(r.image_path, (r.width, r.height)) for r in records]
        outputs.append(detector.raw_outputs(images))
        for r in records:
            truths.append((r.normalized_boxes(), r.labels, r.difficult))
    sweep = ThresholdSweep(truths, len(detector.classes), floor=0.01, coding=detector.coding)
    for logits, boxes in outputs:
        sweep.add_batch(logits, boxes, detector.anchors)
    start = time.perf_counter()
    _ = sweep.candidates
    sweep.evaluate(0.25, 0.45, 100)
    first = (time.perf_counter() - start) * 1000
    sweep.warm([0.45, 0.3])  # what the app's build and warm-up do before these moves
    # every move asks for values not evaluated before (the sweep remembers its last 32 results)
    scores = iter([0.1 + 0.01 * k for k in range(100)])
    nms_fresh = iter([0.35, 0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8])  # not 0.45 nor 0.3: those are warm
    return [
        Row(f"live mAP, 500 images ({len(sweep.candidates):,} candidates): first evaluation", first, "ms", None, ""),
        Row("live mAP, 500 images: score threshold move", _median_ms(lambda v: sweep.evaluate(next(scores), 0.45,
            100), [0]), "ms", GOAL_MS, "issue 8 goal"),
        Row("live mAP, 500 images: NMS IoU move (NMS cached, as after the warm-up)", _median_ms(
            lambda v: sweep.evaluate(next(scores), v, 100), [0.45, 0.3]), "ms", GOAL_MS, "issue 8 goal"),
        Row("live mAP, 500 images: NMS IoU move (never seen, before the warm-up ends)", _median_ms(
            lambda v: sweep.evaluate(0.25, next(nms_fresh), 100), [0]), "ms", GOAL_MS, "issue 15 goal"),
    ]  # fmt: skip


def page_rows() -> list[Row]:
    common = {"split": "train", "subset": "first 500 images", "ckpt": CHECKPOINT.name}
    cases = [
        ("Predictions: score threshold", "pages/predictions.py", "score", [0.2, 0.3, 0.5]),
        ("Predictions: NMS IoU (values seen once)", "pages/predictions.py", "nms", [0.3, 0.45, 0.6]),
        ("Predictions: evaluation IoU", "pages/predictions.py", "eval_iou", [0.5, 0.7, 0.6]),
        ("Predictions: max detections", "pages/predictions.py", "maxdet", [20, 50, 100]),
    ]
    rows = []
    for label, page, key, values in cases:
        at = app_session(ROOT, page, **common)
        for thread in threading.enumerate():  # a user looks at the page while the NMS values warm up
            if thread.name.startswith("live set"):  # pages/ui/live_builds.py: the build, then its warm-up
                thread.join()
        ms = median_move_ms(at, key, values, MOVES)
        rows.append(Row(f"slider move, 500 images live: {label}", ms, "ms", GOAL_MS, "issue 8 goal"))
    return rows


def main() -> int:
    if not CHECKPOINT.is_file():
        print(f"{CHECKPOINT} is missing: `make demo-checkpoint` makes it")
        return 1
    with tempfile.TemporaryDirectory(prefix="detviz-bench-") as tmp:
        demo = make_demo_dataset(Path(tmp) / "demo", seed=0)  # the default 800 + 200 images
        os.environ["DETVIZ_DEMO_DIR"] = str(demo)
        os.environ["DETVIZ_CACHE_DIR"] = str(Path(tmp) / "cache-app")
        os.environ["DETVIZ_CHECKPOINT_DIR"] = str(CHECKPOINT.parent)
        os.environ["DETVIZ_RUNS_DIR"] = str(Path(tmp) / "runs")
        torch.set_num_threads(os.cpu_count() or 1)
        rows = sweep_rows(demo) + page_rows()
    return report(f"bench_live: Predictions & live mAP ({os.cpu_count()} CPU cores)", rows)


if __name__ == "__main__":
    sys.exit(main())
