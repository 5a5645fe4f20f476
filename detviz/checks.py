"""Argument checks at the library's boundary: one ValueError naming the argument, what was seen
and what was expected. Shape checks cost nothing; value checks (NaN, x2 < x1, label range)
read the data once."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

import torch
from torch import Tensor


def shape_text(t: Tensor) -> str:
    return "(" + ", ".join(str(d) for d in t.shape) + ")"


def values_text(t: Tensor) -> str:
    """A short box or vector for a message: [0.5, 0.1, 0.2, 0.3]."""
    return "[" + ", ".join(f"{v:.4g}" for v in t.tolist()) + "]"


def check_tensor(name: str, t: object, dims: Sequence[str | int], floating: bool | None = None) -> Tensor:
    """Checks `t` is a tensor whose shape matches `dims` (a letter matches any size, an int that size).

    Args:
        floating: True requires a floating dtype, False an integer or bool dtype.
    """
    expected = "(" + ", ".join(str(d) for d in dims) + ")"
    if not isinstance(t, Tensor):
        raise ValueError(f"{name} must be a tensor of shape {expected}, got {type(t).__name__}.")
    if t.dim() != len(dims) or any(isinstance(d, int) and t.shape[i] != d for i, d in enumerate(dims)):
        raise ValueError(f"{name} must have shape {expected}, got {shape_text(t)}.")
    if floating is True and not t.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {t.dtype}.")
    if floating is False and t.is_floating_point():
        raise ValueError(f"{name} must be an integer tensor, got {t.dtype}.")
    return t


def check_boxes(name: str, boxes: Tensor, dims: Sequence[str | int]) -> Tensor:
    """Checks a (..., 4) xyxy box tensor: shape, float dtype, finite, x2 >= x1 and y2 >= y1."""
    check_tensor(name, boxes, dims, floating=True)
    return check_box_values(name, boxes)


def check_box_values(name: str, boxes: Tensor) -> Tensor:
    """Checks the coordinates of a (..., 4) xyxy box tensor: finite, x2 >= x1 and y2 >= y1."""
    if boxes.numel() == 0:
        return boxes
    if not bool(torch.isfinite(boxes).all()):
        bad = torch.nonzero(~torch.isfinite(boxes).all(-1))[0].tolist()
        raise ValueError(f"{name} has a NaN or infinite coordinate at index {bad}: {values_text(boxes[tuple(bad)])}.")
    wrong = (boxes[..., 2] < boxes[..., 0]) | (boxes[..., 3] < boxes[..., 1])
    if bool(wrong.any()):
        bad = torch.nonzero(wrong)[0].tolist()
        raise ValueError(
            f"{name} at index {bad} is {values_text(boxes[tuple(bad)])}; xyxy boxes need x2 >= x1 and y2 >= y1."
        )
    return boxes


def check_labels(name: str, labels: Tensor, num_classes: int, valid: Tensor | None = None) -> Tensor:
    """Checks labels are integers in 0 .. num_classes - 1 (where `valid`, if given)."""
    if labels.is_floating_point():
        raise ValueError(f"{name} must be an integer tensor, got {labels.dtype}.")
    seen = labels[valid] if valid is not None else labels
    if seen.numel() and bool(((seen < 0) | (seen >= num_classes)).any()):
        bad = seen[(seen < 0) | (seen >= num_classes)][0].item()
        raise ValueError(f"{name} has label {bad}; labels must be in 0..{num_classes - 1} ({num_classes} classes).")
    return labels


def check_same_device(**tensors: Tensor) -> None:
    """All tensors on one device."""
    devices = {name: t.device for name, t in tensors.items()}
    if len(set(devices.values())) > 1:
        listing = ", ".join(f"{n} on {d}" for n, d in devices.items())
        raise ValueError(f"tensors are on different devices ({listing}); move them to one device.")


def check_probability(name: str, value: float, low_open: bool = False, high_open: bool = False) -> float:
    """A number in [0, 1]; `low_open` excludes 0, `high_open` excludes 1."""
    ok = (value > 0.0 if low_open else value >= 0.0) and (value < 1.0 if high_open else value <= 1.0)
    if not ok:
        interval = ("(" if low_open else "[") + "0, 1" + (")" if high_open else "]")
        raise ValueError(f"{name} must be in {interval}, got {value}.")
    return value


def check_positive_int(name: str, value: object) -> int:
    """A whole number >= 1 (a Python int; bool is refused although it is an int)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return value


def check_choice(name: str, value: object, choices: Sequence[str]) -> str:
    """One of `choices` (a registry such as boxes.CODINGS); the message lists them."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}.")
    return value


DEVICES = ("auto", "cpu", "cuda", "mps")  # and cuda:N


def resolve_device(name: str) -> torch.device:
    """The torch device a --device value names: auto is CUDA (the process's LOCAL_RANK GPU under
    torchrun), else MPS, else the CPU; cuda without an index is LOCAL_RANK's GPU too.

    Raises:
        ValueError: not one of DEVICES or cuda:N, or a device this machine does not have.
    """
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("mps" if mps else "cpu")
    if name not in DEVICES and not re.fullmatch(r"cuda:\d+", name):
        raise ValueError(f"--device must be one of {', '.join(DEVICES)} or cuda:N, got {name!r}.")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"--device {name} was asked for, but this machine has no CUDA GPU; use --device cpu or auto.")  # fmt: skip
        index = int(name.split(":")[1]) if ":" in name else int(os.environ.get("LOCAL_RANK", 0))
        if index >= torch.cuda.device_count():
            raise ValueError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA GPU(s).")
        return torch.device("cuda", index)
    if name == "mps" and not mps:
        raise ValueError("--device mps was asked for, but MPS is not available here.")
    return torch.device(name)
