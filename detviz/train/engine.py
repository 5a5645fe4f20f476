"""The training engine: one loop, read top to bottom, shared by the CLI and the app.

fit(config) builds the data, model and optimizer, optionally finds a learning rate, then for
every epoch: one-cycle learning rate, forward, loss, backward, clipped step; validation (loss
parts and VOC mAP@0.5 for SSD models); checkpoints. Progress goes to callbacks (tqdm in the
CLI, the run folder for the app). Under torchrun it trains with DistributedDataParallel.
"""

from __future__ import annotations

import copy
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

from detviz.anchors import PRESETS, Anchors, make_anchors
from detviz.data import DatasetIndex
from detviz.data.dataset import DetectionDataset, LargestObjectDataset, MultiLabelDataset, collate_detection
from detviz.data.spec import open_dataset
from detviz.evaluate import voc_map
from detviz.losses import largest_object_loss, multilabel_loss, ssd_loss
from detviz.models import ModelConfig, build_model, checkpoint_payload, read_checkpoint
from detviz.postprocess import postprocess
from detviz.train.config import TrainConfig
from detviz.train.runs import RunFolder, atomic_torch_save, atomic_write

LOG_EVERY = 10  # steps between metric lines
DIV_START = 25.0  # one-cycle: start at peak / 25 (fastai's div)
DIV_END = 1e4  # ... and end at peak / 1e4 (fastai's final_div)
MOMENTUM = (0.95, 0.85)  # AdamW beta1 cycles from 0.95 down to 0.85 and back, against the rate


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
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise TrainingError(
                "--device cuda was asked for, but this machine has no CUDA GPU; use --device cpu or auto."
            )
        index = int(name.split(":")[1]) if ":" in name else int(os.environ.get("LOCAL_RANK", 0))
        if index >= torch.cuda.device_count():
            raise TrainingError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA GPU(s).")
        return torch.device("cuda", index)
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise TrainingError("--device mps was asked for, but MPS is not available here.")
    return torch.device(name)


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
        anchors=anchors.to_dict() if config.model.startswith("ssd") else None,
        dropout=config.dropout,
    )
    model = build_model(model_config, pretrained=config.pretrained)
    if config.model.startswith("ssd"):
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
    )
    val_loader = None
    if val_index is not None and processes.main:
        val_loader = DataLoader(
            task.dataset(val_index, train=False),
            per_process,
            shuffle=False,
            num_workers=workers,
            collate_fn=task.collate(),
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

    Returns the final Progress. Raises TrainingError (NaN loss, disk full, ...) after marking the
    run failed, and Cancelled after saving a checkpoint and marking it cancelled.
    """
    device = resolve_device(config.device)
    processes = start_processes(device)
    s = prepare(config, processes)
    model, task, device = s.model, s.task, s.device
    callbacks = list(callbacks) + ([RunFolderCallback(run, device)] if run is not None and processes.main else [])
    steps_per_epoch = len(s.train_loader)
    total_steps = steps_per_epoch * config.epochs
    if config.max_steps:
        total_steps = min(total_steps, config.max_steps)
    progress = Progress(epochs=config.epochs, total_steps=total_steps)

    lr = config.lr
    if not lr and not resume:
        finder = find_lr(s, run)
        lr = finder["suggestion"]
    divisors = s.config.divisors()
    optimizer = make_optimizer(model, lr or 1e-3, divisors, config.weight_decay)
    use_amp = config.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)

    first_epoch = 0
    if resume and run is not None:
        first_epoch, progress.best, lr = _restore(run, model, optimizer, scaler, device)
        progress.step = first_epoch * steps_per_epoch
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
                if not torch.isfinite(loss):
                    raise TrainingError(
                        f"the loss became {loss.item()} at epoch {epoch + 1}, step {progress.step}; "
                        "lower the learning rate (the last good checkpoint is kept)."
                    )
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
            if processes.main and run is not None:
                _save(run, s, optimizer, scaler, progress, lr, epoch + 1, complete=True)
                if improved:
                    _save(run, s, None, None, progress, lr, epoch + 1, complete=True, which="best")
            for cb in callbacks:
                cb.on_epoch(progress)
            if progress.step >= total_steps:
                break
    except Cancelled:
        if processes.main and run is not None:
            _save(run, s, optimizer, scaler, progress, lr, epoch, complete=False)
        for cb in callbacks:
            cb.on_end(progress, "cancelled")
        raise
    except Exception as e:  # any failure is reported in the run folder, then raised
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
    if processes.main and run is not None and progress.best is None:  # no validation: last is best
        _save(run, s, None, None, progress, lr, progress.epoch + 1, complete=True, which="best")
    for cb in callbacks:
        cb.on_end(progress, "finished")
    return progress


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


def _restore(
    run: RunFolder, model: nn.Module, optimizer, scaler, device: torch.device
) -> tuple[int, float | None, float]:
    """Loads last.pt for --resume; returns (first epoch to run, best metric, peak lr).

    An epoch that was interrupted is run again from its start (with the weights it had reached).
    """
    path = run.checkpoint("last")
    if not path.is_file():
        raise TrainingError(
            f"{run.path}: no checkpoints/last.pt to resume from (the run ended before its first epoch)."
        )
    payload = read_checkpoint(path, map_location=device)
    state = payload.get("resume")
    if not state:
        raise TrainingError(f"{path}: has no training state to resume from.")
    model.load_state_dict(payload["state_dict"])
    optimizer.load_state_dict(state["optimizer"])
    scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["rng"].cpu())
    return int(state["epoch"]), state.get("best"), float(state["lr"])


# --- learning-rate finder --------------------------------------------------------------------


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

    Returns {"lrs", "losses", "smoothed", "suggestion", "steepest"}: the suggestion is the
    rate at the smoothed minimum divided by 10, the steepest the rate where it falls fastest.
    """
    model, device = s.model, s.device
    saved = copy.deepcopy(model.state_dict())
    optimizer = make_optimizer(model, start, s.config.divisors(), s.config.weight_decay)
    lrs, losses, smoothed = [], [], []
    average, best = 0.0, math.inf
    batches = iter(s.train_loader)
    model.train()
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
    model.load_state_dict(saved)
    minimum = min(range(len(smoothed)), key=smoothed.__getitem__) if smoothed else 0
    suggestion = lrs[minimum] / 10 if lrs else 1e-3
    slopes = [(smoothed[i + 1] - smoothed[i]) for i in range(len(smoothed) - 1)]
    steepest = lrs[min(range(len(slopes)), key=slopes.__getitem__)] if slopes else suggestion
    result = {"lrs": lrs, "losses": losses, "smoothed": smoothed, "suggestion": suggestion, "steepest": steepest}
    if run is not None and s.processes.main:
        atomic_write(run.lr_find_path, json.dumps(result).encode())
        run.log(f"learning-rate finder: {len(lrs)} steps, suggests {suggestion:.2g} (steepest at {steepest:.2g})")
    return result
