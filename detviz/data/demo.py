"""The built-in demo dataset: drawn objects on textured backgrounds, in VOC layout.

Nothing to download: `make_demo_dataset` draws it from a seed. Eight classes of shapes, each
with its own colour family and typical aspect ratio (`pole` is tall, `plank` is wide, so
anchors with several ratios matter); 1-8 objects per image; sizes from a few percent of the
image to most of it; overlaps with partial occlusion (every object stays at least 40%
visible); objects cut by the image border (`truncated`); tiny or heavily hidden objects marked
`difficult`. Boxes are the visible extent, as the VOC guidelines ask.

Layout written: `Annotations/*.xml`, `JPEGImages/*.jpg`, `ImageSets/Main/{train,val}.txt`,
`classes.txt`, the same annotations as COCO json (`coco_{split}.json`, the lesson's Pascal
json format) and `demo.json` (the settings; written last, so its presence marks a complete set).
The same seed gives byte-identical annotations; each image has its own random stream, so the
result does not depend on the number of worker processes.

Run `python -m detviz.data.demo --out data/demo` to make it from the command line.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from detviz.data.records import DataError

DEMO_VERSION = 1  # bump when the drawing changes, so old folders are recognised as stale


@dataclass(frozen=True)
class ShapeClass:
    name: str
    hue: float  # colour family, 0..1 on the HSV wheel
    aspect: tuple[float, float]  # range of height / width


DEMO_CLASSES: tuple[ShapeClass, ...] = (
    ShapeClass("disc", 0.00, (0.75, 1.33)),
    ShapeClass("block", 0.58, (0.7, 1.4)),
    ShapeClass("triangle", 0.14, (0.7, 1.4)),
    ShapeClass("star", 0.80, (0.8, 1.25)),
    ShapeClass("cross", 0.33, (0.75, 1.33)),
    ShapeClass("ring", 0.07, (0.75, 1.33)),
    ShapeClass("pole", 0.50, (2.2, 4.5)),
    ShapeClass("plank", 0.92, (1 / 4.5, 1 / 2.2)),
)
DEMO_CLASS_NAMES: tuple[str, ...] = tuple(c.name for c in DEMO_CLASSES)

# Objects per image: 1..8, fewer more often.
OBJECT_COUNT_WEIGHTS = np.array([0.20, 0.19, 0.16, 0.13, 0.11, 0.09, 0.07, 0.05])
SIZE_RANGE = (0.07, 0.55)  # sqrt(object area / image area), drawn log-uniformly
MIN_VISIBLE = 0.40  # every object keeps at least this share of its pixels visible
DIFFICULT_VISIBLE = 0.55  # below this visible share an object is marked difficult
DIFFICULT_MIN_PIXELS = 110  # ... and so is one with fewer visible pixels than this
TRUNCATED_OUTSIDE = 0.12  # share of pixels outside the image above which it is truncated
SUPERSAMPLE = 2  # shapes are drawn at this scale and reduced, for smooth edges


@dataclass(frozen=True)
class DemoSettings:
    n_train: int = 800
    n_val: int = 200
    seed: int = 0
    min_size: int = 224
    max_size: int = 320
    version: int = DEMO_VERSION


def make_demo_dataset(
    out_dir: str | Path,
    n_train: int = 800,
    n_val: int = 200,
    seed: int = 0,
    *,
    min_size: int = 224,
    max_size: int = 320,
    workers: int | None = None,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Draws the demo dataset into `out_dir` (VOC layout + classes.txt + COCO json).

    Args:
        out_dir: target folder; must not exist, be empty, or hold a demo dataset.
        n_train, n_val: number of images per split.
        seed: the dataset's seed; the same seed gives byte-identical annotations.
        min_size, max_size: range of image widths and heights in pixels.
        workers: drawing processes (default: up to 4, one per core).
        overwrite: replace a demo dataset made with other settings.
        progress: called as progress(done, total) while images are drawn.

    Returns:
        The folder. If it already holds a complete demo dataset with the same settings,
        nothing is drawn.

    Raises:
        ValueError: bad counts or sizes.
        DataError: `out_dir` holds other files, or a demo set with other settings and
            `overwrite` is False.
    """
    if n_train < 0 or n_val < 0 or n_train + n_val == 0:
        raise ValueError(f"n_train ({n_train}) and n_val ({n_val}) must be >= 0 and not both 0.")
    if not 32 <= min_size <= max_size <= 4096:
        raise ValueError(f"image sizes must satisfy 32 <= min_size ({min_size}) <= max_size ({max_size}) <= 4096.")
    out_dir = Path(out_dir).expanduser().resolve()
    settings = DemoSettings(n_train, n_val, seed, min_size, max_size)
    existing = read_demo_settings(out_dir)
    if existing == settings:
        return out_dir
    if out_dir.exists() and any(out_dir.iterdir()):
        if existing is None:
            raise DataError(f"{out_dir}: folder is not empty and is not a demo dataset; choose another folder.")
        if not overwrite:
            raise DataError(
                f"{out_dir}: holds a demo dataset made with other settings ({existing}); pass overwrite to replace it."
            )

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        _write_dataset(tmp, settings, workers, progress)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def read_demo_settings(folder: str | Path) -> DemoSettings | None:
    """The settings of the complete demo dataset in `folder`, or None if there is none."""
    try:
        data = json.loads((Path(folder) / "demo.json").read_text())
        return DemoSettings(**data)
    except (OSError, ValueError, TypeError):
        return None


