"""Train: launch runs as their own processes, watch them live, cancel, compare, delete.

Training never runs in this process: Launch starts `python -m detviz.train --run-dir <folder>`
(detviz.train.runs.launch), which goes on when the page is closed; the page only reads the run
folders in ui.runs_dir().
"""

import dataclasses
import math
import shlex
from pathlib import Path

import pandas as pd
import streamlit as st
import torch

from detviz.anchors import PRESETS
from detviz.data import DataError
from detviz.data.demo import read_demo_settings
from detviz.data.spec import KINDS, DatasetSpec, check_within_roots, dataset_fingerprint, dataset_splits
from detviz.figures import lr_finder_figure
from detviz.losses import CLASSIFICATIONS
from detviz.models import BACKBONES, MODEL_KINDS
from detviz.train import MetricsFollower, RunFolder, TrainConfig, cancel, cli_command, delete_run, launch
from detviz.train.plots import (
    compare_figure,
    losses_figure,
    lr_figure,
    split_records,
    validation_figure,
    validation_metrics,
)
from detviz.train.runs import (
    LIVE_STATES,
    LR_FIND,
    NAME_PATTERN,
    config_differences,
    format_duration,
    launch_problems,
    list_runs,
    poll_interval,
    state_sentence,
    summary_row,
)
from pages import ui
from pages.ui import detection

ui.ensure_entrypoint()


POLL_SECONDS = 2.0  # the watched run's files are re-read this often while it is queued or running
TABLE_POLL_SECONDS = 5.0  # the runs table, while some run is live
LOG_LINES = 60
VIEWS = ("New run", "Watch", "Runs")  # also the URL values of ?train_view=
STATE_BADGES = {  # state -> (material icon, badge colour)
    "queued": (":material/schedule:", "gray"),
    "running": (":material/directions_run:", "blue"),
    "finished": (":material/check_circle:", "green"),
    "failed": (":material/error:", "red"),
    "cancelled": (":material/stop_circle:", "orange"),
}
NO_VALIDATION = "(none)"
DEFAULT_ANCHORS = "default"  # the model's own preset (TrainConfig.anchors ""); also its URL value
AUTO_LR = ("auto", "find", "")  # what the learning-rate field accepts for "run the finder first"

