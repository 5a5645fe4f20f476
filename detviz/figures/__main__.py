"""python -m detviz.figures export: a page's figures for a report, as standalone HTML files (plotly.js
inside, so they open offline), and as PNG too where kaleido is installed.

    python -m detviz.figures export --page evaluate --checkpoint CKPT [--data demo --split val --limit N] --out DIR
    python -m detviz.figures export --page losses --checkpoint CKPT [--image 0 --alpha 0.25 --gamma 2] --out DIR
    python -m detviz.figures export --page anchors [--checkpoint CKPT | --anchors PRESET|FILE.json] --out DIR

The figures and their file names are the page's own (detviz.figures.report). Exit status 0 when
written; 2 for bad arguments (an unknown page); 1, with one line, when a checkpoint or the data
cannot be used.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import plotly.graph_objects as go
from tqdm import tqdm

from detviz.anchors import PRESETS, AnchorConfig, load_anchor_config
from detviz.boxes import to_normalized_boxes
from detviz.checks import check_positive_int, resolve_device
from detviz.cli import OneLineParser
from detviz.data import DataError, DatasetIndex
from detviz.data.images import load_image
from detviz.data.spec import open_dataset
from detviz.figures.report import (
    DEFAULT_ALPHA,
    DEFAULT_GAMMA,
    EVALUATE_IOU,
    EVALUATE_SCORE,
    PAGES,
    anchor_figures,
    compare_losses,
    evaluate_figures,
    loss_figures,
)
from detviz.inference import Detector, NonFiniteOutputs
from detviz.models import CheckpointError, compatibility_problems
from detviz.postprocess import DEFAULT_MAX_DETECTIONS, DEFAULT_NMS_IOU

NEEDS_CHECKPOINT = ("evaluate", "losses")
DEFAULT_ANCHORS = "lesson_multiscale"  # the Anchors page's first choice
PNG_SCALE = 2  # as the app's camera button saves them


def _parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m detviz.figures", description="Write detviz figures to files.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    export = commands.add_parser(
        "export",
        help="write a page's figures as HTML (and PNG where kaleido is installed)",
    )
    export.add_argument("--page", required=True, choices=PAGES, help="whose figures")
    export.add_argument(
        "--checkpoint", type=Path, help="a detviz SSD checkpoint (evaluate, losses; anchors: its anchors)"
    )
    export.add_argument("--anchors", default=None, help=f"anchors page without --checkpoint: a preset ({', '.join(PRESETS)}) "
                        f"or an AnchorConfig JSON file; default {DEFAULT_ANCHORS}")  # fmt: skip
    export.add_argument(
        "--data", default="demo", help="dataset: demo | voc:<dir> | coco:<json>,<image dir> (default %(default)s)"
    )
    export.add_argument("--split", default="val", help="split of a VOC / demo dataset (default %(default)s)")
    export.add_argument("--limit", type=int, default=None, help="use the first N images (default all)")
    export.add_argument(
        "--image", type=int, default=0, help="losses, anchors: the position of the image shown (default %(default)s)"
    )
    export.add_argument(
        "--score", type=float, default=EVALUATE_SCORE, help="evaluate: score threshold (default %(default)s)"
    )
    export.add_argument("--nms", type=float, default=DEFAULT_NMS_IOU, help="evaluate: NMS IoU (default %(default)s)")
    export.add_argument(
        "--max-detections",
        type=int,
        default=DEFAULT_MAX_DETECTIONS,
        help="evaluate: detections kept per image (default %(default)s)",
    )
    export.add_argument(
        "--eval-iou", type=float, default=EVALUATE_IOU, help="evaluate: IoU a true positive needs (default %(default)s)"
    )
    export.add_argument(
        "--alpha", type=float, default=DEFAULT_ALPHA, help="losses: focal loss alpha (default %(default)s)"
    )
    export.add_argument(
        "--gamma", type=float, default=DEFAULT_GAMMA, help="losses: focal loss gamma (default %(default)s)"
    )
    export.add_argument("--device", default="cpu", help="auto | cpu | cuda | cuda:N | mps (default %(default)s)")
    export.add_argument("--out", required=True, type=Path, help="folder for the files")
    return parser


def _dataset(args: argparse.Namespace) -> DatasetIndex:
    index = open_dataset(args.data, args.split)
    if args.limit is not None:
        check_positive_int("--limit", args.limit)
        index = index.subset(list(range(min(args.limit, len(index)))))
    if len(index) == 0:
        raise DataError(f"{args.data} ({args.split}): no images to show.")
    return index


def _image_of(index: DatasetIndex, position: int):
    """(image, boxes px, labels) of the image at `position`."""
    if not 0 <= position < len(index):
        raise ValueError(f"--image {position} is out of range: the data has {len(index)} images (0..{len(index) - 1}).")
    record = index[position]
    return load_image(record.image_path, (record.width, record.height)), record.boxes, record.labels


def _anchor_config(args: argparse.Namespace, detector: Detector | None) -> tuple[AnchorConfig, str]:
    if detector is not None:
        return detector.info.model.anchor_config(), args.checkpoint.name
    name = args.anchors or DEFAULT_ANCHORS
    return (PRESETS[name], name) if name in PRESETS else (load_anchor_config(name), Path(name).name)


def page_figures(args: argparse.Namespace) -> dict[str, go.Figure]:
    """The figures `args.page` shows, computed as the CLI's arguments say."""
    if args.page in NEEDS_CHECKPOINT and args.checkpoint is None:
        raise ValueError(f"--page {args.page} needs --checkpoint, the model whose figures to draw.")
    detector = None
    if args.checkpoint is not None:
        detector = Detector.from_checkpoint(args.checkpoint, resolve_device(args.device))
    index = _dataset(args)
    if detector is not None and args.page in NEEDS_CHECKPOINT:
        problems = compatibility_problems(detector.info, class_names=index.classes)
        if problems:
            raise ValueError(f"{args.checkpoint} does not fit {args.data}: {'; '.join(problems)}.")
    if args.page == "evaluate":
        with tqdm(total=len(index), unit="img", desc="detecting", disable=None) as bar:
            return evaluate_figures(detector, index, args.score, args.nms, args.max_detections, args.eval_iou,
                                    progress=lambda done, _: bar.update(done - bar.n))  # fmt: skip
    image, boxes, labels = _image_of(index, args.image)
    if args.page == "losses":
        class_logits, box_activations = detector.raw_outputs([image])
        anchors = detector.anchors.to("cpu")
        normalized = to_normalized_boxes(boxes, *image.size)
        comparison = compare_losses(class_logits.cpu(), box_activations.cpu(), normalized, labels, anchors,
                                    args.alpha, args.gamma, detector.coding)  # fmt: skip
        return loss_figures(image, comparison, anchors, args.alpha, args.gamma)
    config, name = _anchor_config(args, detector)
    return anchor_figures(image, boxes, labels, index.classes, config, index, name)


