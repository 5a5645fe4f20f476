"""Train: launch runs as their own processes, watch them live, cancel, compare, delete.

Training never runs in this process: Launch starts `python -m detviz.train --run-dir <folder>`
(detviz.train.runs.launch), which goes on when the page is closed; the page only reads the run
folders in ui.runs_dir().
"""

import dataclasses
import shlex
from typing import Any

import pandas as pd
import streamlit as st
import torch

from detviz.anchors import PRESETS
from detviz.data import DataError
from detviz.data.spec import DatasetSpec, check_within_roots, dataset_fingerprint, dataset_splits
from detviz.figures import (
    compare_figure,
    losses_figure,
    lr_figure,
    lr_finder_figure,
    split_records,
    validation_figure,
    validation_metrics,
)
from detviz.train import MetricsFollower, RunFolder, TrainConfig, cli_command
from detviz.train.config import CHOICES, learning_rate_text, parse_learning_rate
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
from detviz.train.runs import NAME_PATTERN, launch_problems, list_runs, poll_interval
from pages import ui
from pages.ui import data, keys
from pages.ui.run_actions import cancel_run, delete_run_named, launch_run
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
NO_VALIDATION = "(none)"
NO_INIT = "(fresh)"  # the backbone starts from random weights (or ImageNet's)
DEFAULT_ANCHORS = "default"  # the model's own preset (TrainConfig.anchors ""); also its URL value


@dataclasses.dataclass(frozen=True)
class Setting:
    """How the form shows a TrainConfig field: its label, and a number's range and step. The
    widget's kind, default and help text come from the field, its key (also its query parameter)
    from keys.TRAIN_FORM (_setting)."""

    label: str
    bounds: tuple[float, float] = (0, 0)  # a number's (min, max)
    step: float | None = None  # a number's step (None: Streamlit's)
    radio: bool = False  # a choice shown as radio buttons, not a select box
    help: str = ""  # replaces the field's help text
    note: str = ""  # appended to the field's help text


SETTINGS = {  # the fields the form shows, by TrainConfig field name
    "model": Setting("Model"),
    "backbone": Setting("Backbone"),
    "pretrained": Setting("ImageNet weights"),
    "init_backbone": Setting("Backbone from", help="Start the backbone from a trained checkpoint's (a shipped one "
                             "or a run's best; its backbone must be the kind chosen above), as the lesson starts "
                             "each stage from a trained network. The head always starts fresh."),
    "anchors": Setting("Anchor preset"),
    "loss": Setting("Classification loss", radio=True),
    "alpha": Setting("alpha", (0.01, 0.99), 0.05),
    "gamma": Setting("gamma", (0.0, 10.0), 0.5),
    "epochs": Setting("Epochs", (1, 10_000)),
    "lr": Setting("Learning rate", help="Peak of the one-cycle schedule: a number, or 'auto' to run the "
                  "learning-rate finder first (or find one below and use it)."),
    "batch_size": Setting("Batch size", (1, 4096)),
    "image_size": Setting("Image size (px)", (32, 1024), 32),
    "freeze_epochs": Setting("Frozen epochs", (0, 10_000)),
    "augment": Setting("Augment"),
    "max_steps": Setting("Stop after steps (0: no limit)", (0, 10_000_000)),
    "seed": Setting("Seed", (0, 2**31 - 1)),
    "device": Setting("Device", help="auto: a CUDA GPU when there is one, else the CPU. A CUDA device can be "
                      "chosen without a GPU here, to prepare the command for another machine."),
    "amp": Setting("Mixed precision (AMP)", note="; ignored on the CPU."),
    "name": Setting("Run name (optional)", help="The run's folder name; empty: the date, the model and a random suffix."),
}  # fmt: skip
FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
FORM_DATA = data.Picker(keys.TRAIN, "to train on")  # the sidebar's dataset picker, with the form's keys

DEFAULTS = TrainConfig()


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
            _form(cuda)
    if watch.open:
        with watch:
            _watch()
    if runs.open:
        with runs:
            _runs()


# --- the form --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DataChoice:
    """The form's dataset: TrainConfig's data, train_split, val_split and val_data, and the
    number of training images (None when unknown)."""

    data: str = ""
    train_split: str = "train"
    val_split: str = ""
    val_data: str = ""
    train_images: int | None = None


