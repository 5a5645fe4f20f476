"""AppTest of the tuning pages (Predictions & NMS, Evaluate): every widget path and each bad
input of issue 8 (the Train page has its own file)."""

from __future__ import annotations

import contextlib
import io
import json
import pickle
import shutil
from pathlib import Path
from urllib.parse import parse_qs, parse_qsl

import pytest
import torch
from conftest import run_app, texts, wait_for

from detviz.anchors import PRESETS
from detviz.data import DEMO_CLASS_NAMES, VOC_CLASSES
from detviz.models import ModelConfig, build_model, checkpoint_payload
from detviz.train import RunFolder, TrainConfig

PREDICTIONS, EVALUATE = "pages/predictions.py", "pages/evaluate.py"
ROOT = Path(__file__).resolve().parents[1]
SHIPPED = "demo_focal.pt"
LIVE = "Live mAP@"


def _metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def _live(at) -> tuple[str, str]:
    (label,) = [m.label for m in at.metric if m.label.startswith(LIVE)]
    return label, _metrics(at)[label]


def _checkpoint(path: Path, classes=DEMO_CLASS_NAMES, class_bias: float = 2.0) -> Path:
    """An untrained SSD whose class bias makes every anchor a confident candidate (scores ~0.88):
    plenty of boxes for NMS to work on, some of them on objects."""
    config = ModelConfig(class_names=tuple(classes), image_size=96, anchors=PRESETS["lesson_multiscale"].to_dict(),
                         head_channels=32, class_bias=class_bias)  # fmt: skip
    torch.manual_seed(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint_payload(build_model(config), config), path)
    return path


@pytest.fixture
def shipped(data_root: Path) -> Path:
    """The real shipped checkpoint (trained on the demo set, so it finds the demo objects)."""
    target = data_root / "checkpoints" / SHIPPED
    target.parent.mkdir(exist_ok=True)
    shutil.copy(ROOT / "checkpoints" / SHIPPED, target)
    return target


def test_predictions_without_any_checkpoint_says_how_to_get_one(data_root: Path) -> None:
    at = run_app(PREDICTIONS)
    assert any("No checkpoint yet" in t for t in texts(at.info))
    assert at.selectbox(key="ckpt").options == ["upload a checkpoint…"]


def test_predictions_sliders_move_detections_and_the_live_map(shipped: Path) -> None:
    at = run_app(PREDICTIONS, split="val")
    assert not at.error
    before = _metrics(at)
    label, value = _live(at)
    assert label == "Live mAP@0.5 (VOC, all-point) on 8 images" and float(value) >= 0  # the headline's definition
    assert int(before["Detections"]) > 0 and "True positives" in before and "Missed objects" in before
    assert any(t.startswith("**candidate") for t in texts(at.markdown))  # the NMS step sentence

    at.slider(key="nms").set_value(1.0).run()  # no suppression at all
    assert int(_metrics(at)["Detections"]) > int(before["Detections"])
    assert _live(at)[1] != value  # the dataset's mAP followed the slider
    at.slider(key="maxdet").set_value(3).run()
    assert int(_metrics(at)["Detections"]) == 3
    at.slider(key="eval_iou").set_value(0.9).run()
    assert _live(at)[0] == "Live mAP@0.9 (VOC, all-point) on 8 images"
    at.slider(key="score").set_value(0.99).run()  # above every score: nothing left, nothing breaks
    assert _metrics(at)["Detections"] == "0" and any("No candidate" in t for t in texts(at.info))


def test_predictions_class_filter_and_nms_steps(shipped: Path) -> None:
    best = run_app(PREDICTIONS, split="val", nms="0.3").dataframe[0].value["class"].iloc[0]
    at = run_app(PREDICTIONS, split="val", only=best, nms="0.3")
    table = at.dataframe[0].value
    assert set(table["class"]) == {best}
    assert {"kept", "suppressed"} <= set(table["decision"])
    suppressed = table[table["decision"] == "suppressed"].iloc[0]
    assert table.loc[int(suppressed["by"]), "decision"] == "kept" and suppressed["IoU"] > 0.3

    at.slider(key="nmsstep").set_value(1).run()
    assert len(at.dataframe[0].value) == 1
    assert any(t.startswith(f"**candidate 0** ({best}") and t.endswith("**kept**.") for t in texts(at.markdown))
    step = int(suppressed.name) + 1
    at.slider(key="nmsstep").set_value(step).run()
    assert any(f"**candidate {step - 1}**" in t and "**suppressed**" in t for t in texts(at.markdown))


