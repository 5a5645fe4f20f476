"""Makes the checkpoints that ship with detviz: `make demo-checkpoint`.

Trains an SSD (small backbone, SSD300 anchors) on the built-in demo set on the CPU, with focal
loss and, unless --no-twin, its BCE twin with the same settings, then writes
checkpoints/demo_focal.pt, checkpoints/demo_bce.pt (float16 weights) and checkpoints/README.md,
the model card with the measured mAP and speed. The same seed and settings on the same machine
give the same checkpoints.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from detviz.data import make_demo_dataset, read_voc
from detviz.data.images import load_image
from detviz.evaluate import detect_dataset, voc_map
from detviz.inference import Detector
from detviz.models import checkpoint_payload, load_checkpoint
from detviz.train.config import TrainConfig
from detviz.train.engine import fit
from detviz.train.runs import RunFolder, atomic_torch_save

SETTINGS = {  # the recipe; the model card repeats it
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


def train_one(loss: str, data_dir: Path, runs: Path, out: Path) -> dict:
    config = TrainConfig(
        data=f"demo:{data_dir}", loss=loss, out=str(runs), name=f"demo-{loss}-{int(time.time())}", **SETTINGS
    )
    run = RunFolder.create(config.out, config, config.name)
    print(f"training the {loss} model in {run.path}", flush=True)
    start = time.time()
    fit(config, run)
    minutes = (time.time() - start) / 60
    model, info = load_checkpoint(run.checkpoint("best"))
    target = out / f"demo_{loss}.pt"
    atomic_torch_save(checkpoint_payload(model, info.model, info.training, info.metrics, half=True), target)
    return {"file": target.name, "loss": loss, "minutes": minutes, **measure(target, data_dir)}


def measure(path: Path, data_dir: Path) -> dict:
    """mAP on the demo val split (as shipped: float16 weights) and CPU inference time per image."""
    detector = Detector.from_checkpoint(path)
    index = read_voc(data_dir, "val")
    detections = detect_dataset(detector, index, score_threshold=0.01)
    images = [load_image(index[i].image_path, (index[i].width, index[i].height)) for i in range(20)]
    detector.detect(images[:2])  # warm up
    start = time.perf_counter()
    for image in images:
        detector.detect([image])
    ms = (time.perf_counter() - start) / len(images) * 1000
    return {
        "map_all": voc_map(detections, index, index.num_classes, method="all").map,
        "map_07": voc_map(detections, index, index.num_classes, method="11point").map,
        "ms_per_image": ms,
        "megabytes": path.stat().st_size / 2**20,
        "threads": torch.get_num_threads(),
    }


def model_card(results: list[dict], data_dir: Path) -> str:
    rows = "\n".join(
        f"| `{r['file']}` | {r['loss']} | {r['map_07']:.3f} | {r['map_all']:.3f} | {r['ms_per_image']:.0f} ms | "
        f"{r['megabytes']:.1f} MB | {r['minutes']:.0f} min |"
        for r in results
    )
    settings = ", ".join(f"{k} {v}" for k, v in SETTINGS.items())
    return f"""# Shipped checkpoints

Made by `make demo-checkpoint` (`python -m detviz.train.demo_checkpoint`): trained on this
repository's built-in demo dataset (`python -m detviz.data.demo`, seed 0: 800 train images,
200 val), on a CPU with {results[0]["threads"]} threads, no pretrained weights, nothing downloaded.

| file | classification loss | mAP@0.5 VOC07 11-point | mAP@0.5 all-point | CPU inference / image | size | training |
|---|---|---:|---:|---:|---:|---:|
{rows}

mAP on the demo val split, score threshold 0.01, NMS IoU 0.45, difficult objects ignored
(`python -m detviz.evaluate --checkpoint checkpoints/demo_focal.pt --data demo --method all`).
Inference: one image at a time, preprocessing and NMS included.

Model: `ssd-multiscale` head on the `small` from-scratch backbone (GroupNorm), SSD300's 8,732
default boxes at 300 x 300 px, tanh box coding, class bias -4. Weights are stored as float16
and loaded as float32.

Training: {settings}; AdamW, one-cycle schedule, gradient clipping 1.0, the lesson's loss
normalization, matching IoU 0.4; augmentation: colour jitter, zoom-out, SSD IoU crop, flip.
The two files differ only in the classification loss, so the Losses page can compare BCE and
focal loss on real predictions.

Classes: {", ".join(read_voc(data_dir, "val").classes)}.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m detviz.train.demo_checkpoint", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/demo"), help="demo dataset folder (made if missing)")
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="where the training runs go")
    parser.add_argument("--out", type=Path, default=Path("checkpoints"), help="where the checkpoints go")
    parser.add_argument("--no-twin", action="store_true", help="train the focal-loss model only")
    args = parser.parse_args(argv)
    make_demo_dataset(args.data)
    args.out.mkdir(parents=True, exist_ok=True)
    results = [train_one("focal", args.data, args.runs, args.out)]
    if not args.no_twin:
        results.append(train_one("bce", args.data, args.runs, args.out))
    (args.out / "README.md").write_text(model_card(results, args.data))
    (args.out / "metrics.json").write_text(json.dumps(results, indent=2) + "\n")
    for r in results:
        print(
            f"{r['file']}: mAP@0.5 {r['map_07']:.3f} (11-point), {r['map_all']:.3f} (all-point), "
            f"{r['ms_per_image']:.0f} ms per image"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
