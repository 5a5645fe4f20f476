"""The epoch scrubber: a training run's epoch snapshots (detviz.train.snapshots) as one image at one
epoch, with a slider over the recorded epochs, for the Train page's Watch view and the lesson
walkthrough.

    from pages.ui.snapshots import epoch_scrubber
    epoch_scrubber(run_path, key="lesson-watch")   # any run folder; `key` prefixes its widget keys

It reads the run's snapshots.jsonl (cached per file stamp, so a poll of a live run re-reads it
only when an epoch was added) and the images from the dataset the snapshots name. Problems are
shown (st.info / st.error), never raised.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from detviz.data import DataError
from detviz.data.spec import dataset_fingerprint, parse_dataset_spec
from detviz.data.voc import file_stamp
from detviz.figures import ground_truth_figure, snapshot_figure
from detviz.train.runs import RunFolder
from detviz.train.snapshots import (
    MAX_DETECTIONS,
    SCORE_THRESHOLD,
    EpochSnapshot,
    SnapshotError,
    read_snapshots,
    snapshot_path,
)
from pages.ui import keys
from pages.ui.cache import image_uri, read_index, record_image
from pages.ui.widgets import show_figure

NO_SNAPSHOTS = ("This run was trained before detviz recorded epoch snapshots: it has no per-epoch predictions "
                "to scrub through. A run trained now records them after every epoch.")  # fmt: skip
NOT_YET = "The first snapshot of the model's predictions comes at the end of the first epoch."
ROLE_TEXT = {
    "val": "validation images",
    "train": "training images (the run has no validation split, so these are images it learns from)",
}


@st.cache_resource(max_entries=8, show_spinner=False)
def _snapshots(path: str, stamp: tuple[int, int]) -> list[EpochSnapshot]:
    return read_snapshots(path)


def epoch_scrubber(run_path: str | Path, key: str, height: int = 480) -> EpochSnapshot | None:
    """The run's predictions on its snapshot images, one epoch at a time.

    An epoch slider over the recorded epochs (the newest by default, and it follows new epochs
    of a live run while left at the newest), a choice among the snapshot images, and the figure
    (detviz.figures.snapshot_figure) with the ground truth. A run without snapshots (trained
    before they were recorded) gets an st.info; unreadable files or images an st.error.

    Args:
        run_path: the run folder. key: prefix of the widget keys (unique on the page).
        height: of the figure, in pixels.

    Returns:
        The EpochSnapshot shown, or None when there is none.
    """
    path = snapshot_path(run_path)
    try:
        snapshots = _snapshots(str(run_path), file_stamp(path))
    except SnapshotError as e:
        st.error(str(e))
        return None
    if not snapshots:
        done = RunFolder(run_path).read_status().epoch or 0
        if path.is_file() or not done:
            st.caption(NOT_YET)
        else:
            st.info(NO_SNAPSHOTS, icon=":material/history:")
        return None
    snapshot = _pick_epoch(snapshots, key)
    ids = snapshot.image_ids
    image_id = st.radio("Image", ids, horizontal=True, key=key + keys.SNAPSHOT_IMAGE,
                        help="The same images after every epoch.")  # fmt: skip
    image_id = image_id if image_id in ids else ids[0]
    what = "the largest object" if snapshot.kind == "largest" else "class probabilities"
    if snapshot.kind in ("ssd", "ssd-multiscale"):
        what = f"detections (score at least {SCORE_THRESHOLD:g}, at most {MAX_DETECTIONS})"
    truth = "Diamonds: the classes in the image." if snapshot.kind == "multilabel" else "Dashed: the ground truth."
    st.caption(f"What the model predicted after each epoch on {len(ids)} {ROLE_TEXT[snapshot.role]}: {what}. {truth}")
    _show(snapshot, image_id, key, height)
    return snapshot


def _pick_epoch(snapshots: list[EpochSnapshot], key: str) -> EpochSnapshot:
    """The epoch slider (none for a single epoch); returns the chosen epoch's snapshot."""
    epochs = [s.epoch for s in snapshots]
    slider, last = key + keys.SNAPSHOT_EPOCH, key + keys.SNAPSHOT_LAST
    chosen = st.session_state.get(slider)
    if chosen not in epochs or chosen == st.session_state.get(last):
        st.session_state[slider] = epochs[-1]  # the newest: by default, and while a live run adds epochs
    st.session_state[last] = epochs[-1]
    if len(epochs) == 1:
        st.session_state.pop(slider)
        st.caption(f"Epoch {epochs[0] + 1}: the only one recorded so far.")
        return snapshots[0]
    chosen = st.select_slider("Epoch", epochs, format_func=lambda e: str(e + 1), key=slider,
                              help="Scrub through training: the predictions after each epoch.")  # fmt: skip
    return snapshots[epochs.index(chosen)]


def _show(snapshot: EpochSnapshot, image_id: str, key: str, height: int) -> None:
    """The figure of one image of the snapshot, its image and ground truth read from the dataset."""
    try:
        spec = parse_dataset_spec(snapshot.data)
        index = read_index(str(spec), snapshot.split, dataset_fingerprint(spec, snapshot.split))
    except (DataError, ValueError, OSError) as e:
        st.error(f"The run's images ({snapshot.data}, split {snapshot.split or '-'}) cannot be read: {e}")
        return
    position = index.position_of(image_id)
    if position is None:
        st.error(f"Image {image_id} is not in {snapshot.data} (split {snapshot.split or '-'}) any more: "
                 "the dataset changed since the run was trained.")  # fmt: skip
        return
    record = index[position]
    try:
        image = record_image(record)
    except DataError as e:
        st.error(str(e))
        return
    prediction = snapshot.image(image_id)
    fig = snapshot_figure(image, prediction, index.classes, snapshot.kind, snapshot.epoch, record.boxes,
                          record.labels, height, encode=image_uri)  # fmt: skip
    if snapshot.kind != "multilabel":
        show_figure(fig, f"{key}-snapshot")
        return
    left, right = st.columns(2)
    truth = ground_truth_figure(image, record.boxes, record.labels, index.classes, height=height, encode=image_uri)
    show_figure(truth, f"{key}-snapshot-image", left)
    show_figure(fig, f"{key}-snapshot", right)
