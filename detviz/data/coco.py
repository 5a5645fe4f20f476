"""COCO-format reader (e.g. the lesson's `pascal_train2007.json`) -> `DatasetIndex`.

A COCO box `[x, y, w, h]` becomes the pixel xyxy box `[x, y, x + w, y + h]`; for the lesson's
Pascal json (x = xmin - 1, w = xmax - xmin + 1) that equals what `read_voc` gives for the same
object. Category ids are mapped to labels 0 .. C-1 in increasing id order. An annotation with
`ignore` (the Pascal json's flag for VOC "difficult") or `iscrowd` set is kept as difficult.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from detviz.data.records import Annotation, DataError, DatasetIndex, check_pixel_box


def read_coco(json_path: str | Path, image_dir: str | Path, *, strict: bool = True) -> DatasetIndex:
    """Reads a COCO-format detection json and its image folder.

    Args:
        json_path: the json file with `images`, `annotations` and `categories`.
        image_dir: folder the images' `file_name`s are relative to.
        strict: raise on the first broken image or annotation (True), or skip the images they
            belong to and list them in `index.problems` (False).

    Returns:
        The index, images in the json's order; images without annotations are kept.

    Raises:
        DataError: the file is missing or not json, a top-level list or a field is missing, a
            category id is unknown or repeated, or (strict) an annotation or image is broken.
    """
    json_path = Path(json_path).expanduser().resolve()
    image_dir = Path(image_dir).expanduser().resolve()
    if not json_path.is_file():
        raise DataError(f"{json_path}: COCO json file not found.")
    if not image_dir.is_dir():
        raise DataError(f"{image_dir}: image folder not found.")
    try:
        data = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{json_path}: cannot read the file ({e}).") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{json_path}: not valid json (line {e.lineno}, column {e.colno}: {e.msg}).") from None
    if not isinstance(data, dict):
        raise DataError(f"{json_path}: the top level must be an object with images, annotations and categories.")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DataError(
                f"{json_path}: missing the list {key!r}; a COCO detection json has images, annotations and categories."
            )

    classes, cat_to_label = _categories(data["categories"], json_path)
    images, problems = _images(data["images"], json_path)
    objects: dict[Any, list[tuple]] = {image_id: [] for image_id in images}
    bad_images: dict[Any, str] = {}
    warnings: list[str] = []
    for n, ann in enumerate(data["annotations"]):
        try:
            image_id, obj, warning = _annotation(ann, n, images, cat_to_label, classes, json_path)
        except _BadImageAnnotation as e:
            bad_images.setdefault(e.image_id, str(e))
            continue
        except DataError as e:
            problems.append(str(e))
            continue
        objects[image_id].append(obj)
        if warning:
            warnings.append(warning)

    files = _existing_files(image_dir)
    annotations = []
    for image_id, (file_name, width, height) in images.items():
        if image_id in bad_images:
            problems.append(bad_images[image_id])
            continue
        if file_name not in files and not (image_dir / file_name).is_file():
            problems.append(
                f"{json_path}: image id {image_id} has file_name {file_name!r}, which is not in {image_dir}."
            )
            continue
        rows = objects[image_id]
        annotations.append(
            Annotation(
                image_id=str(image_id),
                image_path=image_dir / file_name,
                width=width,
                height=height,
                boxes=[r[0] for r in rows],
                labels=[r[1] for r in rows],
                difficult=[r[2] for r in rows],
                truncated=[False] * len(rows),
            )
        )
    if strict and problems:
        more = len(problems) - 1
        raise DataError(problems[0] + (f" ({more} more problems)" if more else ""))
    index = DatasetIndex.from_annotations(
        classes, annotations, source=f"COCO {json_path}", problems=problems, warnings=warnings
    )
    index.category_ids = sorted(cat_to_label, key=cat_to_label.get)
    return index


class _BadImageAnnotation(DataError):
    """A broken annotation of a known image: the whole image is skipped when reading non-strictly."""

    def __init__(self, message: str, image_id: Any):
        super().__init__(message)
        self.image_id = image_id


def _categories(categories: list, json_path: Path) -> tuple[list[str], dict[Any, int]]:
    ids: dict[Any, str] = {}
    for n, cat in enumerate(categories):
        if not isinstance(cat, dict) or "id" not in cat or "name" not in cat:
            raise DataError(f"{json_path}: category {n} needs an 'id' and a 'name'.")
        if cat["id"] in ids:
            raise DataError(f"{json_path}: category id {cat['id']!r} appears twice; category ids must be unique.")
        ids[cat["id"]] = str(cat["name"])
    if not ids:
        raise DataError(f"{json_path}: no categories; a detection dataset needs at least one class.")
    try:
        ordered = sorted(ids)
    except TypeError:
        raise DataError(f"{json_path}: category ids must all be numbers (or all strings).") from None
    return [ids[i] for i in ordered], {cat_id: label for label, cat_id in enumerate(ordered)}


def _images(images: list, json_path: Path) -> tuple[dict[Any, tuple[str, int, int]], list[str]]:
    out: dict[Any, tuple[str, int, int]] = {}
    problems: list[str] = []
    for n, img in enumerate(images):
        if not isinstance(img, dict) or "id" not in img:
            raise DataError(f"{json_path}: images[{n}] has no 'id'.")
        if img["id"] in out:
            raise DataError(f"{json_path}: image id {img['id']!r} appears twice in images; image ids must be unique.")
        file_name, width, height = (
            img.get("file_name"),
            img.get("width"),
            img.get("height"),
        )
        if not isinstance(file_name, str) or not file_name or os.path.isabs(file_name) or ".." in Path(file_name).parts:
            problems.append(
                f"{json_path}: images[{n}] (id {img['id']}) has file_name {file_name!r}; give a path inside the image folder."
            )
            continue
        if not (_is_int(width) and _is_int(height) and width > 0 and height > 0):
            problems.append(
                f"{json_path}: images[{n}] (id {img['id']}) has width {width!r} and height {height!r}; both must be positive integers."
            )
            continue
        out[img["id"]] = (file_name, int(width), int(height))
    return out, problems


def _annotation(
    ann: Any,
    n: int,
    images: dict[Any, tuple[str, int, int]],
    cat_to_label: dict[Any, int],
    classes: list[str],
    json_path: Path,
) -> tuple[Any, tuple, str | None]:
    where = f"{json_path}: annotations[{n}]"
    if not isinstance(ann, dict):
        raise DataError(f"{where} is not an object.")
    if "id" in ann:
        where += f" (id {ann['id']})"
    image_id = ann.get("image_id")
    if image_id not in images:
        raise DataError(
            f"{where} refers to image id {image_id!r}, which is not in images (or that image entry is broken)."
        )
    category = ann.get("category_id")
    if category not in cat_to_label:
        raise _BadImageAnnotation(
            f"{where} has category_id {category!r}, which is not in categories (ids: {', '.join(map(str, cat_to_label))}).",
            image_id,
        )
    bbox = ann.get("bbox")
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)):
        raise _BadImageAnnotation(f"{where} has bbox {bbox!r}; it must be [x, y, width, height].", image_id)
    x, y, w, h = (float(v) for v in bbox)
    if w <= 0 or h <= 0:
        raise _BadImageAnnotation(
            f"{where} has bbox {bbox!r} with width {w:g} and height {h:g}; both must be positive.",
            image_id,
        )
    label = cat_to_label[category]
    _, width, height = images[image_id]
    try:
        box, warning = check_pixel_box((x, y, x + w, y + h), width, height, f"{where} ({classes[label]})")
    except DataError as e:
        raise _BadImageAnnotation(str(e), image_id) from None
    difficult = bool(ann.get("ignore", 0)) or bool(ann.get("iscrowd", 0))
    return image_id, (box, label, difficult), warning


def _existing_files(image_dir: Path) -> set[str]:
    with os.scandir(image_dir) as entries:
        return {e.name for e in entries}


def _is_int(v: Any) -> bool:
    return (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer())
