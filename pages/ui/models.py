"""Checkpoints and detectors: where they are, the checkpoint picker, a detector for the chosen
file (errors shown, not raised), and whether it fits the sidebar's dataset."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import streamlit as st

from detviz.data import DatasetIndex
from detviz.data.voc import file_stamp
from detviz.models import DETECTOR_KINDS, CheckpointError, compatibility_problems
from detviz.train import TrainConfig
from detviz.train.runs import list_runs
from pages.ui import access, keys
from pages.ui.cache import checkpoint_kind_cached, load_detector_cached
from pages.ui.data import APP_DIR

if TYPE_CHECKING:  # torchvision loads with detviz.inference: pages that draw only never pay for it
    from detviz.inference import Detector

RUN_PREFIX = "run:"  # ?ckpt=run:<name>: the best checkpoint of that training run
UPLOAD = "upload a checkpoint…"
DEFAULT_CHECKPOINT = "demo_focal.pt"  # the best shipped detector (checkpoints/README.md): the first choice
KIND_DESCRIPTIONS = {  # the kinds the checkpoint pickers leave out, in a few words
    "largest": "it names the class and box of an image's largest object (the lesson's first stage)",
    "multilabel": "it gives the probability of each class being in the image (the lesson's second stage)",
}


def runs_dir() -> Path:
    """Where training runs live: $DETVIZ_RUNS_DIR, else runs/ in the app folder."""
    return Path(os.environ.get("DETVIZ_RUNS_DIR") or APP_DIR / "runs")


def checkpoint_dir() -> Path:
    """Where the shipped checkpoints are: $DETVIZ_CHECKPOINT_DIR, else checkpoints/ in the app folder."""
    return Path(os.environ.get("DETVIZ_CHECKPOINT_DIR") or APP_DIR / "checkpoints")


def shipped_checkpoints() -> dict[str, Path]:
    """The checkpoints that ship with detviz, by file name (every kind: detectors and the lesson's
    classifiers)."""
    return {p.name: p for p in sorted(checkpoint_dir().glob("*.pt"))}


def _shipped_kinds() -> dict[str, tuple[Path, str | None]]:
    """Every shipped checkpoint as file name -> (file, the model kind it names; None when unreadable)."""
    return {name: (path, checkpoint_kind_cached(str(path), file_stamp(path)))
            for name, path in shipped_checkpoints().items()}  # fmt: skip


def shipped_detectors() -> dict[str, Path]:
    """The shipped checkpoints of a detector kind, by file name; an unreadable file stays in (choosing
    it says what is wrong with it). The lesson's classifiers (largest, multilabel) are left out."""
    return {name: path for name, (path, kind) in _shipped_kinds().items() if kind is None or kind in DETECTOR_KINDS}


def _run_bests() -> dict[str, tuple[Path, object]]:
    """Every run with a best checkpoint, as "run:<name>" -> (best.pt, the model kind its config names)."""
    default = TrainConfig().model  # what a config.json without "model" trained
    return {
        RUN_PREFIX + run.name: (run.path / "checkpoints" / "best.pt",
                                run.config.get("model", default) if isinstance(run.config, dict) else None)
        for run in list_runs(runs_dir())
        if (run.path / "checkpoints" / "best.pt").is_file()
    }  # fmt: skip


def backbone_sources() -> dict[str, Path]:
    """What a new run may start its backbone from: every shipped checkpoint (by file name) and every
    run's best ("run:<name>"), of any kind (the lesson's ladder starts from demo_focal.pt's)."""
    return shipped_checkpoints() | {name: best for name, (best, _) in _run_bests().items()}


def run_checkpoints() -> dict[str, Path]:
    """Best checkpoints of the training runs that trained a detector, as "run:<name>", newest first."""
    return {name: best for name, (best, kind) in _run_bests().items() if kind in DETECTOR_KINDS}


