"""Checkpoints: a model as plain data and tensors, read back safely and checked.

A checkpoint is a dict with a format header, the ModelConfig as plain data, how it was trained,
its metrics and its weights; `torch.load(weights_only=True)` reads it, so loading never runs
pickled code. `detviz.models` re-exports these names (DESIGN's `from detviz.models import
load_checkpoint`).
"""

from __future__ import annotations

import io
import pickle
import re
import zipfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from detviz.models import ModelConfig

CHECKPOINT_FORMAT = "detviz-checkpoint"
CHECKPOINT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file is missing, broken, unsafe, or does not fit what it is used for."""


@dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint says about itself: the model config and how it was trained."""

    model: ModelConfig
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    path: str = ""

    @property
    def classes(self) -> list[str]:
        return list(self.model.class_names)


def checkpoint_payload(
    model: nn.Module,
    config: ModelConfig,
    training: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    half: bool = False,
) -> dict[str, Any]:
    """A checkpoint as plain data and tensors only, so `torch.load(weights_only=True)` reads it.

    `half` stores floating-point weights as float16 (half the file; loading turns them back into
    float32): for checkpoints that ship with the code.
    """
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel / torch.compile
    model = getattr(model, "_orig_mod", model)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "model": asdict(config),
        "training": dict(training or {}),
        "metrics": dict(metrics or {}),
        "state_dict": state,
    }
    payload.update(extra or {})
    return payload


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The raw checkpoint dict, loaded safely (weights_only: no pickled objects, nothing runs).

    Raises:
        CheckpointError: missing, truncated or not a checkpoint, or carrying Python objects.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found.")
    data = path.read_bytes()
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise CheckpointError(
            f"{path}: not a PyTorch checkpoint (not a zip archive; truncated or another kind of file)."
        )
    try:
        payload = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip()  # torch's message carries terminal colours
        first = text.splitlines()[0] if text else type(e).__name__
        raise CheckpointError(
            f"{path}: refused to load: the file carries Python objects that could run code ({first[:160]}); "
            "detviz checkpoints hold only tensors and plain data."
        ) from None
    except (RuntimeError, EOFError, ValueError, OSError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"{path}: cannot read the checkpoint ({e}); the file may be truncated.") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: a PyTorch file, but not a detviz checkpoint (no '{CHECKPOINT_FORMAT}' header).")
    version = payload.get("version", 0)
    if isinstance(version, bool) or not isinstance(version, int):
        raise CheckpointError(
            f"{path}: the checkpoint's version is {version!r:.40}, not a whole number; the file is damaged or was not "
            "written by detviz: save the model again."
        )
    if version > CHECKPOINT_VERSION:
        raise CheckpointError(f"{path}: checkpoint version {version} is newer than this detviz reads.")
    return payload


def _checked_contents(payload: dict[str, Any]) -> tuple[ModelConfig, dict[str, Tensor], dict, dict]:
    """The model description, weights, training and metrics of a checkpoint read by
    `read_checkpoint`, each checked for its type; a ValueError naming the entry otherwise."""
    from detviz.models import ModelConfig  # here, not above: detviz.models re-exports this module

    if "model" not in payload:
        raise ValueError("the checkpoint has no 'model' entry (the model description)")
    try:
        config = ModelConfig.from_dict(payload["model"])
    except ValueError as e:
        raise ValueError(f"the model description is not valid: {str(e).rstrip('.')}") from None
    state = payload.get("state_dict")
    if not isinstance(state, dict):
        raise ValueError(f"the 'state_dict' entry (the weights) is a {type(state).__name__}, not a dict")
    for name, value in state.items():
        if not isinstance(name, str) or not isinstance(value, Tensor):
            raise ValueError(f"the weights' entry {name!r:.60} is a {type(value).__name__}, not a tensor")
    extras = {key: payload.get(key, {}) for key in ("training", "metrics")}
    for key, value in extras.items():
        if not isinstance(value, dict):
            raise ValueError(f"the '{key}' entry is a {type(value).__name__}, not a dict")
    return config, state, extras["training"], extras["metrics"]


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[nn.Module, CheckpointInfo]:
    """Rebuilds the model a checkpoint describes and loads its weights (eval mode).

    Returns:
        (model, info): info.model is the ModelConfig, info.training and info.metrics plain data.

    Raises:
        CheckpointError: see `read_checkpoint`; or an entry missing or of the wrong type, a model
            description that is not a valid ModelConfig, or weights that do not fit it. Weights
            that are NaN load: `detviz.inference.Detector` refuses their outputs.
    """
    from detviz.models import build_model  # here, not above: detviz.models re-exports this module

    payload = read_checkpoint(path, map_location)
    try:
        config, state, training, metrics = _checked_contents(payload)
    except ValueError as e:
        raise CheckpointError(f"{path}: {e}; the file is damaged or was not written by detviz.") from None
    model = build_model(config)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:  # torch lists every problem on its own line: show the first
        problems = [line.strip() for line in str(e).splitlines()[1:] if line.strip()] or [str(e)]
        more = f" and {len(problems) - 1} more" if len(problems) > 1 else ""
        raise CheckpointError(
            f"{path}: the weights do not fit a {config.kind} / {config.backbone} model ({problems[0][:200]}{more})."
        ) from None
    model.to(map_location).eval()
    return model, CheckpointInfo(config, training, metrics, str(path))


def compatibility_problems(info: CheckpointInfo, **expected: Any) -> list[str]:
    """What differs between a checkpoint and what it is about to be used for.

    Args:
        expected: ModelConfig fields and the values they must have, e.g. kind="ssd-multiscale",
            class_names=("cat", "dog").

    Returns:
        One line per differing field ([] when it fits).
    """
    problems = []
    for name, want in expected.items():
        have = getattr(info.model, name)
        if isinstance(have, tuple):
            want = tuple(want)
        if have != want:
            if name == "class_names":
                problems.append(
                    f"classes: the checkpoint has {len(have)} ({', '.join(have[:6])}{', ...' if len(have) > 6 else ''}), "
                    f"the data has {len(want)} ({', '.join(want[:6])}{', ...' if len(want) > 6 else ''})"
                )
            else:
                problems.append(f"{name}: the checkpoint has {have!r}, expected {want!r}")
    return problems
