"""Post-processing: equals torchvision's batched_nms; the trace equals a step-by-step greedy NMS."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torchvision.ops import batched_nms, box_iou

from detviz.anchors import PRESETS, make_anchors
from detviz.boxes import activations_to_boxes
from detviz.codes import NMSDecision
from detviz.postprocess import NMS_CHUNK, _chunk_bounds, grouped_nms, postprocess

MULTI = make_anchors(PRESETS["lesson_multiscale"])
C = 6


def _outputs(seed: int, b: int = 2, anchors=MULTI):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, len(anchors), C + 1, generator=gen) * 2 - 2.5
    acts = torch.randn(b, len(anchors), 4, generator=gen) * 0.7
    return logits, acts


def _reference(logits, acts, anchors, thr, iou, max_det):
    """The plain way, one image: every pair above the threshold, batched_nms, the best max_det."""
    scores = torch.sigmoid(logits[:, :C])
    anchor, label = torch.nonzero(scores > thr, as_tuple=True)
    boxes = activations_to_boxes(acts, anchors)[anchor]
    s = scores[anchor, label]
    keep = batched_nms(boxes, s, label, iou)[:max_det]
    return boxes[keep], s[keep], label[keep], anchor[keep]


@settings(max_examples=60, deadline=None)
@given(
    st.integers(0, 2**31 - 1), st.sampled_from([0.05, 0.2, 0.5]), st.sampled_from([0.3, 0.45, 0.7]), st.integers(1, 60)
)
def test_equals_batched_nms_on_the_same_candidates(seed: int, thr: float, iou: float, max_det: int) -> None:
    logits, acts = _outputs(seed)
    results = postprocess(logits, acts, MULTI, thr, iou, max_det, max_candidates=10_000)
    for i, det in enumerate(results):
        boxes, scores, labels, anchor = _reference(logits[i], acts[i], MULTI, thr, iou, max_det)
        assert len(det) == scores.numel() <= max_det
        torch.testing.assert_close(det.scores, scores)
        torch.testing.assert_close(det.boxes, boxes)
        assert torch.equal(det.labels, labels) and torch.equal(det.anchor, anchor)
        assert bool((det.scores[:-1] >= det.scores[1:]).all())  # best first


def _greedy_nms(boxes, scores, labels, iou_threshold):
    """NMS one box at a time: returns kept positions and, per suppressed box, (by whom, IoU)."""
    iou = box_iou(boxes, boxes).tolist()
    labels, scores = labels.tolist(), scores.tolist()
    order = sorted(range(len(scores)), key=lambda k: -scores[k])
    kept, removed = [], {}
    for k in order:
        if k in removed:
            continue
        kept.append(k)
        for j in order:
            if j not in removed and j not in kept and labels[j] == labels[k] and iou[k][j] > iou_threshold:
                removed[j] = (k, iou[k][j])
    return kept, removed


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from([0.3, 0.5]), st.integers(2, 30))
def test_trace_says_what_a_greedy_nms_says(seed: int, iou: float, max_det: int) -> None:
    logits, acts = _outputs(seed, b=1)
    det = postprocess(logits, acts, MULTI, 0.2, iou, max_det, return_trace=True)[0]
    t = det.trace
    assume(len(set(t.scores.tolist())) == t.scores.numel())  # the greedy reference needs no ties (rare, 1 seed in ~50)
    kept, removed = _greedy_nms(t.boxes, t.scores, t.labels, iou)
    assert sorted(torch.nonzero(t.status != NMSDecision.SUPPRESSED).flatten().tolist()) == sorted(kept)
    for j, (k, overlap) in removed.items():
        assert int(t.suppressed_by[j]) == k and abs(float(t.suppression_iou[j]) - overlap) < 1e-6
    assert bool((t.suppressed_by[t.status != NMSDecision.SUPPRESSED] == -1).all())
    assert int((t.status == NMSDecision.KEPT).sum()) == len(det) == min(max_det, len(kept))
    assert bool(
        (t.status[t.status != NMSDecision.SUPPRESSED][min(max_det, len(kept)) :] == NMSDecision.OVER_LIMIT).all()
    )
    assert torch.equal(t.boxes[t.status == NMSDecision.KEPT], det.boxes)


def test_batch_results_equal_single_image_results() -> None:
    logits, acts = _outputs(3, b=3)
    batch = postprocess(logits, acts, MULTI)
    for i in range(3):
        single = postprocess(logits[i : i + 1], acts[i : i + 1], MULTI)[0]
        assert torch.equal(single.boxes, batch[i].boxes) and torch.equal(single.labels, batch[i].labels)


def test_candidate_cap_keeps_the_best() -> None:
    logits, acts = _outputs(4, b=1)
    capped = postprocess(logits, acts, MULTI, 0.0, 1.0, 1000, max_candidates=25, return_trace=True)[0]
    assert capped.trace.scores.numel() == 25
    all_scores = torch.sigmoid(logits[0, :, :C]).flatten().sort(descending=True).values
    torch.testing.assert_close(capped.trace.scores, all_scores[:25])
    assert len(capped) == 25  # nms_iou = 1 suppresses nothing


def test_nothing_above_the_threshold_gives_empty_detections() -> None:
    logits = torch.full((2, len(MULTI), C + 1), -20.0)
    results = postprocess(logits, torch.zeros(2, len(MULTI), 4), MULTI, return_trace=True)
    for det in results:
        assert len(det) == 0 and det.boxes.shape == (0, 4) and det.trace.status.shape == (0,)


def test_ssd300_sized_input() -> None:
    anchors = make_anchors(PRESETS["ssd300"])
    logits, acts = _outputs(5, b=1, anchors=anchors)
    det = postprocess(logits, acts, anchors, max_detections=100)[0]
    assert len(det) == 100


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"score_threshold": 1.0}, r"score_threshold must be in \[0, 1\), got 1.0"),
        ({"score_threshold": -0.1}, r"score_threshold must be in \[0, 1\)"),
        ({"nms_iou": 0.0}, r"nms_iou must be in \(0, 1\], got 0.0"),
        ({"max_detections": 0}, r"max_detections must be a positive integer, got 0"),
        ({"max_candidates": 2.5}, r"max_candidates must be a positive integer, got 2.5"),
    ],
)
def test_bad_settings(kwargs: dict, message: str) -> None:
    logits, acts = _outputs(0)
    with pytest.raises(ValueError, match=message):
        postprocess(logits, acts, MULTI, **kwargs)


def test_bad_tensors() -> None:
    logits, acts = _outputs(0)
    with pytest.raises(ValueError, match=r"class_logits must have shape \(B, 189, C\+1\), got \(2, 16, 7\)"):
        postprocess(logits[:, :16], acts, MULTI)
    with pytest.raises(ValueError, match=r"box_activations must have shape \(2, 189, 4\), got \(2, 189, 3\)"):
        postprocess(logits, acts[..., :3], MULTI)
    bad = logits.clone()
    bad[0, 5, 2] = float("nan")
    with pytest.raises(ValueError, match=r"class_logits contains NaN"):
        postprocess(bad, acts, MULTI)
    bad_acts = acts.clone()
    bad_acts[:] = float("nan")
    with pytest.raises(ValueError, match=r"non-finite boxes"):
        postprocess(logits, bad_acts, MULTI, coding="variance")


def test_grouped_nms_decides_each_group_as_if_it_were_alone() -> None:
    """Kills: NMS in float32 with batched_nms's group shifts. Over a dataset the (image, class)
    groups shift boxes by thousands, where float32 keeps about three decimals, so a pair near
    the IoU threshold was decided by which other groups shared the call (the live set and one
    image alone disagreed)."""
    from torchvision.ops import nms

    gen = torch.Generator().manual_seed(0)
    images, per = 300, 30
    xy = torch.rand(images * per, 2, generator=gen) * 0.5
    boxes = torch.cat([xy, xy + 0.1 + torch.rand(images * per, 2, generator=gen) * 0.3], 1)
    image = torch.arange(images).repeat_interleave(per)
    labels = torch.randint(0, 3, (images * per,), generator=gen)
    scores = torch.rand(images * per, generator=gen)
    order = torch.argsort(image * 2 - scores)  # grouped by image, best first, as postprocess has them
    boxes, scores, labels, image = boxes[order], scores[order], labels[order], image[order]
    kept = grouped_nms(boxes, scores, labels, image, 0.45)
    expected = []
    for g in torch.unique(image * 3 + labels):
        members = torch.nonzero(image * 3 + labels == g).squeeze(1)
        expected.append(members[nms(boxes[members].double(), scores[members].double(), 0.45)])
    assert torch.equal(kept, torch.sort(torch.cat(expected)).values)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 80), min_size=1, max_size=150))
def test_chunk_bounds_cut_between_groups_into_parts_of_about_nms_chunk(counts: list[int]) -> None:
    """Kills: a cut inside a group, an empty or repeated part, a small last part, parts far from NMS_CHUNK."""
    bounds = _chunk_bounds(counts)
    total, biggest = sum(counts), max(counts)
    assert bounds[0] == 0 and bounds[-1] == total
    assert set(bounds) <= set(itertools.accumulate(counts, initial=0))  # only where a group begins
    sizes = [b - a for a, b in itertools.pairwise(bounds)]
    assert all(size > 0 for size in sizes)
    if total >= NMS_CHUNK * 3 // 2:
        assert all(NMS_CHUNK * 3 / 4 - biggest < size < NMS_CHUNK * 5 / 4 + biggest for size in sizes)
