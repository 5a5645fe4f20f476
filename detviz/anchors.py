"""Anchor boxes: a config of grids, zooms and shapes -> every anchor's box, centre and size.

Order (DESIGN): levels in config order (largest grid first); inside a level row-major, y outer
and x inner; the anchor shapes of a cell innermost. That is the order in which an SSD head's
outputs are flattened, so anchor i and output i belong together. For the lesson's 4x4 grid
with one shape, anchor 5 is row 1, column 1.

Two ways to give the shapes:
- grid style (the lesson): every cell of a level with `g` cells per side has the
  len(zooms) x len(shapes) shapes `zoom * (shape.width, shape.height) / g`, zoom-major,
  centred at the cell centre;
- explicit (the SSD paper): `level_shapes[l]` lists the (width, height) of each anchor of
  level l as fractions of the image, and `steps[l]` the distance between cell centres.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from numbers import Integral, Real
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor

MAX_ANCHORS = 100_000  # more than this is a mistake (SSD300 has 8,732), and would not fit a page
# Bounds on the boxes make_anchors produces, in image sides. The largest anchors in use are about
# 1.3 (the lesson's zoom 1.3 on its 1x1 grid) and 1.25 (SSD300's last level); a tenth of a pixel
# of a 1000-pixel image is the smallest that still has a width in float32 next to its centre.
MIN_ANCHOR_SIDE = 1e-4
MAX_ANCHOR_SIDE = 4.0  # also how far outside the image a box may reach


class AnchorShape(NamedTuple):
    """Width and height of an anchor shape (named, so nobody swaps them)."""

    width: float
    height: float


@dataclass(frozen=True)
class AnchorConfig:
    """Which anchors a detector predicts from.

    Attributes:
        grids: cells per side of each level, largest first, e.g. (4, 2, 1).
        zooms: size multipliers, e.g. (0.75, 1.0, 1.3) (grid style).
        shapes: (width, height) multipliers of a cell, e.g. square, tall, wide (grid style).
        level_shapes: per level, the (width, height) of each anchor as a fraction of the image;
            when given, zooms and shapes are not used (explicit style).
        steps: per level, the distance between cell centres as a fraction of the image
            (default 1 / grid; SSD300 uses step / 300 with its own steps).
        clip: clip anchor boxes to the image [0, 1].
    """

    grids: tuple[int, ...]
    zooms: tuple[float, ...] = (1.0,)
    shapes: tuple[AnchorShape, ...] = (AnchorShape(1.0, 1.0),)
    level_shapes: tuple[tuple[AnchorShape, ...], ...] | None = None
    steps: tuple[float, ...] | None = None
    clip: bool = False

    def __post_init__(self) -> None:
        # accept lists and plain pairs (e.g. from json), store tuples of AnchorShape; anything
        # else (a string, None, a nested list where a number goes) is a ValueError naming the field
        object.__setattr__(self, "grids", _items("grids", self.grids))
        object.__setattr__(self, "zooms", tuple(_number("zooms", z) for z in _items("zooms", self.zooms)))
        object.__setattr__(self, "shapes", tuple(_shape("shapes", s) for s in _items("shapes", self.shapes)))
        if self.level_shapes is not None:
            levels = _items("level_shapes", self.level_shapes)
            shapes = tuple(tuple(_shape("level_shapes", s) for s in _items("level_shapes", lv)) for lv in levels)
            object.__setattr__(self, "level_shapes", shapes)
        if self.steps is not None:
            object.__setattr__(self, "steps", tuple(_number("steps", s) for s in _items("steps", self.steps)))
        if not isinstance(self.clip, bool):
            raise ValueError(f"AnchorConfig.clip must be true or false, got {self.clip!r}.")
        self._validate()

    def _validate(self) -> None:
        if not self.grids:
            raise ValueError("AnchorConfig.grids is empty; give at least one grid size, e.g. (4,).")
        for g in self.grids:
            if isinstance(g, bool) or not isinstance(g, Integral) or g <= 0:
                raise ValueError(f"AnchorConfig.grids must be positive integers, got {g!r} in {self.grids}.")
        object.__setattr__(self, "grids", tuple(int(g) for g in self.grids))
        if self.level_shapes is None:
            if not self.zooms:
                raise ValueError("AnchorConfig.zooms is empty; give at least one zoom, e.g. (1.0,).")
            if not self.shapes:
                raise ValueError("AnchorConfig.shapes is empty; give at least one (width, height), e.g. (1, 1).")
            for z in self.zooms:
                if not (math.isfinite(z) and z > 0):
                    raise ValueError(f"AnchorConfig.zooms must be positive, got {z:g} in {self.zooms}.")
            for s in self.shapes:
                if not (math.isfinite(s.width) and math.isfinite(s.height) and s.width > 0 and s.height > 0):
                    raise ValueError(
                        f"AnchorConfig.shapes must have positive width and height, got {tuple(s)} in "
                        f"{[tuple(x) for x in self.shapes]}."
                    )
        else:
            if len(self.level_shapes) != len(self.grids):
                raise ValueError(
                    f"AnchorConfig.level_shapes has {len(self.level_shapes)} levels but grids has {len(self.grids)}."
                )
            for level in self.level_shapes:
                if not level:
                    raise ValueError("AnchorConfig.level_shapes has a level without shapes.")
                for s in level:
                    if not (math.isfinite(s.width) and math.isfinite(s.height) and s.width > 0 and s.height > 0):
                        raise ValueError(f"AnchorConfig.level_shapes must be positive, got {tuple(s)}.")
        if self.steps is not None:
            if len(self.steps) != len(self.grids):
                raise ValueError(f"AnchorConfig.steps has {len(self.steps)} values but grids has {len(self.grids)}.")
            if not all(math.isfinite(s) and s > 0 for s in self.steps):
                raise ValueError(f"AnchorConfig.steps must be positive, got {self.steps}.")

    def shapes_per_level(self) -> tuple[int, ...]:
        """Number of anchor shapes of a cell, per level."""
        if self.level_shapes is not None:
            return tuple(len(level) for level in self.level_shapes)
        return (len(self.zooms) * len(self.shapes),) * len(self.grids)

    @property
    def num_anchors(self) -> int:
        """Total anchor count, computed without building them."""
        return sum(g * g * k for g, k in zip(self.grids, self.shapes_per_level(), strict=True))

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists and numbers) for a checkpoint or json: no AnchorShape objects, so a
        checkpoint holding it loads with torch.load(weights_only=True)."""
        data = asdict(self)
        data["grids"] = list(self.grids)
        data["zooms"] = list(self.zooms)
        data["shapes"] = [list(s) for s in self.shapes]
        if self.level_shapes is not None:
            data["level_shapes"] = [[list(s) for s in level] for level in self.level_shapes]
        if self.steps is not None:
            data["steps"] = list(self.steps)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AnchorConfig:
        """The inverse of `to_dict`; raises ValueError on bad fields."""
        if not isinstance(data, Mapping):
            raise ValueError(f"AnchorConfig as plain data must be a dict of its fields, got {type(data).__name__}.")
        known = {"grids", "zooms", "shapes", "level_shapes", "steps", "clip"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"AnchorConfig has no field(s) {sorted(unknown)}; fields are {sorted(known)}.")
        if "grids" not in data:
            raise ValueError("AnchorConfig.grids is missing; give the cells per side of each level, e.g. [4, 2, 1].")
        return cls(**data)

    def to_json(self, indent: int | None = 2) -> str:
        """The config as a JSON object (`to_dict` without the unset optional fields), the file
        `from_json` and `python -m detviz.train --anchors FILE` read. `indent` None: one line."""
        data = {k: v for k, v in self.to_dict().items() if v is not None}
        return json.dumps(data, indent=indent, separators=None if indent else (",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes, source: str = "anchors JSON") -> AnchorConfig:
        """The config a JSON object holds (`{"grids": [...], "zooms": [...], "shapes": [[w, h], ...]}`,
        or explicit `level_shapes` and `steps`, and `clip`), checked as `make_anchors` checks it.

        Args:
            source: what the text is (a file name), for the messages.

        Raises:
            ValueError: "<source>: ..." naming the field: not JSON, not an object, an unknown
                field, a missing, wrongly typed, non-finite or absurd value, no anchors at all,
                or more than MAX_ANCHORS of them.
        """
        try:
            data = json.loads(text)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{source}: not a JSON file ({e}); save the Anchors page's download or write "
                             '{"grids": [4, 2, 1], "zooms": [1], "shapes": [[1, 1]]}.') from None  # fmt: skip
        try:
            config = cls.from_dict(data)
            if config.num_anchors > MAX_ANCHORS:
                raise ValueError(
                    f"AnchorConfig.grids {list(config.grids)} with {list(config.shapes_per_level())} shapes per cell "
                    f"give {config.num_anchors:,} anchors; at most {MAX_ANCHORS:,} are allowed."
                )
            make_anchors(config)
        except ValueError as e:
            raise ValueError(f"{source}: {e}") from None
        return config


def load_anchor_config(path: str | Path) -> AnchorConfig:
    """The AnchorConfig in a JSON file (see `AnchorConfig.from_json`).

    Raises:
        ValueError: naming the file: it cannot be read, or its content is not a valid config.
    """
    try:
        text = Path(path).read_bytes()
    except OSError as e:
        raise ValueError(f"{path}: cannot read the anchors file ({e.strerror or e}).") from None
    return AnchorConfig.from_json(text, str(path))


def _items(name: str, values: Any) -> tuple:
    """`values` as a tuple; a ValueError naming the field when it is not a list."""
    if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Iterable):
        raise ValueError(f"AnchorConfig.{name} must be a list, got {type(values).__name__} {values!r:.60}.")
    return tuple(values)


