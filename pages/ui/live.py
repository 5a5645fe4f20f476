"""The live set on the pages: a checkpoint's outputs over the sidebar's dataset (detviz.evaluate.sweep),
built in the background once per checkpoint, dataset and subset (pages/ui/live_builds.py) and
shared by the Predictions and Evaluate pages and every session; while it builds, a page shows its
progress in a fragment that reruns the page when the set is ready."""

from __future__ import annotations

import functools
from pathlib import Path

import streamlit as st

from detviz.data.spec import dataset_fingerprint
from detviz.data.voc import file_stamp
from detviz.evaluate import DatasetSweep
from detviz.inference import NonFiniteOutputs
from detviz.models import CheckpointError
from pages.ui import keys
from pages.ui.cache import read_index
from pages.ui.live_builds import BUILDS, BuildKey, BuildStopped, live_wait, stop_warming, sweep_live
from pages.ui.models import load_detector, model_error

LiveSet = DatasetSweep  # a model's outputs over (part of) the sidebar's dataset: sweep, index, sizes, unreadable
POLL_S = 1.0  # how often a page showing a build's progress looks again

__all__ = ["POLL_S", "LiveSet", "live_set", "stop_warming"]


def live_set(path: Path, limit: int, name: str | None = None) -> LiveSet | None:
    """The checkpoint's outputs over the first `limit` images of the sidebar dataset, or None.

    None after showing why: no dataset; the checkpoint cannot be read or its outputs are not
    finite (named after its shown `name`); or the set is still being built after `live_wait()`
    seconds, then with the build's progress, in a fragment that reruns the page once it is done.
    """
    selection = st.session_state.get(keys.SELECTION)
    if not isinstance(selection, tuple):
        return None
    spec, split = selection
    fingerprint = dataset_fingerprint(spec, split)
    full = read_index(str(spec), split, fingerprint)
    detector, error = load_detector(path, name)  # cached: the page has loaded it already
    if detector is None:
        st.error(error)
        return None
    key = BuildKey(str(path), file_stamp(path), str(spec), split, fingerprint, limit)
    build = BUILDS.get(key, functools.partial(sweep_live, detector, full, limit))
    if not build.wait(live_wait()):
        what = f"{split or 'the data'}" + (f" with {name}" if name else "")
        _progress(key, min(limit, len(full)), what)
        return None
    if build.error is not None:
        st.error(_error_text(build.error, path, name))
        return None
    live = build.result
    if live.unreadable:
        st.warning(f"{len(live.unreadable)} image file(s) could not be read and count as having no detections: "
                   + ", ".join(live.unreadable[:5]) + ("…" if len(live.unreadable) > 5 else ""))  # fmt: skip
    return live


@st.fragment(run_every=POLL_S)
def _progress(key: BuildKey, n: int, what: str) -> None:
    """The build's progress, looked at again every POLL_S seconds; once it is done (or gone), the
    whole page runs again and shows what needed it."""
    build = BUILDS.peek(key)
    if build is None or build.finished:
        st.rerun()
    st.progress(min(build.done / n, 1.0) if n else 0.0, text=f"Scoring {n} images of {what}… {build.done}/{n}")
    st.caption("Once per checkpoint and dataset, shared by everyone viewing them: the numbers fill in by "
               "themselves when it is done.")  # fmt: skip


def _error_text(error: Exception, path: Path, name: str | None) -> str:
    """Why the build failed, one sentence, naming the checkpoint by its shown `name`."""
    if isinstance(error, NonFiniteOutputs | CheckpointError):
        return model_error(error, path, name)
    if isinstance(error, OSError):
        return f"{name or path}: {error.strerror or error}."
    if isinstance(error, BuildStopped):
        return f"{name or path}: scoring stopped before it finished (the server is shutting down)."
    return f"{name or path}: scoring it on this dataset failed ({type(error).__name__}: {error})."
