"""Models of the lesson: backbones and the four heads (checkpoints: detviz.checkpoints, re-exported here).

Backbones return feature maps at strides 8, 16 and 32: torchvision's ResNet 18/34/50 (ImageNet
weights on request) or `small`, a from-scratch CNN fast enough to train on a laptop CPU.

Heads:
1. `largest`: the class and box of the largest object (the lesson's first model).
2. `multilabel`: which classes are present.
3. `ssd`: an SSD head on one grid (the lesson's 4x4, k shapes per cell).
4. `ssd-multiscale`: one output per anchor of any AnchorConfig. Its levels come from the
   backbone's maps and from stride-2 convolutions stacked on its last map (the lesson's 4x4,
   2x2, 1x1 at 224 px); a level whose grid no map has exactly takes the next larger map,
   average-pooled to the grid. Outputs: class logits (B, A, C + 1) and box activations
   (B, A, 4), flattened in DESIGN's anchor order.

Images enter in [0, 1]; the model normalizes them (ImageNet statistics) itself, so a checkpoint
is all a user needs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from numbers import Integral, Real
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detviz.anchors import PRESETS, AnchorConfig, make_anchors
from detviz.boxes import CODINGS
from detviz.checkpoints import (  # noqa: F401  re-exported: DESIGN's `from detviz.models import load_checkpoint`
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    CheckpointError,
    CheckpointInfo,
    checkpoint_payload,
    compatibility_problems,
    load_checkpoint,
    read_checkpoint,
)
from detviz.checks import check_choice
from detviz.data.images import IMAGENET_MEAN, IMAGENET_STD

MODEL_KINDS = ("ssd-multiscale", "ssd", "largest", "multilabel")
DETECTOR_KINDS = ("ssd-multiscale", "ssd")  # the kinds with anchors: SSD heads, run by inference.Detector
BACKBONES = ("small", "resnet18", "resnet34", "resnet50")
CLASS_BIAS = -4.0  # the lesson's SSD_MultiHead(k, -4.): every anchor starts near "nothing here"
IMAGE_SIZES = (32, 2048)  # smallest and largest input side a model accepts, in pixels
MAX_HEAD_CHANNELS = 4096  # 16x the default: more is a typo that would exhaust memory


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model (stored in checkpoints as plain data).

    Attributes:
        kind: one of MODEL_KINDS.
        backbone: one of BACKBONES.
        class_names: the C classes, in label order.
        image_size: side of the square input in pixels.
        anchors: the AnchorConfig as plain data (SSD kinds; `ssd` defaults to lesson_4x4).
        head_channels: channels of the SSD head's convolutions.
        dropout: dropout probability in the heads.
        class_bias: initial bias of the SSD class logits (None: PyTorch's default).
        coding: the box coding the SSD head is trained with ("tanh" or "variance").
        mean, std: input normalization.
    """

    kind: str = "ssd-multiscale"
    backbone: str = "small"
    class_names: tuple[str, ...] = ()
    image_size: int = 224
    anchors: dict[str, Any] | None = None
    head_channels: int = 256
    dropout: float = 0.1
    class_bias: float | None = CLASS_BIAS
    coding: str = "tanh"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        """Checks every field (type and value) once, here, so that a config that exists builds a
        model: a ValueError naming the field otherwise, never a TypeError from deep inside torch."""
        check_choice("model kind", self.kind, MODEL_KINDS)
        check_choice("backbone", self.backbone, BACKBONES)
        object.__setattr__(self, "class_names", _class_names(self.class_names))
        image_size = _whole("image_size", self.image_size)
        if not IMAGE_SIZES[0] <= image_size <= IMAGE_SIZES[1]:
            raise ValueError(
                f"image_size must be between {IMAGE_SIZES[0]} and {IMAGE_SIZES[1]} pixels, got {image_size}."
            )
        object.__setattr__(self, "image_size", image_size)
        object.__setattr__(self, "head_channels", _head_channels(self.head_channels))
        dropout = _real("dropout", self.dropout)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}.")
        object.__setattr__(self, "dropout", dropout)
        if self.class_bias is not None:
            object.__setattr__(self, "class_bias", _real("class_bias", self.class_bias))
        check_choice("coding", self.coding, CODINGS)
        object.__setattr__(self, "mean", _triple("mean", self.mean))
        std = _triple("std", self.std)
        if min(std) <= 0:
            raise ValueError(f"std must be positive (it divides the image), got {list(std)}.")
        object.__setattr__(self, "std", std)
        if self.kind == "ssd" and self.anchors is None:
            object.__setattr__(self, "anchors", PRESETS["lesson_4x4"].to_dict())
        if self.kind == "ssd-multiscale" and self.anchors is None:
            object.__setattr__(self, "anchors", PRESETS["lesson_multiscale"].to_dict())
        if self.anchors is not None:
            self._check_anchors()

    def _check_anchors(self) -> None:
        """The anchors parse, their boxes are sane (`make_anchors` checks them) and, for an SSD,
        every grid has a feature map to read."""
        if not isinstance(self.anchors, Mapping):
            raise ValueError(
                f"anchors must be an AnchorConfig as plain data (AnchorConfig.to_dict()), got {type(self.anchors).__name__}."
            )
        try:
            anchor_config = AnchorConfig.from_dict(self.anchors)
            make_anchors(anchor_config)
        except ValueError as e:
            raise ValueError(f"anchors: {e}") from None
        if self.kind in DETECTOR_KINDS:
            sizes = _feature_sizes(self.image_size)
            for g in anchor_config.grids:
                _source_for_grid(g, sizes, self.image_size)

    @classmethod
    def from_dict(cls, data: Any) -> ModelConfig:
        """The inverse of `dataclasses.asdict` (what a checkpoint stores): a ValueError naming the
        field for an unknown field or a wrong type or value, never a TypeError."""
        if not isinstance(data, Mapping):
            raise ValueError(f"the model description must be a dict of its fields, got {type(data).__name__}.")
        known = [f.name for f in fields(cls)]
        unknown = sorted(str(k) for k in data if k not in known)
        if unknown:
            raise ValueError(f"unknown field(s) {', '.join(unknown)}; the fields are {', '.join(known)}.")
        return cls(**data)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def anchor_config(self) -> AnchorConfig:
        if self.anchors is None:
            raise ValueError(f"a {self.kind!r} model has no anchors.")
        return AnchorConfig.from_dict(self.anchors)


