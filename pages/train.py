"""Train: launch runs as their own processes, watch them live, cancel, compare, delete.

Training never runs in this process: Launch starts `python -m detviz.train --run-dir <folder>`
(detviz.train.runs.launch), which goes on when the page is closed; the page only reads the run
folders in ui.runs_dir().
"""

import pandas as pd
import streamlit as st
import torch

from detviz.figures import (
    compare_figure,
    losses_figure,
    lr_figure,
    lr_finder_figure,
    split_records,
    validation_figure,
    validation_metrics,
)
from detviz.train import MetricsFollower, RunFolder, TrainConfig, resume_problems
from detviz.train.report import (
    LIVE_STATES,
    RunState,
    RunStatus,
    config_differences,
    final_row,
    progress_text,
    state_sentence,
    summary_row,
)
from detviz.train.runs import NAME_PATTERN, RESUMABLE_STATES, list_runs, poll_interval
from pages import ui
from pages.ui import keys, train_form
from pages.ui.run_actions import cancel_run, delete_run_named, resume_run
from pages.ui.snapshots import epoch_scrubber

ui.ensure_entrypoint()


POLL_SECONDS = 2.0  # the watched run's files are re-read this often while it is queued or running
TABLE_POLL_SECONDS = 5.0  # the runs table, while some run is live
LOG_LINES = 60
VIEWS = ("New run", "Watch", "Runs")  # also the URL values of ?train_view=
STATE_BADGES = {  # state -> (material icon, badge colour)
    RunState.QUEUED: (":material/schedule:", "gray"),
    RunState.RUNNING: (":material/directions_run:", "blue"),
    RunState.FINISHED: (":material/check_circle:", "green"),
    RunState.FAILED: (":material/error:", "red"),
    RunState.CANCELLED: (":material/stop_circle:", "orange"),
}


def main() -> None:
    st.title("Train")
    st.caption("Each run is its own process writing a folder in the runs directory; close the page and it goes on. "
               f"Runs live in `{ui.runs_dir()}`.")  # fmt: skip
    cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if cuda:
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(cuda))
        st.caption(f"{cuda} CUDA GPU(s): {names}.")
    else:
        st.info("No GPU here: runs train on the CPU. That works (the shipped checkpoints were trained so), only "
                "slower: keep images small and epochs few. The command below also runs on a GPU machine or a "
                "cluster unchanged.", icon=":material/memory:")  # fmt: skip
    if ui.read_only():
        ui.lock_note("launching, cancelling or deleting runs", full=True)
    notice = st.session_state.pop(keys.TRAIN_NOTICE, None)
    if notice:
        (st.error if notice[0] == "error" else st.success)(notice[1])
    new, watch, runs = st.tabs(VIEWS, key=keys.TRAIN_VIEW, bind="query-params")
    if new.open:
        with new:
            train_form.form(cuda)
    if watch.open:
        with watch:
            _watch()
    if runs.open:
        with runs:
            _runs()


# --- watching one run --------------------------------------------------------------------------


def _watch() -> None:
    runs = list_runs(ui.runs_dir())
    names = [r.name for r in runs]
    current = st.session_state.get(keys.RUN)
    if current is not None and not NAME_PATTERN.match(str(current)):
        st.error(f"Run {current!r} is not a run folder name (letters, digits, '.', '_', '-'): not opened.")
        st.session_state.pop(keys.RUN)
        current = None
    if not runs and current is None:
        st.info("No runs yet: launch one from New run (or from a terminal with `python -m detviz.train`).")
        return
    options = names if current is None or current in names else [current, *names]
    # no format_func: a bound widget's URL value is its shown text, and ?run= must be the name
    name = st.columns([2, 3])[0].selectbox("Run", options, key=keys.RUN, bind="query-params", help="Newest first.")
    run = RunFolder(ui.runs_dir() / name)
    if poll_interval(run.state(), POLL_SECONDS):
        _live(run)
    else:
        _show_run(run)


@st.fragment(run_every=POLL_SECONDS)
def _live(run: RunFolder) -> None:
    """The watched run while its process works: re-read every POLL_SECONDS, alone (the rest of
    the page does not rerun). Once it has ended, one full rerun stops the polling."""
    if _show_run(run) not in LIVE_STATES:
        st.rerun()


