"""Shared fixtures: a small demo dataset, a private index cache, and VOC folder builders."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from detviz.data.demo import make_demo_dataset

ROOT = Path(__file__).resolve().parents[1]
APP_TIMEOUT = 120  # an AppTest run; the first imports torch and torchvision


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Index caches go to a temporary folder, never to the user's ~/.cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DETVIZ_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small demo dataset (24 train + 8 val images), made once per test session."""
    return make_demo_dataset(tmp_path_factory.mktemp("demo") / "demo", n_train=24, n_val=8, seed=0, workers=1)


VOC_XML = """<annotation>
  <folder>VOC2007</folder>
  <filename>{filename}</filename>
  <size><width>{width}</width><height>{height}</height><depth>3</depth></size>
{objects}</annotation>
"""
VOC_OBJECT = """  <object>
    <name>{name}</name>
    <pose>Unspecified</pose>
    <truncated>{truncated}</truncated>
    <difficult>{difficult}</difficult>
    <bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin><xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox>
  </object>
"""


def voc_xml(filename: str, width: int, height: int, objects: list[dict]) -> str:
    """A VOC annotation; each object dict has name, xmin, ymin, xmax, ymax (+ difficult, truncated)."""
    body = "".join(VOC_OBJECT.format(**{"difficult": 0, "truncated": 0, **o}) for o in objects)
    return VOC_XML.format(filename=filename, width=width, height=height, objects=body)


def make_voc(
    root: Path,
    annotations: dict[str, str],
    split: str = "train",
    sizes: dict[str, tuple[int, int]] | None = None,
    classes: list[str] | None = None,
) -> Path:
    """Writes a VOC folder: the given XML texts, a grey JPEG per image id, and the split file.

    Args:
        annotations: image id -> XML text (written verbatim, so broken XML can be tested).
        sizes: image id -> (width, height) of the JPEG to write (default 64 x 48).
        classes: written to classes.txt when given.
    """
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for image_id, xml in annotations.items():
        (root / "Annotations" / f"{image_id}.xml").write_text(xml)
        w, h = (sizes or {}).get(image_id, (64, 48))
        Image.new("RGB", (w, h), (120, 120, 120)).save(root / "JPEGImages" / f"{image_id}.jpg")
    (root / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in annotations))
    if classes is not None:
        (root / "classes.txt").write_text("\n".join(classes) + "\n")
    return root


@pytest.fixture
def data_root(tmp_path: Path, demo_root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The app reads the session's demo set, may open folders under tmp_path, sees no shipped
    checkpoint unless a test puts one in tmp_path/checkpoints, and keeps its runs in tmp_path/runs."""
    monkeypatch.setenv("DETVIZ_DEMO_DIR", str(demo_root))
    monkeypatch.setenv("DETVIZ_DATA_ROOTS", os.pathsep.join([str(tmp_path), str(demo_root.parent)]))
    monkeypatch.setenv("DETVIZ_CHECKPOINT_DIR", str(tmp_path / "checkpoints"))
    monkeypatch.setenv("DETVIZ_RUNS_DIR", str(tmp_path / "runs"))
    return tmp_path


def run_app(page: str | None = None, **params: str):
    """An AppTest of app.py opened on `page` with the query parameters, run once, without exceptions."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=APP_TIMEOUT)
    at.query_params.update(params)
    if page:
        at.switch_page(page)  # as a deep link: the page is the first one the session runs
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(elements) -> list[str]:
    return [e.value for e in elements]
