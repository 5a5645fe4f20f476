"""Figure builders, checked on fig.data / fig.layout rather than pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from detviz.anchors import PRESETS, make_anchors
from detviz.codes import Outcome
from detviz.explain import clicked_anchor
from detviz.figures import (
    MISSED_COLOR,
    PALETTE,
    anchor_overlay_figure,
    ap_bar_figure,
    cell_loss_map,
    class_color,
    class_count_figure,
    class_scores_figure,
    confusion_figure,
    coverage_figure,
    detections_figure,
    error_breakdown_figure,
    ground_truth_figure,
    histogram_figure,
    iou_heatmap,
    loss_curves_figure,
    loss_map_figure,
    loss_share_figure,
    matching_figure,
    multilabel_figure,
    p_t_histogram,
    pr_curves_figure,
    rect_path,
    render_thumbnail,
    surface_figure,
    text_color,
)

CLASSES = ["cat", "dog", "bird"]


def _image(w: int = 80, h: int = 60) -> Image.Image:
    return Image.new("RGB", (w, h), (30, 30, 30))


def test_ground_truth_figure_draws_one_shape_per_box_at_pixel_edges() -> None:
    boxes = torch.tensor([[10.0, 5.0, 40.0, 30.0], [0.0, 0.0, 80.0, 60.0]])
    fig = ground_truth_figure(_image(), boxes, torch.tensor([0, 2]), CLASSES, difficult=torch.tensor([False, True]))
    shapes = fig.layout.shapes
    assert len(shapes) == 2
    assert (shapes[0].x0, shapes[0].y0, shapes[0].x1, shapes[0].y1) == (10.0, 5.0, 40.0, 30.0)
    assert shapes[0].line.color == class_color(0) and shapes[1].line.color == class_color(2)
    assert shapes[0].line.dash == "solid" and shapes[1].line.dash == "dash"  # difficult is dashed
    assert [a.text for a in fig.layout.annotations] == ["cat", "bird"]
    image_trace = fig.data[0]
    assert image_trace.type == "image" and image_trace.source.startswith("data:image/jpeg;base64,")
    assert (image_trace.x0, image_trace.y0) == (0.5, 0.5)  # pixel c spans [c, c + 1]
    assert list(fig.layout.xaxis.range) == [0, 80] and list(fig.layout.yaxis.range) == [60, 0]
    hover = [_fill_hover_text(t) for t in fig.data if t.type == "scatter"]
    assert len(hover) == 2 and "1: cat" in hover[0] and "difficult" in hover[1]
    assert "30 x 25 px" in hover[0]


def _fill_hover_text(trace) -> str:
    """What plotly.js shows when the pointer is inside a trace hovering on its fill: never the
    hovertemplate (src/traces/scatter/hover.js sets it to false), but the trace's text when
    that is one string, else its name; and only that text when hoverinfo is "text"."""
    assert trace.hoveron == "fills" and trace.fill == "toself"
    assert trace.hoverinfo == "text", "other hoverinfo flags add the trace name beside the text"
    return trace.text if isinstance(trace.text, str) else trace.name


def test_ground_truth_hover_on_the_fill_shows_box_size_and_flags() -> None:
    boxes = torch.tensor([[10.5, 5.0, 40.0, 30.25], [0.0, 0.0, 80.0, 60.0]])
    fig = ground_truth_figure(
        _image(), boxes, torch.tensor([1, 0]), CLASSES, difficult=torch.tensor([True, False]),
        truncated=torch.tensor([True, False]),
    )  # fmt: skip
    first, second = (_fill_hover_text(t) for t in fig.data if t.type == "scatter")
    assert first == "<b>1: dog</b><br>box (10.5, 5, 40, 30.25) px<br>29.5 x 25.25 px<br>difficult, truncated"
    assert second == "<b>2: cat</b><br>box (0, 0, 80, 60) px<br>80 x 60 px"


def test_emphasis_fades_the_other_boxes() -> None:
    boxes = torch.tensor([[10.0, 5.0, 40.0, 30.0], [50.0, 10.0, 70.0, 50.0]])
    fig = ground_truth_figure(_image(), boxes, torch.tensor([0, 1]), CLASSES, emphasis=1)
    assert fig.layout.shapes[0].opacity < 1 and fig.layout.shapes[1].opacity == 1
    assert fig.layout.shapes[1].line.width > fig.layout.shapes[0].line.width
    assert [a.text for a in fig.layout.annotations] == ["dog"]


def test_image_without_boxes() -> None:
    fig = ground_truth_figure(_image(), torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), CLASSES)
    assert len(fig.layout.shapes) == 0 and len(fig.data) == 1


def test_class_colours_are_distinct_and_labels_readable() -> None:
    assert len(set(PALETTE[:20])) == 20
    assert class_color(3) == class_color(3 + len(PALETTE))
    assert text_color("#ffffff") == "#111111" and text_color("#000000") == "#ffffff"


def test_class_count_figure_stacks_difficult_objects() -> None:
    fig = class_count_figure(CLASSES, torch.tensor([5, 0, 3]), torch.tensor([1, 0, 3]))
    easy, hard = fig.data
    assert list(easy.y) == [4, 0, 0] and list(hard.y) == [1, 0, 3] and fig.layout.barmode == "stack"


def test_histograms() -> None:
    fig = histogram_figure(torch.tensor([1, 1, 3]), "t", "objects", integer=True)
    assert list(fig.data[0].x) == [0, 1, 2, 3] and list(fig.data[0].y) == [0, 2, 0, 1]
    fig = histogram_figure(torch.tensor([0.5, 1.0, 2.0, 4.0]), "t", "ratio", bins=4, log_x=True)
    assert sum(fig.data[0].y) == 4 and fig.layout.xaxis.type == "log"
    fig = histogram_figure(torch.zeros(0), "t", "size")
    assert sum(fig.data[0].y) == 0


def test_multilabel_strip() -> None:
    fig = multilabel_figure(CLASSES, torch.tensor([1.0, 0.0, 1.0]))
    assert list(fig.data[0].z[0]) == [1, 0, 1] and list(fig.data[0].x) == CLASSES


def test_thumbnail_sizes_and_box_colour() -> None:
    boxes = torch.tensor([[10.0, 10.0, 70.0, 50.0]])
    thumb = render_thumbnail(_image(80, 60), boxes, torch.tensor([1]), size=40)
    assert thumb.size == (40, 30)
    r, g, b = (int(class_color(1)[i : i + 2], 16) for i in (1, 3, 5))
    assert thumb.getpixel((5, 15)) == (r, g, b)  # left edge of the box, scaled by 1/2
    square = render_thumbnail(_image(80, 60), boxes, torch.tensor([1]), torch.tensor([True]), size=40, square=True)
    assert square.size == (40, 40)


def test_lr_finder_figure_marks_the_suggestion() -> None:
    from detviz.figures import lr_finder_figure
    from detviz.train.report import LRFinderResult

    result = LRFinderResult(
        lrs=[1e-5, 1e-4, 1e-3, 1e-2],
        losses=[3.0, 2.5, 1.0, 9.0],
        smoothed=[3.0, 2.8, 2.0, 4.0],
        suggestion=1e-4,
        steepest=1e-3,
    )
    fig = lr_finder_figure(result)
    assert [t.name for t in fig.data] == ["loss", "smoothed"] and list(fig.data[1].y) == [3.0, 2.8, 2.0, 4.0]
    assert fig.layout.xaxis.type == "log" and fig.layout.shapes[0].x0 == 1e-4


LESSON = make_anchors(PRESETS["lesson_4x4"])
MULTI = make_anchors(PRESETS["lesson_multiscale"])
SSD = make_anchors(PRESETS["ssd300"])
GT = torch.tensor([[10.0, 20.0, 60.0, 55.0], [40.0, 5.0, 78.0, 30.0]])  # pixels of an 80 x 60 image
GT_LABELS = torch.tensor([0, 2])


def _normalized() -> torch.Tensor:
    return GT / torch.tensor([80.0, 60.0, 80.0, 60.0])


def _gaps(trace) -> int:
    """How many rectangles (or lines) a polyline trace draws: its None / NaN separators."""
    return sum(1 for v in trace.x if v is None or v != v)


def _traces(fig, name_start: str) -> list:
    return [t for t in fig.data if (t.name or "").startswith(name_start)]


def _point_click(fig, trace, k: int) -> list[dict]:
    """What Streamlit's on_select reports for a click on point k of a trace."""
    data = trace.customdata[k]
    data = data.tolist() if hasattr(data, "tolist") else data  # as JSON brings it: a list or a number
    return [{"curve_number": list(fig.data).index(trace), "point_index": k, "x": float(trace.x[k]),
             "y": float(trace.y[k]), "customdata": data}]  # fmt: skip


