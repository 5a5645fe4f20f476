"""The lesson's ladder (issue 14): every shipped lesson_*.pt on this CPU.

- Inference <= 60 ms per image, one image at a time, preprocessing and NMS included (the model
  card's measure), best of 3 passes over 20 demo val images.
- Each model's quality bar on the demo val split, scored by the model card's own `measure`:
  largest object class accuracy >= 0.85 and mean box IoU >= 0.6; multi-label micro F1 >= 0.9;
  4x4 mAP@0.5 >= 0.2; 189-anchor focal mAP@0.5 >= 0.45 and at least its BCE twin's.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from benchmarks.common import Row, report
from detviz.data import load_image, read_voc
from detviz.data.demo import make_demo_dataset
from detviz.inference import Detector, load_predictor
from detviz.ladder import LADDER
from detviz.train.demo_checkpoint import measure

ROOT = Path(__file__).resolve().parents[1]
GOAL_MS = 60.0
IMAGES = 20


def _ms_per_image(predictor, images) -> float:
    run = predictor.detect if isinstance(predictor, Detector) else predictor.predict
    run(images[:2])  # warm up
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for image in images:
            run([image])
        best = min(best, (time.perf_counter() - start) / len(images) * 1000)
    return best


def main() -> int:
    data = make_demo_dataset(ROOT / "data" / "demo")
    index = read_voc(data, "val")
    images = [load_image(index[i].image_path, (index[i].width, index[i].height)) for i in range(IMAGES)]
    rows, maps = [], {}
    for m in LADDER:
        path = ROOT / "checkpoints" / m.file
        if not path.is_file():
            print(f"{m.file} is not shipped (make lesson-checkpoints): skipped")
            continue
        predictor = load_predictor(path)
        rows.append(Row(f"{m.file}: inference", _ms_per_image(predictor, images), "ms", GOAL_MS, "per image, CPU"))
        scores = measure(path, data)  # the model card's own scoring
        if m.kind == "largest":
            rows += [Row(f"{m.file}: class accuracy", scores["accuracy"], "", 0.85, "issue 14", higher=True),
                     Row(f"{m.file}: mean box IoU", scores["mean_iou"], "", 0.6, "issue 14", higher=True)]  # fmt: skip
        elif m.kind == "multilabel":
            rows.append(Row(f"{m.file}: micro F1", scores["f1"], "", 0.9, "issue 14", higher=True))
        else:
            maps[m.file] = scores["map_all"]
            goal = {"lesson_4x4_bce.pt": 0.2, "lesson_multiscale_focal.pt": 0.45}.get(m.file)
            rows.append(Row(f"{m.file}: mAP@0.5", maps[m.file], "", goal, "issue 14", higher=True))
    twins = ("lesson_multiscale_focal.pt", "lesson_multiscale_bce.pt")
    if all(f in maps for f in twins):
        rows.append(Row("focal mAP / BCE twin's", maps[twins[0]] / max(maps[twins[1]], 1e-9), "x", 1.0,
                        "issue 14: focal not below BCE", higher=True))  # fmt: skip
    return report("Lesson ladder (demo val split, this CPU)", rows)


if __name__ == "__main__":
    sys.exit(main())
