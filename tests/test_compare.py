"""Issue 14, "compare two models anywhere it matters": A/B mode on Predictions and Evaluate (both
checkpoints in the link, every number checked against the library run independently on each
checkpoint), B's bad inputs, the checkpoint picker's detectors-only list and default, the
scoring pages' val split default and training-split warning, and the one headline mAP."""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from urllib.parse import parse_qsl

import numpy as np
import pytest
import torch
from conftest import run_app, texts
from test_evaluate_page import _array, _figure

from detviz.anchors import PRESETS
from detviz.data import DEMO_CLASS_NAMES, VOC_CLASSES, load_image, read_voc
from detviz.evaluate import (
    compare_ap,
    compare_errors,
    compare_image,
    error_breakdown,
    mean_ap,
    voc_map,
)
from detviz.figures import ap_compare_figure, error_difference_figure
from detviz.inference import Detector
from detviz.models import ModelConfig, build_model, checkpoint_payload
from detviz.postprocess import postprocess
from pages.ui.scoring import map_text, scores_training_images

PREDICTIONS, EVALUATE = "pages/predictions.py", "pages/evaluate.py"
ROOT = Path(__file__).resolve().parents[1]
A, B = "a.pt", "b.pt"
HEADLINE = "mAP@0.5 (VOC, all-point)"  # the one headline both pages show (pages/ui/scoring.py)
TRAINING_WARNING = "scored on training images the model saw"


def _save(path: Path, kind: str = "ssd-multiscale", anchors: str | None = "lesson_multiscale", image_size: int = 96,
          seed: int = 0, classes=DEMO_CLASS_NAMES) -> Path:  # fmt: skip
    """An untrained checkpoint; a class bias of 2 makes every anchor a confident candidate, so both
    models detect plenty and their numbers differ (other anchors, image size and weights)."""
    config = ModelConfig(kind=kind, class_names=tuple(classes), image_size=image_size, head_channels=32,
                         anchors=PRESETS[anchors].to_dict() if anchors else None,
                         class_bias=2.0 if anchors else None)  # fmt: skip
    torch.manual_seed(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint_payload(build_model(config), config), path)
    return path


@pytest.fixture
def pair(data_root: Path) -> tuple[Path, Path]:
    """A: the shipped focal model (8,732 anchors at 300 px, finds most demo objects); B: an
    untrained SSD on the 4x4 grid's 16 anchors at 128 px (finds next to nothing)."""
    folder = data_root / "checkpoints"
    folder.mkdir()
    shutil.copy(ROOT / "checkpoints" / "demo_focal.pt", folder / A)
    return folder / A, _save(folder / B, kind="ssd", anchors="lesson_4x4", image_size=128, seed=1)


def _val_detections(checkpoint: Path, demo_root: Path, score: float, nms: float = 0.45, max_dets: int = 100):
    """The checkpoint's detections on the val images (normalized xyxy) and the ground truth, run here
    with Detector + postprocess, not through the app."""
    detector = Detector.from_checkpoint(checkpoint)
    index = read_voc(demo_root, "val")
    images = [load_image(r.image_path, (r.width, r.height)) for r in index]
    logits, activations = detector.raw_outputs(images)
    dets = postprocess(logits, activations, detector.anchors, score, nms, max_dets, coding=detector.coding)
    gts = [(r.boxes / torch.tensor([r.width, r.height] * 2), r.labels, r.difficult) for r in index]
    return dets, gts


def _metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def _table(at, column: str):
    """The dataframe that has this column."""
    (frame,) = [d.value for d in at.dataframe if column in d.value.columns]
    return frame


def _cells(values: torch.Tensor) -> list[float]:
    return [math.nan if math.isnan(v) else v for v in values.tolist()]


# --- Evaluate ----------------------------------------------------------------------------------


