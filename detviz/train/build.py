"""What fit() builds before its first step: device, processes, data, model, loaders, optimizer.

The learning-rate finder and the training loop both start from prepare()'s Setup and move
batches with the helpers at the end.
"""

from __future__ import annotations

import os
import random
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DataLoader, DistributedSampler

from detviz import checks
from detviz.anchors import make_anchors
from detviz.data.spec import open_dataset
from detviz.models import DETECTOR_KINDS, CheckpointError, ModelConfig, build_model, load_checkpoint
from detviz.train.config import TrainConfig
from detviz.train.tasks import LargestObjectTask, MultiLabelTask, SSDTask, Task


class TrainingError(RuntimeError):
    """Training cannot go on; the message says why in one sentence."""


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
    detector = config.model in DETECTOR_KINDS
    model_config = ModelConfig(  # the resolved anchors and the coding travel in every checkpoint
        kind=config.model,
        backbone=config.backbone,
        class_names=tuple(train_index.classes),
        image_size=config.image_size,
        anchors=config.anchor_config().to_dict() if detector else None,
        dropout=config.dropout,
        coding=config.coding,
    )
    model = build_model(model_config, pretrained=config.pretrained)
    if config.init_backbone:
        load_backbone(model, config.init_backbone)
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


def load_backbone(model: nn.Module, path: str) -> None:
    """Copies the backbone weights of the checkpoint at `path` into `model`'s backbone (fine-tuning
    from an earlier model: the lesson starts every stage from a trained backbone).

    Raises:
        ValueError: the file is not a detviz checkpoint, or its backbone is of another kind.
    """
    try:
        source, info = load_checkpoint(path)
    except CheckpointError as e:
        raise ValueError(f"--init-backbone: {e}") from None
    if type(source.backbone) is not type(model.backbone):
        raise ValueError(
            f"--init-backbone {path}: its backbone is {info.model.backbone}; this model's is another kind."
        )
    model.backbone.load_state_dict(source.backbone.state_dict())


def make_optimizer(model: nn.Module, lr: float, divisors: Sequence[float], weight_decay: float) -> torch.optim.AdamW:
    """AdamW with one parameter group per layer group (the lesson's discriminative rates)."""
    groups = []
    for modules, divisor in zip(model.groups(), divisors, strict=True):
        params = [p for m in modules for p in m.parameters()]
        groups.append({"params": params, "lr": lr / divisor, "peak_lr": lr / divisor})
    return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)


# --- batches -----------------------------------------------------------------------------


def images_of(batch: Any) -> Tensor:
    """The images (B, 3, S, S) of a batch of any task."""
    return batch.images if hasattr(batch, "images") else batch[0]


def to_device(batch: Any, device: torch.device, channels_last: bool) -> Any:
    """A batch of any task on `device` (its images channels-last when asked)."""
    if hasattr(batch, "to"):
        batch = batch.to(device, non_blocking=True)
        if channels_last:
            batch.images = batch.images.contiguous(memory_format=torch.channels_last)
        return batch
    moved = [t.to(device, non_blocking=True) for t in batch]
    if channels_last:
        moved[0] = moved[0].contiguous(memory_format=torch.channels_last)
    return tuple(moved)


def float_outputs(outputs: Any) -> Any:
    """Losses in float32, whatever precision the forward pass ran in."""
    return tuple(o.float() for o in outputs) if isinstance(outputs, tuple) else outputs.float()
