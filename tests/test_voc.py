"""VOC reader: real annotation layout, DESIGN's pixel convention, caching, and every bad input."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import torch
from conftest import make_voc, voc_xml

from detviz.data import VOC_CLASSES, DataError, list_voc_splits, read_voc
from detviz.data import voc as voc_module

# Verbatim layout of VOC2007's Annotations/000012.xml and 000017.xml (tabs, <source>, <owner>, ...).
VOC_000012 = """<annotation>
\t<folder>VOC2007</folder>
\t<filename>000012.jpg</filename>
\t<source>
\t\t<database>The VOC2007 Database</database>
\t\t<annotation>PASCAL VOC2007</annotation>
\t\t<image>flickr</image>
\t\t<flickrid>207539885</flickrid>
\t</source>
\t<owner>
\t\t<flickrid>KevBow</flickrid>
\t\t<name>?</name>
\t</owner>
\t<size>
\t\t<width>500</width>
\t\t<height>333</height>
\t\t<depth>3</depth>
\t</size>
\t<segmented>0</segmented>
\t<object>
\t\t<name>car</name>
\t\t<pose>Rear</pose>
\t\t<truncated>0</truncated>
\t\t<difficult>0</difficult>
\t\t<bndbox>
\t\t\t<xmin>156</xmin>
\t\t\t<ymin>97</ymin>
\t\t\t<xmax>351</xmax>
\t\t\t<ymax>270</ymax>
\t\t</bndbox>
\t</object>
</annotation>
"""
VOC_000017 = """<annotation>
\t<folder>VOC2007</folder>
\t<filename>000017.jpg</filename>
\t<size><width>480</width><height>364</height><depth>3</depth></size>
\t<segmented>0</segmented>
\t<object>
\t\t<name>person</name>
\t\t<pose>Left</pose>
\t\t<truncated>0</truncated>
\t\t<difficult>0</difficult>
\t\t<bndbox><xmin>185</xmin><ymin>62</ymin><xmax>279</xmax><ymax>199</ymax></bndbox>
\t</object>
\t<object>
\t\t<name>horse</name>
\t\t<pose>Left</pose>
\t\t<truncated>1</truncated>
\t\t<difficult>1</difficult>
\t\t<bndbox><xmin>90</xmin><ymin>78</ymin><xmax>403</xmax><ymax>336</ymax></bndbox>
\t</object>
</annotation>
"""
SIZES = {"000012": (500, 333), "000017": (480, 364)}


@pytest.fixture
def voc_root(tmp_path: Path) -> Path:
    return make_voc(tmp_path / "VOC2007", {"000012": VOC_000012, "000017": VOC_000017}, sizes=SIZES)


def test_reads_real_voc_layout_with_design_pixel_convention(voc_root: Path) -> None:
    index = read_voc(voc_root, "train")
    assert index.classes == list(VOC_CLASSES)
    assert index.image_ids == ["000012", "000017"]
    car = index[0]
    assert (car.width, car.height) == (500, 333)
    assert car.image_path == voc_root / "JPEGImages" / "000012.jpg"
    # VOC 1-based inclusive (156, 97, 351, 270) -> (xmin - 1, ymin - 1, xmax, ymax)
    assert car.boxes.tolist() == [[155.0, 96.0, 351.0, 270.0]]
    assert car.labels.tolist() == [VOC_CLASSES.index("car")] == [6]
    two = index[1]
    assert two.boxes.tolist() == [[184.0, 61.0, 279.0, 199.0], [89.0, 77.0, 403.0, 336.0]]
    assert [index.classes[i] for i in two.labels] == ["person", "horse"]
    assert two.difficult.tolist() == [False, True]
    assert two.truncated.tolist() == [False, True]
    assert index.boxes.dtype == torch.float32 and index.labels.dtype == torch.int64
    assert index.difficult.dtype == torch.bool
    assert index.num_objects == 3 and index.objects_per_image().tolist() == [1, 2]


def test_normalized_boxes_divide_by_image_size(voc_root: Path) -> None:
    car = read_voc(voc_root)[0]
    torch.testing.assert_close(car.normalized_boxes(), torch.tensor([[155 / 500, 96 / 333, 351 / 500, 270 / 333]]))


def test_class_list_from_classes_txt(tmp_path: Path) -> None:
    xml = voc_xml("a.jpg", 64, 48, [{"name": "widget", "xmin": 1, "ymin": 1, "xmax": 10, "ymax": 10}])
    root = make_voc(tmp_path / "v", {"a": xml}, classes=["gadget", "widget"])
    index = read_voc(root)
    assert index.classes == ["gadget", "widget"] and index.labels.tolist() == [1]


def test_explicit_classes_override_classes_txt(tmp_path: Path) -> None:
    xml = voc_xml("a.jpg", 64, 48, [{"name": "widget", "xmin": 1, "ymin": 1, "xmax": 10, "ymax": 10}])
    root = make_voc(tmp_path / "v", {"a": xml}, classes=["gadget", "widget"])
    assert read_voc(root, classes=["widget"]).labels.tolist() == [0]


def test_image_with_no_objects_is_legal(tmp_path: Path) -> None:
    root = make_voc(tmp_path / "v", {"empty": voc_xml("empty.jpg", 64, 48, [])})
    index = read_voc(root)
    assert len(index) == 1 and index[0].boxes.shape == (0, 4) and index[0].labels.shape == (0,)


def test_lists_splits_without_class_specific_files(voc_root: Path) -> None:
    (voc_root / "ImageSets" / "Main" / "val.txt").write_text("000017\n")
    (voc_root / "ImageSets" / "Main" / "car_train.txt").write_text("000012  1\n")
    assert list_voc_splits(voc_root) == ["train", "val"]
    assert read_voc(voc_root, "val").image_ids == ["000017"]


def test_second_open_comes_from_the_cache(voc_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = read_voc(voc_root)

    def refuse(*args, **kwargs):
        raise AssertionError("annotations were parsed again although nothing changed")

    monkeypatch.setattr(voc_module, "parse_voc_xml", refuse)
    again = read_voc(voc_root)
    assert again.image_ids == first.image_ids and torch.equal(again.boxes, first.boxes)
    assert again.image_paths == first.image_paths and again.classes == first.classes


def test_cache_is_refreshed_when_an_annotation_changes(voc_root: Path) -> None:
    read_voc(voc_root)
    xml = voc_root / "Annotations" / "000012.xml"
    xml.write_text(VOC_000012.replace("<xmin>156</xmin>", "<xmin>101</xmin>"))
    later = time.time_ns() + 5_000_000_000
    os.utime(xml, ns=(later, later))
    assert read_voc(voc_root)[0].boxes[0, 0].item() == 100.0


def test_cache_can_be_turned_off_and_survives_an_unwritable_cache_dir(
    voc_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    monkeypatch.setenv("DETVIZ_CACHE_DIR", str(blocker / "cache"))
    assert len(read_voc(voc_root)) == 2
    assert len(read_voc(voc_root, cache=False)) == 2


def test_corrupt_cache_file_is_ignored(voc_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("DETVIZ_CACHE_DIR", str(cache))
    read_voc(voc_root)
    for f in cache.glob("*.npz"):
        f.write_bytes(b"garbage")
    assert read_voc(voc_root).image_ids == ["000012", "000017"]


# --- bad input -------------------------------------------------------------------------


def _one(tmp_path: Path, xml: str, **kwargs) -> Path:
    return make_voc(tmp_path / "v", {"x": xml}, **kwargs)


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nowhere: VOC folder not found"):
        read_voc(tmp_path / "nowhere")


def test_missing_split_file_names_the_available_ones(voc_root: Path) -> None:
    with pytest.raises(DataError, match=r"test\.txt: split file not found; splits in this folder: train"):
        read_voc(voc_root, "test")


def test_missing_annotation_folder(tmp_path: Path) -> None:
    (tmp_path / "v" / "JPEGImages").mkdir(parents=True)
    with pytest.raises(DataError, match=r"Annotations: folder not found"):
        read_voc(tmp_path / "v")


def test_empty_split(tmp_path: Path) -> None:
    root = make_voc(tmp_path / "v", {})
    with pytest.raises(DataError, match=r"train\.txt: the split is empty"):
        read_voc(root)


def test_split_listing_an_id_twice(voc_root: Path) -> None:
    (voc_root / "ImageSets" / "Main" / "train.txt").write_text("000012\n000012\n")
    with pytest.raises(DataError, match=r"'000012' appears twice \(line 2\)"):
        read_voc(voc_root)


def test_split_listing_a_missing_annotation(voc_root: Path) -> None:
    (voc_root / "ImageSets" / "Main" / "train.txt").write_text("000012\n999999\n")
    with pytest.raises(DataError, match=r"999999\.xml: annotation file not found"):
        read_voc(voc_root)


NO_OBJECTS = voc_xml("x.jpg", 64, 48, [])
DOG = {"name": "dog", "xmin": 1, "ymin": 1, "xmax": 9, "ymax": 9}  # a good object; each case below breaks it


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        ("this is not <xml", r"x\.xml: not valid XML"),
        ("<annotation><filename>x.jpg</filename></annotation>", r"x\.xml: no <size> element"),
        (NO_OBJECTS.replace("<width>64</width>", "<width>wide</width>"), r"<size> <width> is 'wide', not a number"),
        (NO_OBJECTS.replace("</annotation>", "<object><name>dog</name></object></annotation>"), r"x\.xml: object 1 \(dog\) has no <bndbox>"),
    ],
    ids=["not-xml", "without-size", "non-numeric-size", "object-without-bndbox"],
)  # fmt: skip
def test_broken_annotation_file_is_named(tmp_path: Path, xml: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        read_voc(_one(tmp_path, xml))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"xmin": 40, "ymin": 5, "xmax": 12, "ymax": 20}, r"object 1 \(dog\): xmax \(12\) <= xmin \(40\); fix the file"),
        ({"xmin": 4, "ymin": 30, "xmax": 12, "ymax": 30}, r"ymax \(30\) <= ymin \(30\)"),
        ({"xmin": 70, "ymin": 10, "xmax": 80, "ymax": 40}, r"lies entirely outside the 64x48 image"),
        ({"name": "unicorn"}, r"x\.xml: object 1 \(unicorn\) has class 'unicorn', which is not in .*v/classes\.txt"),
        ({"difficult": "yes"}, r"<difficult> is 'yes'; it must be 0 or 1"),
    ],
    ids=["xmax-not-greater-than-xmin", "ymax-not-greater-than-ymin", "box-entirely-outside-the-image",
         "unknown-class-name", "bad-difficult-flag"],
)  # fmt: skip
def test_bad_object_is_an_error_naming_it(tmp_path: Path, change: dict, message: str) -> None:
    """With classes.txt an unknown name stays an error (without one the list would be inferred)."""
    with pytest.raises(DataError, match=message):
        read_voc(_one(tmp_path, voc_xml("x.jpg", 64, 48, [DOG | change]), classes=list(VOC_CLASSES)))


def test_box_partly_outside_the_image_is_clipped_with_a_warning(tmp_path: Path) -> None:
    xml = voc_xml("x.jpg", 64, 48, [{"name": "dog", "xmin": -5, "ymin": 10, "xmax": 80, "ymax": 40}])
    index = read_voc(_one(tmp_path, xml))
    assert index[0].boxes.tolist() == [[0.0, 9.0, 64.0, 40.0]]
    assert len(index.warnings) == 1 and "extends outside the 64x48 image; clipped" in index.warnings[0]


def test_entity_expansion_attack_is_refused(tmp_path: Path) -> None:
    lol = "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10))
    xml = f'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol0 "lol">{lol}]><annotation>&lol9;</annotation>'
    with pytest.raises(DataError, match=r"x\.xml: refused unsafe XML \(EntitiesForbidden\)"):
        read_voc(_one(tmp_path, xml))


def test_external_entity_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("password")
    xml = f'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file://{secret}">]><annotation>&x;</annotation>'
    with pytest.raises(DataError, match=r"refused unsafe XML"):
        read_voc(_one(tmp_path, xml))


def test_missing_image_file(tmp_path: Path) -> None:
    root = _one(tmp_path, voc_xml("x.jpg", 64, 48, []))
    (root / "JPEGImages" / "x.jpg").unlink()
    with pytest.raises(DataError, match=r"image file for 'x' not found"):
        read_voc(root)


def test_image_found_by_id_when_filename_is_stale(tmp_path: Path) -> None:
    root = _one(tmp_path, voc_xml("renamed.png", 64, 48, []))
    assert read_voc(root)[0].image_path.name == "x.jpg"


def test_empty_or_duplicate_class_list(tmp_path: Path) -> None:
    root = _one(tmp_path, voc_xml("x.jpg", 64, 48, []), classes=["a", "b", "a"])
    with pytest.raises(DataError, match=r"classes\.txt: class names must be unique; repeated: a"):
        read_voc(root)
    (root / "classes.txt").write_text("\n\n")
    with pytest.raises(DataError, match=r"the class list is empty"):
        read_voc(root)


def test_non_strict_reading_skips_broken_images_and_lists_them(voc_root: Path) -> None:
    (voc_root / "Annotations" / "000017.xml").write_text("<annotation>")
    with pytest.raises(DataError, match=r"000017\.xml: not valid XML"):
        read_voc(voc_root)
    index = read_voc(voc_root, strict=False)
    assert index.image_ids == ["000012"]
    assert len(index.problems) == 1 and "000017.xml: not valid XML" in index.problems[0]


def test_strict_error_counts_the_other_broken_files(tmp_path: Path) -> None:
    root = make_voc(tmp_path / "v", {"a": "<bad", "b": "<bad", "c": "<bad"})
    with pytest.raises(DataError, match=r"a\.xml: not valid XML.*\(2 more broken files\)"):
        read_voc(root)
