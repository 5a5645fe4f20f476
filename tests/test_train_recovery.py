"""Crash recovery and hostile input of training runs (issue 12): a kill while best.pt is written,
temporary files of killed writes, failed starts, one owner per run folder, cancel with loader
workers, one metrics record per step after a resume, the learning-rate finder's suggestion,
exploding losses, and typed config.json / CLI values."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import conftest
import pytest
import torch
from conftest import wait_for

from detviz.data import make_demo_dataset
from detviz.models import load_checkpoint
from detviz.train import RunFolder, TrainConfig, TrainingError, cancel, engine, find_lr, fit, launch, prepare, tasks
from detviz.train.__main__ import main as train_main
from detviz.train.engine import Callback, Cancelled
from detviz.train.lr_finder import FALLBACK_LR, LR_FLOOR, suggest_lr
from detviz.train.runs import RunBusy, delete_run

ROOT = Path(__file__).resolve().parents[1]


def quick(tiny: Path, tmp_path: Path, **kwargs) -> TrainConfig:
    return conftest.quick(tiny, tmp_path, **({"epochs": 1} | kwargs))


def cli_args(tiny: Path, out: Path, name: str, *extra: str) -> list[str]:
    return [
        "--data", f"demo:{tiny}", "--image-size", "128", "--batch-size", "4", "--lr", "1e-3", "--workers", "0",
        "--no-augment", "--out", str(out), "--name", name, *extra,
    ]  # fmt: skip


def epoch_records(run: RunFolder) -> list[dict]:
    return [m for m in run.read_metrics() if m["kind"] == "epoch"]


# --- 1 and 2: a kill while best.pt is written for the first time ----------------------------

KILL_WHILE_WRITING_BEST = """
import os, signal, sys
import torch
from detviz.train.__main__ import main
real_save = torch.save
def save(obj, f, *args, **kwargs):
    if ".best.pt." in getattr(f, "name", ""):  # the temporary file of best.pt: half written, then killed
        f.write(b"half a checkpoint")
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    return real_save(obj, f, *args, **kwargs)
torch.save = save
sys.exit(main(sys.argv[1:]))
"""


def test_a_kill_while_best_is_first_written_resumes_to_a_real_best(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    killed = subprocess.run(
        [sys.executable, "-c", KILL_WHILE_WRITING_BEST, *cli_args(tiny, out, "k", "--epochs", "1")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    run = RunFolder(out / "k")
    temporary = [p for p in run.checkpoints.iterdir() if p.name.startswith(".best.pt.")]
    assert run.checkpoint("last").is_file() and not run.checkpoint("best").exists() and len(temporary) == 1
    assert run.state() == "failed" and epoch_records(run) == []  # the epoch's line was never written

    assert train_main(["--resume", str(run.path)]) == 0
    assert run.read_status().state == "finished"
    _, info = load_checkpoint(run.checkpoint("best"))  # the best it claims opens
    [record] = epoch_records(run)  # the lost epoch record is back, once
    assert record["epoch"] == 0 and info.metrics["val_map"] == pytest.approx(record["val_map"])
    assert run.read_status().best == pytest.approx(record["val_map"])
    assert not [p for p in run.checkpoints.iterdir() if p.name.startswith(".")]  # the killed write's file is gone


def test_partial_writes_are_removed_and_complete_files_kept(tmp_path: Path) -> None:
    run = RunFolder(tmp_path / "r")
    run.checkpoints.mkdir(parents=True)
    for name in (".last.pt.a1b2", ".best.pt.x", "last.pt", "best.pt", "notes.pt", ".other.pt.1"):
        (run.checkpoints / name).write_bytes(b"x")
    removed = run.remove_partial_writes()
    assert sorted(p.name for p in removed) == [".best.pt.x", ".last.pt.a1b2"]
    assert sorted(p.name for p in run.checkpoints.iterdir()) == [".other.pt.1", "best.pt", "last.pt", "notes.pt"]


# --- 3: a start that fails ends "failed" (or makes no folder) ---------------------------------


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        (["--data", "voc:/nowhere/VOC2007"], "VOC2007"),
        (["--batch-size", "64"], "--batch-size 64 is larger than the training set (8 images)"),
        (["--image-size", "16"], "image_size must be between 32 and 2048 pixels, got 16"),
    ],
)
def test_a_failed_start_ends_failed_with_its_reason(
    tiny: Path, tmp_path: Path, extra: list[str], reason: str, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "runs"
    assert train_main([*cli_args(tiny, out, "bad"), *extra]) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and reason in error[0]
    run = RunFolder(out / "bad")
    status = run.read_status()
    assert status.state == "failed" and reason in status.error and run.state() == "failed"
    assert not cancel(run.path)
    delete_run(run.path, out)  # a failed run can be deleted
    assert not run.path.exists()


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--lr", "nan", "Learning rate nan: it must be a positive number (or 'auto')"),
        ("--lr", "-1", "Learning rate -1: it must be a positive number (or 'auto')"),
        ("--lr", "fast", "Learning rate 'fast': type a number such as 0.003, or 'auto'"),
        ("--alpha", "1.5", "--alpha must be in [0, 1]"),
        ("--gamma", "-1", "--gamma must be 0 or more"),
        ("--device", "tpu", "--device must be one of auto, cpu, cuda, mps or cuda:N, got 'tpu'"),
        ("--iou-threshold", "inf", "--iou-threshold must be a finite number, got inf"),
        ("--anchors", "x", "--anchors must be one of lesson_4x4, lesson_multiscale, ssd300 (or leave"),
    ],
)
def test_bad_cli_values_are_one_line_and_make_no_folder(
    tiny: Path, tmp_path: Path, flag: str, value: str, message: str, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "runs"
    with pytest.raises(SystemExit) as exit_info:  # argparse's own refusals exit 2
        code = train_main([*cli_args(tiny, out, "bad"), flag, value])
        raise SystemExit(code)
    assert exit_info.value.code in (1, 2)
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and message in error[0], error
    assert not (out / "bad").exists()


def test_resume_with_a_wrongly_typed_config_is_one_line(
    tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    config = quick(tiny, tmp_path, name="typed")
    run = RunFolder.create(config.out, config, config.name)
    run.write_status(state="failed")
    for bad, named in (({"epochs": "ten"}, "'epochs' must be a whole number"),
                       ({"augment": "yes"}, "'augment' must be true or false"),
                       ({"lr": True}, "'lr' must be a number"),
                       ({"lr_divisors": [1, "a", 3]}, "'lr_divisors' must be a list of numbers"),
                       ({"alpha": 7}, "--alpha must be in [0, 1]")):  # fmt: skip
        run.config_path.write_text(json.dumps(config.to_dict() | bad))
        assert train_main(["--resume", str(run.path)]) == 1
        error = capsys.readouterr().err.strip().splitlines()
        assert len(error) == 1 and str(run.config_path) in error[0] and named in error[0], error
    run.config_path.write_text("[1, 2]")
    assert train_main(["--resume", str(run.path)]) == 1
    assert "expected an object of settings" in capsys.readouterr().err
    assert TrainConfig.from_dict({"alpha": 1, "lr_divisors": [1, 2, 3]}) == TrainConfig(
        alpha=1.0, lr_divisors=(1.0, 2.0, 3.0)
    )


# --- 4: one owner per run folder ---------------------------------------------------------------


def test_a_run_folder_has_one_owner_at_a_time(tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = quick(tiny, tmp_path, name="owned", epochs=2)
    run = RunFolder.create(config.out, config, config.name)
    run.write_status(state="cancelled")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from detviz.train import RunFolder; "
         "RunFolder(sys.argv[1]).lock(); print('locked', flush=True); time.sleep(300)", str(run.path)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert run.locked()
        assert train_main(["--resume", str(run.path)]) == 1
        error = capsys.readouterr().err.strip().splitlines()
        assert error == [f"error: {run.path}: another process (pid {holder.pid}) is using this run folder; "
                         "wait for it to end or cancel it."]  # fmt: skip
        with pytest.raises(RunBusy):
            RunFolder(run.path).lock()
        with pytest.raises(ValueError, match="a process is still using the run"):
            delete_run(run.path, config.out)
        assert run.read_status().state == "cancelled"  # the refused process wrote nothing
    finally:
        holder.kill()  # death releases the lock
        holder.wait()
    assert not run.locked()
    mine = RunFolder(run.path)
    mine.lock()
    assert mine.owned() and run.locked()
    mine.unlock()


def test_two_resumes_at_once_one_runs(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    first = subprocess.run(
        [sys.executable, "-m", "detviz.train", *cli_args(tiny, out, "twice", "--epochs", "1")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert first.returncode == 0, first.stderr
    run = RunFolder(out / "twice")
    run.config_path.write_text(json.dumps(run.config().to_dict() | {"epochs": 3}))
    run.write_status(state="cancelled")
    command = [sys.executable, "-m", "detviz.train", "--resume", str(run.path)]
    procs = [subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]  # fmt: skip
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    codes = sorted(code for code, _ in results)
    assert codes == [0, 1], results
    refused = next(err for code, err in results if code == 1).strip().splitlines()
    assert len(refused) == 1 and "another process" in refused[0]
    assert [r["epoch"] for r in epoch_records(run)] == [0, 1, 2]  # written by one process, once each
    steps = [m["step"] for m in run.read_metrics() if m["kind"] == "step"]
    assert steps == sorted(set(steps))


# --- 5: cancel ---------------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [0, 2])
def test_cancel_ends_cancelled_with_a_loadable_checkpoint(tiny: Path, tmp_path: Path, workers: int) -> None:
    config = quick(tiny, tmp_path, epochs=500, val_split="", workers=workers)
    path = launch(config, tmp_path / "runs", name=f"cancel-{workers}")
    run = RunFolder(path)
    wait_for(lambda: run.read_status().state == "running" and (run.read_status().step or 0) >= 10)
    assert cancel(path)
    wait_for(lambda: run.state() not in ("queued", "running"))
    status = run.read_status()
    assert status.state == "cancelled", (status, run.log_tail())
    _, info = load_checkpoint(run.checkpoint("last"))
    assert info.training["epochs_done"] >= 1 and "Terminated" not in run.log_tail()


# --- 6: one metrics record per step after a resume -------------------------------------------


class CancelAtStep(Callback):
    """Sends this process SIGTERM (what cancel() does) when a logged step reaches `step`."""

    def __init__(self, step: int):
        self.step = step

    def on_step(self, progress) -> None:
        if progress.step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


def test_a_resumed_run_logs_each_step_once(tiny: Path, tmp_path: Path) -> None:
    # 8 images, batch 2: 4 steps an epoch; steps are logged every 10, so step 10 (epoch 3) is
    # logged, then the run is cancelled in the middle of that epoch and resumed from its start
    config = quick(tiny, tmp_path, batch_size=2, epochs=4, val_split="", name="again")
    run = RunFolder.create(config.out, config, config.name)
    with pytest.raises(Cancelled):
        fit(config, run, [CancelAtStep(10)])
    assert run.read_status().state == "cancelled"
    assert [m["step"] for m in run.read_metrics() if m["kind"] == "step"] == [10]
    assert train_main(["--resume", str(run.path)]) == 0
    steps = [m["step"] for m in run.read_metrics() if m["kind"] == "step"]
    assert steps == [10, 16]  # step 10 again after the resume, but once
    assert [r["epoch"] for r in epoch_records(run)] == [0, 1, 2, 3]


# --- 7: the learning-rate finder's suggestion --------------------------------------------------


def ramp(n: int = 100) -> list[float]:
    return [1e-6 * (1e6) ** (i / (n - 1)) for i in range(n)]


def test_suggestion_is_the_middle_of_the_steepest_window_before_the_minimum() -> None:
    lrs = ramp()
    # a lucky low first step (the old rule's minimum), flat, then a slide with its steepest
    # 5-step fall from step 50 to 55, a minimum at step 70, then the blow-up
    smoothed = [1.0] + [3.0] * 40 + [3.0 - 0.05 * i for i in range(1, 10)]  # steps 0..49
    smoothed += [2.5 - 0.2 * i for i in range(1, 6)]  # steps 50..54: the steep part
    smoothed += [1.5 - 0.02 * i for i in range(1, 16)]  # steps 55..69
    smoothed += [1.1] + [1.1 + 0.5 * i for i in range(1, 30)]  # minimum at step 70, then up
    assert len(smoothed) == 100 and min(range(100), key=smoothed.__getitem__) == 0
    found = suggest_lr(lrs, smoothed)
    # windows of 5 steps; the one starting at step 49 falls most (2.55 -> 1.48); its middle is 51
    assert found.suggestion == found.steepest == lrs[51] and found.minimum == lrs[70] and found.warning == ""


def test_a_flat_or_short_curve_falls_back_with_a_warning() -> None:
    lrs = ramp()
    flat = [2.0 + 0.01 * math.sin(i) for i in range(100)]
    found = suggest_lr(lrs, flat)
    assert found.suggestion == FALLBACK_LR and found.steepest is None and "did not fall" in found.warning
    rising = [1.0 + 0.1 * i for i in range(60)]  # blew up at step 59 (lr 3.8e-3)
    found = suggest_lr(lrs[:60], rising)
    assert found.suggestion == pytest.approx(lrs[59] / 10) and "did not fall" in found.warning
    short = suggest_lr(ramp(4), [3.0, 2.0, 1.0, 0.5])  # 1e-6 .. 1
    assert short.suggestion == FALLBACK_LR and "only 4 steps" in short.warning


def test_a_suggestion_below_the_floor_is_raised_with_a_warning() -> None:
    lrs = ramp()
    smoothed = [3.0] * 11 + [3.0 - 0.4 * i for i in range(1, 6)] + [1.0 + 0.02 * i for i in range(1, 85)]
    assert len(smoothed) == 100  # the whole slide (steps 10-15) lies below 1e-5
    found = suggest_lr(lrs, smoothed)
    assert found.steepest < LR_FLOOR and found.suggestion == LR_FLOOR and "floor" in found.warning


@pytest.mark.parametrize(("image_size", "batch_size", "images"), [(128, 8, 48), (224, 8, 24)])
def test_the_finder_on_small_and_default_sizes_suggests_a_trainable_rate(
    tmp_path: Path, image_size: int, batch_size: int, images: int
) -> None:
    data = make_demo_dataset(tmp_path / "d", n_train=images, n_val=2, seed=1, workers=1)
    config = TrainConfig(data=f"demo:{data}", image_size=image_size, batch_size=batch_size, workers=0, augment=False)
    s = prepare(config)
    before = {k: v.clone() for k, v in s.model.state_dict().items()}
    found = find_lr(s, steps=60)
    after = s.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the finder restores the weights
    assert LR_FLOOR <= found.suggestion <= 0.1, found
    expected = suggest_lr(found.lrs, found.smoothed)
    assert found.suggestion == expected.suggestion and found.warning == expected.warning


# --- 8: a loss that explodes but stays finite ------------------------------------------------


def test_an_exploding_finite_loss_stops_the_run_and_keeps_the_last_checkpoint(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = quick(tiny, tmp_path, epochs=10, val_split="", name="explode")
    run = RunFolder.create(config.out, config, config.name)
    real_loss = tasks.SSDTask.loss
    calls = {"n": 0}

    def loss(self, outputs, batch):
        parts = real_loss(self, outputs, batch)
        calls["n"] += 1
        if calls["n"] > 6:  # epochs 1-3 train normally (2 steps each), then the loss explodes
            parts["loss"] = parts["loss"] * 1e16
        return parts

    monkeypatch.setattr(tasks.SSDTask, "loss", loss)
    with pytest.raises(TrainingError, match=r"the loss exploded to .* at epoch 4, step 6 .*lower the learning rate"):
        fit(config, run)
    status = run.read_status()
    assert status.state == "failed" and "exploded" in status.error
    _, info = load_checkpoint(run.checkpoint("last"))
    assert info.training["epochs_done"] == 3


def test_engine_check_loss_allows_normal_noise() -> None:
    first: list[float] = []
    for value in (2.0, 1.0, 3.0, 2.0, 2.0, 1500.0, 0.001):  # 1500 < 1000 x mean(2.0): noisy, not lost
        engine._check_loss(value, first, 0, 1)
    with pytest.raises(TrainingError, match="exploded to 2e\\+03 at epoch 1, step 7"):
        engine._check_loss(2001.0, first, 0, 7)
    with pytest.raises(TrainingError, match="the loss became nan"):
        engine._check_loss(float("nan"), first, 0, 7)
