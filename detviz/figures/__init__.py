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
"""

from detviz.figures.anchors import (
    ANCHOR_HOVER,
    add_anchor_points,
    anchor_customdata,
    anchor_overlay_figure,
    coverage_figure,
    iou_heatmap,
    matching_figure,
)
from detviz.figures.compare import MODEL_COLORS, ap_compare_figure, error_difference_figure
from detviz.figures.dataset import class_count_figure, histogram_figure
from detviz.figures.detections import class_scores_figure, detections_figure
from detviz.figures.evaluation import (
    ap_bar_figure,
    confusion_figure,
    error_breakdown_figure,
    pr_curves_figure,
    surface_figure,
)
from detviz.figures.image import (
    ImageEncoder,
    add_boxes,
    add_rectangles,
    ground_truth_figure,
    image_data_uri,
    image_figure,
    multilabel_figure,
    rect_path,
    render_thumbnail,
)
from detviz.figures.lesson import (
    class_probability_figure,
    grid_detections_figure,
    ladder_figure,
    largest_object_figure,
)
from detviz.figures.losses import cell_loss_map, loss_curves_figure, loss_map_figure, loss_share_figure, p_t_histogram
from detviz.figures.snapshots import snapshot_figure
from detviz.figures.style import FONT, MISSED_COLOR, PALETTE, class_color, class_name, text_color
from detviz.figures.training import (
    EPOCH_METRICS,
    LOSS_PARTS,
    MAX_POINTS,
    compare_figure,
    losses_figure,
    lr_figure,
    lr_finder_figure,
    split_records,
    thin,
    validation_figure,
    validation_metrics,
)

__all__ = [
    "ANCHOR_HOVER",
    "EPOCH_METRICS",
    "FONT",
    "LOSS_PARTS",
    "MAX_POINTS",
    "MISSED_COLOR",
    "MODEL_COLORS",
    "PALETTE",
    "ImageEncoder",
    "add_anchor_points",
    "add_boxes",
    "add_rectangles",
    "anchor_customdata",
    "anchor_overlay_figure",
    "ap_bar_figure",
    "ap_compare_figure",
    "cell_loss_map",
    "class_color",
    "class_count_figure",
    "class_name",
    "class_probability_figure",
    "class_scores_figure",
    "compare_figure",
    "confusion_figure",
    "coverage_figure",
    "detections_figure",
    "error_breakdown_figure",
    "error_difference_figure",
    "grid_detections_figure",
    "ground_truth_figure",
    "histogram_figure",
    "image_data_uri",
    "image_figure",
    "iou_heatmap",
    "ladder_figure",
    "largest_object_figure",
    "loss_curves_figure",
    "loss_map_figure",
    "loss_share_figure",
    "losses_figure",
    "lr_figure",
    "lr_finder_figure",
    "matching_figure",
    "multilabel_figure",
    "p_t_histogram",
    "pr_curves_figure",
    "rect_path",
    "render_thumbnail",
    "snapshot_figure",
    "split_records",
    "surface_figure",
    "text_color",
    "thin",
    "validation_figure",
    "validation_metrics",
]
