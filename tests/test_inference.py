"""load_predictor: the right predictor for every checkpoint kind, and what each predicts,
checked against the model's own outputs computed here."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from detviz.anchors import PRESETS
from detviz.data import DEMO_CLASS_NAMES
from detviz.inference import (
    Detector,
    LargestObjectPredictor,
    MultiLabelPredictor,
    NonFiniteOutputs,
    load_predictor,
    to_model_input,
)
from detviz.models import CheckpointError, ModelConfig, build_model, checkpoint_payload

SIZE = 64


def save(tmp_path: Path, kind: str, nan: bool = False) -> tuple[Path, torch.nn.Module]:
    anchors = PRESETS["lesson_4x4"].to_dict() if kind == "ssd" else None
    config = ModelConfig(kind=kind, class_names=DEMO_CLASS_NAMES, image_size=SIZE, anchors=anchors)
    torch.manual_seed(0)
    model = build_model(config).eval()
    if nan:
        with torch.no_grad():
            next(p for p in model.parameters() if p.dim() > 1).fill_(float("nan"))
    path = tmp_path / f"{kind}.pt"
    torch.save(checkpoint_payload(model, config), path)
    return path, model


def images() -> list[Image.Image]:
    # non-square, and different sizes: a width/height swap or one image's size for another fails
    wide = Image.new("RGB", (200, 100), (200, 30, 30))
    tall = Image.effect_noise((90, 150), 60).convert("RGB")
    return [wide, tall]


def test_each_kind_gets_its_predictor(tmp_path: Path) -> None:
    assert isinstance(load_predictor(save(tmp_path, "ssd")[0]), Detector)
    assert isinstance(load_predictor(save(tmp_path, "largest")[0]), LargestObjectPredictor)
    assert isinstance(load_predictor(save(tmp_path, "multilabel")[0]), MultiLabelPredictor)
    predictor = load_predictor(save(tmp_path, "largest")[0])
    assert predictor.classes == list(DEMO_CLASS_NAMES) and predictor.predict([]) == []


def test_largest_object_is_the_models_class_and_box_in_each_images_pixels(tmp_path: Path) -> None:
    path, model = save(tmp_path, "largest")
    shown = images()
    found = load_predictor(path).predict(shown)
    with torch.no_grad():
        class_logits, box_activations = model(to_model_input(shown, SIZE))
    probabilities = torch.softmax(class_logits, -1)
    for i, (image, result) in enumerate(zip(shown, found, strict=True)):
        assert result.label == int(probabilities[i].argmax())
        assert result.score == pytest.approx(float(probabilities[i].max()), abs=1e-6)
        x1, y1, x2, y2 = torch.sigmoid(box_activations[i]).tolist()
        expected = torch.tensor([x1 * image.width, y1 * image.height, x2 * image.width, y2 * image.height])
        torch.testing.assert_close(result.box, expected)


def test_multilabel_gives_one_probability_per_class(tmp_path: Path) -> None:
    path, model = save(tmp_path, "multilabel")
    shown = images()
    found = load_predictor(path).predict(shown)
    with torch.no_grad():
        expected = torch.sigmoid(model(to_model_input(shown, SIZE)))
    assert [p.shape for p in found] == [(len(DEMO_CLASS_NAMES),)] * 2
    torch.testing.assert_close(torch.stack(found), expected)


def test_bad_checkpoints_and_broken_weights(tmp_path: Path) -> None:
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"broken\.pt: not a PyTorch checkpoint"):
        load_predictor(broken)
    for kind in ("largest", "multilabel"):
        predictor = load_predictor(save(tmp_path, kind, nan=True)[0])
        with pytest.raises(NonFiniteOutputs, match=f"{kind}.pt: the model's outputs are not finite"):
            predictor.predict(images())
    ssd = load_predictor(save(tmp_path, "ssd")[0])
    with pytest.raises(CheckpointError, match="a ssd model, not a largest one"):
        LargestObjectPredictor(ssd.model, ssd.info)