def test_rect_path_draws_closed_outlines_separated_by_gaps() -> None:
    xs, ys = rect_path(torch.tensor([[0.0, 1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0]]))
    nan = float("nan")
    np.testing.assert_array_equal(xs, [0, 2, 2, 0, 0, nan, 4, 6, 6, 4, 4, nan])
    np.testing.assert_array_equal(ys, [1, 1, 3, 3, 1, nan, 5, 5, 7, 7, 5, nan])


def test_anchor_overlay_grid_level_and_cell_modes() -> None:
    grid = anchor_overlay_figure(_image(), MULTI, "grid")
    assert [t.name for t in grid.data[1:]] == ["level 0: 4x4", "level 1: 2x2", "level 2: 1x1"]
    assert _gaps(grid.data[1]) == 2 * 5  # 5 vertical + 5 horizontal lines for a 4x4 grid
    level = anchor_overlay_figure(_image(), MULTI, "level", level=1)
    rects = _traces(level, "level 1 anchors")[0]
    assert _gaps(rects) == 2 * 2 * 9  # every anchor of the 2x2 level, 9 per cell
    cell = anchor_overlay_figure(_image(), MULTI, "cell", level=0, row=3, col=1)
    rects = _traces(cell, "level 0 anchors")[0]
    assert _gaps(rects) == 9
    points = cell.data[-1]
    chosen = [int(row[0]) for row in points.customdata]
    assert all(int(MULTI.row[i]) == 3 and int(MULTI.col[i]) == 1 and int(MULTI.level[i]) == 0 for i in chosen)
    # the overlay's markers are clickable: a click maps back to the anchor
    assert clicked_anchor(_point_click(cell, points, 4), len(MULTI)) == chosen[4]


