"""Threshold sweeps: a model's raw outputs over a dataset reduced once to their candidates, then
post-processed and scored for any (score threshold, NMS IoU, max detections) at slider speed;
and the one loop that runs a detector over a dataset, for the CLI and the app alike.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from PIL import Image
from torch import Tensor

from detviz.anchors import Anchors
from detviz.checks import check_positive_int, check_probability
from detviz.data import DataError, DatasetIndex, load_image
from detviz.evaluate.inputs import Flat, check_iou_threshold, check_method, flatten, offsets
from detviz.evaluate.voc import VOCResult, voc_map_flat
from detviz.inference import Detector, to_pixels
from detviz.postprocess import Candidates, Detections, find_candidates, first_per_image, grouped_nms, postprocess

SWEEP_FLOOR = 0.001  # candidates are kept down to this score, so any threshold above it can be asked for


class ThresholdSweep:
    """Raw head outputs of a dataset, reduced once to their candidates; then post-processing and
    VOC mAP for any (score threshold, NMS IoU, max detections) at slider speed.

    Build it with `add_batch` for each batch of raw outputs, in dataset order (or with
    `from_outputs`); the ground truth normalized like the boxes the head predicts.
    """

    def __init__(
        self, ground_truths: Sequence[Any], num_classes: int, floor: float = SWEEP_FLOOR, coding: str = "tanh"
    ):
        self.num_classes = num_classes
        self.floor = floor
        self.coding = coding
        no_detections = [(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64))] * len(ground_truths)
        self._gt = flatten(no_detections, ground_truths, num_classes)
        self._parts: list[Candidates] = []
        self._seen = 0
        self._kept: dict[float, tuple[Tensor, float]] = {}  # NMS IoU -> (kept positions, exact above this score)
        self._results: dict[tuple, VOCResult] = {}  # the last few evaluations, for moves back
        self._lock = threading.Lock()

    @classmethod
    def from_outputs(
        cls,
        class_logits: Tensor,
        box_activations: Tensor,
        anchors: Anchors,
        ground_truths: Sequence[Any],
        floor: float = SWEEP_FLOOR,
        coding: str = "tanh",
        batch_size: int = 64,
    ) -> ThresholdSweep:
        """A sweep over outputs already in memory: (N, A, C + 1) logits, (N, A, 4) activations."""
        sweep = cls(ground_truths, class_logits.shape[-1] - 1, floor, coding)
        for s in range(0, class_logits.shape[0], batch_size):
            sweep.add_batch(class_logits[s : s + batch_size], box_activations[s : s + batch_size], anchors)
        return sweep

    def add_batch(self, class_logits: Tensor, box_activations: Tensor, anchors: Anchors) -> None:
        """Adds the next images' raw outputs: (B, A, C + 1) logits and (B, A, 4) activations."""
        if self._seen + class_logits.shape[0] > self._gt.num_images:
            raise ValueError(
                f"outputs for {self._seen + class_logits.shape[0]} images but ground truth for {self._gt.num_images}."
            )
        c = find_candidates(class_logits, box_activations, anchors, self.floor, coding=self.coding)
        self._parts.append(
            Candidates(
                c.image.cpu() + self._seen,
                c.anchor.cpu(),
                c.label.cpu(),
                c.boxes.cpu().double(),
                c.scores.cpu().double(),
                0,
            )
        )
        self._seen += class_logits.shape[0]
        self.__dict__.pop("candidates", None)  # joined again on next use
        self._kept.clear()
        self._results.clear()

    @functools.cached_property
    def candidates(self) -> Candidates:
        """All candidates (score above the floor), grouped by image, best first."""
        if self._seen != self._gt.num_images:
            raise ValueError(f"outputs cover {self._seen} images but the ground truth {self._gt.num_images}.")
        fields = ("image", "anchor", "label", "boxes", "scores")
        joined = (
            {f: torch.cat([getattr(p, f) for p in self._parts]) for f in fields}
            if self._parts
            else {
                "image": torch.zeros(0, dtype=torch.int64),
                "anchor": torch.zeros(0, dtype=torch.int64),
                "label": torch.zeros(0, dtype=torch.int64),
                "boxes": torch.zeros(0, 4, dtype=torch.float64),
                "scores": torch.zeros(0, dtype=torch.float64),
            }
        )
        return Candidates(**joined, num_images=self._gt.num_images)

    def kept_by_nms(self, nms_iou: float, above: float | None = None) -> Tensor:
        """Positions of the candidates NMS keeps at this IoU (ascending), cached per IoU.

        Greedy NMS decides about a box from better-scoring boxes only, so NMS on the candidates
        above any score threshold keeps exactly these positions' share above it: a new score
        threshold or detection limit needs no new NMS. With `above`, only the candidates scoring
        above it are sure to be covered: an IoU never seen runs NMS over those alone (a score
        threshold filters most candidates), and a lower threshold later adds the rest, judged
        against the boxes kept so far (the suppressed ones can suppress nothing).
        """
        check_probability("nms_iou", nms_iou, low_open=True)
        cut = -math.inf if above is None else above
        with self._lock:  # app sessions and the warm-up thread share a sweep
            known = self._kept.get(nms_iou)
        if known is not None and known[1] <= cut:
            return known[0]
        c = self.candidates
        if known is None:
            part = torch.nonzero(c.scores > cut).squeeze(1)
        else:
            below = torch.nonzero((c.scores > cut) & (c.scores <= known[1])).squeeze(1)
            part = torch.sort(torch.cat([known[0], below])).values  # still grouped by image, best first
        kept = part[grouped_nms(c.boxes[part], c.scores[part], c.label[part], c.image[part], nms_iou)]
        with self._lock:
            known = self._kept.get(nms_iou)
            if known is None or cut < known[1]:
                self._kept[nms_iou] = (kept, cut)
        return kept

    def warm(self, nms_ious: Sequence[float], stop: threading.Event | None = None) -> None:
        """Runs NMS for each IoU in turn (over the candidates not covered yet), so later moves to them are
        instant; meant for a background thread while the user looks at the first result.
        Returns early once `stop` is set."""
        for nms_iou in nms_ious:
            if stop is not None and stop.is_set():
                return
            self.kept_by_nms(nms_iou)

    def detections(self, score_threshold: float, nms_iou: float, max_detections: int) -> Flat:
        """Post-processed detections of every image, with the ground truth, ready to evaluate."""
        if not self.floor <= score_threshold < 1.0:
            raise ValueError(f"score_threshold must be in [{self.floor}, 1) for this sweep, got {score_threshold}.")
        check_positive_int("max_detections", max_detections)
        c = self.candidates
        kept = self.kept_by_nms(nms_iou, above=score_threshold)
        final = first_per_image(kept[c.scores[kept] > score_threshold], c.image, c.num_images, max_detections)
        start = offsets(torch.bincount(c.image[final], minlength=self._gt.num_images))
        return dataclasses.replace(
            self._gt,
            det_image=c.image[final],
            det_boxes=c.boxes[final],
            det_scores=c.scores[final],
            det_labels=c.label[final],
            det_start=start,
        )

    def evaluate(
        self,
        score_threshold: float = 0.01,
        nms_iou: float = 0.45,
        max_detections: int = 100,
        iou_threshold: float = 0.5,
        method: str = "11point",
        use_difficult: bool = False,
    ) -> VOCResult:
        """VOC mAP of the outputs post-processed with these settings (the last 32 are remembered)."""
        check_method(method)
        check_iou_threshold(iou_threshold)
        key = (score_threshold, nms_iou, max_detections, iou_threshold, method, use_difficult)
        if key not in self._results:
            flat = self.detections(score_threshold, nms_iou, max_detections)
            result = voc_map_flat(flat, self.num_classes, iou_threshold, method, use_difficult)
            with self._lock:  # app sessions share a sweep
                if len(self._results) >= 32:
                    self._results.pop(next(iter(self._results)))
                self._results[key] = result
        return self._results[key]

    def surface(
        self,
        score_thresholds: Sequence[float],
        nms_ious: Sequence[float],
        max_detections: int = 100,
        iou_threshold: float = 0.5,
        method: str = "11point",
    ) -> Tensor:
        """(S, N) mAP over a grid of score thresholds x NMS IoUs."""
        rows = [
            [self.evaluate(s, n, max_detections, iou_threshold, method).map for n in nms_ious] for s in score_thresholds
        ]
        return torch.tensor(rows, dtype=torch.float64)


