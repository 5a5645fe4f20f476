"""AppTest of the teaching pages (Anchors, Matching, Losses, Lesson walkthrough): every widget
path, the lesson's numbers, and each bad input of issue 7."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_voc, voc_xml
from conftest import run_app as _app
from conftest import texts as _texts

from detviz.anchors import PRESETS
from detviz.data import DEMO_CLASS_NAMES, VOC_CLASSES
from detviz.models import ModelConfig, build_model, checkpoint_payload
from pages.ui import keys

ANCHORS, MATCHING, LOSSES, LESSON = (f"pages/{p}.py" for p in ("anchors", "matching", "losses", "lesson"))


def _metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def _all_text(at) -> str:
    parts = [*_texts(at.markdown), *_texts(at.caption), *_texts(at.info), *_texts(at.success), *_texts(at.warning)]
    return "\n".join(parts + _texts(at.error))


def _save_checkpoint(folder: Path, name: str, classes, class_bias: float | None = -4.0) -> Path:
    config = ModelConfig(class_names=tuple(classes), image_size=96, anchors=PRESETS["lesson_multiscale"].to_dict(),
                         head_channels=32, class_bias=class_bias)  # fmt: skip
    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint_payload(build_model(config), config), folder / name)
    return folder / name


@pytest.fixture
def empty_image_root(data_root: Path) -> Path:
    """A VOC folder whose first image has no objects and whose second has one."""
    return make_voc(
        data_root / "voc",
        {
            "empty": voc_xml("empty.jpg", 64, 48, []),
            "one": voc_xml("one.jpg", 64, 48, [{"name": "cat", "xmin": 5, "ymin": 5, "xmax": 40, "ymax": 40}]),
        },
    )


# --- Anchors -----------------------------------------------------------------------------------


def test_anchors_page_defaults_and_every_preset(data_root: Path) -> None:
    at = _app(ANCHORS)
    assert _metrics(at)["Anchors"] == "189" and _metrics(at)["Shapes per cell"] == "9 / 9 / 9"
    assert "Positive anchors per object: 1 (chair): 1, 2 (diningtable): 1, 3 (sofa): 1" in _all_text(at)
    for preset, count in (("lesson_4x4", "16"), ("ssd300", "8,732")):
        at.selectbox(key=keys.PRESET).set_value(preset).run()
        assert not at.exception and _metrics(at)["Anchors"] == count
    # coverage: this config and the compared ones, one row each
    table = at.dataframe[0].value
    assert list(table["configuration"]) == ["ssd300", "lesson_4x4"]
    at.multiselect(key=keys.COMPARE).set_value([]).run()
    assert list(at.dataframe[0].value["configuration"]) == ["ssd300"]


def test_anchors_overlay_modes_and_cells(data_root: Path) -> None:
    at = _app(ANCHORS, preset="ssd300")
    at.radio(key=keys.OVERLAY).set_value("level").run()
    at.selectbox(key=keys.LEVEL).set_value("1x1").run()
    assert not at.exception
    at.radio(key=keys.OVERLAY).set_value("cell").run()
    at.selectbox(key=keys.LEVEL).set_value("38x38").run()
    at.slider(key=keys.ROW).set_value(37).run()
    at.slider(key=keys.COL).set_value(0).run()
    assert not at.exception
    spec = at.get("plotly_chart")[0].proto.spec
    assert "level 0 anchors" in spec
    at.selectbox(key=keys.LEVEL).set_value("19x19").run()  # row 37 is outside this grid: clamped
    assert not at.exception and at.slider(key=keys.ROW).value == 18
    at.selectbox(key=keys.LEVEL).set_value("1x1").run()  # the 1x1 level has no row/column sliders
    assert not at.exception and not [s for s in at.slider if s.key in (keys.ROW, keys.COL)]


def test_custom_anchors_count_live_and_bad_configs_are_refused(data_root: Path) -> None:
    at = _app(ANCHORS)
    at.selectbox(key=keys.PRESET).set_value("custom").run()
    assert _metrics(at)["Anchors"] == "189"  # starts from lesson_multiscale
    at.text_input(key=keys.GRIDS).set_value("8, 4").run()
    at.text_input(key=keys.ZOOMS).set_value("1").run()
    at.text_input(key=keys.SHAPES).set_value("1x1, 2x1").run()
    assert not at.error and _metrics(at)["Anchors"] == f"{(64 + 16) * 2}"
    for field, value, message in (
        (keys.ZOOMS, "0", "zooms must be positive, got 0"),
        (keys.SHAPES, "0x1", "shapes must have positive width and height"),
        (keys.GRIDS, "400", "at most 100,000 are allowed"),
        (keys.GRIDS, "", "grids is empty"),
        (keys.ZOOMS, "one", "zooms: 'one' is not a list of numbers"),
    ):
        at.text_input(key=field).set_value(value).run()
        assert not at.exception
        assert any(message in e and "Showing lesson_multiscale instead" in e for e in _texts(at.error)), value
        assert _metrics(at)["Anchors"] == "189"
        at.text_input(key=keys.GRIDS).set_value("8, 4").run()
        at.text_input(key=keys.ZOOMS).set_value("1").run()
        at.text_input(key=keys.SHAPES).set_value("1x1, 2x1").run()


def test_coverage_compares_configs_by_class_and_size(data_root: Path) -> None:
    at = _app(ANCHORS)
    summary, by_class, by_size = (d.value for d in at.dataframe[:3])
    assert list(summary["configuration"]) == ["lesson_multiscale", "lesson_4x4", "ssd300"]
    assert list(by_class["group"]) == ["all objects", *DEMO_CLASS_NAMES]
    assert {"lesson_multiscale", "lesson_4x4", "ssd300"} <= set(by_size.columns)
    shares = [float(v.rstrip("%")) for v in summary.iloc[:, 2]]
    assert shares[2] < shares[0] < shares[1]  # ssd300 covers best, the 4x4 grid worst
    at.slider(key=keys.IOU).set_value(0.3).run()
    lower = [float(v.rstrip("%")) for v in at.dataframe[0].value.iloc[:, 2]]
    assert all(a <= b for a, b in zip(lower, shares, strict=True))


def test_anchors_page_on_an_image_without_objects(data_root: Path, empty_image_root: Path) -> None:
    at = _app(ANCHORS, data="voc", voc=str(empty_image_root), image="empty")
    assert at.selectbox(key=keys.IMAGE).value == "empty"
    assert "This image has no objects: every anchor is background." in _all_text(at)


def test_anchors_bad_query_params_fall_back_with_a_notice(data_root: Path) -> None:
    at = _app(ANCHORS, preset="bogus", iou="7", overlay="everything", image="no-such-image")
    notice = " ".join(_texts(at.warning))
    for part in ("preset=bogus", "iou=7", "overlay=everything", "image=no-such-image"):
        assert part in notice
    assert at.selectbox(key=keys.PRESET).value == "lesson_multiscale" and at.slider(key=keys.IOU).value == 0.5


# --- Matching ----------------------------------------------------------------------------------


def test_matching_lesson_example_gives_the_lessons_numbers(data_root: Path) -> None:
    at = _app(MATCHING)
    assert at.selectbox(key=keys.PRESET).value == "lesson_4x4"
    assert at.selectbox(key=keys.IMAGE).value.startswith("lesson example")
    text = _all_text(at)
    assert "Positive anchors here: [11, 13, 14]; the lesson printed [11, 13, 14]" in text
    assert "The same as the lesson." in _texts(at.success)
    best = at.dataframe[0].value["largest IoU"].tolist()
    assert best == pytest.approx([0.3985, 0.4538, 0.1897], abs=2e-4)
    at.radio(key=keys.STEP).set_value("force").run()
    assert at.dataframe[0].value["forced anchor"].tolist() == [14, 13, 11]
    at.radio(key=keys.STEP).set_value("threshold").run()
    assert at.dataframe[0].value["anchor"].tolist() == [11, 13, 14]
    assert "3 positive anchors: 0 above IoU 0.5, 3 by force. 13 negatives learn background." in _all_text(at).replace(
        "**", ""
    )
    at.slider(key=keys.IOU).set_value(0.2).run()
    assert at.dataframe[0].value["anchor"].tolist() == [11, 12, 13, 14]
    assert any("Different from the lesson" in w for w in _texts(at.warning))


def test_matching_selected_anchor_says_why(data_root: Path) -> None:
    at = _app(MATCHING, anchor="13")
    assert any(
        s.startswith("Positive by force: it is the best anchor of object 2 (diningtable)") for s in _texts(at.success)
    )
    at.number_input(key=keys.ANCHOR).set_value(12).run()
    assert any("not above the threshold 0.5" in i for i in _texts(at.info))
    at.number_input(key=keys.ANCHOR).set_value(0).run()
    assert "Negative: it overlaps no object at all, so it learns background." in _texts(at.info)
    # a config with fewer anchors than the selected index drops the selection instead of failing
    at.selectbox(key=keys.PRESET).set_value("ssd300").run()
    at.number_input(key=keys.ANCHOR).set_value(8000).run()
    at.selectbox(key=keys.PRESET).set_value("lesson_4x4").run()
    assert not at.exception and at.number_input(key=keys.ANCHOR).value is None


def test_matching_big_config_heatmap_by_level(data_root: Path) -> None:
    at = _app(MATCHING, preset="ssd300", image="000001")
    columns = at.selectbox(key=keys.LEVEL)
    assert columns.value == "anchors that overlap an object"
    assert any("Showing the 400 of these" in c for c in _texts(at.caption))
    at.selectbox(key=keys.LEVEL).set_value("level 5 (1x1)").run()
    spec = at.get("plotly_chart")[1].proto.spec
    assert '"level 5 (1x1)"' in spec
    at.selectbox(key=keys.LEVEL).set_value("level 0 (38x38)").run()
    assert not at.exception and at.toggle(key="matching-touching").value
    for step in ("overlap", "force", "threshold"):
        at.radio(key=keys.STEP).set_value(step).run()
        assert not at.exception
    at.toggle(key=keys.NEGATIVES).set_value(True).run()
    assert not at.exception


def test_matching_image_without_objects(data_root: Path, empty_image_root: Path) -> None:
    at = _app(MATCHING, data="voc", voc=str(empty_image_root), image="empty", anchor="3")
    assert "This image has no objects: there is no Jaccard matrix, and every anchor is background." in _texts(at.info)
    assert "Negative: the image has no objects, so every anchor is background." in _texts(at.info)
    assert len(at.get("plotly_chart")) == 1


def test_matching_bad_query_params(data_root: Path) -> None:
    at = _app(MATCHING, anchor="99999", step="sideways", iou="abc")
    notice = " ".join(_texts(at.warning))
    assert all(p in notice for p in ("anchor=99999", "step=sideways", "iou=abc"))
    assert at.number_input(key=keys.ANCHOR).value is None and at.radio(key=keys.STEP).value == "overlap"


# --- Losses ------------------------------------------------------------------------------------


def test_losses_without_a_checkpoint_offer_only_synthetic_logits(data_root: Path) -> None:
    at = _app(LOSSES)
    assert any("No checkpoint is shipped yet" in i for i in _texts(at.info))
    assert at.selectbox(key=keys.CHECKPOINT).options == ["synthetic logits"]
    assert any("Nothing here comes from a model" in c for c in _texts(at.caption))
    metrics = _metrics(at)
    assert metrics["Anchors"] == "189" and float(metrics["BCE loss"]) > float(metrics["Focal loss"])
    assert len(at.get("plotly_chart")) == 5  # curves, shares, two loss maps, p_t histogram
    assert metrics["An easy background element (p_t = 0.9) weighs"] == "133x less"  # 1 / (0.75 * 0.1^2)
    at.slider(key=keys.GAMMA).set_value(0.0).run()
    assert _metrics(at)["An easy background element (p_t = 0.9) weighs"] == "1x less"
    for view in ("box loss", "class + box"):
        at.radio(key=keys.LOSS_VIEW).set_value(view).run()
        assert not at.exception
    at.selectbox(key=keys.LEVEL).set_value("1x1").run()
    at.slider(key="synthetic-negative").set_value(0.999).run()
    assert not at.exception


def test_losses_on_a_shipped_checkpoint(data_root: Path) -> None:
    _save_checkpoint(data_root / "checkpoints", "tiny.pt", DEMO_CLASS_NAMES)
    at = _app(LOSSES, image="000002")
    assert at.selectbox(key=keys.CHECKPOINT).value == "tiny.pt"
    assert not at.info or not any("No checkpoint" in i for i in _texts(at.info))
    metrics = _metrics(at)
    assert metrics["Anchors"] == "189" and int(metrics["Positive anchors"]) > 0
    titles = " ".join(at.get("plotly_chart")[2].proto.spec + at.get("plotly_chart")[3].proto.spec for _ in [0])
    assert "BCE: class loss by cell, the 4x4 level holds" in titles and "focal: class loss by cell" in titles
    at.slider(key=keys.ALPHA).set_value(0.5).run()
    assert not at.exception


def test_losses_on_a_training_runs_checkpoint(data_root: Path, demo_root: Path) -> None:
    """Kills: the Losses page offering shipped checkpoints only; a run's name mapped to another file;
    its box coding (variance) not used. The page's losses are checked against `ssd_loss` (the
    training path) on the run's checkpoint, the image read with PIL here."""
    from PIL import Image

    from detviz.data import read_voc
    from detviz.inference import Detector
    from detviz.losses import ssd_loss
    from detviz.train import RunFolder, TrainConfig

    run = RunFolder.create(data_root / "runs", TrainConfig(), "my-run")
    best = run.checkpoint("best")
    config = ModelConfig(class_names=tuple(DEMO_CLASS_NAMES), image_size=96, head_channels=32, coding="variance",
                         anchors=PRESETS["lesson_multiscale"].to_dict(), class_bias=-4.0)  # fmt: skip
    torch.manual_seed(1)
    best.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint_payload(build_model(config), config), best)
    record = read_voc(demo_root, "val")[0]

    at = _app(LOSSES, split="val", image=record.image_id)
    assert at.selectbox(key=keys.CHECKPOINT).options == ["run:my-run", "synthetic logits"]
    assert at.selectbox(key=keys.CHECKPOINT).value == "run:my-run" and not at.error
    detector = Detector.from_checkpoint(best)
    outputs = detector.raw_outputs([Image.open(record.image_path).convert("RGB")])
    gt = (record.boxes / torch.tensor([record.width, record.height] * 2))[None]
    args = (gt, record.labels[None], torch.ones(gt.shape[:2], dtype=torch.bool), detector.anchors)
    metrics = _metrics(at)
    for name, loss in (("BCE", "bce"), ("Focal", "focal")):
        expected = float(ssd_loss(*outputs, *args, classification=loss, coding="variance")["loss"])
        assert float(metrics[f"{name} loss"]) == pytest.approx(expected, rel=1e-3)
    assert f"run:my-run: of its {len(detector.anchors):,} anchors" in _all_text(at)