def test_anchor_overlay_draws_each_objects_matched_anchors_in_its_colour() -> None:
    from detviz.matching import match_anchors

    match = match_anchors(_normalized(), MULTI.boxes, 0.5)
    fig = anchor_overlay_figure(_image(), MULTI, "grid", gt_boxes=GT, gt_labels=GT_LABELS, class_names=CLASSES,
                                positive=match.positive, best_gt=match.best_gt)  # fmt: skip
    for g in range(2):
        trace = _traces(fig, f"anchors of object {g + 1}")[0]
        assert trace.line.color == class_color(int(GT_LABELS[g]))
        assert _gaps(trace) == int((match.positive & (match.best_gt == g)).sum())
    assert len(fig.layout.shapes) == 2  # the ground truth


def test_matching_figure_steps_show_the_right_anchors() -> None:
    from detviz.matching import match_anchors

    match = match_anchors(_normalized(), LESSON.boxes, 0.5)
    step1 = matching_figure(_image(), LESSON, match, 1, GT, GT_LABELS, CLASSES)
    touching = int((match.argmax_iou > 0).sum())
    assert sum(_gaps(t) for t in _traces(step1, "best: ")) == touching
    step2 = matching_figure(_image(), LESSON, match, 2, GT, GT_LABELS, CLASSES)
    forced = _traces(step2, "forced")[0]
    assert _gaps(forced) == int(match.forced.sum()) == 2
    markers = [t for t in step2.data if getattr(t, "mode", None) == "markers"]
    assert (
        sorted(int(row[0]) for t in markers for row in t.customdata) == torch.nonzero(match.forced).flatten().tolist()
    )
    step3 = matching_figure(_image(), LESSON, match, 3, GT, GT_LABELS, CLASSES, selected=5, show_negatives=True)
    assert _gaps(_traces(step3, "negative")[0]) == int((~match.positive).sum())
    assert _traces(step3, "anchor 5")[0].line.width == 4
    markers = next(t for t in step3.data if getattr(t, "mode", None) == "markers" and len(t.x))
    assert clicked_anchor(_point_click(step3, markers, 0), len(LESSON)) == int(markers.customdata[0][0])
    assert markers.customdata[0][8] == pytest.approx(float(match.argmax_iou[int(markers.customdata[0][0])]))


def test_iou_heatmap_values_levels_and_clicks() -> None:
    from detviz.matching import match_anchors

    match = match_anchors(_normalized(), MULTI.boxes, 0.5)
    fig = iou_heatmap(match.iou, MULTI, GT_LABELS, CLASSES, threshold=0.5, selected=7)
    heat = fig.data[0]
    np.testing.assert_allclose(heat.z, match.iou.numpy(), rtol=1e-6)
    level_lines = [s for s in fig.layout.shapes if s.type == "line"]
    assert [s.x0 for s in level_lines] == [143.5, 179.5]  # levels start at 144 and 180
    assert _gaps(_traces(fig, "IoU > 0.5")[0]) == int((match.iou > 0.5).sum())
    assert _traces(fig, "anchor 7")[0].x[0] == 6.5  # the selected column
    cells = _traces(fig, "cells of object")
    assert [len(t.x) for t in cells] == [len(MULTI)] * 2  # every cell clickable
    assert clicked_anchor(_point_click(fig, cells[1], 150), len(MULTI)) == 150
    assert cells[1].customdata[150][8] == pytest.approx(float(match.iou[1, 150]))
    assert "<b>2: bird</b>" in cells[1].hovertemplate
    # a chosen subset of columns: the clicked column maps to the original anchor index
    columns = torch.tensor([3, 50, 181, 188])
    sub = iou_heatmap(match.iou, MULTI, GT_LABELS, CLASSES, columns=columns)
    np.testing.assert_allclose(sub.data[0].z, match.iou[:, columns].numpy(), rtol=1e-6)
    sub_cells = _traces(sub, "cells of object")
    assert sorted({int(row[0]) for t in sub_cells for row in t.customdata}) == columns.tolist()
    assert list(sub.layout.xaxis.ticktext) == ["3", "50", "181", "188"]


