"""Train/val split files for a VOC folder that has none: `make_splits` and its command line.

    python -m detviz.data.split --root DIR --val 0.2 --seed 0 [--overwrite]

writes `DIR/ImageSets/Main/train.txt` and `val.txt` over every annotation in `DIR/Annotations`.
The split is stratified by each image's rarest class (the class of the image found in the fewest
images; images without objects form a group of their own), so every class that has enough
images lands in both splits in about the asked proportion, and it is the same for the same seed.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from detviz.data.records import DataError
from detviz.data.voc import annotation_files, object_names

DEFAULT_VAL_FRACTION = 0.2
SPLIT_NAMES = ("train", "val")
NO_OBJECTS = ""  # the stratum of images without objects


def stratified_split(
    image_classes: Mapping[str, Iterable[str]], val_fraction: float, seed: int = 0
) -> dict[str, list[str]]:
    """Splits image ids into train and val, stratified by each image's rarest class.

    Args:
        image_classes: image id -> the class names of its objects (repeats and none allowed).
        val_fraction: share of the images for val, in (0, 1).
        seed: the shuffle inside each stratum; the same seed gives the same split.

    Returns:
        {"train": ids, "val": ids}, each sorted. With n >= 2 images both are non-empty: val holds
        round(n * val_fraction) images, at least 1 and at most n - 1. Within each stratum, val
        takes every 1/val_fraction-th image of the shuffled stratum, so strata too small for a
        val image (a class seen once) stay in train.

    Raises:
        ValueError: val_fraction outside (0, 1), or fewer than two images.
    """
    _check_fraction(val_fraction)
    n = len(image_classes)
    if n < 2:
        raise ValueError(f"{n} image(s): a train/val split needs at least two.")
    classes = {image_id: set(names) for image_id, names in image_classes.items()}
    images_with = Counter(name for names in classes.values() for name in names)

    def rarest(image_id: str) -> tuple[int, str]:
        names = classes[image_id]
        return min((images_with[c], c) for c in names) if names else (n + 1, NO_OBJECTS)

    strata: dict[tuple[int, str], list[str]] = {}
    for image_id in sorted(classes):
        strata.setdefault(rarest(image_id), []).append(image_id)
    rng = random.Random(seed)
    order: list[str] = []
    for stratum in sorted(strata):  # rarest class first, images without objects last
        ids = strata[stratum]
        rng.shuffle(ids)
        order += ids
    k = min(max(int(n * val_fraction + 0.5), 1), n - 1)
    # Systematic sampling over the strata laid end to end: position i goes to val when i * k / n
    # crosses an integer, which gives exactly k val images spread evenly over every stratum.
    val = {image_id for i, image_id in enumerate(order) if (i + 1) * k // n > i * k // n}
    return {"train": sorted(set(order) - val), "val": sorted(val)}


def _check_fraction(val_fraction: float) -> None:
    if not 0 < val_fraction < 1:  # NaN fails too
        raise ValueError(f"val fraction {val_fraction}: must lie strictly between 0 and 1 (e.g. 0.2).")


def make_splits(
    root: str | Path,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    seed: int = 0,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, list[str]]:
    """Writes `root/ImageSets/Main/train.txt` and `val.txt` over every annotation in `root/Annotations`.

    Args:
        root: a VOC-layout folder.
        val_fraction: share of the images for val, in (0, 1).
        seed: see `stratified_split`.
        overwrite: replace existing train.txt / val.txt (else they are an error).
        progress: called as progress(done, total) while the annotations are read.

    Returns:
        {"train": ids, "val": ids} as written (sorted, one id per line).

    Raises:
        ValueError: val_fraction outside (0, 1).
        DataError: the folder or its annotations are missing, an annotation is broken, there is
            only one image, or a split file exists and `overwrite` is False; the message names the file.
    """
    _check_fraction(val_fraction)
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: VOC folder not found; give the folder that holds Annotations/ and JPEGImages/.")
    main = root / "ImageSets" / "Main"
    targets = {name: main / f"{name}.txt" for name in SPLIT_NAMES}
    existing = [path for path in targets.values() if path.exists()]
    if existing and not overwrite:
        raise DataError(f"{existing[0]}: split file exists already; pass --overwrite (overwrite=True) to replace it.")
    paths = annotation_files(root)
    if not paths:
        raise DataError(f"{root / 'Annotations'}: no annotation files (*.xml); nothing to split.")
    if len(paths) < 2:
        raise DataError(f"{paths[0]}: the only annotation file; a train/val split needs at least two images.")
    image_classes = {}
    for done, path in enumerate(paths, start=1):
        image_classes[path.stem] = [name for name in object_names(path) if name]
        if progress is not None:
            progress(done, len(paths))
    splits = stratified_split(image_classes, val_fraction, seed)
    try:
        main.mkdir(parents=True, exist_ok=True)
        for name, path in targets.items():
            path.write_text("".join(f"{image_id}\n" for image_id in splits[name]), encoding="utf-8")
    except OSError as e:
        raise DataError(f"{main}: cannot write the split files ({e.strerror or e}).") from None
    return splits


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m detviz.data.split",
        description="Write ImageSets/Main/train.txt and val.txt for a VOC folder, stratified by class.",
    )
    parser.add_argument("--root", type=Path, required=True, help="the VOC folder (holds Annotations/)")
    parser.add_argument("--val", type=float, default=DEFAULT_VAL_FRACTION,
                        help=f"share of the images for val, in (0, 1) (default: {DEFAULT_VAL_FRACTION})")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing train.txt / val.txt")
    args = parser.parse_args(argv)
    from tqdm import tqdm

    bar = tqdm(unit="file", desc="reading annotations", disable=None)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        splits = make_splits(args.root, args.val, args.seed, overwrite=args.overwrite, progress=progress)
    except ValueError as e:  # DataError is a ValueError
        bar.close()
        print(f"error: {e}", file=sys.stderr)
        return 1
    bar.close()
    main_dir = Path(args.root).expanduser() / "ImageSets" / "Main"
    print(f"wrote {main_dir / 'train.txt'} ({len(splits['train'])} images) and val.txt ({len(splits['val'])} images)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