def _form(cuda: int) -> None:
    problems: list[str] = []
    with st.container(border=True):
        st.markdown("**Data**", help="What the run trains on; the sidebar's dataset is what the other pages show.")
        data = _data_fields(problems)
    values: dict[str, Any] = {}  # TrainConfig field -> the widget's value
    with st.container(border=True):
        st.markdown("**Model and loss**")
        c = st.columns(4)
        values["model"] = _setting(c[0], "model")
        values["backbone"] = _setting(c[1], "backbone")
        values["pretrained"] = _setting(c[1], "pretrained", disabled=values["backbone"] == "small")
        sources = ui.backbone_sources()
        start = _setting(c[1], "init_backbone", disabled=values["pretrained"], options=[NO_INIT, *sources])
        values["init_backbone"] = "" if values["pretrained"] or start not in sources else str(sources[start])
        ssd = values["model"].startswith("ssd")
        values["anchors"] = _setting(c[2], "anchors", disabled=not ssd, options=[DEFAULT_ANCHORS, *PRESETS])
        values["loss"] = _setting(c[3], "loss", disabled=not ssd)
        focal = ssd and values["loss"] == "focal"
        for column, name in zip(c[3].columns(2), ("alpha", "gamma"), strict=True):
            values[name] = _setting(column, name, disabled=not focal)
    with st.container(border=True):
        st.markdown("**Schedule**")
        schedule = ("epochs", "lr", "batch_size", "image_size", "freeze_epochs")
        for column, name in zip(st.columns(len(schedule)), schedule, strict=True):
            values[name] = _setting(column, name)
        with st.expander("More settings"):
            for column, name in zip(st.columns(4), ("augment", "max_steps", "seed"), strict=False):
                values[name] = _setting(column, name)
    with st.container(border=True):
        st.markdown("**Hardware and name**")
        c = st.columns(4)
        devices = ["auto", "cpu", "cuda", *(f"cuda:{i}" for i in range(max(cuda, 1)))]
        values["device"] = _setting(c[0], "device", options=devices)
        values["amp"] = _setting(c[1], "amp")
        gpus = c[2].number_input("GPUs", 1, 64, 1, key=keys.TRAIN_GPUS, bind="query-params",
                                 help="More than one: torchrun starts one process per GPU "
                                 "(DistributedDataParallel); the batch is split between them.")  # fmt: skip
        values["name"] = _setting(c[3], "name", placeholder="date-model-random")

    lr_problems: list[str] = []
    try:
        values["lr"] = parse_learning_rate(values["lr"])
    except ValueError as e:
        lr_problems.append(str(e))
        values["lr"] = 0.0
    config = TrainConfig(**values | {
        "pretrained": values["pretrained"] and values["backbone"] != "small",
        "anchors": "" if values["anchors"] == DEFAULT_ANCHORS or not ssd else values["anchors"],
        "name": values["name"].strip(), "out": str(ui.runs_dir()), "data": data.data or DEFAULTS.data,
        "train_split": data.train_split, "val_split": data.val_split, "val_data": data.val_data,
    })  # fmt: skip
    gpus = int(gpus)
    if data.train_images is not None and config.batch_size > data.train_images:
        problems.append(f"--batch-size {config.batch_size} is larger than the training set "
                        f"({data.train_images} images): lower it.")  # fmt: skip
    finder_config = dataclasses.replace(config, name="", lr=0.0)
    finder_problems = problems + launch_problems(finder_config, 1, cuda)  # one process, its own folder name
    problems += launch_problems(config, gpus, cuda)
    if config.name and NAME_PATTERN.match(config.name) and (ui.runs_dir() / config.name).exists():
        problems.append(f"A run named {config.name} exists already: choose another name, or leave it empty.")

    st.markdown("The same run from a terminal (or on a cluster, with torchrun): copy it.")
    st.code(shlex.join(cli_command(config, gpus)), language="bash", wrap_lines=True)
    blocking = problems + lr_problems
    if blocking:
        st.error("Cannot launch yet:\n" + "\n".join(f"- {p}" for p in blocking), icon=":material/block:")
    elif cuda == 0 and config.amp:
        st.caption("AMP is ignored on the CPU; the flag stays in the command for a GPU machine.")
    if ui.read_only():
        return
    b1, b2, _ = st.columns([1, 1.4, 3])
    b1.button("Launch", type="primary", icon=":material/rocket_launch:", disabled=bool(blocking),
              help="Fix the problems above first." if blocking else "Starts the run as its own process.",
              on_click=launch_run, args=(config, gpus, False))  # fmt: skip
    b2.button("Find the learning rate", icon=":material/search:", disabled=bool(finder_problems),
              help="A short job of its own (100 batches at most): loss against a rising learning rate, and a "
              "suggested rate for the form.", on_click=launch_run, args=(finder_config, 1, True))  # fmt: skip