def test_big_heatmaps_keep_only_non_zero_cells_clickable() -> None:
    from detviz.matching import match_anchors

    gt = torch.cat([_normalized(), torch.tensor([[0.4, 0.4, 0.5, 0.6]])])  # 3 x 8,732 cells: over 20,000
    match = match_anchors(gt, SSD.boxes, 0.5)
    fig = iou_heatmap(match.iou, SSD, torch.tensor([0, 2, 1]), CLASSES)
    assert sum(len(t.x) for t in _traces(fig, "cells of object")) == int((match.iou > 0).sum()) < 3 * len(SSD)


def test_coverage_figure_shares_sum_to_one() -> None:
    fig = coverage_figure({"a": torch.rand(100), "b": torch.rand(7)}, 0.5)
    assert [t.name for t in fig.data] == ["a", "b"]
    assert all(abs(sum(t.y) - 1) < 1e-5 for t in fig.data)


def test_loss_figures() -> None:
    p = torch.linspace(0.01, 0.99, 9)
    fig = loss_curves_figure({"BCE": (p, -torch.log(p)), "focal": (p, -torch.log(p) * (1 - p) ** 2)},
                             {"(1 - p_t)^2": (p, (1 - p) ** 2)})  # fmt: skip
    assert [t.name for t in fig.data] == ["BCE", "focal", "(1 - p_t)^2"] and fig.layout.yaxis.type == "log"
    share = torch.rand(len(MULTI))
    share /= share.sum()
    cells = cell_loss_map(MULTI, share, 0)
    assert cells.shape == (4, 4)
    assert float(cells.sum()) == pytest.approx(float(share[MULTI.level == 0].sum()))
    assert float(cells[3, 1]) == pytest.approx(
        float(share[(MULTI.level == 0) & (MULTI.row == 3) & (MULTI.col == 1)].sum())
    )
    heat = loss_map_figure(_image(), MULTI, share, 0, "t").data[-1]
    assert torch.allclose(torch.tensor(heat.z, dtype=torch.float64), cells * 100)
    assert heat.x == (10.0, 30.0, 50.0, 70.0) and heat.y == (7.5, 22.5, 37.5, 52.5)  # cell centres in pixels
    bars = loss_share_figure({"BCE": {"box": 1.0, "positives": 1.0, "easy negatives": 2.0}})
    assert [t.x[0] for t in bars.data] == [0.25, 0.25, 0.5]
    hist = p_t_histogram(torch.tensor([0.1, 0.5, 0.99, 0.995]), torch.tensor([True, False, False, False]))
    assert [sum(t.y) for t in hist.data] == [3, 1] and hist.data[0].name == "negatives (3)"


def test_detections_figure_shows_kept_and_suppressed_with_who_suppressed_them() -> None:
    from detviz.postprocess import KEPT, SUPPRESSED, NMSTrace

    trace = NMSTrace(
        boxes=torch.tensor([[10.0, 10, 50, 50], [12, 12, 52, 52], [60, 5, 75, 20]]),
        scores=torch.tensor([0.9, 0.8, 0.7]),
        labels=torch.tensor([1, 1, 2]),
        anchor=torch.tensor([5, 6, 40]),
        status=torch.tensor([KEPT, SUPPRESSED, KEPT]),
        suppressed_by=torch.tensor([-1, 0, -1]),
        suppression_iou=torch.tensor([0.0, 0.82, 0.0]),
    )
    fig = detections_figure(_image(), trace, CLASSES, gt_boxes=GT, gt_labels=GT_LABELS)
    assert _gaps(_traces(fig, "dog: kept")[0]) == 1
    assert _traces(fig, "dog: suppressed")[0].line.dash == "dot"
    assert [a.text for a in fig.layout.annotations] == ["dog 0.90", "bird 0.70"]
    hover = fig.data[-1].text
    assert "suppressed by candidate 0 (0.900), IoU 0.82" in hover[1] and hover[0].endswith("kept")
    hidden = detections_figure(_image(), trace, CLASSES, show_suppressed=False)
    assert not _traces(hidden, "dog: suppressed") and len(hidden.data[-1].x) == 2


