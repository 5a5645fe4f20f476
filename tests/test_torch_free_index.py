"""Reading a dataset and drawing its overview needs no torch: the app's first page is fast only if
that path never imports it. The index still hands out torch tensors to everyone else."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from detviz.data import DatasetIndex, read_voc
from detviz.data.records import IndexArrays
from detviz.data.stats import DatasetSummary, summarize

TORCH_FREE = textwrap.dedent(
    """
    import sys

    from detviz.data import read_coco, read_voc
    from detviz.data.spec import open_dataset
    from detviz.data.stats import DatasetSummary, summarize
    from detviz.figures.dataset import class_count_figure, histogram_figure

    root = sys.argv[1]
    for _ in range(2):  # the first read parses and writes the cache, the second loads it
        index = open_dataset(f"demo:{root}", "train")
    coco = read_coco(f"{root}/coco_train.json", f"{root}/JPEGImages")
    assert coco.num_objects == index.num_objects > 0 and len(coco) == len(index)
    assert index.position_of(index.image_ids[-1]) == len(index) - 1 and index.num_classes > 0
    assert index.arrays.boxes.shape == (index.num_objects, 4)
    part = index.subset([1, 0])
    assert part.image_ids == index.image_ids[1::-1]
    for s in (summarize(index), summarize(part), summarize(coco)):
        figures = [
            class_count_figure(index.classes, s.class_counts, s.class_difficult),
            histogram_figure(s.objects_per_image, "Objects per image", "objects", integer=True),
            histogram_figure(s.relative_size, "Object size", "size", bins=40),
            histogram_figure(s.aspect_ratio, "Object aspect ratio", "ratio", bins=40, log_x=True),
        ]
        for fig in figures:
            fig.to_json()
    leaked = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
    assert not leaked, leaked[:5]
    print("torch-free")
    """
)


def test_reading_and_summarizing_a_dataset_imports_no_torch(demo_root: Path, tmp_path: Path) -> None:
    env = os.environ | {"DETVIZ_CACHE_DIR": str(tmp_path / "cache")}
    out = subprocess.run(
        [sys.executable, "-c", TORCH_FREE, str(demo_root)], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "torch-free"
    assert list((tmp_path / "cache").glob("voc-*.npz")), "the second read did not come from the cache"


def _arrays(seed: int = 0) -> dict[str, np.ndarray]:
    """Per-image and per-object arrays of 3 images holding 2, 0 and 3 objects."""
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 50, (5, 2)).astype(np.float32)
    return {
        "widths": np.array([100, 60, 80], dtype=np.int64),
        "heights": np.array([90, 40, 70], dtype=np.int64),
        "offsets": np.array([0, 2, 2, 5], dtype=np.int64),
        "boxes": np.concatenate([xy, xy + rng.uniform(1, 20, (5, 2)).astype(np.float32)], axis=1),
        "labels": np.array([0, 1, 1, 0, 2], dtype=np.int64),
        "difficult": np.array([False, True, False, False, True]),
        "truncated": np.array([True, False, False, True, False]),
    }


def _index(arrays: dict) -> DatasetIndex:
    return DatasetIndex(
        classes=["a", "b", "c"],
        image_ids=["x", "y", "z"],
        image_paths=[Path(f"{i}.jpg") for i in "xyz"],
        **arrays,
    )


DTYPES = {
    "widths": torch.int64,
    "heights": torch.int64,
    "offsets": torch.int64,
    "boxes": torch.float32,
    "labels": torch.int64,
    "difficult": torch.bool,
    "truncated": torch.bool,
}


def _check_fields(index: DatasetIndex, expected: dict[str, np.ndarray]) -> None:
    for name, dtype in DTYPES.items():
        tensor, array = getattr(index, name), getattr(index.arrays, name)
        assert isinstance(tensor, torch.Tensor) and tensor.dtype == dtype, name
        assert isinstance(array, np.ndarray) and array.dtype == torch.empty(0, dtype=dtype).numpy().dtype, name
        np.testing.assert_array_equal(array, expected[name], err_msg=name)
        assert torch.equal(tensor, torch.from_numpy(np.asarray(expected[name]))), name


def test_index_from_numpy_and_from_tensors_is_the_same() -> None:
    arrays = _arrays()
    from_numpy = _index(arrays)
    from_tensors = _index({k: torch.from_numpy(v.copy()) for k, v in arrays.items()})
    assert isinstance(from_numpy.arrays, IndexArrays)
    _check_fields(from_numpy, arrays)
    _check_fields(from_tensors, arrays)
    for a, b in zip(from_numpy, from_tensors, strict=True):
        assert (a.image_id, a.width, a.height) == (b.image_id, b.width, b.height)
        for name in ("boxes", "labels", "difficult", "truncated"):
            assert isinstance(getattr(a, name), torch.Tensor) and torch.equal(getattr(a, name), getattr(b, name))
    assert from_numpy.objects_per_image().tolist() == [2, 0, 3]
    assert from_numpy.object_image().tolist() == [0, 0, 2, 2, 2]


def test_index_tensors_share_memory_with_the_arrays() -> None:
    index = _index(_arrays())
    assert index.boxes is index.boxes  # made once, then cached
    assert index.boxes.data_ptr() == index.arrays.boxes.ctypes.data
    index.arrays.boxes[0, 0] = 1234.5
    assert float(index.boxes[0, 0]) == 1234.5 and float(index[0].boxes[0, 0]) == 1234.5


def test_index_rejects_wrong_shapes() -> None:
    arrays = _arrays()
    with pytest.raises(ValueError, match="boxes"):
        _index(arrays | {"boxes": arrays["boxes"][:, :3]})
    with pytest.raises(ValueError, match="offsets"):
        _index(arrays | {"offsets": arrays["offsets"][:-1]})
    with pytest.raises(ValueError, match="labels"):
        _index(arrays | {"labels": arrays["labels"][:-1]})


def test_subset_keeps_dtypes_and_rows() -> None:
    arrays = _arrays()
    part = _index(arrays).subset([2, 1, 0])
    rows = [2, 3, 4, 0, 1]
    expected = {name: arrays[name][rows] for name in ("boxes", "labels", "difficult", "truncated")}
    expected |= {
        "widths": arrays["widths"][[2, 1, 0]],
        "heights": arrays["heights"][[2, 1, 0]],
        "offsets": np.array([0, 3, 3, 5]),
    }
    _check_fields(part, expected)
    assert part.image_ids == ["z", "y", "x"]
    assert _index(arrays).subset(torch.tensor([1])).num_objects == 0


def test_voc_cache_round_trip_keeps_dtypes(demo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DETVIZ_CACHE_DIR", str(tmp_path))
    parsed = read_voc(demo_root, "train")
    cached = read_voc(demo_root, "train")
    assert list(tmp_path.glob("voc-*.npz"))
    _check_fields(cached, {name: getattr(parsed.arrays, name) for name in DTYPES})
    _same_summary(summarize(cached), summarize(parsed))


def _same_summary(a: DatasetSummary, b: DatasetSummary) -> None:
    for name in a.__dataclass_fields__:
        x, y = getattr(a, name), getattr(b, name)
        if isinstance(x, np.ndarray):
            np.testing.assert_array_equal(x, y)
            assert x.dtype == y.dtype
        else:
            assert x == y


def _histogram_values(rng: np.random.Generator, trial: int, bins: int) -> np.ndarray:
    m = int(rng.integers(1, 800))
    kind = trial % 4
    if kind == 0:
        return rng.uniform(0, 1, m)
    if kind == 1:
        return rng.lognormal(0, 1.5, m)
    if kind == 2:  # every value on a bin edge, the last one included
        lo, hi = np.sort(rng.uniform(0.05, 4, 2))
        return rng.choice(np.linspace(lo, hi, bins + 1), m)
    return rng.integers(1, 20, m) / rng.integers(1, 20)  # many ties


@pytest.mark.parametrize("log_x", [False, True])
def test_histogram_bars_cover_the_range_and_count_each_value_once(log_x: bool) -> None:
    """Bars side by side from the smallest value to the largest, each counting the values between
    its edges (its left edge in, the last bar's right edge too). Fails on a shifted count, centres
    or widths from the wrong edges, or a log-scale bar drawn with its log10 width."""
    from detviz.figures.dataset import _get_histogram_info

    rng = np.random.default_rng(0)
    for trial in range(200):
        bins = int(rng.integers(1, 60))
        v = _histogram_values(rng, trial, bins)
        x, y, width = (np.array(a) for a in _get_histogram_info(v, bins, log_x, False))
        assert len(x) == len(y) == len(width) == bins and y.sum() == v.size
        if log_x:  # a bar is centred on the log axis: its edges are centre / r and centre * r
            ratio = (width / x + np.sqrt((width / x) ** 2 + 4)) / 2
            left, right = x / ratio, x * ratio
        else:
            left, right = x - width / 2, x + width / 2
        np.testing.assert_allclose(left[1:], right[:-1], rtol=1e-9)  # side by side
        np.testing.assert_allclose(left[0], v.min(), rtol=1e-9)
        if v.max() > v.min():  # equal values get a range of their own (the next test)
            np.testing.assert_allclose(right[-1], v.max(), rtol=1e-9)
        # each value counted in the bar whose edges hold it; a value within rounding of an edge may
        # fall either side, so those are checked by the total only
        tol = 1e-9 * max(abs(v).max(), 1.0)
        for k in range(bins):
            surely = ((v > left[k] + tol) & (v < right[k] - tol)).sum()
            maybe = ((v >= left[k] - tol) & (v <= right[k] + tol)).sum()
            assert surely <= y[k] <= maybe, (trial, k)


def test_histogram_of_equal_values_and_bad_values() -> None:
    from detviz.figures.dataset import _get_histogram_info, histogram_figure

    for value in (0.5, 7.0, 40.0, 1000.0):  # one value: one bar holds them all
        x, y, width = _get_histogram_info(np.full(3, value), 4, False, False)
        assert y == [3, 0, 0, 0] and x[0] - width[0] / 2 == value and all(w > 0 for w in width)
    assert _get_histogram_info(np.array([0, 2, 2, 5]), 10, False, True) == (
        [0, 1, 2, 3, 4, 5],
        [1, 0, 2, 0, 0, 1],
        None,
    )
    with pytest.raises(ValueError, match="positive and finite"):
        histogram_figure(np.array([0.0, 1.0]), "t", "ratio", log_x=True)
    with pytest.raises(ValueError, match="finite"):
        histogram_figure(np.array([np.nan, 1.0]), "t", "size")
