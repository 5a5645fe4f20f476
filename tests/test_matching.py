"""Matching: the lesson's image-7 numbers exactly, the tie and conflict rules, batched = per image."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchvision.ops import box_iou

from benchmarks.reference_loss import force_anchors_one_image
from detviz.anchors import PRESETS, make_anchors
from detviz.boxes import pairwise_iou
from detviz.matching import (
    _TAKEN,
    NO_MATCH,
    PADDING_IOU,
    _first_max,
    match_anchors,
    match_batch,
    match_positives,
    match_targets,
)

# The lesson's image 7 (normalized [y1, x1, y2, x2], as printed) and its classes in VOC order.
LESSON_GT_YX = [[0.6786, 0.4866, 0.9911, 0.6250], [0.7098, 0.0848, 0.9911, 0.5491], [0.5134, 0.8304, 0.6696, 0.9063]]
LESSON_CLASSES = [8, 10, 17]  # chair, diningtable, sofa
LESSON_OVERLAPS = [  # the printed 3 x 16 `overlaps`
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0.0091, 0.0922, 0, 0, 0.0315, 0.3985, 0],
    [0, 0, 0, 0, 0, 0, 0, 0, 0.0356, 0.0549, 0.0103, 0, 0.2598, 0.4538, 0.0653, 0],
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0.1897, 0, 0, 0, 0],
]
BACKGROUND = 20


def lesson_gt() -> torch.Tensor:
    """The lesson's boxes converted to our xyxy."""
    return torch.tensor(LESSON_GT_YX)[:, [1, 0, 3, 2]]


def lesson_match(threshold: float = 0.4):
    return match_anchors(lesson_gt(), make_anchors(PRESETS["lesson_4x4"]).boxes, threshold)


def test_overlap_matrix_is_the_lessons() -> None:
    torch.testing.assert_close(lesson_match().iou, torch.tensor(LESSON_OVERLAPS), atol=1e-4, rtol=0)


def test_best_anchor_per_object_and_best_object_per_anchor_are_the_lessons() -> None:
    m = lesson_match()
    # overlaps.max(1): 0.3985, 0.4538, 0.1897 at anchors 14, 13, 11
    assert m.best_anchor.tolist() == [14, 13, 11]
    torch.testing.assert_close(m.iou.max(1).values, torch.tensor([0.3985, 0.4538, 0.1897]), atol=1e-4, rtol=0)
    # overlaps.max(0): values and indices as printed (ties at 0 go to object 0)
    expected = [0, 0, 0, 0, 0, 0, 0, 0, 0.0356, 0.0549, 0.0922, 0.1897, 0.2598, 0.4538, 0.3985, 0]
    torch.testing.assert_close(m.argmax_iou, torch.tensor(expected), atol=1e-4, rtol=0)
    assert m.argmax_gt.tolist() == [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 2, 1, 1, 0, 0]


def test_forced_anchors_positives_and_classes_are_the_lessons() -> None:
    m = lesson_match(0.4)
    assert torch.nonzero(m.forced).flatten().tolist() == [11, 13, 14]  # the lesson's 1.99 entries
    assert m.best_gt.tolist() == [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 2, 1, 1, 0, 0]  # gt_idx after forcing
    assert torch.nonzero(m.positive).flatten().tolist() == [11, 13, 14]
    assert torch.nonzero(lesson_match(0.5).positive).flatten().tolist() == [11, 13, 14]  # `thresh = 0.5`
    # the notes' second walk-through, threshold 0.2: anchor 12 joins the dining table
    m2 = lesson_match(0.2)
    assert torch.nonzero(m2.positive).flatten().tolist() == [11, 12, 13, 14]
    assert m2.best_gt[12].item() == 1
    # gt_clas before and after background
    labels = torch.tensor(LESSON_CLASSES)
    assert labels[m.argmax_gt].tolist() == [8] * 8 + [10, 10, 8, 17, 10, 10, 8, 8]
    target_class, target_boxes = match_targets(_batched(m), lesson_gt()[None], labels[None], BACKGROUND)
    assert target_class[0].tolist() == [BACKGROUND] * 11 + [17, BACKGROUND, 10, 8, BACKGROUND]
    assert torch.equal(target_boxes[0, 11], lesson_gt()[2]) and torch.equal(target_boxes[0, 14], lesson_gt()[0])
    # best_iou is the true IoU, not the lesson's 1.99 marker
    assert float(m.best_iou.max()) < 1.0