# Widget keys (query-parameter names where bound); ui.RUN ("run") is the watched run.
VIEW = "train_view"
DATA = "train_data"
VOC = "train_voc"
COCO = "train_coco"
IMAGES = "train_images"
COCO_VAL = "train_coco_val"
SPLIT = "train_split"
VAL_SPLIT = "train_val_split"
MODEL = "train_model"
BACKBONE = "train_backbone"
PRETRAINED = "train_pretrained"
ANCHORS = "train_anchors"
LOSS = "train_loss"
ALPHA = "train_alpha"
GAMMA = "train_gamma"
EPOCHS = "train_epochs"
LR = "train_lr"
BATCH = "train_batch"
SIZE = "train_size"
FREEZE = "train_freeze"
DEVICE = "train_device"
AMP = "train_amp"
GPUS = "train_gpus"
NAME = "train_name"
AUGMENT = "train_augment"
MAX_STEPS = "train_max_steps"
SEED = "train_seed"
COMPARE = "train_compare"
DELETE = "train_delete"
DELETE_SURE = "train_delete_sure"
NOTICE = "_train_notice"  # session only: (level, text) left by a button's callback
FOLLOWER = "_train_follower"  # session only: the watched run's MetricsFollower

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
    notice = st.session_state.pop(NOTICE, None)
    if notice:
        (st.error if notice[0] == "error" else st.success)(notice[1])
    new, watch, runs = st.tabs(VIEWS, key=VIEW, bind="query-params")
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
    with st.container(border=True):
        st.markdown("**Model and loss**")
        c = st.columns(4)
        model = c[0].selectbox("Model", MODEL_KINDS, index=MODEL_KINDS.index(DEFAULTS.model), key=MODEL,
                               bind="query-params", help=_help("model"))  # fmt: skip
        backbone = c[1].selectbox("Backbone", BACKBONES, key=BACKBONE, bind="query-params", help=_help("backbone"))
        pretrained = c[1].checkbox("ImageNet weights", key=PRETRAINED, bind="query-params",
                                   disabled=backbone == "small", help=_help("pretrained"))  # fmt: skip
        ssd = model.startswith("ssd")
        anchors = c[2].selectbox("Anchor preset", [DEFAULT_ANCHORS, *PRESETS], key=ANCHORS, bind="query-params",
                                 disabled=not ssd, help=_help("anchors"))  # fmt: skip
        loss = c[3].radio("Classification loss", CLASSIFICATIONS, index=CLASSIFICATIONS.index(DEFAULTS.loss),
                          key=LOSS, bind="query-params", horizontal=True, disabled=not ssd, help=_help("loss"))  # fmt: skip
        focal = ssd and loss == "focal"
        a, g = c[3].columns(2)
        alpha = a.number_input("alpha", 0.01, 0.99, DEFAULTS.alpha, 0.05, key=ALPHA, bind="query-params",
                               disabled=not focal, help=_help("alpha"))  # fmt: skip
        gamma = g.number_input("gamma", 0.0, 10.0, DEFAULTS.gamma, 0.5, key=GAMMA, bind="query-params",
                               disabled=not focal, help=_help("gamma"))  # fmt: skip
    with st.container(border=True):
        st.markdown("**Schedule**")
        c = st.columns(5)
        epochs = c[0].number_input("Epochs", 1, 10_000, DEFAULTS.epochs, key=EPOCHS, bind="query-params",
                                   help=_help("epochs"))  # fmt: skip
        lr_text = c[1].text_input("Learning rate", "auto", key=LR, bind="query-params",
                                  help="Peak of the one-cycle schedule: a number, or 'auto' to run the "
                                  "learning-rate finder first (or find one below and use it).")  # fmt: skip
        batch = c[2].number_input("Batch size", 1, 4096, DEFAULTS.batch_size, key=BATCH, bind="query-params",
                                  help=_help("batch_size"))  # fmt: skip
        size = c[3].number_input("Image size (px)", 32, 1024, DEFAULTS.image_size, 32, key=SIZE, bind="query-params",
                                 help=_help("image_size"))  # fmt: skip
        freeze = c[4].number_input("Frozen epochs", 0, 10_000, DEFAULTS.freeze_epochs, key=FREEZE,
                                   bind="query-params", help=_help("freeze_epochs"))  # fmt: skip
        with st.expander("More settings"):
            c = st.columns(4)
            augment = c[0].checkbox("Augment", DEFAULTS.augment, key=AUGMENT, bind="query-params",
                                    help=_help("augment"))  # fmt: skip
            max_steps = c[1].number_input("Stop after steps (0: no limit)", 0, 10_000_000, DEFAULTS.max_steps,
                                          key=MAX_STEPS, bind="query-params", help=_help("max_steps"))  # fmt: skip
            seed = c[2].number_input("Seed", 0, 2**31 - 1, DEFAULTS.seed, key=SEED, bind="query-params",
                                     help=_help("seed"))  # fmt: skip
    with st.container(border=True):
        st.markdown("**Hardware and name**")
        c = st.columns(4)
        devices = ["auto", "cpu", "cuda", *(f"cuda:{i}" for i in range(max(cuda, 1)))]
        device = c[0].selectbox("Device", devices, key=DEVICE, bind="query-params",
                                help="auto: a CUDA GPU when there is one, else the CPU. A CUDA device can be chosen "
                                "without a GPU here, to prepare the command for another machine.")  # fmt: skip
        amp = c[1].checkbox("Mixed precision (AMP)", key=AMP, bind="query-params",
                            help=_help("amp") + "; ignored on the CPU.")  # fmt: skip
        gpus = c[2].number_input("GPUs", 1, 64, 1, key=GPUS, bind="query-params",
                                 help="More than one: torchrun starts one process per GPU "
                                 "(DistributedDataParallel); the batch is split between them.")  # fmt: skip
        name = c[3].text_input("Run name (optional)", key=NAME, bind="query-params", placeholder="date-model-random",
                               help="The run's folder name; empty: the date, the model and a random suffix.")  # fmt: skip

    lr_problems: list[str] = []
    lr = _learning_rate(lr_text, lr_problems)
    config = TrainConfig(
        data=data.data or DEFAULTS.data, train_split=data.train_split, val_split=data.val_split,
        val_data=data.val_data, model=model, backbone=backbone, pretrained=pretrained and backbone != "small",
        anchors="" if anchors == DEFAULT_ANCHORS or not ssd else anchors, loss=loss, alpha=float(alpha),
        gamma=float(gamma), epochs=int(epochs), lr=lr, freeze_epochs=int(freeze), batch_size=int(batch),
        image_size=int(size), augment=augment, max_steps=int(max_steps), seed=int(seed), device=device,
        amp=amp, name=name.strip(), out=str(ui.runs_dir()),
    )  # fmt: skip
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
    b1, b2, _ = st.columns([1, 1.4, 3])
    b1.button("Launch", type="primary", icon=":material/rocket_launch:", disabled=bool(blocking),
              help="Fix the problems above first." if blocking else "Starts the run as its own process.",
              on_click=_launch, args=(config, gpus, False))  # fmt: skip
    b2.button("Find the learning rate", icon=":material/search:", disabled=bool(finder_problems),
              help="A short job of its own (100 batches at most): loss against a rising learning rate, and a "
              "suggested rate for the form.", on_click=_launch, args=(finder_config, 1, True))  # fmt: skip


