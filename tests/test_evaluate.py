"""Evaluation: VOC = the devkit, COCO = pycocotools, hand-made cases, properties, breakdown, sweeps."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.reference_coco import coco_json, prepared_eval, run_eval
from benchmarks.reference_voc import voc_eval_devkit
from detviz.anchors import PRESETS, make_anchors
from detviz.boxes import activations_to_boxes
from detviz.codes import NO_ERROR, ErrorKind, Outcome
from detviz.evaluate import (
    ThresholdSweep,
    class_confusion,
    coco_eval,
    coco_eval_flat,
    coco_map,
    error_breakdown,
    error_breakdown_flat,
    flatten,
    image_error_counts,
    metric_audit,
    scale_flat,
    voc_map,
    voc_map_flat,
    worst_images,
)
from detviz.postprocess import postprocess


def random_data(seed: int, n_img: int = 30, num_classes: int = 4, difficult_p: float = 0.0, integer: bool = False):
    """Objects, and detections that are mostly jittered copies of them (some with wrong classes)."""
    g = torch.Generator().manual_seed(seed)
    dets, gts = [], []
    for _ in range(n_img):
        m = int(torch.randint(0, 6, (1,), generator=g))
        xy = torch.rand(m, 2, generator=g, dtype=torch.float64) * 300
        gb = torch.cat([xy, xy + torch.rand(m, 2, generator=g, dtype=torch.float64) * 150 + 2], 1)
        gl = torch.randint(0, num_classes, (m,), generator=g)
        gd = torch.rand(m, generator=g) < difficult_p
        n = int(torch.randint(0, 12, (1,), generator=g))
        if m:
            src = torch.randint(0, m, (n,), generator=g)
            db = gb[src] + torch.randn(n, 4, generator=g, dtype=torch.float64) * 15
            keep_label = torch.rand(n, generator=g) < 0.8
            dl = torch.where(keep_label, gl[src], torch.randint(0, num_classes, (n,), generator=g))
        else:
            db = torch.rand(n, 4, generator=g, dtype=torch.float64) * 300
            dl = torch.randint(0, num_classes, (n,), generator=g)
        db = torch.cat([torch.minimum(db[:, :2], db[:, 2:]), torch.maximum(db[:, :2], db[:, 2:]) + 1], 1)
        if integer:
            db, gb = db.round(), gb.round()
        dets.append((db, torch.rand(n, generator=g, dtype=torch.float64), dl))
        gts.append((gb, gl, gd))
    return dets, gts


def pycocotools_stats(dets, gts, num_classes: int) -> torch.Tensor:
    return torch.tensor(run_eval(prepared_eval(*coco_json(dets, gts, num_classes))).stats)


# --- against the references ----------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("method", ["11point", "all"])
@pytest.mark.parametrize("use_difficult", [False, True])
def test_voc_equals_the_devkit(seed: int, method: str, use_difficult: bool) -> None:
    dets, gts = random_data(seed, difficult_p=0.2, integer=True)
    ours = voc_map(dets, gts, 4, method=method, use_difficult=use_difficult)
    ref = voc_eval_devkit(dets, gts, 4, use_07_metric=method == "11point", use_difficult=use_difficult)
    np.testing.assert_allclose(ours.ap.numpy(), ref, atol=1e-12, rtol=0)
    assert ours.map == pytest.approx(float(np.nanmean(ref)), abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_coco_equals_pycocotools(seed: int) -> None:
    dets, gts = random_data(seed)
    torch.testing.assert_close(coco_map(dets, gts, 4), pycocotools_stats(dets, gts, 4), atol=1e-6, rtol=0)


@pytest.mark.parametrize("seed", range(3))
def test_coco_with_crowd_regions_equals_pycocotools(seed: int) -> None:
    dets, gts = random_data(seed + 10, difficult_p=0.25)  # difficult objects go to pycocotools as iscrowd
    torch.testing.assert_close(coco_map(dets, gts, 4), pycocotools_stats(dets, gts, 4), atol=1e-6, rtol=0)


def test_coco_on_many_small_and_large_objects() -> None:
    dets, gts = random_data(99, n_img=80, num_classes=3)
    ours = coco_eval(dets, gts, 3)
    torch.testing.assert_close(ours.stats, pycocotools_stats(dets, gts, 3), atol=1e-6, rtol=0)
    assert ours.precision.shape == (10, 101, 3, 4, 3) and ours.recall.shape == (10, 3, 4, 3)


# --- hand-made cases -------------------------------------------------------------------------

BOX = torch.tensor([[10.0, 10.0, 50.0, 50.0]])
OTHER = torch.tensor([[100.0, 100.0, 140.0, 160.0]])


def det(boxes, scores, labels):
    return (
        torch.as_tensor(boxes, dtype=torch.float64).reshape(-1, 4),
        torch.as_tensor(scores, dtype=torch.float64),
        torch.as_tensor(labels),
    )


def gt(boxes, labels, difficult=None):
    boxes = torch.as_tensor(boxes, dtype=torch.float64).reshape(-1, 4)
    difficult = torch.zeros(boxes.shape[0], dtype=torch.bool) if difficult is None else torch.tensor(difficult)
    return (boxes, torch.as_tensor(labels), difficult)


def test_perfect_detections_score_1() -> None:
    gts = [gt(torch.cat([BOX, OTHER]), [0, 1]), gt(BOX, [1])]
    dets = [det(torch.cat([BOX, OTHER]), [0.9, 0.8], [0, 1]), det(BOX, [0.7], [1])]
    for method in ("11point", "all"):
        r = voc_map(dets, gts, 2, method=method)
        assert r.ap.tolist() == pytest.approx([1.0, 1.0], abs=1e-12) and r.map == pytest.approx(1.0, abs=1e-12)
    assert coco_map(dets, gts, 2)[[0, 1, 2]].tolist() == [1.0, 1.0, 1.0]


def test_no_detections_score_0() -> None:
    r = voc_map([det([], [], [])], [gt(BOX, [0])], 2)
    assert r.ap[0].item() == 0.0 and math.isnan(r.ap[1].item()) and r.map == 0.0


def test_a_class_without_ground_truth_is_nan_and_left_out_of_the_mean() -> None:
    dets = [det(torch.cat([BOX, OTHER]), [0.9, 0.8], [0, 2])]
    r = voc_map(dets, [gt(BOX, [0])], 3)
    assert r.ap[0].item() == pytest.approx(1.0) and math.isnan(r.ap[1].item()) and math.isnan(r.ap[2].item())
    assert r.map == pytest.approx(1.0) and r.num_fp.tolist() == [0, 0, 1]


def test_one_duplicate() -> None:
    r = voc_map([det(torch.cat([BOX, BOX + 1]), [0.9, 0.8], [0, 0])], [gt(BOX, [0])], 1, method="all")
    assert r.status[0].tolist() == [Outcome.TP, Outcome.DUPLICATE]
    assert r.ap[0].item() == 1.0  # the duplicate comes after full recall
    r = voc_map([det(torch.cat([BOX + 1, BOX]), [0.9, 0.8], [0, 0])], [gt(BOX, [0])], 1, method="all")
    # the better-scoring one takes the object, even if worse placed
    assert r.status[0].tolist() == [Outcome.TP, Outcome.DUPLICATE]


def test_the_voc_rule_gives_the_best_overlapping_object_even_if_taken() -> None:
    """Two objects side by side; the second detection overlaps object A most, which is already
    taken, so it is a false positive although it also overlaps object B above 0.5 (COCO would
    give it B)."""
    a = torch.tensor([[0.0, 0.0, 100.0, 100.0]])
    b = torch.tensor([[20.0, 0.0, 120.0, 100.0]])
    d1 = torch.tensor([[0.0, 0.0, 100.0, 100.0]])
    d2 = torch.tensor([[10.0, 0.0, 110.0, 100.0]])  # IoU with A 0.818, with B 0.818 as well: ties to A
    r = voc_map([det(torch.cat([d1, d2]), [0.9, 0.8], [0, 0])], [gt(torch.cat([a, b]), [0, 0])], 1, method="all")
    assert r.status[0].tolist() == [Outcome.TP, Outcome.DUPLICATE] and r.ap[0].item() == 0.5
    stats = coco_map([det(torch.cat([d1, d2]), [0.9, 0.8], [0, 0])], [gt(torch.cat([a, b]), [0, 0])], 1)
    assert stats[1].item() == 1.0  # COCO matches d2 to the free object B


def test_difficult_objects_neither_count_nor_punish() -> None:
    gts = [gt(torch.cat([BOX, OTHER]), [0, 0], [False, True])]
    hit = voc_map([det(torch.cat([BOX, OTHER]), [0.9, 0.8], [0, 0])], gts, 1)
    assert hit.status[0].tolist() == [Outcome.TP, Outcome.IGNORED] and hit.ap[0].item() == pytest.approx(1.0)
    assert hit.num_gt[0].item() == 1
    missed = voc_map([det(BOX, [0.9], [0])], gts, 1)
    assert missed.ap[0].item() == pytest.approx(1.0)  # missing the difficult one costs nothing
    counted = voc_map([det(BOX, [0.9], [0])], gts, 1, use_difficult=True, method="all")
    assert counted.ap[0].item() == 0.5 and counted.num_gt[0].item() == 2


def test_image_without_objects() -> None:
    r = voc_map([det(BOX, [0.9], [0]), det(BOX, [0.95], [0])], [gt(BOX, [0]), gt([], [])], 1, method="all")
    assert r.status[1].tolist() == [Outcome.FP] and r.status[0].tolist() == [Outcome.TP]
    assert r.ap[0].item() == 0.5  # the false positive scores higher: precision 1/2 at full recall
    assert r.found[1].shape == (0,) and r.found[0].tolist() == [True]


def test_all_equal_scores_keep_the_input_order() -> None:
    boxes = torch.cat([OTHER, BOX, BOX + 2])
    r = voc_map([det(boxes, [0.5, 0.5, 0.5], [0, 0, 0])], [gt(BOX, [0])], 1, method="all")
    # order FP, TP, DUP: precision 1/2 at recall 1
    assert r.status[0].tolist() == [Outcome.FP, Outcome.TP, Outcome.DUPLICATE]
    assert r.ap[0].item() == 0.5
    ref = voc_eval_devkit([det(boxes, [0.5, 0.5, 0.5], [0, 0, 0])], [gt(BOX, [0])], 1, use_07_metric=False)
    assert ref[0] == 0.5


def test_11_point_and_all_point_differ_as_computed_by_hand() -> None:
    """One class, 4 objects; detections in score order: TP, FP, TP, TP.
    Precision 1, 1/2, 2/3, 3/4 at recall 1/4, 1/4, 1/2, 3/4.
    All-point: 0.25 x 1 + 0.25 x 0.75 + 0.25 x 0.75 = 0.625.
    11-point: recall >= 0, 0.1, 0.2 -> 1; 0.3 .. 0.7 -> 0.75; 0.8 .. 1.0 -> 0: (3 + 5 x 0.75) / 11."""
    objects = torch.tensor([[0.0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10], [60, 0, 70, 10]])
    boxes = torch.tensor([[0.0, 0, 10, 10], [100, 0, 110, 10], [20, 0, 30, 10], [40, 0, 50, 10]])
    d = [det(boxes, [0.9, 0.8, 0.7, 0.6], [0, 0, 0, 0])]
    g = [gt(objects, [0, 0, 0, 0])]
    assert voc_map(d, g, 1, method="all").ap[0].item() == pytest.approx(0.625, abs=1e-12)
    assert voc_map(d, g, 1, method="11point").ap[0].item() == pytest.approx(6.75 / 11, abs=1e-12)
    curve = voc_map(d, g, 1).curves[0]
    torch.testing.assert_close(curve.precision, torch.tensor([1, 1 / 2, 2 / 3, 3 / 4], dtype=torch.float64))
    torch.testing.assert_close(curve.recall, torch.tensor([1 / 4, 1 / 4, 1 / 2, 3 / 4], dtype=torch.float64))


def test_devkit_plus_one_iou_equals_plain_iou_on_design_boxes() -> None:
    """VOC box (1, 1, 10, 10) is 10 px wide; DESIGN gives (0, 0, 10, 10): widths agree."""
    d = [det([[0.0, 0.0, 10.0, 10.0]], [0.9], [0])]
    g = [gt([[5.0, 0.0, 15.0, 10.0]], [0])]  # plain IoU 50/150 = 1/3
    assert voc_map(d, g, 1, iou_threshold=0.33).ap[0].item() == pytest.approx(1.0)
    assert voc_map(d, g, 1, iou_threshold=0.34).ap[0].item() == 0.0
    assert voc_eval_devkit(d, g, 1, ovthresh=0.33)[0] == pytest.approx(1.0)
    assert voc_eval_devkit(d, g, 1, ovthresh=0.34)[0] == 0.0


# --- properties ----------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from(["11point", "all"]))
def test_ap_is_a_probability_and_ignores_image_order(seed: int, method: str) -> None:
    dets, gts = random_data(seed, n_img=12)
    r = voc_map(dets, gts, 4, method=method)
    valid = r.ap[~torch.isnan(r.ap)]
    assert bool(((valid >= 0) & (valid <= 1)).all())
    perm = torch.randperm(12, generator=torch.Generator().manual_seed(seed)).tolist()
    shuffled = voc_map([dets[i] for i in perm], [gts[i] for i in perm], 4, method=method)
    torch.testing.assert_close(shuffled.ap, r.ap, equal_nan=True)  # continuous scores: no ties to reorder


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_a_detection_below_every_score_does_not_change_the_curve_before_it(seed: int) -> None:
    dets, gts = random_data(seed, n_img=10)
    before = voc_map(dets, gts, 4, method="all")
    low = min((float(d[1].min()) for d in dets if d[1].numel()), default=1.0) / 2
    extra = det(torch.tensor([[0.0, 0, 30, 30]]), [low], [int(torch.randint(0, 4, (1,)))])
    dets2 = [
        *dets[:-1],
        (torch.cat([dets[-1][0], extra[0]]), torch.cat([dets[-1][1], extra[1]]), torch.cat([dets[-1][2], extra[2]])),
    ]
    after = voc_map(dets2, gts, 4, method="all")
    for c in range(4):
        k = before.curves[c].precision.numel()
        torch.testing.assert_close(after.curves[c].precision[:k], before.curves[c].precision, equal_nan=True)
        assert bool((after.ap[c] <= before.ap[c] + 1e-12) | torch.isnan(before.ap[c]))


# --- error breakdown ----------------------------------------------------------------------


def test_error_breakdown_names_each_mistake() -> None:
    a = [0.0, 0.0, 40.0, 40.0]  # objects of class 0: a and d
    d_ = [0.0, 200.0, 40.0, 240.0]
    b = [100.0, 100.0, 140.0, 140.0]  # objects of class 1: b, and c that nobody finds
    c = [200.0, 0.0, 240.0, 40.0]
    boxes = [
        a,  # 0.9 class 0: true positive
        [1.0, 1.0, 41.0, 41.0],  # 0.8 class 0: duplicate
        [101.0, 100.0, 141.0, 140.0],  # 0.7 class 0 on the class-1 object: classification
        [20.0, 0.0, 60.0, 40.0],  # 0.6 class 0, IoU 1/3 with a: localisation
        [120.0, 120.0, 160.0, 160.0],  # 0.5 class 0, IoU 1/7 with b: both
        [300.0, 300.0, 340.0, 340.0],  # 0.4 class 1 on nothing: background
        d_,  # 0.3 class 0: true positive, found after all those mistakes
    ]
    d = [det(boxes, [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3], [0, 0, 0, 0, 0, 1, 0])]
    g = [gt([a, b, c, d_], [0, 1, 1, 0])]
    eb = error_breakdown(d, g, 2)
    assert eb.error[0].tolist() == [
        NO_ERROR,
        ErrorKind.DUPE,
        ErrorKind.CLS,
        ErrorKind.LOC,
        ErrorKind.BOTH,
        ErrorKind.BKG,
        NO_ERROR,
    ]
    assert eb.missed[0].tolist() == [False, True, True, False]
    assert eb.counts[0].tolist() == [1, 1, 1, 1, 0, 0] and eb.counts[1].tolist() == [0, 0, 0, 0, 1, 2]
    # class 0: precision 1 at recall 1/2, then 2/6 at recall 1 -> AP 2/3; class 1: AP 0
    assert eb.base.ap.tolist() == pytest.approx([2 / 3, 0.0])
    for kind in ("classification", "localisation", "both", "duplicate", "missed"):
        assert eb.delta_map[kind] > 0, kind
    # removing each class-0 mistake lifts class 0 to 2/5 at recall 1: AP 0.5 + 0.5 x 2/5
    assert eb.delta_map["duplicate"] == pytest.approx((0.7 - 2 / 3) / 2)
    assert eb.delta_map["background"] == 0.0  # class 1 finds nothing either way
    assert eb.delta_map["missed"] == pytest.approx(2 / 3 - 1 / 3)  # class 1 drops out of the mean


def test_error_breakdown_without_errors() -> None:
    eb = error_breakdown([det(BOX, [0.9], [0])], [gt(BOX, [0])], 1)
    assert eb.error[0].tolist() == [NO_ERROR] and int(eb.counts.sum()) == 0
    assert all(v == 0.0 for v in eb.delta_map.values())


# --- threshold sweeps ---------------------------------------------------------------------


def _sweep_setup(seed: int = 0, n: int = 40):
    """Outputs of a make-believe model over n images: each image's 3 objects are exactly the
    boxes 3 anchors predict, with confidences from sure to unsure; the rest is noise."""
    anchors = make_anchors(PRESETS["lesson_multiscale"])
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, len(anchors), 5, generator=g) * 2 - 3
    acts = torch.randn(n, len(anchors), 4, generator=g) * 0.3
    gts = []
    for i in range(n):
        pick = torch.randperm(len(anchors), generator=g)[:3]
        labels = torch.randint(0, 4, (3,), generator=g)
        logits[i, pick, labels] = torch.rand(3, generator=g) * 6 - 3
        gts.append((activations_to_boxes(acts[i], anchors)[pick], labels, torch.zeros(3, dtype=torch.bool)))
    return anchors, logits, acts, gts


def test_sweep_equals_postprocess_then_voc_map() -> None:
    anchors, logits, acts, gts = _sweep_setup()
    sweep = ThresholdSweep.from_outputs(logits, acts, anchors, gts, batch_size=16)
    for thr, nms, max_det in ((0.01, 0.45, 100), (0.3, 0.45, 20), (0.05, 0.3, 5), (0.2, 0.3, 100), (0.01, 0.45, 3)):
        direct = postprocess(logits, acts, anchors, thr, nms, max_det)
        expected = voc_map(direct, gts, 4)
        got = sweep.evaluate(thr, nms, max_det)
        torch.testing.assert_close(got.ap, expected.ap, equal_nan=True)
    surface = sweep.surface([0.01, 0.1, 0.3], [0.3, 0.5])
    assert surface.shape == (3, 2)


def test_a_high_score_threshold_silently_lowers_map() -> None:
    anchors, logits, acts, gts = _sweep_setup(1)
    sweep = ThresholdSweep.from_outputs(logits, acts, anchors, gts)
    assert sweep.evaluate(0.3).map < sweep.evaluate(0.01).map


# --- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dets", "gts", "kwargs", "message"),
    [
        (
            [det(BOX, [0.9], [0])],
            [gt(BOX, [0]), gt(BOX, [0])],
            {},
            r"detections cover 1 images but ground_truths cover 2",
        ),
        (
            [(torch.zeros(1, 5), torch.ones(1), torch.zeros(1, dtype=torch.int64))],
            [gt(BOX, [0])],
            {},
            r"detections\[0\].boxes must have shape \(N, 4\), got \(1, 5\)",
        ),
        ([det(BOX, [0.9], [3])], [gt(BOX, [0])], {}, r"detections\[0\].labels has label 3; labels must be in 0..1"),
        ([det(BOX, [float("nan")], [0])], [gt(BOX, [0])], {}, r"detections\[0\].scores contains NaN"),
        ([det(BOX, [0.9], [0])], [gt(BOX, [5])], {}, r"ground_truths\[0\].labels has label 5"),
        (
            [det(BOX, [0.9], [0])],
            [gt(BOX, [0])],
            {"method": "voc12"},
            r"method must be one of 11point, all, got 'voc12'",
        ),
        ([det(BOX, [0.9], [0])], [gt(BOX, [0])], {"iou_threshold": 0.0}, r"iou_threshold must be in \(0, 1\], got 0.0"),
        ([det(BOX, [0.9], [0])], [gt(BOX, [0])], {"iou_threshold": 1.5}, r"iou_threshold must be in \(0, 1\], got 1.5"),
    ],
)
def test_bad_input(dets, gts, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        voc_map(dets, gts, 2, **kwargs)


def test_bad_sweep_use() -> None:
    anchors, logits, acts, gts = _sweep_setup(n=4)
    sweep = ThresholdSweep(gts, 4)
    sweep.add_batch(logits[:2], acts[:2], anchors)
    with pytest.raises(ValueError, match=r"outputs cover 2 images but the ground truth 4"):
        sweep.evaluate()
    sweep.add_batch(logits[2:], acts[2:], anchors)
    with pytest.raises(ValueError, match=r"outputs for 6 images but ground truth for 4"):
        sweep.add_batch(logits[:2], acts[:2], anchors)
    with pytest.raises(ValueError, match=r"score_threshold must be in \[0.001, 1\) for this sweep, got 0.0"):
        sweep.evaluate(0.0)


# --- confusion, worst images, audit (the Evaluate page's numbers) ----------------------------


def test_confusion_counts_each_detection_once_and_each_unreached_object_as_missed() -> None:
    a, b, c = [0.0, 0.0, 40.0, 40.0], [100.0, 100.0, 140.0, 140.0], [200.0, 0.0, 240.0, 40.0]
    boxes = [a, [101.0, 100.0, 141.0, 140.0], [300.0, 300.0, 340.0, 340.0], [1.0, 1.0, 41.0, 41.0]]
    # class 0 on a (right), class 0 on b (a class-1 object), class 1 on nothing, class 0 on a again
    flat = flatten([det(boxes, [0.9, 0.8, 0.7, 0.6], [0, 0, 1, 0])], [gt([a, b, c], [0, 1, 1])], 2)
    matrix = class_confusion(flat, 2)
    assert matrix.tolist() == [
        [2, 0, 0],  # true class 0: two detections of class 0 (one a duplicate); nothing missed
        [1, 0, 2],  # true class 1: once called class 0; b and c never reached by a class-1 detection
        [0, 1, 0],  # background: one class-1 detection on nothing
    ]
    assert int(matrix[:, :2].sum()) == 4  # every detection once
    empty = flatten([det(torch.zeros(0, 4), [], [])], [gt(torch.zeros(0, 4), [])], 2)
    assert int(class_confusion(empty, 2).sum()) == 0


def test_worst_images_rank_by_mistakes() -> None:
    good = (det(BOX, [0.9], [0]), gt(BOX, [0]))
    one_miss = (det(torch.zeros(0, 4), [], []), gt(BOX, [0]))
    two_fp = (det([[100.0, 100, 140, 140], [0.0, 0, 10, 10]], [0.9, 0.8], [0, 0]), gt(torch.zeros(0, 4), []))
    faint = (det([[100.0, 100, 140, 140], [0.0, 0, 10, 10]], [0.02, 0.01], [0, 0]), gt(torch.zeros(0, 4), []))
    dets, gts = zip(good, one_miss, two_fp, faint, strict=True)
    eb = error_breakdown(list(dets), list(gts), 1)
    counts = image_error_counts(eb)
    assert counts[0].sum() == 0 and counts[1, ErrorKind.MISS] == 1
    assert counts[2, ErrorKind.BKG] == 2 and counts[3, ErrorKind.BKG] == 2
    scores = [torch.as_tensor(d[1]) for d in dets]
    assert worst_images(eb, scores) == [2, 1, 3]  # 1.7, then a missed object (1), then two faint boxes
    assert worst_images(eb, scores, 1) == [2]


def test_flat_forms_equal_the_list_forms() -> None:
    dets, gts = random_data(3, num_classes=3, difficult_p=0.2)
    flat = flatten(dets, gts, 3)
    a, b = error_breakdown(dets, gts, 3), error_breakdown_flat(flat, 3)
    assert a.delta_map == b.delta_map and torch.equal(a.counts, b.counts)
    torch.testing.assert_close(coco_eval_flat(flat, 3).stats, coco_eval(dets, gts, 3).stats)
    sizes = torch.tensor([[2.0, 4.0]] * len(dets))
    scaled = scale_flat(flat, sizes)
    torch.testing.assert_close(scaled.det_boxes, flat.det_boxes * torch.tensor([2.0, 4.0, 2.0, 4.0]).double())
    assert voc_map_flat(scaled, 3, 0.5, "all", False).map == pytest.approx(voc_map_flat(flat, 3, 0.5, "all", False).map)


def test_metric_audit_rows_are_the_numbers_they_name() -> None:
    anchors, logits, acts, gts = _sweep_setup(1)  # a model whose tail below 0.3 finds objects
    sweep = ThresholdSweep.from_outputs(logits, acts, anchors, gts)
    sizes = torch.tensor([[300.0, 200.0]] * len(gts))
    rows = metric_audit(sweep, sizes)
    assert [(r.protocol, r.score_threshold, r.difficult) for r in rows][:4] == [
        ("VOC07 11-point", 0.01, "ignored"), ("all-point (VOC2010+)", 0.01, "ignored"),
        ("VOC07 11-point", 0.01, "counted"), ("VOC07 11-point", 0.3, "ignored"),
    ]  # fmt: skip
    assert rows[0].value == pytest.approx(sweep.evaluate(0.01, method="11point").map)
    assert rows[1].value == pytest.approx(sweep.evaluate(0.01, method="all").map)
    assert rows[3].value < rows[0].value  # the cut tail
    pixel = scale_flat(sweep.detections(0.01, 0.45, 100), sizes)
    stats = coco_eval_flat(pixel, 4).stats
    assert rows[5].value == pytest.approx(float(stats[1])) and rows[6].value == pytest.approx(float(stats[0]))
    assert rows[6].value <= rows[5].value  # strict IoUs only lower AP
    assert all(r.why.endswith(".") and len(r.why) > 20 for r in rows)
