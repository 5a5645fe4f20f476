"""coco_map / coco_eval on the cases where a vectorised COCOeval could part from pycocotools'
loops: tied scores, crowd regions, classes without detections or objects, the maxDets cut,
areas on the range borders, IoUs on a threshold, equal IoUs. pycocotools is the reference:
the twelve numbers to 1e-6 and its precision / recall arrays to 1e-12."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_evaluate import det, gt, random_data

from benchmarks.reference_coco import coco_json, prepared_eval, run_eval
from detviz.evaluate import COCOResult, coco_eval

STATS_ATOL = 1e-6
ARRAY_ATOL = 1e-12
AP, AP50, AP75, AP_SMALL, AP_MEDIUM, AP_LARGE, AR1, AR10, AR100 = range(9)


def like_pycocotools(dets, gts, num_classes: int) -> COCOResult:
    """coco_eval, after checking its stats, precision and recall against pycocotools'."""
    ours = coco_eval(dets, gts, num_classes)
    ref = run_eval(prepared_eval(*coco_json(dets, gts, num_classes)))
    np.testing.assert_allclose(ours.stats.numpy(), ref.stats, atol=STATS_ATOL, rtol=0)
    np.testing.assert_allclose(ours.precision.numpy(), ref.eval["precision"], atol=ARRAY_ATOL, rtol=0)
    np.testing.assert_allclose(ours.recall.numpy(), ref.eval["recall"], atol=ARRAY_ATOL, rtol=0)
    return ours


def test_tied_scores_follow_image_then_rank_order() -> None:
    """Mutation killed: descending score order that breaks ties backwards (a flipped ascending
    sort) instead of pycocotools' stable mergesort (image order, then rank in the image)."""
    for seed in range(4):
        dets, gts = random_data(seed + 40, n_img=25, num_classes=2, integer=True)
        dets = [(b, (s * 4).ceil() / 4, lab) for b, s, lab in dets]  # four score values: many ties
        like_pycocotools(dets, gts, 2)


def test_crowd_regions_take_any_number_of_detections_after_real_objects() -> None:
    """Mutations killed: a crowd region used up by its first detection (for a detection with one
    candidate object, and for one with several); the best overlap taken whether or not the object
    is ignored (a real object must win over a crowd region)."""
    left, right, real = [0.0, 0.0, 100.0, 100.0], [50.0, 0.0, 150.0, 100.0], [10.0, 10.0, 40.0, 40.0]
    gts = [gt([left, right, real], [0, 0, 0], [True, True, False])]
    near_real = [10.0, 10.0, 40.0, 44.0]  # IoU 0.88 with the real object, inside the left region
    in_both = [[60.0, 10.0, 90.0, 40.0], [55.0, 55.0, 95.0, 95.0], [60.0, 60.0, 90.0, 90.0]]
    in_right = [110.0, 10.0, 140.0, 40.0]
    dets = [det([*in_both, in_right, near_real], [0.9, 0.8, 0.7, 0.6, 0.5], [0] * 5)]
    ours = like_pycocotools(dets, gts, 1)
    # the last finds the real object up to IoU 0.85; the others, all better, only crowd regions,
    # which ignore them: one true positive and no false one before it
    assert ours.stats[[AP50, AP75, AR100]].tolist() == pytest.approx([1.0, 1.0, 0.8], abs=1e-12)


def test_classes_without_detections_or_without_objects() -> None:
    """Mutations killed: a class with objects but no detection left at -1 (absent) instead of 0;
    a class with detections but no object scored instead of -1."""
    gts = [gt([[0.0, 0.0, 50.0, 50.0], [60.0, 60.0, 120.0, 120.0]], [0, 1]), gt([[0.0, 0.0, 40.0, 40.0]], [0])]
    dets = [det([[0.0, 0.0, 50.0, 50.0], [200.0, 200.0, 260.0, 260.0]], [0.9, 0.8], [0, 2]), det([], [], [])]
    ours = like_pycocotools(dets, gts, 4)  # class 0: both; 1: objects only; 2: detections only; 3: neither
    all_areas, most = 0, -1
    assert (ours.precision[:, :, 1, all_areas, most] == 0).all() and (ours.recall[:, 1, all_areas, most] == 0).all()
    assert (ours.precision[:, :, 2:] == -1).all() and (ours.recall[:, 2:] == -1).all()