def _data_fields(problems: list[str]) -> DataChoice:
    """The dataset widgets; appends what is wrong with them to `problems`."""
    roots = ui.data_roots()
    c = st.columns([1.4, 2, 2])
    kind = c[0].radio("Source", KINDS, key=DATA, bind="query-params", captions=[ui.KIND_CAPTIONS[k] for k in KINDS])
    hint = f"Inside {', '.join(str(r) for r in roots)}."
    try:
        if kind == "demo":
            folder = ui.demo_dir()
            c[1].markdown(f"The built-in demo set in `{folder}`.")
            if read_demo_settings(folder) is None:
                raise DataError(f"The demo dataset is not drawn yet in {folder}: draw it from the sidebar (Source: demo).")  # fmt: skip
            spec = DatasetSpec("demo", str(folder))
        elif kind == "voc":
            text = c[1].text_input("VOC folder", key=VOC, bind="query-params", placeholder="data/VOCdevkit/VOC2007",
                                   help=f"The folder holding Annotations/, JPEGImages/ and ImageSets/Main/. {hint}")  # fmt: skip
            if not text.strip():
                raise DataError("Type the VOC folder to train on.")
            spec = DatasetSpec("voc", str(check_within_roots(_app_path(text), roots)))
        else:
            json_text = c[1].text_input("COCO json", key=COCO, bind="query-params",
                                        placeholder="data/pascal_train2007.json", help=f"The training json. {hint}")  # fmt: skip
            image_text = c[2].text_input("Image folder", key=IMAGES, bind="query-params", placeholder="data/JPEGImages",
                                         help=f"The folder its file names are relative to. {hint}")  # fmt: skip
            val_text = c[1].text_input("Validation json (optional)", key=COCO_VAL, bind="query-params",
                                       placeholder="data/pascal_val2007.json",
                                       help=f"Same image folder; empty: no validation (the last epoch is the best). {hint}")  # fmt: skip
            if not json_text.strip() or not image_text.strip():
                raise DataError("Type the COCO json and its image folder to train on.")
            json_file = check_within_roots(_app_path(json_text), roots)
            image_dir = check_within_roots(_app_path(image_text), roots)
            if not json_file.is_file():
                raise DataError(f"{json_file}: no such file.")
            if not image_dir.is_dir():
                raise DataError(f"{image_dir}: no such folder.")
            spec = DatasetSpec("coco", str(json_file), str(image_dir))
            val_data = ""
            if val_text.strip():
                val_file = check_within_roots(_app_path(val_text), roots)
                if not val_file.is_file():
                    raise DataError(f"{val_file}: no such file.")
                val_data = str(DatasetSpec("coco", str(val_file), str(image_dir)))
            return DataChoice(str(spec), "train", "", val_data, _count(spec, "train", problems))
    except DataError as e:
        problems.append(str(e))
        return DataChoice()
    splits = dataset_splits(spec)
    if not splits:
        problems.append(f"{spec.path}: no split files in ImageSets/Main (train.txt, val.txt, ...).")
        return DataChoice()
    train_split = c[2].selectbox("Train on split", splits, index=splits.index("train") if "train" in splits else 0,
                                 key=SPLIT, bind="query-params")  # fmt: skip
    val_options = [*splits, NO_VALIDATION]
    val_split = c[2].selectbox("Validate on split", val_options,
                               index=val_options.index("val" if "val" in splits else NO_VALIDATION),
                               key=VAL_SPLIT, bind="query-params",
                               help="mAP after every epoch picks the best checkpoint; none: the last is the best.")  # fmt: skip
    val_split = "" if val_split == NO_VALIDATION else val_split
    return DataChoice(str(spec), train_split, val_split, "", _count(spec, train_split, problems))


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


