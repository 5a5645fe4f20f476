"""python -m detviz.evaluate: a per-class table, metrics.json and a COCO-results json."""

from __future__ import annotations

import contextlib
import io
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from detviz.anchors import PRESETS
from detviz.data import DEMO_CLASS_NAMES, read_voc
from detviz.evaluate import main as evaluate_main
from detviz.models import ModelConfig, build_model, checkpoint_payload

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained demo-class SSD: its detections are poor, but real."""
    config = ModelConfig(class_names=DEMO_CLASS_NAMES, image_size=128, anchors=PRESETS["lesson_multiscale"].to_dict())
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    torch.save(checkpoint_payload(build_model(config), config), path)
    return path


@pytest.mark.parametrize("method", ["11point", "all"])
def test_voc_table_and_files(checkpoint: Path, demo_root: Path, tmp_path: Path, capsys, method: str) -> None:
    code = evaluate_main(
        [
            "--checkpoint",
            str(checkpoint),
            "--data",
            f"demo:{demo_root}",
            "--method",
            method,
            "--out",
            str(tmp_path),
            "--score-threshold",
            "0.001",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["class", "AP", "objects", "detections", "TP", "FP"]
    assert all(name in out for name in DEMO_CLASS_NAMES) and "mAP" in out
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["method"] == method and metrics["images"] == 8 and set(metrics["ap"]) == set(DEMO_CLASS_NAMES)
    results = json.loads((tmp_path / "coco_results.json").read_text())
    ids = set(read_voc(demo_root, "val").image_ids)
    assert results and all(str(r["image_id"]).zfill(6) in ids and 1 <= r["category_id"] <= 8 for r in results)
    assert all(len(r["bbox"]) == 4 and r["bbox"][2] > 0 for r in results)


def test_coco_method(checkpoint: Path, demo_root: Path, tmp_path: Path, capsys) -> None:
    assert (
        evaluate_main(
            ["--checkpoint", str(checkpoint), "--data", f"demo:{demo_root}", "--method", "coco", "--out", str(tmp_path)]
        )
        == 0
    )
    assert "AP @[.50:.95] all" in capsys.readouterr().out
    assert len(json.loads((tmp_path / "metrics.json").read_text())["stats"]) == 12


def coco_ground_truth(index) -> COCO:
    """The index as a pycocotools ground truth: image ids as coco_results writes them, boxes
    [x, y, w, h] in pixels, categories 1..C, difficult objects as crowd (as coco_map treats them)."""
    images, annotations = [], []
    for record in index:
        image_id = int(record.image_id)
        images.append({"id": image_id, "width": record.width, "height": record.height})
        for (x1, y1, x2, y2), label, hard in zip(
            record.boxes.tolist(), record.labels.tolist(), record.difficult.tolist(), strict=True
        ):
            w, h = x2 - x1, y2 - y1
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": label + 1,
                                "bbox": [x1, y1, w, h], "area": w * h, "iscrowd": int(hard)})  # fmt: skip
    gt = COCO()
    gt.dataset = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": c + 1, "name": name} for c, name in enumerate(index.classes)],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt


def test_coco_results_json_scores_in_pycocotools_as_coco_map(demo_root: Path, tmp_path: Path, capsys) -> None:
    """Issue 12: the CLI's coco_results.json, loaded with pycocotools' loadRes against the ground
    truth, gives coco_map's twelve numbers (metrics.json); a bbox written as xyxy, not xywh, or
    a wrong image or category id does not."""
    shipped = ROOT / "checkpoints" / "demo_focal.pt"  # trained on the demo set: real detections
    args = ["--checkpoint", str(shipped), "--data", f"demo:{demo_root}", "--method", "coco", "--out", str(tmp_path)]
    assert evaluate_main(args) == 0
    capsys.readouterr()
    stats = list(json.loads((tmp_path / "metrics.json").read_text())["stats"].values())
    results = json.loads((tmp_path / "coco_results.json").read_text())
    gt = coco_ground_truth(read_voc(demo_root, "val"))
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = COCOeval(gt, gt.loadRes(results), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    assert stats[1] > 0.5  # AP@0.5: the detections find the objects, so a wrong bbox would show
    # the json rounds boxes to 0.01 px and scores to 1e-5, which changes no match here (a bbox
    # written as xyxy moves AP@0.5 by about 0.86)
    np.testing.assert_allclose(evaluator.stats, stats, atol=1e-6, rtol=0)


def test_a_checkpoint_for_other_classes_is_refused(tmp_path: Path, demo_root: Path, capsys) -> None:
    config = ModelConfig(class_names=("cat", "dog"), image_size=128)
    path = tmp_path / "pets.pt"
    torch.save(checkpoint_payload(build_model(config), config), path)
    assert evaluate_main(["--checkpoint", str(path), "--data", f"demo:{demo_root}", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        "error: the checkpoint does not fit this dataset: classes: the checkpoint has 2"
    )


def test_bad_flags_and_files_give_one_line() -> None:
    bad = subprocess.run(
        [sys.executable, "-m", "detviz.evaluate", "--checkpoint", "x.pt", "--method", "voc12"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "invalid choice: 'voc12'" in bad.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "detviz.evaluate", "--checkpoint", "nowhere.pt"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode == 1 and missing.stderr.strip() == "error: nowhere.pt: checkpoint file not found."


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("model", None, "the checkpoint has no 'model' entry"),
        ("image_size", "128", "image_size must be a whole number, got str '128'"),
        ("head_channels", 0, "head_channels must be from 4 to 4096"),
        ("anchors", {"grids": [4], "zooms": [1e30]}, "AnchorConfig.zooms and shapes"),
        ("state_dict", [1, 2], "the 'state_dict' entry (the weights) is a list, not a dict"),
        ("version", "1", "the checkpoint's version is '1', not a whole number"),
        ("weights", math.nan, "the model's outputs are not finite (100% of its class logits are NaN or inf)"),
    ],
)
def test_a_malformed_checkpoint_is_one_line_and_exit_1(
    checkpoint: Path, demo_root: Path, tmp_path: Path, capsys, field: str, value, message: str
) -> None:
    """Issue 12: no KeyError / TypeError / ZeroDivisionError traceback, whatever the file holds."""
    payload = torch.load(checkpoint, weights_only=True)
    if field == "weights":
        payload["state_dict"] = {k: torch.full_like(v, value) for k, v in payload["state_dict"].items()}
    elif field in ("state_dict", "version"):
        payload[field] = value
    elif value is None:
        del payload[field]
    else:
        payload["model"][field] = value
    path = tmp_path / "bad.pt"
    torch.save(payload, path)
    code = evaluate_main(["--checkpoint", str(path), "--data", f"demo:{demo_root}", "--out", str(tmp_path / "out")])
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    assert len(err.splitlines()) == 1 and err.startswith(f"error: {path}: ") and message in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("device", "message"),
    [
        ("tpu", "--device must be one of auto, cpu, cuda, mps or cuda:N, got 'tpu'."),
        ("cuda:x", "--device must be one of auto, cpu, cuda, mps or cuda:N, got 'cuda:x'."),
        pytest.param(
            "cuda",
            "--device cuda was asked for, but this machine has no CUDA GPU",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU"),
        ),
    ],
)
def test_an_unknown_or_missing_device_is_named_not_blamed_on_the_checkpoint(
    checkpoint: Path, demo_root: Path, tmp_path: Path, capsys, device: str, message: str
) -> None:
    args = ["--checkpoint", str(checkpoint), "--data", f"demo:{demo_root}", "--device", device, "--out", str(tmp_path)]
    assert evaluate_main(args) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and message in error[0] and "checkpoint" not in error[0], error
