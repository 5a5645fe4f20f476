"""Figures of training runs: pure functions, metrics.jsonl records (or the learning-rate
finder's result) in, plotly figure out.

A record is one line of a run's metrics.jsonl (see detviz.train.engine.RunFolderCallback):
    {"kind": "step", "epoch", "step", "lr", "loss", "loss_box", "loss_cls", ..., "time"}
    {"kind": "epoch", "epoch", "step", "val_map", "val_map_07", "val_loss", ..., "time"}
Curves are drawn from at most MAX_POINTS points each, so a long run stays quick to draw and
to send to the browser every few seconds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import plotly.graph_objects as go

from detviz.figures.style import ACCENT, MUTED, PALETTE, REFERENCE, chart_layout, legend

if TYPE_CHECKING:
    from detviz.train.report import LRFinderResult

LOSS_PARTS = ("loss", "loss_box", "loss_cls")  # step records' loss keys, total first
EPOCH_METRICS = ("val_map", "val_map_07", "val_accuracy", "val_loss")  # score metrics, then the loss
MAX_POINTS = 600  # per curve: a 1,000-pixel-wide chart shows no more
LOG_TICK_FORMAT = ".2~g"  # whole numbers on log axes: plotly's default labels 0.5 as a bare "5"
FEW_POINTS = 30  # curves with fewer points get markers (a single point has no line to show)


def _layout(title: str, height: int = 300, **axes: Any) -> dict:
    return chart_layout(dict(text=title, x=0, xanchor="left"), height, top=60, legend=legend("above right"),
                        hovermode="x unified", **axes)  # fmt: skip


def split_records(records: Sequence[dict]) -> tuple[list[dict], list[dict]]:
    """(step records, epoch records) of a run's metrics.jsonl, each in file order."""
    steps, epochs = [], []
    for r in records:  # one pass: a polled long run has tens of thousands of records
        kind = r.get("kind")
        if kind == "step":
            steps.append(r)
        elif kind == "epoch":
            epochs.append(r)
    return steps, epochs


def thin(rows: Sequence[dict], most: int = MAX_POINTS) -> list[dict]:
    """At most `most` rows, evenly spaced, always keeping the first and the last; [] for []."""
    if len(rows) <= most:
        return list(rows)
    picked = np.linspace(0, len(rows) - 1, most).round().astype(int)
    return [rows[i] for i in np.unique(picked)]


def validation_metrics(records: Sequence[dict]) -> list[str]:
    """The EPOCH_METRICS names some epoch record holds, in that order; [] for a run without
    validation (its epoch records hold only epoch, step and time)."""
    _, epochs = split_records(records)
    return [m for m in EPOCH_METRICS if any(m in r for r in epochs)]


def _mode(points: int) -> str:
    return "lines+markers" if points < FEW_POINTS else "lines"


def _log_dtick(values: np.ndarray) -> str | None:
    """Tick spacing of a log axis: 1, 2, 5 per decade over a narrow range, plotly's decades
    (None) over a wide one (a diverged run's 1e19), where per-decade labels would pile up."""
    finite = values[np.isfinite(values) & (values > 0)]
    return "D2" if finite.size and finite.max() / finite.min() < 1e3 else None


def _column(rows: Sequence[dict], key: str) -> np.ndarray:
    """(N,) float64 of rows[i][key]; NaN where a row lacks it (plotly leaves a gap)."""
    return np.array([r.get(key, math.nan) for r in rows], dtype=float)


def losses_figure(records: Sequence[dict]) -> go.Figure:
    """Training loss and its parts (box, classification) per logged step, log y.

    An empty figure (axes, no traces) for a run with no step record yet."""
    steps = thin(split_records(records)[0])
    fig = go.Figure()
    x = _column(steps, "step")
    parts = {p: _column(steps, p) for p in LOSS_PARTS if any(p in r for r in steps)}
    for k, (part, y) in enumerate(parts.items()):
        fig.add_trace(go.Scatter(x=x, y=y, mode=_mode(len(steps)), name=part,
                                 line=dict(color=PALETTE[k], width=2.2 if part == "loss" else 1.2)))  # fmt: skip
    dtick = _log_dtick(np.concatenate(list(parts.values()))) if parts else None
    fig.update_layout(_layout("Training loss", xaxis=dict(title="step"),
                              yaxis=dict(title="loss", type="log", dtick=dtick, tickformat=LOG_TICK_FORMAT)))  # fmt: skip
    return fig


