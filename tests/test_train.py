"""The training engine: schedule, overfitting, run folders, resume after SIGKILL, cancel, failures,
the CLI, the launcher, and DDP on CPU with gloo."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import quick, wait_for

from detviz.train import RunFolder, TrainConfig, TrainingError, cancel, fit, launch, list_runs, one_cycle
from detviz.train import runs as runs_module
from detviz.train.__main__ import main as train_main

ROOT = Path(__file__).resolve().parents[1]


def test_one_cycle_is_a_pure_function_of_position() -> None:
    start, beta_start = one_cycle(0.0, 0.25)
    peak, beta_peak = one_cycle(0.25, 0.25)
    end, beta_end = one_cycle(1.0, 0.25)
    assert start == pytest.approx(1 / 25) and peak == pytest.approx(1.0) and end == pytest.approx(1e-4)
    assert (beta_start, beta_peak, beta_end) == pytest.approx((0.95, 0.85, 0.95))
    factors = [one_cycle(p / 100, 0.25)[0] for p in range(101)]
    assert factors.index(max(factors)) == 25 and one_cycle(0.4, 0.25) == one_cycle(0.4, 0.25)
    assert one_cycle(-1.0) == one_cycle(0.0) and one_cycle(2.0) == one_cycle(1.0)


def test_overfits_one_batch(tiny: Path, tmp_path: Path) -> None:
    """Loss falls by 10x within 200 CPU steps on one repeated batch of 4 images."""
    config = quick(
        tiny,
        tmp_path,
        epochs=100,
        batch_size=4,
        val_split="",
        lr=3e-3,
        dropout=0.0,
        name="overfit",
        loss="bce",
        max_steps=200,
    )
    # 8 training images, batch 4, drop_last: two batches an epoch; the same two over and over
    run = RunFolder.create(config.out, config, config.name)
    fit(config, run)
    steps = [m for m in run.read_metrics() if m["kind"] == "step"]
    assert steps[0]["loss"] / steps[-1]["loss"] > 10, (steps[0]["loss"], steps[-1]["loss"])
    assert run.read_status().state == "finished" and run.checkpoint("best").is_file()


def test_run_folder_records_everything(tiny: Path, tmp_path: Path) -> None:
    config = quick(tiny, tmp_path, name="full")
    run = RunFolder.create(config.out, config, config.name)
    progress = fit(config, run)
    status = run.read_status()
    assert status.state == "finished" and status.progress == 1.0 and status.epoch == 2
    assert set(status.metrics) >= {"val_loss", "val_loss_box", "val_loss_cls", "val_map", "val_map_07"}
    epochs = [m for m in run.read_metrics() if m["kind"] == "epoch"]
    assert [m["epoch"] for m in epochs] == [0, 1] and progress.best is not None
    assert json.loads(run.config_path.read_text())["batch_size"] == 4
    assert "epoch 2/2" in run.log_tail()
    from detviz.models import load_checkpoint

    _, info = load_checkpoint(run.checkpoint("best"))
    assert info.training["epochs_done"] >= 1 and "val_map" in info.metrics
    assert oct(run.checkpoint("last").stat().st_mode)[-3:] == "644"


def test_lr_finder_runs_when_no_rate_is_given(tiny: Path, tmp_path: Path) -> None:
    config = quick(tiny, tmp_path, lr=0.0, epochs=1, name="auto-lr", val_split="")
    run = RunFolder.create(config.out, config, config.name)
    fit(config, run)
    found = json.loads(run.lr_find_path.read_text())
    assert len(found["lrs"]) == len(found["smoothed"]) > 5 and found["suggestion"] > 0
    assert found["lrs"] == sorted(found["lrs"])


def _small_run_flags(tiny: Path, *more: str) -> list[str]:
    """`python -m detviz.train` flags of a small CPU run on the tiny demo set (as conftest's `quick`),
    then `more`."""
    small = ["--image-size", "128", "--batch-size", "4", "--lr", "1e-3", "--workers", "0", "--no-augment"]
    return ["--data", f"demo:{tiny}", *small, *more]


def test_resume_after_a_killed_process(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    flags = _small_run_flags(tiny, "--epochs", "40", "--out", str(out), "--name", "killed")
    command = [sys.executable, "-m", "detviz.train", *flags]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run = RunFolder(out / "killed")
    wait_for(lambda: run.checkpoint("last").is_file() and (run.read_status().epoch or 0) >= 1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert run.state() == "failed"  # marked running, but its process is gone
    done_before = run.read_status().epoch
    config = run.config()
    short = TrainConfig.from_dict(config.to_dict() | {"epochs": done_before + 2})
    run.config_path.write_text(json.dumps(short.to_dict()))  # finish quickly: two more epochs
    assert train_main(["--resume", str(run.path)]) == 0
    status = run.read_status()
    assert status.state == "finished" and status.epoch == done_before + 2
    epochs = [m["epoch"] for m in run.read_metrics() if m["kind"] == "epoch"]
    assert epochs[-2:] == [done_before, done_before + 1]


def test_nan_loss_fails_the_run_and_keeps_the_last_good_checkpoint(tiny: Path, tmp_path: Path) -> None:
    config = quick(tiny, tmp_path, lr=1e4, epochs=20, grad_clip=0.0, name="nan", val_split="")
    run = RunFolder.create(config.out, config, config.name)
    with pytest.raises(
        TrainingError, match=r"the loss became (nan|inf|-inf) at epoch \d+, step \d+; lower the learning rate"
    ):
        fit(config, run)
    status = run.read_status()
    assert status.state == "failed" and "lower the learning rate" in status.error


def test_disk_full_while_saving_keeps_the_old_checkpoint(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = quick(tiny, tmp_path, epochs=3, name="full-disk", val_split="")
    run = RunFolder.create(config.out, config, config.name)
    saves = {"n": 0}
    real_save = torch.save

    def save(obj, f, *args, **kwargs):
        saves["n"] += 1
        if saves["n"] >= 2:  # the first save works, later ones find the disk full
            f.write(b"partial")
            raise OSError(28, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(runs_module.torch, "save", save)
    with pytest.raises(
        TrainingError, match=r"could not write the run folder .*No space left on device.*last good checkpoint is kept"
    ):
        fit(config, run)
    monkeypatch.setattr(runs_module.torch, "save", real_save)
    payload = torch.load(run.checkpoint("last"), weights_only=True)
    assert payload["resume"]["epoch"] == 1
    assert not [p for p in run.checkpoints.iterdir() if p.name.startswith(".")]  # no temporary file left
    assert run.read_status().state == "failed"


def test_launch_cancel_and_list(tiny: Path, tmp_path: Path) -> None:
    config = quick(tiny, tmp_path, epochs=200, val_split="")
    first = launch(config, tmp_path / "runs")
    second = launch(config, tmp_path / "runs")
    assert first != second  # two launches never share a folder
    run = RunFolder(first)
    wait_for(lambda: run.read_status().state == "running" and (run.read_status().step or 0) > 0)
    assert cancel(first)
    wait_for(lambda: run.read_status().state == "cancelled")
    assert run.checkpoint("last").is_file() and "cancelled" in run.log_tail()
    assert not cancel(first)  # not running any more
    cancel(second)
    wait_for(lambda: RunFolder(second).state() in ("cancelled", "failed", "finished"))
    names = [r.name for r in list_runs(tmp_path / "runs")]
    assert set(names) == {first.name, second.name}


def test_launched_run_finishes_on_its_own(tiny: Path, tmp_path: Path) -> None:
    path = launch(quick(tiny, tmp_path, epochs=1), tmp_path / "runs", name="alone")
    run = RunFolder(path)
    wait_for(lambda: run.state() in ("finished", "failed"), 180)
    assert run.state() == "finished", run.log_tail()
    assert run.read_status().pid > 0


def test_bad_settings_are_refused_before_anything_runs(tiny: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"--backbone must be one of small, resnet18, resnet34, resnet50, got 'vgg'"):
        quick(tiny, tmp_path, backbone="vgg").validate()
    with pytest.raises(
        ValueError,
        match=r"--anchors must be one of lesson_4x4, lesson_multiscale, ssd300 \(or leave it out for the model.s default\), got 'x'",
    ):
        quick(tiny, tmp_path, anchors="x").validate()
    with pytest.raises(ValueError, match=r"--loss must be one of bce, focal, got 'l2'"):
        quick(tiny, tmp_path, loss="l2").validate()
    with pytest.raises(ValueError, match=r"--batch-size 64 is larger than the training set \(8 images\)"):
        fit(quick(tiny, tmp_path, batch_size=64))
    with pytest.raises(ValueError, match=r"an anchor grid of 38x38 needs a larger image"):
        fit(quick(tiny, tmp_path, anchors="ssd300"))
    if not torch.cuda.is_available():
        with pytest.raises(TrainingError, match=r"--device cuda was asked for, but this machine has no CUDA GPU"):
            fit(quick(tiny, tmp_path, device="cuda"))
    config = quick(tiny, tmp_path, name="taken")
    RunFolder.create(config.out, config, "taken")
    with pytest.raises(ValueError, match=r"a run folder of that name exists; pick another name or --resume it"):
        RunFolder.create(config.out, config, "taken")


def test_cli_errors_are_one_line(tiny: Path, tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "detviz.train", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
        )

    bad_flag = run("--epochs", "three")
    assert bad_flag.returncode == 2
    assert bad_flag.stderr.strip().splitlines() == ["error: argument --epochs: invalid int value: 'three' (see --help)"]
    unknown = run("--data", f"demo:{tiny}", "--backbone", "vgg", "--out", str(tmp_path))
    assert unknown.returncode == 1 and len(unknown.stderr.strip().splitlines()) == 1
    assert "--backbone must be one of small, resnet18, resnet34, resnet50" in unknown.stderr
    resume_nothing = run("--resume", str(tmp_path / "nope"))
    assert resume_nothing.returncode == 1 and "not a run folder" in resume_nothing.stderr
    helped = run("--help")
    assert helped.returncode == 0 and "--lr auto|RATE" in helped.stdout and "--anchors" in helped.stdout


def test_ddp_two_processes_on_cpu_match_one_process(tiny: Path, tmp_path: Path) -> None:
    """2 gloo processes with 2 images each = 1 process with the same 4 images: same losses."""
    common = _small_run_flags(
        tiny, "--epochs", "1", "--max-steps", "2", "--dropout", "0", "--val-split", "", "--device", "cpu", "--seed", "3"
    )
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    one = subprocess.run(
        [sys.executable, "-m", "detviz.train", *common, "--out", str(tmp_path), "--name", "one"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert one.returncode == 0, one.stderr
    two = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "detviz.train",
            *common,
            "--out",
            str(tmp_path),
            "--name",
            "two",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert two.returncode == 0, two.stderr[-2000:]
    last_one = [m for m in RunFolder(tmp_path / "one").read_metrics() if m["kind"] == "step"][-1]
    last_two = [m for m in RunFolder(tmp_path / "two").read_metrics() if m["kind"] == "step"][-1]
    assert last_one["step"] == last_two["step"] == 2
    for key in ("loss", "loss_box", "loss_cls"):
        assert last_two[key] == pytest.approx(last_one[key], rel=1e-4), key


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_amp_and_channels_last_on_cuda(tiny: Path, tmp_path: Path) -> None:
    config = quick(tiny, tmp_path, device="cuda", amp=True, channels_last=True, epochs=2, name="gpu")
    run = RunFolder.create(config.out, config, config.name)
    fit(config, run)
    status = run.read_status()
    assert status.state == "finished" and status.device.startswith("cuda") and status.gpu_memory_gb > 0


def test_init_backbone_starts_from_a_checkpoints_backbone(tiny: Path, tmp_path: Path) -> None:
    """--init-backbone copies the backbone only (the lesson's ladder starts from demo_focal.pt's).
    Kills: the head copied too (shapes differ across kinds, so it would raise), the copy skipped,
    a ResNet checkpoint accepted for the small backbone, both starts at once accepted."""
    from detviz.models import ModelConfig, build_model, checkpoint_payload
    from detviz.train.build import prepare

    torch.manual_seed(3)
    source_config = ModelConfig(kind="ssd-multiscale", class_names=("a", "b"), image_size=64)
    source = build_model(source_config)
    path = tmp_path / "source.pt"
    torch.save(checkpoint_payload(source, source_config), path)
    setup = prepare(quick(tiny, tmp_path, model="largest", init_backbone=str(path)))
    for name, tensor in source.backbone.state_dict().items():
        torch.testing.assert_close(setup.model.backbone.state_dict()[name], tensor)
    fresh = prepare(quick(tiny, tmp_path, model="largest"))
    assert not torch.equal(next(fresh.model.backbone.parameters()), next(setup.model.backbone.parameters()))

    resnet_config = ModelConfig(kind="multilabel", backbone="resnet18", class_names=("a",), image_size=64)
    torch.save(checkpoint_payload(build_model(resnet_config), resnet_config), tmp_path / "resnet.pt")
    with pytest.raises(ValueError, match="backbone is resnet18"):
        prepare(quick(tiny, tmp_path, model="largest", init_backbone=str(tmp_path / "resnet.pt")))
    with pytest.raises(ValueError, match=r"--init-backbone: .*missing\.pt"):
        prepare(quick(tiny, tmp_path, model="largest", init_backbone=str(tmp_path / "missing.pt")))
    with pytest.raises(ValueError, match="choose one"):
        quick(tiny, tmp_path, backbone="resnet18", pretrained=True, init_backbone=str(path)).validate()
