"""Pascal VOC reader: `ImageSets/Main/{split}.txt` + `Annotations/*.xml` -> `DatasetIndex`.

The split "all" is every annotation in `Annotations/` (sorted by id), split files or not. The
class list is `classes.txt` when the folder has one, else VOC_CLASSES, unless the annotations name
classes outside those 20: then it is inferred (the sorted names found over all of `Annotations/`,
so every split of the folder gets the same labels) and the reader says so (a warning, and
`DatasetIndex.class_note`).

XML is parsed with defusedxml (entity-expansion and external-entity attacks are refused).
Pixel boxes follow DESIGN: VOC's 1-based inclusive (xmin, ymin, xmax, ymax) becomes
(xmin - 1, ymin - 1, xmax, ymax).

The index of a folder is cached on disk (`$DETVIZ_CACHE_DIR`, default `~/.cache/detviz`) under
a key made of the paths, sizes and modification times of the split file, the class list, the
image folder and every annotation file, so a second open of an unchanged folder reads one
file instead of thousands.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from warnings import warn
from xml.etree.ElementTree import Element, ParseError

import numpy as np
from defusedxml import DefusedXmlException
from defusedxml import ElementTree as SafeET

from detviz.data.records import Annotation, DataError, DatasetIndex, IndexArrays, check_pixel_box

# The 20 Pascal VOC classes in the devkit's (alphabetical) order; label i is VOC_CLASSES[i].
VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
ALL_SPLIT = "all"  # every annotation in Annotations/, with or without split files
CACHE_VERSION = 2  # bump when the cached layout or the parsing rules change


def read_voc(
    root: str | Path,
    split: str = "train",
    classes: list[str] | None = None,
    *,
    strict: bool = True,
    cache: bool = True,
) -> DatasetIndex:
    """Reads one split of a VOC-layout folder.

    Args:
        root: folder holding `Annotations/`, `JPEGImages/` and (for splits other than "all")
            `ImageSets/Main/`.
        split: name of the split file `ImageSets/Main/{split}.txt`, or "all": every annotation.
        classes: class names in label order; default `root/classes.txt` if present, else
            VOC_CLASSES, or the sorted names found in `Annotations/` when some are not VOC
            classes (warned once per call, and said in `index.class_note`).
        strict: raise on the first broken annotation (True), or skip broken images and list
            them in `index.problems` (False).
        cache: use and refresh the on-disk index cache.

    Returns:
        The index; images with no objects are kept. Boxes partly outside the image are
        clipped to it and noted in `index.warnings`.

    Raises:
        DataError: the folder or split file is missing, the split is empty, the class list is
            invalid, or (strict) an annotation is broken; the message names the file.
    """
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DataError(f"{root}: VOC folder not found; give the folder that holds Annotations/ and JPEGImages/.")
    ann_dir, img_dir = root / "Annotations", root / "JPEGImages"
    for sub in (ann_dir, img_dir):
        if not sub.is_dir():
            raise DataError(
                f"{sub}: folder not found; a VOC folder holds Annotations/, JPEGImages/ and ImageSets/Main/."
            )
    split_file, image_ids = _split_ids(root, split)
    classes_file = root / "classes.txt"
    given = list(classes) if classes is not None else _read_classes(classes_file)
    if given is not None:
        _check_classes(given, classes_file if classes is None else None)
    class_source = "the classes given" if classes is not None else str(classes_file)

    ann_paths = [ann_dir / f"{image_id}.xml" for image_id in image_ids]
    # Inferred classes depend on every annotation file, not only the split's.
    others = annotation_files(root) if given is None and split != ALL_SPLIT else []
    key = _cache_key(root, split, given, split_file, classes_file, img_dir, ann_paths + others)
    cache_file = _cache_dir() / f"voc-{hashlib.sha1(f'{root}|{split}'.encode()).hexdigest()[:20]}.npz"
    index = _load_cache(cache_file, key, root) if cache else None
    if index is None:
        class_names, note = (given, "") if given is not None else infer_voc_classes(root, others or ann_paths)
        index = _parse_split(root, split, class_names, image_ids, ann_paths, img_dir, class_source)
        index.class_note = note
        if cache:
            _save_cache(cache_file, key, root, index)
    if index.class_note:
        warn(index.class_note, stacklevel=2)
    if strict and index.problems:
        more = len(index.problems) - 1
        raise DataError(index.problems[0] + (f" ({more} more broken files)" if more else ""))
    return index


def _split_ids(root: Path, split: str) -> tuple[Path, list[str]]:
    """The file whose stamp stands for the split (for "all": Annotations/, whose stamp changes when
    files come or go) and the split's image ids."""
    if split == ALL_SPLIT:
        ids = [p.stem for p in annotation_files(root)]
        if not ids:
            raise DataError(f"{root / 'Annotations'}: no annotation files (*.xml); the split {ALL_SPLIT!r} is empty.")
        return root / "Annotations", ids
    split_file = root / "ImageSets" / "Main" / f"{split}.txt"
    if not split_file.is_file():
        found = ", ".join(list_voc_splits(root)) or "none"
        raise DataError(
            f"{split_file}: split file not found; splits in this folder: {found} "
            f"(and {ALL_SPLIT!r}, every annotation; `python -m detviz.data.split --root {root}` makes train/val)."
        )
    return split_file, _read_split(split_file)


