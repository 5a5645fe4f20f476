"""Tasks: what differs between the lesson's models in training (data, loss, validation).

SSDTask trains the detectors (ssd_loss; validation: loss parts and VOC mAP), LargestObjectTask
the first stage (class and box of the largest object), MultiLabelTask the second (which classes
are present). prepare() picks one by the config's model.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from detviz.anchors import Anchors
from detviz.data import DatasetIndex
from detviz.data.dataset import DetectionDataset, LargestObjectDataset, MultiLabelDataset, collate_detection
from detviz.evaluate import voc_map
from detviz.losses import largest_object_loss, multilabel_loss, ssd_loss
from detviz.postprocess import postprocess
from detviz.train.config import TrainConfig


class Task(Protocol):
    def dataset(self, index: DatasetIndex, train: bool) -> Dataset: ...
    def collate(self) -> Callable | None: ...
    def loss(self, outputs: Any, batch: Any) -> dict[str, Tensor]: ...
    def validate(self, model: nn.Module, loader: DataLoader, device: torch.device) -> dict[str, float]: ...


@dataclass
class _ConfiguredTask:
    """What every task does alike: its Dataset class at the config's image size, augmented when
    training with augmentation on; batches stacked by torch's default collate unless it says."""

    config: TrainConfig
    dataset_class: ClassVar[type[Dataset]]

    def dataset(self, index: DatasetIndex, train: bool) -> Dataset:
        return self.dataset_class(index, self.config.image_size, augment=train and self.config.augment)

    def collate(self) -> Callable | None:
        return None


@dataclass
class SSDTask(_ConfiguredTask):
    """Detection with anchors: ssd_loss in training, loss parts and VOC mAP in validation."""

    anchors: Anchors
    num_classes: int
    world: int = 1
    dataset_class = DetectionDataset

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
            coding=c.coding,
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
                coding=self.config.coding,
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
class LargestObjectTask(_ConfiguredTask):
    """The lesson's first stage: class + box of the largest object."""

    dataset_class = LargestObjectDataset

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
class MultiLabelTask(_ConfiguredTask):
    """The lesson's second stage: which classes are in the image."""

    dataset_class = MultiLabelDataset

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