def validation_figure(records: Sequence[dict]) -> go.Figure:
    """Validation per epoch: mAP (all-point and VOC07 11-point; accuracy for the classifier
    stages) on the left axis in [0, 1], the validation loss dotted on the right axis."""
    _, epochs = split_records(records)
    fig = go.Figure()
    x = [r["epoch"] + 1 for r in epochs]
    for k, name in enumerate(validation_metrics(records)):
        on_right = name == "val_loss"
        fig.add_trace(go.Scatter(x=x, y=_column(epochs, name), mode="lines+markers", name=name,
                                 yaxis="y2" if on_right else "y",
                                 line=dict(color=PALETTE[k + 3], dash="dot" if on_right else "solid")))  # fmt: skip
    fig.update_layout(_layout(
        "Validation", xaxis=dict(title="epoch", dtick=1 if len(x) <= 20 else None, rangemode="tozero"),
        yaxis=dict(title="score", range=[0, 1]), yaxis2=dict(title="loss", overlaying="y", side="right", showgrid=False, tickformat=".3~g"),
    ))  # fmt: skip
    return fig


def lr_figure(records: Sequence[dict]) -> go.Figure:
    """The learning rate at each logged step: the one-cycle schedule as it ran (the head's
    rate; a pretrained backbone's groups run at this / their divisors)."""
    steps = thin(split_records(records)[0])
    fig = go.Figure(go.Scatter(x=_column(steps, "step"), y=_column(steps, "lr"), mode=_mode(len(steps)), name="lr",
                               line=dict(color=PALETTE[2])))  # fmt: skip
    fig.update_layout(_layout("Learning rate (one cycle)", 260, xaxis=dict(title="step"),
                              yaxis=dict(title="learning rate", exponentformat="power")))  # fmt: skip
    return fig


def compare_figure(runs: dict[str, Sequence[dict]], metric: str = "val_map") -> go.Figure:
    """One metric for several runs, one line each: a loss part per step ("loss", "loss_box",
    "loss_cls", log y) or an epoch metric ("val_map", ...) per epoch. `runs` maps run names
    to their records; a run without the metric gets an empty trace (it stays in the legend)."""
    per_step = metric in LOSS_PARTS
    fig = go.Figure()
    ys = []
    for k, (name, records) in enumerate(runs.items()):
        steps, epochs = split_records(records)
        rows = [r for r in (thin(steps) if per_step else epochs) if metric in r]
        x = _column(rows, "step") if per_step else np.array([r["epoch"] + 1 for r in rows], dtype=float)
        ys.append(_column(rows, metric))
        fig.add_trace(go.Scatter(x=x, y=ys[-1], mode=_mode(len(rows)) if per_step else "lines+markers", name=name,
                                 line=dict(color=PALETTE[k % len(PALETTE)])))  # fmt: skip
    title = f"{'Training ' + metric if per_step else metric} by run"
    yaxis = (
        dict(title=metric, type="log", dtick=_log_dtick(np.concatenate(ys)), tickformat=LOG_TICK_FORMAT)
        if per_step and ys
        else dict(title=metric)
    )
    fig.update_layout(_layout(title, 340, xaxis=dict(title="step" if per_step else "epoch"), yaxis=yaxis))
    return fig


def _lr_finder_y_range(smoothed: Sequence[float]) -> list[float] | None:
    """The loss axis of the finder's figure: from the smoothed minimum to the highest point
    before it (the blow-up after it is cut), with some room; None (autorange) for no curve."""
    if not smoothed:
        return None
    lowest = min(range(len(smoothed)), key=smoothed.__getitem__)
    low, high = smoothed[lowest], max(smoothed[: lowest + 1])
    return [low - 0.1 * abs(high - low), high + 0.5 * abs(high - low)]


def lr_finder_figure(result: LRFinderResult) -> go.Figure:
    """The learning-rate finder's curve: loss (raw and smoothed) against a log learning rate,
    with the suggested rate marked."""
    fig = go.Figure(
        [
            go.Scatter(x=result.lrs, y=y, mode="lines", name=name, line=dict(color=color),
                       hovertemplate=f"lr %{{x:.2g}}: {name} %{{y:.4g}}<extra></extra>")
            for name, y, color in (("loss", result.losses, MUTED), ("smoothed", result.smoothed, ACCENT))
        ]
    )  # fmt: skip
    fig.add_vline(
        x=result.suggestion,
        line=dict(color=REFERENCE, dash="dash"),
        annotation_text=f"suggested {result.suggestion:.2g}",
        annotation_position="top",
    )
    fig.update_xaxes(type="log", title="learning rate")
    fig.update_yaxes(title="loss")
    y_range = _lr_finder_y_range(result.smoothed)
    if y_range is not None:
        fig.update_yaxes(range=y_range)
    fig.update_layout(chart_layout("Learning-rate finder", 340, legend=legend("top right")))
    return fig