def _batched(m):
    return match_batch(
        lesson_gt()[None],
        torch.ones(1, 3, dtype=torch.bool),
        make_anchors(PRESETS["lesson_4x4"]).boxes,
        m.iou_threshold,
    )


def test_image_without_objects_is_all_negative() -> None:
    m = match_anchors(torch.zeros(0, 4), make_anchors(PRESETS["lesson_4x4"]).boxes)
    assert m.iou.shape == (0, 16) and m.best_anchor.shape == (0,)
    assert bool((m.best_gt == NO_MATCH).all()) and not bool(m.positive.any()) and float(m.best_iou.sum()) == 0


def test_ties_go_to_the_lower_index() -> None:
    anchors = torch.tensor([[0.0, 0.0, 0.5, 1.0], [0.5, 0.0, 1.0, 1.0]])
    gt = torch.tensor([[0.25, 0.0, 0.75, 1.0], [0.25, 0.0, 0.75, 1.0]])  # same IoU with both anchors
    m = match_anchors(gt, anchors, 0.9)
    assert m.argmax_gt.tolist() == [0, 0]  # equal IoU with both objects: object 0
    # both objects want anchor 0 (the lower of two equal anchors); object 0 (lower index) keeps it
    assert m.best_anchor.tolist() == [0, 1]
    assert m.forced_gt.tolist() == [0, 1] and m.positive.tolist() == [True, True]


def test_two_objects_wanting_one_anchor_each_get_their_own() -> None:
    anchors = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 0.6, 0.6], [0.5, 0.5, 1.0, 1.0]])
    big = torch.tensor([0.0, 0.0, 0.95, 0.95])  # IoU 0.9025 with anchor 0
    also_big = torch.tensor([0.05, 0.05, 1.0, 1.0])  # IoU 0.9025 too, but anchor 2 fits it next
    small = torch.tensor([0.0, 0.0, 0.9, 0.9])  # IoU 0.81 with anchor 0, 0.444 with anchor 1
    m = match_anchors(torch.stack([small, big, also_big]), anchors, 0.99)
    # anchor 0: wanted by all three; the highest IoU (0.9025, objects 1 and 2) wins, the lower
    # index of those (1); object 0 moves to its next best free anchor (1), object 2 to anchor 2
    assert m.best_anchor.tolist() == [1, 0, 2]
    assert m.forced_gt.tolist() == [1, 0, 2]
    assert m.positive.all()


def test_more_objects_than_anchors() -> None:
    anchors = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    gt = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.9, 0.9]])
    m = match_anchors(gt, anchors)
    assert m.best_anchor.tolist() == [NO_MATCH, 0] and m.best_gt.tolist() == [1]


def test_object_overlapping_no_anchor_is_not_forced() -> None:
    anchors = torch.tensor([[0.0, 0.0, 0.5, 0.5]])
    m = match_anchors(torch.tensor([[0.6, 0.6, 0.9, 0.9], [0.7, 0.7, 0.7, 0.7]]), anchors)
    assert m.best_anchor.tolist() == [NO_MATCH, NO_MATCH] and not bool(m.positive.any())


@st.composite
def batches(draw):
    b, g, a = draw(st.integers(1, 4)), draw(st.integers(0, 6)), draw(st.integers(1, 40))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))

    def boxes(n: int) -> torch.Tensor:
        xy = torch.rand(n, 2, generator=gen) * 0.8
        return torch.cat([xy, xy + 0.02 + torch.rand(n, 2, generator=gen) * 0.5], 1).clamp(max=1.0)

    gt = boxes(b * g).reshape(b, g, 4)
    if draw(st.booleans()) and g:  # duplicates make ties and conflicts
        gt[:, -1] = gt[:, 0]
    valid = torch.rand(b, g, generator=gen) > 0.3
    return gt, valid, boxes(a), draw(st.sampled_from([0.0, 0.3, 0.4, 0.5, 1.0]))


def matched_batches():
    """batches(), each with its match_batch result appended."""
    return batches().map(lambda batch: (*batch, match_batch(*batch)))