def _app_path(text: str) -> Path:
    """A typed path; relative ones are relative to the app folder (as in the sidebar)."""
    path = Path(text.strip()).expanduser()
    return path if path.is_absolute() else ui.APP_DIR / path


def _help(field: str) -> str:
    """TrainConfig's own help text of a field (the CLI's --help says the same)."""
    return TrainConfig.__dataclass_fields__[field].metadata["help"]


def _learning_rate(text: str, problems: list[str]) -> float:
    """The form's learning rate: 0.0 for auto (the finder runs first), else a positive number."""
    text = text.strip().lower()
    if text in AUTO_LR:
        return 0.0
    try:
        value = float(text)
    except ValueError:
        problems.append(f"Learning rate {text!r}: type a number such as 0.003, or 'auto'.")
        return 0.0
    if not math.isfinite(value) or value <= 0:
        problems.append(f"Learning rate {text}: it must be a positive number (or 'auto').")
        return 0.0
    return value


def _launch(config: TrainConfig, gpus: int, find_lr: bool) -> None:
    """Launch / Find buttons' callback: starts the process, then shows it in Watch."""
    try:
        path = launch(config, ui.runs_dir(), "" if find_lr else config.name, gpus, find_lr=find_lr)
    except (ValueError, OSError) as e:
        st.session_state[NOTICE] = ("error", f"Not launched: {e}")
        return
    st.session_state[ui.RUN] = path.name
    st.session_state[VIEW] = "Watch"
    what = "Learning-rate finder" if find_lr else "Run"
    st.session_state[NOTICE] = ("success", f"{what} {path.name} started as process {_pid(path)}.")


def _pid(path: Path) -> str:
    return str(RunFolder(path).read_status().get("pid", "?"))


# --- watching one run --------------------------------------------------------------------------