def _whole(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ValueError(f"{name} must be a whole number, got {type(value).__name__} {value!r:.40}.")
    return int(value)


def _real(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {type(value).__name__} {value!r:.40}.")
    return float(value)


def _triple(name: str, values: Any) -> tuple[float, float, float]:
    """Three finite numbers, one per RGB channel (mean, std)."""
    if not isinstance(values, (list, tuple)) or len(values) != 3:
        raise ValueError(f"{name} must be three numbers (red, green, blue), got {values!r:.60}.")
    r, g, b = (_real(name, v) for v in values)
    return r, g, b


def _class_names(names: Any) -> tuple[str, ...]:
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"class_names must be a list of non-empty strings, got {names!r:.60}.")
    if not names:
        raise ValueError("class_names is empty; a model needs at least one class.")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"class_names has {', '.join(twice)} more than once; each class needs its own name.")
    return tuple(names)


def _head_channels(value: Any) -> int:
    """Channels the head's GroupNorm can split into min(32, channels // 4) equal groups (see `_conv`)."""
    channels = _whole("head_channels", value)
    if not 4 <= channels <= MAX_HEAD_CHANNELS or channels % min(32, channels // 4):
        raise ValueError(
            f"head_channels must be from 4 to {MAX_HEAD_CHANNELS} and split into min(32, head_channels // 4) "
            f"equal groups (e.g. 32, 64, 128, 256), got {value}."
        )
    return channels


# --- backbones ---------------------------------------------------------------------------


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    """3x3 convolution, GroupNorm, ReLU. GroupNorm, not BatchNorm: the same for any batch size,
    so training on one process or eight gives the same model."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.GroupNorm(min(32, cout // 4), cout),
        nn.ReLU(inplace=True),
    )


class _Backbone(nn.Module):
    """A stem to stride 4, then stages to strides 8, 16 and 32 (`stages()` names them), whose
    maps at strides 8, 16 and 32 are the output; `channels` are theirs."""

    channels: tuple[int, int, int]

    def stages(self) -> tuple[nn.Module, nn.Module, nn.Module, nn.Module]:
        raise NotImplementedError

    def forward(self, x: Tensor) -> list[Tensor]:
        stem, to8, to16, to32 = self.stages()
        c8 = to8(stem(x))
        c16 = to16(c8)
        return [c8, c16, to32(c16)]

    def groups(self) -> list[list[nn.Module]]:
        """Layer groups for discriminative learning rates: early, late."""
        stem, to8, to16, to32 = self.stages()
        return [[stem, to8], [to16, to32]]


class SmallBackbone(_Backbone):
    """A from-scratch CNN: five stride-2 stages (32 .. 256 channels), about 0.5 GFLOPs at 224 px."""

    channels = (128, 192, 256)  # at strides 8, 16, 32

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(_conv(3, 32, 2), _conv(32, 64, 2), _conv(64, 64))  # stride 4
        self.stage8 = nn.Sequential(_conv(64, 128, 2), _conv(128, 128))
        self.stage16 = nn.Sequential(_conv(128, 192, 2), _conv(192, 192))
        self.stage32 = nn.Sequential(_conv(192, 256, 2), _conv(256, 256))

    def stages(self) -> tuple[nn.Module, nn.Module, nn.Module, nn.Module]:
        return self.stem, self.stage8, self.stage16, self.stage32


class ResNetBackbone(_Backbone):
    """torchvision ResNet without its pooling and classifier: maps at strides 8, 16, 32."""

    def __init__(self, name: str, pretrained: bool = False) -> None:
        super().__init__()
        import torchvision

        builder = getattr(torchvision.models, name)
        weights = None
        if pretrained:
            weights = torchvision.models.get_model_weights(builder).DEFAULT
        try:
            net = builder(weights=weights)
        except (OSError, RuntimeError) as e:  # URLError is an OSError
            raise RuntimeError(
                f"could not get the ImageNet weights of {name} ({getattr(e, 'reason', e)}); they need the internet "
                "once (then torchvision caches them), or train without them."
            ) from None
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1)
        self.layer2, self.layer3, self.layer4 = net.layer2, net.layer3, net.layer4
        width = 4 if name == "resnet50" else 1
        self.channels = (128 * width, 256 * width, 512 * width)

    def stages(self) -> tuple[nn.Module, nn.Module, nn.Module, nn.Module]:
        return self.stem, self.layer2, self.layer3, self.layer4


def make_backbone(name: str, pretrained: bool = False) -> _Backbone:
    check_choice("backbone", name, BACKBONES)
    if name == "small":
        if pretrained:
            raise ValueError("the small backbone has no pretrained weights; it trains from scratch.")
        return SmallBackbone()
    return ResNetBackbone(name, pretrained)


# --- heads -------------------------------------------------------------------------------


class Normalize(nn.Module):
    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        # not in the state dict: they come from the ModelConfig
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


class SSDModel(nn.Module):
    """Backbone + SSD head for any AnchorConfig (module docstring).

    forward(images (B, 3, S, S) in [0, 1]) -> (class_logits (B, A, C + 1), box_activations (B, A, 4)).
    """

    def __init__(self, config: ModelConfig, pretrained: bool = False) -> None:
        super().__init__()
        self.config = config
        anchor_config = config.anchor_config()
        self.grids = anchor_config.grids
        self.shapes = anchor_config.shapes_per_level()
        self.num_classes = config.num_classes
        ch = config.head_channels
        self.normalize = Normalize(config.mean, config.std)
        self.backbone = make_backbone(config.backbone, pretrained)
        sizes = _feature_sizes(config.image_size)
        self.drop = nn.Dropout(config.dropout)
        self.lateral = _conv(self.backbone.channels[2], ch)  # the lesson's stride-1 sconv0
        n_extra = max(0, len(sizes) - 3)
        self.extra = nn.ModuleList([_conv(ch, ch, stride=2) for _ in range(n_extra)])
        in_channels = (*self.backbone.channels[:2], ch, *([ch] * n_extra))
        self.sources: list[int] = []  # per level: which feature map
        for g in self.grids:
            source = _source_for_grid(g, sizes, config.image_size)
            self.sources.append(source)
        self.class_out = nn.ModuleList(
            [
                nn.Conv2d(in_channels[s], k * (self.num_classes + 1), 3, padding=1)
                for s, k in zip(self.sources, self.shapes, strict=True)
            ]
        )
        self.box_out = nn.ModuleList(
            [nn.Conv2d(in_channels[s], k * 4, 3, padding=1) for s, k in zip(self.sources, self.shapes, strict=True)]
        )
        if config.class_bias is not None:
            for conv in self.class_out:
                nn.init.constant_(conv.bias, config.class_bias)

    def features(self, images: Tensor) -> list[Tensor]:
        """Feature maps at strides 8, 16, 32, 64, ... (the last ones from stride-2 convs)."""
        c8, c16, c32 = self.backbone(self.normalize(images))
        x = self.lateral(self.drop(c32))
        maps = [c8, c16, x]
        for conv in self.extra:
            x = conv(x)
            maps.append(x)
        return maps

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        maps = self.features(images)
        logits, boxes = [], []
        for level, (g, source) in enumerate(zip(self.grids, self.sources, strict=True)):
            x = maps[source]
            if x.shape[-1] != g:
                x = F.adaptive_avg_pool2d(x, g)
            logits.append(flatten_level(self.class_out[level](x), self.num_classes + 1))
            boxes.append(flatten_level(self.box_out[level](x), 4))
        return torch.cat(logits, 1), torch.cat(boxes, 1)

    def groups(self) -> list[list[nn.Module]]:
        """Layer groups for discriminative learning rates: backbone early, backbone late, head."""
        head = [self.lateral, self.extra, self.class_out, self.box_out]
        return [*self.backbone.groups(), head]


def flatten_level(x: Tensor, depth: int) -> Tensor:
    """A level's output (B, K * depth, g, g) as (B, g * g * K, depth): DESIGN's anchor order,
    rows (y) outer, columns (x), then the K shapes innermost.

    Output channel k * depth + d of cell (r, c) becomes row (r * g + c) * K + k, column d.
    """
    b = x.shape[0]
    return x.permute(0, 2, 3, 1).reshape(b, -1, depth)


def _feature_sizes(image_size: int) -> list[int]:
    """Side of each feature map for an input side: strides 8, 16, 32, then halving down to 1."""
    size = image_size
    sizes = []
    for stride in range(1, 6):  # five stride-2 3x3 convolutions with padding 1
        size = (size - 1) // 2 + 1
        if stride >= 3:
            sizes.append(size)
    while sizes[-1] > 1:
        sizes.append((sizes[-1] - 1) // 2 + 1)
    return sizes


def _source_for_grid(grid: int, sizes: list[int], image_size: int) -> int:
    """The map a level with this grid reads: the one of that size, else the next larger one."""
    if grid in sizes:
        return sizes.index(grid)
    larger = [i for i, s in enumerate(sizes) if s > grid]
    if not larger:
        raise ValueError(
            f"image size {image_size} gives feature maps of {', '.join(map(str, sizes))} cells; an anchor grid of "
            f"{grid}x{grid} needs a larger image (about {grid * 8} px) or a coarser anchor preset."
        )
    return larger[-1]


class LargestObjectModel(nn.Module):
    """The lesson's first model: backbone, flatten, two linear layers -> 4 box + C class outputs.

    forward(images) -> (class_logits (B, C), box_activations (B, 4)); boxes are sigmoid(activations).
    """

    def __init__(self, config: ModelConfig, pretrained: bool = False) -> None:
        super().__init__()
        self.config = config
        self.normalize = Normalize(config.mean, config.std)
        self.backbone = make_backbone(config.backbone, pretrained)
        side = _feature_sizes(config.image_size)[2]
        flat = self.backbone.channels[2] * side * side
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(flat, 256),
            nn.ReLU(),
            nn.BatchNorm1d(256),
            nn.Dropout(0.5),
            nn.Linear(256, 4 + config.num_classes),
        )

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        out = self.head(self.backbone(self.normalize(images))[2])
        return out[:, 4:], out[:, :4]

    def groups(self) -> list[list[nn.Module]]:
        return [*self.backbone.groups(), [self.head]]


class MultiLabelModel(nn.Module):
    """The lesson's multi-label classifier: backbone, average pool, linear -> (B, C) logits."""

    def __init__(self, config: ModelConfig, pretrained: bool = False) -> None:
        super().__init__()
        self.config = config
        self.normalize = Normalize(config.mean, config.std)
        self.backbone = make_backbone(config.backbone, pretrained)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(config.dropout),
            nn.Linear(self.backbone.channels[2], config.num_classes),
        )

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.backbone(self.normalize(images))[2])

    def groups(self) -> list[list[nn.Module]]:
        return [*self.backbone.groups(), [self.head]]


def build_model(config: ModelConfig, pretrained: bool = False) -> nn.Module:
    """The model a config describes, freshly initialised (or with ImageNet backbone weights)."""
    if config.kind in DETECTOR_KINDS:
        return SSDModel(config, pretrained)
    if config.kind == "largest":
        return LargestObjectModel(config, pretrained)
    return MultiLabelModel(config, pretrained)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def anchors_for(config: ModelConfig):
    """The Anchors an SSD model predicts for."""
    return make_anchors(config.anchor_config())