def test_evaluate_a_vs_b_equals_the_library_on_each_checkpoint(pair: tuple[Path, Path], demo_root: Path) -> None:
    """Kills: B's AP or breakdown computed from A's detections (or A's from B's); the difference
    taken A minus B; one side scored with another AP method (11-point) than the headline."""
    at = run_app(EVALUATE, ckpt=A, ckpt_b=B, split="val", score="0.05")
    assert not at.error and not at.warning, texts(at.error) + texts(at.warning)
    assert [t.label for t in at.tabs][:2] == ["A vs B", "Per class"]
    classes = list(DEMO_CLASS_NAMES)
    (dets_a, gts), (dets_b, _) = (_val_detections(p, demo_root, 0.05) for p in pair)
    voc_a, voc_b = (voc_map(d, gts, len(classes), 0.5, "all") for d in (dets_a, dets_b))
    assert not math.isclose(voc_a.map, voc_b.map)  # two different models

    m = _metrics(at)
    assert m[f"A: {HEADLINE}"] == map_text(voc_a.map) and m[f"B: {HEADLINE}"] == map_text(voc_b.map)
    (delta,) = [x.delta for x in at.metric if x.label == f"B: {HEADLINE}"]
    assert delta == f"{voc_b.map - voc_a.map:+.3f} vs A"
    assert m["Detections (A / B)"] == f"{sum(len(d.scores) for d in dets_a):,} / {sum(len(d.scores) for d in dets_b):,}"

    ap = _table(at, "B − A")
    assert list(ap["class"]) == classes and list(ap["objects"]) == voc_a.num_gt.tolist()
    np.testing.assert_allclose(ap["AP A"].astype(float), _cells(voc_a.ap), atol=1e-9)
    np.testing.assert_allclose(ap["AP B"].astype(float), _cells(voc_b.ap), atol=1e-9)
    np.testing.assert_allclose(ap["B − A"].astype(float), _cells(voc_b.ap - voc_a.ap), atol=1e-9)
    bars = _figure(at, "ap-compare")["data"]
    assert [b["name"] for b in bars] == [f"A: {A}", f"B: {B}"]
    drawn = [classes.index(name) for name in bars[0]["x"]]
    assert sorted(drawn) == [c for c in range(8) if voc_a.num_gt[c] > 0] and bars[1]["x"] == bars[0]["x"]
    np.testing.assert_allclose(_array(bars[0]["y"]), voc_a.ap[drawn].numpy(), atol=1e-9)
    np.testing.assert_allclose(_array(bars[1]["y"]), voc_b.ap[drawn].numpy(), atol=1e-9)

    error_a, error_b = (error_breakdown(d, gts, len(classes), 0.5, "all") for d in (dets_a, dets_b))
    errors = _table(at, "errors B − A")
    assert list(errors["error"]) == list(error_a.delta_map)
    np.testing.assert_array_equal(errors["errors B − A"], (error_b.counts.sum(0) - error_a.counts.sum(0)).numpy())
    np.testing.assert_array_equal(errors["errors A"], error_a.counts.sum(0).numpy())
    gains = [error_b.delta_map[k] - error_a.delta_map[k] for k in error_a.delta_map]
    np.testing.assert_allclose(errors["mAP gain B − A"].astype(float), gains, atol=1e-9)
    (bar,) = _figure(at, "error-difference")["data"]
    np.testing.assert_allclose(_array(bar["x"]), gains, atol=1e-9)
    assert any(g != 0 for g in gains)


def test_evaluate_b_same_as_a_says_so_and_every_difference_is_zero(pair: tuple[Path, Path]) -> None:
    """Kills: B == A refused or crashing; a difference that is not B minus A of the same numbers."""
    at = run_app(EVALUATE, ckpt=A, ckpt_b=A, split="val")
    assert any("B is the same checkpoint as A" in t for t in texts(at.info)) and not at.error
    assert (_table(at, "B − A")["B − A"].dropna() == 0).all()
    assert (_table(at, "errors B − A")["errors B − A"] == 0).all()


def test_evaluate_bad_b_is_an_error_and_a_is_still_shown(pair: tuple[Path, Path], data_root: Path) -> None:
    """Kills: a broken B, or B with other classes, taking the page (A) down or comparing anyway."""
    (data_root / "checkpoints" / "broken.pt").write_bytes(b"\x00" * 100)
    _save(data_root / "checkpoints" / "voc.pt", classes=VOC_CLASSES)
    for b, said in (("broken.pt", "Compare with: broken.pt: not a PyTorch checkpoint"),
                    ("voc.pt", "Compare with: voc.pt was trained on other classes")):  # fmt: skip
        at = run_app(EVALUATE, ckpt=A, ckpt_b=b, split="val")
        assert any(e.startswith(said) and e.endswith(f"Showing {A} alone.") for e in texts(at.error)), texts(at.error)
        assert HEADLINE in _metrics(at) and at.tabs[0].label == "Per class"


