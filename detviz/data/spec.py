"""Dataset specs: one string names a dataset for the app's URL and the command lines.

    demo                      the built-in demo set in $DETVIZ_DEMO_DIR (default data/demo)
    demo:<folder>             a demo set elsewhere
    voc:<folder>              a VOC-layout folder
    coco:<json>,<image dir>   a COCO-format json and the folder its file names are relative to

A split (train, val, ..., or "all": every annotation) is given separately; COCO has none (the
json is the split).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from detviz.data.coco import read_coco
from detviz.data.records import DataError, DatasetIndex
from detviz.data.voc import ALL_SPLIT, file_stamp, list_voc_splits, read_voc

KINDS = ("demo", "voc", "coco")


@dataclass(frozen=True)
class DatasetSpec:
    """Where a dataset is. kind: "demo" | "voc" | "coco"; path: folder (demo, voc) or json (coco);
    image_dir: the image folder (coco only)."""

    kind: str
    path: str = ""
    image_dir: str = ""

    def __str__(self) -> str:
        if self.kind == "coco":
            return f"coco:{self.path},{self.image_dir}"
        return f"{self.kind}:{self.path}" if self.path else self.kind


def parse_dataset_spec(text: str) -> DatasetSpec:
    """Parses `demo`, `demo:<dir>`, `voc:<dir>` or `coco:<json>,<dir>`.

    Raises:
        ValueError: the text is none of these; the message lists the forms.
    """
    text = text.strip()
    kind, _, rest = text.partition(":")
    kind, rest = kind.strip().lower(), rest.strip()
    forms = "demo, demo:<folder>, voc:<folder> or coco:<json>,<image folder>"
    if kind not in KINDS:
        raise ValueError(f"dataset {text!r} is not one of {forms}.")
    if kind == "coco":
        json_path, _, image_dir = rest.partition(",")
        if not json_path.strip() or not image_dir.strip():
            raise ValueError(f"dataset {text!r}: a COCO dataset is coco:<json>,<image folder>.")
        return DatasetSpec("coco", json_path.strip(), image_dir.strip())
    if kind == "voc" and not rest:
        raise ValueError(f"dataset {text!r}: a VOC dataset is voc:<folder>.")
    return DatasetSpec(kind, rest)


def default_demo_dir() -> Path:
    """$DETVIZ_DEMO_DIR, or data/demo under the current folder."""
    return Path(os.environ.get("DETVIZ_DEMO_DIR") or "data/demo")


def spec_root(spec: DatasetSpec) -> Path:
    """The folder (demo, voc) or json file (coco) the spec points at."""
    if spec.kind == "demo" and not spec.path:
        return default_demo_dir()
    return Path(spec.path).expanduser()


def dataset_splits(spec: DatasetSpec) -> list[str]:
    """Split names available for the spec: the split files, then "all" when the folder has
    Annotations/ ([] for COCO, whose json is the split)."""
    if spec.kind == "coco":
        return []
    root = spec_root(spec)
    return list_voc_splits(root) + ([ALL_SPLIT] if (root / "Annotations").is_dir() else [])


def open_dataset(spec: DatasetSpec | str, split: str = "train", *, strict: bool = True) -> DatasetIndex:
    """Reads the dataset a spec names (see the module docstring); `split` is ignored for COCO.

    Raises:
        ValueError: a malformed spec. DataError: the files are missing or broken.
    """
    spec = parse_dataset_spec(spec) if isinstance(spec, str) else spec
    if spec.kind == "coco":
        return read_coco(spec.path, spec.image_dir, strict=strict)
    root = spec_root(spec)
    if spec.kind == "demo" and not (root / "demo.json").is_file():
        raise DataError(f"{root}: no demo dataset here yet; make it with `python -m detviz.data.demo --out {root}`.")
    return read_voc(root, split, strict=strict)


def check_within_roots(path: str | Path, roots: Sequence[str | Path]) -> Path:
    """Resolves a user-typed path and checks it lies inside one of `roots`.

    The app serves files to whoever can reach it (a classroom LAN, say), so paths typed in the
    browser are confined to the data folders the person running it chose. `..` is resolved
    before the check; symbolic links are not, so a link the operator put inside a root (e.g.
    data/VOC2007 -> /datasets/VOC2007) is allowed.

    Raises:
        DataError: the path is outside every root.
    """
    resolved = _lexical(path)
    for root in roots:
        if resolved.is_relative_to(_lexical(root)):
            return resolved
    allowed = ", ".join(str(_lexical(r)) for r in roots) or "none"
    raise DataError(
        f"{resolved}: outside the data folders this app may read ({allowed}); "
        "add its folder to DETVIZ_DATA_ROOTS when starting the app."
    )


def dataset_fingerprint(spec: DatasetSpec, split: str) -> tuple[tuple[int, int], ...]:
    """A cheap stamp of the files whose change means the dataset must be read again.

    Sizes and modification times of the split file, class list, json and the annotation and
    image folders (a folder's time changes when files are added, removed or replaced).
    """
    if spec.kind == "coco":
        paths = [Path(spec.path).expanduser(), Path(spec.image_dir).expanduser()]
    else:
        root = spec_root(spec)
        paths = [
            root / "ImageSets" / "Main" / f"{split}.txt",
            root / "classes.txt",
            root / "demo.json",
            root / "Annotations",
            root / "JPEGImages",
        ]
    return tuple(file_stamp(p) for p in paths)


def _lexical(path: str | Path) -> Path:
    """Absolute path with `.` and `..` removed, symbolic links kept."""
    return Path(os.path.normpath(Path(path).expanduser().absolute()))
