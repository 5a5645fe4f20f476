"""The Train page and what it stands on: the CLI command it shows, state mappings, launch
checks, the metrics follower, run figures, deleting runs, and AppTests over real tiny CPU runs
(finished, running then cancelled, failed twice, the learning-rate finder job, three sessions
launching at once, a run folder deleted while watched)."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import run_app, texts, wait_for
from test_evaluate_page import _array, _figure  # a page's figure spec and its (typed) arrays

from detviz.data.spec import open_dataset
from detviz.figures import (
    MAX_POINTS,
    compare_figure,
    losses_figure,
    lr_figure,
    thin,
    validation_figure,
    validation_metrics,
)
from detviz.models import ModelConfig, build_model, checkpoint_payload, load_checkpoint, read_checkpoint
from detviz.train import MetricsFollower, RunFolder, TrainConfig, cancel, cli_command, delete_run, launch
from detviz.train.__main__ import build_parser
from detviz.train.report import LIVE_STATES, STATES, RunStatus
from detviz.train.runs import LOG_TAIL_BYTES, QUEUED_GRACE_SECONDS, effective_state, launch_problems, poll_interval
from detviz.train.snapshots import EpochSnapshot, ImageSnapshot, append_line, snapshot_path
from pages.ui import keys

TRAIN = "pages/train.py"
TINY_FORM = {"train_epochs": "1", "train_size": "64", "train_batch": "4", "train_lr": "0.001", "train_augment": "False"}


def tiny(demo_root: Path, runs: Path, **kwargs) -> TrainConfig:
    """A run of a few seconds on the CPU (most of it importing torch)."""
    base = dict(data=f"demo:{demo_root}", image_size=64, batch_size=4, epochs=1, lr=1e-3, workers=0,
                augment=False, out=str(runs))  # fmt: skip
    return TrainConfig(**(base | kwargs))


def watched(at) -> tuple[str, str]:
    """(title, state) of the run the Watch view shows, from its heading and state badge."""
    text = next(t for t in texts(at.markdown) if t.startswith("### "))
    found = re.fullmatch(r"### (.+) :\w+-badge\[:material/\w+: (\w+)\]", text)
    assert found, text
    return found[1], found[2]


def button(at, label: str):
    return next(b for b in at.button if b.label == label)


def ended(run: RunFolder) -> bool:
    return run.state() not in LIVE_STATES


# --- the command line --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        TrainConfig(),
        TrainConfig(data="voc:data/VOC 2007", model="ssd", anchors="lesson_4x4", loss="bce", epochs=3, lr=0.0),
        TrainConfig(
            backbone="resnet34", pretrained=True, lr=3e-4, lr_divisors=(100.0, 10.0, 1.0), amp=True, augment=False,
            device="cuda:1", image_size=300, alpha=0.123456789, gamma=1.5, name="my-run", out="/tmp/x runs",
            val_split="", freeze_epochs=2, max_steps=7,
        ),
    ],
)  # fmt: skip
def test_cli_command_parses_back_to_the_same_config(config: TrainConfig) -> None:
    command = cli_command(config)
    assert command[:3] == ["python", "-m", "detviz.train"]
    args = build_parser().parse_args(command[3:])
    assert TrainConfig(**{k: getattr(args, k) for k in TrainConfig.__dataclass_fields__}) == config
    assert len(cli_command(TrainConfig())) == 3  # defaults are not repeated
    if config.lr:
        assert command[command.index("--lr") + 1] == "0.0003"
    else:
        assert "--lr" not in command and build_parser().parse_args([]).lr == 0.0  # auto is the default


def test_cli_command_for_several_gpus_uses_torchrun() -> None:
    command = cli_command(TrainConfig(device="cuda", augment=False), gpus=4)
    assert command[:5] == ["torchrun", "--standalone", "--nproc_per_node=4", "-m", "detviz.train"]
    assert command[5:] == ["--no-augment", "--device", "cuda"]
    args = build_parser().parse_args(command[5:])
    assert args.device == "cuda" and args.augment is False


# --- state mappings and launch checks ---------------------------------------------------------


def test_effective_state_corrects_for_a_process_that_is_gone() -> None:
    now = 1000.0
    alive, dead = (lambda pid: True), (lambda pid: False)
    for state in STATES:  # a live process (or none recorded): the status says it
        assert effective_state(RunStatus(state=state, pid=5), alive, now) == state
        assert effective_state(RunStatus(state=state), dead, now) == state
    for state in ("finished", "failed", "cancelled"):  # an ended run stays as it ended
        assert effective_state(RunStatus(state=state, pid=5), dead, now) == state
    assert effective_state(RunStatus(state="running", pid=5, updated=now), dead, now) == "failed"
    fresh = RunStatus(state="queued", pid=5, updated=now - QUEUED_GRACE_SECONDS + 1)
    assert effective_state(fresh, dead, now) == "queued"  # still starting up
    stale = RunStatus(state="queued", pid=5, updated=now - QUEUED_GRACE_SECONDS - 1)
    assert effective_state(stale, dead, now) == "failed"
    asked = RunStatus(state="queued", pid=5, updated=now, cancel_requested=now - 1)
    assert effective_state(asked, dead, now) == "cancelled"  # killed before it could say so
    resumed = RunStatus(state="running", pid=5, started=now - 1, cancel_requested=now - 100)
    assert effective_state(resumed, dead, now) == "failed"  # that cancel was for an earlier process
    assert effective_state(RunStatus(), dead, now) == "unknown"


def test_poll_interval_polls_only_live_runs() -> None:
    assert [poll_interval(s, 2.0) for s in STATES] == [2.0, 2.0, None, None, None]
    assert poll_interval("gone", 2.0) is None and poll_interval("unknown", 2.0) is None


def test_launch_problems_name_the_fix() -> None:
    ok = TrainConfig(device="auto")
    assert launch_problems(ok, 1, 0) == [] and launch_problems(TrainConfig(device="cuda:1"), 1, 2) == []
    assert launch_problems(TrainConfig(device="cuda"), 4, 4) == []

    def one(config: TrainConfig, gpus: int, cuda: int) -> str:
        problems = launch_problems(config, gpus, cuda)
        assert len(problems) == 1, problems
        return problems[0]

    assert "no CUDA GPU; choose cpu or auto" in one(TrainConfig(device="cuda"), 1, 0)
    assert "has 2 CUDA GPU(s), cuda:0 to cuda:1" in one(TrainConfig(device="cuda:2"), 1, 2)
    assert "--freeze-epochs (3) must be less than --epochs (3)" in one(TrainConfig(epochs=3, freeze_epochs=3), 1, 0)
    assert "use letters, digits" in one(TrainConfig(name="../up"), 1, 0)
    assert "need --device cuda or auto" in one(TrainConfig(device="cpu"), 2, 2)
    assert "this machine has 2; lower the number" in one(TrainConfig(), 4, 2)
    assert "this machine has none" in one(TrainConfig(), 2, 0)
    assert "split over 8 GPUs" in one(TrainConfig(batch_size=4), 8, 8)


def _checkpoint(path: Path, backbone: str = "small") -> Path:
    config = ModelConfig(kind="multilabel", backbone=backbone, class_names=("a", "b"), image_size=64)
    torch.save(checkpoint_payload(build_model(config), config), path)
    return path


def test_init_backbone_must_be_a_checkpoint_of_the_same_backbone(tmp_path: Path) -> None:
    """Kills: a --init-backbone that fails only inside the launched process (a file that is no
    checkpoint, or one whose backbone is of another kind), instead of before Launch."""
    small = _checkpoint(tmp_path / "small.pt")
    assert launch_problems(TrainConfig(init_backbone=str(small)), 1, 0) == []
    (problem,) = launch_problems(TrainConfig(backbone="resnet18", init_backbone=str(small)), 1, 0)
    assert problem == (
        "--init-backbone small.pt: backbone: the checkpoint has 'small', expected 'resnet18'; "
        "choose --backbone small or another file."
    )
    (tmp_path / "notes.pt").write_text("not a checkpoint")
    (problem,) = launch_problems(TrainConfig(init_backbone=str(tmp_path / "notes.pt")), 1, 0)
    assert problem.startswith("--init-backbone: ") and "notes.pt: not a PyTorch checkpoint" in problem
    (problem,) = launch_problems(TrainConfig(init_backbone=str(tmp_path / "gone.pt")), 1, 0)
    assert "gone.pt: checkpoint file not found" in problem


def test_the_form_starts_a_backbone_from_a_shipped_checkpoint(data_root: Path) -> None:
    """Kills: the form dropping its "Backbone from" choice from the command (the lesson's ladder
    is trained so), sending it with ImageNet weights too (the config refuses both), or offering
    no shipped file."""
    (data_root / "checkpoints").mkdir(exist_ok=True)
    shipped = _checkpoint(data_root / "checkpoints" / "teacher.pt")
    at = run_app(TRAIN, train_batch="4")
    picker = at.selectbox(key="train_init")
    assert picker.options[0] == "(fresh)" and "teacher.pt" in picker.options
    assert "--init-backbone" not in at.code[0].value
    picker.set_value("teacher.pt").run()
    assert f"--init-backbone {shipped}" in at.code[0].value and not at.error
    assert not button(at, "Launch").disabled
    at.selectbox(key="train_backbone").set_value("resnet18").run()
    assert any("choose --backbone small or another file" in e for e in texts(at.error))
    assert button(at, "Launch").disabled
    at.checkbox(key="train_pretrained").check().run()  # ImageNet weights: the choice is off
    assert at.selectbox(key="train_init").disabled and "--init-backbone" not in at.code[0].value


# --- files of a run ----------------------------------------------------------------------------


def test_metrics_follower_reads_only_what_was_appended(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    follower = MetricsFollower(path)
    assert follower.read() == []  # no file yet
    path.write_text(json.dumps({"step": 1}) + "\n" + '{"step": ')  # the second line is being written
    assert follower.read() == [{"step": 1}]
    with open(path, "a") as f:
        f.write('2}\n{"step": 3}\nnot json\n')
    assert follower.read() == [{"step": 1}, {"step": 2}, {"step": 3}]  # a broken line is skipped
    offset = follower.offset
    assert follower.read() is follower.records and follower.offset == offset == path.stat().st_size
    path.write_text(json.dumps({"step": 9}) + "\n")  # the run was made again: shorter
    assert follower.read() == [{"step": 9}]
    path.unlink()
    assert follower.read() == []


def test_log_tail_shows_progress_bars_as_a_terminal_does(tmp_path: Path) -> None:
    run = RunFolder(tmp_path)
    assert run.log_tail() == ""
    run.log_path.write_text("start\n\repoch 1:  10%|#  | 1/10\repoch 1: 100%|###| 10/10\r      \rval 0.5\nend\n\n")
    assert run.log_tail() == "start\nval 0.5\nend"
    assert run.log_tail(1) == "end"
    with open(run.log_path, "a") as f:
        f.write("".join(f"line {i}\n" for i in range(100_000)))
    assert run.log_path.stat().st_size > 10 * LOG_TAIL_BYTES
    assert run.log_tail(3) == "line 99997\nline 99998\nline 99999"
    assert all(line.startswith("line ") for line in run.log_tail(10_000).splitlines())  # no half line


def test_delete_run_refuses_live_runs_and_paths_outside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    done = RunFolder.create(root, TrainConfig(), "done")
    done.write_status(state="finished")
    busy = RunFolder.create(root, TrainConfig(), "busy")
    busy.write_status(state="running", pid=os.getpid())
    elsewhere = RunFolder.create(tmp_path / "other", TrainConfig(), "elsewhere")
    (root / "link").symlink_to(elsewhere.path)
    with pytest.raises(ValueError, match="running; cancel it"):
        delete_run(busy.path, root)
    for outside in (elsewhere.path, root / "link", root / ".." / "other" / "elsewhere", root, tmp_path):
        with pytest.raises(ValueError, match="not a run folder inside"):
            delete_run(outside, root)
    (root / "plain").mkdir()
    with pytest.raises(ValueError, match=r"no config\.json"):
        delete_run(root / "plain", root)
    delete_run(done.path, root)
    assert not done.path.exists() and busy.path.exists() and elsewhere.path.exists()


# --- figures -----------------------------------------------------------------------------------


def _records(steps: int, epochs: int) -> list[dict]:
    rows: list[dict] = [
        {"kind": "step", "epoch": 0, "step": s, "lr": 1e-3, "loss": 2.0, "loss_box": 0.5, "loss_cls": 1.5}
        for s in range(1, steps + 1)
    ]
    rows += [{"kind": "epoch", "epoch": e, "step": 0, "val_map": 0.1 * e, "val_loss": 1.0} for e in range(epochs)]
    return rows


def test_thin_keeps_the_ends_and_at_most_the_limit() -> None:
    rows = [{"i": i} for i in range(10_000)]
    kept = thin(rows)
    assert len(kept) <= MAX_POINTS and kept[0] == rows[0] and kept[-1] == rows[-1]
    assert thin(rows[:5]) == rows[:5] and thin([]) == []


def test_run_figures_draw_the_records() -> None:
    records = _records(5_000, 3)
    losses = losses_figure(records)
    assert [t.name for t in losses.data] == ["loss", "loss_box", "loss_cls"]
    assert len(losses.data[0].x) <= MAX_POINTS and losses.data[0].x[-1] == 5_000
    assert losses.layout.yaxis.type == "log"
    validation = validation_figure(records)
    assert [t.name for t in validation.data] == ["val_map", "val_loss"]
    assert list(validation.data[0].x) == [1, 2, 3] and validation.data[1].yaxis == "y2"
    assert list(lr_figure(records).data[0].y[:2]) == [1e-3, 1e-3]
    assert losses_figure([]).data == () and validation_figure(_records(4, 0)).data == ()
    compared = compare_figure({"a": records, "b": _records(3, 0)}, "val_map")
    assert [t.name for t in compared.data] == ["a", "b"] and len(compared.data[1].x) == 0
    per_step = compare_figure({"a": records}, "loss")
    assert per_step.layout.xaxis.title.text == "step" and len(per_step.data[0].x) <= MAX_POINTS
    gap = losses_figure([{"kind": "step", "step": 1, "loss": 1.0}, {"kind": "step", "step": 2, "loss_box": 1.0}])
    assert math.isnan(gap.data[0].y[1])  # a missing part is a gap, not a zero
    assert gap.data[0].mode == "lines+markers" and losses.data[0].mode == "lines"  # a lone point stays visible
    assert losses.layout.yaxis.dtick == "D2"  # 1, 2, 5 per decade over a narrow range
    diverged = losses_figure([{"kind": "step", "step": 1, "loss": 2.0}, {"kind": "step", "step": 2, "loss": 1e19}])
    assert diverged.layout.yaxis.dtick is None  # decades only: 1e19 would pile up 1-2-5 labels
    assert validation_metrics(records) == ["val_map", "val_loss"]
    assert validation_metrics([{"kind": "epoch", "epoch": 0, "step": 6, "time": 1.0}]) == []  # no validation split


# --- the page: the form ------------------------------------------------------------------------


def test_form_shows_the_command_and_refuses_bad_input(data_root: Path) -> None:
    at = run_app(TRAIN)
    assert any("No GPU here" in t for t in texts(at.info))
    assert at.selectbox(key="train_device").options[:3] == ["auto", "cpu", "cuda"]
    assert at.code[0].value.startswith("python -m detviz.train --data demo:")
    assert "--batch-size 32 is larger than the training set (24 images)" in at.error[0].value
    assert button(at, "Launch").disabled and button(at, "Find the learning rate").disabled

    at.number_input(key="train_batch").set_value(4).run()
    assert not at.error and not button(at, "Launch").disabled
    command = at.code[0].value
    assert "--batch-size 4" in command and f"--out {data_root / 'runs'}" in command

    def refused(reason: str, finder_too: bool = True) -> None:
        assert any(reason in e for e in texts(at.error)), texts(at.error)
        assert button(at, "Launch").disabled
        assert button(at, "Find the learning rate").disabled == finder_too

    at.text_input(key="train_lr").set_value("fast").run()
    refused("Learning rate 'fast': type a number such as 0.003, or 'auto'", finder_too=False)
    at.text_input(key="train_lr").set_value("-1").run()
    refused("it must be a positive number", finder_too=False)
    at.text_input(key="train_lr").set_value("3e-3").run()
    assert "--lr 0.003" in at.code[0].value and not at.error

    at.selectbox(key="train_device").set_value("cuda").run()
    refused("--device cuda: this machine has no CUDA GPU; choose cpu or auto")
    assert "--device cuda" in at.code[0].value  # the command is still shown, for another machine
    at.selectbox(key="train_device").set_value("auto").run()
    at.number_input(key="train_gpus").set_value(2).run()
    refused("2 GPUs: this machine has none", finder_too=False)
    assert at.code[0].value.startswith("torchrun --standalone --nproc_per_node=2 -m detviz.train ")
    at.number_input(key="train_gpus").set_value(1).run()
    at.number_input(key="train_epochs").set_value(2).run()
    at.number_input(key="train_freeze").set_value(2).run()
    refused("--freeze-epochs (2) must be less than --epochs (2)")
    at.number_input(key="train_freeze").set_value(0).run()

    at.text_input(key="train_name").set_value("../escape").run()
    refused("use letters, digits", finder_too=False)
    RunFolder.create(data_root / "runs", TrainConfig(), "taken")
    at.text_input(key="train_name").set_value("taken").run()
    refused("A run named taken exists already", finder_too=False)
    at.text_input(key="train_name").set_value("").run()
    assert not at.error and not button(at, "Launch").disabled


def test_form_data_paths_must_lie_inside_the_data_roots(data_root: Path, tmp_path_factory) -> None:
    outside = tmp_path_factory.mktemp("outside")
    at = run_app(TRAIN, train_data="voc", train_batch="4")
    assert any("Type the VOC folder" in e for e in texts(at.error)) and button(at, "Launch").disabled
    at.text_input(key="train_voc").set_value(str(outside)).run()
    assert any("outside the data folders this app may read" in e for e in texts(at.error))
    at.text_input(key="train_voc").set_value(str(data_root / ".." / outside.name)).run()
    assert any("outside the data folders" in e for e in texts(at.error))  # .. does not get out
    assert button(at, "Launch").disabled and button(at, "Find the learning rate").disabled
    (data_root / "empty").mkdir()
    at.text_input(key="train_voc").set_value(str(data_root / "empty")).run()
    assert any("no split files in ImageSets/Main" in e for e in texts(at.error))

    at.radio(key="train_data").set_value("coco").run()
    at.text_input(key="train_coco").set_value(str(outside / "a.json"))
    at.text_input(key="train_images").set_value(str(data_root)).run()
    assert any("outside the data folders" in e for e in texts(at.error))
    at.text_input(key="train_coco").set_value(str(data_root / "missing.json")).run()
    assert any("missing.json: no such file" in e for e in texts(at.error)) and button(at, "Launch").disabled
    assert not at.exception


# --- the page: real runs -----------------------------------------------------------------------


@pytest.mark.slow
def test_three_sessions_launch_at_once_then_watch_compare_and_delete(data_root: Path) -> None:
    """Two runs and a learning-rate finder launched from three sessions at the same time: three
    processes, three folders; then the watch view, the finder's suggestion, the runs table,
    comparing, and deleting with confirmation."""
    sessions = [run_app(TRAIN, **TINY_FORM) for _ in range(3)]
    for at in sessions:
        assert not at.error, texts(at.error)
    button(sessions[0], "Launch").click()
    button(sessions[1], "Launch").click()
    at_finder = sessions[2]
    at_finder.text_input(key="train_lr").set_value("auto")
    button(at_finder, "Find the learning rate").click()
    for at in sessions:
        at.run()
        assert not at.exception, [e.value for e in at.exception]
    names = [at.session_state["run"] for at in sessions]
    assert len(set(names)) == 3 and "lr-find" in names[2], names
    runs = [RunFolder(data_root / "runs" / n) for n in names]
    assert all(run.exists() for run in runs)
    first = sessions[0]
    assert first.session_state["train_view"] == "Watch"
    assert any(f"Run {names[0]} started as process" in s for s in texts(first.success))
    assert watched(first) in ((f"Run {names[0]}", "queued"), (f"Run {names[0]}", "running"))
    assert any(b.label == "Cancel" for b in first.button)

    wait_for(lambda: all(ended(run) for run in runs))
    assert [run.state() for run in runs] == ["finished"] * 3, [run.log_tail() for run in runs]

    first.run()  # the fragment's full rerun after the end, as a browser would get it
    assert watched(first) == (f"Run {names[0]}", "finished") and not any(b.label == "Cancel" for b in first.button)
    assert any(c.startswith("Finished in") for c in texts(first.caption))
    metrics = {m.label: m.value for m in first.metric}
    assert metrics["Epochs done"] == "1 / 1" and metrics["Device"] == "cpu" and "GPU memory (peak)" not in metrics
    assert len(first.get("plotly_chart")) == 4  # loss parts, validation, learning rate, the epoch snapshot
    epochs_table = first.dataframe[0].value
    assert list(epochs_table["epoch"]) == [1] and "val_map" in epochs_table
    link = first.get("page_link")[0].proto
    assert link.page == "predictions" and "ckpt=run" in link.query_string and names[0] in link.query_string

    at_finder.run()
    assert watched(at_finder) == (f"Learning-rate finder {names[2]}", "finished")
    use = next(b for b in at_finder.button if b.label.startswith("Use "))
    rate = use.label.split()[1]
    assert float(rate) == pytest.approx(runs[2].lr_find().suggestion, rel=0.05)
    use.click().run()
    assert at_finder.session_state["train_view"] == "New run" and at_finder.text_input(key="train_lr").value == rate
    assert f"--lr {float(rate):g}" in at_finder.code[0].value

    at = run_app(TRAIN, train_view="Runs")
    table = at.dataframe[0].value
    assert set(table["run"]) == set(names) and set(table["state"]) == {"finished"}
    assert sorted(table["job"]) == ["LR finder", "training", "training"]
    assert at.multiselect(key="train_compare").value == [names[1], names[0]]  # newest first, finder left out
    final = at.dataframe[1].value
    assert list(final["run"]) == [names[1], names[0]] and "val_map" in final and list(final["epochs"]) == [1, 1]
    assert len(at.get("plotly_chart")) == 2 and len(at.get("page_link")) == 2
    assert any("same settings" in c for c in texts(at.caption))

    at.selectbox(key="train_delete").set_value(names[0]).run()
    assert button(at, "Delete").disabled  # until confirmed
    at.checkbox(key="train_delete_sure").check().run()
    button(at, "Delete").click().run()
    assert not runs[0].path.exists() and runs[1].path.exists()
    assert any(f"Deleted {names[0]}" in s for s in texts(at.success))
    assert names[0] not in set(at.dataframe[0].value["run"])


@pytest.mark.slow
def test_running_cancelled_and_failed_runs(data_root: Path, demo_root: Path) -> None:
    """A long run watched while it trains and cancelled from the page; a run whose loss turns
    NaN; a run whose data is gone by the time it starts; a run cancelled while still starting."""
    runs_dir = data_root / "runs"
    # two loader workers: the cancel's signal reaches them too, and must not fail the run
    long = RunFolder(launch(tiny(demo_root, runs_dir, epochs=500, val_split="", name="long", workers=2)))
    nan = RunFolder(launch(tiny(demo_root, runs_dir, lr=1e4, grad_clip=0.0, epochs=50, val_split="", name="nan")))
    doomed = RunFolder(launch(tiny(demo_root, runs_dir, data=f"demo:{data_root / 'doomed'}", name="doomed")))
    early = RunFolder(launch(tiny(demo_root, runs_dir, name="early")))
    assert cancel(early.path)  # while it still imports torch
    wait_for(lambda: ended(early), 30)
    assert early.state() == "cancelled"

    wait_for(lambda: long.state() == "running" and (long.read_status().step or 0) > 0)
    at = run_app(TRAIN, train_view="Watch", run="long")
    assert watched(at) == ("Run long", "running")
    assert at.get("progress") and "step " in at.get("progress")[0].proto.text
    charts = {c.key for c in at.get("plotly_chart")} - {f"{keys.TRAIN_SNAPSHOTS}long-snapshot"}  # after an epoch
    assert charts == {"long-loss", "long-lr"}  # loss parts and learning rate
    assert any("No validation split" in c for c in texts(at.caption))
    button(at, "Cancel").click().run()
    wait_for(lambda: ended(long))
    at.run()
    assert long.state() == "cancelled" and watched(at) == ("Run long", "cancelled")
    assert not any(b.label == "Cancel" for b in at.button) and "cancelled" in long.log_tail()
    load_checkpoint(long.checkpoint("last"))  # saved, and it opens
    assert read_checkpoint(long.checkpoint("last"))["resume"]["complete"] is False  # saved by the cancel

    wait_for(lambda: ended(nan) and ended(doomed))
    at = run_app(TRAIN, train_view="Watch", run="nan")
    assert watched(at) == ("Run nan", "failed")
    assert any(re.search(r"Failed: the loss (became nan|became inf|exploded to)", e) for e in texts(at.error))
    assert "lower the learning rate" in at.code[-1].value  # the log tail, shown open
    at.selectbox(key="run").set_value("doomed").run()
    assert watched(at) == ("Run doomed", "failed")
    assert any("doomed" in e and "no demo dataset here" in e for e in texts(at.error)), texts(at.error)

    at = run_app(TRAIN, train_view="Runs")
    states = dict(zip(at.dataframe[0].value["run"], at.dataframe[0].value["state"], strict=True))
    assert states == {"long": "cancelled", "nan": "failed", "doomed": "failed", "early": "cancelled"}
    assert set(at.selectbox(key="train_delete").options) == set(states)  # all ended: all deletable


def test_watch_view_edge_cases(data_root: Path) -> None:
    """A folder deleted while watched, a run name that is a path, and GPU memory on a CUDA run
    (its process a stand-in, so no GPU is needed)."""
    runs_dir = data_root / "runs"
    at = run_app(TRAIN, train_view="Watch")
    assert any("No runs yet" in i for i in texts(at.info))

    RunFolder.create(runs_dir, TrainConfig(), "soon-gone")
    at = run_app(TRAIN, train_view="Watch", run="soon-gone")
    assert watched(at) == ("Run soon-gone", "queued")
    shutil.rmtree(runs_dir / "soon-gone")
    at.run()
    assert not at.exception and any("its folder is gone" in w for w in texts(at.warning))

    at = run_app(TRAIN, train_view="Watch", run="../..")  # no run at all: nothing opened
    assert any("No runs yet" in i for i in texts(at.info)) and not at.get("progress")
    at.session_state["run"] = "../.."  # however it got there, a path is never opened
    at.run()
    assert any("'../..' is not a run folder name" in e for e in texts(at.error)), texts(at.error)
    RunFolder.create(runs_dir, TrainConfig(), "other")
    at = run_app(TRAIN, train_view="Watch", run="../..")  # not one of the runs: Streamlit drops it
    assert any("run=../.., which is not a valid value" in w for w in texts(at.warning))
    assert watched(at) == ("Run other", "queued")

    stand_in = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
    try:
        run = RunFolder.create(runs_dir, TrainConfig(epochs=4), "on-gpu")
        run.write_status(state="running", pid=stand_in.pid, started=time.time(), device="cuda:0", epoch=1,
                         epochs=4, step=30, total_steps=120, progress=0.25, eta_seconds=95.0,
                         images_per_second=812.5, gpu_memory_gb=3.25)  # fmt: skip
        run.append_metrics({"kind": "step", "epoch": 0, "step": 10, "lr": 1e-4, "loss": 3.0, "loss_box": 1.0,
                            "loss_cls": 2.0})  # fmt: skip
        at = run_app(TRAIN, train_view="Watch", run="on-gpu")
        metrics = {m.label: m.value for m in at.metric}
        assert metrics["GPU memory (peak)"] == "3.25 GB" and metrics["Device"] == "cuda:0"
        assert metrics["Images / s"] == "812.5" and metrics["Epochs done"] == "1 / 4"
        assert at.get("progress")[0].proto.text == "step 30 of 120, about 1 min 35 s left"
        button(at, "Cancel").click().run()
        stand_in.wait(timeout=30)  # the SIGTERM reached the run's process group, nothing else
        at.run()
        assert watched(at) == ("Run on-gpu", "cancelled")
    finally:
        stand_in.kill()


# --- watch it learn: the epoch scrubber ----------------------------------------------------------


def snapshot_run(runs_dir: Path, demo_root: Path, name: str, epochs: int, kind: str = "ssd") -> tuple[RunFolder, list]:
    """A finished run whose snapshots.jsonl is written by hand: after epoch e, image k of the first
    two validation images has k + 1 detections whose boxes grow with e (so every epoch draws
    different boxes). Returns the run and the validation records of the two images."""
    val = open_dataset(f"demo:{demo_root}", "val")
    records = [val[0], val[1]]
    config = TrainConfig(data=f"demo:{demo_root}", model=kind, epochs=epochs)
    run = RunFolder.create(runs_dir, config, name)
    run.write_status(state="finished", epoch=epochs, epochs=epochs, progress=1.0)
    for e in range(epochs):
        append_line(snapshot_path(run.path), hand_snapshot(e, kind, records).to_json())
    return run, records


def hand_snapshot(epoch: int, kind: str, records: list) -> EpochSnapshot:
    images = []
    for k, image_id in enumerate(r.image_id for r in records):
        n = 0 if kind == "multilabel" else k + 1
        boxes = torch.tensor([[0.1 * j, 0.2, 0.3 + 0.1 * j + 0.05 * epoch, 0.5 + 0.1 * epoch] for j in range(n)])
        probabilities = torch.linspace(0.1, 0.9, 8) * (epoch + 1) / 4 if kind == "multilabel" else None
        images.append(ImageSnapshot(image_id, boxes.reshape(n, 4), torch.full((n,), 0.8), torch.arange(n),
                                    probabilities))  # fmt: skip
    data = f"demo:{records[0].image_path.parents[1]}"  # the demo folder the images are in
    return EpochSnapshot(epoch, 10 * (epoch + 1), kind, "val", data, "val", tuple(images))


def drawn_boxes(at, name: str) -> torch.Tensor:
    """The predicted boxes (pixel xyxy) the scrubber's figure draws: its class traces' corners."""
    boxes = []
    for trace in _figure(at, f"{keys.TRAIN_SNAPSHOTS}{name}-snapshot")["data"]:
        if trace.get("type") != "scatter" or trace.get("name") == "ground truth":
            continue
        xs, ys = _array(trace["x"]), _array(trace["y"])
        boxes += [[xs[i], ys[i], xs[i + 1], ys[i + 2]] for i in range(0, len(xs), 6)]  # rect_path: 5 corners, a gap
    return torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)


def same_boxes(drawn: torch.Tensor, snapshot: EpochSnapshot, k: int, record) -> bool:
    """Whether `drawn` are image k's boxes of the snapshot in the record's pixels."""
    size = torch.tensor([record.width, record.height] * 2, dtype=torch.float32)
    expected = snapshot.images[k].boxes * size
    return drawn.shape == expected.shape and torch.allclose(drawn, expected, atol=1e-3)


def test_the_epoch_scrubber_draws_the_chosen_epoch_and_image(data_root: Path, demo_root: Path) -> None:
    """Kills: a slider that does not start at the newest epoch, a figure that does not follow the
    slider or the image choice, boxes scaled by the wrong side, an image choice that shows
    another image's predictions."""
    _, records = snapshot_run(data_root / "runs", demo_root, "learned", 3)
    ids = [r.image_id for r in records]
    at = run_app(TRAIN, train_view="Watch", run="learned")
    slider = at.select_slider(key=f"{keys.TRAIN_SNAPSHOTS}learned{keys.SNAPSHOT_EPOCH}")
    assert slider.value == 2 and slider.options == ["1", "2", "3"]
    assert same_boxes(drawn_boxes(at, "learned"), hand_snapshot(2, "ssd", records), 0, records[0])
    slider.set_value(0).run()
    assert not at.exception
    first = drawn_boxes(at, "learned")
    assert same_boxes(first, hand_snapshot(0, "ssd", records), 0, records[0])
    assert not same_boxes(first, hand_snapshot(2, "ssd", records), 0, records[0])
    at.radio(key=f"{keys.TRAIN_SNAPSHOTS}learned{keys.SNAPSHOT_IMAGE}").set_value(ids[1]).run()
    drawn = drawn_boxes(at, "learned")
    assert drawn.shape == (2, 4) and same_boxes(drawn, hand_snapshot(0, "ssd", records), 1, records[1])


