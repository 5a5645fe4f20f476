"""Training configuration: one dataclass, one line per field, validated before anything runs."""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import asdict, dataclass
from typing import Any

from detviz.anchors import PRESETS, AnchorConfig, load_anchor_config
from detviz.boxes import CODINGS
from detviz.checks import DEVICES
from detviz.losses import CLASSIFICATIONS, NORMALIZATIONS
from detviz.models import BACKBONES, DETECTOR_KINDS, IMAGE_SIZES, MODEL_KINDS, ModelConfig

CHOICES = {  # the settings that name one of a few things (anchors may also be "", a file or JSON: anchor_config)
    "model": MODEL_KINDS,
    "backbone": BACKBONES,
    "anchors": tuple(PRESETS),
    "coding": CODINGS,
    "loss": CLASSIFICATIONS,
    "normalization": NORMALIZATIONS,
}
AUTO_LR = ("auto", "find", "")  # what a typed learning rate accepts for "run the finder first" (lr 0)


def _opt(default: Any, help: str) -> Any:
    """A field with its --help text (the CLI builds its flags from these)."""
    return dataclasses.field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class TrainConfig:
    data: str = _opt("demo", "dataset spec: demo | demo:<dir> | voc:<dir> | coco:<json>,<image dir>")
    train_split: str = _opt("train", "split to train on (VOC / demo)")
    val_split: str = _opt("val", "split to validate on (VOC / demo); '' for no validation")
    val_data: str = _opt("", "another dataset spec to validate on (e.g. a second COCO json)")
    model: str = _opt("ssd-multiscale", "ssd-multiscale | ssd | largest | multilabel")
    backbone: str = _opt("small", "small (from scratch) | resnet18 | resnet34 | resnet50")
    pretrained: bool = _opt(False, "ImageNet weights for a ResNet backbone (downloads once)")
    init_backbone: str = _opt("", "start the backbone from this detviz checkpoint's (e.g. checkpoints/demo_focal.pt)")
    anchors: str = _opt(
        "",
        "anchors of SSD models: a preset, a .json file holding an AnchorConfig (the Anchors page's download) or "
        "that JSON itself ('': lesson_4x4 for ssd, lesson_multiscale for ssd-multiscale)",
    )
    coding: str = _opt("tanh", "tanh | variance: box coding of SSD models (the lesson's tanh offsets or SSD's)")
    loss: str = _opt("focal", "bce | focal: the SSD classification loss")
    alpha: float = _opt(0.25, "focal loss alpha")
    gamma: float = _opt(2.0, "focal loss gamma")
    normalization: str = _opt("lesson", "lesson | num_positives: how the SSD loss is averaged")
    iou_threshold: float = _opt(0.4, "matching: an anchor is positive above this IoU (the lesson's 0.4)")
    epochs: int = _opt(30, "passes over the training set")
    max_steps: int = _opt(0, "stop after this many steps in all (0: no limit; for quick tests)")
    lr: float = _opt(0.0, "peak learning rate of the one-cycle schedule (0: find it first)")
    lr_divisors: tuple[float, ...] = _opt((), "per layer group (backbone early, late, head): lr / d; () = auto")
    freeze_epochs: int = _opt(0, "epochs with the backbone frozen at the start")
    weight_decay: float = _opt(0.01, "AdamW weight decay")
    warmup: float = _opt(0.25, "share of the steps spent rising to the peak learning rate")
    batch_size: int = _opt(32, "images per step (over all processes)")
    image_size: int = _opt(224, "square model input in pixels")
    augment: bool = _opt(True, "colour jitter, zoom-out, IoU crop and flip on training images")
    dropout: float = _opt(0.1, "dropout in the heads")
    grad_clip: float = _opt(1.0, "clip the gradient norm to this (0: no clipping)")
    device: str = _opt("auto", "auto | cpu | cuda | cuda:N | mps")
    amp: bool = _opt(False, "mixed precision on CUDA (bf16 where supported, else fp16)")
    channels_last: bool = _opt(False, "channels-last memory format (faster convolutions on GPUs)")
    compile: bool = _opt(False, "torch.compile the model")
    workers: int = _opt(-1, "data-loading processes (-1: automatic)")
    seed: int = _opt(0, "random seed: same seed and settings, same run")
    val_score_threshold: float = _opt(0.01, "score threshold for the validation mAP")
    name: str = _opt("", "run folder name (default: date, model and a random suffix)")
    out: str = _opt("runs", "folder that holds the run folders")

    def validate(self) -> None:
        """Raises ValueError naming the first bad field and what is allowed."""
        for name, allowed in CHOICES.items():
            value = getattr(self, name)
            if name == "anchors":
                continue  # anchor_config() says what is wrong with them
            if value not in allowed:
                raise ValueError(f"--{name.replace('_', '-')} must be one of {', '.join(allowed)}, got {value!r}.")
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"--{f.name.replace('_', '-')} must be a finite number, got {value}.")
        if not 0 <= self.alpha <= 1:
            raise ValueError(f"--alpha must be in [0, 1] (the weight of the positive class), got {self.alpha}.")
        if self.gamma < 0:
            raise ValueError(f"--gamma must be 0 or more (0 turns focal loss into weighted BCE), got {self.gamma}.")
        if not (self.device in DEVICES or re.fullmatch(r"cuda:\d+", self.device)):
            raise ValueError(f"--device must be one of {', '.join(DEVICES)} or cuda:N, got {self.device!r}.")
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "image_size": self.image_size}
        for name, value in positive.items():
            if value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {value}.")
        for name in ("lr", "weight_decay", "grad_clip", "max_steps", "freeze_epochs", "val_score_threshold"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name.replace('_', '-')} cannot be negative, got {getattr(self, name)}.")
        if self.workers < -1:
            raise ValueError(f"--workers must be -1 (automatic) or 0 and more, got {self.workers}.")
        if not 0 < self.iou_threshold <= 1:
            raise ValueError(f"--iou-threshold must be in (0, 1], got {self.iou_threshold}.")
        if not 0 <= self.dropout < 1 or not 0 < self.warmup < 1:
            raise ValueError("--dropout must be in [0, 1) and --warmup in (0, 1).")
        if self.lr_divisors and (
            len(self.lr_divisors) != 3 or not all(math.isfinite(d) and d > 0 for d in self.lr_divisors)
        ):
            raise ValueError(f"--lr-divisors takes three positive numbers, got {self.lr_divisors}.")
        if self.pretrained and self.init_backbone:
            raise ValueError("--pretrained and --init-backbone both start the backbone: choose one.")
        if self.pretrained and self.backbone == "small":
            raise ValueError("--pretrained needs a ResNet backbone; the small one trains from scratch.")
        if self.model in DETECTOR_KINDS:
            self._check_anchors()
        if self.freeze_epochs >= self.epochs:
            raise ValueError(f"--freeze-epochs ({self.freeze_epochs}) must be less than --epochs ({self.epochs}).")

    def anchor_config(self) -> AnchorConfig:
        """The anchors an SSD model of this config predicts from: the model's default preset
        ("" ), a preset, JSON text (starting with "{") or a .json file holding an AnchorConfig.

        Raises:
            ValueError: "--anchors ..." naming the file and the field, or the presets.
        """
        value = self.anchors.strip()
        if not value:
            return PRESETS["lesson_4x4" if self.model == "ssd" else "lesson_multiscale"]
        if value in PRESETS:
            return PRESETS[value]
        try:
            if value.startswith("{"):
                return AnchorConfig.from_json(value, "the anchors JSON")
            if value.lower().endswith(".json") or os.path.isfile(value):
                return load_anchor_config(value)
        except ValueError as e:
            raise ValueError(f"--anchors {e}") from None
        raise ValueError(
            f"--anchors must be one of {', '.join(PRESETS)} (or leave it out for the model's default), got "
            f"{value!r:.80}; or give a .json file holding an AnchorConfig (the Anchors page downloads one)."
        )

    def _check_anchors(self) -> None:
        """The anchors resolve, and the model can predict on them (the model's own checks: an
        `ssd` model has one grid, every grid needs a feature map at least as fine)."""
        anchors = self.anchor_config()
        label = anchors_label(self.anchors) if self.anchors else f"(the {self.model} default)"
        if self.model == "ssd" and len(anchors.grids) != 1:
            raise ValueError(f"--model ssd predicts on one grid; --anchors {label} has several (use ssd-multiscale).")
        if not IMAGE_SIZES[0] <= self.image_size <= IMAGE_SIZES[1]:
            return  # the model refuses the size itself (prepare)
        try:
            ModelConfig(self.model, class_names=("object",), image_size=self.image_size, anchors=anchors.to_dict())
        except ValueError as e:
            raise ValueError(f"--anchors {label}: {str(e).removeprefix('anchors: ')}") from None

    def with_inline_anchors(self) -> TrainConfig:
        """The same config with anchors from a file replaced by their JSON text: what a run folder
        stores, so that a resumed run trains on the anchors it started with, whatever becomes of
        the file."""
        value = self.anchors.strip()
        if not value or value in PRESETS or value.startswith("{") or self.model not in DETECTOR_KINDS:
            return self
        return dataclasses.replace(self, anchors=self.anchor_config().to_json(indent=None))

    def divisors(self) -> tuple[float, float, float]:
        """Learning-rate divisors per layer group: given, or the lesson's (100, 10, 1) for a
        pretrained backbone and (1, 1, 1) from scratch."""
        if self.lr_divisors:
            return tuple(self.lr_divisors)  # type: ignore[return-value]
        return (100.0, 10.0, 1.0) if self.pretrained else (1.0, 1.0, 1.0)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["lr_divisors"] = list(self.lr_divisors)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """The config a to_dict() (a config.json) holds. Settings it lacks take their defaults.

        Raises:
            ValueError: an unknown setting, or a value of the wrong type (naming the setting).
        """
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(data) - set(fields)
        if unknown:
            raise ValueError(f"unknown training settings {sorted(unknown)}.")
        return cls(**{name: _typed(name, str(fields[name].type), value) for name, value in data.items()})