NO_DETECTION_LOGIT = -30.0  # sigmoid(-30) ~ 1e-13: below any score threshold, so an unreadable image has no detections


class OutputBatch(NamedTuple):
    """The model's outputs for one batch of a dataset's images.

    images: the images (a blank one of the record's size for an unreadable file).
    class_logits: (B, A, C + 1). box_activations: (B, A, 4). unreadable: the ids of the
    batch's images whose file could not be read (their logits are all NO_DETECTION_LOGIT).
    """

    images: list[Image.Image]
    class_logits: Tensor
    box_activations: Tensor
    unreadable: list[str]


def dataset_outputs(
    detector: Detector,
    index: DatasetIndex,
    batch_size: int = 16,
    progress: Callable[[int, int], None] | None = None,
    skip_unreadable: bool = False,
) -> Iterator[OutputBatch]:
    """Runs a Detector over every image of a DatasetIndex, in order, a batch at a time: the one
    place the CLI (`detect_dataset`) and the app (`sweep_dataset`) compute outputs over a dataset.

    Args:
        progress: called with (images done, images in all) after each batch.
        skip_unreadable: score an image whose file cannot be read as having no detections (and
            name it in `OutputBatch.unreadable`) instead of raising DataError.

    Raises:
        DataError: an image cannot be read (unless skip_unreadable).
        NonFiniteOutputs: the checkpoint's weights give NaN or inf.
    """
    for start in range(0, len(index), batch_size):
        images, broken, unreadable = [], [], []
        for i in range(start, min(start + batch_size, len(index))):
            r = index[i]
            try:
                images.append(load_image(r.image_path, (r.width, r.height)))
            except DataError:
                if not skip_unreadable:
                    raise
                images.append(Image.new("RGB", (r.width, r.height)))
                broken.append(len(images) - 1)
                unreadable.append(r.image_id)
        class_logits, box_activations = detector.raw_outputs(images)
        if broken:
            class_logits[broken] = NO_DETECTION_LOGIT
        if progress is not None:
            progress(start + len(images), len(index))
        yield OutputBatch(images, class_logits, box_activations, unreadable)


