"""What every figure shares: colours, the font, the base layout and the legend presets.

A figure module builds its layout with `chart_layout(...)` and `legend(...)` instead of writing
margins, fonts and legend positions again, so a change of house style is one edit here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, TypeVar

import plotly.graph_objects as go
from plotly.basedatatypes import BaseTraceType
from plotly.colors import qualitative

from detviz.codes import ErrorKind

# Bright, mutually distinct colours that stay visible on photographs; 30 before any repeats.
PALETTE: tuple[str, ...] = tuple(qualitative.Plotly) + tuple(qualitative.D3) + tuple(qualitative.Dark24[:10])
FONT = dict(family="Inter, Segoe UI, Helvetica, Arial, sans-serif")

ACCENT = "#2b6cb0"  # the one colour of a single-series chart
MUTED = "#cbd5e0"  # what stays in the background: raw curves, classes not chosen
REFERENCE = "#c53030"  # a reference line: a threshold, a suggested value
HIGHLIGHT = "#ffd400"  # the candidate or anchor being looked at
LEVEL_COLORS = ("#2b6cb0", "#dd6b20", "#2f855a", "#b83280", "#6b46c1", "#c05621", "#2c7a7b")  # anchor levels
POSITIVE_COLOR, FORCED_COLOR, NEGATIVE_COLOR = "#38a169", "#dd6b20", "#a0aec0"  # matched anchors
BCE_COLOR, FOCAL_COLOR = ACCENT, "#dd6b20"

# Outcomes and error types take their colours from detviz.codes (Outcome.colour, ErrorType.colour).
MISSED_COLOR = ErrorKind.MISS.type.colour  # an object no detection found

LegendPosition = Literal["top right", "above right", "above left", "below", "side"]
_LEGENDS: dict[str, dict[str, Any]] = {
    "top right": dict(orientation="h", y=1.12, x=1, xanchor="right"),  # under a chart's title
    "above right": dict(orientation="h", y=1.02, x=1, xanchor="right", yanchor="bottom"),
    "above left": dict(orientation="h", y=1.02, x=0, yanchor="bottom"),
    "below": dict(orientation="h", y=-0.02, x=0, yanchor="top"),  # under an image
    "side": dict(orientation="v", x=1.01, y=1),  # many entries (one per class)
}


def class_color(label: int) -> str:
    """A stable colour (hex) for a class id."""
    return PALETTE[int(label) % len(PALETTE)]


def class_name(class_names: Sequence[str], label: int, unknown: str | None = None) -> str:
    """The name of class id `label`; for an id outside `class_names`, `unknown` or "class {label}"."""
    if 0 <= label < len(class_names):
        return class_names[label]
    return f"class {label}" if unknown is None else unknown


def text_color(background: str) -> str:
    """Black or white, whichever reads better on the hex background colour."""
    r, g, b = (int(background[i : i + 2], 16) for i in (1, 3, 5))
    return "#111111" if 0.299 * r + 0.587 * g + 0.114 * b > 150 else "#ffffff"


def rgba(hex_color: str, alpha: float) -> str:
    """The hex colour as a plotly "rgba(r,g,b,alpha)" string."""
    r, g, b = (int(hex_color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def legend(position: LegendPosition, **override: Any) -> dict[str, Any]:
    """A fresh legend dict for one of the preset positions, with `override` keys replaced (a
    None override drops the key, leaving plotly's default)."""
    return {key: value for key, value in {**_LEGENDS[position], **override}.items() if value is not None}


_Trace = TypeVar("_Trace", bound=BaseTraceType)


def unchecked(trace_type: type[_Trace], **props: Any) -> _Trace:
    """A trace built without plotly's property-by-property validation, for `unchecked_figure`.

    Validating is most of the cost of a figure a slider move rebuilds: ~5 ms for one scatter
    with per-point colours and symbols, ~0.5 ms without it (plotly skips it the same way for
    its own templates). Give nested dicts (`font=dict(size=13)`): only validation expands
    "magic underscore" keys such as `font_size`. tests/test_figures.py re-validates every
    figure built this way."""
    return trace_type(**props, _validate=False)


def unchecked_figure(data: Sequence[BaseTraceType], layout: dict[str, Any]) -> go.Figure:
    """A figure of `unchecked` traces and a layout of nested dicts, in one construction and
    without validation (see `unchecked`)."""
    return go.Figure(data=list(data), layout=layout, _validate=False)


def chart_layout(
    title: str | dict[str, Any] | None = None,
    height: int = 300,
    *,
    top: int = 40,
    right: int = 0,
    legend: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The layout keys every figure shares: its height, margins (none on the sides and below,
    `top` above for the title), the house font, and `title` / `legend` when given; `extra`
    adds the figure's own keys (axes, barmode, ...)."""
    layout: dict[str, Any] = dict(height=height, margin=dict(l=0, r=right, t=top, b=0), font=FONT, **extra)
    if title is not None:
        layout["title"] = dict(text=title) if isinstance(title, str) else title  # nested: see `unchecked`
    if legend is not None:
        layout["legend"] = legend
    return layout