def list_voc_splits(root: str | Path) -> list[str]:
    """Names of the split files in `root/ImageSets/Main` (class-specific `*_train.txt` left out)."""
    main = Path(root).expanduser() / "ImageSets" / "Main"
    if not main.is_dir():
        return []
    return sorted(p.stem for p in main.glob("*.txt") if "_" not in p.stem)


def annotation_files(root: str | Path) -> list[Path]:
    """Every `root/Annotations/*.xml`, sorted by image id ([] when the folder is missing)."""
    ann_dir = Path(root).expanduser() / "Annotations"
    if not ann_dir.is_dir():
        return []
    with os.scandir(ann_dir) as entries:
        stems = sorted(e.name[: -len(".xml")] for e in entries if e.name.endswith(".xml") and e.is_file())
    return [ann_dir / f"{stem}.xml" for stem in stems]


def object_names(path: Path) -> list[str]:
    """The object names of one annotation file, in file order ("" for an object without a name).

    Raises:
        DataError: the file is missing, is not XML, or is an XML attack.
    """
    return [(obj.findtext("name") or "").strip() for obj in _parse_xml(path, path.stem).iter("object")]


def infer_voc_classes(root: str | Path, paths: list[Path] | None = None) -> tuple[list[str], str]:
    """The class list of a folder without `classes.txt`, and a note when it was inferred.

    Args:
        root: the VOC folder (named in the note).
        paths: the annotation files to read; default every file in `root/Annotations`.

    Returns:
        (VOC_CLASSES, "") when every object name is a VOC class (or there are none), else the sorted
        unique names and one sentence saying so. Broken files are left to the reader to report.
    """
    names: set[str] = set()
    for path in annotation_files(root) if paths is None else paths:
        try:
            names.update(n for n in object_names(path) if n)
        except DataError:
            continue
    unknown = sorted(names - set(VOC_CLASSES))
    if not unknown:
        return list(VOC_CLASSES), ""
    classes = sorted(names)
    shown = ", ".join(classes[:12]) + (f", … ({len(classes)} in all)" if len(classes) > 12 else "")
    note = (f"{root}: no classes.txt, and the annotations name classes that are not VOC classes "
            f"({', '.join(unknown[:5])}{', …' if len(unknown) > 5 else ''}); using the names found in Annotations/, "
            f"sorted: {shown}. Write classes.txt (one name per line) to fix the list and its order.")  # fmt: skip
    return classes, note


def _parse_xml(path: Path, image_id: str) -> Element:
    try:
        return SafeET.parse(path).getroot()
    except FileNotFoundError:
        raise DataError(f"{path}: annotation file not found for image {image_id!r} listed in the split file.") from None
    except DefusedXmlException as e:
        raise DataError(f"{path}: refused unsafe XML ({type(e).__name__}); the file is not a VOC annotation.") from None
    except ParseError as e:
        raise DataError(f"{path}: not valid XML ({e}).") from None