def test_at_most_100_detections_per_image_and_class() -> None:
    """Mutations killed: every detection counted at every maxDets (1, 10, 100); the detection of
    rank maxDets counted too (`<=` for `<`)."""
    xy = torch.cartesian_prod(torch.arange(11.0), torch.arange(10.0)) * 30  # 110 separate 20 x 20 objects
    boxes = torch.cat([xy, xy + 20], 1)
    scores = torch.linspace(0.99, 0.5, 110, dtype=torch.float64)
    ours = like_pycocotools([det(boxes, scores, [0] * 110)], [gt(boxes, [0] * 110)], 1)
    assert ours.stats[[AR1, AR10, AR100]].tolist() == pytest.approx([1 / 110, 10 / 110, 100 / 110], abs=1e-12)
    assert float(ours.stats[AP]) == pytest.approx(
        91 / 101, abs=1e-12
    )  # precision 1 up to recall 100/110, so at the thresholds 0.00 .. 0.90


def test_areas_on_the_range_borders_count_in_both_ranges() -> None:
    """Mutation killed: a range border treated as outside (`<=` for `<` in the area test), which
    drops the 32^2 object from small or medium and the 96^2 one from medium or large."""
    small_medium, medium_large = [0.0, 0.0, 32.0, 32.0], [100.0, 100.0, 196.0, 196.0]
    gts = [gt([small_medium, medium_large], [0, 0])]
    # an exact copy of each, and a missed 32^2 detection that is not ignored in small nor medium
    dets = [det([small_medium, medium_large, [300.0, 300.0, 332.0, 332.0]], [0.9, 0.8, 0.95], [0, 0, 0])]
    ours = like_pycocotools(dets, gts, 1)
    assert ours.stats[[AP_SMALL, AP_MEDIUM, AP_LARGE]].tolist() == pytest.approx([0.5, 2 / 3, 1.0], abs=1e-12)


def test_an_iou_exactly_on_a_threshold_matches() -> None:
    """Mutation killed: `iou > threshold` for pycocotools' `>=` (these IoUs are exactly 0.5 and 0.75)."""
    gts = [gt([[0.0, 0.0, 10.0, 10.0]], [0]), gt([[0.0, 0.0, 100.0, 100.0]], [0])]
    dets = [det([[0.0, 0.0, 10.0, 5.0]], [0.9], [0]), det([[0.0, 0.0, 100.0, 75.0]], [0.8], [0])]
    ours = like_pycocotools(dets, gts, 1)
    assert ours.recall[[0, 5], 0, 0, -1].tolist() == [1.0, 0.5]  # at IoU 0.5 both match, at 0.75 one


def test_equal_overlaps_go_to_the_last_object() -> None:
    """Mutation killed: the first of equally overlapping objects taken (argmax) instead of the
    last (pycocotools replaces its match on `>=`): the second detection then finds its object taken."""
    gts = [gt([[0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0]], [0, 0])]
    dets = [det([[2.5, 0.0, 12.5, 10.0], [0.0, 0.0, 10.0, 10.0]], [0.9, 0.8], [0, 0])]  # IoU 0.6 with both; 1.0
    ours = like_pycocotools(dets, gts, 1)
    assert float(ours.stats[AP50]) == pytest.approx(1.0, abs=1e-12)


def test_crowded_groups_with_ties_and_crowd_regions() -> None:
    """Many detections compete for a few objects of one image and class, some of them crowd
    regions, with tied scores and integer boxes (tied IoUs). Mutations killed: the matching
    rounds not in score order within a group; objects taken in one round not kept for the next."""
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        dets, gts = random_data(seed + 60, n_img=12, num_classes=2, difficult_p=0.3, integer=True)
        crowded = []
        for (boxes, scores, labels), (g_boxes, g_labels, _) in zip(dets, gts, strict=True):
            if g_labels.numel():  # 40 more jittered copies of the image's objects
                src = torch.randint(0, g_labels.numel(), (40,), generator=g)
                extra = (g_boxes[src] + torch.randint(-4, 5, (40, 4), generator=g)).double()
                extra = torch.cat([extra[:, :2], torch.maximum(extra[:, 2:], extra[:, :2] + 1)], 1)
                boxes = torch.cat([boxes, extra])
                scores = torch.cat([scores, torch.randint(1, 6, (40,), generator=g).double() / 5])
                labels = torch.cat([labels, g_labels[src]])
            crowded.append((boxes, scores, labels))
        like_pycocotools(crowded, gts, 2)
