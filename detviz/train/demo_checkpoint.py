"""Makes the checkpoints that ship with detviz: `make demo-checkpoint`, `make lesson-checkpoints`.

Trains on the built-in demo set on the CPU and writes float16 weights to checkpoints/:
- the SSD300 pair (default): an SSD (small backbone, SSD300's 8,732 anchors) with focal loss,
  demo_focal.pt, and unless --no-twin its BCE twin demo_bce.pt;
- the lesson's ladder (--ladder): one model per stage of the Lesson walkthrough, lesson_*.pt
  (largest object, multi-label, 4x4 SSD with BCE, 189-anchor SSD with BCE and with focal loss).
Each file's val metrics in its stage's terms, speed, size and training time go to
checkpoints/metrics.json (merged by file) and the model card checkpoints/README.md. The same seed
and settings on the same machine give the same checkpoints.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

from detviz.data import make_demo_dataset, read_voc
from detviz.data.demo import read_demo_settings
from detviz.data.images import load_image
from detviz.evaluate import detect_dataset, voc_map
from detviz.evaluate.stages import score_largest, score_multilabel
from detviz.inference import Detector, LargestObjectPredictor, load_predictor
from detviz.ladder import LADDER as STAGE_MODELS
from detviz.ladder import file_sha256
from detviz.models import checkpoint_payload, load_checkpoint
from detviz.train.config import TrainConfig
from detviz.train.engine import fit
from detviz.train.runs import RunFolder, atomic_torch_save

SETTINGS = {  # the recipe of the SSD300 pair; the model card repeats it
    "anchors": "ssd300",
    "image_size": 300,
    "backbone": "small",
    "epochs": 20,
    "batch_size": 32,
    "lr": 3e-3,
    "weight_decay": 0.01,
    "seed": 0,
    "augment": True,
    "dropout": 0.1,
}
LESSON = {  # settings every model of the lesson's ladder shares; the model card repeats them
    "backbone": "small",
    "init_backbone": "demo_focal.pt",  # the lesson starts each stage from a trained backbone; ours is the SSD300's
    "image_size": 192,
    "batch_size": 32,
    "lr": 2e-3,
    "weight_decay": 0.01,
    "seed": 0,
    "augment": True,
    "dropout": 0.1,
}
LADDER_SETTINGS = {  # what differs from LESSON per file of the ladder (detviz.ladder.LADDER: stage, kind)
    "lesson_largest.pt": {"model": "largest", "epochs": 25},
    "lesson_multilabel.pt": {"model": "multilabel", "epochs": 25, "lr": 3e-3},
    "lesson_4x4_bce.pt": {"model": "ssd", "anchors": "lesson_4x4", "loss": "bce", "epochs": 30, "lr": 3e-3},
    "lesson_multiscale_bce.pt": {
        "model": "ssd-multiscale",
        "anchors": "lesson_multiscale",
        "loss": "bce",
        "epochs": 20,
    },
    "lesson_multiscale_focal.pt": {
        "model": "ssd-multiscale",
        "anchors": "lesson_multiscale",
        "loss": "focal",
        "epochs": 20,
    },
}
LADDER = {m.file: (m.stage, LESSON | LADDER_SETTINGS[m.file]) for m in STAGE_MODELS}
DEMO = {
    "demo_focal.pt": ("SSD300 (focal)", SETTINGS | {"loss": "focal"}),
    "demo_bce.pt": ("SSD300 (BCE)", SETTINGS | {"loss": "bce"}),
}


def train_one(file: str, stage: str, settings: dict, data_dir: Path, runs: Path, out: Path) -> dict:
    """Trains one shipped checkpoint, writes it as float16 to out/file, and measures it. An
    init_backbone names a file in `out` (the ladder starts from the shipped demo_focal.pt)."""
    if settings.get("init_backbone"):
        settings = settings | {"init_backbone": str(out / settings["init_backbone"])}
    config = TrainConfig(
        data=f"demo:{data_dir}", out=str(runs), name=f"{Path(file).stem}-{int(time.time())}", **settings
    )
    run = RunFolder.create(config.out, config, config.name)
    print(f"training {file} in {run.path}", flush=True)
    start = time.time()
    fit(config, run)
    if run.state() != "finished":  # cancelled (SIGTERM, Ctrl-C) or failed: ship nothing, train nothing more
        raise SystemExit(f"{file}: the training run ended {run.state()} ({run.path}); no checkpoint written.")
    minutes = (time.time() - start) / 60
    model, info = load_checkpoint(run.checkpoint("best"))
    target = out / file
    atomic_torch_save(checkpoint_payload(model, info.model, info.training, info.metrics, half=True), target)
    result = {"file": file, "stage": stage, "kind": config.model, "loss": config.loss, "epochs": config.epochs}
    return result | {"image_size": config.image_size, "minutes": minutes} | measure(target, data_dir)


def measure(path: Path, data_dir: Path) -> dict:
    """The checkpoint as shipped (float16 weights) on the demo val split, in its stage's terms,
    and its CPU inference time per image (one image at a time, preprocessing and NMS included)."""
    predictor = load_predictor(path)
    index = read_voc(data_dir, "val")
    if isinstance(predictor, Detector):
        detections = detect_dataset(predictor, index, score_threshold=0.01)
        scores = {
            "anchors": len(predictor.anchors),
            "map_all": voc_map(detections, index, index.num_classes, method="all").map,
            "map_07": voc_map(detections, index, index.num_classes, method="11point").map,
        }
        run = predictor.detect
    elif isinstance(predictor, LargestObjectPredictor):
        s = score_largest(predictor, index).scores
        scores = {"accuracy": s.accuracy, "mean_iou": s.mean_iou, "l1": s.l1}
        run = predictor.predict
    else:
        s, _, _ = score_multilabel(predictor, index)
        scores = {"precision": s.precision, "recall": s.recall, "f1": s.f1, "accuracy": s.accuracy}
        run = predictor.predict
    images = [load_image(index[i].image_path, (index[i].width, index[i].height)) for i in range(20)]
    run(images[:2])  # warm up
    start = time.perf_counter()
    for image in images:
        run([image])
    ms = (time.perf_counter() - start) / len(images) * 1000
    size = {"megabytes": path.stat().st_size / 2**20, "sha256": file_sha256(path)}
    size["demo"] = dataclasses.asdict(read_demo_settings(data_dir))  # the images measured on
    return scores | {"ms_per_image": ms, "threads": torch.get_num_threads()} | size


def stage_metric(r: dict) -> str:
    """A result's headline in its stage's terms, as the model card and the ladder show it."""
    if "map_all" in r:
        return f"mAP@0.5 {r['map_all']:.3f} (VOC07 11-point {r['map_07']:.3f})"
    if "mean_iou" in r:
        return f"accuracy {r['accuracy']:.3f}, mean box IoU {r['mean_iou']:.3f}, box L1 {r['l1']:.3f}"
    return f"micro F1 {r['f1']:.3f} (precision {r['precision']:.3f}, recall {r['recall']:.3f})"


def model_card(results: list[dict], data_dir: Path) -> str:
    """checkpoints/README.md: every shipped file's measured numbers, recipe and classes."""
    demo = [r for r in results if r["file"] in DEMO]
    ladder = [r for r in results if r["file"] in LADDER]
    demo_rows = "\n".join(
        f"| `{r['file']}` | {r['loss']} | {r['map_07']:.3f} | {r['map_all']:.3f} | {r['ms_per_image']:.0f} ms | "
        f"{r['megabytes']:.1f} MB | {r['minutes']:.0f} min |"
        for r in demo
    )
    ladder_rows = "\n".join(
        f"| {r['stage']} | `{r['file']}` | {r['kind']}{', ' + r['loss'] if 'map_all' in r else ''} | "
        f"{stage_metric(r)} | {r['ms_per_image']:.0f} ms | {r['megabytes']:.1f} MB | {r['minutes']:.1f} min |"
        for r in ladder
    )
    threads = results[0]["threads"] if results else torch.get_num_threads()
    lesson = ", ".join(f"{k} {v}" for k, v in LESSON.items())
    per_file = ";\n".join(
        f"  `{f}` " + ", ".join(f"{k} {v}" for k, v in s.items() if k != "anchors") for f, s in LADDER_SETTINGS.items()
    )
    settings = ", ".join(f"{k} {v}" for k, v in SETTINGS.items())
    return f"""# Shipped checkpoints

Made by `make demo-checkpoint` (the SSD300 pair) and `make lesson-checkpoints` (the lesson's
ladder), both `python -m detviz.train.demo_checkpoint`: trained on this repository's built-in
demo dataset (`python -m detviz.data.demo`, seed 0: 800 train images, 200 val), on a CPU with
{threads} threads, nothing downloaded. Every number below is measured on
the demo val split (images no model saw in training) with the weights as shipped (float16, loaded
as float32). Inference time: one image at a time on this CPU, preprocessing and NMS included.

## The lesson's ladder (the Lesson walkthrough shows one per stage)

| stage | file | model | val metric | CPU inference / image | size | training |
|---|---|---|---|---:|---:|---:|
{ladder_rows}

- Largest object: class accuracy over val images with an object; mean IoU of the predicted box
  with the largest object's box; L1: mean absolute coordinate error in image units (x 192 for
  input pixels; the lesson prints it in pixels of its 224 px input).
- Every class: micro precision / recall / F1 of the (image, class) decisions at probability 0.5.
- SSD stages: VOC mAP@0.5 (all-point; 11-point in brackets), score threshold 0.01, NMS IoU 0.45.
- Training: wall-clock minutes of each run on this machine (other jobs may have shared its cores).
- Shared settings: {lesson}; AdamW, one-cycle schedule, gradient clipping 1.0. Per file:
{per_file}.
- Like the lesson, which starts every stage from an ImageNet-trained ResNet34, each model starts
  from a trained backbone: the one of `demo_focal.pt` below (trained on the same 800 training
  images only, so the val images stay unseen). The heads start from scratch. The 4x4 model has
  16 anchors (`lesson_4x4`), the multiscale ones 189 (`lesson_multiscale`: 4x4, 2x2 and 1x1 grids,
  3 zooms x 3 aspect ratios); the two multiscale files differ only in the classification loss.

## SSD300 pair (Predictions, Evaluate, Losses)

| file | classification loss | mAP@0.5 VOC07 11-point | mAP@0.5 all-point | CPU inference / image | size | training |
|---|---|---:|---:|---:|---:|---:|
{demo_rows}

mAP on the demo val split, score threshold 0.01, NMS IoU 0.45, difficult objects ignored
(`python -m detviz.evaluate --checkpoint checkpoints/demo_focal.pt --data demo --method all`).

Model: `ssd-multiscale` head on the `small` backbone (GroupNorm) trained from scratch, no
pretrained weights, SSD300's 8,732
default boxes at 300 x 300 px, tanh box coding, class bias -4.

Training: {settings}; AdamW, one-cycle schedule, gradient clipping 1.0, the lesson's loss
normalization, matching IoU 0.4; augmentation: colour jitter, zoom-out, SSD IoU crop, flip.
The two files differ only in the classification loss, so the Losses page can compare BCE and
focal loss on real predictions.

Classes: {", ".join(read_voc(data_dir, "val").classes)}.
"""


