"""What the scoring pages (Predictions, Evaluate) share: the one mAP they headline and its label,
the warning when they score training images, and the A/B comparison's second checkpoint (its
picker bound to ?ckpt_b=, its loading and checks, the swap button)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import streamlit as st

from detviz.data import DatasetIndex
from detviz.models import compatibility_problems
from pages.ui import keys
from pages.ui.models import UPLOAD, detector_choices, load_detector, not_a_detector

if TYPE_CHECKING:
    from detviz.inference import Detector

NO_COMPARISON = "none"  # ?ckpt_b=none, the default: no model B


def map_label(eval_iou: float) -> str:
    """The headline mAP's name, with its definition: "mAP@0.5 (VOC, all-point)"."""
    return f"mAP@{eval_iou:g} (VOC, all-point)"


def map_text(value: float) -> str:
    """mAP with 3 decimals; a barely trained model's tiny one with 2 significant digits (not 0.000)."""
    if math.isnan(value):
        return "–"
    return f"{value:.3f}" if value >= 0.01 or value == 0 else f"{value:.2g}"


def scores_training_images(split: str, training: Mapping[str, object]) -> bool:
    """Whether scoring `split` scores images the model trained on: the train split, or the split
    its checkpoint says it trained on."""
    return bool(split) and split in {"train", training.get("train_split")}


def warn_if_training_split(*detectors: Detector) -> None:
    """A loud warning when the sidebar's split holds images one of the models trained on."""
    selection = st.session_state.get(keys.SELECTION)
    if not isinstance(selection, tuple):
        return
    split = selection[1]
    if any(scores_training_images(split, d.info.training) for d in detectors):
        st.warning(f"These numbers are scored on training images the model saw (split '{split}'): they flatter "
                   "it. Choose the val split in the sidebar for an honest score.", icon=":material/warning:")  # fmt: skip


@dataclass(frozen=True)
class Model:
    """A checkpoint a scoring page shows: its shown name, its file and its Detector."""

    name: str
    path: Path
    detector: Detector

    @property
    def summary(self) -> str:
        """What kind of model it is, in a few words: "ssd-multiscale, 8,732 anchors, 300 px, focal loss"."""
        d = self.detector
        loss = d.info.training.get("loss")
        parts = [d.info.model.kind, f"{d.anchors.boxes.shape[0]:,} anchors", f"{d.image_size} px"]
        return ", ".join(parts + ([f"{loss} loss"] if isinstance(loss, str) else []))


def compare_picker(container=st) -> tuple[str, Path] | None:
    """The second checkpoint, B ("Compare with", ?ckpt_b=; none by default): the detectors the
    checkpoint picker offers, without upload. Returns (shown name, file) or None."""
    options, others = detector_choices()
    wanted = st.query_params.get(keys.CHECKPOINT_B, "")
    if wanted in others:  # a link to a classifier (Streamlit drops the value)
        st.error("Compare with: " + not_a_detector(wanted, others[wanted]))
    choice = container.selectbox(
        "Compare with", [NO_COMPARISON, *options], key=keys.CHECKPOINT_B, bind="query-params",
        help="A second checkpoint (B) on the same image and data, with the same thresholds, side by side with "
             "the first (A). Each runs with its own image size and anchors.",
    )  # fmt: skip
    return None if choice == NO_COMPARISON else (choice, options[choice])


def second_model(picked: tuple[str, Path] | None, a_name: str, a_path: Path, index: DatasetIndex) -> Model | None:
    """Model B, loaded and checked against the dataset's classes, or None (no B, or an st.error
    saying why B is left out; the page then shows A alone). B the same as A is said, and works."""
    if picked is None:
        return None
    name, path = picked
    detector, error = load_detector(path, name)
    if detector is None:
        st.error(f"Compare with: {error} Showing {a_name} alone.")
        return None
    problems = compatibility_problems(detector.info, class_names=index.classes)
    if problems:
        st.error(f"Compare with: {name} was trained on other classes than this dataset has ({'; '.join(problems)}): "
                 f"it cannot be scored on this ground truth. Showing {a_name} alone.")  # fmt: skip
        return None
    if name == a_name or path.resolve() == a_path.resolve():
        st.info(f"B is the same checkpoint as A ({name}): every difference is 0. Choose another under Compare with.")
    return Model(name, path, detector)


def swap_button(container=st) -> None:
    """Swaps A and B (the checkpoint and the "compare with" pickers); off when A is an upload."""
    upload = st.session_state.get(keys.CHECKPOINT) == UPLOAD
    container.button(
        "Swap A and B", key=keys.SWAP_AB, on_click=_swap, disabled=upload, icon=":material/swap_horiz:",
        help="An uploaded checkpoint cannot be B." if upload else "B becomes A, with all of A's details below.",
    )  # fmt: skip


def _swap() -> None:
    state = st.session_state
    state[keys.CHECKPOINT], state[keys.CHECKPOINT_B] = state[keys.CHECKPOINT_B], state[keys.CHECKPOINT]