def test_predictions_candidate_details(shipped: Path) -> None:
    at = run_app(PREDICTIONS, split="val")
    at.session_state["_prediction_candidate"] = 0
    at.run()
    heading = [t for t in texts(at.markdown) if t.startswith("#### Candidate 0:")]
    assert heading and "from anchor" in heading[0]
    details = "\n".join(texts(at.markdown))
    assert "raw box activations (x, y, w, h)" in details and "decoded box (tanh coding)" in details
    assert "anchor box" in details and "NMS: kept" in details


def test_predictions_checkpoint_of_a_training_run(data_root: Path) -> None:
    run = RunFolder.create(data_root / "runs", TrainConfig(), "my-run")
    _checkpoint(run.checkpoint("best"))
    at = run_app(PREDICTIONS, ckpt="run:my-run", split="val")
    assert at.selectbox(key="ckpt").value == "run:my-run" and not at.error
    assert _live(at)[0].startswith(LIVE)


def test_predictions_checkpoint_with_other_classes(data_root: Path) -> None:
    _checkpoint(data_root / "checkpoints" / "voc.pt", VOC_CLASSES)
    at = run_app(PREDICTIONS)
    assert any("voc.pt was trained on other classes" in e for e in texts(at.error))
    assert any("No live mAP" in t for t in texts(at.info))
    assert "True positives" not in _metrics(at) and int(_metrics(at)["Detections"]) > 0  # still drawn


def test_predictions_broken_and_uploaded_checkpoints(data_root: Path, tmp_path: Path) -> None:
    (data_root / "checkpoints").mkdir()
    (data_root / "checkpoints" / "broken.pt").write_bytes(b"\x00" * 100)
    at = run_app(PREDICTIONS)
    assert any("broken.pt: not a PyTorch checkpoint" in e for e in texts(at.error))

    at.selectbox(key="ckpt").set_value("upload a checkpoint…").run()
    assert any("Choose a .pt file" in t for t in texts(at.info))
    at.file_uploader[0].set_value(("notes.pt", b"hello", "application/octet-stream")).run()
    assert any(e.startswith("notes.pt: not a PyTorch checkpoint") for e in texts(at.error))

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    evil = tmp_path / "evil.pt"
    torch.save({"format": "detviz-checkpoint", "payload": Evil()}, evil, pickle_module=pickle)
    at.file_uploader[0].set_value(("evil.pt", evil.read_bytes(), "application/octet-stream")).run()
    assert any(e.startswith("evil.pt: refused to load") for e in texts(at.error))
    assert not marker.exists()  # nothing ran

    good = _checkpoint(tmp_path / "mine.pt")
    at.file_uploader[0].set_value(("mine.pt", good.read_bytes(), "application/octet-stream")).run()
    assert not at.error and int(_metrics(at)["Detections"]) > 0


def test_predictions_bad_link_falls_back_with_a_notice(shipped: Path) -> None:
    at = run_app(PREDICTIONS, score="5", ckpt="gone.pt")
    warning = " ".join(texts(at.warning))
    assert "score=5" in warning and "ckpt=gone.pt" in warning
    assert at.slider(key="score").value == 0.25 and at.selectbox(key="ckpt").value == SHIPPED


def test_predictions_unreadable_image_counts_as_no_detections(shipped: Path, demo_root: Path, tmp_path: Path) -> None:
    copy = tmp_path / "demo-copy"
    shutil.copytree(demo_root, copy)
    first_val = (copy / "ImageSets" / "Main" / "val.txt").read_text().split()[1]
    (copy / "JPEGImages" / f"{first_val}.jpg").write_bytes(b"not a jpeg")
    at = run_app(PREDICTIONS, data="voc", voc=str(copy), split="val")
    assert not at.exception
    assert any("could not be read" in w and first_val in w for w in texts(at.warning))
    assert _live(at)[0] == "Live mAP@0.5 (VOC, all-point) on 8 images"


