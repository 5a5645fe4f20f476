"""UI helpers of the detection pages: the anchor configuration, images, checkpoints, caches."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import streamlit as st
import torch
from PIL import Image, ImageDraw

from detviz.anchors import PRESETS, AnchorConfig, Anchors, config_text, make_anchors, parse_anchor_text
from detviz.coverage import Coverage, anchor_coverage
from detviz.data import VOC_CLASSES, DataError, DatasetIndex
from detviz.data.spec import dataset_fingerprint
from detviz.inference import Detector
from detviz.models import CheckpointError
from pages import ui

LESSON_EXAMPLE = "lesson example (image 7)"
# The lesson's image 7: chair, dining table, sofa, normalized [y1, x1, y2, x2] as printed.
LESSON_BOXES_YX = ((0.6786, 0.4866, 0.9911, 0.6250), (0.7098, 0.0848, 0.9911, 0.5491), (0.5134, 0.8304, 0.6696, 0.9063))
LESSON_LABELS = (VOC_CLASSES.index("chair"), VOC_CLASSES.index("diningtable"), VOC_CLASSES.index("sofa"))
LESSON_SIZE = 224
LESSON_BEST_IOU = (0.3985, 0.4538, 0.1897)  # printed by the lesson: best anchor IoU per object
LESSON_POSITIVES = (11, 13, 14)  # printed by the lesson: positive anchors at threshold 0.5


@dataclass(frozen=True)
class Picture:
    """An image with its ground truth in pixels, from a dataset or the lesson's example."""

    name: str
    image: Image.Image
    boxes: torch.Tensor
    labels: torch.Tensor
    difficult: torch.Tensor
    classes: list[str]

    @property
    def normalized(self) -> torch.Tensor:
        w, h = self.image.size
        return self.boxes / torch.tensor([w, h, w, h], dtype=torch.float32)


@st.cache_resource
def lesson_example() -> Picture:
    """The lesson's image-7 boxes on a plain 224 x 224 canvas (the photograph is not ours to ship)."""
    image = Image.new("RGB", (LESSON_SIZE, LESSON_SIZE), (236, 232, 222))
    draw = ImageDraw.Draw(image)
    boxes = torch.tensor(LESSON_BOXES_YX)[:, [1, 0, 3, 2]] * LESSON_SIZE
    for box, shade in zip(boxes.tolist(), ((205, 170, 125), (160, 120, 90), (120, 140, 170)), strict=True):
        draw.rectangle(box, fill=shade)
    return Picture(
        LESSON_EXAMPLE, image, boxes, torch.tensor(LESSON_LABELS), torch.zeros(3, dtype=torch.bool), list(VOC_CLASSES)
    )


def pick_picture(index: DatasetIndex | None, lesson: str | None = None) -> Picture | None:
    """An image selector bound to ?image=; `lesson` ("first" or "last") adds the lesson's example."""
    ids = index.image_ids if index is not None else []
    if lesson == "first":
        ids = [LESSON_EXAMPLE, *ids]
    elif lesson == "last":
        ids = [*ids, LESSON_EXAMPLE]
    if not ids:
        return None
    image_id = st.selectbox("Image", ids, key=ui.IMAGE, bind="query-params")
    if image_id == LESSON_EXAMPLE:
        return lesson_example()
    record = index[index.position_of(image_id)]
    try:
        image = ui.record_image(record)
    except DataError as e:
        st.error(str(e))
        return None
    return Picture(image_id, image, record.boxes, record.labels, record.difficult, index.classes)


