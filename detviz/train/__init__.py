"""Training: the engine (fit), the learning-rate finder, run folders and the launcher, and what a
run reports (status, finder curve). CLI: python -m detviz.train."""

from detviz.train.build import TrainingError, prepare
from detviz.train.config import TrainConfig, cli_command, parse_learning_rate
from detviz.train.engine import Callback, Cancelled, Progress, fit, one_cycle
from detviz.train.lr_finder import find_lr, suggest_lr
from detviz.train.report import LRFinderResult, RunState, RunStatus
from detviz.train.runs import (
    MetricsFollower,
    RunFolder,
    cancel,
    delete_run,
    launch,
    launch_problems,
    list_runs,
    resume,
    resume_problems,
)

__all__ = [
    "Callback",
    "Cancelled",
    "LRFinderResult",
    "MetricsFollower",
    "Progress",
    "RunFolder",
    "RunState",
    "RunStatus",
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
    "parse_learning_rate",
    "prepare",
    "resume",
    "resume_problems",
    "suggest_lr",
]