def detect_dataset(
    detector: Detector,
    index: DatasetIndex,
    score_threshold: float = 0.01,
    nms_iou: float = 0.45,
    max_detections: int = 100,
    batch_size: int = 16,
    progress: Callable[[int, int], None] | None = None,
) -> list[Detections]:
    """Runs a Detector over every image of a DatasetIndex; detections in pixels, one per image
    (as `Detector.detect` gives them)."""
    results = []
    for batch in dataset_outputs(detector, index, batch_size, progress):
        found = postprocess(batch.class_logits, batch.box_activations, detector.anchors, score_threshold, nms_iou,
                            max_detections, coding=detector.coding)  # fmt: skip
        results += [to_pixels(d, image.width, image.height) for d, image in zip(found, batch.images, strict=True)]
    return results


@dataclass(frozen=True)
class DatasetSweep:
    """A model's outputs over a dataset, ready for threshold sweeps.

    Attributes:
        sweep: the candidates of every image. index: the images, in sweep order.
        sizes: (N, 2) width, height per image. unreadable: images whose file could not be read
            (scored as having no detections).
    """

    sweep: ThresholdSweep
    index: DatasetIndex
    sizes: Tensor
    unreadable: list[str]


def sweep_dataset(
    detector: Detector,
    index: DatasetIndex,
    floor: float = SWEEP_FLOOR,
    batch_size: int = 16,
    progress: Callable[[int, int], None] | None = None,
) -> DatasetSweep:
    """A ThresholdSweep of the Detector's outputs over every image of a DatasetIndex (ground
    truth normalized by each image's size); unreadable images count as having no detections.
    `progress` is called with (images done, images in all) after each batch."""
    sizes = torch.stack([index.widths, index.heights], 1)
    truths = [(r.normalized_boxes(), r.labels, r.difficult) for r in index]
    sweep = ThresholdSweep(truths, len(detector.classes), floor=floor, coding=detector.coding)
    unreadable = []
    for batch in dataset_outputs(detector, index, batch_size, progress, skip_unreadable=True):
        sweep.add_batch(batch.class_logits, batch.box_activations, detector.anchors)
        unreadable += batch.unreadable
    return DatasetSweep(sweep, index, sizes, unreadable)