def _show_run(run: RunFolder) -> str:
    """Everything about one run; returns its state ("gone" when the folder has vanished)."""
    if not run.exists():
        st.warning(f"Run {run.path.name}: its folder is gone (deleted while watched?). Choose another run.",
                   icon=":material/folder_off:")  # fmt: skip
        return "gone"
    status = run.read_status()
    state = run.state()
    finder = status.is_lr_find
    head, button = st.columns([5, 1], vertical_alignment="center")
    icon, color = STATE_BADGES.get(state, (":material/help:", "gray"))
    head.markdown(f"### {'Learning-rate finder' if finder else 'Run'} {run.path.name} :{color}-badge[{icon} {state}]")
    if state in LIVE_STATES and not ui.read_only():
        button.button("Cancel", icon=":material/stop_circle:", key=f"{keys.TRAIN_CANCEL}{run.path.name}",
                      help="Stops the run; a training run saves a checkpoint first (Resume continues it).",
                      on_click=cancel_run, args=(run.path,))  # fmt: skip
    if state in RESUMABLE_STATES and not finder and not ui.read_only():
        problems = resume_problems(run.path)
        button.button("Resume", icon=":material/play_arrow:", key=f"{keys.TRAIN_RESUME}{run.path.name}",
                      disabled=bool(problems), on_click=resume_run, args=(run.path,),
                      help=problems[0] if problems else "Continues from its last checkpoint as its own process "
                      "(as `python -m detviz.train --resume <its folder>` does).")  # fmt: skip
    sentence = state_sentence(state, status)
    if state == RunState.FAILED:
        st.error(sentence, icon=":material/error:")
    elif finder or state != RunState.RUNNING:  # a running training run says it in its progress bar
        st.caption(sentence)
    if finder:
        _show_lr_find(run, state)
    else:
        _show_training(run, status, state)
    with st.expander(f"Log (last {LOG_LINES} lines of train.log)", expanded=state == RunState.FAILED):
        st.code(run.log_tail(LOG_LINES) or "(empty so far)", language=None)
    return state


def _records(run: RunFolder) -> list[dict]:
    """The run's metrics so far; a poll reads only what was appended since the last one."""
    follower = st.session_state.get(keys.TRAIN_FOLLOWER)
    if follower is None or follower.path != run.metrics_path:
        follower = st.session_state[keys.TRAIN_FOLLOWER] = MetricsFollower(run.metrics_path)
    return follower.read()


def _show_training(run: RunFolder, status: RunStatus, state: str) -> None:
    name = run.path.name
    st.progress(min(max(float(status.progress or 0.0), 0.0), 1.0), text=progress_text(state, status))
    m = st.columns(5)
    config = _run_config(run)
    epochs = status.epochs if status.epochs is not None else config.epochs if config else "?"
    m[0].metric("Epochs done", f"{status.epoch or 0} / {epochs}")
    m[1].metric("Images / s", f"{status.images_per_second or 0:.1f}")
    m[2].metric("Device", status.device or "not yet")
    m[3].metric("Best validation score", "-" if status.best is None else f"{status.best:.4f}",
                help="val_map (all-point VOC mAP@0.5) for SSD models, accuracy for the classifier stages.")  # fmt: skip
    if status.gpu_memory_gb is not None:
        m[4].metric("GPU memory (peak)", f"{status.gpu_memory_gb:.2f} GB")
    records = _records(run)
    if not records:
        st.caption("No metrics yet: the first line comes after a few steps.")
    else:
        left, right = st.columns(2)
        ui.show_figure(losses_figure(records), f"{name}-loss", left)
        validated = bool(validation_metrics(records))
        if validated:
            ui.show_figure(validation_figure(records), f"{name}-validation", right)
        elif config is not None and not (config.val_split or config.val_data):
            right.caption("No validation split: the last epoch's checkpoint counts as the best.")
        else:
            right.caption("Validation metrics appear after the first epoch.")
        left, right = st.columns(2)
        ui.show_figure(lr_figure(records), f"{name}-lr", left)
        if validated:
            _, epochs = split_records(records)
            table = pd.DataFrame(epochs).drop(columns=["kind", "time", "step"], errors="ignore")
            table["epoch"] = table["epoch"] + 1
            right.dataframe(table, hide_index=True)
    st.markdown("**Watch it learn**", help="The model's predictions on a few fixed images after each epoch.")
    epoch_scrubber(run.path, f"{keys.TRAIN_SNAPSHOTS}{name}")
    finder = run.lr_find()
    if finder is not None:
        with st.expander(f"Learning-rate finder (this run picked {finder.suggestion:.2g} with it)"):
            ui.show_figure(lr_finder_figure(finder), f"{name}-lr-find")
    if f"{ui.RUN_PREFIX}{name}" in ui.run_checkpoints():  # a detector's best checkpoint
        st.page_link("pages/predictions.py", label=f"Open {name}'s best checkpoint in Predictions",
                     icon=":material/target:", query_params={keys.CHECKPOINT: f"run:{name}"})  # fmt: skip


def _run_config(run: RunFolder) -> TrainConfig | None:
    """The run's config.json, or None when it cannot be read (written by another version)."""
    try:
        return run.config()
    except (OSError, ValueError, TypeError):
        return None


