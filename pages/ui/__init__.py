"""Shared UI pieces: widget / URL keys, the sidebar dataset picker, cached loaders.

A package rather than pages/ui.py: Streamlit lists every pages/*.py as a page until
`st.navigation` runs, and a helper must not show up there.

Every widget whose value belongs in a shareable URL is bound to a query parameter
(`bind="query-params"`): its key below is also the parameter's name, so
`/browse?data=voc&voc=data/VOC2007&split=val&image=000042` restores that view.
"""

from __future__ import annotations

import functools
import importlib
import io
import math
import os
import runpy
import threading
from pathlib import Path
from urllib.parse import urlencode

import pandas  # noqa: F401  (see below)
import streamlit as st
import torch
from PIL import Image
from streamlit.runtime.pages_manager import PagesManager
from streamlit.runtime.scriptrunner import get_script_run_ctx

from detviz.data import DataError, DatasetIndex, ImageRecord, load_image
from detviz.data.demo import make_demo_dataset, read_demo_settings
from detviz.data.spec import (
    DatasetSpec,
    check_within_roots,
    dataset_fingerprint,
    dataset_splits,
    open_dataset,
)
from detviz.data.voc import file_stamp
from detviz.figures import render_thumbnail

APP_DIR = Path(__file__).resolve().parents[2]
# pandas is imported above, before any page runs, on purpose: Streamlit may start a new script
# run while the one the user navigated away from is still running, and if that one is halfway
# through importing pandas (its first st.dataframe), plotly in the new run sees the half-built
# module in sys.modules and fails with "module 'pandas' has no attribute 'Series'". Every run
# imports this module first, and Python makes it wait until the import has finished.

# Widget keys; for bound widgets also the URL query-parameter names.
DATA_KIND = "data"
SPLIT = "split"
VOC_DIR = "voc"
COCO_JSON = "coco"
COCO_IMAGES = "images"
IMAGE = "image"
CLASSES = "cls"
OBJECTS = "objs"
SIZE = "size"
DIFFICULT = "hard"
PAGE = "pg"
PAGE_SIZE = "per"
SHOW_LARGEST = "largest"
SHOW_MULTILABEL = "multilabel"
PRESET = "preset"  # anchor preset, or "custom"
GRIDS = "grids"  # custom anchors: text fields
ZOOMS = "zooms"
SHAPES = "shapes"
OVERLAY = "overlay"  # Anchors page: grid | level | cell
LEVEL = "level"
ROW = "row"
COL = "col"
IOU = "iou"  # matching threshold
COMPARE = "compare"  # Anchors page: presets to compare coverage with
STEP = "step"  # Matching page: step of the rule
ANCHOR = "anchor"  # Matching page: the selected anchor
NEGATIVES = "negatives"  # Matching page: draw negative anchors
CHECKPOINT = "ckpt"  # Losses / Predictions pages: checkpoint file name
ALPHA = "alpha"  # Losses page: focal alpha and gamma
GAMMA = "gamma"
LOSS_VIEW = "lossview"  # Losses page: class | box | total
STAGE = "stage"  # Lesson page: the stage shown
# Predictions / Evaluate pages (CHECKPOINT above: a shipped file name, or "run:<name>" for a run's best.pt)
SCORE = "score"  # score threshold
NMS_IOU = "nms"  # NMS IoU threshold
MAX_DETS = "maxdet"  # detections kept per image
ONLY = "only"  # classes shown
EVAL_IOU = "eval_iou"  # IoU a detection needs to count as a true positive
SUBSET = "subset"  # validation images the live mAP uses
# Train page: its form fields and views use keys starting with "train_" (see pages/train.py)
RUN = "run"  # the run watched on the Train page
# Session-only keys.
SELECTION = "_dataset_selection"

KIND_CAPTIONS = {
    "demo": "built in, nothing to download",
    "voc": "a Pascal VOC folder",
    "coco": "a COCO json and its images",
}