def parse_voc_xml(
    path: Path, image_id: str, class_to_label: dict[str, int], class_source: str = "the class list"
) -> tuple[dict, list[str]]:
    """Parses one annotation file.

    Args:
        class_source: where the class list came from (a classes.txt path), named when a name is unknown.

    Returns:
        A dict with width, height, filename, boxes (pixel xyxy), labels, difficult, truncated,
        and the warnings raised while reading it.

    Raises:
        DataError: the file is missing, is not XML, is an XML attack, lacks `size` or `bndbox`,
            or holds an empty box or an unknown class.
    """
    ann = _parse_xml(path, image_id)
    size = ann.find("size")
    if size is None:
        raise DataError(f"{path}: no <size> element; VOC annotations state the image width and height.")
    width = _number(size, "width", path, "<size>")
    height = _number(size, "height", path, "<size>")
    if width <= 0 or height <= 0 or width != int(width) or height != int(height):
        raise DataError(f"{path}: <size> has width {width:g} and height {height:g}; both must be positive integers.")
    out: dict = {
        "width": int(width),
        "height": int(height),
        "filename": (ann.findtext("filename") or "").strip(),
    }
    boxes, labels, difficult, truncated, warnings = [], [], [], [], []
    for k, obj in enumerate(ann.iter("object"), start=1):
        name = (obj.findtext("name") or "").strip()
        where = f"{path}: object {k} ({name or 'no name'})"
        if name not in class_to_label:
            raise DataError(
                f"{where} has class {name!r}, which is not in {class_source}; fix the name or add it to classes.txt."
            )
        bnd = obj.find("bndbox")
        if bnd is None:
            raise DataError(f"{where} has no <bndbox>.")
        xmin, ymin, xmax, ymax = (
            _number(bnd, tag, path, f"object {k} <bndbox>") for tag in ("xmin", "ymin", "xmax", "ymax")
        )
        if xmax <= xmin:
            raise DataError(f"{where}: xmax ({xmax:g}) <= xmin ({xmin:g}); fix the file or remove the object.")
        if ymax <= ymin:
            raise DataError(f"{where}: ymax ({ymax:g}) <= ymin ({ymin:g}); fix the file or remove the object.")
        box, warning = check_pixel_box((xmin - 1.0, ymin - 1.0, xmax, ymax), int(width), int(height), where)
        if warning:
            warnings.append(warning)
        boxes.append(box)
        labels.append(class_to_label[name])
        difficult.append(_flag(obj, "difficult", where))
        truncated.append(_flag(obj, "truncated", where))
    out.update(boxes=boxes, labels=labels, difficult=difficult, truncated=truncated)
    return out, warnings


def _parse_split(
    root: Path,
    split: str,
    classes: list[str],
    image_ids: list[str],
    ann_paths: list[Path],
    img_dir: Path,
    class_source: str,
) -> DatasetIndex:
    class_to_label = {name: i for i, name in enumerate(classes)}
    image_files = _image_files(img_dir)
    annotations, problems, warnings = [], [], []
    for image_id, ann_path in zip(image_ids, ann_paths, strict=True):
        try:
            parsed, file_warnings = parse_voc_xml(ann_path, image_id, class_to_label, class_source)
            image_path = _find_image(img_dir, image_files, image_id, parsed["filename"], ann_path)
        except DataError as e:
            problems.append(str(e))
            continue
        warnings += file_warnings
        annotations.append(
            Annotation(
                image_id=image_id,
                image_path=image_path,
                width=parsed["width"],
                height=parsed["height"],
                boxes=parsed["boxes"],
                labels=parsed["labels"],
                difficult=parsed["difficult"],
                truncated=parsed["truncated"],
            )
        )
    return DatasetIndex.from_annotations(
        classes,
        annotations,
        source=f"VOC {root} ({split})",
        problems=problems,
        warnings=warnings,
    )


def _read_split(split_file: Path) -> list[str]:
    try:
        lines = split_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{split_file}: cannot read the split file ({e}).") from None
    ids = [line.split()[0] for line in lines if line.strip()]
    if not ids:
        raise DataError(f"{split_file}: the split is empty; list one image id per line.")
    seen: set[str] = set()
    for n, image_id in enumerate(ids, start=1):
        if image_id in seen:
            raise DataError(f"{split_file}: image id {image_id!r} appears twice (line {n}); list each image once.")
        if "/" in image_id or "\\" in image_id or image_id.startswith("."):
            raise DataError(f"{split_file}: line {n} ({image_id!r}) is not a plain image id.")
        seen.add(image_id)
    return ids


