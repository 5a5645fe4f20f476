"""Figure builders, checked on fig.data / fig.layout rather than pixels."""

from __future__ import annotations

import torch
from PIL import Image

from detviz.figures import (
    PALETTE,
    class_color,
    class_count_figure,
    ground_truth_figure,
    histogram_figure,
    multilabel_figure,
    render_thumbnail,
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
    hover = [t for t in fig.data if t.type == "scatter"]
    assert len(hover) == 2 and "1: cat" in hover[0].hovertemplate and "difficult" in hover[1].hovertemplate
    assert "30 x 25 px" in hover[0].hovertemplate


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

    result = {
        "lrs": [1e-5, 1e-4, 1e-3, 1e-2],
        "losses": [3.0, 2.5, 1.0, 9.0],
        "smoothed": [3.0, 2.8, 2.0, 4.0],
        "suggestion": 1e-4,
        "steepest": 1e-3,
    }
    fig = lr_finder_figure(result)
    assert [t.name for t in fig.data] == ["loss", "smoothed"] and list(fig.data[1].y) == [3.0, 2.8, 2.0, 4.0]
    assert fig.layout.xaxis.type == "log" and fig.layout.shapes[0].x0 == 1e-4