_TYPE_NAMES = {"bool": "true or false", "int": "a whole number", "float": "a number", "str": "a text"}


def _typed(name: str, kind: str, value: Any) -> Any:
    """`value` as the field's type (an int is a fine float, a list a fine tuple); ValueError
    naming the setting otherwise. bool is not a number here (json's true is no epoch count)."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if kind.startswith("tuple"):
        if isinstance(value, list | tuple) and all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in value
        ):
            return tuple(float(v) for v in value)
        raise ValueError(f"setting {name!r} must be a list of numbers, got {value!r}.")
    ok = {
        "bool": isinstance(value, bool),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": number,
        "str": isinstance(value, str),
    }[kind]
    if not ok:
        raise ValueError(f"setting {name!r} must be {_TYPE_NAMES[kind]}, got {value!r}.")
    return float(value) if kind == "float" else value


def anchors_label(value: str) -> str:
    """A short name for TrainConfig.anchors in tables: "default", the preset, the file's name,
    or "custom JSON (N anchors)"."""
    value = value.strip()
    if not value:
        return "default"
    if value.startswith("{"):
        try:
            return f"custom JSON ({AnchorConfig.from_json(value).num_anchors:,} anchors)"
        except ValueError:
            return "custom JSON (not valid)"
    return value if value in PRESETS else os.path.basename(value)


def parse_numbers(text: str) -> tuple[float, ...]:
    """Numbers typed with commas between them ("100, 10, 1"; "" is none): --lr-divisors.

    Raises:
        ValueError: a part that is not a number.
    """
    parts = [p.strip() for p in text.split(",") if p.strip()]
    try:
        return tuple(float(p) for p in parts)
    except ValueError:
        raise ValueError(f"expected numbers separated by commas, got {text!r}") from None


def cli_command(config: TrainConfig, gpus: int = 1) -> list[str]:
    """The command line that starts this run by hand, as a list of arguments (shlex.join it to
    show it): `python -m detviz.train` with every setting that differs from its default, and for
    `gpus` > 1 `torchrun --standalone --nproc_per_node=<gpus> -m detviz.train ...` (one process
    per GPU). Flags are the field names with "-" for "_"; booleans are --x / --no-x; lr 0 is
    `--lr auto`. Parsing the arguments after the module name with the CLI's parser gives back
    `config`."""
    args = []
    for f in dataclasses.fields(TrainConfig):
        value = getattr(config, f.name)
        if value == f.default:
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            args.append(flag if value else "--no-" + f.name.replace("_", "-"))
        elif f.name == "lr":
            args += [flag, learning_rate_text(value)]
        elif f.name == "lr_divisors":
            args += [flag, ",".join(_number(v) for v in value)]
        else:
            args += [flag, _number(value) if isinstance(value, float) else str(value)]
    if gpus > 1:
        return ["torchrun", "--standalone", f"--nproc_per_node={gpus}", "-m", "detviz.train", *args]
    return ["python", "-m", "detviz.train", *args]


def parse_learning_rate(text: str) -> float:
    """A typed learning rate (the CLI's --lr, the Train page's field): 0.0 for auto (any of
    AUTO_LR, in any case: the finder runs first), else a positive finite number.

    Raises:
        ValueError: anything else, in one sentence with the fix.
    """
    text = text.strip().lower()
    if text in AUTO_LR:
        return 0.0
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"Learning rate {text!r}: type a number such as 0.003, or 'auto'.") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"Learning rate {text}: it must be a positive number (or 'auto').")
    return value


def learning_rate_text(lr: float) -> str:
    """A learning rate as it is typed back: "auto" for 0 (find it first), else the number."""
    return _number(lr) if lr else AUTO_LR[0]


def _number(value: float) -> str:
    """The shortest text that reads back as exactly `value`: 0.001, 3e-05, 0.123456789."""
    short = f"{value:g}"
    return short if float(short) == value else repr(value)
