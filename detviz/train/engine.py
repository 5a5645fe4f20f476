"""The training engine: one loop, read top to bottom, shared by the CLI and the app.

fit(config) builds the data, model and optimizer, optionally finds a learning rate, then for
every epoch: one-cycle learning rate, forward, loss, backward, clipped step; validation (loss
parts and VOC mAP@0.5 for SSD models); checkpoints. Progress goes to callbacks (tqdm in the
CLI, the run folder for the app). Under torchrun it trains with DistributedDataParallel.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import os
import random
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from detviz import checks
from detviz.anchors import PRESETS, Anchors, make_anchors
from detviz.data import DatasetIndex
from detviz.data.dataset import DetectionDataset, LargestObjectDataset, MultiLabelDataset, collate_detection
from detviz.data.spec import open_dataset
from detviz.evaluate import voc_map
from detviz.losses import largest_object_loss, multilabel_loss, ssd_loss
from detviz.models import DETECTOR_KINDS, CheckpointError, ModelConfig, build_model, checkpoint_payload, read_checkpoint
from detviz.postprocess import postprocess
from detviz.train.config import TrainConfig
from detviz.train.runs import RunFolder, atomic_torch_save, atomic_write

LOG_EVERY = 10  # steps between metric lines
DIV_START = 25.0  # one-cycle: start at peak / 25 (fastai's div)
DIV_END = 1e4  # ... and end at peak / 1e4 (fastai's final_div)
MOMENTUM = (0.95, 0.85)  # AdamW beta1 cycles from 0.95 down to 0.85 and back, against the rate
DIVERGENCE_FACTOR = 1e3  # a step loss this many times the run's first losses has diverged
DIVERGENCE_REFERENCE_STEPS = 5  # ... the mean of this many first steps (of this process) is the reference


class TrainingError(RuntimeError):
    """Training cannot go on; the message says why in one sentence."""


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


# --- devices and processes ---------------------------------------------------------------


def resolve_device(name: str) -> torch.device:
    """auto: CUDA, else MPS, else CPU. Raises TrainingError for a device that is not there."""
    try:
        return checks.resolve_device(name)
    except ValueError as e:
        raise TrainingError(str(e)) from None


@dataclass(frozen=True)
class Processes:
    """Where this process stands in a (possibly distributed) run."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def start_processes(device: torch.device) -> Processes:
    """Joins the torchrun process group when there is one (NCCL on CUDA, gloo otherwise)."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world <= 1:
        return Processes()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Processes(dist.get_rank(), dist.get_world_size())


def _loader_worker_init(_: int) -> None:
    """Data-loading workers ignore SIGTERM: a cancel signals the run's whole process group, and a
    worker killed by it would fail the run ("DataLoader worker ... killed by signal") instead
    of letting the main process save a checkpoint and end "cancelled". A worker still ends
    with its main process (PyTorch's workers watch it)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


# --- tasks: what differs between the lesson's models -------------------------------------


class Task(Protocol):
    def dataset(self, index: DatasetIndex, train: bool) -> Dataset: ...
    def collate(self) -> Callable | None: ...
    def loss(self, outputs: Any, batch: Any) -> dict[str, Tensor]: ...
    def validate(self, model: nn.Module, loader: DataLoader, device: torch.device) -> dict[str, float]: ...


@dataclass
class SSDTask:
    """Detection with anchors: ssd_loss in training, loss parts and VOC mAP in validation."""

    config: TrainConfig
    anchors: Anchors
    num_classes: int
    world: int = 1

    def dataset(self, index: DatasetIndex, train: bool) -> Dataset:
        return DetectionDataset(index, self.config.image_size, augment=train and self.config.augment)

    def collate(self) -> Callable:
        return collate_detection

    def loss(self, outputs: tuple[Tensor, Tensor], batch: Any) -> dict[str, Tensor]:
        class_logits, box_activations = outputs
        c = self.config
        parts = ssd_loss(
            class_logits,
            box_activations,
            batch.boxes,
            batch.labels,
            batch.valid & ~batch.difficult,
            self.anchors,
            classification=c.loss,
            iou_threshold=c.iou_threshold,
            alpha=c.alpha,
            gamma=c.gamma,
            normalization=c.normalization,
        )
        if c.normalization == "lesson" and self.world > 1:
            # the lesson's loss sums over images; DDP averages gradients over processes, so each
            # process's share is scaled back up to the sum over the global batch
            parts["backward"] = parts["loss"] * self.world
        return parts

    @torch.no_grad()
    def validate(self, model: nn.Module, loader: DataLoader, device: torch.device) -> dict[str, float]:
        sums: dict[str, float] = {"loss": 0.0, "loss_box": 0.0, "loss_cls": 0.0}
        detections, truths, images = [], [], 0
        for batch in loader:
            batch = batch.to(device)
            class_logits, box_activations = model(batch.images)
            parts = self.loss((class_logits.float(), box_activations.float()), batch)
            for k in sums:
                sums[k] += float(parts[k])
            images += batch.images.shape[0]
            detections += postprocess(
                class_logits.float(),
                box_activations.float(),
                self.anchors,
                score_threshold=self.config.val_score_threshold,
            )
            for i in range(batch.images.shape[0]):
                v = batch.valid[i]
                truths.append((batch.boxes[i][v].cpu(), batch.labels[i][v].cpu(), batch.difficult[i][v].cpu()))
        detections = [(d.boxes.cpu(), d.scores.cpu(), d.labels.cpu()) for d in detections]
        result = {f"val_{k}": v / max(images, 1) for k, v in sums.items()}  # per image
        result["val_map"] = _finite(voc_map(detections, truths, self.num_classes, method="all").map)
        result["val_map_07"] = _finite(voc_map(detections, truths, self.num_classes, method="11point").map)
        return result


@dataclass
class LargestObjectTask:
    """The lesson's first stage: class + box of the largest object."""

    config: TrainConfig

    def dataset(self, index: DatasetIndex, train: bool) -> Dataset:
        return LargestObjectDataset(index, self.config.image_size, augment=train and self.config.augment)

    def collate(self) -> None:
        return None

    def loss(self, outputs: tuple[Tensor, Tensor], batch: Any) -> dict[str, Tensor]:
        _, labels, boxes = batch
        return largest_object_loss(outputs[0], outputs[1], labels, boxes)

    @torch.no_grad()
    def validate(self, model: nn.Module, loader: DataLoader, device: torch.device) -> dict[str, float]:
        loss = correct = l1 = n = 0.0
        for images, labels, boxes in loader:
            images, labels, boxes = images.to(device), labels.to(device), boxes.to(device)
            class_logits, box_activations = model(images)
            loss += float(largest_object_loss(class_logits, box_activations, labels, boxes)["loss"]) * len(labels)
            keep = labels >= 0
            correct += float((class_logits.argmax(1)[keep] == labels[keep]).sum())
            l1 += float((torch.sigmoid(box_activations[keep]) - boxes[keep]).abs().mean(1).sum())
            n += float(keep.sum())
        return {"val_loss": loss / max(n, 1), "val_accuracy": correct / max(n, 1), "val_l1": l1 / max(n, 1)}


@dataclass
class MultiLabelTask:
    """The lesson's second stage: which classes are in the image."""

    config: TrainConfig

    def dataset(self, index: DatasetIndex, train: bool) -> Dataset:
        return MultiLabelDataset(index, self.config.image_size, augment=train and self.config.augment)

    def collate(self) -> None:
        return None

    def loss(self, outputs: Tensor, batch: Any) -> dict[str, Tensor]:
        loss = multilabel_loss(outputs, batch[1])
        return {"loss": loss}

    @torch.no_grad()
    def validate(self, model: nn.Module, loader: DataLoader, device: torch.device) -> dict[str, float]:
        loss = correct = n = 0.0
        for images, targets in loader:
            images, targets = images.to(device), targets.to(device)
            logits = model(images)
            loss += float(multilabel_loss(logits, targets)) * len(images)
            correct += float(((logits > 0).float() == targets).float().mean(1).sum())
            n += len(images)
        return {"val_loss": loss / max(n, 1), "val_accuracy": correct / max(n, 1)}


def _finite(value: float) -> float:
    return value if math.isfinite(value) else 0.0


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
            state="running",
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


@dataclass
class Setup:
    """Everything fit() builds before the first step."""

    config: TrainConfig
    model_config: ModelConfig
    model: nn.Module
    task: Task
    train_loader: DataLoader
    val_loader: DataLoader | None
    device: torch.device
    processes: Processes
    sampler: DistributedSampler


def prepare(config: TrainConfig, processes: Processes | None = None) -> Setup:
    """Data, model and loaders for a config. Raises ValueError / TrainingError on bad settings."""
    config.validate()
    device = resolve_device(config.device)
    processes = processes or Processes()
    seed_everything(config.seed)
    train_index = open_dataset(config.data, config.train_split)
    val_index = None
    if config.val_data or config.val_split:
        val_index = open_dataset(config.val_data or config.data, config.val_split or config.train_split)
        if val_index.classes != train_index.classes:
            raise ValueError("the validation data has other classes than the training data.")
    if config.batch_size > len(train_index):
        raise ValueError(
            f"--batch-size {config.batch_size} is larger than the training set ({len(train_index)} images)."
        )
    anchors = PRESETS[config.anchor_preset()]
    model_config = ModelConfig(
        kind=config.model,
        backbone=config.backbone,
        class_names=tuple(train_index.classes),
        image_size=config.image_size,
        anchors=anchors.to_dict() if config.model in DETECTOR_KINDS else None,
        dropout=config.dropout,
    )
    model = build_model(model_config, pretrained=config.pretrained)
    if config.model in DETECTOR_KINDS:
        task: Task = SSDTask(
            config, make_anchors(model_config.anchor_config()).to(device), model_config.num_classes, processes.world
        )
    elif config.model == "largest":
        task = LargestObjectTask(config)
    else:
        task = MultiLabelTask(config)

    workers = config.workers if config.workers >= 0 else min(4, max(0, (os.cpu_count() or 1) - 1))
    per_process = max(1, config.batch_size // processes.world)
    train_set = task.dataset(train_index, train=True)
    # the same shuffled order whatever the number of processes: each takes every world-th image, so
    # a global batch holds the same images on one process or eight
    sampler = DistributedSampler(
        train_set, processes.world, processes.rank, shuffle=True, seed=config.seed, drop_last=True
    )
    train_loader = DataLoader(
        train_set,
        per_process,
        sampler=sampler,
        drop_last=True,
        num_workers=workers,
        collate_fn=task.collate(),
        persistent_workers=workers > 0,
        pin_memory=device.type == "cuda",
        worker_init_fn=_loader_worker_init,
    )
    val_loader = None
    if val_index is not None and processes.main:
        val_loader = DataLoader(
            task.dataset(val_index, train=False),
            per_process,
            shuffle=False,
            num_workers=workers,
            collate_fn=task.collate(),
            worker_init_fn=_loader_worker_init,
        )
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    return Setup(config, model_config, model, task, train_loader, val_loader, device, processes, sampler)


def make_optimizer(model: nn.Module, lr: float, divisors: Sequence[float], weight_decay: float) -> torch.optim.AdamW:
    """AdamW with one parameter group per layer group (the lesson's discriminative rates)."""
    groups = []
    for modules, divisor in zip(model.groups(), divisors, strict=True):
        params = [p for m in modules for p in m.parameters()]
        groups.append({"params": params, "lr": lr / divisor, "peak_lr": lr / divisor})
    return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)


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
    if writes:
        run.remove_partial_writes()  # temporary files of a checkpoint write that was killed

    lr = config.lr
    if not lr and not resume:
        lr = find_lr(s, run)["suggestion"]
    divisors = s.config.divisors()
    optimizer = make_optimizer(model, lr or FALLBACK_LR, divisors, config.weight_decay)
    use_amp = config.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)

    first_epoch = 0
    if resume and run is not None:
        first_epoch, lr = _restore(run, model, optimizer, scaler, device)
        progress.step = first_epoch * steps_per_epoch
        progress.epoch = first_epoch
        if writes:
            progress.best = _recover_best(run)
            _recover_metrics(run, first_epoch, progress.step)
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
                batch = _to_device(batch, device, config.channels_last)
                with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                    outputs = trained(_images(batch))
                parts = task.loss(_float(outputs), batch)
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
                seen += _images(batch).shape[0] * processes.world
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
                cb.on_end(progress, "cancelled")
            raise Cancelled from (None if isinstance(e, Cancelled) else e)
        if isinstance(e, TrainingError):
            message = str(e)
        elif isinstance(e, OSError):
            message = f"could not write the run folder ({e}); the last good checkpoint is kept"
        else:
            message = f"{type(e).__name__}: {e}"
        for cb in callbacks:
            cb.on_end(progress, "failed", message)
        raise TrainingError(message) from e
    finally:
        signal.signal(signal.SIGTERM, previous)
    if writes and (progress.best is None or not run.checkpoint("best").is_file()):  # no validation: last is best
        _save(run, s, None, None, progress, lr, progress.epoch + 1, complete=True, which="best")
    for cb in callbacks:
        cb.on_end(progress, "finished")
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


