"""Datasets: VOC and COCO readers, the built-in demo set, a torch Dataset with augmentation."""

from typing import Any

from detviz.data.coco import read_coco
from detviz.data.images import image_from_bytes, load_image
from detviz.data.records import DataError, DatasetIndex, ImageRecord, IndexArrays
from detviz.data.voc import VOC_CLASSES, list_voc_splits, read_voc

__all__ = [
    "DEMO_CLASS_NAMES",
    "VOC_CLASSES",
    "DataError",
    "DatasetIndex",
    "ImageRecord",
    "IndexArrays",
    "image_from_bytes",
    "list_voc_splits",
    "load_image",
    "make_demo_dataset",
    "read_coco",
    "read_voc",
]


def __getattr__(name: str) -> Any:
    # detviz.data.demo is also a script (python -m detviz.data.demo); importing it lazily keeps
    # runpy from finding it already imported.
    if name in ("make_demo_dataset", "DEMO_CLASS_NAMES"):
        from detviz.data import demo

        return getattr(demo, name)
    raise AttributeError(f"module 'detviz.data' has no attribute {name!r}")