def _read_classes(classes_file: Path) -> list[str] | None:
    """The names in classes.txt; None when there is no such file."""
    if not classes_file.is_file():
        return None
    try:
        return [line.strip() for line in classes_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{classes_file}: cannot read the class list ({e}).") from None


def _check_classes(classes: list[str], source: Path | None) -> None:
    where = str(source) if source else "classes"
    if not classes:
        raise DataError(f"{where}: the class list is empty; give one class name per line.")
    dupes = sorted({c for c in classes if classes.count(c) > 1})
    if dupes:
        raise DataError(f"{where}: class names must be unique; repeated: {', '.join(dupes)}.")


def _number(parent: Element, tag: str, path: Path, context: str) -> float:
    text = parent.findtext(tag)
    if text is None:
        raise DataError(f"{path}: {context} has no <{tag}>.")
    try:
        return float(text.strip())
    except ValueError:
        raise DataError(f"{path}: {context} <{tag}> is {text.strip()!r}, not a number.") from None


def _flag(obj: Element, tag: str, where: str) -> bool:
    text = (obj.findtext(tag) or "0").strip()
    if text not in ("0", "1"):
        raise DataError(f"{where}: <{tag}> is {text!r}; it must be 0 or 1.")
    return text == "1"


def _image_files(img_dir: Path) -> dict[str, str]:
    """Maps file name and stem to the file name, for every image file in the folder."""
    files: dict[str, str] = {}
    with os.scandir(img_dir) as entries:
        for e in entries:
            stem, ext = os.path.splitext(e.name)
            if ext.lower() in IMAGE_EXTENSIONS:
                files[e.name] = e.name
                if stem not in files or ext.lower() in (".jpg", ".jpeg"):
                    files[stem] = e.name
    return files


def _find_image(img_dir: Path, files: dict[str, str], image_id: str, filename: str, ann_path: Path) -> Path:
    name = files.get(filename) or files.get(image_id)
    if name is None:
        raise DataError(
            f"{ann_path}: image file for {image_id!r} not found in {img_dir} (looked for {filename or image_id + '.jpg'})."
        )
    return img_dir / name


# --- on-disk index cache ---------------------------------------------------------------


def _cache_dir() -> Path:
    if os.environ.get("DETVIZ_CACHE_DIR"):
        return Path(os.environ["DETVIZ_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "detviz"


def file_stamp(path: Path) -> tuple[int, int]:
    """(size, mtime in ns) of a file or folder; (-1, -1) when it is missing."""
    try:
        st = path.stat()
    except OSError:
        return (-1, -1)
    return (st.st_size, st.st_mtime_ns)


def _cache_key(
    root: Path,
    split: str,
    classes: list[str] | None,
    split_file: Path,
    classes_file: Path,
    img_dir: Path,
    ann_paths: list[Path],
) -> str:
    h = hashlib.sha1()
    h.update(json.dumps([CACHE_VERSION, str(root), split, classes]).encode())
    for path in (split_file, classes_file, img_dir):
        h.update(repr(file_stamp(path)).encode())
    for path in ann_paths:
        st = file_stamp(path)
        h.update(b"%d:%d;" % st)
    return h.hexdigest()


def _save_cache(cache_file: Path, key: str, root: Path, index: DatasetIndex) -> None:
    meta = {
        "key": key,
        "classes": index.classes,
        "image_ids": index.image_ids,
        "image_files": [str(p.relative_to(root)) for p in index.image_paths],
        "source": index.source,
        "problems": index.problems,
        "warnings": index.warnings,
        "class_note": index.class_note,
    }
    arrays = {"meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **index.arrays._asdict()}
    tmp = None
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=cache_file.parent, suffix=".tmp", delete=False) as f:
            tmp = Path(f.name)
            np.savez(f, **arrays)
        os.replace(tmp, cache_file)  # atomic: readers see the old file or the new one
    except OSError:  # the cache only saves time; a read-only or full disk must not stop reading the data
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def _load_cache(cache_file: Path, key: str, root: Path) -> DatasetIndex | None:
    """The cached index, or None when the file is missing, stale or broken (then the folder is read)."""
    try:
        with np.load(cache_file, allow_pickle=False) as z:
            meta = json.loads(z["meta"].tobytes())
            if meta.get("key") != key:
                return None
            arrays = {name: z[name] for name in IndexArrays._fields}
        return DatasetIndex(
            classes=meta["classes"],
            image_ids=meta["image_ids"],
            image_paths=[root / f for f in meta["image_files"]],
            source=meta["source"],
            problems=meta["problems"],
            warnings=meta["warnings"],
            class_note=meta["class_note"],
            **arrays,
        )
    except (OSError, ValueError, KeyError, json.JSONDecodeError):
        return None