def _images(batch: Any) -> Tensor:
    return batch.images if hasattr(batch, "images") else batch[0]


def _to_device(batch: Any, device: torch.device, channels_last: bool) -> Any:
    if hasattr(batch, "to"):
        batch = batch.to(device, non_blocking=True)
        if channels_last:
            batch.images = batch.images.contiguous(memory_format=torch.channels_last)
        return batch
    moved = [t.to(device, non_blocking=True) for t in batch]
    if channels_last:
        moved[0] = moved[0].contiguous(memory_format=torch.channels_last)
    return tuple(moved)


def _float(outputs: Any) -> Any:
    """Losses in float32, whatever precision the forward pass ran in."""
    return tuple(o.float() for o in outputs) if isinstance(outputs, tuple) else outputs.float()


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


def _restore(run: RunFolder, model: nn.Module, optimizer, scaler, device: torch.device) -> tuple[int, float]:
    """Loads last.pt for --resume; returns (first epoch to run, peak lr).

    An epoch that was interrupted is run again from its start (with the weights it had reached).
    """
    path = run.checkpoint("last")
    if not path.is_file():
        raise TrainingError(
            f"{run.path}: no checkpoints/last.pt to resume from (the run ended before its first epoch)."
        )
    payload = read_checkpoint(path, map_location=device)
    state = payload.get("resume")
    if not isinstance(state, dict) or not {"epoch", "lr", "optimizer", "scaler", "rng"} <= set(state):
        raise TrainingError(f"{path}: has no training state to resume from.")
    model.load_state_dict(payload["state_dict"])
    optimizer.load_state_dict(state["optimizer"])
    scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["rng"].cpu())
    return int(state["epoch"]), float(state["lr"])