def test_losses_checkpoint_with_other_classes_says_so(data_root: Path) -> None:
    _save_checkpoint(data_root / "checkpoints", "voc.pt", VOC_CLASSES)
    at = _app(LOSSES)
    assert any("voc.pt cannot score this dataset: classes: the checkpoint has 20" in w for w in _texts(at.warning))
    at.selectbox(key=keys.CHECKPOINT).set_value("synthetic logits").run()
    assert not at.exception and _metrics(at)["Anchors"] == "189"


def test_losses_broken_checkpoint_is_an_error(data_root: Path) -> None:
    (data_root / "checkpoints").mkdir()
    (data_root / "checkpoints" / "broken.pt").write_bytes(b"not a checkpoint")
    at = _app(LOSSES)
    assert any("broken.pt" in e for e in _texts(at.error))


def test_losses_image_without_objects(data_root: Path, empty_image_root: Path) -> None:
    at = _app(LOSSES, data="voc", voc=str(empty_image_root), image="empty")
    assert _metrics(at)["Positive anchors"] == "0"


# --- Lesson walkthrough -----------------------------------------------------------------------


def test_lesson_next_and_back_through_every_stage(data_root: Path) -> None:
    from pages.lesson import STAGES

    at = _app(LESSON)
    assert at.segmented_control(key=keys.STAGE).value == STAGES[0]
    assert at.selectbox(key=keys.IMAGE).value == "lesson example (image 7)"  # the lesson's example first
    seen = []
    for stage in STAGES:
        assert at.segmented_control(key=keys.STAGE).value == stage
        assert (not at.exception and at.get("plotly_chart")) or stage == STAGES[-1]
        seen.append(stage)
        if stage != STAGES[-1]:
            next(b for b in at.button if b.label == "Next").click().run()
    assert seen == list(STAGES)
    assert any("No ladder model is shipped yet" in i for i in _texts(at.info))
    next(b for b in at.button if b.label == "Back").click().run()
    assert at.segmented_control(key=keys.STAGE).value == STAGES[-2]