def _show_lr_find(run: RunFolder, state: str) -> None:
    result = run.lr_find()
    if result is None:
        if state in LIVE_STATES:
            st.caption("The finder ramps the learning rate from 1e-6 up, one batch at a time, until the loss explodes.")
        return
    ui.show_figure(lr_finder_figure(result), f"{run.path.name}-lr-find")
    rate = f"{result.suggestion:.2g}"
    if result.warning:
        st.warning(f"Suggested learning rate: **{rate}**. {result.warning[0].upper()}{result.warning[1:]}")
    else:
        lowest = f"; the smoothed loss is lowest at {result.minimum:.2g}" if result.minimum else ""
        st.markdown(f"Suggested learning rate: **{rate}** (where the smoothed loss falls fastest on its way down{lowest}).")  # fmt: skip
    st.button(f"Use {rate} in the form", icon=":material/input:", key=f"{keys.TRAIN_USE_RATE}{run.path.name}",
              on_click=_use_rate, args=(rate,))  # fmt: skip


def _use_rate(rate: str) -> None:
    st.session_state[keys.TRAIN_FORM["lr"]] = rate
    st.session_state[keys.TRAIN_VIEW] = "New run"


# --- all runs ----------------------------------------------------------------------------------


def _runs() -> None:
    runs = list_runs(ui.runs_dir())
    if not runs:
        st.info("No runs yet.")
        return
    live = any(r.state in LIVE_STATES for r in runs)
    st.subheader("All runs")
    st.fragment(_runs_table, run_every=TABLE_POLL_SECONDS if live else None)()
    _compare([r for r in runs if not r.status.is_lr_find])
    if not ui.read_only():
        _delete([r.name for r in runs if r.state not in LIVE_STATES])


def _runs_table() -> None:
    """All runs, newest first (re-read every TABLE_POLL_SECONDS while one is live)."""
    table = pd.DataFrame([summary_row(r) for r in list_runs(ui.runs_dir())])
    st.dataframe(table, hide_index=True, column_config={
        "best": st.column_config.NumberColumn("best val score", format="%.4f",
                                              help="val_map for SSD models, val_accuracy for the classifiers."),
        "created": st.column_config.DatetimeColumn("created", format="YYYY-MM-DD HH:mm"),
    })  # fmt: skip


def _compare(runs: list) -> None:
    st.subheader("Compare runs")
    names = [r.name for r in runs]
    if not names:
        st.caption("No training runs to compare yet.")
        return
    chosen = st.multiselect("Runs", names, default=names[:2], key=keys.TRAIN_COMPARE, bind="query-params",
                            help="Their curves overlaid, their final metrics and the settings that differ.")  # fmt: skip
    if not chosen:
        return
    by_name = {r.name: r for r in runs}
    records = {n: RunFolder(by_name[n].path).read_metrics() for n in chosen}
    left, right = st.columns(2)
    ui.show_figure(compare_figure(records, "val_map"), "compare-val-map", left)
    ui.show_figure(compare_figure(records, "loss"), "compare-loss", right)
    st.markdown("**Final metrics** (after the last epoch; best is the best epoch's score)")
    st.dataframe(pd.DataFrame([final_row(by_name[n]) for n in chosen]), hide_index=True)
    differences = config_differences({n: by_name[n].config for n in chosen})
    if differences:
        st.markdown("**Settings that differ**")
        st.dataframe(pd.DataFrame(differences).T.astype(str), column_config={"_index": "setting"})
    elif len(chosen) > 1:
        st.caption("These runs have the same settings.")
    shown = ui.run_checkpoints()  # the runs Predictions offers: a detector with a best checkpoint
    links = [n for n in chosen if f"{ui.RUN_PREFIX}{n}" in shown]
    for column, n in zip(st.columns(max(len(links), 1)), links, strict=False):
        column.page_link("pages/predictions.py", label=f"{n} in Predictions", icon=":material/target:",
                         query_params={keys.CHECKPOINT: f"run:{n}"})  # fmt: skip


def _delete(names: list[str]) -> None:
    with st.expander("Delete a run"):
        if not names:
            st.caption("No ended run to delete (cancel a live one first).")
            return
        victim = st.selectbox("Run to delete", names, index=None, key=keys.TRAIN_DELETE, placeholder="choose a run",
                              help="Queued and running runs are not listed: cancel them first.")  # fmt: skip
        if victim is None:
            return
        sure = st.checkbox(f"Yes, delete {victim} and its checkpoints for good", key=keys.TRAIN_DELETE_SURE)
        st.button("Delete", icon=":material/delete:", disabled=not sure, on_click=delete_run_named, args=(victim,))


main()