def ensure_entrypoint() -> None:
    """Runs app.py instead when Streamlit ran this page file on its own.

    Because a folder named pages/ sits next to app.py, Streamlit starts each server process
    in its old "pages directory" mode: until the first run reaches `st.navigation`, a request
    for /browse runs pages/browse.py alone, without the sidebar or the real navigation. That
    happens when the first visitor after a start follows a deep link (and in every AppTest
    run). Running app.py here switches the process to `st.navigation` for good and renders
    the requested page inside it. Every page calls this first.
    """
    if PagesManager.uses_pages_directory:
        runpy.run_path(str(APP_DIR / "app.py"), run_name="__main__")
        st.stop()


@functools.cache
def import_in_background(module: str) -> None:
    """Starts importing a slow module on a daemon thread, once per process.

    The Browse grid needs no torchvision, the image view's augmentation preview does, and
    importing it takes about 2 s; started while the user looks at the grid, it is done before
    they open an image.
    """
    threading.Thread(target=importlib.import_module, args=(module,), name=f"import {module}", daemon=True).start()


def data_roots() -> list[Path]:
    """Folders the browser may name: $DETVIZ_DATA_ROOTS (os.pathsep-separated), else ./data."""
    env = os.environ.get("DETVIZ_DATA_ROOTS", "")
    roots = [Path(p).expanduser() for p in env.split(os.pathsep) if p.strip()]
    return roots or [APP_DIR / "data"]


def runs_dir() -> Path:
    """Where training runs live: $DETVIZ_RUNS_DIR, else runs/ in the app folder."""
    return Path(os.environ.get("DETVIZ_RUNS_DIR") or APP_DIR / "runs")


def demo_dir() -> Path:
    """Where the built-in demo dataset lives: $DETVIZ_DEMO_DIR, else data/demo in the app folder."""
    return Path(os.environ.get("DETVIZ_DEMO_DIR") or APP_DIR / "data" / "demo")


class _NoDataset(Exception):
    """Why no dataset is open; shown on the page (error) or as a hint (info)."""

    def __init__(self, message: str, level: str = "error"):
        super().__init__(message)
        self.level = level


_URL_CHECKED = "_url_checked"


def requested_params() -> dict[str, list[str]]:
    """The query parameters of the link that opened this session (empty on later runs)."""
    if st.session_state.get(_URL_CHECKED):
        return {}
    st.session_state[_URL_CHECKED] = True
    return {k: st.query_params.get_all(k) for k in st.query_params}


def report_dropped_params(requested: dict[str, list[str]], slot) -> None:
    """Says which parameters of the opening link were not valid values for their widgets.

    Streamlit drops such values silently and shows the widget's default; a link-follower
    should know their link was not honoured. Parameters equal to a widget's default are
    dropped too, and are not reported.
    """
    dropped = []
    for key, values in requested.items():
        if key not in st.session_state or st.query_params.get_all(key) == values:
            continue
        if not _same_value(values, st.session_state[key]):
            dropped.append(f"{key}={','.join(values)}")
    if dropped:
        slot.warning(
            "The link asked for " + ", ".join(dropped) + ", which "
            + ("is not a valid value" if len(dropped) == 1 else "are not valid values")
            + " here (a missing image, or a value out of range): showing the defaults instead.",
            icon=":material/link_off:",
        )  # fmt: skip


def _same_value(requested: list[str], value: object) -> bool:
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if len(values) != len(requested):
        return False
    for text, v in zip(requested, values, strict=True):
        if isinstance(v, bool):
            if text.lower() != str(v).lower():
                return False
        elif isinstance(v, (int, float)):
            try:
                number = float(text)
            except ValueError:
                return False
            # nan compares unequal to everything, so without the isfinite test "nan" would pass
            # for any value and its reset go unreported; no widget holds nan or inf
            if not math.isfinite(number) or abs(number - v) > 1e-9 * max(1.0, abs(v)):
                return False
        elif text != str(v):
            return False
    return True


def share_link(container=st) -> None:
    """A "copy link" popover with the address of this view: the page and its query parameters.

    The bound widgets' values come from the widgets, not from st.query_params: Streamlit's
    browser side sends a rerun with the address it had *before* it wrote a moved widget's value
    there, so st.query_params can lag one change behind the view.
    """
    pairs = link_params({k: st.query_params.get_all(k) for k in st.query_params}, _bound_widget_values())
    base = st.context.url or ""
    link = f"{base}?{urlencode(pairs)}" if pairs else base
    with container.popover("Copy link", icon=":material/link:"):
        st.caption("The address of this view: open it (or send it) to come back to exactly this.")
        st.code(link or "(the address appears once the page is open in a browser)", language=None, wrap_lines=True)