def _recover_best(run: RunFolder) -> float | None:
    """The best validation score so far, as the run's best.pt itself says: a run never claims
    a best it cannot open. A process killed while writing best.pt left a last.pt that holds the
    very weights it was writing (a finished epoch whose score was the new best): best.pt is
    written again from it. Otherwise a missing or unreadable best.pt means no best yet (None:
    the next validated epoch writes one)."""
    with contextlib.suppress(CheckpointError):
        best = _score(read_checkpoint(run.checkpoint("best")))
        if best is not None:
            return best
    last = read_checkpoint(run.checkpoint("last"))
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


def _recover_metrics(run: RunFolder, first_epoch: int, step: int) -> None:
    """Makes metrics.jsonl agree with the checkpoint a run resumes from: the records of the
    steps and epochs that will run again are dropped (one record per step), and the record of
    the last finished epoch, lost when the process died between its checkpoint and its log
    line, is written back from last.pt's metrics."""
    records = run.read_metrics()
    done = [r for r in records if r.get("kind") == "epoch" and r.get("epoch", 0) < first_epoch]
    add = []
    if first_epoch > 0 and not any(r.get("epoch") == first_epoch - 1 for r in done):
        metrics = read_checkpoint(run.checkpoint("last")).get("metrics") or {}
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