def _data_fields(problems: list[str]) -> DataChoice:
    """The dataset widgets (data.pick_kind / pick_source / pick_split, as in the sidebar, with the
    form's keys) and the validation choice; appends what is wrong with them to `problems`."""
    c = st.columns([1.4, 2, 2])
    kind = data.pick_kind(FORM_DATA, c[0])
    if kind == "demo":
        c[1].markdown(f"The built-in demo set in `{ui.demo_dir()}`.")
    paths = c[1].container()  # the picker's path fields, above the validation json
    val_text = ""
    if kind == "coco":
        val_text = c[1].text_input("Validation json (optional)", key=keys.TRAIN_COCO_VAL, bind="query-params",
                                   placeholder="data/pascal_val2007.json",
                                   help="Same image folder; empty: no validation (the last epoch is the best). "
                                   f"Inside {', '.join(str(r) for r in ui.data_roots())}.")  # fmt: skip
    try:
        spec = data.pick_source(kind, FORM_DATA, (paths, c[2]))
        if kind == "coco":
            val_data = _validation_json(val_text, spec)
            return DataChoice(str(spec), "train", "", val_data, _count(spec, "train", problems))
        train_split = data.pick_split(spec, FORM_DATA, c[2], label="Train on split")
    except (data.NoDataset, DataError) as e:
        problems.append(str(e))
        return DataChoice()
    splits = [*dataset_splits(spec), NO_VALIDATION]
    val_split = c[2].selectbox("Validate on split", splits,
                               index=splits.index("val" if "val" in splits else NO_VALIDATION),
                               key=keys.TRAIN_VAL_SPLIT, bind="query-params",
                               help="mAP after every epoch picks the best checkpoint; none: the last is the best.")  # fmt: skip
    val_split = "" if val_split == NO_VALIDATION else val_split
    return DataChoice(str(spec), train_split, val_split, "", _count(spec, train_split, problems))


def _validation_json(text: str, spec: DatasetSpec) -> str:
    """The spec of the validation json typed (with the training json's image folder), or ""."""
    if not text.strip():
        return ""
    val_file = check_within_roots(ui.app_path(text), ui.data_roots())
    if not val_file.is_file():
        raise DataError(f"{val_file}: no such file.")
    return str(DatasetSpec("coco", str(val_file), spec.image_dir))


def _count(spec: DatasetSpec, split: str, problems: list[str]) -> int | None:
    """Readable training images (the index is cached per file stamps, as in the sidebar)."""
    try:
        index = ui.read_index(str(spec), split, dataset_fingerprint(spec, split))
    except (DataError, ValueError, OSError) as e:
        problems.append(str(e))
        return None
    if len(index) == 0:
        problems.append(f"{spec.path}: no readable training images in split {split or '(the json)'}.")
    return len(index)


def _setting(where: Any, name: str, disabled: bool = False, options: list[str] | None = None, **widget: Any) -> Any:
    """The widget of TrainConfig field `name` (SETTINGS says its label, keys.TRAIN_FORM its key) in
    `where`; returns its value as the field's type, except the learning rate: its text
    (parse_learning_rate, as the CLI's --lr). The widget follows the field, as the CLI's flags do:
    a checkbox for a bool, a number input for a number, a choice among config.CHOICES (or
    `options`), else a text input; the default and the help text are the field's."""
    setting, field = SETTINGS[name], FIELDS[name]
    kind, default = str(field.type), field.default
    widget |= dict(key=keys.TRAIN_FORM[name], bind="query-params", disabled=disabled,
                   help=setting.help or field.metadata["help"] + setting.note)  # fmt: skip
    if kind == "bool":
        return where.checkbox(setting.label, default, **widget)
    if name == "lr":
        return where.text_input(setting.label, learning_rate_text(default), **widget)
    if kind in ("int", "float"):
        number = int if kind == "int" else float
        low, high = (number(b) for b in setting.bounds)
        step = number(setting.step) if setting.step else None
        return number(where.number_input(setting.label, low, high, default, step, **widget))
    options = options or list(CHOICES.get(name, ()))
    if not options:
        return where.text_input(setting.label, default, **widget)
    index = options.index(default) if default in options else 0
    if setting.radio:
        return where.radio(setting.label, options, index=index, horizontal=True, **widget)
    return where.selectbox(setting.label, options, index=index, **widget)


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
                      help="Stops the run; a training run saves a checkpoint first (resume it from a terminal).",
                      on_click=cancel_run, args=(run.path,))  # fmt: skip
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