def link_params(query: dict[str, list[str]], widgets: dict[str, object]) -> list[tuple[str, str]]:
    """The (name, value) pairs of a link to this view: each bound widget's value (defaults too, so
    the link pins them), then the other parameters as the address has them, in address order."""
    keys = [*query, *(k for k in widgets if k not in query)]
    return [(k, v) for k in keys for v in (url_values(widgets[k]) if k in widgets else query[k])]


def url_values(value: object) -> list[str]:
    """A widget's value as Streamlit spells it in the address: one string per value (a list, a
    range), none for no value (None, "", []); true/false; 5.0 as 5."""
    if isinstance(value, (list, tuple)):
        return [text for item in value for text in url_values(item)]
    if value is None or value == "":
        return []
    if isinstance(value, bool):
        return [str(value).lower()]
    if isinstance(value, float) and math.isfinite(value) and value == int(value):
        return [str(int(value))]
    return [str(value)]


def _bound_widget_values() -> dict[str, object]:
    """The current value of each widget bound to a query parameter on this page (or the sidebar)."""
    ctx = get_script_run_ctx()
    if ctx is None:
        return {}
    here = {ctx.page_script_hash, ctx.pages_manager.main_script_hash}  # not another page's leftovers
    keys = [k for k in st.session_state if isinstance(k, str)]  # read before taking the state's lock
    with ctx.session_state.query_params() as params:
        bindings = {k: params.get_binding_for_param(k) for k in keys}
    return {k: st.session_state.get(k) for k, b in bindings.items() if b is not None and b.script_hash in here}


def show_figure(fig, name: str, container=st, **kwargs):
    """st.plotly_chart with the export a user expects: the camera icon saves a PNG named after
    the figure (2x scale), and a button below saves it as a standalone HTML file (plotly.js
    inside, so it opens offline)."""
    config = {"toImageButtonOptions": {"filename": name, "scale": 2}, "displaylogo": False}
    result = container.plotly_chart(fig, key=kwargs.pop("key", name), config=config, **kwargs)
    container.download_button(
        "HTML", data=lambda: fig.to_html(include_plotlyjs=True, full_html=True), file_name=f"{name}.html",
        mime="text/html", on_click="ignore", icon=":material/download:", key=f"{name}-html", type="tertiary",
        help="Save this figure as an interactive HTML file (the camera icon on the figure saves a PNG).",
    )  # fmt: skip
    return result


def dataset_sidebar() -> None:
    """The sidebar dataset picker; stores the chosen (spec, split), or why there is none, for the pages."""
    with st.sidebar:
        st.subheader("Dataset")
        kind = st.radio(
            "Source", list(KIND_CAPTIONS), captions=list(KIND_CAPTIONS.values()), key=DATA_KIND, bind="query-params"
        )  # the option names double as URL values: ?data=voc

        try:
            spec = _pick_source(kind)
            split = _pick_split(spec) if kind != "coco" else ""
        except (_NoDataset, DataError) as e:
            st.session_state[SELECTION] = e if isinstance(e, _NoDataset) else _NoDataset(str(e))
            return
        if st.button("Reload from disk", icon=":material/refresh:", help="Read the annotation files again."):
            read_index.clear()
            load_image_cached.clear()
            thumbnail_jpeg.clear()
        st.session_state[SELECTION] = (spec, split)


