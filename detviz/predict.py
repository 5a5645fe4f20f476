"""python -m detviz.predict: a detector run over a folder of new, unlabelled images.

    python -m detviz.predict --checkpoint CKPT --images DIR --out results.json [--score 0.3 --nms 0.45]
                             [--draw OUTDIR]

Every image under DIR (recursive; jpg, jpeg, png, bmp, webp, tif, tiff in any case) is read as
8-bit RGB by `detviz.data.images.load_image` (greyscale, palette, CMYK and 16-bit files converted,
an EXIF rotation applied as a viewer shows it), detected in batches, and written as a JSON list of
COCO-results-style rows (`result_rows`). `--draw` writes each image with its boxes and labels,
mirroring the folder. A file that is not a readable image is named on stderr and skipped.

Exit status: 0 every image was read; 1 some were skipped (the others are in the results);
2 nothing was done (one line on stderr): no such folder, no image file in it, no image readable,
a checkpoint missing, broken or not of an SSD kind, bad --score / --nms values.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from PIL import Image
from torchvision.transforms.v2 import functional as TF
from torchvision.utils import draw_bounding_boxes
from tqdm import tqdm

from detviz.checks import check_positive_int, check_probability, resolve_device
from detviz.cli import USAGE_ERROR, OneLineParser
from detviz.data import DataError
from detviz.data.images import load_image
from detviz.evaluate.coco import coco_result
from detviz.figures.style import class_color, text_color
from detviz.inference import Detector, NonFiniteOutputs
from detviz.models import CheckpointError
from detviz.postprocess import DEFAULT_MAX_DETECTIONS, DEFAULT_NMS_IOU, Detections

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})  # compared lower-cased
DEFAULT_SCORE = 0.3  # detections worth looking at on new images; the app's live pages start near it (0.25)
DEFAULT_BATCH_SIZE = 16
EXIT_OK, EXIT_SKIPPED, EXIT_FAILED = 0, 1, USAGE_ERROR  # usage errors and nothing done share a status


class PredictionError(ValueError):
    """The folder or the settings cannot be predicted on; nothing was written."""


class ImageResult(NamedTuple):
    """One file's outcome: its image and detections (boxes in its pixels, xyxy), or why it was skipped."""

    path: Path
    image: Image.Image | None
    detections: Detections | None
    error: str


