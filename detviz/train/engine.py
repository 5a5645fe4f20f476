"""The training engine: one loop, read top to bottom, shared by the CLI and the app.

fit(config) builds the data, model and optimizer (build.prepare), optionally finds a learning
rate (lr_finder), then for every epoch: one-cycle learning rate, forward, loss, backward, clipped
step; validation (loss parts and VOC mAP@0.5 for SSD models: tasks); checkpoints. Progress goes
to callbacks (tqdm in the CLI, the run folder for the app). Under torchrun it trains with
DistributedDataParallel. After validation the main process records the epoch's predictions on a
few images (snapshots.py). A resumed run is first made consistent with its last checkpoint
(_restore, _recover_best, _recover_metrics, snapshots.drop_snapshots).
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from detviz.checkpoints import CheckpointError, checkpoint_payload, read_checkpoint
from detviz.train.build import (
    Processes,
    Setup,
    TrainingError,
    float_outputs,
    images_of,
    make_optimizer,
    prepare,
    resolve_device,
    start_processes,
    to_device,
)
from detviz.train.config import TrainConfig
from detviz.train.lr_finder import FALLBACK_LR, find_lr
from detviz.train.report import RunState
from detviz.train.runs import RunFolder, atomic_torch_save
from detviz.train.snapshots import SnapshotRecorder, drop_snapshots

LOG_EVERY = 10  # steps between metric lines
DIV_START = 25.0  # one-cycle: start at peak / 25 (fastai's div)
DIV_END = 1e4  # ... and end at peak / 1e4 (fastai's final_div)
MOMENTUM = (0.95, 0.85)  # AdamW beta1 cycles from 0.95 down to 0.85 and back, against the rate
DIVERGENCE_FACTOR = 1e3  # a step loss this many times the run's first losses has diverged
DIVERGENCE_REFERENCE_STEPS = 5  # ... the mean of this many first steps (of this process) is the reference


class Cancelled(Exception):
    """The run was asked to stop (SIGTERM)."""


# --- schedule ----------------------------------------------------------------------------


def one_cycle(position: float, warmup: float = 0.25) -> tuple[float, float]:
    """(learning-rate factor, beta1) at a position in [0, 1] of training.

    The rate rises from 1 / DIV_START to 1 along a cosine over the first `warmup` share, then
    falls along a cosine to 1 / DIV_END; beta1 does the opposite between MOMENTUM's values.
    """
    position = min(max(position, 0.0), 1.0)
    if position < warmup:
        t = position / warmup
        start, end, m_start, m_end = 1 / DIV_START, 1.0, MOMENTUM[0], MOMENTUM[1]
    else:
        t = (position - warmup) / (1 - warmup)
        start, end, m_start, m_end = 1.0, 1 / DIV_END, MOMENTUM[1], MOMENTUM[0]
    cos = (1 - math.cos(math.pi * t)) / 2  # 0 -> 1
    return start + (end - start) * cos, m_start + (m_end - m_start) * cos


# --- progress ------------------------------------------------------------------------------


@dataclass
class Progress:
    """What callbacks see."""

    epoch: int = 0  # 0-based epoch in progress (or just finished)
    epochs: int = 0
    step: int = 0  # global step
    total_steps: int = 0
    lr: float = 0.0
    losses: dict[str, float] = field(default_factory=dict)  # last step
    metrics: dict[str, float] = field(default_factory=dict)  # last validation
    best: float | None = None
    images_per_second: float = 0.0
    eta_seconds: float = 0.0
    started: float = field(default_factory=time.time)


class Callback:
    """Override what you need; every hook gets the Progress."""

    def on_start(self, progress: Progress) -> None: ...
    def on_step(self, progress: Progress) -> None: ...
    def on_epoch(self, progress: Progress) -> None: ...
    def on_end(self, progress: Progress, state: str, error: str = "") -> None: ...


class RunFolderCallback(Callback):
    """Writes status.json, metrics.jsonl and train.log of a run folder."""

    def __init__(self, run: RunFolder, device: torch.device):
        self.run = run
        self.device = device

    def on_start(self, p: Progress) -> None:
        self.run.write_status(
            state=RunState.RUNNING,
            pid=os.getpid(),
            started=p.started,
            epochs=p.epochs,
            total_steps=p.total_steps,
            device=str(self.device),
            error="",
            best=p.best,
            step=p.step,
            epoch=p.epoch,
        )
        self.run.log(f"training on {self.device}: {p.epochs} epochs, {p.total_steps} steps")

    def on_step(self, p: Progress) -> None:
        self.run.append_metrics(
            {"kind": "step", "epoch": p.epoch, "step": p.step, "lr": p.lr, **p.losses, "time": time.time()}
        )
        extra = {}
        if self.device.type == "cuda":
            extra["gpu_memory_gb"] = torch.cuda.max_memory_allocated(self.device) / 2**30
        self.run.write_status(
            step=p.step,
            epoch=p.epoch,
            progress=p.step / max(p.total_steps, 1),
            eta_seconds=p.eta_seconds,
            images_per_second=p.images_per_second,
            **extra,
        )

    def on_epoch(self, p: Progress) -> None:
        self.run.append_metrics({"kind": "epoch", "epoch": p.epoch, "step": p.step, **p.metrics, "time": time.time()})
        self.run.write_status(epoch=p.epoch + 1, metrics=p.metrics, best=p.best)
        shown = ", ".join(f"{k} {v:.4g}" for k, v in p.metrics.items())
        self.run.log(f"epoch {p.epoch + 1}/{p.epochs}: {shown}")

    def on_end(self, p: Progress, state: str, error: str = "") -> None:
        self.run.write_status(state=state, error=error, finished=time.time(), progress=p.step / max(p.total_steps, 1))
        self.run.log(f"{state}" + (f": {error}" if error else ""))


# --- the loop ------------------------------------------------------------------------------


def fit(
    config: TrainConfig, run: RunFolder | None = None, callbacks: Sequence[Callback] = (), resume: bool = False
) -> Progress:
    """Trains a model as the config says; writes `run` (on the main process) if given.

    Returns the final Progress. Raises TrainingError (NaN or exploding loss, disk full, ...)
    after marking the run failed, and Cancelled after saving a checkpoint and marking it
    cancelled. With `resume`, continues from the run's last.pt (see _restore).
    """
    device = resolve_device(config.device)
    processes = start_processes(device)
    s = prepare(config, processes)
    model, task, device = s.model, s.task, s.device
    writes = processes.main and run is not None
    callbacks = list(callbacks) + ([RunFolderCallback(run, device)] if writes else [])
    steps_per_epoch = len(s.train_loader)
    total_steps = steps_per_epoch * config.epochs
    if config.max_steps:
        total_steps = min(total_steps, config.max_steps)
    progress = Progress(epochs=config.epochs, total_steps=total_steps)
    recorder = None  # the epoch snapshots (snapshots.py): the main process records them
    if writes:
        run.remove_partial_writes()  # temporary files of a checkpoint write that was killed
        recorder, unreadable = SnapshotRecorder.for_setup(s, run.path)
        if unreadable:
            run.log(f"epoch snapshots skip {len(unreadable)} unreadable image(s): {', '.join(unreadable)}")

    lr = config.lr
    if not lr and not resume:
        lr = find_lr(s, run).suggestion
    divisors = s.config.divisors()
    optimizer = make_optimizer(model, lr or FALLBACK_LR, divisors, config.weight_decay)
    use_amp = config.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)

    first_epoch = 0
    if resume and run is not None:
        first_epoch, lr, last = _restore(run, model, optimizer, scaler)
        progress.step = first_epoch * steps_per_epoch
        progress.epoch = first_epoch
        if writes:
            progress.best = _recover_best(run, last)
            _recover_metrics(run, first_epoch, progress.step, last)
            drop_snapshots(run.path, first_epoch)  # the epochs that run again record theirs again
    trained = model
    if processes.world > 1:
        trained = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if config.compile:
        trained = torch.compile(trained)

    stop = {"requested": False}
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.update(requested=True))
    for cb in callbacks:
        cb.on_start(progress)
    epoch = first_epoch
    first_losses: list[float] = []  # this process's first step losses: what "exploded" is measured against
    try:
        for epoch in range(first_epoch, config.epochs):
            progress.epoch = epoch
            _set_frozen(model, frozen=epoch < config.freeze_epochs)
            s.sampler.set_epoch(epoch)
            model.train()
            epoch_start, seen = time.time(), 0
            for batch in s.train_loader:
                if stop["requested"]:
                    raise Cancelled
                factor, beta1 = one_cycle(progress.step / max(total_steps, 1), config.warmup)
                for group in optimizer.param_groups:
                    group["lr"] = group["peak_lr"] * factor
                    group["betas"] = (beta1, group["betas"][1])
                batch = to_device(batch, device, config.channels_last)
                with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                    outputs = trained(images_of(batch))
                parts = task.loss(float_outputs(outputs), batch)
                loss = parts.get("backward", parts["loss"])
                _check_loss(float(loss.detach()), first_losses, epoch, progress.step)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if config.grad_clip:
                    scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                scaler.step(optimizer)
                scaler.update()

                progress.step += 1
                seen += images_of(batch).shape[0] * processes.world
                progress.lr = optimizer.param_groups[-1]["lr"]
                progress.images_per_second = seen / max(time.time() - epoch_start, 1e-9)
                steps_left = total_steps - progress.step
                progress.eta_seconds = steps_left * config.batch_size / max(progress.images_per_second, 1e-9)
                if progress.step % LOG_EVERY == 0 or progress.step == total_steps:
                    progress.losses = _reduce(parts, processes)
                    for cb in callbacks:
                        cb.on_step(progress)
                if progress.step >= total_steps:
                    break
            progress.metrics = s.task.validate(model.eval(), s.val_loader, device) if s.val_loader else {}
            if recorder is not None:  # before last.pt: an epoch that runs again after a kill drops its line
                recorder.record(model, epoch, progress.step)
            improved = _improved(progress)
            if writes:  # last.pt first: a kill while best.pt is written is mended on resume (_recover_best)
                _save(run, s, optimizer, scaler, progress, lr, epoch + 1, complete=True)
                if improved:
                    _save(run, s, None, None, progress, lr, epoch + 1, complete=True, which="best")
            for cb in callbacks:
                cb.on_epoch(progress)
            if progress.step >= total_steps:
                break
    except Exception as e:  # any failure is reported in the run folder, then raised
        if isinstance(e, Cancelled) or stop["requested"]:  # a cancel, or what it broke on the way
            if writes:
                _save(run, s, optimizer, scaler, progress, lr, epoch, complete=False)
            for cb in callbacks:
                cb.on_end(progress, RunState.CANCELLED)
            raise Cancelled from (None if isinstance(e, Cancelled) else e)
        if isinstance(e, TrainingError):
            message = str(e)
        elif isinstance(e, OSError):
            message = f"could not write the run folder ({e}); the last good checkpoint is kept"
        else:
            message = f"{type(e).__name__}: {e}"
        for cb in callbacks:
            cb.on_end(progress, RunState.FAILED, message)
        raise TrainingError(message) from e
    finally:
        signal.signal(signal.SIGTERM, previous)
    if writes and (progress.best is None or not run.checkpoint("best").is_file()):  # no validation: last is best
        _save(run, s, None, None, progress, lr, progress.epoch + 1, complete=True, which="best")
    for cb in callbacks:
        cb.on_end(progress, RunState.FINISHED)
    return progress


def _check_loss(loss: float, first_losses: list[float], epoch: int, step: int) -> None:
    """Raises TrainingError when a step's loss is not finite, or has exploded: more than
    DIVERGENCE_FACTOR times the mean of the first DIVERGENCE_REFERENCE_STEPS losses (which it
    collects in `first_losses`). A finite 1e16 is as lost as a NaN, only slower to say so."""
    if not math.isfinite(loss):
        raise TrainingError(
            f"the loss became {loss} at epoch {epoch + 1}, step {step}; "
            "lower the learning rate (the last good checkpoint is kept)."
        )
    if len(first_losses) < DIVERGENCE_REFERENCE_STEPS:
        first_losses.append(loss)
        return
    reference = sum(first_losses) / len(first_losses)
    if reference > 0 and loss > DIVERGENCE_FACTOR * reference:
        raise TrainingError(
            f"the loss exploded to {loss:.3g} at epoch {epoch + 1}, step {step} ({loss / reference:.2g} times its "
            f"start, {reference:.3g}); lower the learning rate (the last good checkpoint is kept)."
        )


def _reduce(parts: dict[str, Tensor], processes: Processes) -> dict[str, float]:
    """Loss parts for logging; under DDP the sum over processes (the global batch's loss)."""
    keys = [k for k in parts if k != "backward"]
    values = torch.stack([parts[k].detach().float() for k in keys])
    if processes.world > 1:
        dist.all_reduce(values)
    return {k: float(v) for k, v in zip(keys, values, strict=True)}


def _improved(progress: Progress) -> bool:
    key = "val_map" if "val_map" in progress.metrics else "val_accuracy"
    if key not in progress.metrics:
        return False
    value = progress.metrics[key]
    if progress.best is None or value > progress.best:
        progress.best = value
        return True
    return False


def _set_frozen(model: nn.Module, frozen: bool) -> None:
    for modules in model.groups()[:-1]:
        for m in modules:
            for p in m.parameters():
                p.requires_grad_(not frozen)


def _save(
    run: RunFolder,
    s: Setup,
    optimizer,
    scaler,
    progress: Progress,
    lr: float,
    epochs_done: int,
    complete: bool,
    which: str = "last",
) -> None:
    training = s.config.to_dict() | {"lr_used": lr, "epochs_done": epochs_done}
    extra = {}
    if optimizer is not None:
        extra["resume"] = {
            "epoch": epochs_done,
            "step": progress.step,
            "best": progress.best,
            "lr": lr,
            "complete": complete,
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict(),
            "rng": torch.get_rng_state(),
        }
    payload = checkpoint_payload(s.model, s.model_config, training, progress.metrics, extra)
    atomic_torch_save(payload, run.checkpoint(which))


def _restore(run: RunFolder, model: nn.Module, optimizer, scaler) -> tuple[int, float, dict[str, Any]]:
    """Loads last.pt for --resume; returns (first epoch to run, peak lr, last.pt as read).

    An epoch that was interrupted is run again from its start (with the weights it had reached).
    The file is read once, on the CPU: loading the weights and the optimizer state moves them to
    the model's device, and the recovery steps reuse what was read.
    """
    path = run.checkpoint("last")
    if not path.is_file():
        raise TrainingError(
            f"{run.path}: no checkpoints/last.pt to resume from (the run ended before its first epoch)."
        )
    payload = read_checkpoint(path)
    state = payload.get("resume")
    if not isinstance(state, dict) or not {"epoch", "lr", "optimizer", "scaler", "rng"} <= set(state):
        raise TrainingError(f"{path}: has no training state to resume from.")
    model.load_state_dict(payload["state_dict"])
    optimizer.load_state_dict(state["optimizer"])
    scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["rng"].cpu())
    return int(state["epoch"]), float(state["lr"]), payload


