"""UI helpers of the detection pages: the anchor configuration, images, checkpoints, caches."""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import streamlit as st
import torch
from PIL import Image, ImageDraw
from torch import Tensor

from detviz.anchors import PRESETS, AnchorConfig, Anchors, config_text, make_anchors, parse_anchor_text
from detviz.coverage import Coverage, anchor_coverage
from detviz.data import VOC_CLASSES, DataError, DatasetIndex
from detviz.data.spec import dataset_fingerprint
from detviz.data.voc import file_stamp
from detviz.evaluate import DatasetSweep, sweep_dataset
from detviz.inference import Detector, NonFiniteOutputs
from detviz.models import DETECTOR_KINDS, CheckpointError, compatibility_problems
from detviz.postprocess import DEFAULT_NMS_IOU
from detviz.train import TrainConfig
from detviz.train.runs import list_runs
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
        config = parse_anchor_text(grids, zooms, shapes)
        anchors_of(config)  # make_anchors refuses boxes that are not finite or absurd (zoom 1e30)
    except ValueError as e:
        st.error(f"{e} Showing lesson_multiscale instead.")
        return PRESETS["lesson_multiscale"], "lesson_multiscale"
    return config, "custom"


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


RUN_PREFIX = "run:"  # ?ckpt=run:<name>: the best checkpoint of that training run
UPLOAD = "upload a checkpoint…"


def _run_bests() -> dict[str, tuple[Path, object]]:
    """Every run with a best checkpoint, as "run:<name>" -> (best.pt, the model kind its config names)."""
    default = TrainConfig().model  # what a config.json without "model" trained
    return {
        RUN_PREFIX + run.name: (run.path / "checkpoints" / "best.pt",
                                run.config.get("model", default) if isinstance(run.config, dict) else None)
        for run in list_runs(ui.runs_dir())
        if (run.path / "checkpoints" / "best.pt").is_file()
    }  # fmt: skip


def run_checkpoints() -> dict[str, Path]:
    """Best checkpoints of the training runs that trained a detector, as "run:<name>", newest first."""
    return {name: best for name, (best, kind) in _run_bests().items() if kind in DETECTOR_KINDS}


def checkpoint_picker(container=st) -> tuple[str, Path] | None:
    """A checkpoint: shipped, a run's best.pt, or uploaded (loaded safely: tensors only, no code).

    Bound to ?ckpt= (an upload cannot be in a link). Returns (shown name, file) or None.
    """
    runs = _run_bests()
    options = shipped_checkpoints() | {name: best for name, (best, kind) in runs.items() if kind in DETECTOR_KINDS}
    wanted = st.query_params.get(ui.CHECKPOINT, "")
    if wanted in runs and wanted not in options:  # a link to a classifier run (Streamlit drops the value)
        container.warning(f"{wanted} is a {runs[wanted][1]} model, not a detector: this page shows "
                          f"{' and '.join(DETECTOR_KINDS)} models only; choose one of those.")  # fmt: skip
    choice = container.selectbox(
        "Checkpoint", [*options, UPLOAD], key=ui.CHECKPOINT, bind="query-params",
        help="The checkpoints in checkpoints/, the best checkpoint of each training run, or a file of yours.",
    )  # fmt: skip
    if choice != UPLOAD:
        return choice, options[choice]
    upload = container.file_uploader("Checkpoint file", type=["pt", "pth"], key="checkpoint-upload",
                                     help="A detviz checkpoint. Only tensors and plain data are read; "
                                          "a file carrying Python objects is refused.")  # fmt: skip
    if upload is None:
        container.info("Choose a .pt file made by detviz (`python -m detviz.train`).")
        return None
    data = upload.getvalue()
    folder = Path(tempfile.gettempdir()) / "detviz-uploads"
    folder.mkdir(exist_ok=True)
    path = folder / f"{hashlib.sha256(data).hexdigest()[:24]}.pt"
    if not path.is_file():
        path.write_bytes(data)
    return upload.name, path


