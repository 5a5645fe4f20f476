"""Why an anchor is positive or negative, what NMS did with a candidate, why the audit's numbers
differ, and which anchor a plotly click picked."""

from __future__ import annotations

import pytest
import torch
from test_matching import LESSON_CLASSES, lesson_gt

from detviz.anchors import PRESETS, make_anchors
from detviz.codes import NMSDecision
from detviz.data import VOC_CLASSES
from detviz.explain import (
    AUDIT_REASONS,
    audit_reason,
    clicked_anchor,
    explain_anchor,
    nms_decision,
    nms_decision_label,
    trace_of_classes,
)
from detviz.matching import match_anchors
from detviz.postprocess import NMSTrace, postprocess

ANCHORS = make_anchors(PRESETS["lesson_4x4"]).boxes
LABELS = torch.tensor(LESSON_CLASSES)


def _story(anchor: int, threshold: float = 0.5, gt: torch.Tensor | None = None, labels: torch.Tensor | None = None):
    gt = lesson_gt() if gt is None else gt
    labels = LABELS if labels is None else labels
    match = match_anchors(gt, ANCHORS, threshold)
    return explain_anchor(match, anchor, ANCHORS, gt, labels, VOC_CLASSES)


def test_the_lessons_forced_anchors_say_so_with_their_iou() -> None:
    # the lesson: anchor 14 is the chair's best (0.3985), 13 the table's (0.4538), 11 the sofa's (0.1897)
    for anchor, g, iou in ((14, 0, 0.3985), (13, 1, 0.4538), (11, 2, 0.1897)):
        story = _story(anchor)
        assert story.positive and story.forced and story.assigned == g
        assert story.target_class == LESSON_CLASSES[g]
        assert torch.equal(story.target_box, lesson_gt()[g])
        assert story.reason.startswith("Positive by force")
        assert f"object {g + 1} ({VOC_CLASSES[LESSON_CLASSES[g]]})" in story.reason
        assert f"IoU {iou:.3f}" in story.reason or f"IoU {iou + 0.0001:.3f}" in story.reason
        torch.testing.assert_close(story.box, ANCHORS[anchor])


def test_an_anchor_below_the_threshold_is_background_with_its_best_overlap_named() -> None:
    story = _story(12)  # overlaps the dining table by 0.2598
    assert not story.positive and story.assigned == 1 and story.target_class == len(VOC_CLASSES)
    assert story.target_box is None
    assert "0.260, not above the threshold 0.5" in story.reason and "diningtable" in story.reason
    torch.testing.assert_close(story.ious, torch.tensor([0.0, 0.2598, 0.0]), atol=1e-4, rtol=0)


def test_the_same_anchor_is_positive_by_overlap_under_a_lower_threshold() -> None:
    story = _story(12, threshold=0.2)
    assert story.positive and not story.forced and story.target_class == VOC_CLASSES.index("diningtable")
    assert story.reason.startswith("Positive: it overlaps object 2 (diningtable) most, with IoU 0.260 above")


def test_an_anchor_touching_nothing() -> None:
    story = _story(0)
    assert not story.positive and story.assigned is None
    assert story.reason == "Negative: it overlaps no object at all, so it learns background."


def test_a_forced_anchor_that_overlaps_another_object_more_says_both() -> None:
    # object 1 spans cells 5 and 6 (IoU 0.5 each); object 2 sits inside cell 6 (IoU 0.48): anchor 6
    # is object 2's best, so it is forced for it although it overlaps object 1 more
    gt = torch.tensor([[0.25, 0.25, 0.75, 0.5], [0.5, 0.25, 0.62, 0.5]])
    labels = torch.tensor([3, 4])
    story = _story(6, gt=gt, labels=labels)
    assert story.forced and story.assigned == 1 and story.target_class == 4
    assert story.reason == (
        "Positive by force: it is the best anchor of object 2 (bottle) (IoU 0.480), although it overlaps "
        "object 1 (boat) more (IoU 0.500), so it learns that object whatever the threshold (0.5)."
    )


def test_image_without_objects() -> None:
    gt, labels = torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64)
    story = _story(5, gt=gt, labels=labels)
    assert not story.positive and story.assigned is None and story.ious.numel() == 0
    assert story.reason == "Negative: the image has no objects, so every anchor is background."


@pytest.mark.parametrize("anchor", [-1, 16, 100])
def test_anchor_out_of_range_is_refused(anchor: int) -> None:
    with pytest.raises(ValueError, match=rf"anchor must be in \[0, 16\), got {anchor}"):
        _story(anchor)


