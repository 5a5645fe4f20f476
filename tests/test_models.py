"""Models and checkpoints: output shapes per preset, anchor order, safe loading, inference."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest
import torch
from PIL import Image

from detviz.anchors import PRESETS, make_anchors
from detviz.inference import Detector, to_model_input
from detviz.models import (
    CLASS_BIAS,
    CheckpointError,
    ModelConfig,
    build_model,
    checkpoint_payload,
    compatibility_problems,
    flatten_level,
    load_checkpoint,
)

CLASSES = ("disc", "block", "star")


def config(**kwargs) -> ModelConfig:
    return ModelConfig(**({"class_names": CLASSES, "image_size": 128} | kwargs))


@pytest.mark.parametrize(
    ("kind", "preset", "size"),
    [
        ("ssd", "lesson_4x4", 224),
        ("ssd-multiscale", "lesson_multiscale", 224),
        ("ssd-multiscale", "ssd300", 300),
        ("ssd-multiscale", "lesson_multiscale", 128),
    ],
)
@pytest.mark.parametrize("backbone", ["small", "resnet18"])
def test_ssd_output_shapes_for_each_preset(kind: str, preset: str, size: int, backbone: str) -> None:
    cfg = config(kind=kind, backbone=backbone, image_size=size, anchors=PRESETS[preset].to_dict())
    model = build_model(cfg).eval()
    with torch.no_grad():
        class_logits, box_activations = model(torch.rand(2, 3, size, size))
    a = PRESETS[preset].num_anchors
    assert class_logits.shape == (2, a, len(CLASSES) + 1) and box_activations.shape == (2, a, 4)


def test_first_stage_models() -> None:
    largest = build_model(config(kind="largest")).eval()
    class_logits, box_activations = largest(torch.rand(3, 3, 128, 128))
    assert class_logits.shape == (3, 3) and box_activations.shape == (3, 4)
    multilabel = build_model(config(kind="multilabel")).eval()
    assert multilabel(torch.rand(3, 3, 128, 128)).shape == (3, 3)


def test_outputs_are_flattened_in_anchor_order() -> None:
    """Channel k * D + d of cell (row r, column c) lands on anchor (r * g + c) * K + k."""
    g, k, depth = 3, 2, 5
    x = torch.arange(1 * k * depth * g * g, dtype=torch.float32).reshape(1, k * depth, g, g)
    flat = flatten_level(x, depth)
    for r in range(g):
        for c in range(g):
            for s in range(k):
                for d in range(depth):
                    assert flat[0, (r * g + c) * k + s, d] == x[0, s * depth + d, r, c]
    anchors = make_anchors(PRESETS["lesson_multiscale"])
    assert anchors.row[(1 * 4 + 2) * 9 + 4] == 1 and anchors.col[(1 * 4 + 2) * 9 + 4] == 2  # same order


def test_class_bias_starts_every_anchor_near_background() -> None:
    model = build_model(config(kind="ssd-multiscale")).eval()
    for conv in model.class_out:
        assert bool((conv.bias == CLASS_BIAS).all())
    with torch.no_grad():
        class_logits, _ = model(torch.rand(1, 3, 128, 128))
    assert float(torch.sigmoid(class_logits).mean()) < 0.1
    plain = build_model(config(kind="ssd-multiscale", class_bias=None))
    assert not bool((plain.class_out[0].bias == CLASS_BIAS).all())


def test_an_image_size_the_anchors_cannot_use() -> None:
    with pytest.raises(
        ValueError,
        match=r"image size 224 gives feature maps of 28, 14, 7, 4, 2, 1 cells; an anchor grid of 38x38 needs a larger image",
    ):
        build_model(config(image_size=224, anchors=PRESETS["ssd300"].to_dict()))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "yolo"}, r"model kind must be one of ssd-multiscale, ssd, largest, multilabel, got 'yolo'"),
        ({"backbone": "vgg16"}, r"backbone must be one of small, resnet18, resnet34, resnet50, got 'vgg16'"),
        ({"class_names": ()}, r"class_names is empty"),
        ({"image_size": 8}, r"image_size must be between 32 and 2048"),
    ],
)
def test_bad_model_configs(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        config(**kwargs)


def test_pretrained_weights_offline_fail_with_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.models._api as api

    def offline(self, *args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(api.WeightsEnum, "get_state_dict", offline)
    with pytest.raises(
        RuntimeError, match=r"could not get the ImageNet weights of resnet18 \(no network\); they need the internet"
    ):
        build_model(config(backbone="resnet18"), pretrained=True)
    with pytest.raises(ValueError, match=r"small backbone has no pretrained weights"):
        build_model(config(backbone="small"), pretrained=True)


# --- checkpoints ---------------------------------------------------------------------------


def _save(tmp_path: Path, cfg: ModelConfig | None = None) -> tuple[Path, torch.nn.Module]:
    cfg = cfg or config()
    model = build_model(cfg).eval()
    path = tmp_path / "model.pt"
    torch.save(checkpoint_payload(model, cfg, {"epochs": 3}, {"val_map": 0.5}), path)
    return path, model


def test_checkpoint_rebuilds_the_model_from_the_file_alone(tmp_path: Path) -> None:
    path, model = _save(tmp_path, config(anchors=PRESETS["lesson_multiscale"].to_dict()))
    loaded, info = load_checkpoint(path)
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        for a, b in zip(model(x), loaded(x), strict=True):
            torch.testing.assert_close(a, b)
    assert info.classes == list(CLASSES) and info.training == {"epochs": 3} and info.metrics == {"val_map": 0.5}
    assert info.model.anchor_config() == PRESETS["lesson_multiscale"]
    assert not loaded.training  # eval mode


def test_malicious_checkpoint_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    witness = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (witness,))

    path = tmp_path / "evil.pt"
    torch.save({"format": "detviz-checkpoint", "version": 1, "model": Evil(), "state_dict": {}}, path)
    with pytest.raises(CheckpointError, match=r"evil.pt: refused to load: the file carries Python objects"):
        load_checkpoint(path)
    assert not witness.exists()


def test_truncated_and_foreign_files_are_refused(tmp_path: Path) -> None:
    path, _ = _save(tmp_path)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"cut.pt: (not a PyTorch checkpoint|cannot read the checkpoint)"):
        load_checkpoint(cut)
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match=r"notes.pt: not a PyTorch checkpoint"):
        load_checkpoint(text)
    foreign = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(CheckpointError, match=r"other.pt: a PyTorch file, but not a detviz checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(CheckpointError, match=r"missing.pt: checkpoint file not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_weights_that_do_not_fit_and_other_models(tmp_path: Path) -> None:
    path, _ = _save(tmp_path)
    payload = torch.load(path, weights_only=True)
    payload["model"]["class_names"] = ["one", "two"]
    torch.save(payload, tmp_path / "mismatch.pt")
    with pytest.raises(CheckpointError, match=r"the weights do not fit a ssd-multiscale / small model"):
        load_checkpoint(tmp_path / "mismatch.pt")
    _, info = load_checkpoint(path)
    problems = compatibility_problems(info, kind="largest", class_names=("disc", "block", "ring", "star"))
    assert problems[0] == "kind: the checkpoint has 'ssd-multiscale', expected 'largest'"
    assert problems[1].startswith("classes: the checkpoint has 3 (disc, block, star), the data has 4")
    assert compatibility_problems(info, class_names=list(CLASSES)) == []


# --- inference -----------------------------------------------------------------------------


def test_detector_gives_pixel_boxes_and_matches_the_training_transform(tmp_path: Path, demo_root: Path) -> None:
    from detviz.data import read_voc
    from detviz.data.dataset import DetectionDataset

    path, _ = _save(tmp_path, config(anchors=PRESETS["lesson_multiscale"].to_dict()))
    detector = Detector.from_checkpoint(path)
    index = read_voc(demo_root, "val")
    record = index[0]
    image = Image.open(record.image_path).convert("RGB")
    torch.testing.assert_close(to_model_input([image], 128)[0], DetectionDataset(index, 128)[0].image)
    dets = detector.detect([image], score_threshold=0.0, max_detections=50)
    assert len(dets) == 1 and len(dets[0]) == 50
    assert float(dets[0].boxes[:, 2].max()) > 1.5  # pixels, not [0, 1]
    logits, acts = detector.raw_outputs([image, image])
    assert logits.shape == (2, 189, 4) and acts.shape == (2, 189, 4)
    assert detector.raw_outputs([])[0].shape == (0, 189, 4)


def test_detector_refuses_a_classifier(tmp_path: Path) -> None:
    path, _ = _save(tmp_path, config(kind="multilabel"))
    with pytest.raises(CheckpointError, match=r"a multilabel model; detection needs an ssd or ssd-multiscale one"):
        Detector.from_checkpoint(path)