def _trace3():
    from detviz.postprocess import KEPT, OVER_LIMIT, SUPPRESSED, NMSTrace

    return NMSTrace(
        boxes=torch.tensor([[10.0, 10, 50, 50], [12, 12, 52, 52], [60, 5, 75, 20], [0, 0, 5, 5]]),
        scores=torch.tensor([0.9, 0.8, 0.7, 0.6]),
        labels=torch.tensor([1, 1, 2, 0]),
        anchor=torch.tensor([5, 6, 40, 2]),
        status=torch.tensor([KEPT, SUPPRESSED, KEPT, OVER_LIMIT]),
        suppressed_by=torch.tensor([-1, 0, -1, -1]),
        suppression_iou=torch.tensor([0.0, 0.82, 0.0, 0.0]),
    )


def test_detections_coloured_by_outcome_with_missed_objects() -> None:
    from detviz.evaluate import FP, TP

    trace = _trace3()
    outcome = torch.tensor([TP, -1, FP, -1])
    gt = torch.tensor([[10.0, 10, 50, 50], [30, 30, 70, 55]])
    fig = detections_figure(_image(), trace, CLASSES, gt_boxes=gt, gt_labels=torch.tensor([1, 0]), outcome=outcome,
                            missed=torch.tensor([False, True]))  # fmt: skip
    assert _traces(fig, "TP")[0].line.color == Outcome.TP.colour
    assert _traces(fig, "FP")[0].line.color == Outcome.FP.colour
    assert _gaps(_traces(fig, "missed object")[0]) == 1 and _traces(fig, "missed object")[0].line.color == MISSED_COLOR
    texts = [a.text for a in fig.layout.annotations]
    assert texts == ["missed cat", "dog 0.90", "bird 0.70", "1 box over the max-detections limit not drawn"]
    markers = fig.data[-1]
    assert list(markers.customdata) == [0, 1, 2]  # the over-the-limit candidate is not drawn
    assert markers.text[0].endswith("kept: TP")
    assert clicked_anchor([{"customdata": int(markers.customdata[1])}], 4) == 1


def test_nms_step_through_draws_only_decided_candidates_and_links_the_suppressor() -> None:
    trace = _trace3()
    first = detections_figure(_image(), trace, CLASSES, upto=1)
    assert list(first.data[-1].customdata) == [0] and _traces(first, "candidate 0")
    second = detections_figure(_image(), trace, CLASSES, upto=2)
    link = _traces(second, "suppressed by candidate 0")
    assert link and list(link[0].x) == [32.0, 30.0]  # from candidate 1's centre to candidate 0's
    selected = detections_figure(_image(), trace, CLASSES, selected=2)
    assert _traces(selected, "candidate 2") and not _traces(selected, "suppressed by candidate 0")


def _crowded_trace(seed: int = 0, kept: int = 3, suppressed: int = 50, over: int = 4):
    """A trace of well-separated kept boxes (one per 30 px column) and many suppressed and
    over-the-limit ones, scores shuffled (not in trace order), on a 200 x 100 image."""
    from detviz.postprocess import KEPT, OVER_LIMIT, SUPPRESSED, NMSTrace

    g = torch.Generator().manual_seed(seed)
    m = kept + suppressed + over
    status = torch.tensor([KEPT] * kept + [SUPPRESSED] * suppressed + [OVER_LIMIT] * over)[
        torch.randperm(m, generator=g)
    ]
    boxes = torch.zeros(m, 4)
    columns = torch.nonzero(status == KEPT).flatten()
    boxes[columns] = torch.tensor([[60.0 * k + 5, 40, 60 * k + 40, 90] for k in range(kept)])
    others = torch.nonzero(status != KEPT).flatten()
    xy = torch.rand(len(others), 2, generator=g) * torch.tensor([150.0, 60])
    boxes[others] = torch.cat([xy, xy + 30], 1)
    return NMSTrace(boxes=boxes, scores=torch.rand(m, generator=g), labels=torch.randint(0, 3, (m,), generator=g),
                    anchor=torch.arange(m), status=status,
                    suppressed_by=torch.where(status == SUPPRESSED, columns[0], -1),
                    suppression_iou=torch.where(status == SUPPRESSED, 0.6, 0.0))  # fmt: skip


