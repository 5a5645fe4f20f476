"""Inference: a checkpoint in, detections in each image's pixels out.

Images go through the same steps as validation images in training (to a uint8 tensor, squeeze
to the model's square size with antialiasing, scale to [0, 1]), so a model sees in the app
exactly what it saw in training.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import torch
from PIL import Image
from torch import Tensor
from torchvision.transforms.v2 import functional as TF

from detviz.anchors import Anchors, make_anchors
from detviz.boxes import to_pixel_boxes
from detviz.models import DETECTOR_KINDS, CheckpointError, CheckpointInfo, load_checkpoint
from detviz.postprocess import (
    DEFAULT_MAX_DETECTIONS,
    DEFAULT_NMS_IOU,
    DEFAULT_SCORE_THRESHOLD,
    Detections,
    postprocess,
)


class NonFiniteOutputs(ValueError):
    """A model's outputs hold NaN or inf: its weights are broken (e.g. a training run diverged).

    The checkpoint loads (its weights are tensors of the right shapes); nothing it predicts can be
    shown or scored, so the Detector refuses its outputs with this error instead.
    """


def check_finite_outputs(class_logits: Tensor, box_activations: Tensor, source: str) -> None:
    """Raises NonFiniteOutputs naming `source` (the checkpoint) when an output is NaN or inf.

    Args:
        class_logits: (B, A, C + 1). box_activations: (B, A, 4).
    """
    for name, t in (("class logits", class_logits), ("box activations", box_activations)):
        finite = torch.isfinite(t)
        if not bool(finite.all()):
            share = 1.0 - float(finite.float().mean())
            raise NonFiniteOutputs(
                f"{source}: the model's outputs are not finite ({share:.0%} of its {name} are NaN or inf): its "
                "weights are broken, e.g. by a training run that diverged; choose another checkpoint or train again."
            )


def to_model_input(images: Sequence[Image.Image], size: int) -> Tensor:
    """(B, 3, size, size) float32 in [0, 1]: the validation transform of DetectionDataset."""
    tensors = []
    for image in images:
        t = TF.pil_to_tensor(image.convert("RGB"))
        t = TF.resize(t, [size, size], antialias=True)
        tensors.append(TF.to_dtype(t, torch.float32, scale=True))
    return torch.stack(tensors)


class Detector:
    """An SSD model from a checkpoint, ready to detect.

    Attributes:
        classes: class names. anchors: the model's Anchors (on its device). image_size: input side.
        info: what the checkpoint says (config, training, metrics).
    """

    def __init__(self, model: torch.nn.Module, info: CheckpointInfo, device: str | torch.device = "cpu"):
        if info.model.kind not in DETECTOR_KINDS:
            raise CheckpointError(
                f"{info.path}: a {info.model.kind} model; detection needs an ssd or ssd-multiscale one."
            )
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.info = info
        self.classes = info.classes
        self.image_size = info.model.image_size
        self.coding = info.model.coding
        self.anchors: Anchors = make_anchors(info.model.anchor_config()).to(self.device)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu") -> Detector:
        """Loads a checkpoint safely (see `load_checkpoint`). Raises CheckpointError."""
        model, info = load_checkpoint(path, map_location=device)
        return cls(model, info, device)

    @torch.no_grad()
    def raw_outputs(self, images: Sequence[Image.Image]) -> tuple[Tensor, Tensor]:
        """The head's outputs: class_logits (B, A, C + 1) and box_activations (B, A, 4), float32.

        Raises:
            NonFiniteOutputs: an output is NaN or inf (the checkpoint's weights are broken).
        """
        if not images:
            a, c1 = len(self.anchors), len(self.classes) + 1
            return torch.zeros(0, a, c1, device=self.device), torch.zeros(0, a, 4, device=self.device)
        class_logits, box_activations = self.model(to_model_input(images, self.image_size).to(self.device))
        class_logits, box_activations = class_logits.float(), box_activations.float()
        check_finite_outputs(class_logits, box_activations, self.info.path or "the model")
        return class_logits, box_activations

    def detect(
        self,
        images: Sequence[Image.Image],
        score_threshold: float = DEFAULT_SCORE_THRESHOLD,
        nms_iou: float = DEFAULT_NMS_IOU,
        max_detections: int = DEFAULT_MAX_DETECTIONS,
        return_trace: bool = False,
    ) -> list[Detections]:
        """Detections per image; boxes in that image's pixels (DESIGN convention, xyxy).

        Raises:
            NonFiniteOutputs: see `raw_outputs`.
        """
        class_logits, box_activations = self.raw_outputs(images)
        results = postprocess(
            class_logits,
            box_activations,
            self.anchors,
            score_threshold,
            nms_iou,
            max_detections,
            coding=self.coding,
            return_trace=return_trace,
        )
        return [to_pixels(d, image.width, image.height) for d, image in zip(results, images, strict=True)]


def to_pixels(detections: Detections, width: int, height: int) -> Detections:
    """The same detections with boxes (and the trace's boxes) scaled from [0, 1] to pixels."""
    trace = detections.trace
    if trace is not None:
        trace = type(trace)(**(trace.__dict__ | {"boxes": to_pixel_boxes(trace.boxes, width, height)}))
    boxes = to_pixel_boxes(detections.boxes, width, height)
    return Detections(boxes, detections.scores, detections.labels, detections.anchor, trace)


class LargestObject(NamedTuple):
    """What the lesson's first model says of an image: the class and box of its largest object.

    label: class id. score: softmax probability of that class. box: (4,) pixel xyxy in the image.
    """

    label: int
    score: float
    box: Tensor


class _Classifier:
    """A lesson-stage classifier from a checkpoint: the model, its classes and its input."""

    kinds: tuple[str, ...] = ()

    def __init__(self, model: torch.nn.Module, info: CheckpointInfo, device: str | torch.device = "cpu"):
        if info.model.kind not in self.kinds:
            raise CheckpointError(f"{info.path}: a {info.model.kind} model, not a {' or '.join(self.kinds)} one.")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.info = info
        self.classes = info.classes
        self.image_size = info.model.image_size

    @torch.no_grad()
    def _outputs(self, images: Sequence[Image.Image]) -> Tensor | tuple[Tensor, ...]:
        outputs = self.model(to_model_input(images, self.image_size).to(self.device))
        for t in outputs if isinstance(outputs, tuple) else (outputs,):
            if not bool(torch.isfinite(t).all()):
                raise NonFiniteOutputs(
                    f"{self.info.path or 'the model'}: the model's outputs are not finite: its weights are broken, "
                    "e.g. by a training run that diverged; choose another checkpoint or train again."
                )
        return outputs


class LargestObjectPredictor(_Classifier):
    """The lesson's stage 1: one class and one box per image (a "largest" checkpoint)."""

    kinds = ("largest",)

    def predict(self, images: Sequence[Image.Image]) -> list[LargestObject]:
        """Per image its LargestObject, the box in that image's pixels. Raises NonFiniteOutputs."""
        if not images:
            return []
        class_logits, box_activations = self._outputs(images)
        probabilities = torch.softmax(class_logits.float(), dim=-1).cpu()
        boxes = torch.sigmoid(box_activations.float()).cpu()  # (B, 4) normalized xyxy, as trained
        scores, labels = probabilities.max(dim=-1)
        return [
            LargestObject(int(label), float(score), to_pixel_boxes(box[None], image.width, image.height)[0])
            for label, score, box, image in zip(labels, scores, boxes, images, strict=True)
        ]


class MultiLabelPredictor(_Classifier):
    """The lesson's stage 2: the probability of each class being in the image (a "multilabel" checkpoint)."""

    kinds = ("multilabel",)

    def predict(self, images: Sequence[Image.Image]) -> list[Tensor]:
        """Per image a (C,) float32 tensor of sigmoid probabilities. Raises NonFiniteOutputs."""
        if not images:
            return []
        return list(torch.sigmoid(self._outputs(images).float()).cpu())


def load_predictor(
    path: str | Path, device: str | torch.device = "cpu"
) -> Detector | LargestObjectPredictor | MultiLabelPredictor:
    """The right predictor for a checkpoint of any kind: a Detector for the SSD kinds, a
    LargestObjectPredictor for "largest", a MultiLabelPredictor for "multilabel". Each has
    `.classes` and `.info`; the classifiers' `.predict(images)` and the Detector's `.detect`.

    Raises:
        CheckpointError: see `load_checkpoint`.
    """
    model, info = load_checkpoint(path, map_location=device)
    kind = info.model.kind
    if kind in DETECTOR_KINDS:
        return Detector(model, info, device)
    return (LargestObjectPredictor if kind == "largest" else MultiLabelPredictor)(model, info, device)