def detector_choices() -> tuple[dict[str, Path], dict[str, object]]:
    """What a checkpoint picker offers: (shipped detectors, then the runs' detectors: name -> file)
    and the checkpoints it leaves out for their kind (name -> kind), so a link to one can say why."""
    shipped, runs = _shipped_kinds(), _run_bests()
    offered = {name: path for name, (path, kind) in shipped.items() if kind is None or kind in DETECTOR_KINDS}
    offered |= {name: best for name, (best, kind) in runs.items() if kind in DETECTOR_KINDS}
    others = {name: kind for name, (_, kind) in (shipped | runs).items() if name not in offered and kind}
    return offered, others


def not_a_detector(name: str, kind: object) -> str:
    """Why a checkpoint of `kind` is not offered: one sentence naming it and what it is."""
    what = KIND_DESCRIPTIONS.get(str(kind), "a model without anchor boxes")
    return (f"{name} is a {kind} model, not a detector: {what}. This page shows {' and '.join(DETECTOR_KINDS)} "
            "models only; choose one of those (the Lesson walkthrough shows the classifiers).")  # fmt: skip


def default_choice(options: list[str]) -> int:
    """The picker's first choice among `options`: DEFAULT_CHECKPOINT when offered, else the first."""
    return options.index(DEFAULT_CHECKPOINT) if DEFAULT_CHECKPOINT in options else 0


def checkpoint_picker(container=st) -> tuple[str, Path] | None:
    """A checkpoint: a shipped detector, a run's best.pt, or uploaded (loaded safely: tensors only,
    no code); DEFAULT_CHECKPOINT first when it is there.

    Bound to ?ckpt= (an upload cannot be in a link). In classroom mode there is no upload, only
    the lock line. Returns (shown name, file) or None.
    """
    options, others = detector_choices()
    locked = access.read_only()
    wanted = st.query_params.get(keys.CHECKPOINT, "")
    if wanted in others:  # a link to a classifier (Streamlit drops the value)
        container.warning(not_a_detector(wanted, others[wanted]))
    choice = container.selectbox(
        "Checkpoint", [*options, *([] if locked else [UPLOAD])], index=default_choice(list(options)),
        key=keys.CHECKPOINT, bind="query-params",
        help="The detectors in checkpoints/, the best checkpoint of each training run, or a file of yours.",
    )  # fmt: skip
    if locked:  # below the page's row of pickers, not in the picker's narrow column
        access.lock_note("uploading checkpoints")
    if choice != UPLOAD:
        return (choice, options[choice]) if choice in options else None
    upload = container.file_uploader("Checkpoint file", type=["pt", "pth"], key=keys.CHECKPOINT_UPLOAD,
                                     help="A detviz checkpoint. Only tensors and plain data are read; "
                                          "a file carrying Python objects is refused.")  # fmt: skip
    if upload is None:
        container.info("Choose a .pt file made by detviz (`python -m detviz.train`).")
        return None
    path = save_upload(upload.getvalue(), container)
    return None if path is None else (upload.name, path)


def upload_path(data: bytes) -> Path:
    """Where an uploaded checkpoint's bytes are kept: a temporary file named by their hash."""
    return Path(tempfile.gettempdir()) / "detviz-uploads" / f"{hashlib.sha256(data).hexdigest()[:24]}.pt"


def save_upload(data: bytes, container=st) -> Path | None:
    """Writes an uploaded checkpoint to upload_path (once per content); None, refused, in classroom mode."""
    if access.refuse_if_read_only("Uploading a checkpoint", container):
        return None
    path = upload_path(data)
    path.parent.mkdir(exist_ok=True)
    if not path.is_file():
        path.write_bytes(data)
    return path


def detector_of(path: Path, name: str | None = None) -> Detector | None:
    """A Detector for the checkpoint (cached per file and modification time), or None after an
    error, shown with the checkpoint's `name` in place of its (temporary) path."""
    detector, error = load_detector(path, name)
    if error:
        st.error(error)
    return detector


def load_detector(path: Path, name: str | None = None) -> tuple[Detector | None, str]:
    """(the checkpoint's Detector, "") or (None, why not, naming the checkpoint by its shown `name`)."""
    try:
        return load_detector_cached(str(path), file_stamp(path)), ""
    except CheckpointError as e:
        return None, model_error(e, path, name)
    except OSError as e:
        return None, f"{name or path}: {e.strerror or e}."


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
