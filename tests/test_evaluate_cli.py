"""python -m detviz.evaluate: a per-class table, metrics.json and a COCO-results json."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

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
