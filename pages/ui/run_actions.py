"""The Train page's actions on run folders: launch, resume, cancel, delete (its buttons' callbacks).

Each refuses first in classroom mode (access.refuse_if_read_only): the buttons are hidden then,
and a crafted request that calls one anyway changes nothing on disk. A callback's outcome waits
in keys.TRAIN_NOTICE for the page, which shows it on the rerun.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from detviz.train import RunFolder, TrainConfig, cancel, delete_run, launch, resume
from pages.ui import access, keys
from pages.ui.models import runs_dir


def launch_run(config: TrainConfig, gpus: int, find_lr: bool) -> None:
    """Launch / Find buttons' callback: starts the process, then shows it in Watch."""
    if access.refuse_if_read_only("Launching a run"):
        return
    try:
        path = launch(config, runs_dir(), "" if find_lr else config.name, gpus, find_lr=find_lr)
    except (ValueError, OSError) as e:
        st.session_state[keys.TRAIN_NOTICE] = ("error", f"Not launched: {e}")
        return
    st.session_state[keys.RUN] = path.name
    st.session_state[keys.TRAIN_VIEW] = "Watch"
    what = "Learning-rate finder" if find_lr else "Run"
    pid = RunFolder(path).read_status().pid or "?"
    st.session_state[keys.TRAIN_NOTICE] = ("success", f"{what} {path.name} started as process {pid}.")


def resume_run(path: Path) -> None:
    """Resume button's callback: continues a cancelled or failed run as its own process
    (`python -m detviz.train --resume`), then shows it in Watch."""
    if access.refuse_if_read_only("Resuming a run"):
        return
    try:
        resume(path)
    except (ValueError, OSError) as e:
        st.session_state[keys.TRAIN_NOTICE] = ("error", f"Not resumed: {e}")
        return
    st.session_state[keys.RUN] = path.name
    st.session_state[keys.TRAIN_VIEW] = "Watch"
    pid = RunFolder(path).read_status().pid or "?"
    st.session_state[keys.TRAIN_NOTICE] = ("success", f"Run {path.name} resumed as process {pid}.")


def cancel_run(path: Path) -> None:
    """Cancel button's callback: asks the run's process to stop."""
    if access.refuse_if_read_only("Cancelling a run"):
        return
    if cancel(path):
        st.toast(f"Asked {path.name} to stop: it saves a checkpoint, then ends.", icon=":material/stop_circle:")
    else:
        st.toast(f"{path.name} is not running any more.")


def delete_run_named(name: str) -> None:
    """Delete button's callback: removes the ended run `name` from the runs folder."""
    if access.refuse_if_read_only("Deleting a run"):
        return
    try:
        delete_run(runs_dir() / name, runs_dir())
    except (ValueError, OSError) as e:
        st.session_state[keys.TRAIN_NOTICE] = ("error", f"Not deleted: {e}")
        return
    st.session_state[keys.TRAIN_NOTICE] = ("success", f"Deleted {name}.")
    st.session_state.pop(keys.TRAIN_DELETE, None)
    st.session_state.pop(keys.TRAIN_DELETE_SURE, None)
    if st.session_state.get(keys.RUN) == name:
        st.session_state.pop(keys.RUN)