def _candidate_tags(fig) -> list[str]:
    """The "class score" tags: annotations on the image (data coordinates), not the note above it."""
    return [a.text for a in fig.layout.annotations if a.xref != "paper"]


def _note(fig) -> str:
    from detviz.figures.detections import NOT_DRAWN_NOTE

    notes = [a.text for a in fig.layout.annotations if a.name == NOT_DRAWN_NOTE]
    return notes[0] if notes else ""


def test_nms_picture_tags_only_kept_boxes_and_draws_suppressed_thin() -> None:
    """Kills: tags on suppressed boxes by default; suppressed outlines as thick as kept ones (or
    solid); label_all not tagging the suppressed boxes."""
    from detviz.postprocess import KEPT, SUPPRESSED

    trace = _crowded_trace(kept=3, suppressed=12, over=0)
    fig = detections_figure(_image(200, 100), trace, CLASSES)
    kept = torch.nonzero(trace.status == KEPT).flatten().tolist()
    expected = {f"{CLASSES[int(trace.labels[i])]} {float(trace.scores[i]):.2f}" for i in kept}
    assert sorted(_candidate_tags(fig)) == sorted(expected) and len(_candidate_tags(fig)) == len(kept)
    kept_widths = [t.line.width for t in fig.data if (t.name or "").endswith(": kept")]
    thin = [t for t in fig.data if (t.name or "").endswith(": suppressed")]
    assert kept_widths and thin and max(t.line.width for t in thin) < min(kept_widths)
    assert {t.line.dash for t in thin} == {"dot"} and sum(_gaps(t) for t in thin) == 12
    assert _note(fig) == ""  # nothing left out
    every = detections_figure(_image(200, 100), trace, CLASSES, label_all=True)
    assert len(_candidate_tags(every)) == len(kept) + int((trace.status == SUPPRESSED).sum())


def test_nms_picture_caps_the_suppressed_boxes_and_counts_the_rest() -> None:
    """Kills: no cap; the cap keeping the first suppressed in trace order rather than the best
    scoring; a wrong "N more" count (or one counting undecided candidates while stepping)."""
    from detviz.postprocess import KEPT, OVER_LIMIT, SUPPRESSED

    trace = _crowded_trace(suppressed=50, over=4)
    suppressed = torch.nonzero(trace.status == SUPPRESSED).flatten()
    best = set(suppressed[trace.scores[suppressed].argsort(descending=True)[:30]].tolist())
    fig = detections_figure(_image(200, 100), trace, CLASSES)
    assert sum(_gaps(t) for t in _traces(fig, "") if (t.name or "").endswith(": suppressed")) == 30
    drawn = {int(i) for i in fig.data[-1].customdata if int(trace.status[int(i)]) == SUPPRESSED}
    assert drawn == best
    assert _note(fig).split("<br>") == [
        f"{len(suppressed) - 30} more suppressed boxes not drawn (the 30 best are)",
        f"{int((trace.status == OVER_LIMIT).sum())} boxes over the max-detections limit not drawn",
    ]
    assert fig.layout.margin.t > 0  # room above the image for the note
    five = detections_figure(_image(200, 100), trace, CLASSES, max_suppressed=5)
    assert _note(five).startswith(f"{len(suppressed) - 5} more suppressed boxes not drawn (the 5 best are)")
    with pytest.raises(ValueError, match="max_suppressed must be None or at least 0, got -1"):
        detections_figure(_image(200, 100), trace, CLASSES, max_suppressed=-1)
    none = detections_figure(_image(200, 100), trace, CLASSES, max_suppressed=0)
    assert _note(none).startswith(f"{len(suppressed)} more suppressed boxes not drawn<br>")
    everything = detections_figure(_image(200, 100), trace, CLASSES, max_suppressed=None)
    assert sum(_gaps(t) for t in everything.data if (t.name or "").endswith(": suppressed")) == len(suppressed)
    assert "suppressed" not in _note(everything)
    upto = 45  # stepping through NMS: only the first 45 candidates are decided
    decided = trace.status[:upto]
    left_out, over = int((decided == SUPPRESSED).sum()) - 30, int((decided == OVER_LIMIT).sum())
    assert left_out > 0 and left_out < len(suppressed) - 30  # the trace is built so
    stepping = detections_figure(_image(200, 100), trace, CLASSES, upto=upto)
    lines = [f"{left_out} more suppressed boxes not drawn (the 30 best are)"]
    lines += [f"{over} boxes over the max-detections limit not drawn"] if over else []
    assert _note(stepping).split("<br>") == lines
    assert len(_candidate_tags(stepping)) == int((decided == KEPT).sum())


