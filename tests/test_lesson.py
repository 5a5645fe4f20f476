"""The Lesson walkthrough with a model per stage: every stage with the ladder's checkpoints, each
number checked against an independent computation, the ladder summary, "train this stage now"
with its epoch scrubber, and the bad inputs (a wrong kind for a stage, a dataset with other
classes, a run without snapshots, a stale model card)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

from detviz.anchors import PRESETS
from detviz.data import DEMO_CLASS_NAMES, read_voc
from detviz.data.demo import read_demo_settings
from detviz.data.images import load_image
from detviz.evaluate import detect_dataset, voc_map
from detviz.inference import load_predictor
from detviz.ladder import LADDER, file_sha256
from detviz.models import ModelConfig, build_model, checkpoint_payload
from pages.ui import keys
from tests.conftest import make_voc, run_app, texts, voc_xml, wait_for

LESSON = "pages/lesson.py"
STAGES = ("1. Largest object", "2. Every class", "3. SSD on a 4x4 grid", "4. Matching", "5. Many scales",
          "6. BCE or focal", "7. NMS", "The ladder")  # fmt: skip
SIZE = 64
ANCHORS = {"ssd": "lesson_4x4", "ssd-multiscale": "lesson_multiscale"}


def save(folder: Path, file: str, kind: str, seed: int = 0, class_bias: float = 0.0, loss: str = "bce") -> Path:
    """A small untrained checkpoint of `kind` (seeded, so two seeds give two different models)."""
    anchors = PRESETS[ANCHORS[kind]].to_dict() if kind in ANCHORS else None
    config = ModelConfig(kind=kind, class_names=DEMO_CLASS_NAMES, image_size=SIZE, anchors=anchors,
                         **({"class_bias": class_bias, "head_channels": 32} if kind in ANCHORS else {}))  # fmt: skip
    torch.manual_seed(seed)
    model = build_model(config).eval()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / file
    torch.save(checkpoint_payload(model, config, training={"loss": loss}), path)
    return path


@pytest.fixture
def ladder_dir(data_root: Path) -> Path:
    """The five ladder files in the app's checkpoints folder (SSD class bias 1: scores ~0.7, so
    detections exist at the stages' default threshold 0.3)."""
    folder = data_root / "checkpoints"
    for i, m in enumerate(LADDER):
        loss = "focal" if "focal" in m.file else "bce"
        save(folder, m.file, m.kind, seed=i, class_bias=1.0, loss=loss)
    return folder


def metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def _stage(at, stage: str):
    at.segmented_control(key=keys.STAGE).set_value(stage).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _largest_positions(index) -> list[tuple[int, int]]:
    """(image position, object) of every val image's largest object: the biggest area, first on ties."""
    found = []
    for i in range(len(index)):
        boxes = index[i].boxes
        if len(boxes):
            area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
            found.append((i, int(np.argmax(area.numpy()))))
    return found


def test_stage_1_says_the_models_class_and_iou_and_its_val_accuracy(ladder_dir: Path, demo_root: Path) -> None:
    """Kills: the softmax score shown for another class, the box IoU taken against another object
    than the largest, accuracy over all val images instead of those with an object, the gallery
    sorted best first."""
    at = run_app(LESSON, image="000001")
    record = read_voc(demo_root, "train")[0]
    image = load_image(record.image_path, (record.width, record.height))
    predictor = load_predictor(ladder_dir / "lesson_largest.pt")
    (guess,) = predictor.predict([image])
    area = (record.boxes[:, 2] - record.boxes[:, 0]) * (record.boxes[:, 3] - record.boxes[:, 1])
    target = int(area.argmax())
    shown = metrics(at)
    assert shown["Target class"] == DEMO_CLASS_NAMES[int(record.labels[target])]
    assert shown["The model says"] == f"{DEMO_CLASS_NAMES[guess.label]} ({guess.score:.0%})"
    iou = float(box_iou(guess.box[None], record.boxes[target][None])[0, 0])
    assert shown["IoU of its box with the target box"] == f"{iou:.2f}"

    val = read_voc(demo_root, "val")
    pairs = _largest_positions(val)
    correct = []
    for i, k in pairs:
        r = val[i]
        (p,) = predictor.predict([load_image(r.image_path, (r.width, r.height))])
        correct.append(p.label == int(r.labels[k]))
    label = next(k for k in shown if k.startswith("Class accuracy on"))
    assert label == f"Class accuracy on {len(pairs)} val images"
    assert shown[label] == f"{np.mean(correct):.3f}"
    captions = [c for c in texts(at.caption) if "objects; says" in c]
    assert len(captions) == min(6, len(pairs))
    first_wrong = [c for c in captions if "IoU" in c]
    assert first_wrong  # worst first: wrong classes lead when there are any
    if not all(correct):
        wrong_ids = {val[i].image_id for (i, _), ok in zip(pairs, correct, strict=True) if not ok}
        assert captions[0].split(":")[0] in wrong_ids