def test_evaluate_worst_image_link_keeps_b(pair: tuple[Path, Path]) -> None:
    """Kills: the worst-image link dropping ?ckpt_b= (Predictions would open without the comparison)."""
    at = run_app(EVALUATE, ckpt=A, ckpt_b=B, split="val")
    params = dict(parse_qsl(at.get("link_button")[0].proto.url.partition("?")[2]))
    assert params["ckpt"] == A and params["ckpt_b"] == B
    at = run_app(EVALUATE, ckpt=A, split="val")
    assert "ckpt_b" not in dict(parse_qsl(at.get("link_button")[0].proto.url.partition("?")[2]))


# --- Predictions -------------------------------------------------------------------------------


def test_predictions_side_by_side_equals_each_detector(pair: tuple[Path, Path], demo_root: Path) -> None:
    """Kills: B drawn or counted with A's detector (or A's image size / anchors); the per-class
    table mixing up A and B; the live mAPs not the headline definition."""
    index = read_voc(demo_root, "val")
    record = index[1]
    at = run_app(PREDICTIONS, ckpt=A, ckpt_b=B, split="val", image=record.image_id)
    assert not at.error and not at.warning, texts(at.error) + texts(at.warning)
    assert [h.value for h in at.subheader][:3] == [f"A: {A}", f"B: {B}", "What differs on this image"]
    assert "ssd, 16 anchors, 128 px" in texts(at.caption)
    image = load_image(record.image_path, (record.width, record.height))
    counts = _metrics_in_order(at, "Detections")
    table = _table(at, "detections B")
    found = {}
    for side, path in enumerate(pair):
        (det,) = Detector.from_checkpoint(path).detect([image], 0.25, 0.45, 100)
        result = voc_map([(det.boxes, det.scores, det.labels)], [(record.boxes, record.labels, record.difficult)],
                         8, 0.5, "all")  # fmt: skip
        tag = "AB"[side]
        assert counts[side] == str(len(det.scores))
        per_class = torch.bincount(det.labels, minlength=8)
        np.testing.assert_array_equal(table[f"detections {tag}"], per_class[table.index].numpy())
        found[side] = result.found[0] & ~record.difficult
        hit = torch.bincount(record.labels[found[side]], minlength=8)
        np.testing.assert_array_equal(table[f"found {tag}"], hit[table.index].numpy())
        figure = _figure(at, f"detections-{'ab'[side]}")
        assert figure["data"]  # drawn
    only_a = [f"{DEMO_CLASS_NAMES[int(record.labels[i])]} (object {i})" for i in
              torch.nonzero(found[0] & ~found[1]).flatten().tolist()]  # fmt: skip
    assert f"- Found by A only: {', '.join(only_a) or 'nothing'}" in texts(at.markdown)

    lives = [m for m in at.metric if m.label.startswith(f"Live {HEADLINE} on 8 images")]
    assert [m.label[-1] for m in lives] == ["A", "B"]
    for m, path in zip(lives, pair, strict=True):
        dets, gts = _val_detections(path, demo_root, 0.25)
        assert m.value == map_text(voc_map(dets, gts, 8, 0.5, "all").map)


def _metrics_in_order(at, label: str) -> list[str]:
    return [m.value for m in at.metric if m.label == label]


def test_predictions_swap_button_swaps_a_and_b(pair: tuple[Path, Path]) -> None:
    """Kills: a swap that sets only one picker, or none."""
    at = run_app(PREDICTIONS, ckpt=A, ckpt_b=B, split="val")
    at.button(key="ab-swap").click().run()
    assert at.selectbox(key="ckpt").value == B and at.selectbox(key="ckpt_b").value == A
    assert [h.value for h in at.subheader][:2] == [f"A: {B}", f"B: {A}"]
    at.selectbox(key="ckpt_b").set_value("none").run()
    assert not [h for h in at.subheader if h.value.startswith("B: ")] and at.slider(key="nmsstep")


def test_predictions_bad_b(pair: tuple[Path, Path], data_root: Path) -> None:
    """Kills: a link to a classifier as B silently ignored; a B whose weights are NaN crashing the
    page instead of leaving A alone."""
    _save(data_root / "checkpoints" / "largest.pt", kind="largest", anchors=None, image_size=64)
    at = run_app(PREDICTIONS, ckpt=A, ckpt_b="largest.pt", split="val")
    assert any(e.startswith("Compare with: largest.pt is a largest model, not a detector") for e in texts(at.error))
    assert "largest.pt" not in at.selectbox(key="ckpt_b").options and at.selectbox(key="ckpt_b").value == "none"
    assert _metrics(at)["Detections"]  # A, alone

    nan = _save(data_root / "checkpoints" / "nan.pt")
    payload = torch.load(nan, weights_only=True)
    payload["state_dict"] = {k: v.fill_(math.nan) if v.is_floating_point() else v
                             for k, v in payload["state_dict"].items()}  # fmt: skip
    torch.save(payload, nan)
    at = run_app(PREDICTIONS, ckpt=A, ckpt_b="nan.pt", split="val")
    assert any(e.startswith("Compare with: nan.pt") and e.endswith(f"Showing {A} alone.") for e in texts(at.error))
    assert len(_metrics_in_order(at, "Detections")) == 1


