"""Caches of the UI layer (every `st.cache_*` of the app) for what detviz computes but must not
remember itself: dataset indexes, images, thumbnails, anchors, coverage, detectors, raw outputs.

Loaders are keyed on the file's path and modification stamp (DESIGN: a slider move never
reloads anything, a changed file is read again). `image_uri` is the encoder the pages hand to
the image figure builders (`encode=image_uri`): every slider move redraws the same picture, and
the JPEG + base64 encoding would otherwise run again each time.

The dataset's loaders import no torch: a fresh server's first page (Overview) needs only them,
so the anchor, coverage and model loaders import what they need (torch) when first called.
"""

from __future__ import annotations

import hashlib
import io
import json
import weakref
from pathlib import Path
from typing import TYPE_CHECKING

import streamlit as st
from PIL import Image

from detviz import figures
from detviz.data import DataError, DatasetIndex, ImageRecord, image_from_bytes, load_image
from detviz.data.spec import dataset_fingerprint, open_dataset
from detviz.data.voc import file_stamp
from pages.ui import keys

if TYPE_CHECKING:  # loaded where used: torch with anchors and coverage, torchvision with inference
    from torch import Tensor

    from detviz.anchors import AnchorConfig, Anchors
    from detviz.coverage import Coverage
    from detviz.inference import Detector

MAX_IMAGE_URIS = 64  # encoded images remembered; more images than a few pages show at once


@st.cache_resource(show_spinner=False)
def _image_uris() -> dict[int, tuple[weakref.ref, str]]:
    """The process's memo of encoded images, by image object id (with a weak reference that
    says whether the id still names the same image)."""
    return {}


def image_uri(image: Image.Image) -> str:
    """`image_data_uri(image)`, remembered per image object while it lives.

    Keyed on the object, not its pixels: the pages' images come from `st.cache_resource`
    loaders, so the same picture is the same object on every rerun, and hashing its pixels
    would cost about as much as encoding them.
    """
    memo = _image_uris()
    hit = memo.get(id(image))
    if hit is not None and hit[0]() is image:
        return hit[1]
    uri = figures.image_data_uri(image)
    if len(memo) >= MAX_IMAGE_URIS:
        memo.clear()
    memo[id(image)] = (weakref.ref(image), uri)
    return uri


@st.cache_resource(show_spinner="Reading the dataset…", max_entries=8)
def read_index(spec_text: str, split: str, fingerprint: tuple) -> DatasetIndex:
    """The dataset's index, read non-strictly (broken files listed, not fatal); cached per stamp."""
    return open_dataset(spec_text, split, strict=False)


@st.cache_resource(max_entries=64)
def load_image_cached(path: str, width: int, height: int, stamp: tuple[int, int]) -> Image.Image:
    return load_image(path, (width, height))


def uploaded_image(data: bytes, name: str) -> Image.Image:
    """An uploaded image file's bytes as RGB (cached per content, so every rerun gets the same
    object, as image_uri and raw_outputs expect). Raises DataError naming `name`."""
    return _decoded_upload(hashlib.sha256(data).hexdigest(), name, data)


@st.cache_resource(max_entries=16, show_spinner=False)
def _decoded_upload(digest: str, name: str, _data: bytes) -> Image.Image:
    return image_from_bytes(_data, name)


def record_image(record: ImageRecord) -> Image.Image:
    """The record's image (cached; raises DataError for a broken file)."""
    return load_image_cached(
        str(record.image_path),
        record.width,
        record.height,
        file_stamp(record.image_path),
    )