# --- writing -------------------------------------------------------------------------


def _write_dataset(root: Path, settings: DemoSettings, workers: int | None, progress) -> None:
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True)
    splits = {
        "train": range(settings.n_train),
        "val": range(settings.n_train, settings.n_train + settings.n_val),
    }
    jobs = [(root, settings, i) for i in range(settings.n_train + settings.n_val)]
    workers = workers or min(4, os.cpu_count() or 1)
    if workers > 1 and len(jobs) >= 32:
        # spawn, not fork: the caller may be a threaded server (the app's "draw" button)
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            results = []
            for r in pool.map(_draw_and_save, jobs, chunksize=16):
                results.append(r)
                if progress:
                    progress(len(results), len(jobs))
    else:
        results = []
        for job in jobs:
            results.append(_draw_and_save(job))
            if progress:
                progress(len(results), len(jobs))

    (root / "classes.txt").write_text("".join(f"{name}\n" for name in DEMO_CLASS_NAMES))
    for split, ids in splits.items():
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{_image_id(i)}\n" for i in ids))
        coco = _coco_json([results[i] for i in ids])
        (root / f"coco_{split}.json").write_text(json.dumps(coco, indent=1) + "\n")
    for r in results:
        (root / "Annotations" / f"{r['image_id']}.xml").write_text(_voc_xml(r))
    (root / "demo.json").write_text(json.dumps(asdict(settings), indent=2) + "\n")


def _image_id(i: int) -> str:
    return f"{i + 1:06d}"


def _draw_and_save(job: tuple[Path, DemoSettings, int]) -> dict:
    root, settings, i = job
    image, objects = draw_demo_image(settings.seed, i, settings.min_size, settings.max_size)
    image_id = _image_id(i)
    image.save(root / "JPEGImages" / f"{image_id}.jpg", quality=90)
    return {
        "image_id": image_id,
        "width": image.width,
        "height": image.height,
        "objects": objects,
    }


def _voc_xml(r: dict) -> str:
    lines = [
        "<annotation>",
        "  <folder>detviz-demo</folder>",
        f"  <filename>{r['image_id']}.jpg</filename>",
        f"  <size><width>{r['width']}</width><height>{r['height']}</height><depth>3</depth></size>",
        "  <segmented>0</segmented>",
    ]
    for o in r["objects"]:
        x1, y1, x2, y2 = o["box"]
        lines += [
            "  <object>",
            f"    <name>{escape(DEMO_CLASS_NAMES[o['label']])}</name>",
            "    <pose>Unspecified</pose>",
            f"    <truncated>{int(o['truncated'])}</truncated>",
            f"    <difficult>{int(o['difficult'])}</difficult>",
            # VOC is 1-based inclusive: pixel box (x1, y1, x2, y2) -> (x1 + 1, y1 + 1, x2, y2)
            f"    <bndbox><xmin>{x1 + 1}</xmin><ymin>{y1 + 1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox>",
            "  </object>",
        ]
    return "\n".join([*lines, "</annotation>"]) + "\n"