# --- the picker, the split, the headline ---------------------------------------------------------


def test_picker_lists_only_detectors_and_prefers_demo_focal(data_root: Path) -> None:
    """Kills: the picker listing the lesson's classifiers; the default not demo_focal.pt (it used
    to be the first file, demo_bce.pt); a link to a classifier not saying what it is."""
    folder = data_root / "checkpoints"
    for name in ("demo_bce.pt", "demo_focal.pt"):
        _save(folder / name)
    _save(folder / "lesson_largest.pt", kind="largest", anchors=None, image_size=64)
    _save(folder / "lesson_multilabel.pt", kind="multilabel", anchors=None, image_size=64)
    (folder / "broken.pt").write_bytes(b"\x00" * 100)  # unreadable: kept, choosing it says why
    at = run_app(PREDICTIONS)
    picker = at.selectbox(key="ckpt")
    assert picker.options == ["broken.pt", "demo_bce.pt", "demo_focal.pt", "upload a checkpoint…"]
    assert picker.value == "demo_focal.pt"
    assert at.selectbox(key="ckpt_b").options == ["none", "broken.pt", "demo_bce.pt", "demo_focal.pt"]
    at = run_app(EVALUATE, ckpt="lesson_multilabel.pt")
    said = " ".join(texts(at.warning))
    assert "lesson_multilabel.pt is a multilabel model, not a detector" in said and "class being in the image" in said
    assert at.selectbox(key="ckpt").value == "demo_focal.pt"


@pytest.mark.parametrize("page", [PREDICTIONS, EVALUATE])
def test_scoring_pages_default_to_val_and_warn_on_train(pair: tuple[Path, Path], page: str) -> None:
    """Kills: the scoring pages opening on train; the training-split warning missing (or shown on
    val); the headline not the one labelled definition."""
    at = run_app(page, ckpt=A)
    assert at.selectbox(key="split").value == "val"
    assert not any(TRAINING_WARNING in w for w in texts(at.warning))
    assert any(label.startswith(HEADLINE) or label.startswith(f"Live {HEADLINE}") for label in _metrics(at))
    at = run_app(page, ckpt=A, split="train")
    assert any(TRAINING_WARNING in w for w in texts(at.warning))


def test_split_follows_the_page_until_the_user_picks_one(pair: tuple[Path, Path]) -> None:
    """Kills: the val default leaking into the pages that do not score; an in-app visit from Browse
    (train) keeping train on a scoring page; a split the user picked not sticking across pages; Browse's
    empty image choice (None) crashing Predictions after an in-app visit."""
    at = run_app("pages/browse.py")
    assert at.selectbox(key="split").value == "train"
    at.switch_page(EVALUATE).run()
    assert at.selectbox(key="split").value == "val" and not any(TRAINING_WARNING in w for w in texts(at.warning))
    at.selectbox(key="split").set_value("train").run()  # the user's choice, kept from now on
    assert any(TRAINING_WARNING in w for w in texts(at.warning))
    at.switch_page("pages/browse.py").run()
    at.switch_page(PREDICTIONS).run()
    assert at.selectbox(key="split").value == "train" and any(TRAINING_WARNING in w for w in texts(at.warning))


def test_scores_training_images() -> None:
    """Kills: the warning keyed only on "train" (a model trained on another split) or on any split."""
    assert scores_training_images("train", {}) and scores_training_images("trainval", {"train_split": "trainval"})
    assert not scores_training_images("val", {"train_split": "train"}) and not scores_training_images("", {})


# --- the library's comparison and its figures ---------------------------------------------------


def _result(ap: list[float], num_gt: list[int], method: str = "all"):
    """A VOCResult-like record with what compare_ap reads."""
    from types import SimpleNamespace

    return SimpleNamespace(ap=torch.tensor(ap, dtype=torch.float64), num_gt=torch.tensor(num_gt), method=method,
                           iou_threshold=0.5, use_difficult=False)  # fmt: skip