def test_nms_picture_leaves_untagged_a_kept_box_whose_tag_would_cover_a_better_ones() -> None:
    """Kills: every kept box tagged at a high NMS IoU (piled-up tags); the worse box's tag kept
    instead of the better one's; a wrong untagged count."""
    from detviz.postprocess import KEPT, NMSTrace

    trace = NMSTrace(
        boxes=torch.tensor([[10.0, 20, 60, 55], [11, 21, 58, 54], [10, 22, 61, 56], [140, 60, 190, 95]]),
        scores=torch.tensor([0.7, 0.9, 0.5, 0.4]),  # the second box is the best of the pile
        labels=torch.tensor([0, 0, 1, 2]),
        anchor=torch.arange(4),
        status=torch.full((4,), KEPT),
        suppressed_by=torch.full((4,), -1),
        suppression_iou=torch.zeros(4),
    )
    fig = detections_figure(_image(200, 100), trace, CLASSES)
    assert _candidate_tags(fig) == ["cat 0.90", "bird 0.40"]
    assert _note(fig) == "2 kept boxes without a tag, where it would cover a better one's"
    assert len(fig.data[-1].customdata) == 4  # every kept box keeps its marker (hover, click)
    every = detections_figure(_image(200, 100), trace, CLASSES, label_all=True)
    assert _candidate_tags(every) == ["cat 0.90", "cat 0.70", "dog 0.50", "bird 0.40"] and _note(every) == ""


def test_to_pixels_scales_x_by_width_and_y_by_height() -> None:
    from detviz.inference import to_pixels
    from detviz.postprocess import KEPT, SUPPRESSED, Detections, NMSTrace

    boxes = torch.tensor([[0.1, 0.2, 0.5, 0.9], [0.0, 0.5, 1.0, 1.0]])
    trace = NMSTrace(boxes=boxes, scores=torch.tensor([0.9, 0.8]), labels=torch.tensor([0, 1]),
                     anchor=torch.tensor([3, 7]), status=torch.tensor([KEPT, SUPPRESSED]),
                     suppressed_by=torch.tensor([-1, 0]), suppression_iou=torch.tensor([0.0, 0.6]))  # fmt: skip
    det = Detections(boxes[:1], torch.tensor([0.9]), torch.tensor([0]), torch.tensor([3]), trace)
    pixels = to_pixels(det, 200, 100)  # a wide image: x by 200, y by 100
    assert pixels.boxes.tolist() == [[20.0, 20.0, 100.0, 90.0]]
    assert pixels.trace.boxes.tolist() == [[20.0, 20.0, 100.0, 90.0], [0.0, 50.0, 200.0, 100.0]]
    assert pixels.scores is det.scores and pixels.trace.suppressed_by.tolist() == [-1, 0]


def test_pr_curves_hover_shows_the_score_threshold() -> None:
    from detviz.evaluate import ClassCurve

    curve = ClassCurve(torch.tensor([1.0, 0.5, 0.667]), torch.tensor([0.5, 0.5, 1.0]), torch.tensor([0.9, 0.6, 0.3]))
    empty = ClassCurve(torch.zeros(0), torch.zeros(0), torch.zeros(0))
    fig = pr_curves_figure({"dog": curve, "cat": empty})
    assert len(fig.data) == 1 and list(fig.data[0].x) == [0.0, 0.5, 0.5, 1.0]
    assert list(fig.data[0].customdata[1:]) == pytest.approx([0.9, 0.6, 0.3])
    assert "score threshold" in fig.data[0].hovertemplate


def test_evaluation_figures() -> None:
    bars = ap_bar_figure(torch.tensor([0.2, float("nan"), 0.9]), CLASSES)
    assert list(bars.data[0].x) == ["bird", "cat"]  # best first, no-ground-truth class left out
    matrix = torch.tensor([[3, 1, 0, 1], [0, 2, 0, 0], [0, 0, 0, 2], [1, 1, 0, 0]])
    conf = confusion_figure(matrix, CLASSES)
    assert list(conf.data[0].y) == [*CLASSES, "background"] and list(conf.data[0].x) == [*CLASSES, "missed"]
    assert conf.data[0].z[0][0] == pytest.approx(0.6) and conf.data[0].z[2][3] == 1.0
    errors = error_breakdown_figure(
        {"classification": 0.1, "localisation": 0.05, "both": 0.0, "duplicate": 0.01, "background": float("nan"),
         "missed": 0.2}, torch.tensor([3, 2, 0, 1, 4, 5]))  # fmt: skip
    assert list(errors.data[0].x) == pytest.approx([0.1, 0.05, 0.0, 0.01, 0.0, 0.2])
    assert errors.data[0].text[0] == "+0.100 (3)"
    surface = surface_figure(torch.tensor([[0.5, 0.6], [0.4, 0.3]]), [0.01, 0.3], [0.45, 0.6], (0.3, 0.45))
    star = surface.data[1]
    assert (star.x[0], star.y[0]) == ("0.6", "0.01")
    scores = class_scores_figure(torch.tensor([0.1, 0.8, 0.05]), CLASSES, chosen=1)
    assert scores.data[0].marker.color[1] == class_color(1) and scores.data[0].marker.color[0] == "#cbd5e0"