def _coco_json(results: list[dict]) -> dict:
    images, annotations = [], []
    for r in results:
        image_id = int(r["image_id"])
        images.append(
            {
                "id": image_id,
                "file_name": f"{r['image_id']}.jpg",
                "width": r["width"],
                "height": r["height"],
            }
        )
        for o in r["objects"]:
            x1, y1, x2, y2 = o["box"]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": o["label"] + 1,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": 0,
                    "ignore": int(o["difficult"]),
                }
            )
    categories = [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(DEMO_CLASS_NAMES)]
    return {
        "images": images,
        "type": "instances",
        "annotations": annotations,
        "categories": categories,
    }


# --- drawing -------------------------------------------------------------------------


def draw_demo_image(seed: int, i: int, min_size: int = 224, max_size: int = 320) -> tuple[Image.Image, list[dict]]:
    """Draws image `i` of the dataset with this seed.

    Returns:
        The RGB image and its objects as dicts: label, box (integer pixel xyxy of the visible
        extent, DESIGN convention), difficult, truncated.
    """
    rng = np.random.default_rng([seed, i])
    width, height = (int(v) for v in rng.integers(min_size, max_size + 1, size=2))
    canvas = _background(rng, width, height)
    owner = np.zeros((height, width), dtype=np.int16)  # 0 = background, k = object k (1-based)
    totals: list[int] = []  # pixels of each object's whole shape
    visible: list[int] = []  # pixels still visible after later objects
    inside: list[int] = []  # pixels inside the image
    labels: list[int] = []
    n_objects = int(rng.choice(len(OBJECT_COUNT_WEIGHTS), p=OBJECT_COUNT_WEIGHTS)) + 1
    for _ in range(n_objects):
        for _attempt in range(25):
            placed = _try_place(rng, canvas, owner, totals, visible, inside, labels)
            if placed:
                break
    objects = []
    ys, xs = np.nonzero(owner)
    ks = owner[ys, xs]
    for k, label in enumerate(labels, start=1):
        mask = ks == k
        x1, x2 = int(xs[mask].min()), int(xs[mask].max()) + 1
        y1, y2 = int(ys[mask].min()), int(ys[mask].max()) + 1
        shown = int(mask.sum())
        objects.append(
            {
                "label": label,
                "box": [x1, y1, x2, y2],
                "difficult": shown < DIFFICULT_MIN_PIXELS or shown / totals[k - 1] < DIFFICULT_VISIBLE,
                "truncated": 1 - inside[k - 1] / totals[k - 1] > TRUNCATED_OUTSIDE,
            }
        )
    noise = rng.normal(0.0, 5.0, size=canvas.shape)
    pixels = np.clip(canvas + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, "RGB"), objects