def test_stage_2_f1_at_the_threshold_matches_a_count_by_hand(ladder_dir: Path, demo_root: Path) -> None:
    """Kills: macro F1 shown as micro, the slider not reaching the val score, `>` for `>=`."""
    at = _stage(run_app(LESSON, image="000001"), STAGES[1])
    predictor = load_predictor(ladder_dir / "lesson_multilabel.pt")
    val = read_voc(demo_root, "val")
    probs = np.stack([predictor.predict([load_image(r.image_path, (r.width, r.height))])[0].numpy() for r in val])
    truth = np.zeros_like(probs, dtype=bool)
    for i, r in enumerate(val):
        truth[i, r.labels.numpy()] = True

    def f1(t: float) -> str:
        said = probs >= t
        tp, fp, fn = (said & truth).sum(), (said & ~truth).sum(), (~said & truth).sum()
        return f"{2 * tp / max(2 * tp + fp + fn, 1):.3f}"

    label = f"Micro F1 on {len(val)} val images"
    assert metrics(at)[label] == f1(0.5)
    at.slider(key=keys.LESSON_ML_THRESHOLD).set_value(0.3).run()
    assert metrics(at)[label] == f1(0.3)
    assert len(at.get("plotly_chart")) >= 2  # probabilities against the truth, and the image


