"""The Train page's form: every TrainConfig field the form shows, as a widget derived from the
field (its kind, default and help text), the dataset and anchors choices, the command line to
copy, the launch checks, and the Launch / Find buttons (pages/ui/run_actions.py's callbacks)."""

from __future__ import annotations

import dataclasses
import shlex
from typing import Any

import streamlit as st

from detviz.anchors import PRESETS, AnchorConfig
from detviz.data import DataError
from detviz.data.spec import DatasetSpec, check_within_roots, dataset_fingerprint, dataset_splits
from detviz.train import TrainConfig, cli_command
from detviz.train.config import CHOICES, learning_rate_text, parse_learning_rate, parse_numbers
from detviz.train.runs import NAME_PATTERN, launch_problems
from pages.ui import access, data, keys
from pages.ui.cache import read_index
from pages.ui.models import backbone_sources, runs_dir
from pages.ui.run_actions import launch_run

NO_VALIDATION = "(none)"
NO_INIT = "(fresh)"  # the backbone starts from random weights (or ImageNet's)
DEFAULT_ANCHORS = "default"  # the model's own preset (TrainConfig.anchors ""); also its URL value
FROM_FILE = "from a JSON file"  # anchors: an uploaded AnchorConfig JSON (the Anchors page's download)
FROM_PAGE = "from the Anchors page"  # anchors: the configuration the Anchors page showed last


@dataclasses.dataclass(frozen=True)
class Setting:
    """How the form shows a TrainConfig field: its label, and a number's range and step. The
    widget's kind, default and help text come from the field, its key (also its query parameter)
    from keys.TRAIN_FORM (_setting)."""

    label: str
    bounds: tuple[float, float] = (0, 0)  # a number's (min, max)
    step: float | None = None  # a number's step (None: Streamlit's)
    radio: bool = False  # a choice shown as radio buttons, not a select box
    format: str | None = None  # a number's printf format (None: Streamlit's)
    help: str = ""  # replaces the field's help text
    note: str = ""  # appended to the field's help text


