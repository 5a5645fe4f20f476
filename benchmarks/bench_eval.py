"""Evaluation speed (issue 5).

- VOC mAP over 5,000 images x 100 detections: >= 5x faster than a per-class, per-detection
  Python loop written in the devkit's style (benchmarks/reference_voc.py), same result.
- Re-evaluating 500 cached images after a threshold change: <= 100 ms on this CPU, post-processing
  (score threshold, NMS, max detections) included.
- COCO mAP over the same 5,000 images (issue 15): at least as fast as faster-coco-eval (C++), the
  same twelve numbers as it and pycocotools to 1e-6.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import Row, best_of, report
from benchmarks.reference_coco import coco_json, prepared_eval, run_eval
from benchmarks.reference_voc import voc_eval_devkit
from detviz.anchors import PRESETS, make_anchors
from detviz.boxes import activations_to_boxes
from detviz.evaluate import ThresholdSweep, coco_map, voc_map

ROOT = Path(__file__).resolve().parents[1]

C = 20


def detections_and_objects(n_images: int, per_image: int, seed: int = 0):
    """VOC-like images: 1-8 objects (some difficult); detections mostly jittered copies of them."""
    g = torch.Generator().manual_seed(seed)
    dets, gts = [], []
    for _ in range(n_images):
        m = int(torch.randint(1, 9, (1,), generator=g))
        xy = (torch.rand(m, 2, generator=g) * 350).round()
        gb = torch.cat([xy, xy + (torch.rand(m, 2, generator=g) * 140 + 8).round()], 1).double()
        gl = torch.randint(0, C, (m,), generator=g)
        src = torch.randint(0, m, (per_image,), generator=g)
        db = gb[src] + torch.randn(per_image, 4, generator=g, dtype=torch.float64) * 12
        db = torch.cat([torch.minimum(db[:, :2], db[:, 2:]), torch.maximum(db[:, :2], db[:, 2:]) + 1], 1).round()
        dl = torch.where(
            torch.rand(per_image, generator=g) < 0.7, gl[src], torch.randint(0, C, (per_image,), generator=g)
        )
        dets.append((db, torch.rand(per_image, generator=g, dtype=torch.float64), dl))
        gts.append((gb, gl, torch.rand(m, generator=g) < 0.1))
    return dets, gts


def voc_rows(dets, gts) -> list[Row]:
    start = time.perf_counter()
    ref = voc_eval_devkit(dets, gts, C, use_07_metric=True)
    t_ref = time.perf_counter() - start
    ours = voc_map(dets, gts, C, method="11point")
    assert np.allclose(ours.ap.numpy(), ref, atol=1e-12, rtol=0), "voc_map differs from the devkit loop"
    t_ours = best_of(lambda: voc_map(dets, gts, C, method="11point"), 3)
    return [
        Row(
            "voc_map, 5,000 images x 100 detections, 20 classes",
            t_ours * 1000,
            "ms",
            None,
            f"devkit-style loop {t_ref:.1f} s, same APs",
        ),
        Row("devkit-style loop / voc_map", t_ref / t_ours, "x", 5.0, "issue 5 goal", higher=True),
    ]


def coco_rows(dets, gts) -> list[Row]:
    """coco_map from per-image tensors against each library's evaluate + accumulate + summarize
    on ground truth and results already loaded (their json indexing is not counted)."""
    ours = coco_map(dets, gts, C).numpy()
    t_ours = best_of(lambda: coco_map(dets, gts, C), 3)
    dataset, results = coco_json(dets, gts, C)
    seconds, differences = {}, []
    for library, repeat in (("faster-coco-eval", 3), ("pycocotools", 1)):
        evaluator = prepared_eval(dataset, results, library)
        seconds[library] = best_of(lambda ev=evaluator: run_eval(ev), repeat)
        differences.append(float(np.abs(evaluator.stats - ours).max()))
        assert np.allclose(evaluator.stats, ours, atol=1e-6, rtol=0), f"coco_map differs from {library}"
    same = f"the same 12 numbers as both to {max(differences):.0e}"
    return [
        Row("coco_map, 5,000 images x 100 detections, 20 classes", t_ours * 1000, "ms", None, same),
        Row("faster-coco-eval / coco_map", seconds["faster-coco-eval"] / t_ours, "x", 1.0, "issue 15 goal",
            higher=True),
        Row("pycocotools / coco_map", seconds["pycocotools"] / t_ours, "x", None,
            f"for reference; pycocotools {seconds['pycocotools']:.1f} s", higher=True),
    ]  # fmt: skip


def sweep_rows() -> list[Row]:
    rows = []
    for preset, n_classes in (("lesson_multiscale", 8), ("ssd300", 20)):
        anchors = make_anchors(PRESETS[preset])
        g = torch.Generator().manual_seed(1)
        n, a = 500, len(anchors)
        logits = torch.randn(n, a, n_classes + 1, generator=g) - 5.0  # a trained-looking head: mostly sure "nothing"
        acts = torch.randn(n, a, 4, generator=g) * 0.3
        gts = []
        for i in range(n):  # 1-8 objects per image, found by some anchors with mixed confidence
            m = int(torch.randint(1, 9, (1,), generator=g))
            pick = torch.randperm(a, generator=g)[:m]
            labels = torch.randint(0, n_classes, (m,), generator=g)
            logits[i, pick, labels] = torch.randn(m, generator=g) * 2 + 1
            gts.append((activations_to_boxes(acts[i], anchors)[pick], labels, torch.zeros(m, dtype=torch.bool)))
        start = time.perf_counter()
        sweep = ThresholdSweep.from_outputs(logits, acts, anchors, gts)
        _ = sweep.candidates
        t_cache = time.perf_counter() - start
        sweep.evaluate(0.01, 0.45)  # NMS at 0.45 runs once and is kept
        # a score-threshold (or max-detections) move: the slowest of several counts
        t_score = max(best_of(lambda sw=sweep, s=s: sw.evaluate(s, 0.45), 3) for s in (0.001, 0.01, 0.05, 0.3))
        start = time.perf_counter()
        sweep.evaluate(0.01, 0.5)  # an NMS-IoU move: NMS over every candidate once more
        t_nms = time.perf_counter() - start
        what = f"500 cached images ({preset}, {a} anchors, {n_classes} classes, {len(sweep.candidates):,} candidates)"
        rows.append(
            Row(
                f"re-evaluate {what} after a score-threshold move",
                t_score * 1000,
                "ms",
                100.0,
                f"issue 5 goal; caching took {t_cache:.1f} s once",
            )
        )
        rows.append(
            Row(
                f"re-evaluate {what} after an NMS-IoU move",
                t_nms * 1000,
                "ms",
                100.0,
                "issue 5 goal, strictest reading",
            )
        )
    return rows


def main() -> int:
    torch.manual_seed(0)
    dets, gts = detections_and_objects(5000, 100)
    rows = voc_rows(dets, gts) + coco_rows(dets, gts) + sweep_rows()
    return report(f"bench_eval: VOC / COCO mAP and threshold sweeps ({os.cpu_count()} CPU cores)", rows)


if __name__ == "__main__":
    sys.exit(main())
