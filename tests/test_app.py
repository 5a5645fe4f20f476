"""Streamlit AppTest of app.py (Overview) and the Browse page, including every bad input path."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, make_voc, voc_xml
from conftest import run_app as _app
from conftest import texts as _texts
from streamlit.testing.v1 import AppTest

import pages.ui
from detviz.data import VOC_CLASSES
from detviz.data.demo import make_demo_dataset
from pages.ui import keys


def _open_buttons(at: AppTest) -> list:
    return [b for b in at.button if b.key and b.key.startswith("open-")]


def test_overview_shows_the_demo_dataset(data_root: Path) -> None:
    at = _app()
    assert at.title[0].value == "Dataset overview"
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Images"] == "24" and metrics["Classes"] == "8" and metrics["Images without objects"] == "0"
    assert len(at.get("plotly_chart")) == 4
    assert not at.error


def test_split_choice_changes_the_data(data_root: Path) -> None:
    at = _app()
    at.selectbox(key=keys.SPLIT).set_value("val").run()
    assert {m.label: m.value for m in at.metric}["Images"] == "8"


def test_browse_grid_opens_an_image_with_its_ground_truth(data_root: Path) -> None:
    at = _app("pages/browse.py")
    buttons = _open_buttons(at)
    assert len(buttons) == 24 and buttons[0].label.startswith("000001 · ")
    assert "24 of 24 images · page 1 of 1" in _texts(at.caption)
    buttons[2].click().run()
    assert not at.exception
    assert at.selectbox(key=keys.IMAGE).value == "000003"
    charts = at.get("plotly_chart")
    assert len(charts) == 1
    figure = json.loads(charts[0].proto.spec)
    table = at.dataframe[0].value
    assert len(figure["layout"]["shapes"]) == len(table) > 0
    at.toggle(key=keys.SHOW_LARGEST).set_value(True).run()
    at.toggle(key=keys.SHOW_MULTILABEL).set_value(True).run()
    assert any("Largest object:" in s for s in _texts(at.success))
    assert len(at.get("plotly_chart")) == 2  # image + multi-label strip
    assert any("Augmentation preview" in e.label for e in at.expander)
    copies = [c for image in at.get("image") for c in image.captions if c.startswith("copy")]
    assert len(copies) == 4 and all(c.endswith("boxes") for c in copies)


def test_next_previous_and_back_to_the_grid(data_root: Path) -> None:
    at = _app("pages/browse.py", image="000005")
    assert at.selectbox(key=keys.IMAGE).value == "000005"
    next(b for b in at.button if b.label == "Next").click().run()
    assert at.selectbox(key=keys.IMAGE).value == "000006"
    next(b for b in at.button if b.label == "Previous").click().run()
    next(b for b in at.button if b.label == "Previous").click().run()
    assert at.selectbox(key=keys.IMAGE).value == "000004"
    next(b for b in at.button if b.label == "All images").click().run()
    assert at.selectbox(key=keys.IMAGE).value is None and len(_open_buttons(at)) == 24


def test_url_restores_dataset_split_and_image(data_root: Path, demo_root: Path) -> None:
    at = _app("pages/browse.py", data="voc", voc=str(demo_root), split="val", image="000027")
    assert at.radio(key=keys.DATA_KIND).value == "voc"
    assert at.selectbox(key=keys.SPLIT).value == "val"
    assert at.selectbox(key=keys.IMAGE).value == "000027"
    assert "000027" in at.get("plotly_chart")[0].proto.spec


def test_url_naming_a_missing_image_falls_back_to_the_grid(data_root: Path) -> None:
    at = _app("pages/browse.py", image="no-such-image")
    assert any("image=no-such-image" in w and "not a valid value" in w for w in _texts(at.warning))
    assert len(_open_buttons(at)) == 24


def test_filters_and_pages(data_root: Path) -> None:
    at = _app("pages/browse.py")
    at.selectbox(key=keys.PAGE_SIZE).set_value(12).run()
    assert "page 1 of 2" in " ".join(_texts(at.caption))
    at.number_input(key=keys.PAGE).set_value(2).run()
    assert _open_buttons(at)[0].label.startswith("000013")
    at.multiselect(key=keys.CLASSES).set_value(["pole"]).run()
    caption = next(c for c in _texts(at.caption) if "images ·" in c)
    shown = int(caption.split(" of ")[0])
    assert 0 < shown < 24 and "page 1 of" in caption  # the page number was pulled back into range
    at.slider(key=keys.SIZE).set_value((0.99, 1.0)).run()
    assert "No image matches the filters." in _texts(at.info)


def test_missing_voc_folder_is_an_error_not_a_crash(data_root: Path) -> None:
    at = _app(data="voc", voc=str(data_root / "missing"))
    assert any("missing: folder not found" in e for e in _texts(at.error))


def test_path_outside_the_data_roots_is_refused(data_root: Path) -> None:
    at = _app(data="voc", voc="/etc")
    assert any("outside the data folders this app may read" in e for e in _texts(at.error))


def test_bad_coco_json_is_an_error(data_root: Path) -> None:
    (data_root / "bad.json").write_text("{not json")
    (data_root / "img").mkdir()
    at = _app(data="coco", coco=str(data_root / "bad.json"), images=str(data_root / "img"))
    assert any("bad.json: not valid json" in e for e in _texts(at.error))


def test_broken_files_are_listed_and_the_rest_still_browses(data_root: Path) -> None:
    ok = voc_xml("a.jpg", 64, 48, [{"name": "dog", "xmin": 5, "ymin": 5, "xmax": 30, "ymax": 30}])
    empty = voc_xml("b.jpg", 64, 48, [])
    root = make_voc(data_root / "voc", {"a": ok, "b": empty, "c": "<annotation><oops"})
    (root / "JPEGImages" / "a.jpg").write_bytes((root / "JPEGImages" / "a.jpg").read_bytes()[:40])  # truncated
    at = _app("pages/browse.py", data="voc", voc=str(root))
    errors = _texts(at.error)
    assert any("1 image(s) skipped" in e for e in errors)
    assert any("a: cannot read a.jpg" in e for e in errors)  # the grid cell says so
    assert len(_open_buttons(at)) == 2
    _open_buttons(at)[0].click().run()
    assert not at.exception
    assert any("a.jpg: cannot read the image" in e for e in _texts(at.error))
    _open_buttons_or_next = next(b for b in at.button if b.label == "Next")
    _open_buttons_or_next.click().run()
    at.toggle(key=keys.SHOW_LARGEST).set_value(True).run()
    assert any("No objects" in i for i in _texts(at.info))  # image b has no objects: legal


def test_missing_demo_can_be_drawn_from_the_sidebar(data_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DETVIZ_DEMO_DIR", str(data_root / "fresh-demo"))
    monkeypatch.setattr(pages.ui.data, "make_demo_dataset", functools.partial(make_demo_dataset, n_train=3, n_val=2))
    at = _app()
    assert any("not drawn yet" in i for i in _texts(at.info))
    next(b for b in at.sidebar.button if b.label == "Draw the demo dataset").click().run()
    assert not at.exception
    assert {m.label: m.value for m in at.metric}["Images"] == "3"


def test_empty_split_is_an_error(data_root: Path) -> None:
    root = make_voc(data_root / "voc", {})
    at = _app(data="voc", voc=str(root))
    assert any("the split is empty" in e for e in _texts(at.error))


def test_switching_datasets_with_filters_set_keeps_working(data_root: Path) -> None:
    """Widget values that do not fit the new dataset (classes, object counts, page) are reset."""
    tiny = make_voc(
        data_root / "voc",
        {"a": voc_xml("a.jpg", 64, 48, [{"name": "dog", "xmin": 5, "ymin": 5, "xmax": 30, "ymax": 30}])},
    )
    at = _app("pages/browse.py")
    at.multiselect(key=keys.CLASSES).set_value(["pole"]).run()
    at.slider(key=keys.OBJECTS).set_value((2, 8)).run()
    at.selectbox(key=keys.PAGE_SIZE).set_value(12).run()
    at.radio(key=keys.DATA_KIND).set_value("voc").run()
    at.text_input(key=keys.VOC_DIR).input(str(tiny)).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.multiselect(key=keys.CLASSES).options == list(VOC_CLASSES)
    assert at.multiselect(key=keys.CLASSES).value == []
    assert at.slider(key=keys.OBJECTS).value == (0, 1)
    assert len(_open_buttons(at)) == 1


def test_the_first_page_of_a_fresh_server_imports_no_torch(data_root: Path) -> None:
    """A fresh server's first page (Overview, with the sidebar and the navigation) comes without
    torch, whose import alone takes about a second: the goal is that page within 2 s (issue 15).
    Fails when any module on that page's path imports torch (or torchvision) at import time."""
    script = (
        "import sys\n"
        "from streamlit.testing.v1 import AppTest\n"
        f"at = AppTest.from_file({str(ROOT / 'app.py')!r}, default_timeout=120)\n"
        "at.run()\n"
        "assert not at.exception, [e.value for e in at.exception]\n"
        "print(at.title[0].value, len(at.get('plotly_chart')), {m.label: m.value for m in at.metric}['Images'])\n"
        "print(sorted(m for m in ('torch', 'torchvision') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    page, heavy = out.stdout.strip().splitlines()[-2:]
    assert page == "Dataset overview 4 24"
    assert heavy == "[]", f"the first page imported {heavy}"