@settings(max_examples=150, deadline=None)
@given(matched_batches())
def test_batched_matching_equals_per_image_matching(batch) -> None:
    gt, valid, anchors, threshold, bm = batch
    for i in range(gt.shape[0]):
        m = match_anchors(gt[i][valid[i]], anchors, threshold)
        keep = torch.nonzero(valid[i]).flatten()
        to_batch = torch.cat([keep, torch.tensor([NO_MATCH])])  # index -1 stays -1
        assert torch.equal(to_batch[m.best_gt], bm.best_gt[i])
        assert torch.equal(to_batch[m.argmax_gt], bm.argmax_gt[i])
        assert torch.equal(m.best_iou, bm.best_iou[i]) and torch.equal(m.positive, bm.positive[i])
        assert torch.equal(m.forced, bm.forced[i]) and torch.equal(m.best_anchor, bm.best_anchor[i][keep])
        assert bool((bm.best_anchor[i][~valid[i]] == NO_MATCH).all())
        assert torch.equal(bm.iou[i][keep], m.iou) and bool((bm.iou[i][~valid[i]] == PADDING_IOU).all())


@settings(max_examples=150, deadline=None)
@given(matched_batches())
def test_matching_rule_invariants(batch) -> None:
    gt, valid, anchors, threshold, bm = batch
    for i in range(gt.shape[0]):
        forced = bm.best_anchor[i][bm.best_anchor[i] >= 0]
        assert len(set(forced.tolist())) == forced.numel()  # each anchor forced at most once
        assert bool(bm.positive[i][forced].all())
        iou = box_iou(gt[i][valid[i]], anchors)
        expected = force_anchors_one_image(iou)  # the plain sequential statement of the rule
        keep = torch.nonzero(valid[i]).flatten()
        got = {k: int(bm.best_anchor[i][keep[k]]) for k in range(keep.numel()) if int(bm.best_anchor[i][keep[k]]) >= 0}
        assert got == expected
        non_forced = ~bm.forced[i]
        assert torch.equal(bm.positive[i][non_forced], bm.best_iou[i][non_forced] > threshold)


@settings(max_examples=150, deadline=None)
@given(matched_batches())
def test_match_positives_are_match_batchs_positives_and_ground_truths(batch) -> None:
    gt, valid, anchors, threshold, bm = batch
    image, anchor, gt_index = match_positives(gt, valid, anchors, threshold)
    expected_image, expected_anchor = torch.nonzero(bm.positive, as_tuple=True)
    assert torch.equal(image, expected_image) and torch.equal(anchor, expected_anchor)
    assert torch.equal(gt_index, bm.best_gt[image, anchor])  # forced ones included


def test_match_positives_of_a_batch_without_objects_are_empty() -> None:
    anchors = make_anchors(PRESETS["lesson_4x4"]).boxes
    for g in (0, 3):
        image, anchor, gt_index = match_positives(torch.zeros(2, g, 4), torch.zeros(2, g, dtype=torch.bool), anchors)
        assert image.shape == anchor.shape == gt_index.shape == (0,)


@settings(max_examples=100, deadline=None)
@given(batches())
def test_pairwise_iou_equals_torchvision_bit_for_bit(batch) -> None:
    gt, _, anchors, _ = batch
    flat = gt.reshape(-1, 4)
    assert torch.equal(pairwise_iou(flat, anchors), box_iou(flat, anchors))
    assert torch.equal(pairwise_iou(anchors, flat), box_iou(anchors, flat))
    iou = pairwise_iou(anchors, anchors)
    assert torch.equal(iou, iou.T) and bool((iou >= 0).all() and (iou <= 1).all())


def test_pairwise_iou_on_many_anchors_uses_blocks_and_still_equals_torchvision() -> None:
    anchors = make_anchors(PRESETS["ssd300"]).boxes
    gt = torch.rand(70, 2) * 0.5
    gt = torch.cat([gt, gt + 0.1 + torch.rand(70, 2) * 0.4], 1)
    assert torch.equal(pairwise_iou(gt, anchors), box_iou(gt, anchors))