# --- learning-rate finder --------------------------------------------------------------------

LR_FLOOR = 1e-5  # the finder never suggests less: below it AdamW barely moves in a short run
FALLBACK_LR = 1e-3  # AdamW's usual rate, taken when the finder's curve says nothing (flat or noise)
FLAT_FALL = 0.05  # a smoothed loss that falls by less than this share into its minimum is flat
SKIP_START = 0.1  # share of the first steps (at least 3) left out: their "smoothed" loss is a few batches
SLOPE_WINDOW = 0.05  # share of the steps (at least 1) over which a fall is measured: one step is noise


@dataclass(frozen=True)
class LRSuggestion:
    """What the finder makes of its curve; rates are None where the curve has no such point."""

    suggestion: float  # the rate to train with
    steepest: float | None  # middle of the steepest fall of the smoothed loss into its minimum
    minimum: float | None  # the rate at the smoothed loss's minimum (after the skipped start)
    warning: str  # "" when the suggestion is the steepest point as it is


def suggest_lr(lrs: Sequence[float], smoothed: Sequence[float]) -> LRSuggestion:
    """The learning rate to train with, from the finder's ramp (rising `lrs`) and its smoothed
    losses: where the smoothed loss falls fastest on its way into its minimum.

    The rule, step by step (n steps):
      1. skip = max(3, SKIP_START * n) first steps are left out: a smoothed loss there is one or
         two batches, and a lucky first batch put the minimum at the very first step on small
         images (1e-7 suggested, nothing learned);
      2. `low` = the minimum after them, `high` = the highest point between the skip and `low`
         (where the slide into the valley starts);
      3. flat: when `low` is less than 2 steps after `high`, or the loss falls by less than
         FLAT_FALL of its value at `high`, the curve says nothing: FALLBACK_LR (at most a tenth
         of the last rate reached, where the loss blew up), with a warning;
      4. otherwise the fall over every window of w = max(1, SLOPE_WINDOW * n) steps from `high`
         to `low` is measured; the rate at the middle of the window that falls most is the
         suggestion (raised to LR_FLOOR, with a warning, if below it).
    """
    n = len(smoothed)
    skip = max(3, int(n * SKIP_START))
    if n < skip + 3:
        rate = min(FALLBACK_LR, lrs[-1] / 10) if lrs else FALLBACK_LR
        return LRSuggestion(rate, None, None, f"the finder ran only {n} steps; using {rate:.2g}, pass --lr to choose.")
    low = skip + min(range(n - skip), key=lambda i: smoothed[skip + i])
    high = skip + max(range(low - skip + 1), key=lambda i: smoothed[skip + i])
    fall = (smoothed[high] - smoothed[low]) / max(abs(smoothed[high]), 1e-12)
    if low - high < 2 or fall < FLAT_FALL:
        rate = max(LR_FLOOR, min(FALLBACK_LR, lrs[-1] / 10))
        return LRSuggestion(
            rate,
            None,
            lrs[low],
            f"the loss did not fall along the ramp (by {fall:.0%} at most: flat or noisy); "
            f"using {rate:.2g}, pass --lr to choose.",
        )
    w = min(max(1, int(n * SLOPE_WINDOW)), low - high)
    start = min(range(high, low - w + 1), key=lambda i: smoothed[i + w] - smoothed[i])
    steepest = lrs[start + w // 2]
    if steepest < LR_FLOOR:
        warning = f"the steepest fall is at {steepest:.2g}; raised to the floor {LR_FLOOR:g}."
        return LRSuggestion(LR_FLOOR, steepest, lrs[low], warning)
    return LRSuggestion(steepest, steepest, lrs[low], "")


def find_lr(
    s: Setup,
    run: RunFolder | None = None,
    start: float = 1e-6,
    end: float = 1.0,
    steps: int = 100,
    smoothing: float = 0.98,
) -> dict[str, Any]:
    """Ramps the learning rate exponentially from `start` to `end`, one batch per step, and
    records the smoothed loss; stops when it explodes (4x its minimum); restores the weights.

    Returns {"lrs", "losses", "smoothed", "suggestion", "steepest", "minimum", "warning"}: the
    suggestion and the rest are suggest_lr's (steepest and minimum may be None).
    """
    model, device = s.model, s.device
    saved = copy.deepcopy(model.state_dict())
    optimizer = make_optimizer(model, start, s.config.divisors(), s.config.weight_decay)
    lrs, losses, smoothed = [], [], []
    average, best = 0.0, math.inf
    batches = iter(s.train_loader)
    model.train()
    try:
        for i in range(steps):
            lr = start * (end / start) ** (i / max(steps - 1, 1))
            for group, divisor in zip(optimizer.param_groups, s.config.divisors(), strict=True):
                group["lr"] = lr / divisor
            try:
                batch = next(batches)
            except StopIteration:
                batches = iter(s.train_loader)
                batch = next(batches)
            batch = _to_device(batch, device, s.config.channels_last)
            loss = s.task.loss(_float(model(_images(batch))), batch)["loss"]
            if not torch.isfinite(loss):
                break
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            average = smoothing * average + (1 - smoothing) * loss.item()
            value = average / (1 - smoothing ** (i + 1))  # bias-corrected
            lrs.append(lr)
            losses.append(loss.item())
            smoothed.append(value)
            best = min(best, value)
            if i > 10 and value > 4 * best:
                break
    finally:
        model.load_state_dict(saved)  # even when cancelled half-way: the finder leaves no trace
    found = suggest_lr(lrs, smoothed)
    result = {"lrs": lrs, "losses": losses, "smoothed": smoothed} | dataclasses.asdict(found)
    if run is not None and s.processes.main:
        atomic_write(run.lr_find_path, json.dumps(result).encode())
        run.log(
            f"learning-rate finder: {len(lrs)} steps, suggests {found.suggestion:.2g}"
            + (f" ({found.warning})" if found.warning else "")
        )
    return result
