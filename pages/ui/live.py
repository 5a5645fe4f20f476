"""The live set: a checkpoint's outputs over the sidebar's dataset (detviz.evaluate.sweep), cached
once per checkpoint, dataset and subset and shared by the Predictions and Evaluate pages, with
the NMS warm-up threads it starts and `stop_warming`."""

from __future__ import annotations

import atexit
import threading
from pathlib import Path

import streamlit as st

from detviz.data.spec import dataset_fingerprint
from detviz.data.voc import file_stamp
from detviz.evaluate import DatasetSweep, sweep_dataset
from detviz.inference import NonFiniteOutputs
from detviz.postprocess import DEFAULT_NMS_IOU
from pages.ui import keys
from pages.ui.cache import load_detector_cached, read_index
from pages.ui.models import model_error
from pages.ui.widgets import LIVE_FLOOR, NMS_STEPS

LiveSet = DatasetSweep  # a model's outputs over (part of) the sidebar's dataset: sweep, index, sizes, unreadable


@st.cache_resource(max_entries=4, show_spinner=False)
def _live_set(path: str, stamp: tuple, spec: str, split: str, fingerprint: tuple, limit: int) -> LiveSet:
    full = read_index(spec, split, fingerprint)
    live = sweep_dataset(
        load_detector_cached(path, stamp), full.subset(list(range(min(limit, len(full))))), floor=LIVE_FLOOR
    )
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
    selection = st.session_state.get(keys.SELECTION)
    if not isinstance(selection, tuple):
        return None
    spec, split = selection
    fingerprint = dataset_fingerprint(spec, split)
    n = min(limit, len(read_index(str(spec), split, fingerprint)))
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
