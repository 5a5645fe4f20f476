"""Training: the engine (fit, LR finder), run folders and the launcher. CLI: python -m detviz.train."""

from detviz.train.config import TrainConfig, cli_command
from detviz.train.engine import Callback, Cancelled, Progress, TrainingError, find_lr, fit, one_cycle, prepare
from detviz.train.runs import MetricsFollower, RunFolder, cancel, delete_run, launch, launch_problems, list_runs

__all__ = [
    "Callback",
    "Cancelled",
    "MetricsFollower",
    "Progress",
    "RunFolder",
    "TrainConfig",
    "TrainingError",
    "cancel",
    "cli_command",
    "delete_run",
    "find_lr",
    "fit",
    "launch",
    "launch_problems",
    "list_runs",
    "one_cycle",
    "prepare",
]
