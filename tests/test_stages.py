"""Scores of the lesson's first two stages (detviz.evaluate.stages) on hand-computed cases, and
the ladder's model card (detviz.train.demo_checkpoint) from measured rows."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import box_iou

from detviz.evaluate.stages import largest_object_scores, multilabel_scores, paired_iou
from detviz.train.demo_checkpoint import DEMO, LADDER, merge_results, model_card, stage_metric


def test_paired_iou_is_the_diagonal_of_box_iou() -> None:
    """Kills: IoU of a[i] with b[j] (a shifted pairing), xywh read as xyxy, a union without the
    intersection subtracted."""
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(50, 2, generator=g) * 0.6
    a = torch.cat([xy, xy + torch.rand(50, 2, generator=g) * 0.4 + 0.01], dim=1)
    xy = torch.rand(50, 2, generator=g) * 0.6
    b = torch.cat([xy, xy + torch.rand(50, 2, generator=g) * 0.4 + 0.01], dim=1)
    torch.testing.assert_close(paired_iou(a, b), box_iou(a, b).diagonal())
    assert paired_iou(torch.zeros(1, 4), torch.zeros(1, 4)).tolist() == [0.0]  # empty union: 0, not NaN


def test_largest_object_scores_by_hand() -> None:
    """Three images: right class and exact box; right class, box half as wide (IoU 0.5); wrong
    class, box disjoint (IoU 0). Kills: accuracy over boxes instead of classes, IoU averaged over
    the right ones only, L1 summed over the four coordinates instead of averaged."""
    truth = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.4, 1.0], [0.0, 0.0, 0.2, 0.2]])
    pred = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.2, 1.0], [0.6, 0.6, 0.8, 0.8]])
    s = largest_object_scores(torch.tensor([1, 2, 0]), pred, torch.tensor([1, 2, 3]), truth)
    assert s.count == 3
    assert s.accuracy == pytest.approx(2 / 3)
    assert s.iou.tolist() == pytest.approx([1.0, 0.5, 0.0])
    assert s.mean_iou == pytest.approx(0.5)
    assert s.l1 == pytest.approx((0.0 + 0.2 / 4 + 0.6) / 3)  # third: |0.6|+|0.6|+|0.6|+|0.6| over 4
    assert s.correct.tolist() == [True, True, False]


def test_largest_object_scores_refuse_mismatched_shapes_and_score_nothing_as_zero() -> None:
    with pytest.raises(ValueError, match=r"\(N, 4\) boxes"):
        largest_object_scores(torch.tensor([0, 1]), torch.zeros(2, 4), torch.tensor([0, 1]), torch.zeros(3, 4))
    empty = largest_object_scores(
        torch.zeros(0, dtype=torch.long), torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, 4)
    )
    assert (empty.count, empty.accuracy, empty.mean_iou) == (0, 0.0, 0.0)


def test_multilabel_scores_by_hand() -> None:
    """2 images x 3 classes at threshold 0.5:
        image 0 truth 1 0 1, probabilities 0.9 0.6 0.4 -> TP, FP, FN
        image 1 truth 0 1 0, probabilities 0.5 0.8 0.1 -> FP (0.5 >= 0.5), TP, TN
    TP 2, FP 2, FN 1: precision 1/2, recall 2/3, F1 = 4 / (4 + 3) = 4/7; accuracy 3/6.
    Kills: `>` for `>=` at the threshold, macro for micro averaging, F1 as the mean of P and R."""
    probabilities = torch.tensor([[0.9, 0.6, 0.4], [0.5, 0.8, 0.1]])
    targets = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    s = multilabel_scores(probabilities, targets, 0.5)
    assert (s.tp, s.fp, s.fn) == (2, 2, 1)
    assert (s.precision, s.recall, s.f1) == pytest.approx((1 / 2, 2 / 3, 4 / 7))
    assert s.accuracy == pytest.approx(3 / 6)
    # per class: class 0 TP1 FP1 -> 2/3; class 1 TP1 FP1 -> 2/3; class 2 FN1 -> 0
    assert s.per_class_f1.tolist() == pytest.approx([2 / 3, 2 / 3, 0.0])
    assert multilabel_scores(probabilities, targets, 0.95).f1 == 0.0  # nothing predicted: 0, not a ZeroDivisionError


def test_multilabel_scores_refuse_bad_input() -> None:
    with pytest.raises(ValueError, match="same shape"):
        multilabel_scores(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="threshold"):
        multilabel_scores(torch.zeros(2, 3), torch.zeros(2, 3), 1.5)


def _row(file: str, **numbers) -> dict:
    base = {"file": file, "stage": (DEMO | LADDER)[file][0], "kind": "ssd", "loss": "bce", "minutes": 2.0}
    return base | {"ms_per_image": 12.0, "megabytes": 3.0, "threads": 2} | numbers


def test_the_model_card_lists_every_stage_in_its_own_terms(tmp_path) -> None:
    """Kills: a retrained file appended twice instead of replacing its row, the ladder's rows in the
    wrong table, a stage shown with another stage's metric."""
    from detviz.data import make_demo_dataset

    data = make_demo_dataset(tmp_path / "d", n_train=2, n_val=2, seed=1, workers=1)
    old = [_row("demo_focal.pt", map_all=0.9, map_07=0.85), _row("lesson_4x4_bce.pt", map_all=0.1, map_07=0.1)]
    new = [
        _row("lesson_4x4_bce.pt", map_all=0.31, map_07=0.3),
        _row("lesson_largest.pt", kind="largest", accuracy=0.9, mean_iou=0.7, l1=0.05),
        _row("lesson_multilabel.pt", kind="multilabel", precision=0.95, recall=0.93, f1=0.94, accuracy=0.97),
    ]
    rows = merge_results(old, new)
    assert [r["file"] for r in rows] == [
        "demo_focal.pt",
        "lesson_largest.pt",
        "lesson_multilabel.pt",
        "lesson_4x4_bce.pt",
    ]
    assert rows[-1]["map_all"] == 0.31
    card = model_card(rows, data)
    ladder, demo = card.split("## SSD300 pair")
    assert "`lesson_largest.pt`" in ladder and "accuracy 0.900, mean box IoU 0.700" in ladder
    assert "micro F1 0.940" in ladder and "mAP@0.5 0.310" in ladder and "mAP@0.5 0.100" not in card
    assert "`demo_focal.pt`" in demo and "`lesson_" not in demo
    assert stage_metric(rows[0]).startswith("mAP@0.5 0.900")