def _try_place(rng, canvas, owner, totals, visible, inside, labels) -> bool:
    height, width = owner.shape
    label = int(rng.integers(len(DEMO_CLASSES)))
    cls = DEMO_CLASSES[label]
    side = math.sqrt(width * height) * math.exp(rng.uniform(*np.log(SIZE_RANGE)))
    aspect = math.exp(rng.uniform(*np.log(cls.aspect)))  # height / width
    bw, bh = side / math.sqrt(aspect), side * math.sqrt(aspect)
    shrink = min(1.0, 0.95 * width / bw, 0.95 * height / bh)
    bw, bh = max(6, round(bw * shrink)), max(6, round(bh * shrink))
    # mostly inside the image; sometimes hanging over an edge (truncated objects)
    slack = 0.35 if rng.random() < 0.18 else 0.0
    x0 = int(rng.integers(-round(slack * bw), width - bw + round(slack * bw) + 1))
    y0 = int(rng.integers(-round(slack * bh), height - bh + round(slack * bh) + 1))
    alpha = _shape_alpha(cls.name, bw, bh, rng)
    solid = alpha > 0.5
    total = int(solid.sum())
    # the part of the shape that lands on the canvas
    cx0, cy0, cx1, cy1 = (
        max(x0, 0),
        max(y0, 0),
        min(x0 + bw, width),
        min(y0 + bh, height),
    )
    if cx1 - cx0 < 2 or cy1 - cy0 < 2:
        return False
    a = alpha[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
    s = solid[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
    shown = int(s.sum())
    if total == 0 or shown / total < 1 - 0.3:
        return False
    region = owner[cy0:cy1, cx0:cx1]
    covered = np.bincount(region[s].ravel(), minlength=len(labels) + 1)[1:]
    for k in range(len(labels)):
        if (visible[k] - covered[k]) / totals[k] < MIN_VISIBLE:
            return False
    for k in range(len(labels)):
        visible[k] -= int(covered[k])
    colour = _object_colours(rng, cls, cy1 - cy0, cx1 - cx0)
    patch = canvas[cy0:cy1, cx0:cx1]
    patch[...] = patch * (1 - a[..., None]) + colour * a[..., None]
    region[s] = len(labels) + 1
    labels.append(label)
    totals.append(total)
    visible.append(shown)
    inside.append(shown)
    return True


def _object_colours(rng, cls: ShapeClass, h: int, w: int) -> np.ndarray:
    """(h, w, 3) float colours: the class's hue, jittered, with a soft light-to-dark shading."""
    hue = (cls.hue + rng.uniform(-0.035, 0.035)) % 1.0
    sat = rng.uniform(0.55, 0.95)
    val = rng.uniform(0.6, 0.95)
    base = np.array(_hsv_to_rgb(hue, sat, val)) * 255.0
    angle = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:h, 0:w]
    ramp = (np.cos(angle) * xx / max(w, 1) + np.sin(angle) * yy / max(h, 1)) - 0.5
    shade = 1.0 + 0.25 * ramp
    return np.clip(base[None, None, :] * shade[..., None], 0, 255)


def _shape_alpha(name: str, w: int, h: int, rng) -> np.ndarray:
    """(h, w) float alpha in [0, 1] of the class's shape filling a w x h box."""
    W, H = w * SUPERSAMPLE, h * SUPERSAMPLE
    img = Image.new("L", (W, H), 0)
    d = ImageDraw.Draw(img)
    if name == "disc":
        d.ellipse([0, 0, W - 1, H - 1], fill=255)
    elif name in ("block", "pole", "plank"):
        radius = int(min(W, H) * (0.12 if name == "block" else 0.3))
        d.rounded_rectangle([0, 0, W - 1, H - 1], radius=radius, fill=255)
        if name != "block":  # bands across the long side
            n = int(rng.integers(2, 5))
            for j in range(1, n):
                t = j / n
                if name == "pole":
                    d.line([0, t * H, W, t * H], fill=90, width=max(1, H // 40))
                else:
                    d.line([t * W, 0, t * W, H], fill=90, width=max(1, W // 40))
    elif name == "triangle":
        d.polygon([(W / 2, 0), (W - 1, H - 1), (0, H - 1)], fill=255)
    elif name == "star":
        pts = []
        for j in range(10):
            r = 0.5 if j % 2 == 0 else 0.21
            t = -math.pi / 2 + j * math.pi / 5
            pts.append(
                (
                    W / 2 + r * W * math.cos(t),
                    H / 2 + r * H * 1.05 * math.sin(t) + 0.04 * H,
                )
            )
        d.polygon(pts, fill=255)
    elif name == "cross":
        t = 0.17
        d.rectangle([W * (0.5 - t), 0, W * (0.5 + t), H - 1], fill=255)
        d.rectangle([0, H * (0.5 - t), W - 1, H * (0.5 + t)], fill=255)
    elif name == "ring":
        d.ellipse([0, 0, W - 1, H - 1], fill=255)
        d.ellipse([W * 0.27, H * 0.27, W * 0.73, H * 0.73], fill=0)
    else:
        raise ValueError(f"unknown demo shape {name!r}")
    return np.asarray(img.resize((w, h), Image.Resampling.BOX), dtype=np.float32) / 255.0


def _background(rng, width: int, height: int) -> np.ndarray:
    """(height, width, 3) float canvas: two muted colours blended by smooth noise, plus texture."""
    c1 = np.array(_hsv_to_rgb(rng.random(), rng.uniform(0.05, 0.35), rng.uniform(0.35, 0.85))) * 255
    c2 = np.array(_hsv_to_rgb(rng.random(), rng.uniform(0.05, 0.35), rng.uniform(0.35, 0.85))) * 255
    cells = int(rng.integers(3, 8))
    coarse = Image.fromarray((rng.random((cells, cells)) * 255).astype(np.uint8), "L")
    blend = np.asarray(coarse.resize((width, height), Image.Resampling.BICUBIC), dtype=np.float32)[..., None] / 255.0
    canvas = c1 * (1 - blend) + c2 * blend
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    kind = int(rng.integers(3))
    if kind == 0:  # stripes at a random angle
        angle, period = rng.uniform(0, math.pi), rng.uniform(6, 22)
        wave = np.sin((np.cos(angle) * xx + np.sin(angle) * yy) * 2 * math.pi / period)
        canvas += 12.0 * wave[..., None]
    elif kind == 1:  # checks
        period = rng.uniform(10, 30)
        wave = np.sign(np.sin(xx * math.pi / period) * np.sin(yy * math.pi / period))
        canvas += 9.0 * wave[..., None]
    else:  # grain
        grain = Image.fromarray((rng.random((height, width)) * 255).astype(np.uint8), "L")
        grain = np.asarray(grain.filter(ImageFilter.GaussianBlur(1.5)), dtype=np.float32) - 127.5
        canvas += 0.5 * grain[..., None]
    clutter = Image.new("L", (width, height), 0)
    d = ImageDraw.Draw(clutter)
    for _ in range(int(rng.integers(3, 12))):  # thin scribbles: edges that are not objects
        pts = [(float(rng.uniform(0, width)), float(rng.uniform(0, height))) for _ in range(int(rng.integers(2, 5)))]
        d.line(pts, fill=int(rng.integers(60, 160)), width=int(rng.integers(1, 4)))
    tone = np.array(_hsv_to_rgb(rng.random(), 0.15, rng.uniform(0.2, 0.9))) * 255
    a = np.asarray(clutter, dtype=np.float32)[..., None] / 255.0
    return canvas * (1 - a) + tone * a


def _hsv_to_rgb(h: float, s: float, v: float) -> tuple[float, float, float]:
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]


# --- command line --------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m detviz.data.demo",
        description="Draw the built-in demo dataset (VOC layout).",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("data/demo"),
        help="target folder (default: data/demo)",
    )
    parser.add_argument(
        "--train",
        type=int,
        default=800,
        help="number of training images (default: 800)",
    )
    parser.add_argument(
        "--val",
        type=int,
        default=200,
        help="number of validation images (default: 200)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument(
        "--min-size",
        type=int,
        default=224,
        help="smallest image side in pixels (default: 224)",
    )
    parser.add_argument(
        "--max-size",
        type=int,
        default=320,
        help="largest image side in pixels (default: 320)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="drawing processes (default: one per core, at most 4)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a demo dataset made with other settings",
    )
    args = parser.parse_args(argv)
    from tqdm import tqdm

    bar = tqdm(total=args.train + args.val, unit="img", desc="demo dataset", disable=None)

    def progress(done: int, total: int) -> None:
        bar.update(done - bar.n)

    try:
        out = make_demo_dataset(
            args.out,
            args.train,
            args.val,
            args.seed,
            min_size=args.min_size,
            max_size=args.max_size,
            workers=args.workers,
            overwrite=args.overwrite,
            progress=progress,
        )
    except (ValueError, OSError) as e:
        bar.close()
        print(f"error: {e}", file=sys.stderr)
        return 1
    bar.close()
    print(f"demo dataset ready: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