@st.cache_data(max_entries=4096, show_spinner=False)
def thumbnail_jpeg(
    path: str,
    width: int,
    height: int,
    stamp: tuple[int, int],
    boxes: tuple,
    labels: tuple,
    difficult: tuple,
    size: int,
) -> bytes | None:
    """JPEG bytes of a thumbnail with boxes, or None when the image cannot be read."""
    try:
        image = load_image(path, (width, height))
    except DataError:
        return None
    import torch

    thumb = figures.render_thumbnail(
        image,
        torch.tensor(boxes).reshape(-1, 4),
        torch.tensor(labels),
        torch.tensor(difficult),
        size,
        square=True,
    )
    buf = io.BytesIO()
    thumb.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def record_thumbnail(
    record: ImageRecord,
    size: int = 220,
    boxes: Tensor | None = None,
    labels: Tensor | None = None,
    dashed: Tensor | None = None,
) -> bytes | None:
    """A cached JPEG thumbnail of the record with its ground truth, or with the given boxes."""
    boxes = record.boxes if boxes is None else boxes
    labels = record.labels if labels is None else labels
    dashed = record.difficult if dashed is None else dashed
    return thumbnail_jpeg(
        str(record.image_path),
        record.width,
        record.height,
        file_stamp(record.image_path),
        tuple(boxes.flatten().tolist()),
        tuple(labels.tolist()),
        tuple(dashed.tolist()),
        size,
    )


def config_key(config: AnchorConfig) -> str:
    return json.dumps(config.to_dict(), sort_keys=True)


@st.cache_resource(max_entries=16)
def _anchors(key: str) -> Anchors:
    from detviz.anchors import AnchorConfig, make_anchors

    return make_anchors(AnchorConfig.from_dict(json.loads(key)))


def anchors_of(config: AnchorConfig) -> Anchors:
    """The config's anchors, built once per config."""
    return _anchors(config_key(config))


@st.cache_resource(max_entries=32, show_spinner="Measuring how well the anchors cover every object…")
def _coverage(spec: str, split: str, fingerprint: tuple, key: str) -> Coverage:
    from detviz.coverage import anchor_coverage

    return anchor_coverage(read_index(spec, split, fingerprint), _anchors(key))


def coverage_of(config: AnchorConfig) -> Coverage | None:
    """Coverage of the chosen dataset by the config, computed once per (dataset, config)."""
    selection = st.session_state.get(keys.SELECTION)
    if not isinstance(selection, tuple):
        return None
    spec, split = selection
    return _coverage(str(spec), split, dataset_fingerprint(spec, split), config_key(config))


@st.cache_data(max_entries=256, show_spinner=False)
def checkpoint_kind_cached(path: str, stamp: tuple[int, int]) -> str | None:
    """The model kind a checkpoint file names ("ssd-multiscale", "largest", ...), or None when the
    file cannot be read as a checkpoint; read once per file and modification stamp."""
    from detviz.checkpoints import CheckpointError, read_checkpoint

    try:
        model = read_checkpoint(path).get("model")
    except CheckpointError:
        return None
    kind = model.get("kind") if isinstance(model, dict) else None
    return kind if isinstance(kind, str) else None


@st.cache_resource(max_entries=4, show_spinner="Loading the model…")
def load_detector_cached(path: str, stamp: tuple[int, int]) -> Detector:
    from detviz.inference import Detector

    return Detector.from_checkpoint(path)


@st.cache_resource(max_entries=32, show_spinner=False)
def _raw_outputs(path: str, stamp: tuple[int, int], image_key: tuple, _image: Image.Image) -> tuple[Tensor, Tensor]:
    return load_detector_cached(path, stamp).raw_outputs([_image])


def raw_outputs(path: Path, image: Image.Image) -> tuple[Tensor, Tensor]:
    """The checkpoint's head outputs for the image: class_logits (1, A, C+1), box_activations (1, A, 4).

    Cached per checkpoint file (path and modification stamp) and image content, never per
    loaded model object: the model cache keeps a few, and a dropped model's id() is reused.

    Raises:
        NonFiniteOutputs: the checkpoint's weights give NaN or inf.
    """
    image_key = (image.mode, image.size, hashlib.sha1(image.tobytes()).hexdigest())
    return _raw_outputs(str(path), file_stamp(path), image_key, image)