def merge_results(old: list[dict], new: list[dict]) -> list[dict]:
    """The model card's rows: `new` replaces `old` file by file; shipped order (SSD300 pair, then the ladder)."""
    by_file = {r["file"]: r for r in old} | {r["file"]: r for r in new}
    order = [*DEMO, *LADDER]
    return sorted(by_file.values(), key=lambda r: order.index(r["file"]) if r["file"] in order else len(order))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m detviz.train.demo_checkpoint", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/demo"), help="demo dataset folder (made if missing)")
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="where the training runs go")
    parser.add_argument("--out", type=Path, default=Path("checkpoints"), help="where the checkpoints go")
    parser.add_argument("--no-twin", action="store_true", help="SSD300 pair: train the focal-loss model only")
    parser.add_argument("--ladder", action="store_true", help="train the lesson's five models instead")
    parser.add_argument("--only", nargs="+", choices=[*DEMO, *LADDER], default=(), metavar="FILE",
                        help=f"train only these files (any of {', '.join([*DEMO, *LADDER])})")  # fmt: skip
    parser.add_argument("--card-only", action="store_true", help="re-measure the shipped files and rewrite the card")
    args = parser.parse_args(argv)
    recipes = DEMO | LADDER
    if args.only:
        files = list(args.only)
    elif args.ladder:
        files = list(LADDER)
    else:
        files = ["demo_focal.pt"] if args.no_twin else list(DEMO)
    make_demo_dataset(args.data)
    args.out.mkdir(parents=True, exist_ok=True)
    metrics = args.out / "metrics.json"
    old = json.loads(metrics.read_text()) if metrics.is_file() else []
    if args.card_only:
        new = [r | measure(args.out / r["file"], args.data) for r in old if (args.out / r["file"]).is_file()]
    else:
        new = [train_one(f, *recipes[f], args.data, args.runs, args.out) for f in files]
    results = merge_results(old, new)
    metrics.write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "README.md").write_text(model_card(results, args.data))
    for r in new:
        print(f"{r['file']}: {stage_metric(r)}, {r['ms_per_image']:.0f} ms per image")
    return 0


if __name__ == "__main__":
    sys.exit(main())
