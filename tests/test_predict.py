"""python -m detviz.predict (issue 16, "Using a model"): a checkpoint over a folder of new images.

The rows are checked against the Detector run directly on each image (opened here with PIL,
not through detviz's reader), the boxes converted to pixel [x, y, w, h] here."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT
from PIL import Image, ImageOps

from detviz.data import DEMO_CLASS_NAMES
from detviz.figures.style import class_color
from detviz.inference import Detector
from detviz.models import ModelConfig, build_model, checkpoint_payload
from detviz.predict import EXIT_FAILED, EXIT_SKIPPED, main

SHIPPED = ROOT / "checkpoints" / "demo_focal.pt"  # trained on the demo set: clear, well-separated detections
SCORE, NMS = 0.3, 0.45
EXIF_ORIENTATION = 0x0112


@pytest.fixture(scope="module")
def folder(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Demo images as a practitioner's folder: two JPEGs, one in a subfolder, a CMYK JPEG, a PNG with
    an upper-case suffix, an EXIF-rotated JPEG (stored landscape, shown portrait), a truncated JPEG
    and a text file."""
    root = tmp_path_factory.mktemp("new-images")
    sources = sorted((demo_root / "JPEGImages").glob("*.jpg"))
    shutil.copy(sources[0], root / "a.jpg")
    (root / "sub" / "deeper").mkdir(parents=True)
    shutil.copy(sources[1], root / "sub" / "deeper" / "b.jpg")
    Image.open(sources[2]).convert("CMYK").save(root / "cmyk.jpg")
    Image.open(sources[3]).save(root / "upper.PNG")
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6  # rotate 90 degrees clockwise to view
    Image.open(sources[4]).save(root / "sub" / "rotated.jpeg", exif=exif)
    (root / "broken.jpg").write_bytes(sources[5].read_bytes()[:300])
    (root / "notes.txt").write_text("not an image\n")
    return root


