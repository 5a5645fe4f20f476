"""What a run reports about itself, and how to say it to a person.

Two files cross the process boundary between a training process and the app: status.json
(RunStatus) and lr_find.json (LRFinderResult). Each has one dataclass with to_json/from_json
here, and nobody else spells their keys. The run states are one registry (RunState). The
sentences, table rows and durations a page shows of a run live here too: plain text, no
Streamlit.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from detviz.train.config import TrainConfig, anchors_label

if TYPE_CHECKING:
    from detviz.train.runs import RunSummary


class RunState(StrEnum):
    """A run's life: queued, then running, then finished, failed or cancelled."""

    QUEUED = "queued"  # launched; its process is starting (importing PyTorch, reading the data)
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"


STATES: tuple[RunState, ...] = tuple(RunState)
LIVE_STATES = (RunState.QUEUED, RunState.RUNNING)  # a process is (about to be) at work: poll, offer Cancel
UNKNOWN = "unknown"  # the state of a folder without a readable status.json (not a RunState: nothing wrote it)
LR_FIND = "lr_find"  # RunStatus.kind of a learning-rate-finder-only job (launch(find_lr=True))


@dataclass(frozen=True)
class RunStatus:
    """A run's status.json: what its process says about it, rewritten as the run goes.

    A field is None until some process writes it, and to_json leaves None fields out, so a file
    holds only what was said. Times are seconds since the epoch (time.time()). Keys this version
    does not know, or values of a type it cannot use, are kept in `extra` as they were read and
    written back with the rest.
    """

    state: str = UNKNOWN  # one of STATES (UNKNOWN when no status.json could be read)
    kind: str | None = None  # LR_FIND for a learning-rate-finder-only job; None for training
    pid: int | None = None  # the run's process (torchrun's under several GPUs)
    created: float | None = None  # the run folder was made
    launched: float | None = None  # launch() started the process
    started: float | None = None  # the process began to work (again, on a resume)
    updated: float | None = None  # this file was last written
    finished: float | None = None  # the process ended, however it ended
    cancel_requested: float | None = None  # cancel() asked the process to stop
    epochs: int | None = None  # epochs the run trains
    epoch: int | None = None  # epochs done (during an epoch: the one in progress, 0-based)
    step: int | None = None  # global optimizer steps done
    total_steps: int | None = None
    progress: float | None = None  # step / total_steps, in [0, 1]
    eta_seconds: float | None = None
    images_per_second: float | None = None
    device: str | None = None  # "cpu", "cuda:0", ...
    gpu_memory_gb: float | None = None  # peak CUDA memory of the main process (CUDA runs only)
    metrics: dict[str, float] | None = None  # the last validation's numbers
    best: float | None = None  # the best validation score so far (val_map, or val_accuracy)
    error: str | None = None  # why it failed, one sentence ("" while nothing failed)
    suggestion: float | None = None  # a finder job's suggested learning rate
    extra: dict[str, Any] = field(default_factory=dict, compare=False)  # unknown keys, kept as read

    @property
    def is_lr_find(self) -> bool:
        """Whether the run is a learning-rate-finder-only job (not a training run)."""
        return self.kind == LR_FIND

    def to_dict(self) -> dict[str, Any]:
        """The JSON object: every field that is not None, and the unknown keys read with it."""
        known = {f.name: getattr(self, f.name) for f in _STATUS_FIELDS}
        return self.extra | {name: value for name, value in known.items() if value is not None}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunStatus:
        """The status a to_dict() holds; never raises for what an older or newer version wrote:
        an unknown key, or a value of the wrong type, goes to `extra` (kept, not used)."""
        known: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in data.items():
            check = _STATUS_CHECKS.get(key)
            if check is not None and (value is None or check(value)):
                known[key] = value
            else:
                extra[key] = value
        if known.get("state") is None:
            known.pop("state", None)  # no state said: UNKNOWN
        return cls(**known, extra=extra)

    @classmethod
    def from_json(cls, text: str | bytes) -> RunStatus:
        """Raises ValueError when `text` is not a JSON object."""
        return cls.from_dict(_json_object(text, "a run status"))


def _json_object(text: str | bytes, what: str) -> dict[str, Any]:
    """The JSON object `text` holds; ValueError naming `what` otherwise."""
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"{what} is a JSON object, got {type(data).__name__}.")
    return data


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_TYPE_CHECKS = {
    "str": lambda v: isinstance(v, str),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": _number,
    "dict": lambda v: isinstance(v, dict),
}
_STATUS_FIELDS = tuple(f for f in dataclasses.fields(RunStatus) if f.name != "extra")
# each field's type check, from its annotation ("int | None" -> int): the dataclass is the only spelling
_STATUS_CHECKS = {f.name: _TYPE_CHECKS[str(f.type).split("[")[0].split(" ")[0]] for f in _STATUS_FIELDS}