def test_figure_numbers_come_from_pure_helpers() -> None:
    from detviz.figures.dataset import _get_histogram_info
    from detviz.figures.detections import _get_detections_info
    from detviz.figures.evaluation import _best_cell, _error_gains
    from detviz.figures.training import _lr_finder_y_range

    assert _get_histogram_info(torch.tensor([2, 2, 0]), 40, False, True) == ([0, 1, 2], [1, 0, 2], None)
    assert _lr_finder_y_range([3.0, 2.0, 4.0]) == pytest.approx([1.9, 3.5]) and _lr_finder_y_range([]) is None
    assert _error_gains({"classification": -0.1, "both": float("nan"), "missed": 0.2}) == [0, 0, 0, 0, 0, 0.2]
    assert _best_cell(np.array([[0.1, np.nan], [0.7, 0.2]])) == (1, 0) and _best_cell(np.full((2, 2), np.nan)) == (0, 0)
    info = _get_detections_info(_trace3(), show_suppressed=True, upto=2, selected=3)
    assert info.kept.tolist() == [True, False, False, False] and info.suppressed.tolist() == [False, True, False, False]
    assert info.stressed == [1, 3]  # the step's candidate, then the selected one
    assert _get_detections_info(_trace3(), show_suppressed=False, upto=None, selected=9).stressed == []


def test_the_apps_image_encoder_remembers_each_image_object() -> None:
    from detviz.figures import image_data_uri
    from pages.ui.cache import image_uri

    image, same_pixels = _image(), _image()
    uri = image_uri(image)
    assert uri == image_data_uri(image) and image_uri(image) is uri  # the second call is the memo's
    assert image_uri(same_pixels) == uri and image_uri(same_pixels) is not uri  # keyed on the object
    fig = ground_truth_figure(image, torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), CLASSES, encode=image_uri)
    assert fig.data[0].source is uri


def _revalidated(fig) -> dict:
    """The figure put through plotly's full validation (raises on an unknown property)."""
    import plotly.graph_objects as go

    return go.Figure(fig.to_dict()).to_dict()


def test_unchecked_figures_are_what_validation_would_make() -> None:
    """The figures a slider move rebuilds skip plotly's validation (detviz.figures.style.unchecked):
    re-validated, each must come out identical. Kills: a misspelled property (plotly.js would
    drop it silently), a magic-underscore key such as `font_size` or a bare string axis title
    (validation expands them; unchecked, plotly.js 3 ignores them), a numpy array validation
    would have turned into something else."""
    from detviz.evaluate import ClassCurve
    from detviz.figures.style import unchecked, unchecked_figure

    trace = _trace3()
    gt = torch.tensor([[10.0, 10, 50, 50], [30, 30, 70, 55]])
    figures = [
        detections_figure(_image(), trace, CLASSES),
        detections_figure(
            _image(),
            trace,
            CLASSES,
            gt_boxes=gt,
            gt_labels=torch.tensor([1, 0]),
            upto=2,
            selected=3,
            outcome=torch.tensor([Outcome.TP, -1, Outcome.FP, -1]),
            missed=torch.tensor([False, True]),
            max_suppressed=0,
        ),
        pr_curves_figure(
            {"dog": ClassCurve(torch.tensor([1.0, 0.5]), torch.tensor([0.5, 1.0]), torch.tensor([0.9, 0.3]))}
        ),
    ]
    for fig in figures:
        assert fig.to_dict() == _revalidated(fig)
    import plotly.graph_objects as go

    # the check itself works on what unchecked lets through
    underscore = unchecked_figure([unchecked(go.Scatter, x=[1])], {"hoverlabel": {"font_size": 13}})
    assert underscore.to_dict() != _revalidated(underscore)
    with pytest.raises(ValueError, match="colour"):
        _revalidated(unchecked_figure([unchecked(go.Scatter, x=[1], colour="red")], {}))