def anchor_picker(default: str = "lesson_multiscale") -> tuple[AnchorConfig, str]:
    """A preset (or custom grids, zooms and shapes) bound to the URL; bad custom input falls back."""
    options = [*PRESETS, "custom"]
    preset = st.selectbox(
        "Anchors",
        options,
        index=options.index(default),
        key=ui.PRESET,
        bind="query-params",
        help="The lesson's presets, SSD300's 8,732 default boxes, or your own grid.",
    )
    if preset != "custom":
        return PRESETS[preset], preset
    grids, zooms, shapes = config_text(PRESETS["lesson_multiscale"])
    c1, c2, c3 = st.columns(3)
    grids = c1.text_input("Grids (cells per side)", grids, key=ui.GRIDS, bind="query-params")
    zooms = c2.text_input("Zooms", zooms, key=ui.ZOOMS, bind="query-params")
    shapes = c3.text_input("Shapes (width x height)", shapes, key=ui.SHAPES, bind="query-params")
    try:
        return parse_anchor_text(grids, zooms, shapes), "custom"
    except ValueError as e:
        st.error(f"{e} Showing lesson_multiscale instead.")
        return PRESETS["lesson_multiscale"], "lesson_multiscale"


def anchor_input(num_anchors: int) -> int | None:
    """The selected anchor (?anchor=), set by typing or by a click on a figure; None for none."""
    current = st.session_state.get(ui.ANCHOR)
    if current is not None and not 0 <= current < num_anchors:
        st.session_state[ui.ANCHOR] = None  # the anchors changed under it
    return st.number_input(
        "Selected anchor", min_value=0, max_value=num_anchors - 1, value=None, step=1, key=ui.ANCHOR,
        bind="query-params", placeholder="click an anchor, or type its index",
    )  # fmt: skip


def level_picker(anchors: Anchors, container=st) -> int:
    """A level selector bound to ?level=, its options (and URL values) the grids: "38x38"."""
    names = []
    for lv, g in enumerate(anchors.grids):
        name = f"{g}x{g}"
        names.append(name if name not in names else f"{name} (level {lv})")
    choice = container.selectbox("Level", names, key=ui.LEVEL, bind="query-params",
                                 help="Anchor levels from the finest grid to the coarsest.")  # fmt: skip
    return names.index(choice)


def config_key(config: AnchorConfig) -> str:
    return json.dumps(config.to_dict(), sort_keys=True)


@st.cache_resource(max_entries=16)
def _anchors(key: str) -> Anchors:
    return make_anchors(AnchorConfig.from_dict(json.loads(key)))


def anchors_of(config: AnchorConfig) -> Anchors:
    """The config's anchors, built once per config."""
    return _anchors(config_key(config))


@st.cache_resource(max_entries=32, show_spinner="Measuring how well the anchors cover every object…")
def _coverage(spec: str, split: str, fingerprint: tuple, key: str) -> Coverage:
    return anchor_coverage(ui.read_index(spec, split, fingerprint), _anchors(key))


def coverage_of(config: AnchorConfig) -> Coverage | None:
    """Coverage of the chosen dataset by the config, computed once per (dataset, config)."""
    selection = st.session_state.get(ui.SELECTION)
    if not isinstance(selection, tuple):
        return None
    spec, split = selection
    return _coverage(str(spec), split, dataset_fingerprint(spec, split), config_key(config))


def checkpoint_dir() -> Path:
    """Where the shipped checkpoints are: $DETVIZ_CHECKPOINT_DIR, else checkpoints/ in the app folder."""
    return Path(os.environ.get("DETVIZ_CHECKPOINT_DIR") or ui.APP_DIR / "checkpoints")


def shipped_checkpoints() -> dict[str, Path]:
    """The checkpoints that ship with detviz, by file name."""
    return {p.name: p for p in sorted(checkpoint_dir().glob("*.pt"))}


@st.cache_resource(max_entries=4, show_spinner="Loading the model…")
def _detector(path: str, stamp: tuple[int, int]) -> Detector:
    return Detector.from_checkpoint(path)


def detector_of(path: Path) -> Detector | None:
    """A Detector for the checkpoint (cached per file and modification time), or None after an error."""
    try:
        st_ = path.stat()
        return _detector(str(path), (st_.st_size, st_.st_mtime_ns))
    except (OSError, CheckpointError) as e:
        st.error(str(e))
        return None