SETTINGS = {  # the fields the form shows, by TrainConfig field name
    "model": Setting("Model"),
    "backbone": Setting("Backbone"),
    "pretrained": Setting("ImageNet weights"),
    "init_backbone": Setting("Backbone from", help="Start the backbone from a trained checkpoint's (a shipped one "
                             "or a run's best; its backbone must be the kind chosen above), as the lesson starts "
                             "each stage from a trained network. The head always starts fresh."),
    "anchors": Setting("Anchors", help="A preset, a JSON file holding an AnchorConfig (the Anchors page "
                       "downloads one), or the anchors the Anchors page shows now. The checkpoint keeps them."),
    "coding": Setting("Box coding", radio=True),
    "loss": Setting("Classification loss", radio=True),
    "alpha": Setting("alpha", (0.01, 0.99), 0.05),
    "gamma": Setting("gamma", (0.0, 10.0), 0.5),
    "epochs": Setting("Epochs", (1, 10_000)),
    "lr": Setting("Learning rate", help="Peak of the one-cycle schedule: a number, or 'auto' to run the "
                  "learning-rate finder first (or find one below and use it)."),
    "batch_size": Setting("Batch size", (1, 4096)),
    "image_size": Setting("Image size (px)", (32, 1024), 32),
    "freeze_epochs": Setting("Frozen epochs", (0, 10_000)),
    "weight_decay": Setting("Weight decay", (0.0, 1.0), 0.001, format="%g"),
    "warmup": Setting("Warmup share", (0.01, 0.99), 0.05),
    "lr_divisors": Setting("LR divisors", help="Three numbers, backbone early, late and head: each group's "
                           "learning rate is the rate / its divisor (the lesson's 100, 10, 1 for a pretrained "
                           "backbone). Empty: that for ImageNet weights, else 1, 1, 1."),
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


def form(cuda: int) -> None:
    problems: list[str] = []
    with st.container(border=True):
        st.markdown("**Data**", help="What the run trains on; the sidebar's dataset is what the other pages show.")
        dataset = _data_fields(problems)
    values: dict[str, Any] = {}  # TrainConfig field -> the widget's value
    with st.container(border=True):
        st.markdown("**Model and loss**")
        c = st.columns(4)
        values["model"] = _setting(c[0], "model")
        values["backbone"] = _setting(c[1], "backbone")
        values["pretrained"] = _setting(c[1], "pretrained", disabled=values["backbone"] == "small")
        sources = backbone_sources()
        start = _setting(c[1], "init_backbone", disabled=values["pretrained"], options=[NO_INIT, *sources])
        values["init_backbone"] = "" if values["pretrained"] or start not in sources else str(sources[start])
        ssd = values["model"].startswith("ssd")
        values["anchors"] = _anchors(c[2], not ssd, problems)
        values["coding"] = _setting(c[2], "coding", disabled=not ssd)
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
            for row in (("augment", "max_steps", "seed"), ("weight_decay", "warmup", "lr_divisors")):
                for column, name in zip(st.columns(3), row, strict=True):
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
    try:
        values["lr_divisors"] = parse_numbers(values["lr_divisors"])
    except ValueError as e:
        problems.append(f"LR divisors: {e}; type three numbers such as 100, 10, 1, or leave it empty.")
        values["lr_divisors"] = ()
    config = TrainConfig(**values | {
        "pretrained": values["pretrained"] and values["backbone"] != "small",
        "name": values["name"].strip(), "out": str(runs_dir()), "data": dataset.data or DEFAULTS.data,
        "train_split": dataset.train_split, "val_split": dataset.val_split, "val_data": dataset.val_data,
    })  # fmt: skip
    gpus = int(gpus)
    if dataset.train_images is not None and config.batch_size > dataset.train_images:
        problems.append(f"--batch-size {config.batch_size} is larger than the training set "
                        f"({dataset.train_images} images): lower it.")  # fmt: skip
    finder_config = dataclasses.replace(config, name="", lr=0.0)
    finder_problems = problems + launch_problems(finder_config, 1, cuda)  # one process, its own folder name
    problems += launch_problems(config, gpus, cuda)
    if config.name and NAME_PATTERN.match(config.name) and (runs_dir() / config.name).exists():
        problems.append(f"A run named {config.name} exists already: choose another name, or leave it empty.")

    st.markdown("The same run from a terminal (or on a cluster, with torchrun): copy it.")
    st.code(shlex.join(cli_command(config, gpus)), language="bash", wrap_lines=True)
    blocking = problems + lr_problems
    if blocking:
        st.error("Cannot launch yet:\n" + "\n".join(f"- {p}" for p in blocking), icon=":material/block:")
    elif cuda == 0 and config.amp:
        st.caption("AMP is ignored on the CPU; the flag stays in the command for a GPU machine.")
    if access.read_only():
        return
    b1, b2, _ = st.columns([1, 1.4, 3])
    b1.button("Launch", type="primary", icon=":material/rocket_launch:", disabled=bool(blocking),
              help="Fix the problems above first." if blocking else "Starts the run as its own process.",
              on_click=launch_run, args=(config, gpus, False))  # fmt: skip
    b2.button("Find the learning rate", icon=":material/search:", disabled=bool(finder_problems),
              help="A short job of its own (100 batches at most): loss against a rising learning rate, and a "
              "suggested rate for the form.", on_click=launch_run, args=(finder_config, 1, True))  # fmt: skip


def _anchors(where: Any, disabled: bool, problems: list[str]) -> str:
    """TrainConfig.anchors from the form's anchors choice: "" (the model's default), a preset, or
    the JSON text of an uploaded file or of the Anchors page's configuration (the run keeps that
    text, so it never depends on a file). Appends what is missing or wrong to `problems`."""
    choice = _setting(where, "anchors", disabled=disabled, options=[DEFAULT_ANCHORS, *PRESETS, FROM_FILE, FROM_PAGE])
    if disabled or choice == DEFAULT_ANCHORS or choice in PRESETS:
        return "" if disabled or choice == DEFAULT_ANCHORS else choice
    if choice == FROM_FILE:
        upload = where.file_uploader("Anchors JSON", type=["json"], key=keys.TRAIN_ANCHORS_FILE,
                                     help="An AnchorConfig as JSON: the Anchors page's download, or "
                                     '{"grids": [4, 2, 1], "zooms": [1], "shapes": [[1, 1]]}.')  # fmt: skip
        if upload is None:
            problems.append("Anchors from a JSON file: upload the file (the Anchors page downloads one).")
            return ""
        try:
            config = AnchorConfig.from_json(upload.getvalue(), upload.name)
        except ValueError as e:
            problems.append(str(e))
            return ""
        source = upload.name
    else:
        designed = st.session_state.get(keys.DESIGNED_ANCHORS)
        if designed is None:
            problems.append("Anchors from the Anchors page: open the Anchors page and choose them there first.")
            return ""
        source, plain = designed
        config = AnchorConfig.from_dict(plain)
        if PRESETS.get(source) == config:
            where.caption(f"The Anchors page shows the preset {source}.")
            return source
    where.caption(f"{source}: {config.num_anchors:,} anchors on grids {', '.join(map(str, config.grids))}.")
    return config.to_json(indent=None)


def _data_fields(problems: list[str]) -> DataChoice:
    """The dataset widgets (data.pick_kind / pick_source / pick_split, as in the sidebar, with the
    form's keys) and the validation choice; appends what is wrong with them to `problems`."""
    c = st.columns([1.4, 2, 2])
    kind = data.pick_kind(FORM_DATA, c[0])
    if kind == "demo":
        c[1].markdown(f"The built-in demo set in `{data.demo_dir()}`.")
    paths = c[1].container()  # the picker's path fields, above the validation json
    val_text = ""
    if kind == "coco":
        val_text = c[1].text_input("Validation json (optional)", key=keys.TRAIN_COCO_VAL, bind="query-params",
                                   placeholder="data/pascal_val2007.json",
                                   help="Same image folder; empty: no validation (the last epoch is the best). "
                                   f"Inside {', '.join(str(r) for r in data.data_roots())}.")  # fmt: skip
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
    val_file = check_within_roots(data.app_path(text), data.data_roots())
    if not val_file.is_file():
        raise DataError(f"{val_file}: no such file.")
    return str(DatasetSpec("coco", str(val_file), spec.image_dir))


def _count(spec: DatasetSpec, split: str, problems: list[str]) -> int | None:
    """Readable training images (the index is cached per file stamps, as in the sidebar)."""
    try:
        index = read_index(str(spec), split, dataset_fingerprint(spec, split))
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
    if kind.startswith("tuple"):  # numbers typed with commas, as the CLI's flag takes them (parse_numbers)
        return where.text_input(setting.label, ", ".join(f"{v:g}" for v in default), **widget)
    if kind in ("int", "float"):
        number = int if kind == "int" else float
        low, high = (number(b) for b in setting.bounds)
        step = number(setting.step) if setting.step else None
        return number(where.number_input(setting.label, low, high, default, step, setting.format, **widget))
    options = options or list(CHOICES.get(name, ()))
    if not options:
        return where.text_input(setting.label, default, **widget)
    index = options.index(default) if default in options else 0
    if setting.radio:
        return where.radio(setting.label, options, index=index, horizontal=True, **widget)
    return where.selectbox(setting.label, options, index=index, **widget)