@st.cache_resource(max_entries=4, show_spinner="Loading the model…")
def _detector(path: str, stamp: tuple[int, int]) -> Detector:
    return Detector.from_checkpoint(path)


def detector_of(path: Path, name: str | None = None) -> Detector | None:
    """A Detector for the checkpoint (cached per file and modification time), or None after an
    error, shown with the checkpoint's `name` in place of its (temporary) path."""
    try:
        return _detector(str(path), file_stamp(path))
    except (OSError, CheckpointError) as e:
        st.error(
            model_error(e, path, name) if isinstance(e, CheckpointError) else f"{name or path}: {e.strerror or e}."
        )
        return None


@st.cache_resource(max_entries=32, show_spinner=False)
def _raw_outputs(path: str, stamp: tuple[int, int], image_key: tuple, _image: Image.Image) -> tuple[Tensor, Tensor]:
    return _detector(path, stamp).raw_outputs([_image])


def raw_outputs(path: Path, image: Image.Image) -> tuple[Tensor, Tensor]:
    """The checkpoint's head outputs for the image: class_logits (1, A, C+1), box_activations (1, A, 4).

    Cached per checkpoint file (path and modification stamp) and image content, never per
    loaded model object: the model cache keeps a few, and a dropped model's id() is reused.

    Raises:
        NonFiniteOutputs: the checkpoint's weights give NaN or inf.
    """
    image_key = (image.mode, image.size, hashlib.sha1(image.tobytes()).hexdigest())
    return _raw_outputs(str(path), file_stamp(path), image_key, image)


def model_error(error: Exception, path: Path | str, name: str | None) -> str:
    """The error's message with the checkpoint's shown `name` in place of its (temporary) path."""
    return str(error).replace(str(path), name) if name else str(error)


def fits_dataset(detector: Detector, index: DatasetIndex, name: str) -> bool:
    """Whether the checkpoint predicts the dataset's classes; says why not."""
    problems = compatibility_problems(detector.info, class_names=index.classes)
    if problems:
        st.error(f"{name} was trained on other classes than this dataset has ({'; '.join(problems)}): its "
                 "detections are shown with its own class names, but nothing can be scored against this "
                 "ground truth. Choose a dataset with its classes in the sidebar.")  # fmt: skip
    return not problems


NMS_STEPS = tuple(round(0.05 * k, 2) for k in range(1, 21))  # the NMS slider's values
LIVE_FLOOR = 0.01  # the lowest score threshold the live pages offer; candidates below it are not kept
SUBSETS = {"first 100 images": 100, "first 500 images": 500, "all images": 1 << 30}  # URL values of ?subset=


LiveSet = DatasetSweep  # a model's outputs over (part of) the sidebar's dataset: sweep, index, sizes, unreadable


@st.cache_resource(max_entries=4, show_spinner=False)
def _live_set(path: str, stamp: tuple, spec: str, split: str, fingerprint: tuple, limit: int) -> LiveSet:
    full = ui.read_index(spec, split, fingerprint)
    live = sweep_dataset(_detector(path, stamp), full.subset(list(range(min(limit, len(full))))), floor=LIVE_FLOOR)
    live.sweep.kept_by_nms(DEFAULT_NMS_IOU)  # the first view's NMS, here under the spinner
    # the other values the NMS slider offers, nearest first, while the user looks at the first
    # result: a move to any of them then costs no NMS (about 1 s for 500 images on a laptop)
    others = sorted(NMS_STEPS, key=lambda v: abs(v - DEFAULT_NMS_IOU))
    stop = threading.Event()
    thread = threading.Thread(target=live.sweep.warm, args=(others, stop), name="warm NMS", daemon=True)
    _WARMING.append((thread, stop))
    thread.start()
    return live


