"""Training: the engine (fit, LR finder), run folders and the launcher. CLI: python -m detviz.train."""

from detviz.train.config import TrainConfig
from detviz.train.engine import Callback, Cancelled, Progress, TrainingError, find_lr, fit, one_cycle, prepare
from detviz.train.runs import RunFolder, cancel, launch, list_runs

__all__ = [
    "Callback",
    "Cancelled",
    "Progress",
    "RunFolder",
    "TrainConfig",
    "TrainingError",
    "cancel",
    "find_lr",
    "fit",
    "launch",
    "list_runs",
    "one_cycle",
    "prepare",
]