def _number(name: str, value: Any) -> float:
    """A real number (not a bool or a string) as a float; a ValueError naming the field otherwise."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ValueError(f"AnchorConfig.{name} must hold numbers, got {type(value).__name__} {value!r:.60}.")
    return float(value)


def _shape(name: str, pair: Any) -> AnchorShape:
    """A (width, height) pair of numbers as an AnchorShape; a ValueError naming the field otherwise."""
    values = _items(name, pair)
    if len(values) != 2:
        raise ValueError(f"AnchorConfig.{name} must hold (width, height) pairs, got {pair!r:.60}.")
    return AnchorShape(_number(name, values[0]), _number(name, values[1]))


@dataclass(frozen=True)
class Anchors:
    """Every anchor of a config, in head-output order.

    Attributes:
        boxes: (A, 4) float32 xyxy normalized to the image.
        centers: (A, 2) float32 (cx, cy). sizes: (A, 2) float32 (width, height).
        cell_size: (A,) float32 distance between cell centres of the anchor's level (1 / grid
            for grid-style configs): how far the lesson's box coding may move a centre.
        level, row, col: (A,) int64 the anchor's level and cell.
        shape_index: (A,) int64 the anchor's shape within its cell.
        grids: cells per side per level. shapes_per_level: anchor shapes per cell per level.
        level_start: (L + 1,) first anchor index of each level, then A.
    """

    boxes: Tensor
    centers: Tensor
    sizes: Tensor
    cell_size: Tensor
    level: Tensor
    row: Tensor
    col: Tensor
    shape_index: Tensor
    grids: tuple[int, ...]
    shapes_per_level: tuple[int, ...]
    level_start: tuple[int, ...]

    def __len__(self) -> int:
        return self.boxes.shape[0]

    @property
    def num_shapes(self) -> int:
        """Anchor shapes per cell (K); for configs whose levels differ (SSD300), the largest."""
        return max(self.shapes_per_level)

    def to(self, device: torch.device | str) -> Anchors:
        moved = {k: (v.to(device) if isinstance(v, Tensor) else v) for k, v in self.__dict__.items()}
        return Anchors(**moved)

    def describe(self, i: int) -> str:
        """One line naming anchor i: its level, cell and shape."""
        lvl = int(self.level[i])
        w, h = self.sizes[i].tolist()
        return (
            f"anchor {i}: level {lvl} ({self.grids[lvl]}x{self.grids[lvl]}), row {int(self.row[i])}, "
            f"column {int(self.col[i])}, shape {int(self.shape_index[i])} ({w:.3g} x {h:.3g})"
        )


def level_shape_sizes(config: AnchorConfig, level: int) -> Tensor:
    """(K, 2) float64 (width, height) of the anchor shapes of one cell of a level."""
    if config.level_shapes is not None:
        return torch.tensor([tuple(s) for s in config.level_shapes[level]], dtype=torch.float64)
    g = config.grids[level]
    zooms = torch.tensor(config.zooms, dtype=torch.float64)
    shapes = torch.tensor([tuple(s) for s in config.shapes], dtype=torch.float64)
    return (zooms[:, None, None] * shapes[None, :, :] / g).reshape(-1, 2)  # zoom-major, as the lesson


def make_anchors(config: AnchorConfig) -> Anchors:
    """All anchors of `config`, on the CPU (move them with `.to(device)`).

    Raises:
        ValueError: the config would give more than MAX_ANCHORS anchors, or boxes that are not
            finite, have a side outside [MIN_ANCHOR_SIDE, MAX_ANCHOR_SIDE] image sides, or reach
            further than MAX_ANCHOR_SIDE outside the image (see `check_anchor_boxes`).
    """
    if config.num_anchors > MAX_ANCHORS:
        raise ValueError(f"AnchorConfig gives {config.num_anchors:,} anchors; at most {MAX_ANCHORS:,} are allowed.")
    parts: dict[str, list[Tensor]] = {k: [] for k in ("centers", "sizes", "cell", "level", "row", "col", "shape")}
    starts = [0]
    for lvl, g in enumerate(config.grids):
        sizes = level_shape_sizes(config, lvl)  # (K, 2)
        k = sizes.shape[0]
        step = config.steps[lvl] if config.steps is not None else 1.0 / g
        rows, cols, shape = torch.meshgrid(torch.arange(g), torch.arange(g), torch.arange(k), indexing="ij")
        rows, cols, shape = rows.reshape(-1), cols.reshape(-1), shape.reshape(-1)  # y outer, x, shape inner
        centers = torch.stack([(cols + 0.5) * step, (rows + 0.5) * step], dim=1)
        parts["centers"].append(centers)
        parts["sizes"].append(sizes[shape])
        parts["cell"].append(torch.full((g * g * k,), step, dtype=torch.float64))
        parts["level"].append(torch.full((g * g * k,), lvl, dtype=torch.int64))
        parts["row"].append(rows)
        parts["col"].append(cols)
        parts["shape"].append(shape)
        starts.append(starts[-1] + g * g * k)
    centers = torch.cat(parts["centers"])
    sizes = torch.cat(parts["sizes"])
    boxes = torch.cat([centers - sizes / 2, centers + sizes / 2], dim=1)  # computed in float64, then rounded
    if config.clip:  # clip the boxes, and keep centres and sizes those of the clipped boxes
        boxes = boxes.clamp(0.0, 1.0)
        centers, sizes = (boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]
    level, shape_index = torch.cat(parts["level"]), torch.cat(parts["shape"])
    check_anchor_boxes(config, boxes.float(), level, shape_index)
    return Anchors(
        boxes=boxes.float(),
        centers=centers.float(),
        sizes=sizes.float(),
        cell_size=torch.cat(parts["cell"]).float(),
        level=level,
        row=torch.cat(parts["row"]),
        col=torch.cat(parts["col"]),
        shape_index=shape_index,
        grids=config.grids,
        shapes_per_level=config.shapes_per_level(),
        level_start=tuple(starts),
    )


def check_anchor_boxes(config: AnchorConfig, boxes: Tensor, level: Tensor, shape_index: Tensor) -> None:
    """Checks the boxes a config produced: finite, every side in [MIN_ANCHOR_SIDE, MAX_ANCHOR_SIDE]
    image sides, every coordinate within MAX_ANCHOR_SIDE of the image.

    The inputs can each be fine while their product is not (zoom 1e30, a shape of 1e-30, a step
    of 1e30): this looks at what the detector would really use.

    Args:
        boxes: (A, 4) float32 xyxy normalized. level, shape_index: (A,) int64 of each anchor.

    Raises:
        ValueError: naming the field to change (zooms and shapes, level_shapes, or steps), the
            first bad anchor's level and shape, and the allowed range.
    """
    sides = boxes[:, 2:] - boxes[:, :2]  # (A, 2)
    size_ok = ((sides >= MIN_ANCHOR_SIDE) & (sides <= MAX_ANCHOR_SIDE)).all(1)  # NaN compares False
    place_ok = ((boxes >= -MAX_ANCHOR_SIDE) & (boxes <= 1 + MAX_ANCHOR_SIDE)).all(1)
    bad = torch.nonzero(~(size_ok & place_ok)).flatten()
    if bad.numel() == 0:
        return
    i = int(bad[0])
    lvl, k = int(level[i]), int(shape_index[i])
    width, height = level_shape_sizes(config, lvl)[k].tolist()  # float64: 1e30 shows as 1e30, not inf
    g = config.grids[lvl]
    where = f"anchor shape {k} of level {lvl} ({g}x{g})"
    if min(width, height) >= MIN_ANCHOR_SIDE and max(width, height) <= MAX_ANCHOR_SIDE:
        # a fine shape, placed far off the image (or so far that float32 loses its width): the steps
        step = config.steps[lvl] if config.steps is not None else 1.0 / g
        raise ValueError(
            f"AnchorConfig.steps: {where} is centred up to {(g - 0.5) * step:.3g} image sides away (step {step:.3g}); "
            f"anchors must stay within {MAX_ANCHOR_SIDE:g} sides of the image: use steps of about 1 / grid."
        )
    fields = "level_shapes" if config.level_shapes is not None else "zooms and shapes"
    fix = "smaller" if max(width, height) > MAX_ANCHOR_SIDE else "larger"
    raise ValueError(
        f"AnchorConfig.{fields}: {where} is {width:.3g} x {height:.3g} image sides; anchor sides must be between "
        f"{MIN_ANCHOR_SIDE:g} and {MAX_ANCHOR_SIDE:g}: use {fix} {fields}."
    )


def _ssd300() -> AnchorConfig:
    """The original SSD300 default boxes (Caffe SSD, ssd.pytorch): 8,732 of them.

    Feature maps 38, 19, 10, 5, 3, 1 with steps 8, 16, 32, 64, 100, 300 px at 300 px; per cell
    the min-size square, the sqrt(min * max) square, then per extra ratio r the box
    (s sqrt(r), s / sqrt(r)) and its transpose.
    """
    image = 300.0
    feature_maps = (38, 19, 10, 5, 3, 1)
    steps = (8, 16, 32, 64, 100, 300)
    min_sizes = (30, 60, 111, 162, 213, 264)
    max_sizes = (60, 111, 162, 213, 264, 315)
    ratios = ((2,), (2, 3), (2, 3), (2, 3), (2,), (2,))
    levels = []
    for lo, hi, rs in zip(min_sizes, max_sizes, ratios, strict=True):
        s, s_prime = lo / image, math.sqrt(lo * hi) / image
        shapes = [AnchorShape(s, s), AnchorShape(s_prime, s_prime)]
        for r in rs:
            shapes += [AnchorShape(s * math.sqrt(r), s / math.sqrt(r)), AnchorShape(s / math.sqrt(r), s * math.sqrt(r))]
        levels.append(tuple(shapes))
    return AnchorConfig(grids=feature_maps, level_shapes=tuple(levels), steps=tuple(st / image for st in steps))


# The lesson's three shapes: square, tall (height twice the width), wide (width twice the height).
LESSON_SHAPES = (AnchorShape(1.0, 1.0), AnchorShape(0.5, 1.0), AnchorShape(1.0, 0.5))

PRESETS: dict[str, AnchorConfig] = {
    "lesson_4x4": AnchorConfig(grids=(4,)),
    "lesson_multiscale": AnchorConfig(grids=(4, 2, 1), zooms=(0.75, 1.0, 1.3), shapes=LESSON_SHAPES),
    "ssd300": _ssd300(),
}


def parse_anchor_text(grids: str, zooms: str, shapes: str) -> AnchorConfig:
    """An AnchorConfig from the text fields of a form.

    Args:
        grids: "4, 2, 1". zooms: "0.75, 1, 1.3". shapes: "1x1, 0.5x1, 1x0.5" (width x height).

    Raises:
        ValueError: a field that does not parse or makes an invalid config; the message names it.
    """

    def numbers(name: str, text: str, kind: type) -> tuple:
        parts = [p for p in text.replace(";", ",").split(",") if p.strip()]
        try:
            return tuple(kind(p.strip()) for p in parts)
        except ValueError:
            what = "whole numbers" if kind is int else "numbers"
            raise ValueError(f"{name}: {text!r} is not a list of {what} separated by commas.") from None

    def shape(part: str) -> AnchorShape:
        w, sep, h = part.strip().lower().partition("x")
        try:
            return AnchorShape(float(w), float(h if sep else w))
        except ValueError:
            raise ValueError(f"shapes: {part.strip()!r} is not width x height, e.g. 0.5x1.") from None

    config = AnchorConfig(
        grids=numbers("grids", grids, int),
        zooms=numbers("zooms", zooms, float),
        shapes=tuple(shape(p) for p in shapes.replace(";", ",").split(",") if p.strip()),
    )
    if config.num_anchors > MAX_ANCHORS:
        raise ValueError(f"AnchorConfig gives {config.num_anchors:,} anchors; at most {MAX_ANCHORS:,} are allowed.")
    return config


def config_text(config: AnchorConfig) -> tuple[str, str, str]:
    """The three text fields `parse_anchor_text` reads, for a grid-style config."""
    return (
        ", ".join(str(g) for g in config.grids),
        ", ".join(f"{z:g}" for z in config.zooms),
        ", ".join(f"{s.width:g}x{s.height:g}" for s in config.shapes),
    )