@pytest.mark.parametrize(
    ("points", "expected"),
    [
        ([{"customdata": 13}], 13),
        ([{"customdata": [7]}], 7),
        ([{"customdata": {"0": 9, "1": 2, "2": 4}}], 9),  # what the browser sends for numpy customdata rows
        ([{"customdata": {"1": 9}}], None),
        ([{"customdata": 7.0}], 7),
        ([{"x": 1.0, "y": 2.0}], None),  # a click on the image or a box: no anchor
        ([{"customdata": "13"}], None),  # text customdata of a hover trace
        ([{"customdata": True}], None),
        ([{"customdata": 7.5}], None),
        ([{"customdata": 16}], None),  # out of range
        ([{"customdata": -1}], None),
        ([{"customdata": []}], None),
        ([{"x": 0}, {"customdata": [3, "extra"]}], 3),  # the first point carrying an anchor wins
        ([], None),
        (None, None),
        (["not a dict", {"customdata": 2}], 2),
    ],
)
def test_clicked_anchor(points, expected) -> None:
    assert clicked_anchor(points, 16) == expected


def _trace() -> NMSTrace:
    """Four candidates, best first: a kept dog; a kept cat; a cat suppressed by it (IoU 0.62); a
    cat NMS keeps but the detection limit drops."""
    return NMSTrace(
        boxes=torch.tensor([[0.0, 0, 10, 10], [20, 20, 40, 40], [22, 22, 42, 42], [60, 60, 70, 70]]),
        scores=torch.tensor([0.95, 0.9, 0.7, 0.6]),
        labels=torch.tensor([1, 0, 0, 0]),
        anchor=torch.tensor([5, 9, 11, 14]),
        status=torch.tensor([NMSDecision.KEPT, NMSDecision.KEPT, NMSDecision.SUPPRESSED, NMSDecision.OVER_LIMIT]),
        suppressed_by=torch.tensor([-1, -1, 1, -1]),
        suppression_iou=torch.tensor([0.0, 0.0, 0.62, 0.0]),
    )


def test_each_nms_decision_in_one_sentence() -> None:
    trace, names = _trace(), ["cat", "dog"]
    assert nms_decision(trace, 0, names) == "**candidate 0** (dog 0.950): no better box of its class: **kept**."
    assert nms_decision(trace, 1, names) == "**candidate 1** (cat 0.900): no better box of its class: **kept**."
    assert nms_decision(trace, 2, names) == (
        "**candidate 2** (cat 0.700) overlaps candidate 1 (0.900), already kept, by IoU 0.62, above the NMS "
        "threshold: **suppressed**."
    )
    assert nms_decision(trace, 3, names) == (
        "**candidate 3** (cat 0.600): NMS keeps it (no better box of its class overlaps it enough), but it is "
        "beyond the max-detections limit: **dropped**."
    )


def test_nms_decision_labels() -> None:
    trace = _trace()
    assert [nms_decision_label(trace, k) for k in range(4)] == [
        "kept", "kept", "suppressed by candidate 1 (IoU 0.62)", "over the limit",
    ]  # fmt: skip


def test_trace_of_classes_renumbers_the_suppressors() -> None:
    cats = trace_of_classes(_trace(), [0])
    assert cats.labels.tolist() == [0, 0, 0] and cats.anchor.tolist() == [9, 11, 14]
    assert cats.suppressed_by.tolist() == [-1, 0, -1]  # candidate 1 of the full trace is candidate 0 here
    assert cats.status.tolist() == [NMSDecision.KEPT, NMSDecision.SUPPRESSED, NMSDecision.OVER_LIMIT]
    assert cats.scores.tolist() == pytest.approx([0.9, 0.7, 0.6])
    assert trace_of_classes(_trace(), [2]).status.shape == (0,)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_trace_of_classes_is_the_trace_of_a_model_that_predicts_only_them(seed: int) -> None:
    """NMS works per class: the candidates of some classes, filtered out of the whole trace, are
    the trace of the same outputs with the other classes' scores at zero (no limit binding)."""
    anchors = make_anchors(PRESETS["lesson_multiscale"])
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(1, len(anchors), 5, generator=gen) * 2 - 2.5
    acts = torch.randn(1, len(anchors), 4, generator=gen) * 0.7
    only = [1, 3]
    silent = logits.clone()
    silent[..., [0, 2]] = -100.0
    (whole,) = postprocess(logits, acts, anchors, 0.2, 0.4, 1000, return_trace=True)
    (mine,) = postprocess(silent, acts, anchors, 0.2, 0.4, 1000, return_trace=True)
    filtered = trace_of_classes(whole.trace, only)
    assert filtered.status.numel() > 3
    for field in ("labels", "anchor", "status", "suppressed_by"):
        assert torch.equal(getattr(filtered, field), getattr(mine.trace, field)), field
    for field in ("boxes", "scores", "suppression_iou"):  # a vectorised sigmoid may differ in the last bit
        torch.testing.assert_close(getattr(filtered, field), getattr(mine.trace, field))


def test_audit_reasons_are_sentences_naming_the_cut() -> None:
    for row in AUDIT_REASONS:
        reason = audit_reason(row, 0.3)
        assert reason.endswith(".") and "{" not in reason
    assert "0.3" in audit_reason("cut", 0.3) and "0.25" in audit_reason("coco_cut", 0.25)
