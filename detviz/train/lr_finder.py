"""The learning-rate finder: an exponential ramp of the rate, one batch per step, and the rate
to train with read off its smoothed loss (fastai's lr_find, with a suggestion that survives flat
and noisy curves).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from detviz.train.build import Setup, float_outputs, images_of, make_optimizer, to_device
from detviz.train.report import LRFinderResult
from detviz.train.runs import RunFolder

LR_FLOOR = 1e-5  # the finder never suggests less: below it AdamW barely moves in a short run
FALLBACK_LR = 1e-3  # AdamW's usual rate, taken when the finder's curve says nothing (flat or noise)
FLAT_FALL = 0.05  # a smoothed loss that falls by less than this share into its minimum is flat
SKIP_START = 0.1  # share of the first steps (at least 3) left out: their "smoothed" loss is a few batches
SLOPE_WINDOW = 0.05  # share of the steps (at least 1) over which a fall is measured: one step is noise


@dataclass(frozen=True)
class LRSuggestion:
    """What the finder makes of its curve; rates are None where the curve has no such point."""

    suggestion: float  # the rate to train with
    steepest: float | None  # middle of the steepest fall of the smoothed loss into its minimum
    minimum: float | None  # the rate at the smoothed loss's minimum (after the skipped start)
    warning: str  # "" when the suggestion is the steepest point as it is


def suggest_lr(lrs: Sequence[float], smoothed: Sequence[float]) -> LRSuggestion:
    """The learning rate to train with, from the finder's ramp (rising `lrs`) and its smoothed
    losses: where the smoothed loss falls fastest on its way into its minimum.

    The rule, step by step (n steps):
      1. skip = max(3, SKIP_START * n) first steps are left out: a smoothed loss there is one or
         two batches, and a lucky first batch put the minimum at the very first step on small
         images (1e-7 suggested, nothing learned);
      2. `low` = the minimum after them, `high` = the highest point between the skip and `low`
         (where the slide into the valley starts);
      3. flat: when `low` is less than 2 steps after `high`, or the loss falls by less than
         FLAT_FALL of its value at `high`, the curve says nothing: FALLBACK_LR (at most a tenth
         of the last rate reached, where the loss blew up), with a warning;
      4. otherwise the fall over every window of w = max(1, SLOPE_WINDOW * n) steps from `high`
         to `low` is measured; the rate at the middle of the window that falls most is the
         suggestion (raised to LR_FLOOR, with a warning, if below it).
    """
    n = len(smoothed)
    skip = max(3, int(n * SKIP_START))
    if n < skip + 3:
        rate = min(FALLBACK_LR, lrs[-1] / 10) if lrs else FALLBACK_LR
        return LRSuggestion(rate, None, None, f"the finder ran only {n} steps; using {rate:.2g}, pass --lr to choose.")
    low = skip + min(range(n - skip), key=lambda i: smoothed[skip + i])
    high = skip + max(range(low - skip + 1), key=lambda i: smoothed[skip + i])
    fall = (smoothed[high] - smoothed[low]) / max(abs(smoothed[high]), 1e-12)
    if low - high < 2 or fall < FLAT_FALL:
        rate = max(LR_FLOOR, min(FALLBACK_LR, lrs[-1] / 10))
        return LRSuggestion(
            rate,
            None,
            lrs[low],
            f"the loss did not fall along the ramp (by {fall:.0%} at most: flat or noisy); "
            f"using {rate:.2g}, pass --lr to choose.",
        )
    w = min(max(1, int(n * SLOPE_WINDOW)), low - high)
    start = min(range(high, low - w + 1), key=lambda i: smoothed[i + w] - smoothed[i])
    steepest = lrs[start + w // 2]
    if steepest < LR_FLOOR:
        warning = f"the steepest fall is at {steepest:.2g}; raised to the floor {LR_FLOOR:g}."
        return LRSuggestion(LR_FLOOR, steepest, lrs[low], warning)
    return LRSuggestion(steepest, steepest, lrs[low], "")


def find_lr(
    s: Setup,
    run: RunFolder | None = None,
    start: float = 1e-6,
    end: float = 1.0,
    steps: int = 100,
    smoothing: float = 0.98,
) -> LRFinderResult:
    """Ramps the learning rate exponentially from `start` to `end`, one batch per step, and
    records the smoothed loss; stops when it explodes (4x its minimum); restores the weights.

    Returns the curve with suggest_lr's suggestion, steepest point, minimum (both may be None)
    and warning; writes it to the run folder's lr_find.json when `run` is given (main process).
    """
    model, device = s.model, s.device
    saved = copy.deepcopy(model.state_dict())
    optimizer = make_optimizer(model, start, s.config.divisors(), s.config.weight_decay)
    lrs, losses, smoothed = [], [], []
    average, best = 0.0, math.inf
    batches = iter(s.train_loader)
    model.train()
    try:
        for i in range(steps):
            lr = start * (end / start) ** (i / max(steps - 1, 1))
            for group, divisor in zip(optimizer.param_groups, s.config.divisors(), strict=True):
                group["lr"] = lr / divisor
            try:
                batch = next(batches)
            except StopIteration:
                batches = iter(s.train_loader)
                batch = next(batches)
            batch = to_device(batch, device, s.config.channels_last)
            loss = s.task.loss(float_outputs(model(images_of(batch))), batch)["loss"]
            if not torch.isfinite(loss):
                break
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            average = smoothing * average + (1 - smoothing) * loss.item()
            value = average / (1 - smoothing ** (i + 1))  # bias-corrected
            lrs.append(lr)
            losses.append(loss.item())
            smoothed.append(value)
            best = min(best, value)
            if i > 10 and value > 4 * best:
                break
    finally:
        model.load_state_dict(saved)  # even when cancelled half-way: the finder leaves no trace
    found = suggest_lr(lrs, smoothed)
    result = LRFinderResult(lrs, losses, smoothed, found.suggestion, found.steepest, found.minimum, found.warning)
    if run is not None and s.processes.main:
        run.write_lr_find(result)
        run.log(
            f"learning-rate finder: {len(lrs)} steps, suggests {found.suggestion:.2g}"
            + (f" ({found.warning})" if found.warning else "")
        )
    return result
