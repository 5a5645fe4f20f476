"""Issue 16 end to end: a practitioner's own VOC folder (own class names, no classes.txt, no
ImageSets) made into splits, trained two steps on a JSON anchor design with variance coding,
evaluated, run on a folder of new images (a broken file and a CMYK JPEG among them) and opened
in the Predictions and Losses pages."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import run_app, texts
from PIL import Image
from test_own_dataset import OBJECTS, own_folder

from detviz.anchors import AnchorConfig, make_anchors
from detviz.data import image_from_bytes, read_voc
from detviz.data.split import make_splits
from detviz.evaluate import detect_dataset, voc_map
from detviz.evaluate.__main__ import main as evaluate_main
from detviz.inference import Detector
from detviz.predict import main as predict_main
from detviz.train.__main__ import main as train_main
from pages.ui import keys

CLASSES = ["gizmo", "sprocket", "widget"]  # sorted, inferred from the annotations
DESIGN = AnchorConfig(grids=(2, 1), zooms=(1.0,), shapes=((1.0, 1.0), (1.0, 2.0)))


@pytest.mark.filterwarnings("ignore:.*no classes.txt:UserWarning")
def test_own_folder_from_splits_to_predictions(data_root: Path, tmp_path: Path, capsys) -> None:
    """Mutations killed along the way: the inferred classes lost between splits, training or the
    checkpoint (another label order); the JSON anchors or the variance coding dropped by training
    (the checkpoint's anchors, coding and the Detector's); evaluate scoring with anything but the
    checkpoint's own decoding (its mAP against detect_dataset + voc_map here); predict not skipping
    a broken file or not converting CMYK; the run not offered by the pages."""
    folder = own_folder(data_root / "mine", OBJECTS)
    splits = make_splits(folder, 0.25, seed=0)
    assert len(splits["val"]) == 8 and read_voc(folder, "val").classes == CLASSES

    anchors = tmp_path / "anchors.json"
    anchors.write_text(DESIGN.to_json())
    runs = data_root / "runs"
    code = train_main([
        "--data", f"voc:{folder}", "--anchors", str(anchors), "--coding", "variance", "--image-size", "64",
        "--epochs", "1", "--max-steps", "2", "--batch-size", "4", "--lr", "0.001", "--workers", "0",
        "--device", "cpu", "--out", str(runs), "--name", "mine",
    ])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    best = runs / "mine" / "checkpoints" / "best.pt"
    detector = Detector.from_checkpoint(best)
    assert list(detector.classes) == CLASSES and detector.coding == "variance"
    assert len(detector.anchors) == DESIGN.num_anchors == 10
    assert detector.anchors.boxes.tolist() == make_anchors(DESIGN).boxes.tolist()

    out = tmp_path / "eval"
    assert (
        evaluate_main(["--checkpoint", str(best), "--data", f"voc:{folder}", "--split", "val", "--out", str(out)]) == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    index = read_voc(folder, "val")
    expected = voc_map(detect_dataset(detector, index, 0.01, 0.45, 100), index, 3, 0.5, "11point")
    assert list(metrics["ap"]) == CLASSES and metrics["map"] == pytest.approx(expected.map, abs=1e-6)

    new = tmp_path / "new"
    (new / "sub").mkdir(parents=True)
    photo = folder / "JPEGImages" / "g00.jpg"
    shutil.copy(photo, new / "plain.jpg")
    Image.open(photo).convert("CMYK").save(new / "sub" / "cmyk.jpg", format="JPEG")
    (new / "broken.jpg").write_bytes(photo.read_bytes()[:40])
    capsys.readouterr()
    results = tmp_path / "results.json"
    assert (
        predict_main(["--checkpoint", str(best), "--images", str(new), "--out", str(results), "--score", "0.01"]) == 1
    )
    assert "broken.jpg" in capsys.readouterr().err
    rows = json.loads(results.read_text())
    assert {r["file_name"] for r in rows} <= {"plain.jpg", "sub/cmyk.jpg"} and rows
    assert {r["category_name"] for r in rows} <= set(CLASSES)
    cmyk = image_from_bytes((new / "sub" / "cmyk.jpg").read_bytes(), "cmyk.jpg")
    (found,) = detector.detect([cmyk], score_threshold=0.01, nms_iou=0.45, max_detections=100)
    assert len([r for r in rows if r["file_name"] == "sub/cmyk.jpg"]) == len(found.boxes)

    at = run_app("pages/predictions.py", data="voc", voc=str(folder), split="val", ckpt="run:mine")
    assert at.selectbox(key=keys.CHECKPOINT).value == "run:mine" and not at.error
    assert any(m.label.startswith("Live mAP@0.5") for m in at.metric)  # its classes fit the folder: scored live
    at = run_app("pages/losses.py", data="voc", voc=str(folder), split="val", ckpt="run:mine")
    assert at.selectbox(key=keys.CHECKPOINT).value == "run:mine" and not at.error, texts(at.error)
