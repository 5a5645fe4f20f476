"""Shared UI pieces of the pages, one module per role:

    keys      every widget key and query-parameter name (pages use `keys.IMAGE`)
    data      the dataset picker (sidebar and Train form), the app's folders, the image picker
    cache     every st.cache_* wrapper: indexes, images, thumbnails, anchors, detectors, outputs
    models    checkpoint and detector pickers
    live      the live set on the pages: its progress (a fragment) while it builds, its errors
    live_builds  the live sets' background builds, one per checkpoint, dataset and subset, shared
              by every session (the default one starts with the server), and `stop_warming`
    widgets   URL plumbing, figures with export, anchor / level pickers, threshold sliders
    scoring   Predictions' and Evaluate's headline mAP, training-split warning, A/B model B
              (imported by those pages as `from pages.ui import scoring`)
    access    classroom (read-only) mode: read_only(), the lock line, the handlers' refusal
    run_actions  the Train page's launch / resume / cancel / delete callbacks, each refusing when read-only
    train_form  the Train page's form: TrainConfig fields as widgets, anchors and data choices, Launch

The functions and constants pages call are re-exported here: `from pages import ui`, then
`ui.current_index()`. A package rather than pages/ui.py: Streamlit lists every pages/*.py as a
page until `st.navigation` runs, and a helper must not show up there.

The modules app.py and the Overview page use (access, cache, data, widgets, live_builds) import
no torch when they load: a fresh server's first page then needs about a second less
(tests/test_app.py checks it). Their functions that draw anchors, run NMS or make tensors
import that code when they are first called.
"""

from __future__ import annotations

import functools
import importlib
import runpy
import threading

import pandas  # noqa: F401  (see below)
import streamlit as st
from streamlit.navigation.page import StreamlitPage

from pages.ui import keys
from pages.ui.access import lock_note, read_only, refuse_if_read_only
from pages.ui.cache import (
    anchors_of,
    coverage_of,
    image_uri,
    raw_outputs,
    read_index,
    record_image,
    record_thumbnail,
)
from pages.ui.data import (
    APP_DIR,
    KIND_CAPTIONS,
    LESSON_BEST_IOU,
    LESSON_EXAMPLE,
    LESSON_POSITIVES,
    Picture,
    app_path,
    current_index,
    data_roots,
    dataset_sidebar,
    demo_dir,
    lesson_numbers,
    own_picture,
    pick_picture,
)
from pages.ui.widgets import (
    anchor_input,
    anchor_picker,
    level_picker,
    link_params,
    report_dropped_params,
    requested_params,
    share_link,
    show_figure,
    subset_picker,
    threshold_sliders,
    url_values,
)

# The checkpoint and detector pickers load on first use (`ui.detector_of` works as the rest):
# they import the training and inference code, and with it torchvision (seconds), which the
# pages that only draw data never need.
_MODELS = ("RUN_PREFIX", "UPLOAD", "backbone_sources", "checkpoint_picker", "detector_choices", "detector_of",
           "fits_dataset", "model_error", "run_checkpoints", "runs_dir", "shipped_checkpoints",
           "shipped_detectors")  # fmt: skip


def __getattr__(name: str) -> object:
    if name in _MODELS:
        return getattr(importlib.import_module("pages.ui.models"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# pandas is imported above, before any page runs, on purpose: Streamlit may start a new script
# run while the one the user navigated away from is still running, and if that one is halfway
# through importing pandas (its first st.dataframe), plotly in the new run sees the half-built
# module in sys.modules and fails with "module 'pandas' has no attribute 'Series'". Every run
# imports this module first, and Python makes it wait until the import has finished.

__all__ = [
    "APP_DIR",
    "KIND_CAPTIONS",
    "LESSON_BEST_IOU",
    "LESSON_EXAMPLE",
    "LESSON_POSITIVES",
    "RUN_PREFIX",
    "UPLOAD",
    "Picture",
    "anchor_input",
    "anchor_picker",
    "anchors_of",
    "app_path",
    "backbone_sources",
    "checkpoint_picker",
    "coverage_of",
    "current_index",
    "data_roots",
    "dataset_sidebar",
    "demo_dir",
    "detector_choices",
    "detector_of",
    "ensure_entrypoint",
    "fits_dataset",
    "image_uri",
    "import_in_background",
    "keys",
    "lesson_numbers",
    "level_picker",
    "link_params",
    "lock_note",
    "model_error",
    "own_picture",
    "pick_picture",
    "raw_outputs",
    "read_index",
    "read_only",
    "record_image",
    "record_thumbnail",
    "refuse_if_read_only",
    "report_dropped_params",
    "requested_params",
    "run_checkpoints",
    "run_page",
    "runs_dir",
    "share_link",
    "shipped_checkpoints",
    "shipped_detectors",
    "show_figure",
    "subset_picker",
    "threshold_sliders",
    "url_values",
]


_run = threading.local()  # per script thread: is this run inside app.py's navigation?


def run_page(navigation: StreamlitPage) -> None:
    """app.py's last step: runs the chosen page, marked as run inside the app (ensure_entrypoint)."""
    _run.inside_app = True
    try:
        navigation.run()
    finally:
        _run.inside_app = False


def ensure_entrypoint() -> None:
    """Runs app.py instead when Streamlit ran this page file on its own.

    Because a folder named pages/ sits next to app.py, Streamlit starts each server process
    in its old "pages directory" mode: until the first run reaches `st.navigation`, a request
    for /browse runs pages/browse.py alone, without the sidebar or the real navigation. That
    happens to every first visitor after a start who follows a deep link (a class opening the
    teacher's link together: many such runs at once) and in AppTest runs of a page file.
    Running app.py here renders the requested page inside the real navigation.

    The test is whether *this* run came through app.py (a mark on the script thread, set by
    `run_page`), not Streamlit's process-wide mode flag: the first session to reach
    `st.navigation` flips that flag while other first sessions are already past the point
    where Streamlit read it, and those would stay outside the app. Every page calls this first.
    """
    if not getattr(_run, "inside_app", False):
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