def find_images(folder: str | Path, exclude: str | Path | None = None) -> list[Path]:
    """Every image file under `folder` (recursive, IMAGE_SUFFIXES in any case), sorted by path.

    Args:
        exclude: a folder whose files are left out (where drawn images go, when it lies inside).

    Raises:
        PredictionError: `folder` is not a folder, is empty, or holds no file with an image suffix.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise PredictionError(f"{folder}: no such folder; give --images a folder of images.")
    skip = Path(exclude).resolve() if exclude is not None else None
    files = [p for p in sorted(folder.rglob("*")) if p.is_file() and (skip is None or skip not in p.resolve().parents)]
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise PredictionError(f"{folder}: the folder is empty; put the images to predict on in it.")
    if not images:
        raise PredictionError(
            f"{folder}: none of its {len(files)} files is an image ({', '.join(sorted(IMAGE_SUFFIXES))})."
        )
    return images


def predict_images(
    detector: Detector,
    paths: Sequence[Path],
    score_threshold: float = DEFAULT_SCORE,
    nms_iou: float = DEFAULT_NMS_IOU,
    max_detections: int = DEFAULT_MAX_DETECTIONS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Callable[[int], None] | None = None,
) -> Iterator[ImageResult]:
    """The detector over the files in batches, one ImageResult per file in order; an unreadable file
    gets error set (and no image). `progress` is called with the number of files done in each batch.

    Raises:
        NonFiniteOutputs: the model's outputs are NaN or inf (its weights are broken).
    """
    check_probability("score threshold", score_threshold, high_open=True)
    check_probability("NMS IoU", nms_iou, low_open=True)
    check_positive_int("batch size", batch_size)
    for start in range(0, len(paths), batch_size):
        batch = paths[start : start + batch_size]
        images: dict[Path, Image.Image] = {}
        errors: dict[Path, str] = {}
        for path in batch:
            try:
                images[path] = load_image(path)
            except DataError as e:
                errors[path] = str(e)
        found = detector.detect(list(images.values()), score_threshold, nms_iou, max_detections)
        by_path = dict(zip(images, found, strict=True))
        for path in batch:
            yield ImageResult(path, images.get(path), by_path.get(path), errors.get(path, ""))
        if progress is not None:
            progress(len(batch))


def result_rows(file_name: str, detections: Detections, classes: Sequence[str]) -> list[dict[str, Any]]:
    """COCO-results-style rows of one image: file_name, category_name, category_id (the class id + 1,
    as COCO numbers categories from 1), bbox [x, y, w, h] in the image's pixels, score.

    Args:
        detections: boxes (N, 4) xyxy in the image's pixels (as `Detector.detect` gives them).
    """
    found = zip(detections.boxes.tolist(), detections.scores.tolist(), detections.labels.tolist(), strict=True)
    return [{"file_name": file_name, "category_name": classes[label], **coco_result(box, score, label + 1)}
            for box, score, label in found]  # fmt: skip


def draw_detections(image: Image.Image, detections: Detections, classes: Sequence[str]) -> Image.Image:
    """The image with each detection's box and "class score" label in its class colour.

    Args:
        detections: boxes (N, 4) xyxy in the image's pixels; none gives the image unchanged.
    """
    if len(detections) == 0:
        return image
    labels = detections.labels.tolist()
    colors = [class_color(c) for c in labels]
    drawn = draw_bounding_boxes(
        TF.pil_to_tensor(image),
        detections.boxes.float().cpu(),
        labels=[f"{classes[c]} {s:.2f}" for c, s in zip(labels, detections.scores.tolist(), strict=True)],
        colors=colors,
        width=max(2, round(max(image.size) / 300)),
        label_colors=[text_color(c) for c in colors],
        fill_labels=True,
    )
    return TF.to_pil_image(drawn)


def _parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="python -m detviz.predict",
        description="Detect objects in every image of a folder with a detviz SSD checkpoint.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--checkpoint", required=True, type=Path, help="a detviz SSD checkpoint (.pt)")
    parser.add_argument("--images", required=True, type=Path, help="folder of images (searched recursively)")
    parser.add_argument("--out", required=True, type=Path, help="the results JSON file to write")
    parser.add_argument("--score", type=float, default=DEFAULT_SCORE, help="keep detections scoring above this")
    parser.add_argument("--nms", type=float, default=DEFAULT_NMS_IOU, help="NMS IoU")
    parser.add_argument("--max-detections", type=int, default=DEFAULT_MAX_DETECTIONS, help="per image, best first")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="images per forward pass")
    parser.add_argument("--draw", type=Path, default=None, help="also write each image with its boxes here")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs the CLI with these arguments (sys.argv when None); returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        check_probability("--score", args.score, high_open=True)
        check_probability("--nms", args.nms, low_open=True)
        check_positive_int("--max-detections", args.max_detections)
        check_positive_int("--batch-size", args.batch_size)
        paths = find_images(args.images, exclude=args.draw)
        detector = Detector.from_checkpoint(args.checkpoint, resolve_device(args.device))
        rows, skipped = [], 0
        with tqdm(total=len(paths), unit="img", desc="detecting", disable=None) as bar:
            results = predict_images(detector, paths, args.score, args.nms, args.max_detections, args.batch_size,
                                     bar.update)  # fmt: skip
            for result in results:
                if result.error:
                    skipped += 1
                    bar.write(f"skipped: {result.error}", file=sys.stderr)
                    continue
                relative = result.path.relative_to(args.images)
                rows += result_rows(relative.as_posix(), result.detections, detector.classes)
                if args.draw is not None:
                    target = args.draw / relative
                    target.parent.mkdir(parents=True, exist_ok=True)
                    draw_detections(result.image, result.detections, detector.classes).save(target)
        if skipped == len(paths):
            raise PredictionError(f"{args.images}: none of its {len(paths)} image files could be read.")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows) + "\n")
    except (ValueError, CheckpointError, NonFiniteOutputs, OSError) as e:
        print(f"error: {str(e).splitlines()[0]}", file=sys.stderr)
        return EXIT_FAILED
    drawn = f"; images with boxes in {args.draw}" if args.draw is not None else ""
    print(f"wrote {len(rows)} detections of {len(paths) - skipped} images to {args.out}{drawn}")
    if skipped:
        print(f"{skipped} of {len(paths)} files were not readable images and were skipped.", file=sys.stderr)
        return EXIT_SKIPPED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