_WARMING: list[tuple[threading.Thread, threading.Event]] = []  # warm-up threads not stopped yet, with their stop flag


@atexit.register
def stop_warming(timeout: float = 30.0) -> int:
    """Stops the NMS warm-up threads started so far and waits for each to finish its current NMS
    call; returns how many were stopped. Runs at exit (a daemon thread inside a torch call when
    the interpreter goes away aborts the process) and after each test (none outlives its test)."""
    stopped = 0
    while _WARMING:
        thread, stop = _WARMING.pop()
        stop.set()
        thread.join(timeout)
        stopped += 1
    return stopped


def live_set(path: Path, limit: int, name: str | None = None) -> LiveSet | None:
    """The checkpoint's outputs over the first `limit` images of the sidebar dataset (computed
    once per checkpoint, dataset and subset, then shared by the pages), or None after showing why
    not (no dataset; outputs that are not finite, named after the checkpoint's shown `name`)."""
    selection = st.session_state.get(ui.SELECTION)
    if not isinstance(selection, tuple):
        return None
    spec, split = selection
    fingerprint = dataset_fingerprint(spec, split)
    n = min(limit, len(ui.read_index(str(spec), split, fingerprint)))
    try:
        with st.spinner(f"Running the model over {n} images of {split or 'the data'} (once per checkpoint)…"):
            live = _live_set(str(path), file_stamp(path), str(spec), split, fingerprint, limit)
    except NonFiniteOutputs as e:  # NaN weights: nothing to score (not cached: a fixed file is read again)
        st.error(model_error(e, path, name))
        return None
    if live.unreadable:
        st.warning(f"{len(live.unreadable)} image file(s) could not be read and count as having no detections: "
                   + ", ".join(live.unreadable[:5]) + ("…" if len(live.unreadable) > 5 else ""))  # fmt: skip
    return live


def subset_picker(container=st) -> int:
    """How many images the live mAP uses (?subset=)."""
    choice = container.selectbox("Images scored", list(SUBSETS), index=0, key=ui.SUBSET, bind="query-params",
                                 help="The live mAP runs the model once over these images of the sidebar's "
                                      "split, then re-scores them at every slider move.")  # fmt: skip
    return SUBSETS[choice]


def threshold_sliders(classes: list[str], default_score: float = 0.25) -> tuple[float, float, int, float, list[int]]:
    """Score threshold, NMS IoU, max detections, evaluation IoU and the classes shown, bound to the URL."""
    c = st.columns([1, 1, 1, 1, 2])
    score = c[0].slider("Score threshold", LIVE_FLOOR, 0.99, default_score, 0.01, key=ui.SCORE, bind="query-params",
                        help="Candidates scoring at or below this are dropped before NMS.")  # fmt: skip
    nms = c[1].slider("NMS IoU", NMS_STEPS[0], NMS_STEPS[-1], DEFAULT_NMS_IOU, 0.05, key=ui.NMS_IOU, bind="query-params",
                      help="A box overlapping a better box of its class by more than this is suppressed "
                           "(1: no suppression).")  # fmt: skip
    max_dets = c[2].slider("Max detections", 1, 200, 100, 1, key=ui.MAX_DETS, bind="query-params",
                           help="Detections kept per image, best first.")  # fmt: skip
    eval_iou = c[3].slider("Evaluation IoU", 0.1, 0.95, 0.5, 0.05, key=ui.EVAL_IOU, bind="query-params",
                           help="A detection is a true positive above this IoU with an object of its class.")  # fmt: skip
    only = c[4].multiselect("Classes", classes, key=ui.ONLY, bind="query-params", placeholder="all classes",
                            help="Show and score only these classes.")  # fmt: skip
    # slider floats (0.15000000000000002) rounded to the values offered: the NMS cache is keyed on them
    return round(score, 2), round(nms, 2), max_dets, round(eval_iou, 2), [classes.index(n) for n in only]