def _pick_source(kind: str) -> DatasetSpec:
    roots = data_roots()
    hint = ", ".join(str(r) for r in roots)
    if kind == "demo":
        folder = demo_dir()
        if read_demo_settings(folder) is None:
            st.warning(f"The demo dataset is not in {folder} yet.")
            if st.button("Draw the demo dataset", type="primary", help="About 15 s; nothing is downloaded."):
                _draw_demo(folder)
            raise _NoDataset("The built-in demo dataset is not drawn yet: use the button in the sidebar.", "info")
        return DatasetSpec("demo", str(folder))
    if kind == "voc":
        path = st.text_input(
            "VOC folder",
            key=VOC_DIR,
            bind="query-params",
            placeholder="data/VOCdevkit/VOC2007",
            help=f"The folder holding Annotations/ and JPEGImages/, inside {hint}.",
        )
        if not path:
            raise _NoDataset("Type the path of a VOC folder in the sidebar.", "info")
        return DatasetSpec("voc", str(check_within_roots(_app_relative(path), roots)))
    json_path = st.text_input(
        "COCO json",
        key=COCO_JSON,
        bind="query-params",
        placeholder="data/pascal_train2007.json",
        help=f"A COCO-format detection json, inside {hint}.",
    )
    image_dir = st.text_input("Image folder", key=COCO_IMAGES, bind="query-params", placeholder="data/JPEGImages")
    if not json_path or not image_dir:
        raise _NoDataset("Type the COCO json file and the folder its images are in, in the sidebar.", "info")
    json_file = check_within_roots(_app_relative(json_path), roots)
    return DatasetSpec("coco", str(json_file), str(check_within_roots(_app_relative(image_dir), roots)))


def _pick_split(spec: DatasetSpec) -> str:
    splits = dataset_splits(spec)
    if not splits:
        folder = Path(spec.path)
        if not folder.is_dir():
            raise _NoDataset(f"{folder}: folder not found.")
        raise _NoDataset(f"{folder}: no split files in ImageSets/Main; add e.g. train.txt listing image ids.")
    default = splits.index("train") if "train" in splits else 0
    return st.selectbox("Split", splits, index=default, key=SPLIT, bind="query-params")


def _app_relative(path: str) -> Path:
    p = Path(path.strip()).expanduser()
    return p if p.is_absolute() else APP_DIR / p


def _draw_demo(folder: Path) -> None:
    bar = st.progress(0.0, text="Drawing the demo dataset…")

    def progress(done: int, total: int) -> None:
        bar.progress(done / total, text=f"Drawing the demo dataset… {done}/{total}")

    try:
        make_demo_dataset(folder, progress=progress)
    except (DataError, OSError) as e:
        st.error(f"Could not make the demo dataset: {e}")
        return
    st.rerun()


@st.cache_resource(show_spinner="Reading the dataset…", max_entries=8)
def read_index(spec_text: str, split: str, fingerprint: tuple) -> DatasetIndex:
    """The dataset's index, read non-strictly (broken files listed, not fatal); cached per stamp."""
    return open_dataset(spec_text, split, strict=False)


def current_index() -> DatasetIndex | None:
    """The index of the dataset picked in the sidebar, or None (the reason is already shown)."""
    selection = st.session_state.get(SELECTION)
    if isinstance(selection, _NoDataset):
        (st.info if selection.level == "info" else st.error)(str(selection))
        return None
    if selection is None:
        st.info("Choose a dataset in the sidebar.")
        return None
    spec, split = selection
    try:
        index = read_index(str(spec), split, dataset_fingerprint(spec, split))
    except (DataError, ValueError) as e:
        st.error(str(e))
        return None
    if len(index) == 0:
        st.error(
            f"{index.source}: no readable images"
            + (f"; {len(index.problems)} files are broken." if index.problems else ".")
        )
        _show_notes(index)
        return None
    _show_notes(index)
    return index


def _show_notes(index: DatasetIndex) -> None:
    if index.problems:
        st.error(f"{len(index.problems)} image(s) skipped: their annotation or image file is broken.")
        with st.expander("Broken files"):
            st.code("\n".join(index.problems[:200]), language=None, wrap_lines=True)
    if index.warnings:
        with st.expander(f"{len(index.warnings)} note(s) from reading the annotations"):
            st.code("\n".join(index.warnings[:200]), language=None, wrap_lines=True)


@st.cache_resource(max_entries=64)
def load_image_cached(path: str, width: int, height: int, stamp: tuple[int, int]) -> Image.Image:
    return load_image(path, (width, height))


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
    thumb = render_thumbnail(
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
    boxes: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    dashed: torch.Tensor | None = None,
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