def _run(capsys: pytest.CaptureFixture, *args: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _expected_rows(folder: Path, names: list[str]) -> list[dict]:
    detector = Detector.from_checkpoint(SHIPPED)
    rows = []
    for name in names:
        image = ImageOps.exif_transpose(Image.open(folder / name)).convert("RGB")
        (det,) = detector.detect([image], SCORE, NMS)
        for (x1, y1, x2, y2), score, label in zip(det.boxes.tolist(), det.scores.tolist(), det.labels.tolist(),
                                                  strict=True):  # fmt: skip
            rows.append({"file_name": name, "category_name": DEMO_CLASS_NAMES[label], "category_id": label + 1,
                         "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score})  # fmt: skip
    return rows


def test_rows_are_the_detectors_boxes_in_pixel_xywh_and_broken_files_are_skipped(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Kills: bbox written as xyxy or normalized; file_name absolute or without its subfolder;
    category_id 0-based; CMYK or EXIF rotation not handled (boxes in the stored, unrotated frame);
    a broken file crashing the run or reported with exit 0; a non-image suffix read as an image."""
    out = tmp_path / "results.json"
    code, _, err = _run(capsys, "--checkpoint", SHIPPED, "--images", folder, "--out", out, "--score", SCORE,
                        "--nms", NMS, "--batch-size", 2, "--device", "cpu")  # fmt: skip
    assert code == EXIT_SKIPPED
    assert "broken.jpg" in err and "notes.txt" not in err
    rows = json.loads(out.read_text())
    names = ["a.jpg", "cmyk.jpg", "sub/deeper/b.jpg", "sub/rotated.jpeg", "upper.PNG"]
    expected = _expected_rows(folder, names)
    assert sorted({r["file_name"] for r in rows}) == names  # every readable image found something
    key = lambda r: (r["file_name"], -r["score"])  # noqa: E731
    rows, expected = sorted(rows, key=key), sorted(expected, key=key)
    assert [(r["file_name"], r["category_name"], r["category_id"]) for r in rows] == [
        (r["file_name"], r["category_name"], r["category_id"]) for r in expected
    ]
    assert np.allclose([r["bbox"] for r in rows], [r["bbox"] for r in expected], atol=0.02)
    assert np.allclose([r["score"] for r in rows], [r["score"] for r in expected], atol=1e-4)
    rotated = Image.open(folder / "sub" / "rotated.jpeg")
    shown_w, shown_h = rotated.height, rotated.width  # orientation 6: the sides swap
    assert shown_w != shown_h
    for r in rows:
        if r["file_name"] == "sub/rotated.jpeg":
            x, y, w, h = r["bbox"]
            assert x + w <= shown_w + 0.01 and y + h <= shown_h + 0.01


def test_draw_mirrors_the_folder_with_the_boxes_drawn(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Kills: --draw flattening the folder structure, writing the original image unchanged, or
    drawing in another colour than the class's; drawn files read back as input on a second run."""
    drawn, out = tmp_path / "drawn", tmp_path / "r.json"
    code, _, _ = _run(capsys, "--checkpoint", SHIPPED, "--images", folder, "--out", out, "--draw", drawn,
                      "--device", "cpu")  # fmt: skip
    assert code == EXIT_SKIPPED
    written = sorted(p.relative_to(drawn).as_posix() for p in drawn.rglob("*") if p.is_file())
    assert written == ["a.jpg", "cmyk.jpg", "sub/deeper/b.jpg", "sub/rotated.jpeg", "upper.PNG"]
    rows = [r for r in json.loads(out.read_text()) if r["file_name"] == "upper.PNG"]
    original = np.asarray(Image.open(folder / "upper.PNG").convert("RGB"))
    image = np.asarray(Image.open(drawn / "upper.PNG"))
    assert image.shape == original.shape
    color = np.array(Image.new("RGB", (1, 1), class_color(rows[-1]["category_id"] - 1)).getpixel((0, 0)))
    painted = int((image == color).all(-1).sum()) - int((original == color).all(-1).sum())
    _, _, w, h = rows[-1]["bbox"]
    assert painted >= min(w, h)  # lossless PNG: the box outline is exactly its class colour

    inside = folder / "drawn-inside"  # --draw inside --images: its files are not read back as input
    try:
        assert _run(capsys, "--checkpoint", SHIPPED, "--images", folder, "--out", out, "--draw", inside,
                    "--device", "cpu")[0] == EXIT_SKIPPED  # fmt: skip
        assert {r["file_name"] for r in json.loads(out.read_text())}.isdisjoint(
            p.relative_to(folder).as_posix() for p in inside.rglob("*")
        )
    finally:
        shutil.rmtree(inside, ignore_errors=True)


def _largest(path: Path) -> Path:
    config = ModelConfig(kind="largest", class_names=tuple(DEMO_CLASS_NAMES), image_size=64, anchors=None)
    torch.save(checkpoint_payload(build_model(config), config), path)
    return path


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        ("empty", "is empty"),
        ("non-images", "none of its 2 files is an image"),
        ("all broken", "none of its 1 image files could be read"),
        ("largest", "a largest model; detection needs an ssd"),
        ("missing checkpoint", "checkpoint file not found"),
        ("bad score", "--score must be in [0, 1)"),
        ("bad nms", "--nms must be in (0, 1]"),
        ("no folder", "no such folder"),
    ],
)
def test_nothing_to_do_exits_2_with_one_line(
    case: str, needle: str, folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Kills: an empty folder, a folder of non-images, an unreadable-only folder, a classifier
    checkpoint, a missing checkpoint or a threshold out of range writing an empty results file with
    exit 0 (or a traceback) instead of one line and exit 2."""
    images, checkpoint, extra = tmp_path / "in", SHIPPED, []
    images.mkdir()
    if case == "non-images":
        (images / "notes.txt").write_text("hello")
        (images / "table.csv").write_text("a,b\n")
    elif case == "all broken":
        (images / "x.png").write_bytes(b"\x89PNG not really")
    elif case != "empty":
        shutil.copy(folder / "a.jpg", images / "a.jpg")
    if case == "largest":
        checkpoint = _largest(tmp_path / "largest.pt")
    elif case == "missing checkpoint":
        checkpoint = tmp_path / "gone.pt"
    elif case == "bad score":
        extra = ["--score", "1.5"]
    elif case == "bad nms":
        extra = ["--nms", "0"]
    elif case == "no folder":
        images = tmp_path / "nowhere"
    out = tmp_path / "results.json"
    code, _, err = _run(capsys, "--checkpoint", checkpoint, "--images", images, "--out", out, "--device", "cpu",
                        *extra)  # fmt: skip
    assert code == EXIT_FAILED
    lines = [line for line in err.splitlines() if not line.startswith("skipped:")]
    assert len(lines) == 1 and needle in lines[0], err
    assert not out.exists()


def test_module_entry_point(tmp_path: Path) -> None:
    """Kills: `python -m detviz.predict` not running main or not returning its status (a folder
    without images: exit 2 before any checkpoint is loaded)."""
    (tmp_path / "notes.txt").write_text("hello")
    done = subprocess.run([sys.executable, "-m", "detviz.predict", "--checkpoint", str(SHIPPED), "--images",
                           str(tmp_path), "--out", str(tmp_path / "r.json")],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)  # fmt: skip
    assert done.returncode == EXIT_FAILED and "none of its 1 files is an image" in done.stderr, done.stderr