def test_compare_ap_hand_case_and_refusals() -> None:
    """Kills: mAP averaging the NaN class; A minus B; comparing results of other ground truth or
    another AP method."""
    a, b = _result([0.5, math.nan, 0.25], [2, 0, 1]), _result([0.75, math.nan, 0.0], [2, 0, 1])
    c = compare_ap(a, b)
    assert c.map_a == pytest.approx(0.375) and c.map_b == pytest.approx(0.375) and c.map_difference == 0
    assert c.difference[0] == pytest.approx(0.25) and c.difference[2] == pytest.approx(-0.25)
    assert math.isnan(c.difference[1])
    chosen = compare_ap(a, b, [2])
    assert chosen.classes.tolist() == [2] and chosen.map_difference == pytest.approx(-0.25)
    assert mean_ap(torch.tensor([math.nan])) != mean_ap(torch.tensor([math.nan]))  # NaN: no class has objects
    with pytest.raises(ValueError, match="different ground truth"):
        compare_ap(a, _result([0.5, 0.5, 0.5], [2, 1, 1]))
    with pytest.raises(ValueError, match="evaluated differently"):
        compare_ap(a, _result([0.5, 0.5, 0.5], [2, 0, 1], "11point"))
    with pytest.raises(ValueError, match="classes must be in"):
        compare_ap(a, b, [3])


def test_compare_errors_and_its_figure() -> None:
    """Kills: counts or gains taken A minus B; the figure's bars not the gain difference."""
    boxes = torch.tensor([[0.1, 0.1, 0.4, 0.4], [0.5, 0.5, 0.9, 0.9]])
    gts = [(boxes, torch.tensor([0, 1]), torch.zeros(2, dtype=torch.bool))]
    good = [(boxes, torch.tensor([0.9, 0.8]), torch.tensor([0, 1]))]
    wrong = [(boxes + 0.02, torch.tensor([0.9, 0.8]), torch.tensor([1, 1]))]  # one class error, one found
    a, b = error_breakdown(good, gts, 2), error_breakdown(wrong, gts, 2)
    d = compare_errors(a, b)
    assert d.names[0] == "classification" and d.count_difference[0] == 1 and d.counts_a.sum() == 0
    assert d.gain_difference[0] == pytest.approx(b.delta_map["classification"] - a.delta_map["classification"])
    assert d.gain_difference[0] > 0
    fig = error_difference_figure(d, ("good", "wrong"))
    np.testing.assert_allclose(fig.data[0].x, d.gain_difference.numpy())
    assert fig.data[0].text[0] == f"{float(d.gain_difference[0]):+.3f}" and tuple(fig.data[0].customdata[0][:2]) == (
        0,
        1,
    )


def test_compare_image_hand_case() -> None:
    """Kills: found objects counted by detection label; difficult (not counted) objects counted;
    "only" not exclusive."""
    gt = torch.tensor([0, 0, 1, 2])
    counted = torch.tensor([True, True, True, False])  # object 3 is difficult
    c = compare_image(gt, counted, torch.tensor([0, 0, 2]), torch.tensor([True, False, False, True]),
                      torch.tensor([1]), torch.tensor([True, False, True, False]), 3)  # fmt: skip
    assert (
        c.objects.tolist() == [2, 1, 0]
        and c.detections_a.tolist() == [2, 0, 1]
        and c.detections_b.tolist() == [0, 1, 0]
    )
    assert c.found_a.tolist() == [1, 0, 0] and c.found_b.tolist() == [1, 1, 0]
    assert c.only_a.tolist() == [False] * 4 and c.only_b.tolist() == [False, False, True, False]
    empty = compare_image(torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.bool),
                          torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.bool),
                          torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.bool), 3)  # fmt: skip
    assert empty.objects.tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="labels_a"):
        compare_image(gt, counted, torch.tensor([5]), counted, torch.tensor([1]), counted, 3)


def test_ap_compare_figure_groups_both_models_and_leaves_out_classes_without_objects() -> None:
    """Kills: one trace only; a class without ground truth drawn; B's values under A's name."""
    c = compare_ap(_result([0.2, math.nan, 0.9], [1, 0, 3]), _result([0.6, math.nan, 0.1], [1, 0, 3]))
    fig = ap_compare_figure(c, ["x", "y", "z"], ("one", "two"))
    assert fig.layout.barmode == "group" and [t.name for t in fig.data] == ["A: one", "B: two"]
    assert list(fig.data[0].x) == ["z", "x"] and list(fig.data[1].y) == pytest.approx([0.1, 0.6])
