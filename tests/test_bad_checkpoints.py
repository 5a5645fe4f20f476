"""Hostile and broken checkpoints (issue 12): every malformed file is one CheckpointError naming
the file and the field; NaN weights load, but their outputs are refused with NonFiniteOutputs,
which the Predictions and Evaluate pages show as an error; non-finite numbers in a link are
reported like any other bad value."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import run_app, texts
from PIL import Image

from detviz.anchors import PRESETS
from detviz.data import DEMO_CLASS_NAMES
from detviz.inference import Detector, NonFiniteOutputs
from detviz.models import CheckpointError, ModelConfig, build_model, checkpoint_payload, load_checkpoint

PREDICTIONS, EVALUATE, ANCHORS, MATCHING = (f"pages/{p}.py" for p in ("predictions", "evaluate", "anchors", "matching"))
NOT_FINITE = "the model's outputs are not finite"


def _config() -> ModelConfig:
    return ModelConfig(class_names=DEMO_CLASS_NAMES, image_size=96, anchors=PRESETS["lesson_multiscale"].to_dict(),
                       head_channels=32)  # fmt: skip


@pytest.fixture(scope="module")
def payload() -> dict[str, Any]:
    """A valid checkpoint's contents, as the real saver writes them."""
    torch.manual_seed(0)
    config = _config()
    return checkpoint_payload(build_model(config), config, {"epochs": 1}, {"val_map": 0.1})


def _first_weight(p: dict) -> str:
    return next(iter(p["state_dict"]))


def _set(*keys: str, value: Any) -> Callable[[dict], None]:
    """Sets p[keys[0]][keys[1]]... to value."""

    def corrupt(p: dict) -> None:
        target = p
        for k in keys[:-1]:
            target = target[k]
        target[keys[-1]] = value

    return corrupt


def _anchors(**fields: Any) -> Callable[[dict], None]:
    return _set("model", "anchors", value=PRESETS["lesson_multiscale"].to_dict() | fields)


# (name, how the saved dict is corrupted, the field the message must name)
MALFORMED = [
    ("no-model-entry", lambda p: p.pop("model"), "'model' entry"),
    ("model-not-a-dict", _set("model", value=["ssd"]), "model description must be a dict"),
    ("unknown-field", _set("model", "colour", value="red"), "unknown field(s) colour"),
    ("image-size-text", _set("model", "image_size", value="96"), "image_size must be a whole number"),
    ("class-names-text", _set("model", "class_names", value="disc"), "class_names must be a list"),
    ("class-names-twice", _set("model", "class_names", value=["disc", "disc"]), "class_names has disc more than once"),
    ("kind-a-list", _set("model", "kind", value=["ssd"]), "model kind must be one of"),
    ("dropout-text", _set("model", "dropout", value="0.1"), "dropout must be a finite number"),
    ("class-bias-nan", _set("model", "class_bias", value=math.nan), "class_bias must be a finite number"),
    ("mean-two-values", _set("model", "mean", value=[0.5, 0.5]), "mean must be three numbers"),
    ("std-zero", _set("model", "std", value=[0.0, 0.0, 0.0]), "std must be positive"),
    ("head-channels-0", _set("model", "head_channels", value=0), "head_channels must be from 4 to 4096"),
    ("head-channels-negative", _set("model", "head_channels", value=-32), "head_channels must be from 4 to 4096"),
    ("head-channels-odd", _set("model", "head_channels", value=9), "head_channels must be from 4 to 4096"),
    ("anchors-text", _set("model", "anchors", value="lesson_multiscale"), "anchors must be an AnchorConfig"),
    ("anchors-unknown-field", _anchors(ratios=[1]), "AnchorConfig has no field(s) ['ratios']"),
    ("anchors-empty", _anchors(grids=[]), "AnchorConfig.grids is empty"),
    ("anchors-zoom-none", _anchors(zooms=[None]), "AnchorConfig.zooms must hold numbers"),
    ("anchors-zoom-nan", _anchors(zooms=[math.nan]), "AnchorConfig.zooms must be positive"),
    ("anchors-zoom-absurd", _anchors(zooms=[1e30]), "AnchorConfig.zooms and shapes"),
    ("anchors-shape-not-a-pair", _anchors(shapes=[[1.0]]), "AnchorConfig.shapes must hold (width, height) pairs"),
    ("anchors-grid-too-fine", _anchors(grids=[64]), "an anchor grid of 64x64 needs a larger image"),
    ("state-dict-a-list", _set("state_dict", value=[1, 2]), "'state_dict' entry (the weights) is a list"),
    ("state-dict-holds-text", lambda p: p["state_dict"].__setitem__(_first_weight(p), "w"), "is a str, not a tensor"),
    ("weights-wrong-shape", lambda p: p["state_dict"].__setitem__(_first_weight(p), torch.zeros(2)), "do not fit"),
    ("version-text", _set("version", value="1"), "version is '1', not a whole number"),
    ("training-a-list", _set("training", value=[1]), "'training' entry is a list"),
]


def _write(tmp_path: Path, payload: dict, corrupt: Callable[[dict], None], name: str = "bad.pt") -> Path:
    broken = copy.deepcopy(payload)
    corrupt(broken)
    path = tmp_path / name
    torch.save(broken, path)
    return path


