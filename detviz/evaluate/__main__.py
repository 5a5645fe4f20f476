"""python -m detviz.evaluate: a checkpoint's VOC or COCO mAP on a dataset, printed per class and
written to metrics.json, with its detections as coco_results.json."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

from detviz.checks import resolve_device
from detviz.cli import OneLineParser
from detviz.data import DataError
from detviz.data.spec import open_dataset
from detviz.evaluate.coco import COCO_STAT_NAMES, coco_map, coco_results
from detviz.evaluate.inputs import METHODS
from detviz.evaluate.sweep import detect_dataset
from detviz.evaluate.voc import voc_map
from detviz.inference import Detector
from detviz.models import CheckpointError, compatibility_problems


def main(argv: list[str] | None = None) -> int:
    """Runs the CLI with these arguments (sys.argv when None); returns the exit status."""

    parser = OneLineParser(
        prog="python -m detviz.evaluate",
        description="Evaluate a checkpoint on a dataset.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--checkpoint", required=True, help="a detviz checkpoint (.pt)")
    parser.add_argument("--data", default="demo", help="dataset: demo | voc:<dir> | coco:<json>,<image dir>")
    parser.add_argument("--split", default="val", help="split of a VOC / demo dataset")
    parser.add_argument("--method", choices=(*METHODS, "coco"), default="11point", help="how AP is computed")
    parser.add_argument("--iou-threshold", type=float, default=0.5, help="VOC: IoU a detection needs")
    parser.add_argument("--use-difficult", action="store_true", help="count difficult objects as ordinary ones")
    parser.add_argument("--score-threshold", type=float, default=0.01, help="detections below this are dropped")
    parser.add_argument("--nms-iou", type=float, default=0.45, help="NMS IoU")
    parser.add_argument("--max-detections", type=int, default=100, help="detections kept per image")
    parser.add_argument("--device", default="cpu", help="auto | cpu | cuda | cuda:N | mps")
    parser.add_argument("--out", type=Path, default=Path("."), help="folder for metrics.json and coco_results.json")
    args = parser.parse_args(argv)
    try:
        detector = Detector.from_checkpoint(args.checkpoint, resolve_device(args.device))
        index = open_dataset(args.data, args.split)
        problems = compatibility_problems(detector.info, class_names=index.classes)
        if problems:
            raise ValueError(f"the checkpoint does not fit this dataset: {'; '.join(problems)}.")
        with tqdm(total=len(index), unit="img", desc="detecting", disable=None) as bar:
            detections = detect_dataset(
                detector,
                index,
                args.score_threshold,
                args.nms_iou,
                args.max_detections,
                progress=lambda done, _: bar.update(done - bar.n),
            )
        if args.method == "coco":
            stats = coco_map(detections, index, index.num_classes, args.use_difficult)
            metrics: dict[str, Any] = {
                "method": "coco",
                "stats": dict(zip(COCO_STAT_NAMES, stats.tolist(), strict=True)),
            }
            for name, value in metrics["stats"].items():
                print(f"{name:<22} {value:.4f}")
        else:
            r = voc_map(detections, index, index.num_classes, args.iou_threshold, args.method, args.use_difficult)
            print(f"{'class':<16} {'AP':>7} {'objects':>8} {'detections':>11} {'TP':>6} {'FP':>6}")
            for c, name in enumerate(index.classes):
                ap = "-" if math.isnan(r.ap[c]) else f"{float(r.ap[c]):.4f}"
                print(
                    f"{name:<16} {ap:>7} {int(r.num_gt[c]):>8} {int(r.num_det[c]):>11} {int(r.num_tp[c]):>6} "
                    f"{int(r.num_fp[c]):>6}"
                )
            print(f"{'mAP':<16} {r.map:>7.4f}   ({r.describe()})")
            metrics = {
                "method": args.method,
                "map": r.map,
                "description": r.describe(),
                "ap": {n: (None if math.isnan(v) else v) for n, v in zip(index.classes, r.ap.tolist(), strict=True)},
            }
        metrics |= {
            "checkpoint": str(args.checkpoint),
            "data": args.data,
            "split": args.split,
            "score_threshold": args.score_threshold,
            "nms_iou": args.nms_iou,
            "max_detections": args.max_detections,
            "images": len(index),
        }
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        (args.out / "coco_results.json").write_text(json.dumps(coco_results(detections, index)) + "\n")
        print(f"wrote {args.out / 'metrics.json'} and {args.out / 'coco_results.json'}")
    except (ValueError, DataError, CheckpointError, OSError, RuntimeError) as e:
        print(f"error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