def test_lesson_numbers(data_root: Path) -> None:
    from pages.lesson import STAGES

    at = _app(LESSON, image="lesson example (image 7)")
    assert _metrics(at)["Target class"] == "diningtable"
    at.segmented_control(key=keys.STAGE).set_value(STAGES[2]).run()
    assert _metrics(at)["Anchors"] == "16" and _metrics(at)["Numbers the head predicts"] == f"{16 * 25}"
    at.segmented_control(key=keys.STAGE).set_value(STAGES[3]).run()
    assert "3 positive anchors (3 forced), 13 background." in _all_text(at).replace("**", "")
    at.segmented_control(key=keys.STAGE).set_value(STAGES[4]).run()
    assert _metrics(at)["Anchors"] == "189"


def test_lesson_nms_on_a_shipped_model(data_root: Path) -> None:
    from pages.lesson import STAGES

    _save_checkpoint(data_root / "checkpoints", "demo_focal.pt", DEMO_CLASS_NAMES, class_bias=2.0)  # scores ~0.9
    at = _app(LESSON, stage=STAGES[6], image="000001")
    text = _all_text(at).replace("**", "")
    assert "boxes score above 0.3; NMS keeps" in text
    kept_before = int(text.split("NMS keeps ")[1].split()[0])
    at.slider(key="lesson-nms").set_value(0.9).run()
    kept_after = int(_all_text(at).replace("**", "").split("NMS keeps ")[1].split()[0])
    assert kept_after >= kept_before
    at.selectbox(key=keys.IMAGE).set_value("lesson example (image 7)").run()
    assert any("does not know this image's classes" in w for w in _texts(at.warning))


