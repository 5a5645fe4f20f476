"""The built-in demo dataset: deterministic, VOC layout, and as varied as the issue asks."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torchvision.ops import box_iou

from detviz.data import DEMO_CLASS_NAMES, DataError, make_demo_dataset, read_voc
from detviz.data.demo import main as demo_main
from detviz.data.demo import read_demo_settings
from detviz.data.stats import summarize


def _annotation_bytes(root: Path) -> dict[str, bytes]:
    files = sorted((root / "Annotations").glob("*.xml")) + sorted(root.glob("*.json")) + sorted(root.glob("*.txt"))
    files += sorted((root / "ImageSets" / "Main").glob("*.txt"))
    return {str(p.relative_to(root)): p.read_bytes() for p in files}


def test_same_seed_gives_byte_identical_annotations_whatever_the_worker_count(tmp_path: Path) -> None:
    a = make_demo_dataset(tmp_path / "a", n_train=40, n_val=8, seed=3, workers=1)
    b = make_demo_dataset(tmp_path / "b", n_train=40, n_val=8, seed=3, workers=2)
    c = make_demo_dataset(tmp_path / "c", n_train=40, n_val=8, seed=4, workers=1)
    assert _annotation_bytes(a) == _annotation_bytes(b)
    assert _annotation_bytes(a) != _annotation_bytes(c)
    assert len(_annotation_bytes(a)) == 48 + 2 + 1 + 1 + 2  # xml + coco json x2 + demo.json + classes + splits


def test_layout_and_splits(demo_root: Path) -> None:
    assert (demo_root / "classes.txt").read_text().split() == list(DEMO_CLASS_NAMES)
    train, val = read_voc(demo_root, "train"), read_voc(demo_root, "val")
    assert (len(train), len(val)) == (24, 8)
    assert not set(train.image_ids) & set(val.image_ids)
    assert all(p.is_file() and p.suffix == ".jpg" for p in train.image_paths)
    assert train.problems == [] and train.warnings == []
    settings = read_demo_settings(demo_root)
    assert settings is not None and (settings.n_train, settings.n_val, settings.seed) == (24, 8, 0)


@pytest.fixture(scope="module")
def demo_stats(tmp_path_factory: pytest.TempPathFactory):
    root = make_demo_dataset(tmp_path_factory.mktemp("demo150") / "d", n_train=150, n_val=0, seed=11)
    index = read_voc(root, "train")
    return index, summarize(index)


def test_spread_of_classes_counts_sizes_and_shapes(demo_stats) -> None:
    index, s = demo_stats
    assert index.num_classes >= 6 and bool((s.class_counts > 0).all())
    assert int(s.objects_per_image.min()) >= 1 and int(s.objects_per_image.max()) == 8
    assert len(set(s.objects_per_image.tolist())) >= 6
    small = s.relative_size < math.sqrt(0.05)  # under 5% of the image area
    assert 0.2 < float(small.mean()) < 0.8
    assert float(s.relative_size.max()) > 0.4
    assert int((s.aspect_ratio < 0.4).sum()) >= 20  # tall (pole)
    assert int((s.aspect_ratio > 2.5).sum()) >= 20  # wide (plank)
    widths, heights = index.widths, index.heights
    assert int(widths.min()) >= 224 and int(heights.max()) <= 320 and bool((widths != heights).any())


def test_overlaps_occlusion_difficult_and_truncated_objects_occur(demo_stats) -> None:
    index, s = demo_stats
    overlapping = sum(int((box_iou(r.boxes, r.boxes).triu(diagonal=1) > 0).any()) for r in index if r.num_objects > 1)
    assert overlapping >= 30
    assert 0 < s.num_difficult < 0.2 * s.num_objects
    assert 0 < s.num_truncated < 0.2 * s.num_objects
    # a truncated object touches the image border
    img = index.object_image()[index.truncated]
    b = index.boxes[index.truncated]
    w, h = index.widths[img].float(), index.heights[img].float()
    touches = (b[:, 0] == 0) | (b[:, 1] == 0) | (b[:, 2] == w) | (b[:, 3] == h)
    assert bool(touches.all())


def test_boxes_are_the_visible_extent_inside_the_image(demo_stats) -> None:
    index, _ = demo_stats
    img = index.object_image()
    b = index.boxes
    assert bool((b[:, 0] >= 0).all() and (b[:, 1] >= 0).all())
    assert bool((b[:, 2] <= index.widths[img]).all() and (b[:, 3] <= index.heights[img]).all())
    assert bool((b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all())
    assert torch.equal(b, b.round())  # integer pixel edges


def test_existing_demo_with_same_settings_is_reused(demo_root: Path) -> None:
    stamp = (demo_root / "demo.json").stat().st_mtime_ns
    assert make_demo_dataset(demo_root, n_train=24, n_val=8, seed=0) == demo_root
    assert (demo_root / "demo.json").stat().st_mtime_ns == stamp


def test_refuses_a_folder_that_is_not_a_demo_dataset(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(DataError, match=r"mine: folder is not empty and is not a demo dataset"):
        make_demo_dataset(tmp_path / "mine", n_train=2, n_val=1)
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"


def test_other_settings_need_overwrite(tmp_path: Path) -> None:
    root = make_demo_dataset(tmp_path / "d", n_train=3, n_val=1)
    with pytest.raises(DataError, match=r"made with other settings.*pass overwrite"):
        make_demo_dataset(root, n_train=4, n_val=1)
    make_demo_dataset(root, n_train=4, n_val=1, overwrite=True)
    assert len(read_voc(root, "train")) == 4
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_bad_counts_and_sizes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"n_train \(0\) and n_val \(0\)"):
        make_demo_dataset(tmp_path / "d", n_train=0, n_val=0)
    with pytest.raises(ValueError, match=r"min_size \(300\) <= max_size \(200\)"):
        make_demo_dataset(tmp_path / "d", n_train=1, n_val=1, min_size=300, max_size=200)


def test_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert demo_main(["--out", str(tmp_path / "cli"), "--train", "3", "--val", "2", "--workers", "1"]) == 0
    assert "demo dataset ready" in capsys.readouterr().out
    assert len(read_voc(tmp_path / "cli", "val")) == 2
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("x")
    assert demo_main(["--out", str(tmp_path / "busy"), "--train", "1", "--val", "1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "not a demo dataset" in err[0]