def test_the_scrubber_follows_a_live_run_and_explains_old_and_broken_runs(data_root: Path, demo_root: Path) -> None:
    """Kills: a slider that stays behind while a run adds epochs (or jumps away from the epoch
    a user chose), an old run without snapshots that errors or shows nothing, a garbage file
    that raises, and a multi-label run drawn as boxes."""
    run, records = snapshot_run(data_root / "runs", demo_root, "live", 2)
    stand_in = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
    try:
        run.write_status(state="running", pid=stand_in.pid, started=time.time(), epoch=2, epochs=5)
        at = run_app(TRAIN, train_view="Watch", run="live")
        key = f"{keys.TRAIN_SNAPSHOTS}live{keys.SNAPSHOT_EPOCH}"
        assert at.select_slider(key=key).value == 1
        append_line(snapshot_path(run.path), hand_snapshot(2, "ssd", records).to_json())
        at.run()
        assert at.select_slider(key=key).value == 2 and len(at.select_slider(key=key).options) == 3
        at.select_slider(key=key).set_value(0).run()
        append_line(snapshot_path(run.path), hand_snapshot(3, "ssd", records).to_json())
        at.run()
        assert at.select_slider(key=key).value == 0 and len(at.select_slider(key=key).options) == 4
    finally:
        stand_in.kill()

    snapshot_path(run.path).unlink()  # a run trained before snapshots were recorded
    run.write_status(state="finished", pid=None)
    at = run_app(TRAIN, train_view="Watch", run="live")
    assert any("trained before detviz recorded epoch snapshots" in i for i in texts(at.info)), texts(at.info)
    assert not at.get("select_slider")
    snapshot_path(run.path).write_text("garbage\nmore garbage\n")
    at.run()
    assert any("none of its 2 lines is an epoch snapshot" in e for e in texts(at.error)), texts(at.error)

    snapshot_run(data_root / "runs", demo_root, "labels", 2, kind="multilabel")
    at = run_app(TRAIN, train_view="Watch", run="labels")
    (bars,) = [t for t in _figure(at, f"{keys.TRAIN_SNAPSHOTS}labels-snapshot")["data"] if t["type"] == "bar"]
    assert list(_array(bars["y"])) == pytest.approx(
        hand_snapshot(1, "multilabel", records).images[0].probabilities.tolist(), abs=1e-4
    )
