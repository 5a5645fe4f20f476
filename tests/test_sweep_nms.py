"""ThresholdSweep at an NMS IoU it has not seen: exactly what torchvision's batched_nms (and
postprocess, image by image) keeps, whether it ran NMS over every candidate or only over those
above the score threshold asked, and then over the rest when a lower one is asked."""

from __future__ import annotations

import threading

import pytest
import torch
from conftest import wait_for
from test_evaluate import _sweep_setup
from torchvision.ops import batched_nms

from detviz.evaluate import ThresholdSweep
from detviz.evaluate import sweep as sweep_module
from detviz.postprocess import Candidates, postprocess

N_IMAGES = 16


def batched_nms_reference(c: Candidates, score: float, nms_iou: float, max_detections: int) -> list[torch.Tensor]:
    """Per image, the positions of the candidates batched_nms keeps above the score, best first."""
    out = []
    for i in range(c.num_images):
        mine = torch.nonzero((c.image == i) & (c.scores > score)).squeeze(1)
        keep = batched_nms(c.boxes[mine], c.scores[mine], c.label[mine], nms_iou)  # best first
        out.append(mine[keep][:max_detections])
    return out


def per_image(sweep: ThresholdSweep, score: float, nms_iou: float, max_detections: int):
    flat = sweep.detections(score, nms_iou, max_detections)
    return [
        (
            flat.det_boxes[flat.det_image == i],
            flat.det_scores[flat.det_image == i],
            flat.det_labels[flat.det_image == i],
        )
        for i in range(flat.num_images)
    ]


@pytest.mark.parametrize("nms_iou", [0.3, 0.55, 0.8])
def test_a_never_seen_nms_iou_keeps_what_batched_nms_and_postprocess_keep(nms_iou: float) -> None:
    """First above a high score threshold (NMS over those candidates alone), then a lower one
    (the rest added). Mutations killed: the lower threshold served from the narrower NMS run
    (`known[1] <= cut` dropped); the rest judged without the boxes kept above it."""
    anchors, logits, acts, gts = _sweep_setup(seed=3, n=N_IMAGES)
    sweep = ThresholdSweep.from_outputs(logits, acts, anchors, gts)
    c = sweep.candidates
    for score, max_detections in ((0.4, 100), (0.02, 100), (0.02, 7)):
        got = per_image(sweep, score, nms_iou, max_detections)
        expected = batched_nms_reference(c, score, nms_iou, max_detections)
        for i, (boxes, scores, labels) in enumerate(got):
            assert torch.equal(boxes, c.boxes[expected[i]]), (score, i)
            assert torch.equal(scores, c.scores[expected[i]]) and torch.equal(labels, c.label[expected[i]])
            (direct,) = postprocess(logits[i : i + 1], acts[i : i + 1], anchors, score, nms_iou, max_detections)
            assert torch.equal(boxes, direct.boxes.double()) and torch.equal(labels, direct.labels), (score, i)


def test_nms_runs_once_per_iou_over_what_is_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutations killed: a cached NMS replaced by a narrower one (the warm-up's full run lost to a
    page's partial one); NMS at a new IoU run over every candidate instead of those above the
    threshold; the rest, later, run with the suppressed boxes instead of only the kept ones."""
    anchors, logits, acts, gts = _sweep_setup(seed=4, n=N_IMAGES)
    sweep = ThresholdSweep.from_outputs(logits, acts, anchors, gts)
    c = sweep.candidates
    sizes: list[int] = []
    real = sweep_module.grouped_nms

    def counting(boxes, scores, labels, image, nms_iou):
        sizes.append(boxes.shape[0])
        return real(boxes, scores, labels, image, nms_iou)

    monkeypatch.setattr(sweep_module, "grouped_nms", counting)
    sweep.warm([0.5])
    sweep.kept_by_nms(0.5, above=0.3)
    sweep.evaluate(0.3, 0.5)
    assert sizes == [len(c)]  # the warm-up's run, over every candidate, serves every threshold

    above = sweep.kept_by_nms(0.6, above=0.3)
    assert sizes[1:] == [int((c.scores > 0.3).sum())]
    assert torch.equal(sweep.kept_by_nms(0.6, above=0.35), above) and len(sizes) == 2  # covered already
    full = sweep.kept_by_nms(0.6)
    assert sizes[2:] == [above.numel() + int((c.scores <= 0.3).sum())]  # kept ones, then the rest
    assert torch.equal(full[c.scores[full] > 0.3], above)
    sweep.kept_by_nms(0.6, above=0.5)
    assert len(sizes) == 3


def test_a_slower_narrow_run_never_replaces_a_full_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """A page's NMS above its score threshold finishes after the warm-up's run over every
    candidate at the same IoU (threads share a sweep). Mutation killed: the later, narrower
    result stored over the full one (the next low threshold would run NMS again)."""
    anchors, logits, acts, gts = _sweep_setup(seed=5, n=4)
    sweep = ThresholdSweep.from_outputs(logits, acts, anchors, gts)
    n_candidates = len(sweep.candidates)
    real, runs, full_done = sweep_module.grouped_nms, [], threading.Event()

    def held_back(boxes, scores, labels, image, nms_iou):
        runs.append(boxes.shape[0])
        if boxes.shape[0] < n_candidates:  # the narrow run waits for the full one
            full_done.wait(10)
        return real(boxes, scores, labels, image, nms_iou)

    monkeypatch.setattr(sweep_module, "grouped_nms", held_back)
    page = threading.Thread(target=sweep.kept_by_nms, args=(0.7,), kwargs={"above": 0.3})
    page.start()
    wait_for(lambda: len(runs) == 1, seconds=10, every=0.01)
    full = sweep.kept_by_nms(0.7)
    full_done.set()
    page.join(10)
    assert torch.equal(sweep.kept_by_nms(0.7, above=0.01), full) and len(runs) == 2