SSD300 = make_anchors(PRESETS["ssd300"]).boxes


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.booleans())
def test_match_positives_on_thousands_of_anchors_follow_the_rule(seed: int, duplicates: bool) -> None:
    """SSD300's 8,732 anchors: the chunked first-maximum search of the forcing step (it needs
    more than two chunks per row) and the positive lookup, against match_batch and the plain
    sequential statement of the forcing rule."""
    gen = torch.Generator().manual_seed(seed)
    xy = torch.rand(3, 8, 2, generator=gen) * 0.8
    gt = torch.cat([xy, xy + 0.01 + torch.rand(3, 8, 2, generator=gen) * 0.4], -1).clamp(max=1.0)
    if duplicates:  # equal rows: ties and conflicts for the same anchors
        gt[:, 4:] = gt[:, :4]
    valid = torch.rand(3, 8, generator=gen) > 0.2
    bm = match_batch(gt, valid, SSD300)
    image, anchor, gt_index = match_positives(gt, valid, SSD300)
    expected_image, expected_anchor = torch.nonzero(bm.positive, as_tuple=True)
    assert torch.equal(image, expected_image) and torch.equal(anchor, expected_anchor)
    assert torch.equal(gt_index, bm.best_gt[image, anchor])
    for i in range(gt.shape[0]):
        keep = torch.nonzero(valid[i]).flatten()
        expected = force_anchors_one_image(box_iou(gt[i][keep], SSD300))
        got = {k: int(bm.best_anchor[i, keep[k]]) for k in range(keep.numel()) if int(bm.best_anchor[i, keep[k]]) >= 0}
        assert got == expected


@pytest.mark.parametrize("width", [1, 255, 256, 300, 384, 1000])
def test_first_max_is_max_with_the_first_index_of_ties(width: int) -> None:
    gen = torch.Generator().manual_seed(width)
    values = torch.randint(0, 4, (40, width), generator=gen).float() / 4  # many ties per row
    values[0] = 0.0  # a constant row
    values[1, -1] = 2.0  # the maximum in the last column (a short last chunk)
    values[2, width // 2 :] = 3.0  # ties from the middle on
    values[3] = _TAKEN
    best, index = _first_max(values)
    expected = values.max(dim=1)
    assert torch.equal(best, expected.values) and torch.equal(index, expected.indices)


# --- bad input ---------------------------------------------------------------------------

ANCHORS = make_anchors(PRESETS["lesson_4x4"]).boxes


@pytest.mark.parametrize(
    ("gt", "anchors", "message"),
    [
        (
            torch.tensor([[0.5, 0.1, 0.2, 0.3]]),
            ANCHORS,
            r"gt_boxes at index \[0\] is \[0.5, 0.1, 0.2, 0.3\]; xyxy boxes need x2 >= x1",
        ),
        (
            torch.tensor([[0.1, float("nan"), 0.2, 0.3]]),
            ANCHORS,
            r"gt_boxes has a NaN or infinite coordinate at index \[0\]",
        ),
        (torch.tensor([[0.1, 0.1, float("inf"), 0.3]]), ANCHORS, r"NaN or infinite"),
        (torch.zeros(2, 5), ANCHORS, r"gt_boxes must have shape \(G, 4\), got \(2, 5\)"),
        (torch.zeros(4), ANCHORS, r"gt_boxes must have shape \(G, 4\), got \(4\)"),
        (torch.zeros(1, 4, dtype=torch.int64), ANCHORS, r"gt_boxes must be a floating-point tensor, got torch.int64"),
        (torch.zeros(1, 4), torch.zeros(0, 4), r"anchor_boxes is empty, shape \(0, 4\)"),
        (torch.zeros(1, 4), torch.zeros(16), r"anchor_boxes must have shape \(A, 4\), got \(16\)"),
        (
            torch.zeros(1, 4),
            ANCHORS.to("meta"),
            r"tensors are on different devices \(gt_boxes on cpu, anchor_boxes on meta\)",
        ),
    ],
)
def test_bad_single_image_inputs(gt: torch.Tensor, anchors: torch.Tensor, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        match_anchors(gt, anchors)


def test_bad_threshold_and_batch_inputs() -> None:
    with pytest.raises(ValueError, match=r"iou_threshold must be in \[0, 1\], got 1.5"):
        match_anchors(torch.zeros(0, 4), ANCHORS, 1.5)
    with pytest.raises(ValueError, match=r"gt_valid must have shape \(2, 3\), got \(2, 4\)"):
        match_batch(torch.zeros(2, 3, 4), torch.ones(2, 4, dtype=torch.bool), ANCHORS)
    with pytest.raises(ValueError, match=r"gt_valid must be a bool tensor, got torch.int64"):
        match_batch(torch.zeros(2, 3, 4), torch.ones(2, 3, dtype=torch.int64), ANCHORS)
    with pytest.raises(ValueError, match=r"gt_boxes must have shape \(B, G, 4\), got \(3, 4\)"):
        match_batch(torch.zeros(3, 4), torch.ones(3, dtype=torch.bool), ANCHORS)
