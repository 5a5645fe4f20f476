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


def _old_histogram(values: torch.Tensor, bins: int, log_x: bool) -> tuple[list, list, list]:
    """What histogram_figure showed when it binned with torch (torch.histc over torch.linspace edges)."""
    data = torch.log10(values) if log_x else values
    lo, hi = float(data.min()), float(data.max())
    hi = hi if hi > lo else lo + 1e-6
    counts = torch.histc(data, bins=bins, min=lo, max=hi)
    edges = torch.linspace(lo, hi, bins + 1)
    centers, widths = (edges[:-1] + edges[1:]) / 2, edges[1:] - edges[:-1]
    if log_x:
        centers, widths = 10**centers, 10 ** edges[1:] - 10 ** edges[:-1]
    return centers.tolist(), counts.tolist(), widths.tolist()


def _histogram_values(rng: np.random.Generator, trial: int, bins: int) -> np.ndarray:
    m = int(rng.integers(1, 800))
    kind = trial % 4
    if kind == 0:
        return rng.uniform(0, 1, m).astype(np.float32)
    if kind == 1:
        return rng.lognormal(0, 1.5, m).astype(np.float32)
    if kind == 2:  # every value exactly on a bin edge, the last one included
        lo, hi = np.sort(rng.uniform(0.05, 4, 2).astype(np.float32))
        edges = torch.linspace(float(lo), float(hi), bins + 1).numpy()
        return np.concatenate([edges[[0, -1]], rng.choice(edges, m)])
    return (rng.integers(1, 20, m) / rng.integers(1, 20)).astype(np.float32)  # many ties


def test_histogram_bins_as_torch_histc_did() -> None:
    from detviz.figures.dataset import _get_histogram_info, _histc_counts, _linspace_float32

    rng = np.random.default_rng(0)
    for trial in range(400):
        bins = int(rng.integers(1, 100))
        v = _histogram_values(rng, trial, bins)
        lo, hi = float(v.min()), float(v.max())
        hi = hi if hi > lo else lo + 1e-6  # as histogram_figure widens the range of equal values
        expected = torch.histc(torch.from_numpy(v), bins=bins, min=lo, max=hi).numpy()
        np.testing.assert_array_equal(_histc_counts(v, bins, lo, hi), expected)
        np.testing.assert_array_equal(_linspace_float32(lo, hi, bins + 1), torch.linspace(lo, hi, bins + 1).numpy())
        assert _get_histogram_info(v, bins, False, False) == _old_histogram(torch.from_numpy(v), bins, False)
        # log10 and 10 ** x are rounded from float64 (torch's float32 ones are 1 ulp off at times): the
        # same counts, centres to 2 ulp, widths (differences of edges) to a few ulp of the largest edge
        x, y, width = _get_histogram_info(v, bins, True, False)
        old_x, old_y, old_width = _old_histogram(torch.from_numpy(v), bins, True)
        assert y == old_y
        np.testing.assert_array_max_ulp(np.float32(x), np.float32(old_x), maxulp=2)
        np.testing.assert_allclose(width, old_width, rtol=0, atol=4 * float(np.spacing(v.max())))


def test_histogram_of_equal_values_and_bad_values() -> None:
    from detviz.figures.dataset import _get_histogram_info, histogram_figure

    for value in (0.5, 7.0, 40.0, 1000.0):  # a range of 1e-6 is empty in float32 from 32 up
        v = torch.full((3,), value)
        assert _get_histogram_info(v.numpy(), 4, False, False) == _old_histogram(v, 4, False)
    with pytest.raises(ValueError, match="positive and finite"):
        histogram_figure(np.array([0.0, 1.0]), "t", "ratio", log_x=True)
    with pytest.raises(ValueError, match="finite"):
        histogram_figure(np.array([np.nan, 1.0]), "t", "size")
