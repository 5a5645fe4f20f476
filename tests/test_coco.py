"""COCO reader: the lesson's Pascal json equals the VOC XML, id mapping, and every bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import make_voc
from PIL import Image
from test_voc import SIZES, VOC_000012, VOC_000017

from detviz.data import VOC_CLASSES, DataError, read_coco, read_voc

# The same two images in the lesson's pascal_train2007.json format (category ids 1..20). The
# boxes are the lesson's printed CSV rows "96 155 269 350" and "61 184 198 278 77 89 335 402"
# ([y, x, y + h - 1, x + w - 1]) written back as COCO [x, y, w, h].
LESSON_JSON = {
    "images": [
        {"file_name": "000012.jpg", "height": 333, "width": 500, "id": 12},
        {"file_name": "000017.jpg", "height": 364, "width": 480, "id": 17},
    ],
    "type": "instances",
    "annotations": [
        {"iscrowd": 0, "image_id": 12, "bbox": [155, 96, 196, 174], "category_id": 7, "id": 1, "ignore": 0},
        {"iscrowd": 0, "image_id": 17, "bbox": [184, 61, 95, 138], "category_id": 15, "id": 2, "ignore": 0},
        {"iscrowd": 0, "image_id": 17, "bbox": [89, 77, 314, 259], "category_id": 13, "id": 3, "ignore": 1},
    ],
    "categories": [{"supercategory": "none", "id": i + 1, "name": name} for i, name in enumerate(VOC_CLASSES)],
}


def _coco(tmp_path: Path, data: dict, files: dict[str, tuple[int, int]] | None = None) -> tuple[Path, Path]:
    images = tmp_path / "images"
    images.mkdir(exist_ok=True)
    for name, size in (files or {}).items():
        Image.new("RGB", size).save(images / name)
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    return path, images


def _basic(**ann) -> dict:
    a = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 3, 10, 12], **ann}
    return {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}],
        "annotations": [a],
        "categories": [{"id": 1, "name": "dog"}],
    }


def test_lesson_json_gives_the_same_boxes_as_the_voc_xml(tmp_path: Path) -> None:
    voc_root = make_voc(tmp_path / "VOC2007", {"000012": VOC_000012, "000017": VOC_000017}, sizes=SIZES)
    json_path = tmp_path / "pascal_train2007.json"
    json_path.write_text(json.dumps(LESSON_JSON))
    coco = read_coco(json_path, voc_root / "JPEGImages")
    voc = read_voc(voc_root)
    assert coco.classes == voc.classes
    assert coco.image_ids == ["12", "17"]
    assert torch.equal(coco.boxes, voc.boxes)
    assert torch.equal(coco.labels, voc.labels)
    assert torch.equal(coco.difficult, voc.difficult)  # the json's "ignore" is VOC's "difficult"
    assert coco.image_paths == voc.image_paths


def test_demo_dataset_json_and_xml_agree(demo_root: Path) -> None:
    for split in ("train", "val"):
        voc = read_voc(demo_root, split)
        coco = read_coco(demo_root / f"coco_{split}.json", demo_root / "JPEGImages")
        assert coco.classes == voc.classes and len(coco) == len(voc)
        assert torch.equal(coco.offsets, voc.offsets)
        assert torch.equal(coco.boxes, voc.boxes)
        assert torch.equal(coco.labels, voc.labels)
        assert torch.equal(coco.difficult, voc.difficult)


def test_category_ids_map_to_labels_in_id_order(tmp_path: Path) -> None:
    data = {
        "images": [{"id": 7, "file_name": "a.jpg", "width": 64, "height": 48}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 90, "bbox": [0, 0, 5, 5]},
            {"id": 2, "image_id": 7, "category_id": 3, "bbox": [0, 0, 5, 5], "iscrowd": 1},
        ],
        "categories": [{"id": 90, "name": "zebra"}, {"id": 3, "name": "cat"}, {"id": 17, "name": "dog"}],
    }
    index = read_coco(*_coco(tmp_path, data, {"a.jpg": (64, 48)}))
    assert index.classes == ["cat", "dog", "zebra"]
    assert index.labels.tolist() == [2, 0]
    assert index.difficult.tolist() == [False, True]  # iscrowd is kept, as difficult
    assert index.truncated.tolist() == [False, False]


def test_image_without_annotations_is_kept(tmp_path: Path) -> None:
    data = _basic()
    data["images"].append({"id": 2, "file_name": "b.jpg", "width": 30, "height": 20})
    index = read_coco(*_coco(tmp_path, data, {"a.jpg": (64, 48), "b.jpg": (30, 20)}))
    assert index.objects_per_image().tolist() == [1, 0]


def test_box_outside_is_clipped_with_a_warning(tmp_path: Path) -> None:
    index = read_coco(*_coco(tmp_path, _basic(bbox=[50, 40, 30, 30]), {"a.jpg": (64, 48)}))
    assert index.boxes.tolist() == [[50.0, 40.0, 64.0, 48.0]]
    assert "clipped" in index.warnings[0] and "annotations[0] (id 1) (dog)" in index.warnings[0]


# --- bad input -------------------------------------------------------------------------


def test_missing_json(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.json: COCO json file not found"):
        read_coco(tmp_path / "nope.json", tmp_path)


def test_missing_image_folder(tmp_path: Path) -> None:
    path, _ = _coco(tmp_path, _basic())
    with pytest.raises(DataError, match=r"gone: image folder not found"):
        read_coco(path, tmp_path / "gone")


def test_not_json(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text("{'images': [")
    with pytest.raises(DataError, match=r"bad\.json: not valid json \(line 1, column 2"):
        read_coco(path, tmp_path)


def test_missing_top_level_list(tmp_path: Path) -> None:
    data = _basic()
    del data["categories"]
    with pytest.raises(DataError, match=r"missing the list 'categories'"):
        read_coco(*_coco(tmp_path, data, {"a.jpg": (64, 48)}))


def test_bad_category_id(tmp_path: Path) -> None:
    path, images = _coco(tmp_path, _basic(category_id=5), {"a.jpg": (64, 48)})
    with pytest.raises(
        DataError, match=r"annotations\[0\] \(id 1\) has category_id 5, which is not in categories \(ids: 1\)"
    ):
        read_coco(path, images)
    index = read_coco(path, images, strict=False)
    assert len(index) == 0 and "category_id 5" in index.problems[0]  # the whole image is skipped


def test_negative_width(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"bbox \[2, 3, -10, 12\] with width -10 and height 12; both must be positive"):
        read_coco(*_coco(tmp_path, _basic(bbox=[2, 3, -10, 12]), {"a.jpg": (64, 48)}))


def test_malformed_bbox(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"has bbox \[1, 2, 3\]; it must be \[x, y, width, height\]"):
        read_coco(*_coco(tmp_path, _basic(bbox=[1, 2, 3]), {"a.jpg": (64, 48)}))


def test_annotation_for_an_unknown_image_id(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"refers to image id 99, which is not in images"):
        read_coco(*_coco(tmp_path, _basic(image_id=99), {"a.jpg": (64, 48)}))


def test_image_id_without_a_file(tmp_path: Path) -> None:
    path, images = _coco(tmp_path, _basic(), {})
    with pytest.raises(DataError, match=r"image id 1 has file_name 'a\.jpg', which is not in"):
        read_coco(path, images)
    assert read_coco(path, images, strict=False).problems


def test_image_entry_with_bad_size_or_path(tmp_path: Path) -> None:
    data = _basic()
    data["images"][0]["width"] = 0
    with pytest.raises(DataError, match=r"images\[0\] \(id 1\) has width 0 and height 48"):
        read_coco(*_coco(tmp_path, data, {"a.jpg": (64, 48)}))
    data = _basic()
    data["images"][0]["file_name"] = "../../etc/passwd"
    with pytest.raises(DataError, match=r"give a path inside the image folder"):
        read_coco(*_coco(tmp_path, data, {"a.jpg": (64, 48)}))


def test_duplicate_ids(tmp_path: Path) -> None:
    data = _basic()
    data["categories"].append({"id": 1, "name": "cat"})
    with pytest.raises(DataError, match=r"category id 1 appears twice"):
        read_coco(*_coco(tmp_path, data, {"a.jpg": (64, 48)}))
    data = _basic()
    data["images"].append(dict(data["images"][0]))
    with pytest.raises(DataError, match=r"image id 1 appears twice"):
        read_coco(*_coco(tmp_path, data, {"a.jpg": (64, 48)}))


def test_no_categories(tmp_path: Path) -> None:
    data = _basic()
    data["categories"] = []
    data["annotations"] = []
    with pytest.raises(DataError, match=r"no categories"):
        read_coco(*_coco(tmp_path, data, {"a.jpg": (64, 48)}))
