"""Teaching pages speed (issue 7), server-side on this CPU.

- Every slider move re-renders its page in <= 150 ms on the demo set (AppTest: the script run
  that follows the move, figures built and serialized; no browser).
- Coverage of a 5,000-image dataset by the 8,732 SSD300 anchors computes in <= 5 s, once
  (cached per dataset and config afterwards).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from benchmarks.bench_data import build_large_voc
from benchmarks.common import Row, app_session, median_move_ms, report, rows_in_temp_dir
from detviz.anchors import PRESETS
from detviz.coverage import anchor_coverage
from detviz.data import make_demo_dataset, read_voc

ROOT = Path(__file__).resolve().parents[1]

GOAL_MS = 150.0
MOVES = 6


def coverage_rows(work: Path) -> list[Row]:
    index = read_voc(build_large_voc(work), "train")
    times = []
    for _ in range(3):
        start = time.perf_counter()
        coverage = anchor_coverage(index, PRESETS["ssd300"])
        times.append(time.perf_counter() - start)
    objects = coverage.best_iou.numel()
    name = f"coverage, 5,000 images ({objects:,} objects) x 8,732 ssd300 anchors"
    return [Row(name, min(times), "s", 5.0, "issue 7 goal")]


def slider_rows(work: Path) -> list[Row]:
    demo = make_demo_dataset(work / "demo", seed=0)  # the default 800 + 200 images
    os.environ["DETVIZ_DEMO_DIR"] = str(demo)
    os.environ["DETVIZ_CACHE_DIR"] = str(work / "cache-app")
    checkpoints = sorted((ROOT / "checkpoints").glob("*.pt"))
    cases = [
        ("Anchors: IoU threshold, lesson_multiscale", "pages/anchors.py", {}, "iou", [0.3, 0.5, 0.7]),
        ("Anchors: IoU threshold, ssd300 (+ coverage of 3 configs)", "pages/anchors.py", {"preset": "ssd300"}, "iou",
         [0.3, 0.5, 0.7]),
        ("Anchors: cell row, ssd300", "pages/anchors.py", {"preset": "ssd300", "overlay": "cell"}, "row", [3, 19, 30]),
        ("Matching: threshold, lesson example, lesson_4x4", "pages/matching.py", {}, "iou", [0.3, 0.5, 0.7]),
        ("Matching: threshold, demo image, ssd300, step 3", "pages/matching.py",
         {"preset": "ssd300", "image": "000001", "step": "threshold"}, "iou", [0.3, 0.5, 0.7]),
        ("Matching: threshold, demo image, ssd300, step 1 (4,000 anchors drawn)", "pages/matching.py",
         {"preset": "ssd300", "image": "000001", "step": "overlap"}, "iou", [0.3, 0.5, 0.7]),
        ("Losses: gamma, synthetic logits", "pages/losses.py", {"ckpt": "synthetic logits"}, "gamma", [1.0, 2.0, 3.0]),
        ("Lesson: matching threshold (stage 4)", "pages/lesson.py", {"stage": "4. Matching"}, "lesson-threshold",
         [0.3, 0.5, 0.7]),
        ("Lesson: gamma (stage 6)", "pages/lesson.py", {"stage": "6. BCE or focal"}, "lesson-gamma", [1.0, 2.0, 3.0]),
    ]  # fmt: skip
    if checkpoints:
        name = checkpoints[0].name
        cases += [
            (f"Losses: gamma, {name}", "pages/losses.py", {"ckpt": name}, "gamma", [1.0, 2.0, 3.0]),
            (f"Lesson: NMS IoU (stage 7), {name}", "pages/lesson.py", {"stage": "7. NMS"}, "lesson-nms",
             [0.3, 0.5, 0.7]),
        ]  # fmt: skip
    rows = []
    for label, page, params, key, values in cases:
        ms = median_move_ms(app_session(ROOT, page, **params), key, values, MOVES)
        rows.append(Row(f"slider move: {label}", ms, "ms", GOAL_MS, "issue 7 goal"))
    if not checkpoints:
        print("no checkpoints/*.pt: the rows on a trained model are left out")
    return rows


def main() -> int:
    rows = rows_in_temp_dir(coverage_rows, slider_rows)
    return report(f"bench_pages: teaching pages ({os.cpu_count()} CPU cores)", rows)


if __name__ == "__main__":
    sys.exit(main())