def _watch() -> None:
    runs = list_runs(ui.runs_dir())
    names = [r.name for r in runs]
    current = st.session_state.get(ui.RUN)
    if current is not None and not NAME_PATTERN.match(str(current)):
        st.error(f"Run {current!r} is not a run folder name (letters, digits, '.', '_', '-'): not opened.")
        st.session_state.pop(ui.RUN)
        current = None
    if not runs and current is None:
        st.info("No runs yet: launch one from New run (or from a terminal with `python -m detviz.train`).")
        return
    options = names if current is None or current in names else [current, *names]
    # no format_func: a bound widget's URL value is its shown text, and ?run= must be the name
    name = st.columns([2, 3])[0].selectbox("Run", options, key=ui.RUN, bind="query-params", help="Newest first.")
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
    finder = status.get("kind") == LR_FIND
    head, button = st.columns([5, 1], vertical_alignment="center")
    icon, color = STATE_BADGES.get(state, (":material/help:", "gray"))
    head.markdown(f"### {'Learning-rate finder' if finder else 'Run'} {run.path.name} :{color}-badge[{icon} {state}]")
    if state in LIVE_STATES:
        button.button("Cancel", icon=":material/stop_circle:", key=f"train-cancel-{run.path.name}",
                      help="Stops the run; a training run saves a checkpoint first (resume it from a terminal).",
                      on_click=_cancel, args=(run.path,))  # fmt: skip
    sentence = state_sentence(state, status)
    if state == "failed":
        st.error(sentence, icon=":material/error:")
    elif finder or state != "running":  # a running training run says it in its progress bar
        st.caption(sentence)
    if finder:
        _show_lr_find(run, state)
    else:
        _show_training(run, status, state)
    with st.expander(f"Log (last {LOG_LINES} lines of train.log)", expanded=state == "failed"):
        st.code(run.log_tail(LOG_LINES) or "(empty so far)", language=None)
    return state


def _cancel(path: Path) -> None:
    if cancel(path):
        st.toast(f"Asked {path.name} to stop: it saves a checkpoint, then ends.", icon=":material/stop_circle:")
    else:
        st.toast(f"{path.name} is not running any more.")


def _records(run: RunFolder) -> list[dict]:
    """The run's metrics so far; a poll reads only what was appended since the last one."""
    follower = st.session_state.get(FOLLOWER)
    if follower is None or follower.path != run.metrics_path:
        follower = st.session_state[FOLLOWER] = MetricsFollower(run.metrics_path)
    return follower.read()


def _show_training(run: RunFolder, status: dict, state: str) -> None:
    name = run.path.name
    progress = min(max(float(status.get("progress") or 0.0), 0.0), 1.0)
    text = f"step {status.get('step', 0)} of {status.get('total_steps', '?')}"
    if state == "running" and status.get("eta_seconds"):
        text += f", about {format_duration(status['eta_seconds'])} left"
    st.progress(progress, text=text)
    m = st.columns(5)
    config = _run_config(run)
    m[0].metric("Epochs done", f"{status.get('epoch', 0)} / {status.get('epochs', config.epochs if config else '?')}")
    m[1].metric("Images / s", f"{status.get('images_per_second', 0):.1f}")
    m[2].metric("Device", status.get("device", "not yet"))
    best = status.get("best")
    m[3].metric("Best validation score", "-" if best is None else f"{best:.4f}",
                help="val_map (all-point VOC mAP@0.5) for SSD models, accuracy for the classifier stages.")  # fmt: skip
    if "gpu_memory_gb" in status:
        m[4].metric("GPU memory (peak)", f"{status['gpu_memory_gb']:.2f} GB")
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
    finder = run.lr_find()
    if finder:
        with st.expander(f"Learning-rate finder (this run picked {finder['suggestion']:.2g} with it)"):
            ui.show_figure(lr_finder_figure(finder), f"{name}-lr-find")
    if f"{detection.RUN_PREFIX}{name}" in detection.run_checkpoints():  # a detector's best checkpoint
        st.page_link("pages/predictions.py", label=f"Open {name}'s best checkpoint in Predictions",
                     icon=":material/target:", query_params={ui.CHECKPOINT: f"run:{name}"})  # fmt: skip


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
    rate = f"{result['suggestion']:.2g}"
    if result.get("warning"):
        st.warning(f"Suggested learning rate: **{rate}**. {result['warning'][0].upper()}{result['warning'][1:]}")
    else:
        lowest = f"; the smoothed loss is lowest at {result['minimum']:.2g}" if result.get("minimum") else ""
        st.markdown(f"Suggested learning rate: **{rate}** (where the smoothed loss falls fastest on its way down{lowest}).")  # fmt: skip
    st.button(f"Use {rate} in the form", icon=":material/input:", key=f"train-use-{run.path.name}",
              on_click=_use_rate, args=(rate,))  # fmt: skip


