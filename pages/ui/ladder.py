"""The lesson walkthrough's models: one per stage (detviz.ladder), shipped in checkpoints/ or
trained from the page, each loaded, checked against its stage and the image's classes, and
scored on the validation split (cached per file and dataset, so a class pays once).

Every problem is said on the page (st.info / st.warning / st.error) and gives None: the stage
then explains itself with the targets alone.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, NamedTuple

import streamlit as st
import torch
from torch import Tensor

from detviz.checkpoints import CheckpointError
from detviz.data import DataError, DatasetIndex
from detviz.data.demo import read_demo_settings
from detviz.data.spec import DatasetSpec, dataset_fingerprint, dataset_splits
from detviz.data.voc import file_stamp
from detviz.ladder import LadderMetricsError, StageModel, read_ladder_metrics, recorded_metric
from detviz.models import compatibility_problems
from detviz.train import TrainConfig
from detviz.train.runs import launch, list_runs
from pages.ui import access, keys
from pages.ui.cache import read_index
from pages.ui.data import Picture, demo_dir
from pages.ui.models import _run_bests, checkpoint_dir, runs_dir

# "Train this stage now": a minute or two on a laptop CPU; the shipped files used the full recipe
# of detviz.train.demo_checkpoint. The run name starts with LESSON_RUN so the stage finds its runs.
LESSON_RUN = "lesson-"
QUICK = {"image_size": 128, "batch_size": 16, "epochs": 4, "lr": 3e-3, "workers": 0, "augment": False}
QUICK_ANCHORS = {"ssd": "lesson_4x4", "ssd-multiscale": "lesson_multiscale"}


@st.cache_resource(max_entries=8, show_spinner="Loading the model…")
def _load(path: str, stamp: tuple[int, int]) -> Any:
    from detviz.inference import load_predictor

    return load_predictor(path)


def _runs_of(kind: str) -> dict[str, Path]:
    """Best checkpoints of this kind's training runs, as "run:<name>", newest first."""
    return {name: best for name, (best, run_kind) in _run_bests().items() if run_kind == kind}


def stage_model(stage: StageModel, picture: Picture | None, key: str) -> tuple[str, Any] | None:
    """The model a stage shows: its shipped file, or a run's best.pt of the stage's kind (a
    selectbox when there is a choice). None, said why, when there is none, it is of another
    kind, or it knows other classes than the picture's."""
    options = {stage.file: checkpoint_dir() / stage.file} if (checkpoint_dir() / stage.file).is_file() else {}
    options |= _runs_of(stage.kind)
    if not options:
        st.info(f"No {stage.kind} model to show: `{stage.file}` is not in checkpoints/ (`make lesson-checkpoints` "
                "trains it) and no run trained one. The stage shows the targets only.")  # fmt: skip
        return None
    name = next(iter(options))
    if len(options) > 1:
        name = st.selectbox("Model", list(options), key=key, help="The shipped model, or a run's best checkpoint.")
    path = options[name]
    try:
        predictor = _load(str(path), file_stamp(path))
    except (OSError, CheckpointError) as e:
        st.error(f"{name}: {str(e).replace(str(path), name)}")
        return None
    kind = predictor.info.model.kind
    if kind != stage.kind:
        st.error(f"{name} is a {kind} model; this stage shows a {stage.kind} model. Put the right file in "
                 f"checkpoints/ (`make lesson-checkpoints`) or train this stage below.")  # fmt: skip
        return None
    if picture is not None:
        problems = compatibility_problems(predictor.info, class_names=picture.classes)
        if problems:
            st.warning(f"{name} was trained on other classes than this image's dataset ({'; '.join(problems)}): "
                       "its predictions would mean nothing here. Choose the demo dataset (or an image of it) "
                       "to see the model; the targets are shown below.")  # fmt: skip
            return None
    return name, predictor


class ValSplit(NamedTuple):
    """The images a stage's model is scored on: the index, the split's name, and what identifies
    them in caches (spec, split, files' fingerprint)."""

    index: DatasetIndex
    split: str
    key: tuple


def val_index() -> ValSplit | None:
    """The sidebar dataset's validation split (the split shown when it has none)."""
    selection = st.session_state.get(keys.SELECTION)
    if selection is None:
        return None
    spec, split = selection
    if spec.kind != "coco" and "val" in dataset_splits(spec):
        split = "val"
    try:
        fingerprint = dataset_fingerprint(spec, split)
        return ValSplit(read_index(str(spec), split, fingerprint), split or "all", (str(spec), split, fingerprint))
    except (DataError, OSError, ValueError) as e:
        st.error(str(e))
        return None


@st.cache_resource(max_entries=16, show_spinner="Scoring the model on the validation images…")
def _largest_run(key: tuple, _predictor: Any, _index: DatasetIndex):
    from detviz.evaluate.stages import score_largest

    return score_largest(_predictor, _index)


@st.cache_resource(max_entries=16, show_spinner="Scoring the model on the validation images…")
def _multilabel_run(key: tuple, _predictor: Any, _index: DatasetIndex) -> tuple[Tensor, Tensor]:
    from detviz.evaluate.stages import score_multilabel

    _, probabilities, targets = score_multilabel(_predictor, _index)
    return probabilities, targets


@st.cache_resource(max_entries=16, show_spinner="Scoring the model on the validation images…")
def _detector_map(key: tuple, _predictor: Any, _index: DatasetIndex) -> float:
    from detviz.evaluate import detect_dataset, voc_map

    detections = detect_dataset(_predictor, _index, score_threshold=0.01)
    return voc_map(detections, _index, _index.num_classes, method="all").map


