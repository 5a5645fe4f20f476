"""Figure builders for the app: pure functions, data in, plotly figure (or thumbnail) out.

One module per topic, each public `x_figure()` computing what it shows with small pure helpers
and rendering it with the shared layout of `style`:

    style        colours, font, base layout, legend presets, class_name()
    image        the image as a figure, boxes and tags on it, thumbnails, the multi-label strip
    dataset      objects per class, histograms
    anchors      anchors over the image, the matching rule, the IoU matrix, coverage
    losses       BCE / focal curves, where the loss comes from, loss shares, p_t
    detections   detections and NMS decisions, evaluation outcomes, one anchor's class scores
    evaluation   PR curves, AP per class, confusion, error breakdown, mAP over thresholds
    compare      two models: AP per class side by side, the error breakdown B minus A
    lesson       the walkthrough's trained models: largest object, class probabilities, a grid's
                 detections, the ladder of val metrics
    training     a run's loss, validation and learning-rate curves, runs compared, the LR finder
    snapshots    one image's predictions at one epoch of a run (the epoch scrubber)

Everything importers use is re-exported here: `from detviz.figures import detections_figure`.
The re-exports load their module on first use: the app's first page (Overview) draws only
`dataset` figures, and importing the image, anchor and model figures would import torch
(about a second) before a fresh server can show it.
"""

from __future__ import annotations

import importlib

_MODULES = {  # submodule: the names it gives this package
    "anchors": (
        "ANCHOR_HOVER",
        "add_anchor_points",
        "anchor_customdata",
        "anchor_overlay_figure",
        "coverage_figure",
        "iou_heatmap",
        "matching_figure",
    ),
    "compare": ("MODEL_COLORS", "ap_compare_figure", "error_difference_figure"),
    "dataset": ("class_count_figure", "histogram_figure"),
    "detections": ("class_scores_figure", "detections_figure"),
    "evaluation": ("ap_bar_figure", "confusion_figure", "error_breakdown_figure", "pr_curves_figure", "surface_figure"),
    "image": (
        "ImageEncoder",
        "add_boxes",
        "add_rectangles",
        "ground_truth_figure",
        "image_data_uri",
        "image_figure",
        "multilabel_figure",
        "rect_path",
        "render_thumbnail",
    ),
    "lesson": ("class_probability_figure", "grid_detections_figure", "ladder_figure", "largest_object_figure"),
    "losses": ("cell_loss_map", "loss_curves_figure", "loss_map_figure", "loss_share_figure", "p_t_histogram"),
    "snapshots": ("snapshot_figure",),
    "style": ("FONT", "MISSED_COLOR", "PALETTE", "class_color", "class_name", "text_color"),
    "training": (
        "EPOCH_METRICS",
        "LOSS_PARTS",
        "MAX_POINTS",
        "compare_figure",
        "losses_figure",
        "lr_figure",
        "lr_finder_figure",
        "split_records",
        "thin",
        "validation_figure",
        "validation_metrics",
    ),
}
_WHERE = {name: module for module, names in _MODULES.items() for name in names}


def __getattr__(name: str) -> object:
    """Loads the submodule that defines `name` (PEP 562), once; later lookups find it here."""
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])


__all__ = sorted(_WHERE)
