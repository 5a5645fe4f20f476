"""Epoch snapshots: what a model predicts on a fixed handful of images after every epoch, so that
a page can scrub through a run and show detections form while it trains.

    runs/<name>/snapshots.jsonl   one json line per finished epoch (EpochSnapshot.to_json):
        {"epoch": 0-based, as metrics.jsonl, "step", "kind": the model kind,
         "role": "val" (the validation images) or "train" (the run has no validation split),
         "data": dataset spec, "split", "images": [image ids], "predictions": [one per image]}

    one prediction per image, by kind (numbers rounded to DECIMALS):
        ssd, ssd-multiscale   {"boxes": [[x1, y1, x2, y2] normalized], "scores": [...], "labels": [...]}:
                              detviz.postprocess.postprocess with the model's box coding, score >=
                              SCORE_THRESHOLD, default NMS, at most MAX_DETECTIONS
        largest               {"label", "score", "box": [x1, y1, x2, y2] normalized}
        multilabel            {"probabilities": [C floats]}

The images are SNAPSHOT_IMAGES of the validation split (of the training split without one),
evenly spaced over it and the same every epoch; they are preprocessed once, as validation images
are. Recording costs one forward pass over them per epoch. A line is appended with one write and
a flush, so a killed process leaves at most a torn last line, which the reader skips; a resumed
run drops the lines of the epochs it runs again (drop_snapshots), so every epoch has one line.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from detviz.anchors import Anchors
from detviz.data import DataError, DatasetIndex
from detviz.data.dataset import DetectionDataset
from detviz.models import DETECTOR_KINDS, MODEL_KINDS
from detviz.postprocess import DEFAULT_NMS_IOU, DEFAULT_SCORE_THRESHOLD, postprocess
from detviz.train.config import TrainConfig
from detviz.train.runs import atomic_write

if TYPE_CHECKING:
    from detviz.train.build import Setup

SNAPSHOT_FILE = "snapshots.jsonl"
SNAPSHOT_IMAGES = 6  # images per snapshot: enough to see a trend, few enough to cost nothing
SCORE_THRESHOLD = DEFAULT_SCORE_THRESHOLD  # detections recorded: SSD's usual evaluation threshold...
MAX_DETECTIONS = 20  # ... and at most this many per image (a few KB per epoch)
DECIMALS = 4  # digits kept of boxes, scores and probabilities: 1/10 px on a 1000 px image
ROLES = ("val", "train")  # which split the images come from: validation, or training without one


class SnapshotError(ValueError):
    """A snapshots.jsonl that cannot be read at all (the message names the file and the fix)."""


@dataclass(frozen=True)
class ImageSnapshot:
    """What the model predicted for one image at one epoch.

    Attributes:
        image_id: the image's id in the dataset.
        boxes: (N, 4) float32 xyxy normalized. scores: (N,) float32. labels: (N,) int64. SSD kinds:
            the detections, best first (N may be 0); "largest": its one box, score and class (N = 1);
            "multilabel": empty (N = 0).
        probabilities: (C,) float32 per class ("multilabel" only, else None).
    """

    image_id: str
    boxes: Tensor
    scores: Tensor
    labels: Tensor
    probabilities: Tensor | None = None


@dataclass(frozen=True)
class EpochSnapshot:
    """One line of snapshots.jsonl: the predictions on the snapshot images after one epoch.

    Attributes:
        epoch: 0-based epoch just finished (metrics.jsonl's numbering). step: global step then.
        kind: the model kind (detviz.models.MODEL_KINDS). role: "val" or "train" (ROLES).
        data, split: the dataset spec and split the images are in.
        images: one ImageSnapshot per image, in the same order every epoch.
    """

    epoch: int
    step: int
    kind: str
    role: str
    data: str
    split: str
    images: tuple[ImageSnapshot, ...]

    @property
    def image_ids(self) -> list[str]:
        return [i.image_id for i in self.images]

    def image(self, image_id: str) -> ImageSnapshot | None:
        """The snapshot of the image with this id, or None."""
        return next((i for i in self.images if i.image_id == image_id), None)

    def to_json(self) -> str:
        """One line of snapshots.jsonl (no newline)."""
        predictions = [_prediction_to_json(self.kind, i) for i in self.images]
        return json.dumps(
            {"epoch": self.epoch, "step": self.step, "kind": self.kind, "role": self.role, "data": self.data,
             "split": self.split, "images": self.image_ids, "predictions": predictions},
            separators=(",", ":"),
        )  # fmt: skip

    @classmethod
    def from_json(cls, data: Any) -> EpochSnapshot:
        """The snapshot a parsed line holds. Raises ValueError saying what is wrong with it."""
        if not isinstance(data, dict):
            raise ValueError(f"a snapshot is an object, got {type(data).__name__}")
        epoch, step, kind, role = data.get("epoch"), data.get("step", 0), data.get("kind"), data.get("role")
        if not _whole(epoch) or epoch < 0 or not _whole(step):
            raise ValueError(f"bad epoch {epoch!r} or step {step!r}")
        if kind not in MODEL_KINDS or role not in ROLES:
            raise ValueError(f"unknown model kind {kind!r} or role {role!r}")
        ids, predictions = data.get("images"), data.get("predictions")
        if not isinstance(ids, list) or not isinstance(predictions, list) or len(ids) != len(predictions):
            raise ValueError("images and predictions must be lists of the same length")
        if not all(isinstance(i, str) for i in ids):
            raise ValueError("image ids must be texts")
        source = data.get("data"), data.get("split")
        if not all(isinstance(s, str) for s in source):
            raise ValueError("data and split must be texts")
        images = tuple(_prediction_from_json(kind, i, p) for i, p in zip(ids, predictions, strict=True))
        return cls(int(epoch), int(step), kind, role, source[0], source[1], images)


def snapshot_path(run_path: str | Path) -> Path:
    """The snapshots file of a run folder."""
    return Path(run_path) / SNAPSHOT_FILE


def snapshot_source(config: TrainConfig) -> tuple[str, str, str]:
    """(role, dataset spec, split) of the images a run's snapshots show: its validation images as
    build.prepare reads them, or its training images when it validates on nothing."""
    if config.val_data or config.val_split:
        return "val", config.val_data or config.data, config.val_split or config.train_split
    return "train", config.data, config.train_split


def snapshot_positions(n: int, count: int = SNAPSHOT_IMAGES) -> list[int]:
    """`count` positions evenly spaced over n images, the first included (all n when fewer)."""
    return [i * n // count for i in range(count)] if n > count else list(range(n))


# --- recording ---------------------------------------------------------------------------------


class SnapshotRecorder:
    """Appends an EpochSnapshot of a model to a run's snapshots.jsonl (main process only).

    Args:
        path: the snapshots file. kind: the model kind. role, data, split: where the images are.
        image_ids: K ids. images: (K, 3, S, S) float32 in [0, 1], preprocessed as validation images.
        anchors: the model's anchors (SSD kinds). coding: its box coding (SSD kinds).
    """

    def __init__(
        self,
        path: Path,
        kind: str,
        role: str,
        data: str,
        split: str,
        image_ids: Sequence[str],
        images: Tensor,
        anchors: Anchors | None = None,
        coding: str = "tanh",
    ):
        self.path, self.kind, self.role, self.data, self.split = Path(path), kind, role, data, split
        self.image_ids, self.images, self.anchors, self.coding = list(image_ids), images, anchors, coding

    @classmethod
    def for_setup(cls, s: Setup, run_path: str | Path) -> tuple[SnapshotRecorder | None, list[str]]:
        """A recorder for the run fit() prepared, and the images it could not read (skipped);
        None when no image is readable. The images are read here, once."""
        role, data, split = snapshot_source(s.config)
        loader = s.val_loader if role == "val" else s.train_loader
        if loader is None:
            return None, []
        index = _index_of(loader.dataset)
        dataset = DetectionDataset(index, s.config.image_size, augment=False)
        ids, images, unreadable = [], [], []
        for position in snapshot_positions(len(index)):
            try:
                images.append(dataset[position].image)
            except (DataError, OSError) as e:
                unreadable.append(f"{index.image_ids[position]} ({e})")
                continue
            ids.append(index.image_ids[position])
        if not images:
            return None, unreadable
        anchors = getattr(s.task, "anchors", None)
        recorder = cls(snapshot_path(run_path), s.model_config.kind, role, data, split, ids,
                       torch.stack(images).to(s.device), anchors, s.model_config.coding)  # fmt: skip
        return recorder, unreadable

    @torch.no_grad()
    def predict(self, model: nn.Module) -> list[ImageSnapshot] | None:
        """The model's predictions on the snapshot images, in eval mode (its mode is restored);
        None when its outputs are not finite (diverged weights: the next step's loss check
        fails the run with the reason, a snapshot must not fail it first)."""
        training = model.training
        model.eval()
        try:
            outputs = model(self.images)
        finally:
            model.train(training)
        if not all(bool(torch.isfinite(o).all()) for o in (outputs if isinstance(outputs, tuple) else (outputs,))):
            return None
        if self.kind in DETECTOR_KINDS:
            class_logits, box_activations = (o.float() for o in outputs)
            detections = postprocess(class_logits, box_activations, self.anchors, SCORE_THRESHOLD, DEFAULT_NMS_IOU,
                                     MAX_DETECTIONS, coding=self.coding)  # fmt: skip
            return [
                ImageSnapshot(i, d.boxes.cpu(), d.scores.cpu(), d.labels.cpu())
                for i, d in zip(self.image_ids, detections, strict=True)
            ]
        if self.kind == "largest":
            class_logits, box_activations = (o.float().cpu() for o in outputs)
            scores, labels = torch.softmax(class_logits, dim=-1).max(dim=-1)
            boxes = torch.sigmoid(box_activations)  # (K, 4) normalized xyxy, as trained
            return [
                ImageSnapshot(i, boxes[k : k + 1], scores[k : k + 1], labels[k : k + 1])
                for k, i in enumerate(self.image_ids)
            ]
        probabilities = torch.sigmoid(outputs.float()).cpu()  # (K, C)
        return [_probabilities_only(i, p) for i, p in zip(self.image_ids, probabilities, strict=True)]

    def record(self, model: nn.Module, epoch: int, step: int) -> EpochSnapshot | None:
        """Predicts and appends the epoch's line; returns the snapshot as a reader will see it,
        or None (nothing written) when the outputs are not finite."""
        images = self.predict(model)
        if images is None:
            return None
        snapshot = EpochSnapshot(epoch, step, self.kind, self.role, self.data, self.split, tuple(images))
        line = snapshot.to_json()
        append_line(self.path, line)
        return EpochSnapshot.from_json(json.loads(line))


def append_line(path: Path, line: str) -> None:
    """Appends one line with a single write and a flush; after a torn last line (a killed
    writer) it starts a new line first, so the new one stays readable."""
    with open(path, "a+b") as f:
        size = f.seek(0, 2)
        torn = False
        if size:
            f.seek(size - 1)
            torn = f.read(1) != b"\n"
        f.write((b"\n" if torn else b"") + line.encode() + b"\n")
        f.flush()


def drop_snapshots(run_path: str | Path, first_epoch: int) -> int:
    """Rewrites the run's snapshots.jsonl (atomically) without the epochs from `first_epoch` on,
    which a resumed run is about to run again, and without unreadable lines; returns how many
    lines it dropped (0, and no write, when none)."""
    path = snapshot_path(run_path)
    lines = _lines(path)
    kept = [line for line, s in ((line, _parse(line)) for line in lines) if s is not None and s.epoch < first_epoch]
    if len(kept) != len(lines):
        atomic_write(path, "".join(line + "\n" for line in kept).encode())
    return len(lines) - len(kept)


# --- reading -----------------------------------------------------------------------------------


def read_snapshots(run_path: str | Path) -> list[EpochSnapshot]:
    """Every readable snapshot of a run, by epoch (one per epoch: the last line of an epoch wins).

    A run trained before snapshots were recorded (no file) gives []; a corrupt or torn line is
    skipped.

    Raises:
        SnapshotError: the file exists but cannot be read, or none of its complete lines is a
            snapshot (it is not a snapshots file).
    """
    path = snapshot_path(run_path)
    lines = _lines(path)
    by_epoch = {s.epoch: s for s in map(_parse, lines) if s is not None}
    if not by_epoch and len(lines) - _torn(path) > 0:  # complete lines, none a snapshot
        raise SnapshotError(f"{path}: none of its {len(lines)} lines is an epoch snapshot; delete the file "
                            "(the run's training is not affected).")  # fmt: skip
    return [by_epoch[e] for e in sorted(by_epoch)]


def _lines(path: Path) -> list[str]:
    """The file's non-blank lines ([] when there is no file)."""
    try:
        text = path.read_bytes().decode(errors="replace")
    except FileNotFoundError:
        return []
    except OSError as e:
        raise SnapshotError(f"{path}: cannot be read ({e.strerror or e}).") from None
    return [line for line in text.split("\n") if line.strip()]


def _torn(path: Path) -> int:
    """1 when the file's last line has no newline (being written, or cut by a kill), else 0."""
    with contextlib.suppress(OSError), open(path, "rb") as f:
        size = f.seek(0, 2)
        if size:
            f.seek(size - 1)
            return int(f.read(1) != b"\n")
    return 0


def _parse(line: str) -> EpochSnapshot | None:
    try:
        return EpochSnapshot.from_json(json.loads(line))
    except (ValueError, TypeError, KeyError, RuntimeError):  # whatever a corrupt line makes them raise
        return None


def _index_of(dataset: Any) -> DatasetIndex:
    """The DatasetIndex under a task's dataset (DetectionDataset, or a classifier dataset over one)."""
    return dataset.index if hasattr(dataset, "index") else dataset.detection.index


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _rounded(values: Any) -> Any:
    """A number or nested lists of them (Tensor.tolist()) rounded to DECIMALS."""
    return [_rounded(v) for v in values] if isinstance(values, list) else round(values, DECIMALS)


def _prediction_to_json(kind: str, image: ImageSnapshot) -> dict[str, Any]:
    if kind == "multilabel":
        return {"probabilities": _rounded(image.probabilities.tolist())}
    if kind == "largest":
        return {"label": int(image.labels[0]), "score": _rounded(float(image.scores[0])),
                "box": _rounded(image.boxes[0].tolist())}  # fmt: skip
    return {"boxes": _rounded(image.boxes.tolist()), "scores": _rounded(image.scores.tolist()),
            "labels": image.labels.tolist()}  # fmt: skip


def _prediction_from_json(kind: str, image_id: str, p: Any) -> ImageSnapshot:
    """Raises ValueError (or TypeError) for a prediction of the wrong shape for its kind."""
    if not isinstance(p, dict):
        raise ValueError("a prediction is an object")
    if kind == "multilabel":
        return _probabilities_only(image_id, _floats(p["probabilities"], "probabilities"))
    if kind == "largest":
        p = {"boxes": [p["box"]], "scores": [p["score"]], "labels": [p["label"]]}
    boxes = _floats(p["boxes"], "boxes")
    if boxes.numel() == 0:
        boxes = boxes.reshape(0, 4)
    scores, labels = _floats(p["scores"], "scores"), p["labels"]
    if boxes.dim() != 2 or boxes.shape[1] != 4 or scores.dim() != 1:
        raise ValueError(f"boxes must be (N, 4) and scores (N,), got {tuple(boxes.shape)}, {tuple(scores.shape)}")
    if not isinstance(labels, list) or not all(_whole(v) and v >= 0 for v in labels):
        raise ValueError("labels must be class ids")
    if not len(labels) == boxes.shape[0] == scores.shape[0]:
        raise ValueError("boxes, scores and labels differ in number")
    return ImageSnapshot(image_id, boxes, scores, torch.tensor(labels, dtype=torch.int64).reshape(-1))


def _floats(values: Any, name: str) -> Tensor:
    t = torch.tensor(values, dtype=torch.float32)
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} are not finite")
    return t


def _probabilities_only(image_id: str, probabilities: Tensor) -> ImageSnapshot:
    if probabilities.dim() != 1:
        raise ValueError(f"probabilities must be (C,), got {tuple(probabilities.shape)}")
    empty = torch.zeros(0)
    return ImageSnapshot(image_id, empty.reshape(0, 4), empty, empty.long(), probabilities)