def _use_rate(rate: str) -> None:
    st.session_state[LR] = rate
    st.session_state[VIEW] = "New run"


# --- all runs ----------------------------------------------------------------------------------


def _runs() -> None:
    runs = list_runs(ui.runs_dir())
    if not runs:
        st.info("No runs yet.")
        return
    live = any(r.state in LIVE_STATES for r in runs)
    st.subheader("All runs")
    st.fragment(_runs_table, run_every=TABLE_POLL_SECONDS if live else None)()
    _compare([r for r in runs if r.status.get("kind") != LR_FIND])
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
    chosen = st.multiselect("Runs", names, default=names[:2], key=COMPARE, bind="query-params",
                            help="Their curves overlaid, their final metrics and the settings that differ.")  # fmt: skip
    if not chosen:
        return
    by_name = {r.name: r for r in runs}
    records = {n: RunFolder(by_name[n].path).read_metrics() for n in chosen}
    left, right = st.columns(2)
    ui.show_figure(compare_figure(records, "val_map"), "compare-val-map", left)
    ui.show_figure(compare_figure(records, "loss"), "compare-loss", right)
    final = []
    for n in chosen:
        s = by_name[n].status
        took = s.get("finished", 0) - s.get("started", 0) if s.get("finished") and s.get("started") else None
        final.append({"run": n, "state": by_name[n].state, "epochs": s.get("epoch", 0), "best": s.get("best"),
                      **s.get("metrics", {}), "images/s": s.get("images_per_second"),
                      "time": format_duration(took) if took is not None else "-"})  # fmt: skip
    st.markdown("**Final metrics** (after the last epoch; best is the best epoch's score)")
    st.dataframe(pd.DataFrame(final), hide_index=True)
    differences = config_differences({n: by_name[n].config for n in chosen})
    if differences:
        st.markdown("**Settings that differ**")
        st.dataframe(pd.DataFrame(differences).T.astype(str), column_config={"_index": "setting"})
    elif len(chosen) > 1:
        st.caption("These runs have the same settings.")
    shown = detection.run_checkpoints()  # the runs Predictions offers: a detector with a best checkpoint
    links = [n for n in chosen if f"{detection.RUN_PREFIX}{n}" in shown]
    for column, n in zip(st.columns(max(len(links), 1)), links, strict=False):
        column.page_link("pages/predictions.py", label=f"{n} in Predictions", icon=":material/target:",
                         query_params={ui.CHECKPOINT: f"run:{n}"})  # fmt: skip


def _delete(names: list[str]) -> None:
    with st.expander("Delete a run"):
        if not names:
            st.caption("No ended run to delete (cancel a live one first).")
            return
        victim = st.selectbox("Run to delete", names, index=None, key=DELETE, placeholder="choose a run",
                              help="Queued and running runs are not listed: cancel them first.")  # fmt: skip
        if victim is None:
            return
        sure = st.checkbox(f"Yes, delete {victim} and its checkpoints for good", key=DELETE_SURE)
        st.button("Delete", icon=":material/delete:", disabled=not sure, on_click=_delete_run, args=(victim,))


def _delete_run(name: str) -> None:
    try:
        delete_run(ui.runs_dir() / name, ui.runs_dir())
    except (ValueError, OSError) as e:
        st.session_state[NOTICE] = ("error", f"Not deleted: {e}")
        return
    st.session_state[NOTICE] = ("success", f"Deleted {name}.")
    st.session_state.pop(DELETE, None)
    st.session_state.pop(DELETE_SURE, None)
    if st.session_state.get(ui.RUN) == name:
        st.session_state.pop(ui.RUN)


main()
