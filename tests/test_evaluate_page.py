"""AppTest of the Evaluate page against the library (issue 12): every number a tab shows equals an
independent computation on the same detections (the shipped checkpoint run here, post-processed
with `postprocess`, scored with `voc_map` / `error_breakdown`), and its worst-image links keep the
view's checkpoint and thresholds when followed."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path
from urllib.parse import parse_qsl

import numpy as np
import pytest
import torch
from conftest import run_app

from detviz.data import load_image, read_voc
from detviz.evaluate import MISS, error_breakdown, image_error_counts, voc_map, worst_images
from detviz.inference import Detector
from detviz.postprocess import postprocess

EVALUATE, PREDICTIONS = "pages/evaluate.py", "pages/predictions.py"
ROOT = Path(__file__).resolve().parents[1]
# OTHER is the checkpoint picker's default (pages/ui/models.py); the link asks for SHIPPED, the same
# shipped model under another name, so a link that lost its ?ckpt= would show
OTHER, SHIPPED = "demo_focal.pt", "focal-copy.pt"
# the view a shared link asks for: none but split (val, the scoring pages' default) is a default of the page
LINK = {"split": "val", "ckpt": SHIPPED, "score": "0.05", "nms": "0.6", "maxdet": "50", "eval_iou": "0.55"}
# pages/evaluate.py: the surface's grid and the score above which the thumbnails draw false positives
SURFACE_SCORES = (0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7)
SURFACE_NMS = (0.3, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
SHOWN_SCORE = 0.25


@pytest.fixture
def checkpoints(data_root: Path) -> Path:
    """The shipped focal model twice, so the link's one is not the picker's default."""
    folder = data_root / "checkpoints"
    folder.mkdir()
    for name in (OTHER, SHIPPED):
        shutil.copy(ROOT / "checkpoints" / "demo_focal.pt", folder / name)
    return folder / SHIPPED


def _reference(checkpoint: Path, demo_root: Path):
    """The validation images' raw outputs, the detector and the normalized ground truth."""
    detector = Detector.from_checkpoint(checkpoint)
    index = read_voc(demo_root, "val")
    images = [load_image(r.image_path, (r.width, r.height)) for r in index]
    logits, activations = detector.raw_outputs(images)
    gts = [(r.boxes / torch.tensor([r.width, r.height] * 2), r.labels, r.difficult) for r in index]
    return detector, index, logits, activations, gts


def _detections(detector, logits, activations, score: float, nms: float, max_dets: int):
    return postprocess(logits, activations, detector.anchors, score, nms, max_dets, coding=detector.coding)


def _figure(at, name: str) -> dict:
    """The spec of the figure `ui.show_figure` drew under this name."""
    (chart,) = [c for c in at.get("plotly_chart") if c.proto.id.endswith(name)]
    return json.loads(chart.proto.spec)


def _array(v) -> np.ndarray:
    """A plotly array: a list, or a typed array {"dtype", "bdata", "shape"}."""
    if isinstance(v, dict):
        flat = np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"])
        return flat.reshape([int(n) for n in str(v.get("shape", flat.size)).split(",")])
    return np.asarray(v, dtype=np.float64)


