"""Dataset coverage by a set of anchors: equal to a brute-force box_iou, grouped right."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchvision.ops import box_iou

import detviz.coverage as coverage_module
from detviz.anchors import PRESETS, make_anchors
from detviz.coverage import SIZE_NAMES, anchor_coverage, coverage_by_class, coverage_by_size, worst_covered
from detviz.data import read_voc
from detviz.data.records import DatasetIndex


@pytest.fixture(scope="module")
def index(demo_root: Path) -> DatasetIndex:
    return read_voc(demo_root, "train")


def _brute_force(index: DatasetIndex, anchors) -> tuple[torch.Tensor, torch.Tensor]:
    best_iou, best_anchor = [], []
    for i in range(len(index)):
        record = index[i]
        scale = torch.tensor([record.width, record.height] * 2, dtype=torch.float32)
        iou = box_iou(record.boxes / scale, anchors.boxes)
        if iou.shape[0]:
            values, which = iou.max(1)
            best_iou.append(values)
            best_anchor.append(which)
    return torch.cat(best_iou), torch.cat(best_anchor)


@pytest.mark.parametrize("preset", list(PRESETS))
def test_best_iou_equals_box_iou_per_image(index: DatasetIndex, preset: str) -> None:
    anchors = make_anchors(PRESETS[preset])
    coverage = anchor_coverage(index, anchors)
    expected_iou, expected_anchor = _brute_force(index, anchors)
    torch.testing.assert_close(coverage.best_iou, expected_iou, atol=1e-6, rtol=0)
    ties = coverage.best_anchor != expected_anchor  # equal IoUs may pick another anchor
    torch.testing.assert_close(coverage.best_iou[ties], expected_iou[ties], atol=1e-6, rtol=0)
    assert coverage.num_anchors == len(anchors) and coverage.labels.shape == coverage.best_iou.shape


def test_blocks_give_the_same_result(index: DatasetIndex, monkeypatch: pytest.MonkeyPatch) -> None:
    whole = anchor_coverage(index, PRESETS["ssd300"])
    monkeypatch.setattr(coverage_module, "ROWS_PER_BLOCK", 7)
    blocked = anchor_coverage(index, PRESETS["ssd300"])
    assert torch.equal(whole.best_iou, blocked.best_iou) and torch.equal(whole.best_anchor, blocked.best_anchor)


def test_more_anchors_cover_better(index: DatasetIndex) -> None:
    coarse = anchor_coverage(index, PRESETS["lesson_4x4"])
    fine = anchor_coverage(index, PRESETS["ssd300"])
    assert fine.share_below(0.5) < coarse.share_below(0.5)
    assert float(fine.best_iou.mean()) > float(coarse.best_iou.mean())


def test_groups_add_up(index: DatasetIndex) -> None:
    coverage = anchor_coverage(index, PRESETS["lesson_multiscale"])
    by_class = coverage_by_class(coverage, index.classes, 0.5)
    assert by_class[0].group == "all objects" and by_class[0].objects == len(coverage.best_iou)
    assert sum(r.objects for r in by_class[1:]) == by_class[0].objects
    assert sum(r.below for r in by_class[1:]) == by_class[0].below
    assert by_class[0].share_below == pytest.approx(coverage.share_below(0.5))
    by_size = coverage_by_size(coverage, 0.5)
    assert [r.group for r in by_size] == list(SIZE_NAMES)
    assert sum(r.objects for r in by_size) == len(coverage.best_iou)
    assert sum(r.below for r in by_size) == by_class[0].below


def test_worst_covered_are_sorted_and_share_below_counts_ties(index: DatasetIndex) -> None:
    coverage = anchor_coverage(index, PRESETS["lesson_4x4"])
    worst = worst_covered(coverage, 5)
    assert worst.shape == (5,)
    values = coverage.best_iou[worst]
    assert torch.all(values[:-1] <= values[1:]) and float(values[-1]) <= float(coverage.best_iou.kthvalue(6).values)
    threshold = float(coverage.best_iou[worst[2]])
    assert coverage.share_below(threshold) == pytest.approx(float((coverage.best_iou <= threshold).float().mean()))


def test_a_dataset_without_objects(tmp_path: Path) -> None:
    from conftest import make_voc, voc_xml

    root = make_voc(tmp_path / "voc", {"a": voc_xml("a.jpg", 64, 48, [])})
    coverage = anchor_coverage(read_voc(root, "train", strict=False), PRESETS["ssd300"])
    assert coverage.best_iou.numel() == 0 and coverage.share_below(0.5) == 0.0
    assert all(r.objects == 0 and r.share_below == 0.0 for r in coverage_by_size(coverage, 0.5))