def write_figures(figures: dict[str, go.Figure], out: Path) -> list[Path]:
    """Writes each figure as out/<name>.html; returns the files."""
    out.mkdir(parents=True, exist_ok=True)
    for name, fig in figures.items():
        fig.write_html(out / f"{name}.html", include_plotlyjs=True, full_html=True)
    return [out / f"{name}.html" for name in figures]


def write_pngs(figures: dict[str, go.Figure], out: Path) -> str:
    """Writes each figure as out/<name>.png through kaleido; "" when done, else why not (one line)."""
    if importlib.util.find_spec("kaleido") is None:
        return "kaleido is not installed (pip install kaleido)"
    try:
        for name, fig in figures.items():
            fig.write_image(out / f"{name}.png", scale=PNG_SCALE)
    except Exception as e:  # kaleido fails in its own ways (no Chrome for it, a version mismatch)
        return f"kaleido could not render them ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
    return ""


def main(argv: list[str] | None = None) -> int:
    """Runs the CLI with these arguments (sys.argv when None); returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        figures = page_figures(args)
        write_figures(figures, args.out)
    except (ValueError, DataError, CheckpointError, NonFiniteOutputs, OSError, RuntimeError) as e:
        print(f"error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 1
    print(f"wrote {len(figures)} figures to {args.out} as HTML: {', '.join(figures)}")
    problem = write_pngs(figures, args.out)
    print(f"PNG skipped: {problem}; the HTML files hold every figure." if problem else "PNG files written too.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