def scored(what: str, predictor: Any, val: ValSplit) -> Any:
    """The predictor's result on the val images (`what`: "largest" -> LargestObjectRun,
    "multilabel" -> (probabilities, targets), "map" -> all-point VOC mAP@0.5), cached per
    checkpoint file and dataset; None after an error, shown."""
    run = {"largest": _largest_run, "multilabel": _multilabel_run, "map": _detector_map}[what]
    path = Path(predictor.info.path)
    demo = _demo_settings(val)
    if what == "map" and demo is not None:
        card = checkpoint_dir() / "metrics.json"
        recorded = _recorded(str(path), file_stamp(path), str(card), file_stamp(card), demo)
        if recorded is not None:  # measured on these very images when the file was made (model card)
            return recorded
    try:
        return run((str(path), file_stamp(path), *val.key), predictor, val.index)
    except (DataError, OSError, ValueError) as e:
        st.error(f"Scoring on the validation images failed: {e}")
        return None


def _demo_settings(val: ValSplit) -> dict | None:
    """The demo.json settings of the sidebar dataset when it is a demo set scored on its val split."""
    spec = st.session_state[keys.SELECTION][0]
    if spec.kind != "demo" or val.split != "val":
        return None
    settings = read_demo_settings(spec.path or demo_dir())
    return dataclasses.asdict(settings) if settings is not None else None


@st.cache_data(max_entries=64, show_spinner=False)
def _recorded(path: str, stamp: tuple[int, int], metrics: str, card_stamp: tuple, demo: dict) -> float | None:
    try:
        return recorded_metric(read_ladder_metrics(metrics), path, "map_all", demo)
    except LadderMetricsError:
        return None


def ladder_metrics() -> dict[str, dict[str, Any]]:
    """checkpoints/metrics.json by file (measured when the ladder was trained); {} after an error, shown."""
    try:
        return read_ladder_metrics(checkpoint_dir() / "metrics.json")
    except LadderMetricsError as e:
        st.error(str(e))
        return {}


def _run_prefix(stage: StageModel) -> str:
    """What the names of the stage's quick runs start with: "lesson-largest-", "lesson-4x4_bce-", ..."""
    return f"{LESSON_RUN}{Path(stage.file).stem.removeprefix('lesson_')}-"


def train_stage_now(stage: StageModel, picture: Picture | None) -> None:
    """A "Train this stage now" button (a small run of the stage's model on the sidebar dataset,
    the Train page's launcher) and the epoch scrubber of the newest such run. In classroom mode
    the lock line stands for the button; the teacher's runs still show."""
    from pages.ui.snapshots import epoch_scrubber

    selection = st.session_state.get(keys.SELECTION)
    prefix = _run_prefix(stage)
    tag = prefix.removeprefix(LESSON_RUN).removesuffix("-")
    runs = [r for r in list_runs(runs_dir()) if r.name.startswith(prefix)]
    locked = access.read_only()
    label = f"Train this stage now ({QUICK['epochs']} epochs at {QUICK['image_size']} px, a minute or two on a CPU)"
    with st.expander("Watch this stage learn" if locked else f"{label} and watch it learn", expanded=bool(runs)):
        if locked:
            access.lock_note("training from the page", full=True)
        elif selection is None:
            st.info("Choose a dataset in the sidebar first.")
            return
        elif st.button("Train this stage now", key=f"lesson-train-{tag}", icon=":material/play_arrow:"):
            if launch_stage(stage, *selection) is None:
                return
            runs = [r for r in list_runs(runs_dir()) if r.name.startswith(prefix)]
        if runs:
            st.caption(f"Run {runs[0].name}: {runs[0].state}.")
            epoch_scrubber(runs[0].path, key=f"lesson-scrub-{tag}", height=380)


def launch_stage(stage: StageModel, spec: DatasetSpec, split: str) -> str | None:
    """Starts a quick run (QUICK) of the stage's model on the dataset `spec` (its split; "" for a
    COCO json) and says so; returns the run's name, or None after a refusal or an error, shown."""
    if access.refuse_if_read_only("Training this stage"):
        return None
    name = f"{_run_prefix(stage)}{time.strftime('%Y%m%d-%H%M%S')}"
    config = TrainConfig(data=str(spec), train_split=split or "train", model=stage.kind, name=name,
                         anchors=QUICK_ANCHORS.get(stage.kind, ""), loss="bce" if "bce" in stage.file else "focal",
                         out=str(runs_dir()), **QUICK)  # fmt: skip
    try:
        launch(config, runs_dir(), name)
    except (ValueError, OSError) as e:
        st.error(f"Not started: {e}")
        return None
    st.success(f"Started {name}: its predictions appear here after each epoch (the Train page shows it too).")
    return name


def largest_target(picture: Picture) -> tuple[int | None, Tensor | None]:
    """(position, pixel box) of the picture's largest object, or (None, None)."""
    from detviz.data.targets import largest_object

    k = largest_object(picture.boxes, picture.labels, picture.difficult)
    return (None, None) if k is None else (k, picture.boxes[k])


def as_normalized(boxes: Tensor, picture: Picture) -> Tensor:
    from detviz.boxes import to_normalized_boxes

    return to_normalized_boxes(boxes, *picture.image.size) if boxes.numel() else torch.zeros(0, 4)
