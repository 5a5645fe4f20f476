"""Shared fixtures: a small demo dataset, a private index cache, and VOC folder builders."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
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


@pytest.fixture(scope="session", autouse=True)
def _writable() -> Iterator[None]:
    """The app is writable (not in classroom mode) unless a test says otherwise: an AppTest's
    server.address comes from the .streamlit/config.toml of the working directory, and without one
    it is unset, which would make the app read-only (tests/test_readonly.py sets it to 1)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DETVIZ_READONLY", "0")
        yield


@pytest.fixture(scope="session", autouse=True)
def _live_sets_in_the_run() -> Iterator[None]:
    """No default live set built at the app's first run (it would slow every AppTest), and a page
    waits for its live set as long as it takes, so a first run shows the numbers: the defaults of
    an AppTest run, said here for the servers the browser tests start too (tests/test_live_pages.py
    sets both otherwise where it tests them)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DETVIZ_PREWARM", "0")
        mp.setenv("DETVIZ_LIVE_WAIT", "600")
        yield


@pytest.fixture(autouse=True)
def _no_leftovers() -> Iterator[None]:
    """Nothing a test starts or caches reaches the next one, whatever the order: the live sets'
    build and NMS warm-up threads are stopped and joined and the sets forgotten, and Streamlit's
    caches (dataset indexes, models, raw outputs) emptied. Only where a test brought those modules in."""
    yield
    builds = sys.modules.get("pages.ui.live_builds")
    if builds is not None:
        builds.stop_warming()
    if "streamlit" in sys.modules:
        import streamlit as st

        st.cache_data.clear()
        st.cache_resource.clear()


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A very small demo dataset (8 train + 4 val images) for training runs."""
    return make_demo_dataset(tmp_path_factory.mktemp("tiny") / "d", n_train=8, n_val=4, seed=5, workers=1)


def quick(tiny: Path, tmp_path: Path, **kwargs):
    """A TrainConfig of a few seconds on the CPU (128 px, batch 4, two epochs of two steps)."""
    from detviz.train import TrainConfig

    base = {
        "data": f"demo:{tiny}",
        "image_size": 128,
        "batch_size": 4,
        "epochs": 2,
        "lr": 1e-3,
        "workers": 0,
        "out": str(tmp_path / "runs"),
        "augment": False,
    }
    return TrainConfig(**(base | kwargs))


def wait_for(predicate: Callable[[], bool], seconds: float = 180.0, every: float = 0.2) -> None:
    deadline = time.time() + seconds
    while not predicate():
        if time.time() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(every)


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