def test_every_tab_shows_the_numbers_of_the_library(checkpoints: Path, demo_root: Path) -> None:
    at = run_app(EVALUATE, **LINK)
    assert not at.error and not at.warning
    score, nms, max_dets, eval_iou = 0.05, 0.6, 50, 0.55
    detector, index, logits, activations, gts = _reference(checkpoints, demo_root)
    dets = _detections(detector, logits, activations, score, nms, max_dets)
    classes = list(detector.classes)

    # the headline mAP: all-point VOC AP at the link's thresholds
    expected = voc_map(dets, gts, len(classes), eval_iou, "all")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics[f"mAP@{eval_iou:g} (VOC, all-point)"] == f"{expected.map:.3f}"
    assert metrics["Detections"] == f"{sum(len(d.scores) for d in dets):,}"
    assert metrics["Objects"] == f"{int(expected.num_gt.sum()):,}"

    # Errors: the counts table and the dAP bars
    breakdown = error_breakdown(dets, gts, len(classes), eval_iou, "all")
    table = at.dataframe[1].value
    assert list(table["class"]) == classes
    np.testing.assert_array_equal(table.drop(columns="class").to_numpy(), breakdown.counts.numpy())
    assert int(breakdown.counts.sum()) > 0
    (bars,) = _figure(at, "error-breakdown")["data"]
    assert bars["y"] == list(breakdown.delta_map)
    np.testing.assert_allclose(_array(bars["x"]), [max(0.0, v) for v in breakdown.delta_map.values()], atol=1e-12)
    np.testing.assert_array_equal(_array(bars["customdata"]), breakdown.counts.sum(0).numpy())

    # Worst images: which images, in which order, and the mistakes each label counts
    worst = worst_images(breakdown, [d.scores.double() for d in dets], 12)
    counts = image_error_counts(breakdown)
    labels = [b.proto.label for b in at.get("link_button")]
    in_columns = [worst[n] for column in range(4) for n in range(column, len(worst), 4)]  # 4 columns, row-major
    assert len(worst) > 4 and len(labels) == len(worst)
    for label, i in zip(labels, in_columns, strict=True):
        shown = int(((breakdown.error[i] >= 0) & (dets[i].scores > SHOWN_SCORE)).sum())
        assert label == f"{index[i].image_id}: {shown} false above {SHOWN_SCORE:g}, {int(counts[i, MISS])} missed"

    # Threshold surface: the headline's all-point mAP at every pair, the other settings from the link
    z = np.array([
        [voc_map(_detections(detector, logits, activations, s, n, max_dets), gts, len(classes), eval_iou, "all").map
         for n in SURFACE_NMS]
        for s in SURFACE_SCORES
    ])  # fmt: skip
    surface = _figure(at, "threshold-surface")["data"][0]
    np.testing.assert_allclose(_array(surface["z"]), z, atol=1e-12)
    assert len(np.unique(z.round(6))) > 5  # the thresholds matter on this model


def _follow(at, link):
    """The Predictions page a click on the link opens, as the browser opens it: an in-app
    st.page_link switches page inside the same session; a link button opens its address in a
    new tab, a new session."""
    if link.type == "page_link":
        at.query_params.clear()
        at.query_params.update(dict(parse_qsl(link.proto.query_string)))
        at.switch_page(PREDICTIONS)
        return at.run()
    path, _, query = link.proto.url.partition("?")
    assert path == "predictions"  # relative: the same host and base path as this page
    return run_app(PREDICTIONS, **dict(parse_qsl(query)))


def test_a_worst_image_link_keeps_the_checkpoint_and_thresholds(checkpoints: Path) -> None:
    """Issue 12: Evaluate opened from a link; a worst image opens in Predictions with that
    view's checkpoint and thresholds. The in-app st.page_link it was lost them when followed: on
    a page switch inside one session Streamlit drops the query parameters bound to widgets of
    the page being left, and Evaluate binds the same keys as Predictions."""
    at = run_app(EVALUATE, **LINK)
    links = [*at.get("page_link"), *at.get("link_button")]
    assert links
    for link in links:
        query = link.proto.query_string if link.type == "page_link" else link.proto.url.partition("?")[2]
        params = dict(parse_qsl(query))
        assert {k: params[k] for k in LINK} == LINK and params["data"] == "demo"
        assert params["image"] == link.proto.label.split(":")[0]
    predictions = _follow(at, links[-1])
    assert not predictions.exception and not predictions.warning, [w.value for w in predictions.warning]
    assert predictions.selectbox(key="ckpt").value == SHIPPED
    assert predictions.selectbox(key="image").value == params["image"]
    sliders = {k: predictions.slider(key=k).value for k in ("score", "nms", "maxdet", "eval_iou")}
    assert sliders == {"score": 0.05, "nms": 0.6, "maxdet": 50, "eval_iou": 0.55}
