"""Box coding: the lesson's tanh coding and its limits, SSD's variance coding, round trips; pixel
<-> normalized scaling; the argument checks shared by the library."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from detviz.anchors import PRESETS, make_anchors
from detviz.boxes import activations_to_boxes, boxes_to_activations, to_normalized_boxes, to_pixel_boxes
from detviz.checks import check_choice, check_positive_int

LESSON = make_anchors(PRESETS["lesson_4x4"])
MULTI = make_anchors(PRESETS["lesson_multiscale"])

# The notes print `a_ic = actn_to_bb(b_bb, anchors)` for image 7: 16 boxes in [y1, x1, y2, x2].
LESSON_DECODED_YX = [
    [0.0990, 0.0915, 0.2647, 0.2559],
    [0.1293, 0.3460, 0.2624, 0.4835],
    [0.1314, 0.5262, 0.3009, 0.7321],
    [0.0968, 0.8347, 0.2352, 0.9731],
    [0.3896, 0.1076, 0.5187, 0.2329],
    [0.4016, 0.3421, 0.5279, 0.4671],
    [0.4036, 0.5651, 0.5344, 0.6904],
    [0.3719, 0.8358, 0.5008, 0.9613],
    [0.5301, 0.1139, 0.8497, 0.2577],
    [0.5093, 0.3696, 0.8775, 0.5001],
    [0.5085, 0.5798, 0.8768, 0.7096],
    [0.5369, 0.7888, 0.7736, 0.9160],
    [0.6248, 0.0229, 0.9921, 0.3468],
    [0.5901, 0.2130, 0.9647, 0.5712],
    [0.5938, 0.4490, 0.9673, 0.7858],
    [0.6393, 0.7419, 0.9741, 0.9378],
]


def test_zero_activations_give_the_anchors() -> None:
    for anchors in (LESSON, MULTI):
        for coding in ("tanh", "variance"):
            boxes = activations_to_boxes(torch.zeros(len(anchors), 4), anchors, coding)
            torch.testing.assert_close(boxes, anchors.boxes)


def test_tanh_coding_limits_are_the_lessons() -> None:
    """Centres move at most half a cell; sizes stay within 0.5x and 1.5x of the anchor."""
    big = torch.full((len(MULTI), 4), 50.0)
    boxes = activations_to_boxes(big, MULTI)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    torch.testing.assert_close(centres, MULTI.centers + MULTI.cell_size[:, None] / 2)
    torch.testing.assert_close(boxes[:, 2:] - boxes[:, :2], MULTI.sizes * 1.5)
    small = activations_to_boxes(-big, MULTI)
    torch.testing.assert_close(small[:, 2:] - small[:, :2], MULTI.sizes * 0.5)


def test_every_box_the_lesson_decoded_is_reachable_from_its_anchor() -> None:
    """The printed boxes keep to the coding's limits (some sit on the 0.5x limit: a saturated
    tanh), so encoding and decoding them gives them back."""
    printed = torch.tensor(LESSON_DECODED_YX)[:, [1, 0, 3, 2]]
    centres, sizes = (printed[:, :2] + printed[:, 2:]) / 2, printed[:, 2:] - printed[:, :2]
    shift = (centres - LESSON.centers) / LESSON.cell_size[:, None]
    scale = sizes / LESSON.sizes
    rounding = 1e-3  # the print has 4 decimals
    assert bool((shift.abs() <= 0.5 + rounding).all())
    assert bool((scale >= 0.5 - rounding).all() and (scale <= 1.5 + rounding).all())
    activations = boxes_to_activations(printed, LESSON)
    torch.testing.assert_close(activations_to_boxes(activations, LESSON), printed, atol=1e-4, rtol=0)


def test_batched_activations_decode_per_image() -> None:
    act = torch.randn(3, len(MULTI), 4)
    batch = activations_to_boxes(act, MULTI)
    for i in range(3):
        torch.testing.assert_close(batch[i], activations_to_boxes(act[i], MULTI))


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from(["tanh", "variance"]))
def test_encode_decode_round_trip(seed: int, coding: str) -> None:
    gen = torch.Generator().manual_seed(seed)
    act = torch.randn(len(MULTI), 4, generator=gen) * (1.0 if coding == "tanh" else 3.0)
    boxes = activations_to_boxes(act, MULTI, coding)
    again = boxes_to_activations(boxes, MULTI, coding)
    torch.testing.assert_close(activations_to_boxes(again, MULTI, coding), boxes, atol=2e-5, rtol=1e-4)
    if coding == "variance":
        torch.testing.assert_close(again, act, atol=2e-3, rtol=1e-3)


def test_variance_coding_is_ssds() -> None:
    anchors = LESSON
    box = torch.tensor([[0.05, 0.02, 0.30, 0.20]])  # against anchor 0: centre (0.125, 0.125), size 0.25
    act = boxes_to_activations(box.expand(16, 4).contiguous(), anchors, "variance")[0]
    cx, cy, w, h = 0.175, 0.11, 0.25, 0.18
    expected = torch.tensor(
        [
            (cx - 0.125) / (0.25 * 0.1),
            (cy - 0.125) / (0.25 * 0.1),
            torch.log(torch.tensor(w / 0.25)) / 0.2,
            torch.log(torch.tensor(h / 0.25)) / 0.2,
        ]
    )
    torch.testing.assert_close(act, expected)


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match=r"box_activations must have shape \(16, 4\), got \(189, 4\)"):
        activations_to_boxes(torch.zeros(189, 4), LESSON)
    with pytest.raises(ValueError, match=r"box_activations must have shape \(\.\.\., A, 4\), got \(4\)"):
        activations_to_boxes(torch.zeros(4), LESSON)
    with pytest.raises(ValueError, match=r"coding must be one of tanh, variance, got 'log'"):
        activations_to_boxes(torch.zeros(16, 4), LESSON, "log")
    with pytest.raises(ValueError, match=r"box_activations must be a floating-point tensor, got torch.int64"):
        activations_to_boxes(torch.zeros(16, 4, dtype=torch.int64), LESSON)
    with pytest.raises(ValueError, match=r"different devices"):
        activations_to_boxes(torch.zeros(16, 4, device="meta"), LESSON)
    bad = LESSON.boxes.clone()
    bad[3] = torch.tensor([0.5, 0.5, 0.4, 0.6])
    with pytest.raises(ValueError, match=r"boxes at index \[3\] is \[0.5, 0.5, 0.4, 0.6\]"):
        boxes_to_activations(bad, LESSON)


def test_pixel_scaling_takes_x_from_the_width_and_y_from_the_height() -> None:
    """A non-square image, so a swapped width and height fails."""
    normalized = torch.tensor([[0.1, 0.2, 0.5, 1.0], [0.0, 0.0, 1.0, 0.5]])
    pixels = to_pixel_boxes(normalized, 200, 100)
    assert pixels.tolist() == [[20.0, 20.0, 100.0, 100.0], [0.0, 0.0, 200.0, 50.0]]
    assert pixels.dtype == torch.float32
    torch.testing.assert_close(to_normalized_boxes(pixels, 200, 100), normalized)
    wide = to_normalized_boxes(torch.tensor([[0, 0, 640, 480]], dtype=torch.int64), 640, 480)
    assert wide.tolist() == [[0.0, 0.0, 1.0, 1.0]] and wide.dtype == torch.float32


def test_pixel_scaling_keeps_dtype_and_takes_one_size_per_box() -> None:
    normalized = torch.full((3, 4), 0.5, dtype=torch.float64)
    widths, heights = torch.tensor([10, 20, 30]), torch.tensor([4, 6, 8])
    pixels = to_pixel_boxes(normalized, widths, heights)
    assert pixels.dtype == torch.float64
    assert pixels.tolist() == [[5.0, 2.0, 5.0, 2.0], [10.0, 3.0, 10.0, 3.0], [15.0, 4.0, 15.0, 4.0]]
    torch.testing.assert_close(to_normalized_boxes(pixels, widths, heights), normalized)


def test_pixel_scaling_of_no_boxes_is_no_boxes() -> None:
    for convert in (to_pixel_boxes, to_normalized_boxes):
        assert convert(torch.zeros(0, 4), 64, 48).shape == (0, 4)
        assert convert(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0)).shape == (0, 4)


def test_the_first_pages_and_the_readers_import_no_torchvision() -> None:
    """torchvision takes seconds to import: the box helpers, figures and readers must not need it."""
    code = "import sys, detviz.boxes, detviz.data, detviz.figures; print('torchvision' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("value", [0, -3, 2.5, True, "4", None])
def test_positive_integer_check_names_the_argument(value: object) -> None:
    with pytest.raises(ValueError, match=rf"max_detections must be a positive integer, got {value!r}\."):
        check_positive_int("max_detections", value)
    assert check_positive_int("n", 7) == 7


def test_choice_check_lists_the_choices() -> None:
    assert check_choice("coding", "tanh", ("tanh", "variance")) == "tanh"
    for value in ("log", None, ["tanh"]):
        with pytest.raises(ValueError, match=r"coding must be one of tanh, variance, got"):
            check_choice("coding", value, ("tanh", "variance"))