def test_evaluate_every_tab(shipped: Path) -> None:
    at = run_app(EVALUATE, split="val")
    assert not at.error
    m = _metrics(at)
    assert m["Images"] == "8" and float(m["mAP@0.5 (VOC, all-point)"]) >= 0
    assert [t.label for t in at.tabs] == ["Per class", "Errors", "Worst images", "Metric audit", "Threshold surface"]
    per_class = at.dataframe[0].value
    assert list(per_class["class"]) == list(DEMO_CLASS_NAMES)
    audit = at.table[0].value
    assert len(audit) == 8 and audit["protocol"].iloc[0] == "VOC07 11-point"
    assert float(audit["mAP"].iloc[6]) <= float(audit["mAP"].iloc[5])  # COCO's strict IoUs never raise AP
    links = [e for e in at.get("link_button")]
    assert links, "the worst images open in Predictions"
    at.multiselect(key="only").set_value(["disc", "ring"]).run()
    assert list(at.dataframe[0].value["class"]) == ["disc", "ring"]
    at.slider(key="nms").set_value(0.8).run()
    assert not at.exception


def test_evaluate_needs_a_fitting_checkpoint(data_root: Path) -> None:
    _checkpoint(data_root / "checkpoints" / "voc.pt", VOC_CLASSES)
    at = run_app(EVALUATE)
    assert any("voc.pt was trained on other classes" in e for e in texts(at.error))
    assert not at.tabs


def test_worst_image_link_opens_it_in_predictions(shipped: Path) -> None:
    at = run_app(EVALUATE, split="val")
    link = at.get("link_button")[0]  # a new tab: tests/test_evaluate_page.py says why
    params = dict(parse_qsl(link.proto.url.partition("?")[2]))
    assert params["ckpt"] == SHIPPED and params["split"] == "val" and "image" in params
    image = params["image"]
    at = run_app(PREDICTIONS, **params)
    assert at.selectbox(key="image").value == image and not at.warning


def test_images_in_a_link_are_checked_against_the_dataset(shipped: Path) -> None:
    at = run_app(PREDICTIONS, image="no-such-image")
    assert any("image=no-such-image" in w for w in texts(at.warning))


def test_figures_offer_html_export(shipped: Path) -> None:
    at = run_app(PREDICTIONS, split="val")
    buttons = [b for b in at.get("download_button")]
    assert len(buttons) >= 3  # detections, PR curve, COCO results


def test_a_missing_image_file_is_an_error_not_a_crash(shipped: Path, demo_root: Path, tmp_path: Path) -> None:
    copy = tmp_path / "demo-gone"
    shutil.copytree(demo_root, copy)
    image_id = (copy / "ImageSets" / "Main" / "train.txt").read_text().split()[0]
    (copy / "JPEGImages" / f"{image_id}.jpg").unlink()
    at = run_app(PREDICTIONS, data="voc", voc=str(copy), image=image_id, split="train")
    assert any(image_id in e for e in texts(at.error)) or any(image_id in w for w in texts(at.warning))


# --- issue 12: what the pages show matches what the library computes ---------------------------


@pytest.fixture
def media_files(monkeypatch: pytest.MonkeyPatch) -> list:
    """The media-file managers of the AppTest runs after this point (AppTest makes one per run and
    drops it after), so a test can run a deferred download's callable as a click would."""
    import streamlit.testing.v1.app_test as app_test
    from streamlit.runtime.media_file_manager import MediaFileManager

    made = []

    class Recording(MediaFileManager):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(app_test, "MediaFileManager", Recording)
    return made


def _download(media_files: list, button) -> bytes:
    """The bytes a click on the (deferred) download button gets."""
    from streamlit.runtime.media_file_storage import MediaFileStorageError

    file_id = button.proto.deferred_file_id
    assert file_id, "a download generated on click"
    manager = media_files[-1]  # the last run's, which drew the button
    try:
        url = manager.execute_deferred(file_id)
    except MediaFileStorageError as e:
        pytest.fail(f"the download failed: {e}")
    return manager.read_file(Path(url).stem).content


