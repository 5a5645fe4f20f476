"""The dataset picker (one, used by the sidebar and by the Train form), the app's folders, the
dataset the sidebar chose, and the image picker of the detection pages."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import streamlit as st
from PIL import Image, ImageDraw

from detviz.data import VOC_CLASSES, DataError, DatasetIndex
from detviz.data.demo import make_demo_dataset, read_demo_settings
from detviz.data.spec import (
    KINDS,
    DatasetSpec,
    check_within_roots,
    dataset_fingerprint,
    dataset_splits,
    default_demo_dir,
)
from detviz.data.split import DEFAULT_VAL_FRACTION, make_splits
from detviz.data.voc import ALL_SPLIT, list_voc_splits
from pages.ui import access, cache, keys

if TYPE_CHECKING:  # the dataset picker imports no torch (a fresh server's first page); pictures do, when made
    from torch import Tensor

    from detviz.matching import Match

APP_DIR = Path(__file__).resolve().parents[2]

KIND_CAPTIONS = {
    "demo": "built in, nothing to download",
    "voc": "a Pascal VOC folder",
    "coco": "a COCO json and its images",
}


def app_path(text: str | Path) -> Path:
    """A path typed in the app or set in the environment; a relative one is taken in the app folder."""
    path = Path(str(text).strip()).expanduser()
    return path if path.is_absolute() else APP_DIR / path


def data_roots() -> list[Path]:
    """Folders the browser may name: $DETVIZ_DATA_ROOTS (os.pathsep-separated), else ./data."""
    env = os.environ.get("DETVIZ_DATA_ROOTS", "")
    roots = [Path(p).expanduser() for p in env.split(os.pathsep) if p.strip()]
    return roots or [APP_DIR / "data"]


def demo_dir() -> Path:
    """Where the built-in demo dataset lives: detviz's default ($DETVIZ_DEMO_DIR, else data/demo),
    a relative one taken in the app folder."""
    return app_path(default_demo_dir())


class NoDataset(Exception):
    """Why no dataset is open; shown on the page (error) or as a hint (info)."""

    def __init__(self, message: str, level: str = "error"):
        super().__init__(message)
        self.level = level


@dataclass(frozen=True)
class Picker:
    """One place the dataset picker is shown: what its widget keys start with (the keys are also
    the query parameters: ?data=voc, ?train_data=voc), what it picks for ("Type the VOC folder
    in the sidebar.") and whether it offers to draw a missing demo dataset."""

    prefix: str
    purpose: str
    draws_demo: bool = False


SIDEBAR = Picker("", "in the sidebar", draws_demo=True)
# The pages (url paths) that score a model against the ground truth: opened without ?split=, they
# take VAL_SPLIT, the images a model did not train on (the others keep train).
SCORING_PAGES = ("predictions", "evaluate")
VAL_SPLIT = "val"


def pick_kind(picker: Picker, container=st) -> str:
    """The source radio: demo, voc or coco (the option names double as URL values: ?data=voc).
    In classroom mode demo only (a link's ?data=voc is dropped and said so), with the lock line."""
    kinds = ("demo",) if access.read_only() else KINDS
    kind = container.radio(
        "Source", kinds, captions=[KIND_CAPTIONS[k] for k in kinds], key=picker.prefix + keys.DATA_KIND,
        bind="query-params",
    )  # fmt: skip
    if len(kinds) < len(KINDS):
        access.lock_note("opening other datasets", container)
    return kind


def pick_source(kind: str, picker: Picker, columns=(st, st)) -> DatasetSpec:
    """The paths of a `kind` dataset, typed in `columns` (the first: the folder or json, the
    second: a COCO image folder), checked to lie inside data_roots().

    Raises:
        NoDataset: nothing typed yet, or the demo dataset is not drawn yet.
        DataError: a path outside the data roots, or missing.
    """
    roots = data_roots()
    hint = ", ".join(str(r) for r in roots)
    if kind != "demo" and access.refuse_if_read_only(f"Opening a {kind} dataset by path", columns[0]):
        kind = "demo"  # the built-in set, the one dataset a classroom server opens
    if kind == "demo":
        folder = demo_dir()
        if read_demo_settings(folder) is None:
            if picker.draws_demo:
                _offer_demo(folder, columns[0])
            how = "`make demo-data` draws it" if access.read_only() else "draw it with the button in the sidebar"
            raise NoDataset(f"The built-in demo dataset is not drawn yet in {folder}: {how} (Source: demo).", "info")
        return DatasetSpec("demo", str(folder))
    if kind == "voc":
        path = _path_input(columns[0], "VOC folder", picker.prefix + keys.VOC_DIR, "data/VOCdevkit/VOC2007",
                           f"The folder holding Annotations/, JPEGImages/ and ImageSets/Main/, inside {hint}.")  # fmt: skip
        if not path:
            raise NoDataset(f"Type the VOC folder {picker.purpose}.", "info")
        return DatasetSpec("voc", str(check_within_roots(app_path(path), roots)))
    json_path = _path_input(columns[0], "COCO json", picker.prefix + keys.COCO_JSON, "data/pascal_train2007.json",
                            f"A COCO-format detection json, inside {hint}.")  # fmt: skip
    image_dir = _path_input(columns[1], "Image folder", picker.prefix + keys.COCO_IMAGES, "data/JPEGImages",
                            f"The folder the json's file names are relative to, inside {hint}.")  # fmt: skip
    if not json_path or not image_dir:
        raise NoDataset(f"Type the COCO json and its image folder {picker.purpose}.", "info")
    json_file = check_within_roots(app_path(json_path), roots)
    images = check_within_roots(app_path(image_dir), roots)
    if not json_file.is_file():
        raise DataError(f"{json_file}: no such file.")
    if not images.is_dir():
        raise DataError(f"{images}: no such folder.")
    return DatasetSpec("coco", str(json_file), str(images))


def _path_input(container, label: str, key: str, placeholder: str, help: str) -> str:
    """A path text field bound to the URL; its text without surrounding blanks."""
    return container.text_input(label, key=key, bind="query-params", placeholder=placeholder, help=help).strip()


def pick_split(spec: DatasetSpec, picker: Picker, container=st, label: str = "Split", prefer: str = "train") -> str:
    """The split of a demo or VOC dataset (first choice: `prefer` when it has one, else train).

    Until the user picks a split (or the opening link names one), it follows the first choice of
    the page shown: opened on Overview (train), then Predictions shows val.

    Raises:
        NoDataset: the folder is missing, or has neither split files nor Annotations/.
    """
    splits = dataset_splits(spec)
    if not splits:
        folder = Path(spec.path)
        if not folder.is_dir():
            raise NoDataset(f"{folder}: folder not found.")
        raise NoDataset(f"{folder}: no split files in ImageSets/Main and no Annotations/ folder; "
                        "a VOC folder holds Annotations/ (one .xml per image) and JPEGImages/.")  # fmt: skip
    default = next((splits.index(s) for s in (prefer, "train") if s in splits), 0)
    key = picker.prefix + keys.SPLIT
    chosen = keys.SPLIT_CHOSEN + key
    if key not in st.session_state and key in st.query_params:  # the opening link chose it
        st.session_state[chosen] = True
    if not st.session_state.get(chosen) and st.session_state.get(key, splits[default]) != splits[default]:
        st.session_state[key] = splits[default]  # another page's first choice: this page's instead
    return container.selectbox(label, splits, index=default, key=key, bind="query-params",
                               on_change=lambda: st.session_state.update({chosen: True}))  # fmt: skip


def dataset_sidebar(page: str = "") -> None:
    """The sidebar dataset picker; stores the chosen (spec, split), or why there is none, for the pages.

    page: the url path of the page about to run; on SCORING_PAGES the split's first choice is val.
    """
    access.warn_if_misconfigured()
    with st.sidebar:
        st.subheader("Dataset")
        kind = pick_kind(SIDEBAR)
        try:
            spec = pick_source(kind, SIDEBAR)
            prefer = VAL_SPLIT if page in SCORING_PAGES else "train"
            split = pick_split(spec, SIDEBAR, prefer=prefer) if kind != "coco" else ""
        except (NoDataset, DataError) as e:
            st.session_state[keys.SELECTION] = e if isinstance(e, NoDataset) else NoDataset(str(e))
            return
        if spec.kind == "voc" and not list_voc_splits(spec.path):
            _offer_splits(Path(spec.path))
        if st.button("Reload from disk", icon=":material/refresh:", help="Read the annotation files again."):
            cache.read_index.clear()
            cache.load_image_cached.clear()
            cache.thumbnail_jpeg.clear()
        st.session_state[keys.SELECTION] = (spec, split)


def _offer_demo(folder: Path, container) -> None:
    """Says the demo dataset is missing, with a button that draws it (in classroom mode: the command)."""
    container.warning(f"The demo dataset is not in {folder} yet.")
    if access.read_only():
        access.lock_note("drawing the demo dataset", container)
    elif container.button("Draw the demo dataset", type="primary", help="About 15 s; nothing is downloaded."):
        _draw_demo(folder)


def _draw_demo(folder: Path) -> None:
    if access.refuse_if_read_only("Drawing the demo dataset"):
        return
    bar = st.progress(0.0, text="Drawing the demo dataset…")

    def progress(done: int, total: int) -> None:
        bar.progress(done / total, text=f"Drawing the demo dataset… {done}/{total}")

    try:
        make_demo_dataset(folder, progress=progress)
    except (DataError, OSError) as e:
        st.error(f"Could not make the demo dataset: {e}")
        return
    st.rerun()


def _offer_splits(folder: Path, container=st) -> None:
    """For a VOC folder without split files: says "all" holds every image, with a button that
    writes train/val (as `python -m detviz.data.split` does); in classroom mode the lock line."""
    container.caption(f"No split files in ImageSets/Main: the split {ALL_SPLIT!r} holds every annotated image.")
    if access.read_only():
        access.lock_note("making split files", container)
    elif container.button("Make train/val splits", icon=":material/call_split:",
                          help=f"Writes ImageSets/Main/train.txt and val.txt: {DEFAULT_VAL_FRACTION:.0%} of the "
                          "images for val, stratified by class, seed 0."):  # fmt: skip
        make_splits_in(folder)


def make_splits_in(folder: Path) -> dict[str, list[str]] | None:
    """The Make-splits button's handler: make_splits(folder) with the defaults; the splits written,
    or None (refused in classroom mode, or the error shown)."""
    if access.refuse_if_read_only("Making split files"):
        return None
    try:
        splits = make_splits(folder, DEFAULT_VAL_FRACTION, seed=0)
    except (DataError, OSError) as e:
        st.error(f"Could not make the splits: {e}")
        return None
    st.toast(f"Wrote train.txt ({len(splits['train'])} images) and val.txt ({len(splits['val'])} images).")
    st.rerun()
    return splits


def current_index() -> DatasetIndex | None:
    """The index of the dataset picked in the sidebar, or None (the reason is already shown)."""
    selection = st.session_state.get(keys.SELECTION)
    if isinstance(selection, NoDataset):
        (st.info if selection.level == "info" else st.error)(str(selection))
        return None
    if selection is None:
        st.info("Choose a dataset in the sidebar.")
        return None
    spec, split = selection
    try:
        index = cache.read_index(str(spec), split, dataset_fingerprint(spec, split))
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
    if index.class_note:
        st.info(index.class_note, icon=":material/info:")
    if index.problems:
        st.error(f"{len(index.problems)} image(s) skipped: their annotation or image file is broken.")
        with st.expander("Broken files"):
            st.code("\n".join(index.problems[:200]), language=None, wrap_lines=True)
    if index.warnings:
        with st.expander(f"{len(index.warnings)} note(s) from reading the annotations"):
            st.code("\n".join(index.warnings[:200]), language=None, wrap_lines=True)


# --- one image of the dataset, or the lesson's example ---------------------------------------

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
    boxes: Tensor
    labels: Tensor
    difficult: Tensor
    classes: list[str]

    @property
    def normalized(self) -> Tensor:
        from detviz.boxes import to_normalized_boxes

        return to_normalized_boxes(self.boxes, *self.image.size)


OWN_IMAGE_TYPES = ["jpg", "jpeg", "png", "bmp", "webp", "tif", "tiff"]
DATASET_IMAGE = "the dataset's image"  # the first choice of own_picture's selector


def own_picture(classes: list[str]) -> Picture | None:
    """An image of the user's own, uploaded, shown without ground truth (None: the dataset's image).

    In classroom mode there is no uploader, only the lock line. A file that is no readable image
    is named in st.error and the dataset's image is shown instead."""
    with st.expander("Your own images (no ground truth)", expanded=bool(st.session_state.get(keys.IMAGE_UPLOAD))):
        if access.read_only():
            access.lock_note("uploading images", full=True)
            return None
        files = st.file_uploader("Images", type=OWN_IMAGE_TYPES, accept_multiple_files=True, key=keys.IMAGE_UPLOAD,
                                 help="Seen by the model as any dataset image; nothing is stored.")  # fmt: skip
        if not files:
            return None
        names = [f.name for f in files]
        shown = st.selectbox("Show", [DATASET_IMAGE, *names], index=1, key=keys.OWN_IMAGE)
    if shown == DATASET_IMAGE or shown not in names:
        return None
    upload = files[names.index(shown)]
    try:
        image = cache.uploaded_image(upload.getvalue(), upload.name)
    except DataError as e:
        st.error(f"{e} Showing the dataset's image instead.")
        return None
    st.caption(f"Showing {upload.name} ({image.width} x {image.height} px), not the Image chosen above: without "
               "ground truth its detections are coloured by class and not scored.")  # fmt: skip
    import torch

    empty = torch.zeros(0, dtype=torch.int64)
    return Picture(upload.name, image, torch.zeros(0, 4), empty, empty.bool(), list(classes))


@st.cache_resource
def lesson_example() -> Picture:
    """The lesson's image-7 boxes on a plain 224 x 224 canvas (the photograph is not ours to ship).

    Cached so that every rerun gets the same image object (cache.image_uri remembers it by object).
    """
    import torch

    image = Image.new("RGB", (LESSON_SIZE, LESSON_SIZE), (236, 232, 222))
    draw = ImageDraw.Draw(image)
    boxes = torch.tensor(LESSON_BOXES_YX)[:, [1, 0, 3, 2]] * LESSON_SIZE
    for box, shade in zip(boxes.tolist(), ((205, 170, 125), (160, 120, 90), (120, 140, 170)), strict=True):
        draw.rectangle(box, fill=shade)
    return Picture(
        LESSON_EXAMPLE, image, boxes, torch.tensor(LESSON_LABELS), torch.zeros(3, dtype=torch.bool), list(VOC_CLASSES)
    )


def lesson_numbers(match: Match, threshold: float) -> None:
    """The lesson example's matching on the 4x4 grid beside the numbers the lesson printed: each
    object's best anchor IoU and the positive anchors (it used threshold 0.5)."""
    best = [round(v, 4) for v in match.iou.max(1).values.tolist()]
    positives = match.positive.nonzero().flatten().tolist()
    st.markdown(f"Best IoU per object here: {best}; the lesson printed {list(LESSON_BEST_IOU)}.  \n"
                f"Positive anchors here: {positives}; the lesson printed {list(LESSON_POSITIVES)} "
                f"(with threshold 0.5; this uses {threshold:g}).")  # fmt: skip
    same = positives == list(LESSON_POSITIVES) and all(
        abs(a - b) < 1e-3 for a, b in zip(best, LESSON_BEST_IOU, strict=True)
    )
    (st.success if same else st.warning)(
        "The same as the lesson." if same else "Different from the lesson's numbers at this threshold (it used 0.5)."
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
    if keys.IMAGE in st.session_state and st.session_state[keys.IMAGE] not in ids:
        st.session_state[keys.IMAGE] = ids[0]  # left by another page: Browse's "no image", another split's image
    image_id = st.selectbox("Image", ids, key=keys.IMAGE, bind="query-params")
    if image_id == LESSON_EXAMPLE:
        return lesson_example()
    record = index[index.position_of(image_id)]
    try:
        image = cache.record_image(record)
    except DataError as e:
        st.error(str(e))
        return None
    return Picture(image_id, image, record.boxes, record.labels, record.difficult, index.classes)