def test_stage_3_counts_the_cells_that_fired_and_explains_misses(ladder_dir: Path, demo_root: Path) -> None:
    """Kills: cells counted per detection instead of per cell, row and column swapped (a count of
    distinct (col, row) pairs is the same, so the figure's shaded cells are checked too)."""
    at = _stage(run_app(LESSON, image="000001"), STAGES[2])
    record = read_voc(demo_root, "train")[0]
    image = load_image(record.image_path, (record.width, record.height))
    detector = load_predictor(ladder_dir / "lesson_4x4_bce.pt")
    (found,) = detector.detect([image], 0.3)
    cells = {(int(a) // 4, int(a) % 4) for a in found.anchor}  # row-major: anchor = row * 4 + col
    text = " ".join(texts(at.markdown)).replace("**", "")
    assert f"{len(cells)} of 16 cells fired" in text
    figure = json.loads(at.get("plotly_chart")[0].proto.spec)
    shaded = {s["name"] for s in figure["layout"]["shapes"] if str(s.get("name", "")).startswith("fired cell")}
    assert shaded == {f"fired cell ({r}, {c})" for r, c in cells}


def test_stages_5_and_6_put_two_models_side_by_side_with_their_val_map(ladder_dir: Path, demo_root: Path) -> None:
    """Kills: both columns showing the same model, the mAP of one model under the other's name."""
    at = run_app(LESSON, image="000001")
    val = read_voc(demo_root, "val")
    for stage, files in ((STAGES[4], ("lesson_4x4_bce.pt", "lesson_multiscale_bce.pt")),
                         (STAGES[5], ("lesson_multiscale_bce.pt", "lesson_multiscale_focal.pt"))):  # fmt: skip
        _stage(at, stage)
        shown = metrics(at)
        for file in files:
            detector = load_predictor(ladder_dir / file)
            expected = voc_map(detect_dataset(detector, val, score_threshold=0.01), val, val.num_classes).map
            assert shown[f"{file}: mAP@0.5 on {len(val)} val images"] == f"{expected:.3f}"
    assert len([c for c in texts(at.caption) if "carry" in c and "of its class loss" in c]) == 2


def test_stage_7_defaults_to_the_focal_189_anchor_model_and_the_ladder_reads_the_card(ladder_dir: Path) -> None:
    """Kills: NMS on the alphabetically first file (BCE), a ladder row showing another stage's value."""
    at = _stage(run_app(LESSON, image="000001"), STAGES[6])
    assert at.selectbox(key=keys.LESSON_NMS_MODEL).value == "lesson_multiscale_focal.pt"
    rows = [{"file": m.file, m.metric: 0.1 * (k + 1)} for k, m in enumerate(LADDER)]
    (ladder_dir / "metrics.json").write_text(json.dumps(rows))
    at = _stage(at, STAGES[7])
    table = at.dataframe[0].value
    assert list(table["model"]) == [m.file for m in LADDER]
    assert table["detviz (demo val)"].round(3).tolist() == [0.1, 0.2, 0.3, 0.4, 0.5]
    assert list(table["val metric"]) == [m.metric_name for m in LADDER]
    assert "accuracy 0.819" in table["lesson printed (VOC)"][0]


def test_a_recorded_map_is_shown_only_for_the_file_it_measured(ladder_dir: Path, demo_root: Path) -> None:
    """Kills: a stale model card's number shown for a retrained file, or for another demo set."""
    file = ladder_dir / "lesson_4x4_bce.pt"
    demo = dataclasses.asdict(read_demo_settings(demo_root))
    row = {"file": file.name, "map_all": 0.777, "sha256": file_sha256(file), "demo": demo}
    (ladder_dir / "metrics.json").write_text(json.dumps([row]))
    label = "4x4 model: mAP@0.5 on 8 val images"
    at = _stage(run_app(LESSON, image="000001"), STAGES[2])
    assert metrics(at)[label] == "0.777"
    (ladder_dir / "metrics.json").write_text(json.dumps([row | {"demo": demo | {"seed": 99}}]))
    at = _stage(run_app(LESSON, image="000001"), STAGES[2])
    assert metrics(at)[label] != "0.777"


def test_a_checkpoint_of_the_wrong_kind_for_a_stage(data_root: Path) -> None:
    """The stage says so and still explains itself with the targets."""
    save(data_root / "checkpoints", "lesson_largest.pt", "ssd")
    at = run_app(LESSON, image="000001")
    assert any("lesson_largest.pt is a ssd model; this stage shows a largest model" in e for e in texts(at.error))
    assert "Target class" in metrics(at) and "The model says" not in metrics(at)
    assert at.get("plotly_chart")  # the target figure


def test_a_dataset_with_other_classes(ladder_dir: Path, data_root: Path) -> None:
    """Stages that need a model say so and still show the targets."""
    objects = [{"name": "cat", "xmin": 5, "ymin": 5, "xmax": 40, "ymax": 30}]
    root = make_voc(data_root / "voc", {"a": voc_xml("a.jpg", 64, 48, objects)}, classes=["cat", "dog"])
    at = run_app(LESSON, data="voc", voc=str(root), split="train")
    assert at.selectbox(key=keys.IMAGE).value == "lesson example (image 7)"  # the lesson's example comes first
    at.selectbox(key=keys.IMAGE).set_value("a").run()
    for stage in STAGES[:3]:
        _stage(at, stage)
        assert any("trained on other classes" in w for w in texts(at.warning)), stage
        assert at.get("plotly_chart"), stage


def test_the_lesson_example_comes_first_with_the_lessons_numbers(ladder_dir: Path) -> None:
    at = run_app(LESSON)
    assert at.selectbox(key=keys.IMAGE).value == "lesson example (image 7)"
    _stage(at, STAGES[3])
    text = " ".join(texts(at.markdown))
    assert "Positive anchors here: [11, 13, 14]; the lesson printed [11, 13, 14]" in text
    _stage(at, STAGES[0])
    switch = next(b for b in at.button if b.label.startswith("The trained models know the demo's classes"))
    switch.click().run()
    assert at.selectbox(key=keys.IMAGE).value == "000001"
    assert "The model says" in metrics(at)


def test_train_this_stage_now_and_scrub_its_epochs(ladder_dir: Path, data_root: Path) -> None:
    """The button starts a small run of the stage's kind; its snapshots appear under an epoch
    slider; without snapshots (an older run) the stage says so."""
    from detviz.train.runs import RunFolder, list_runs

    at = run_app(LESSON, image="000001")
    next(b for b in at.button if b.label == "Train this stage now").click().run()
    runs = list_runs(data_root / "runs")
    assert len(runs) == 1 and runs[0].name.startswith("lesson-largest-") and runs[0].config["model"] == "largest"
    run = RunFolder(runs[0].path)
    wait_for(lambda: run.state() in ("finished", "failed"), seconds=240)
    assert run.state() == "finished", run.log_tail()
    at.run()
    slider = at.select_slider(key="lesson-scrub-largest" + keys.SNAPSHOT_EPOCH)
    assert list(slider.options) == ["1", "2", "3", "4"] and slider.value == 3  # shown 1-4, epochs 0-3
    slider.set_value(0).run()
    assert not at.exception
    (run.path / "snapshots.jsonl").unlink()
    at.run()
    assert any("trained before detviz recorded epoch snapshots" in i for i in texts(at.info))
    shutil.rmtree(run.path)
