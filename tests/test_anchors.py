"""Anchors: the lesson's printed anchors, the lesson's multi-scale construction, SSD300's 8,732."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.ops import box_convert

from detviz.anchors import (
    MAX_ANCHOR_SIDE,
    MAX_ANCHORS,
    MIN_ANCHOR_SIDE,
    PRESETS,
    AnchorConfig,
    AnchorShape,
    config_text,
    make_anchors,
    parse_anchor_text,
)

# The lesson's `anchors` print for the 4x4 grid: (centre, centre, size, size) in its [y, x] order,
# and `anchor_cnr`: the corners [y1, x1, y2, x2].
LESSON_CENTRES_YX = [(r, c) for r in (0.125, 0.375, 0.625, 0.875) for c in (0.125, 0.375, 0.625, 0.875)]
LESSON_CORNERS_YX = [(r, c, r + 0.25, c + 0.25) for r in (0.0, 0.25, 0.5, 0.75) for c in (0.0, 0.25, 0.5, 0.75)]


def test_lesson_4x4_reproduces_the_printed_anchors() -> None:
    anchors = make_anchors(PRESETS["lesson_4x4"])
    assert len(anchors) == 16 and anchors.num_shapes == 1
    expected_centres = torch.tensor([(x, y) for y, x in LESSON_CENTRES_YX])
    expected_boxes = torch.tensor([(x1, y1, x2, y2) for y1, x1, y2, x2 in LESSON_CORNERS_YX])
    assert torch.equal(anchors.centers, expected_centres)
    assert torch.equal(anchors.boxes, expected_boxes)
    assert torch.equal(anchors.sizes, torch.full((16, 2), 0.25))
    assert torch.equal(anchors.cell_size, torch.full((16,), 0.25))  # the lesson's grid_sizes
    assert (int(anchors.row[5]), int(anchors.col[5])) == (1, 1)  # DESIGN: anchor 5 is row 1, column 1
    assert anchors.describe(5) == "anchor 5: level 0 (4x4), row 1, column 1, shape 0 (0.25 x 0.25)"


def _lesson_multiscale_by_formula() -> list[tuple[float, float, float, float]]:
    """The lesson's 189 anchors from its description: grids 4, 2, 1; per cell the 9 scales
    zoom x ratio, zoom-major, ratios (h, w) = (1, 1), (1, 0.5), (0.5, 1); as xyxy."""
    boxes = []
    for g in (4, 2, 1):
        for row in range(g):
            for col in range(g):
                cy, cx = (row + 0.5) / g, (col + 0.5) / g
                for zoom in (0.75, 1.0, 1.3):
                    for h, w in ((1.0, 1.0), (1.0, 0.5), (0.5, 1.0)):
                        hh, ww = zoom * h / g, zoom * w / g
                        boxes.append((cx - ww / 2, cy - hh / 2, cx + ww / 2, cy + hh / 2))
    return boxes


def test_lesson_multiscale_gives_189_anchors_in_the_lesson_order() -> None:
    anchors = make_anchors(PRESETS["lesson_multiscale"])
    assert len(anchors) == 189 and anchors.num_shapes == 9 and anchors.shapes_per_level == (9, 9, 9)
    torch.testing.assert_close(anchors.boxes, torch.tensor(_lesson_multiscale_by_formula()), atol=1e-7, rtol=0)
    assert anchors.level_start == (0, 144, 180, 189)
    assert anchors.level.tolist() == [0] * 144 + [1] * 36 + [2] * 9
    assert torch.equal(anchors.cell_size, torch.tensor([0.25] * 144 + [0.5] * 36 + [1.0] * 9))
    # the second shape of a cell is tall: height twice its width
    w, h = anchors.sizes[1].tolist()
    assert h == pytest.approx(2 * w)
    assert anchors.shape_index[:9].tolist() == list(range(9))


def test_ssd300_matches_the_paper_and_torchvision() -> None:
    anchors = make_anchors(PRESETS["ssd300"])
    assert len(anchors) == 8732
    assert anchors.shapes_per_level == (4, 6, 6, 6, 4, 4) and anchors.num_shapes == 6
    assert anchors.grids == (38, 19, 10, 5, 3, 1)
    first = anchors.boxes[:4]  # cell (0, 0) of the 38x38 map, step 8 px at 300 px
    c, s = 4 / 300, 30 / 300
    torch.testing.assert_close(first[0], torch.tensor([c - s / 2, c - s / 2, c + s / 2, c + s / 2]))
    s_prime = math.sqrt(30 * 60) / 300
    torch.testing.assert_close(anchors.sizes[1], torch.tensor([s_prime, s_prime]))
    torch.testing.assert_close(anchors.sizes[2], torch.tensor([s * math.sqrt(2), s / math.sqrt(2)]))
    torch.testing.assert_close(anchors.sizes[3], torch.tensor([s / math.sqrt(2), s * math.sqrt(2)]))
    # torchvision's SSD default-box generator, given the paper's scales and steps, agrees
    scales = [s / 300 for s in (30, 60, 111, 162, 213, 264, 315)]
    generator = DefaultBoxGenerator(
        [[2], [2, 3], [2, 3], [2, 3], [2], [2]], scales=scales, steps=[8, 16, 32, 64, 100, 300], clip=False
    )
    assert generator.num_anchors_per_location() == [4, 6, 6, 6, 4, 4]
    theirs = generator._grid_default_boxes([[f, f] for f in anchors.grids], [300, 300], dtype=torch.float32)
    torch.testing.assert_close(anchors.boxes, box_convert(theirs, "cxcywh", "xyxy"), atol=1e-6, rtol=0)


def test_clip_keeps_boxes_inside_and_centres_consistent() -> None:
    anchors = make_anchors(AnchorConfig(grids=(2,), zooms=(1.5,), clip=True))
    assert float(anchors.boxes.min()) == 0.0 and float(anchors.boxes.max()) == 1.0
    torch.testing.assert_close(anchors.centers, (anchors.boxes[:, :2] + anchors.boxes[:, 2:]) / 2)
    torch.testing.assert_close(anchors.sizes, anchors.boxes[:, 2:] - anchors.boxes[:, :2])


def test_config_round_trips_through_plain_data() -> None:
    for config in PRESETS.values():
        data = config.to_dict()
        assert AnchorConfig.from_dict(data) == config
    assert AnchorConfig.from_dict({"grids": [4, 2], "shapes": [[1, 1], [0.5, 1]]}).shapes[1] == AnchorShape(0.5, 1.0)


def test_num_anchors_without_building_them() -> None:
    config = AnchorConfig(grids=(8, 4), zooms=(1.0, 2.0), shapes=(AnchorShape(1, 1), AnchorShape(2, 1)))
    assert config.num_anchors == len(make_anchors(config)) == (64 + 16) * 4
    assert make_anchors(config).to("cpu").boxes.shape == (320, 4)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"grids": ()}, r"AnchorConfig.grids is empty"),
        ({"grids": (4, 0)}, r"AnchorConfig.grids must be positive integers, got 0"),
        ({"grids": (4.5,)}, r"AnchorConfig.grids must be positive integers, got 4.5"),
        ({"grids": (4,), "zooms": (1.0, 0.0)}, r"AnchorConfig.zooms must be positive, got 0"),
        ({"grids": (4,), "zooms": ()}, r"AnchorConfig.zooms is empty"),
        (
            {"grids": (4,), "shapes": ((1.0, 0.0),)},
            r"AnchorConfig.shapes must have positive width and height, got \(1.0, 0.0\)",
        ),
        ({"grids": (4,), "shapes": ((-1.0, 1.0),)}, r"AnchorConfig.shapes must have positive width and height"),
        ({"grids": (4,), "level_shapes": ()}, r"level_shapes has 0 levels but grids has 1"),
        ({"grids": (4,), "steps": (0.1, 0.2)}, r"steps has 2 values but grids has 1"),
    ],
)
def test_invalid_configs_name_the_field(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AnchorConfig(**kwargs)


def test_too_many_anchors_are_refused() -> None:
    config = AnchorConfig(grids=(200,), zooms=(1.0, 2.0, 3.0))
    assert config.num_anchors > MAX_ANCHORS
    with pytest.raises(ValueError, match=r"gives 120,000 anchors; at most 100,000 are allowed"):
        make_anchors(config)


def test_unknown_fields_in_plain_data() -> None:
    with pytest.raises(ValueError, match=r"AnchorConfig has no field\(s\) \['ratios'\]"):
        AnchorConfig.from_dict({"grids": [4], "ratios": [1]})


def test_anchor_text_fields_round_trip() -> None:
    for name in ("lesson_4x4", "lesson_multiscale"):
        assert parse_anchor_text(*config_text(PRESETS[name])) == PRESETS[name]
    config = parse_anchor_text(" 8; 4 ", "1, 1.5", "1x1, 2X1, 0.5")
    assert config.grids == (8, 4) and config.zooms == (1.0, 1.5)
    assert config.shapes == (AnchorShape(1, 1), AnchorShape(2, 1), AnchorShape(0.5, 0.5))  # "0.5" is a square
    assert config.num_anchors == (64 + 16) * 6


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (("4, a", "1", "1x1"), r"grids: '4, a' is not a list of whole numbers"),
        (("4.5", "1", "1x1"), r"grids: '4.5' is not a list of whole numbers"),
        (("4", "1, x", "1x1"), r"zooms: '1, x' is not a list of numbers"),
        (("4", "1", "1xq"), r"shapes: '1xq' is not width x height"),
        (("4", "0", "1x1"), r"zooms must be positive, got 0"),
        (("4", "1", "0x1"), r"shapes must have positive width and height, got \(0.0, 1.0\)"),
        (("4", "1", "1x-2"), r"shapes must have positive width and height"),
        (("0", "1", "1x1"), r"grids must be positive integers, got 0"),
        (("", "1", "1x1"), r"grids is empty"),
        (("4", "", "1x1"), r"zooms is empty"),
        (("4", "1", " , "), r"shapes is empty"),
        (("4", "nan", "1x1"), r"zooms must be positive, got nan"),
        (("120", "1, 2, 3", "1x1, 1x2, 2x1"), r"gives 129,600 anchors; at most 100,000 are allowed"),
    ],
)
def test_bad_anchor_text_is_refused_with_the_field_named(fields: tuple[str, str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_anchor_text(*fields)


# --- absurd and wrongly typed configs (issue 12) ---------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        # each input is finite and positive: only the boxes they make are absurd
        (
            {"grids": (4,), "zooms": (1e30,)},
            r"AnchorConfig.zooms and shapes: anchor shape 0 of level 0 \(4x4\) is 2.5e\+29 x 2.5e\+29 image sides; "
            r".* use smaller zooms and shapes",
        ),
        ({"grids": (4,), "zooms": (1e40,)}, r"is 2.5e\+39 x 2.5e\+39 image sides"),  # inf in float32
        ({"grids": (4, 2), "zooms": (1.0, 20.0)}, r"anchor shape 1 of level 0 \(4x4\) is 5 x 5 image sides"),
        (
            {"grids": (4,), "shapes": ((1.0, 1.0), (1e-30, 1.0))},
            r"anchor shape 1 of level 0 \(4x4\) is 2.5e-31 x 0.25 image sides; .* use larger zooms and shapes",
        ),
        ({"grids": (1,), "level_shapes": (((1e30, 1.0),),)}, r"AnchorConfig.level_shapes: .* is 1e\+30 x 1 image"),
        ({"grids": (4,), "steps": (1e30,)}, r"AnchorConfig.steps: .* centred up to 3.5e\+30 image sides away"),
        ({"grids": (4,), "steps": (3.0,)}, r"AnchorConfig.steps: .* centred up to 10.5 image sides away \(step 3\)"),
    ],
)
def test_configs_whose_boxes_are_absurd_are_refused(kwargs: dict, message: str) -> None:
    config = AnchorConfig(**kwargs)
    with pytest.raises(ValueError, match=message):
        make_anchors(config)


def test_anchor_side_bounds_are_inclusive() -> None:
    """The largest and smallest allowed anchors are made, with exactly those sides."""
    big = make_anchors(AnchorConfig(grids=(1,), zooms=(MAX_ANCHOR_SIDE,)))
    torch.testing.assert_close(big.boxes, torch.tensor([[-1.5, -1.5, 2.5, 2.5]]))
    small = make_anchors(AnchorConfig(grids=(1,), shapes=((MIN_ANCHOR_SIDE * 1.01, 1.0),)))
    assert float(small.sizes[0, 0]) == pytest.approx(MIN_ANCHOR_SIDE * 1.01, rel=1e-3)
    for preset in PRESETS.values():
        assert float((make_anchors(preset).sizes).max()) <= MAX_ANCHOR_SIDE


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"grids": 4}, r"AnchorConfig.grids must be a list, got int 4"),
        ({"grids": (4,), "zooms": "1"}, r"AnchorConfig.zooms must be a list, got str '1'"),
        ({"grids": (4,), "zooms": (None,)}, r"AnchorConfig.zooms must hold numbers, got NoneType None"),
        ({"grids": (4,), "zooms": ("1.5",)}, r"AnchorConfig.zooms must hold numbers, got str '1.5'"),
        ({"grids": (4,), "shapes": ((1.0,),)}, r"AnchorConfig.shapes must hold \(width, height\) pairs"),
        ({"grids": (4,), "shapes": (1.0,)}, r"AnchorConfig.shapes must be a list, got float 1.0"),
        ({"grids": (1,), "level_shapes": ((("a", 1),),)}, r"AnchorConfig.level_shapes must hold numbers"),
        ({"grids": (4,), "steps": (None,)}, r"AnchorConfig.steps must hold numbers"),
        ({"grids": (4,), "clip": "yes"}, r"AnchorConfig.clip must be true or false, got 'yes'"),
    ],
)
def test_wrongly_typed_fields_are_a_value_error_naming_the_field(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AnchorConfig(**kwargs)


def test_plain_data_that_is_not_a_dict() -> None:
    with pytest.raises(ValueError, match=r"AnchorConfig as plain data must be a dict of its fields, got list"):
        AnchorConfig.from_dict(["grids", "zooms"])  # type: ignore[arg-type]