def test_lesson_bad_stage_in_the_link(data_root: Path) -> None:
    at = _app(LESSON, stage="99. Nowhere")
    assert any("stage=99. Nowhere" in w for w in _texts(at.warning))
    assert at.segmented_control(key=keys.STAGE).value.startswith("1.")


def test_links_use_readable_values(data_root: Path) -> None:
    at = _app(ANCHORS, preset="ssd300", overlay="cell", level="19x19", row="3", col="4")
    assert not at.warning
    assert at.radio(key=keys.OVERLAY).value == "cell" and at.selectbox(key=keys.LEVEL).value == "19x19"
    assert at.slider(key=keys.ROW).value == 3 and at.slider(key=keys.COL).value == 4
    at = _app(LOSSES, lossview="box loss", level="2x2")
    assert not at.warning and at.radio(key=keys.LOSS_VIEW).value == "box loss"


def _curves(at) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> (x, y) of each trace of the Losses page's first figure (the loss curves)."""
    import json

    spec = json.loads(at.get("plotly_chart")[0].proto.spec)

    def array(v) -> np.ndarray:  # plotly writes numpy arrays as typed arrays: {"dtype", "bdata"}
        if isinstance(v, dict):
            return np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"])
        return np.asarray(v, dtype=np.float64)

    return {t["name"]: (array(t["x"]), array(t["y"])) for t in spec["data"]}


