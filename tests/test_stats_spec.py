"""Dataset statistics, image filters, dataset specs and the data-root guard."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT, make_voc, voc_xml

from detviz.data import DataError, read_voc
from detviz.data.records import Annotation, DatasetIndex
from detviz.data.spec import (
    DatasetSpec,
    check_within_roots,
    dataset_fingerprint,
    dataset_splits,
    open_dataset,
    parse_dataset_spec,
)
from detviz.data.stats import filter_images, summarize


def _index() -> DatasetIndex:
    """Three 100x100 images: two objects (one difficult), none, one large."""
    a = Annotation(
        "a", Path("a.jpg"), 100, 100, [(0, 0, 10, 10), (0, 0, 50, 25)], [0, 1], [False, True], [False, False]
    )
    b = Annotation("b", Path("b.jpg"), 100, 100, [], [], [], [])
    c = Annotation("c", Path("c.jpg"), 100, 100, [(10, 10, 90, 90)], [1], [False], [True])
    return DatasetIndex.from_annotations(["cat", "dog"], [a, b, c])


def test_summary_counts_and_measures() -> None:
    s = summarize(_index())
    assert (s.num_images, s.num_objects, s.num_difficult, s.num_truncated, s.images_without_objects) == (3, 3, 1, 1, 1)
    assert s.class_counts.tolist() == [1, 2] and s.class_difficult.tolist() == [0, 1]
    assert s.objects_per_image.tolist() == [2, 0, 1]
    torch.testing.assert_close(torch.from_numpy(s.relative_size), torch.tensor([0.1, (1250 / 10000) ** 0.5, 0.8]))
    torch.testing.assert_close(torch.from_numpy(s.aspect_ratio), torch.tensor([1.0, 2.0, 1.0]))


def test_summary_of_an_index_without_objects() -> None:
    empty = DatasetIndex.from_annotations(["cat"], [Annotation("b", Path("b.jpg"), 9, 9, [], [], [], [])])
    s = summarize(empty)
    assert s.num_objects == 0 and s.class_counts.tolist() == [0] and s.relative_size.shape == (0,)


def test_filters() -> None:
    index = _index()
    assert filter_images(index).tolist() == [0, 1, 2]
    assert filter_images(index, classes=[0]).tolist() == [0]
    assert filter_images(index, classes=[1]).tolist() == [0, 2]
    assert filter_images(index, min_objects=1).tolist() == [0, 2]
    assert filter_images(index, max_objects=0).tolist() == [1]
    assert filter_images(index, size_range=(0.5, 1.0)).tolist() == [2]
    assert filter_images(index, classes=[0], size_range=(0.5, 1.0)).tolist() == []
    assert filter_images(index, difficult="with").tolist() == [0]
    assert filter_images(index, difficult="without").tolist() == [1, 2]
    with pytest.raises(ValueError, match=r"difficult must be 'any', 'with' or 'without', got 'some'"):
        filter_images(index, difficult="some")
    with pytest.raises(ValueError, match=r"size_range must satisfy 0 <= lo <= hi"):
        filter_images(index, size_range=(0.5, 0.2))


def test_subset_keeps_objects_with_their_images() -> None:
    index = _index()
    sub = index.subset([2, 0])
    assert sub.image_ids == ["c", "a"]
    assert sub.offsets.tolist() == [0, 1, 3]
    assert sub[0].boxes.tolist() == [[10.0, 10.0, 90.0, 90.0]]
    assert torch.equal(sub[1].boxes, index[0].boxes) and torch.equal(sub[1].difficult, index[0].difficult)
    assert len(index.subset([])) == 0


def test_record_access_and_positions() -> None:
    index = _index()
    assert index[-1].image_id == "c" and index.position_of("b") == 1 and index.position_of("zz") is None
    with pytest.raises(IndexError, match=r"image index 3 is out of range for a dataset of 3 images"):
        index[3]
    assert [r.image_id for r in index] == ["a", "b", "c"]


def test_spec_parsing_round_trips() -> None:
    for text in ("demo", "demo:/data/d", "voc:/data/VOC2007", "coco:/x/a.json,/x/images"):
        assert str(parse_dataset_spec(text)) == text
    assert parse_dataset_spec(" COCO: a.json , imgs ") == DatasetSpec("coco", "a.json", "imgs")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("imagenet", r"not one of demo, demo:<folder>, voc:<folder> or coco:<json>,<image folder>"),
        ("voc:", r"a VOC dataset is voc:<folder>"),
        ("coco:a.json", r"a COCO dataset is coco:<json>,<image folder>"),
    ],
)
def test_bad_specs(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_dataset_spec(text)


def test_open_dataset_for_each_kind(demo_root: Path) -> None:
    assert len(open_dataset(f"demo:{demo_root}", "val")) == 8
    assert len(open_dataset(f"voc:{demo_root}", "train")) == 24
    coco = open_dataset(f"coco:{demo_root / 'coco_val.json'},{demo_root / 'JPEGImages'}")
    assert len(coco) == 8
    assert dataset_splits(parse_dataset_spec(f"voc:{demo_root}")) == ["train", "val", "all"]
    assert dataset_splits(parse_dataset_spec("coco:a.json,b")) == []


def test_demo_spec_uses_the_demo_dir_setting(demo_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DETVIZ_DEMO_DIR", str(demo_root))
    assert len(open_dataset("demo", "train")) == 24


def test_missing_demo_dataset_says_how_to_make_it(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no demo dataset here yet; make it with `python -m detviz.data.demo"):
        open_dataset(f"demo:{tmp_path}")


def test_fingerprint_changes_when_files_are_added(tmp_path: Path) -> None:
    root = make_voc(tmp_path / "v", {"a": voc_xml("a.jpg", 64, 48, [])})
    spec = parse_dataset_spec(f"voc:{root}")
    before = dataset_fingerprint(spec, "train")
    (root / "Annotations" / "b.xml").write_text(voc_xml("b.jpg", 64, 48, []))
    (root / "ImageSets" / "Main" / "train.txt").write_text("a\nb\n")
    assert dataset_fingerprint(spec, "train") != before
    assert len(read_voc(root, strict=False).problems) == 1  # b.jpg is missing


def test_paths_outside_the_data_roots_are_refused(tmp_path: Path) -> None:
    (tmp_path / "data" / "voc").mkdir(parents=True)
    assert check_within_roots(tmp_path / "data" / "voc", [tmp_path / "data"]) == tmp_path / "data" / "voc"
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "data" / "linked").symlink_to(tmp_path / "elsewhere")  # the operator's link: allowed
    assert check_within_roots(tmp_path / "data" / "linked", [tmp_path / "data"]) == tmp_path / "data" / "linked"
    with pytest.raises(DataError, match=r"outside the data folders this app may read .*DETVIZ_DATA_ROOTS"):
        check_within_roots(tmp_path / "data" / ".." / "secrets", [tmp_path / "data"])
    with pytest.raises(DataError, match=r"outside the data folders"):
        check_within_roots("/etc", [tmp_path / "data"])


def test_download_fails_offline_with_one_line(tmp_path: Path) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "https_proxy": "http://127.0.0.1:9",
        "http_proxy": "http://127.0.0.1:9",
    }
    result = subprocess.run(
        [sys.executable, "-m", "detviz.data.download", "voc2007", "--root", str(tmp_path / "data")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error: could not download voc2007 into") and "internet" in lines[-1]
    assert "Traceback" not in result.stderr


def test_download_rejects_unknown_dataset() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "detviz.data.download", "imagenet"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "invalid choice: 'imagenet'" in result.stderr