@pytest.mark.parametrize("load", [load_checkpoint, Detector.from_checkpoint], ids=["load_checkpoint", "Detector"])
@pytest.mark.parametrize(("corrupt", "field"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_each_malformed_checkpoint_is_one_checkpoint_error(
    tmp_path: Path, payload: dict, corrupt: Callable, field: str, load: Callable
) -> None:
    path = _write(tmp_path, payload, corrupt)
    with pytest.raises(CheckpointError) as caught:
        load(path)
    message = str(caught.value)
    assert type(caught.value) is CheckpointError
    assert message.startswith(f"{path}: ") and field in message, message
    assert "\n" not in message


def test_the_untouched_payload_loads(tmp_path: Path, payload: dict) -> None:
    """The cases above fail for the field they corrupt, not for the base they start from."""
    _, info = load_checkpoint(_write(tmp_path, payload, lambda p: None))
    assert info.model == _config() and info.training == {"epochs": 1} and info.metrics == {"val_map": 0.1}


def _nan_checkpoint(path: Path, where: str = "all") -> Path:
    """A demo-class SSD whose weights are all NaN, or only the box head's bias ("boxes")."""
    config = _config()
    torch.manual_seed(0)
    model = build_model(config)
    with torch.no_grad():
        params = model.box_out.parameters() if where == "boxes" else model.parameters()
        for p in params:
            p.fill_(math.nan)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint_payload(model, config), path)
    return path


def test_nan_weights_load_but_their_outputs_are_refused(tmp_path: Path) -> None:
    path = _nan_checkpoint(tmp_path / "nan.pt")
    detector = Detector.from_checkpoint(path)  # the file itself is well formed
    image = Image.new("RGB", (64, 48), (90, 120, 150))
    with pytest.raises(NonFiniteOutputs) as caught:
        detector.raw_outputs([image])
    assert str(caught.value).startswith(f"{path}: {NOT_FINITE} (100% of its class logits are NaN or inf)")
    with pytest.raises(NonFiniteOutputs):
        detector.detect([image])
    assert detector.raw_outputs([])[0].shape == (0, 189, len(DEMO_CLASS_NAMES) + 1)  # no image, nothing to check


def test_nan_box_activations_alone_are_refused(tmp_path: Path) -> None:
    path = _nan_checkpoint(tmp_path / "boxes.pt", where="boxes")
    detector = Detector.from_checkpoint(path)
    with pytest.raises(NonFiniteOutputs, match=r"\(100% of its box activations are NaN or inf\)"):
        detector.raw_outputs([Image.new("RGB", (64, 48))])


# --- pages -------------------------------------------------------------------------------------


def test_nan_checkpoint_is_an_error_on_predictions_and_evaluate(data_root: Path) -> None:
    path = _nan_checkpoint(data_root / "checkpoints" / "nan.pt")
    at = run_app(PREDICTIONS, split="val")
    assert [e for e in texts(at.error) if e.startswith(f"nan.pt: {NOT_FINITE}")], texts(at.error)
    assert at.selectbox(key="ckpt").value == "nan.pt" and at.sidebar.radio  # the page and sidebar are there

    at.selectbox(key="ckpt").set_value("upload a checkpoint…").run()
    at.file_uploader[0].set_value(("mine.pt", path.read_bytes(), "application/octet-stream")).run()
    assert not at.exception
    assert [e for e in texts(at.error) if e.startswith(f"mine.pt: {NOT_FINITE}")], texts(at.error)  # not a temp path

    at = run_app(EVALUATE, split="val")
    assert [e for e in texts(at.error) if e.startswith(f"nan.pt: {NOT_FINITE}")], texts(at.error)
    assert not at.tabs


def test_non_finite_numbers_in_a_link_are_reported(data_root: Path) -> None:
    config = _config()
    (data_root / "checkpoints").mkdir()
    torch.save(checkpoint_payload(build_model(config), config), data_root / "checkpoints" / "fine.pt")
    at = run_app(PREDICTIONS, score="nan", nms="inf", eval_iou="-inf")
    warning = " ".join(texts(at.warning))
    assert all(p in warning for p in ("score=nan", "nms=inf", "eval_iou=-inf")), warning
    assert (at.slider(key="score").value, at.slider(key="nms").value, at.slider(key="eval_iou").value) == (
        0.25,
        0.45,
        0.5,
    )

    at = run_app(MATCHING, iou="nan")
    assert "iou=nan" in " ".join(texts(at.warning)) and at.slider(key="iou").value == 0.5


@pytest.mark.parametrize(
    ("page", "params", "message"),
    [
        (ANCHORS, {"zooms": "1e30"}, "AnchorConfig.zooms and shapes: anchor shape 0 of level 0 (4x4) is 2.5e+29 x"),
        (ANCHORS, {"shapes": "1e-30x1"}, "is 1.88e-31 x 0.188 image sides"),  # zoom 0.75 on the 4x4 grid
        (MATCHING, {"zooms": "1e40"}, "use smaller zooms and shapes"),
        (MATCHING, {"grids": "4", "shapes": "1x1e-30"}, "use larger zooms and shapes"),
    ],
)
def test_absurd_custom_anchors_in_a_link_are_refused(data_root: Path, page: str, params: dict, message: str) -> None:
    at = run_app(page, preset="custom", **params)
    assert [e for e in texts(at.error) if message in e and "Showing lesson_multiscale instead" in e], texts(at.error)
    if page == ANCHORS:  # the fallback, lesson_multiscale, is what the page shows
        assert {m.label: m.value for m in at.metric}["Anchors"] == "189"
    else:
        assert at.number_input(key="anchor").max == 188