def test_coco_results_download_holds_the_detections_in_pixel_xywh(shipped: Path, demo_root: Path, media_files) -> None:
    from pycocotools.coco import COCO

    from detviz.data import load_image, read_voc
    from detviz.inference import Detector

    at = run_app(PREDICTIONS, split="val", score="0.3", nms="0.5", maxdet="20")
    (button,) = [b for b in at.get("download_button") if b.proto.label == "Detections (COCO results json)"]
    results = json.loads(_download(media_files, button))

    index = read_voc(demo_root, split="val")
    annotations = []
    for r in index:
        for (x1, y1, x2, y2), label in zip(r.boxes.tolist(), r.labels.tolist(), strict=True):
            annotations.append({"id": len(annotations) + 1, "image_id": int(r.image_id), "iscrowd": 0,
                                "category_id": label + 1, "bbox": [x1, y1, x2 - x1, y2 - y1],
                                "area": (x2 - x1) * (y2 - y1)})  # fmt: skip
    gt = COCO()
    gt.dataset = {
        "images": [{"id": int(r.image_id), "width": r.width, "height": r.height} for r in index],
        "annotations": annotations,
        "categories": [{"id": c + 1, "name": n} for c, n in enumerate(index.classes)],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        dt = gt.loadRes(results)  # refuses image ids the ground truth does not have
    detector = Detector.from_checkpoint(shipped)
    found = 0
    for record in index:
        (det,) = detector.detect([load_image(record.image_path)], score_threshold=0.3, nms_iou=0.5, max_detections=20)
        anns = sorted(dt.loadAnns(dt.getAnnIds(imgIds=[int(record.image_id)])), key=lambda a: -a["score"])
        assert len(anns) == len(det.boxes)
        x1, y1, x2, y2 = det.boxes.double().unbind(1)
        expected = torch.stack([x1, y1, x2 - x1, y2 - y1], 1)
        assert torch.tensor([a["bbox"] for a in anns], dtype=torch.float64).reshape(-1, 4) == pytest.approx(
            expected, abs=0.01
        )
        assert [a["category_id"] for a in anns] == (det.labels + 1).tolist()
        assert [a["score"] for a in anns] == pytest.approx(det.scores.tolist(), abs=1e-4)
        assert [a["area"] for a in anns] == pytest.approx((expected[:, 2] * expected[:, 3]).tolist(), rel=1e-3)
        found += len(anns)
    assert found > 0


def _largest_run(runs: Path, name: str) -> Path:
    """A run folder whose best checkpoint is the lesson's largest-object classifier."""
    config = ModelConfig(kind="largest", class_names=tuple(DEMO_CLASS_NAMES), image_size=64, anchors=None)
    run = RunFolder.create(runs, TrainConfig(model="largest"), name)
    torch.save(checkpoint_payload(build_model(config), config), run.checkpoint("best"))
    run.write_status(state="finished")
    return run.path


def test_only_detectors_are_offered_and_a_link_to_another_kind_says_why(data_root: Path) -> None:
    _largest_run(data_root / "runs", "biggest")
    ssd = RunFolder.create(data_root / "runs", TrainConfig(), "boxes")
    _checkpoint(ssd.checkpoint("best"))
    at = run_app(PREDICTIONS, split="val")
    assert at.selectbox(key="ckpt").options == ["run:boxes", "upload a checkpoint…"]
    assert not at.error

    at = run_app(PREDICTIONS, ckpt="run:biggest", split="val")
    assert any("run:biggest is a largest model, not a detector" in w for w in texts(at.warning)), texts(at.warning)
    assert at.selectbox(key="ckpt").value == "run:boxes" and not at.error

    train = run_app("pages/train.py", train_view="Watch", run="biggest")
    assert not [link for link in train.get("page_link") if "in Predictions" in link.proto.label]
    train = run_app("pages/train.py", train_view="Watch", run="boxes")
    assert [link for link in train.get("page_link") if "in Predictions" in link.proto.label]


def test_copy_link_follows_a_slider_in_the_same_run(shipped: Path) -> None:
    at = run_app(PREDICTIONS, split="val")
    at.slider(key="score").set_value(0.5).run()
    (link,) = [c.value for c in at.code if "?" in c.value]
    params = dict(parse_qsl(link.split("?", 1)[1]))
    assert params["score"] == "0.5" and params["split"] == "val"
    at.slider(key="nms").set_value(0.7).run()
    (link,) = [c.value for c in at.code if "?" in c.value]
    params = dict(parse_qsl(link.split("?", 1)[1]))
    assert params["nms"] == "0.7" and params["score"] == "0.5"
    at.multiselect(key="only").set_value(["disc", "ring"]).run()
    (link,) = [c.value for c in at.code if "?" in c.value]
    assert parse_qsl(link.split("?", 1)[1]).count(("only", "ring")) == 1 and "only=disc" in link
    reopened = run_app(PREDICTIONS, **parse_qs(link.split("?", 1)[1]))
    assert reopened.slider(key="nms").value == 0.7 and reopened.multiselect(key="only").value == ["disc", "ring"]
    assert not reopened.warning


def test_raw_outputs_are_cached_per_checkpoint_file_and_image(tmp_path: Path) -> None:
    """Not per loaded model object: once the model cache drops one, its id() can come back for
    another checkpoint, and an id-keyed cache would serve the first model's outputs."""
    import os

    from PIL import Image

    from detviz.inference import Detector
    from pages import ui

    image = Image.new("RGB", (120, 90), (90, 140, 60))
    first, second = _checkpoint(tmp_path / "a.pt", class_bias=2.0), _checkpoint(tmp_path / "b.pt", class_bias=-3.0)
    for path in (first, second, first):
        logits, boxes = ui.raw_outputs(path, image)
        expected_logits, expected_boxes = Detector.from_checkpoint(path).raw_outputs([image])
        assert torch.equal(logits, expected_logits) and torch.equal(boxes, expected_boxes)
    assert not torch.equal(ui.raw_outputs(first, image)[0], ui.raw_outputs(second, image)[0])

    _checkpoint(first, class_bias=-1.0)  # the same file trained further: a new modification time
    stamp = os.stat(first).st_mtime_ns + 10**9
    os.utime(first, ns=(stamp, stamp))
    assert torch.equal(ui.raw_outputs(first, image)[0], Detector.from_checkpoint(first).raw_outputs([image])[0])
    other = Image.new("RGB", (120, 90), (10, 10, 200))  # another image: its own outputs
    assert torch.equal(ui.raw_outputs(first, other)[0], Detector.from_checkpoint(first).raw_outputs([other])[0])


def test_warm_up_threads_stop_when_asked(shipped: Path) -> None:
    """Mutation killed: stop_warming not joining the build's thread, which goes on warming the
    other NMS values after the page got its set (it would outlive the test)."""
    import threading

    from pages.ui import live

    run_app(PREDICTIONS, split="val")
    assert live.stop_warming() == 1
    assert not [t for t in threading.enumerate() if t.name.startswith("live set")]
    assert live.stop_warming() == 0


def test_link_params_spell_widget_values_as_the_address_does() -> None:
    from pages.ui import link_params, url_values

    assert url_values(True) == ["true"] and url_values(5.0) == ["5"] and url_values(0.45) == ["0.45"]
    assert url_values(None) == [] and url_values("") == [] and url_values(["a", "b"]) == ["a", "b"]
    query = {"split": ["val"], "score": ["0.25"], "zoom": ["2"]}  # the address, one move behind
    widgets = {"score": 0.5, "only": ["disc", "ring"], "anchor": None, "split": "val"}
    assert link_params(query, widgets) == [
        ("split", "val"), ("score", "0.5"), ("zoom", "2"), ("only", "disc"), ("only", "ring"),
    ]  # fmt: skip


# --- issue 15: the live set builds in the background; the pages show at once and fill in ---------


@pytest.fixture
def held_builds(data_root: Path, monkeypatch: pytest.MonkeyPatch):
    """Pages wait for no live set (DETVIZ_LIVE_WAIT=0) and every build waits for the returned
    event before it starts, so a test sees the page while the set is still being built."""
    import threading

    from pages.ui import live

    release, real = threading.Event(), live.sweep_live

    def held(*args, **kwargs):
        release.wait(60)
        return real(*args, **kwargs)

    monkeypatch.setenv("DETVIZ_LIVE_WAIT", "0")
    monkeypatch.setattr(live, "sweep_live", held)
    return release


def _built() -> None:
    """Waits until every live-set build has finished."""
    from pages.ui.live_builds import BUILDS

    wait_for(lambda: all(BUILDS.peek(key).finished for key in BUILDS.held_keys()), 60)


def _expected_map(path: Path, demo_root: Path, score: float) -> str:
    """The page's headline mAP, computed here (the checkpoint swept over the demo val split, NMS
    0.45, 100 detections, IoU 0.5) and written as the page writes it."""
    from detviz.data import read_voc
    from detviz.evaluate import sweep_dataset
    from detviz.inference import Detector
    from pages.ui.scoring import map_text

    swept = sweep_dataset(Detector.from_checkpoint(path), read_voc(demo_root, split="val"), floor=0.01)
    return map_text(swept.sweep.evaluate(score, 0.45, 100, 0.5, "all").map)


def test_predictions_shows_the_image_at_once_and_the_live_map_when_built(
    shipped: Path, demo_root: Path, held_builds
) -> None:
    """Mutations killed: the page waiting for the live set (no image until it is built), no
    progress shown, the numbers not coming after the build, numbers other than the library's."""
    at = run_app(PREDICTIONS, split="val")
    assert [p.text for p in at.progress] == ["Scoring 8 images of val… 0/8"]
    assert at.slider(key="score").value == 0.25 and at.slider(key="nms").value == 0.45 and at.slider(key="nmsstep")
    assert int(_metrics(at)["Detections"]) > 0 and not [m for m in at.metric if m.label.startswith(LIVE)]
    at.slider(key="score").set_value(0.3).run()  # a move while it builds: the image follows, no wait
    assert [p.text for p in at.progress] == ["Scoring 8 images of val… 0/8"] and not at.exception

    held_builds.set()
    _built()
    at.run()
    label, value = _live(at)
    assert label == "Live mAP@0.5 (VOC, all-point) on 8 images" and not at.progress and not at.error
    assert value == _expected_map(shipped, demo_root, 0.3) and float(value) > 0.1


def test_predictions_a_and_b_each_show_their_progress_then_their_map(
    shipped: Path, demo_root: Path, held_builds
) -> None:
    """Mutation killed: the A/B view waiting for its two sets, or showing one model's mAP for both."""
    b = _checkpoint(shipped.parent / "b.pt")  # untrained: a much lower mAP than A's
    at = run_app(PREDICTIONS, split="val", ckpt=SHIPPED, ckpt_b="b.pt")
    assert [p.text for p in at.progress] == [f"Scoring 8 images of val with {SHIPPED}… 0/8",
                                             "Scoring 8 images of val with b.pt… 0/8"]  # fmt: skip
    assert [m.label for m in at.metric].count("Detections") == 2

    held_builds.set()
    _built()
    at.run()
    shown = {m.label[-1]: m.value for m in at.metric if m.label.startswith(LIVE)}
    assert shown == {"A": _expected_map(shipped, demo_root, 0.25), "B": _expected_map(b, demo_root, 0.25)}
    assert shown["A"] != shown["B"] and not at.progress


def test_evaluate_shows_its_pickers_and_progress_then_the_page(shipped: Path, demo_root: Path, held_builds) -> None:
    """Mutations killed: Evaluate blank (or waiting) while the set builds, or not filling in after."""
    at = run_app(EVALUATE, split="val")
    assert at.title[0].value == "Evaluate" and at.selectbox(key="ckpt").value == SHIPPED
    assert at.slider(key="score").value == 0.01 and not at.tabs and not at.metric
    assert [p.text for p in at.progress] == [f"Scoring 8 images of val with {SHIPPED}… 0/8"]

    held_builds.set()
    _built()
    at.run()
    m = _metrics(at)
    assert m["Images"] == "8" and len(at.tabs) == 5 and not at.progress and not at.error
    assert m["mAP@0.5 (VOC, all-point)"] == _expected_map(shipped, demo_root, 0.01)


def test_the_default_live_set_starts_with_the_server_and_the_first_visit_shares_it(
    shipped: Path, demo_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mutations killed: no build at server start, a default key the first Predictions visit does
    not ask for (other split, subset or checkpoint: two builds), a second default build per process."""
    from detviz.data.spec import DatasetSpec, dataset_fingerprint
    from detviz.data.voc import file_stamp
    from pages.ui.live_builds import BUILDS, BuildKey

    monkeypatch.setenv("DETVIZ_PREWARM", "1")
    run_app()  # the overview: any first run of app.py
    spec = DatasetSpec("demo", str(demo_root))
    expected = BuildKey(str(shipped), file_stamp(shipped), str(spec), "val", dataset_fingerprint(spec, "val"), 100)
    wait_for(lambda: BUILDS.held_keys() == [expected], 60)
    build = BUILDS.peek(expected)
    assert not BUILDS.start_default()  # once per process

    at = run_app(PREDICTIONS)  # the defaults: val split, first 100 images, the default checkpoint
    assert BUILDS.held_keys() == [expected] and BUILDS.peek(expected) is build
    assert _live(at)[0] == "Live mAP@0.5 (VOC, all-point) on 8 images"


def test_predictions_on_uploaded_images_without_ground_truth(shipped: Path, demo_root: Path) -> None:
    """An image of the user's own: the detections the Detector finds on it, no ground truth, no
    outcome counts; a CMYK JPEG is converted; a broken file is named and the dataset's image stays.
    Mutations killed: the upload scored against the dataset image's ground truth (True positives
    shown, missed objects drawn), the upload ignored (the dataset image's detections), CMYK bytes
    fed to the model unconverted, a broken upload crashing the page."""
    from PIL import Image

    from detviz.data import image_from_bytes, read_voc
    from detviz.inference import Detector

    index = read_voc(demo_root, split="val")
    record = index[5]
    photo = Image.open(record.image_path).convert("RGB")
    cmyk = io.BytesIO()
    photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT).convert("CMYK").save(cmyk, format="JPEG", quality=95)
    jpeg = record.image_path.read_bytes()
    at = run_app(PREDICTIONS, split="val", image=index.image_ids[0])
    dataset_count = int(_metrics(at)["Detections"])
    at.file_uploader(key="image_upload").set_value([
        ("mine.jpg", jpeg, "image/jpeg"), ("cmyk.jpg", cmyk.getvalue(), "image/jpeg"), ("bad.png", b"\x89PNG no", "image/png"),
    ]).run()  # fmt: skip
    detector = Detector.from_checkpoint(shipped)

    def expected(data: bytes, name: str) -> int:
        (det,) = detector.detect([image_from_bytes(data, name)], score_threshold=0.25, nms_iou=0.45, max_detections=100)
        return len(det.boxes)

    assert not at.error and at.selectbox(key="own_image").value == "mine.jpg"
    assert any(c.startswith(f"Showing mine.jpg ({photo.width} x {photo.height} px)") for c in texts(at.caption))
    shown = _metrics(at)
    assert int(shown["Detections"]) == expected(jpeg, "mine.jpg") and "True positives" not in shown
    assert not [t for t in at.get("plotly_chart") if "ground truth" in t.proto.spec or "missed object" in t.proto.spec]

    at.selectbox(key="own_image").set_value("cmyk.jpg").run()
    assert not at.error and int(_metrics(at)["Detections"]) == expected(cmyk.getvalue(), "cmyk.jpg")

    at.selectbox(key="own_image").set_value("bad.png").run()
    assert any(e.startswith("bad.png: cannot read the image") for e in texts(at.error))
    assert "True positives" in _metrics(at) and int(_metrics(at)["Detections"]) == dataset_count  # the dataset's image