def _recover_best(run: RunFolder, last: dict[str, Any]) -> float | None:
    """The best validation score so far, as the run's best.pt itself says: a run never claims
    a best it cannot open. A process killed while writing best.pt left a last.pt that holds the
    very weights it was writing (a finished epoch whose score was the new best): best.pt is
    written again from it. Otherwise a missing or unreadable best.pt means no best yet (None:
    the next validated epoch writes one). `last` is last.pt as _restore read it."""
    with contextlib.suppress(CheckpointError):
        best = _score(read_checkpoint(run.checkpoint("best")))
        if best is not None:
            return best
    state, score = last.get("resume") or {}, _score(last)
    if state.get("complete") and score is not None and state.get("best") == score:
        atomic_torch_save({k: v for k, v in last.items() if k != "resume"}, run.checkpoint("best"))
        run.log(f"best.pt was lost in a crash; written again from last.pt (score {score:.4f})")
        return score
    return None


def _score(payload: dict[str, Any]) -> float | None:
    """The validation score _improved compares (val_map, else val_accuracy) that a checkpoint
    recorded, or None."""
    metrics = payload.get("metrics")
    for key in ("val_map", "val_accuracy"):
        if isinstance(metrics, dict) and isinstance(metrics.get(key), int | float):
            return float(metrics[key])
    return None


def _recover_metrics(run: RunFolder, first_epoch: int, step: int, last: dict[str, Any]) -> None:
    """Makes metrics.jsonl agree with the checkpoint a run resumes from: the records of the
    steps and epochs that will run again are dropped (one record per step), and the record of
    the last finished epoch, lost when the process died between its checkpoint and its log
    line, is written back from last.pt's metrics."""
    records = run.read_metrics()
    done = [r for r in records if r.get("kind") == "epoch" and r.get("epoch", 0) < first_epoch]
    add = []
    if first_epoch > 0 and not any(r.get("epoch") == first_epoch - 1 for r in done):
        metrics = last.get("metrics") or {}
        add.append({"kind": "epoch", "epoch": first_epoch - 1, "step": step, **metrics, "time": time.time(), "recovered": True})  # fmt: skip

    def keep(r: dict[str, Any]) -> bool:
        if r.get("kind") == "step":
            return r.get("step", 0) <= step
        if r.get("kind") == "epoch":
            return r.get("epoch", 0) < first_epoch
        return True

    dropped = run.rewrite_metrics(keep, add)
    if dropped or add:
        run.log(f"resuming at epoch {first_epoch + 1}: {dropped} metric records of the interrupted epoch dropped")