def _focal_reference(p_t: np.ndarray, alpha: float, gamma: float, positive: bool) -> np.ndarray:
    """torchvision's sigmoid focal loss of one element whose right answer has probability p_t."""
    from torchvision.ops import sigmoid_focal_loss

    p = torch.from_numpy(p_t.astype(np.float64))
    logit = torch.log(p / (1 - p))
    inputs, targets = (logit, torch.ones_like(p)) if positive else (-logit, torch.zeros_like(p))
    return sigmoid_focal_loss(inputs, targets, alpha=alpha, gamma=gamma, reduction="none").numpy()


def test_losses_alpha_moves_the_focal_curves(data_root: Path) -> None:
    at = _app(LOSSES)
    for alpha in (0.25, 0.6):
        if alpha != 0.25:
            at.slider(key=keys.ALPHA).set_value(alpha).run()
        curves = _curves(at)
        p, positive = curves[f"focal, object class (alpha {alpha:g})"]
        _, background = curves[f"focal, background (1 - alpha = {1 - alpha:g})"]
        assert p == pytest.approx(np.linspace(0.005, 0.995, 199))
        assert positive == pytest.approx(_focal_reference(p, alpha, 2.0, True), rel=1e-4)
        assert background == pytest.approx(_focal_reference(p, alpha, 2.0, False), rel=1e-4)
    assert positive != pytest.approx(_focal_reference(p, 0.25, 2.0, True), rel=1e-2)  # it moved