@dataclass(frozen=True)
class LRFinderResult:
    """The learning-rate finder's curve and what it makes of it (a run's lr_find.json).

    lrs, losses, smoothed: one value per step of the ramp (rising rates; raw and smoothed loss).
    suggestion: the rate to train with; steepest: the middle of the steepest fall of the smoothed
    loss; minimum: the rate at its minimum (None where the curve has no such point); warning: ""
    when the suggestion is the steepest point as it is. Files of older versions lack minimum and
    warning.
    """

    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    suggestion: float
    steepest: float | None = None
    minimum: float | None = None
    warning: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LRFinderResult:
        """Raises ValueError when a curve or the suggestion is missing or not numbers; other
        keys (of another version) are ignored."""
        curves = {}
        for name in ("lrs", "losses", "smoothed"):
            values = data.get(name)
            if not isinstance(values, list) or not all(_number(v) for v in values):
                raise ValueError(f"the finder's {name!r} must be a list of numbers, got {values!r:.60}.")
            curves[name] = values
        rates = {name: data.get(name) for name in ("suggestion", "steepest", "minimum")}
        for name, value in rates.items():
            if not (_number(value) or (value is None and name != "suggestion")):
                raise ValueError(f"the finder's {name!r} must be a number, got {value!r:.60}.")
        warning = data.get("warning") or ""
        return cls(**curves, **rates, warning=str(warning))

    @classmethod
    def from_json(cls, text: str | bytes) -> LRFinderResult:
        """Raises ValueError when `text` is not a finder result."""
        return cls.from_dict(_json_object(text, "a finder result"))


# --- words and rows for people ----------------------------------------------------------------


def state_sentence(state: str, status: RunStatus) -> str:
    """One sentence on a run's state for a person: what is happening, or how it ended and what
    to do next. `status` is its status.json (RunFolder.read_status())."""
    step, total = status.step or 0, status.total_steps
    where = f"step {step} of {total}" if total else f"step {step}"
    if state == RunState.QUEUED:
        return "Queued: its process is starting (importing PyTorch and reading the data)."
    if state == RunState.RUNNING:
        if status.is_lr_find:
            return "Running: ramping the learning rate batch by batch."
        return f"Running: {where}" + (f", about {format_duration(status.eta_seconds)} left." if status.eta_seconds else ".")  # fmt: skip
    if state == RunState.FINISHED:
        started = status.started if status.started is not None else status.created
        took = (status.finished or 0) - (started or 0)
        best = f", best validation score {status.best:.4f}" if status.best is not None else ""
        return f"Finished in {format_duration(max(took, 0))}{best}."
    if state == RunState.CANCELLED:
        return f"Cancelled at {where}; continue it with Resume (or `python -m detviz.train --resume <its folder>`)."
    if state == RunState.FAILED:
        error = status.error or "its process ended without saying why (killed, or out of memory?)"
        return f"Failed: {error.rstrip('.')}. The end of its log is below."
    return "No readable status.json: not a run folder this version of detviz wrote."


def progress_text(state: str, status: RunStatus) -> str:
    """The watched run's progress line: "step 30 of 120, about 1 min 35 s left" ("?" for a
    total not known yet; the time left only while it runs)."""
    total = status.total_steps if status.total_steps is not None else "?"
    text = f"step {status.step or 0} of {total}"
    if state == RunState.RUNNING and status.eta_seconds:
        text += f", about {format_duration(status.eta_seconds)} left"
    return text


def format_duration(seconds: float) -> str:
    """A duration for people: "42 s", "3 min 20 s", "2 h 05 min"."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def summary_row(run: RunSummary) -> dict[str, Any]:
    """One row of the runs table: name, state, job, model, backbone, anchors, coding, loss, epochs
    (done / total), best validation score, device, created (a datetime)."""
    s, c = run.status, run.config
    ssd = str(c.get("model", "")).startswith("ssd")
    return {
        "run": run.name,
        "state": run.state,
        "job": "LR finder" if s.is_lr_find else "training",
        "model": c.get("model"),
        "backbone": str(c.get("backbone", "")) + (" (ImageNet)" if c.get("pretrained") else ""),
        "anchors": anchors_label(str(c.get("anchors") or "")) if ssd else "-",
        "coding": c.get("coding", "tanh") if ssd else "-",
        "loss": c.get("loss") if ssd else "-",
        "epochs": "-" if s.is_lr_find else f"{s.epoch or 0} / {c.get('epochs')}",
        "best": s.best,
        "device": s.device or "",
        "created": datetime.fromtimestamp(s.created or 0),
    }


def final_row(run: RunSummary) -> dict[str, Any]:
    """One row of the compared runs' final numbers: name, state, epochs done, best validation
    score, the last validation's metrics, images per second and how long it took ("-" while
    it has not both started and finished)."""
    s = run.status
    took = s.finished - s.started if s.finished and s.started else None
    return {
        "run": run.name,
        "state": run.state,
        "epochs": s.epoch or 0,
        "best": s.best,
        **(s.metrics or {}),
        "images/s": s.images_per_second,
        "time": format_duration(took) if took is not None else "-",
    }


def config_differences(configs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The settings that differ between runs: {setting: {run name: value}}, in TrainConfig's
    field order; `configs` maps run names to their config.json. `name` and `out` are left out
    (they always differ or never matter); a setting a config lacks shows as None."""
    fields = [f for f in TrainConfig.__dataclass_fields__ if f not in ("name", "out")]
    differences = {}
    for name in fields:
        values = {run: config.get(name) for run, config in configs.items()}
        if len({json.dumps(v) for v in values.values()}) > 1:
            differences[name] = values
    return differences
