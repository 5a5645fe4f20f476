"""Run folders: what a training run writes, so that a page or a person can follow it.

    runs/<name>/config.json        the TrainConfig
    runs/<name>/status.json        state (queued | running | finished | failed | cancelled), pid,
                                   progress, ETA, error, last metrics; rewritten atomically
    runs/<name>/metrics.jsonl      one json line per logged step and per epoch, flushed at once
    runs/<name>/train.log          the run's own words (and its process output when launched)
    runs/<name>/lr_find.json       the learning-rate finder's curve, when it ran
    runs/<name>/checkpoints/last.pt, best.pt   written to a temporary file, then renamed

Every file is written so that a reader never sees half of it, and a failed write (a full
disk) leaves the previous version in place.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from detviz.train.config import TrainConfig

STATES = ("queued", "running", "finished", "failed", "cancelled")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def atomic_write(path: Path, data: bytes) -> None:
    """Writes `data` to `path` through a temporary file in the same folder and a rename."""
    _atomically(path, lambda f: f.write(data))


def atomic_torch_save(obj: Any, path: Path) -> None:
    """torch.save through a temporary file: an interrupted or failed save keeps the old file."""
    _atomically(path, lambda f: torch.save(obj, f))


def _atomically(path: Path, write: Any) -> None:
    tmp = None
    try:
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as f:
            tmp = Path(f.name)
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # readable as a plain file is, not the temporary file's 0600
        os.replace(tmp, path)
    except BaseException:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise


class RunFolder:
    """One run's folder (module docstring for its files)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.config_path = self.path / "config.json"
        self.status_path = self.path / "status.json"
        self.metrics_path = self.path / "metrics.jsonl"
        self.log_path = self.path / "train.log"
        self.lr_find_path = self.path / "lr_find.json"
        self.checkpoints = self.path / "checkpoints"

    @classmethod
    def create(cls, root: str | Path, config: TrainConfig, name: str = "") -> RunFolder:
        """Makes a new run folder with config.json and a queued status.

        Raises:
            ValueError: the name is not a plain folder name, or the folder exists already.
        """
        root = Path(root)
        if name and not NAME_PATTERN.match(name):
            raise ValueError(f"run name {name!r} must be letters, digits, '.', '_' or '-' (up to 100).")
        name = name or f"{datetime.now():%Y%m%d-%H%M%S}-{config.model}-{secrets.token_hex(3)}"
        root.mkdir(parents=True, exist_ok=True)
        try:
            (root / name).mkdir()  # exclusive: two runs never share a folder
        except FileExistsError:
            raise ValueError(
                f"{root / name}: a run folder of that name exists; pick another name or --resume it."
            ) from None
        run = cls(root / name)
        run.checkpoints.mkdir()
        atomic_write(run.config_path, json.dumps(config.to_dict(), indent=2).encode())
        run.write_status(state="queued", created=time.time())
        return run

    def exists(self) -> bool:
        return self.config_path.is_file()

    def config(self) -> TrainConfig:
        return TrainConfig.from_dict(json.loads(self.config_path.read_text()))

    def read_status(self) -> dict[str, Any]:
        try:
            return json.loads(self.status_path.read_text())
        except (OSError, ValueError):
            return {}

    def write_status(self, **fields: Any) -> dict[str, Any]:
        status = self.read_status() | fields | {"updated": time.time()}
        atomic_write(self.status_path, json.dumps(status, indent=2).encode())
        return status

    def append_metrics(self, record: dict[str, Any]) -> None:
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()

    def read_metrics(self) -> list[dict[str, Any]]:
        """Every complete line of metrics.jsonl (a line being written is skipped)."""
        try:
            lines = self.metrics_path.read_text().splitlines()
        except OSError:
            return []
        records = []
        for line in lines:
            with contextlib.suppress(ValueError):
                records.append(json.loads(line))
        return records

    def log(self, message: str) -> None:
        with open(self.log_path, "a") as f:
            f.write(f"{datetime.now():%H:%M:%S} {message}\n")

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def checkpoint(self, which: str = "best") -> Path:
        return self.checkpoints / f"{which}.pt"

    def state(self) -> str:
        """The run's state; a run marked running whose process is gone counts as failed."""
        status = self.read_status()
        state = status.get("state", "unknown")
        gone = status.get("pid") and not pid_alive(int(status["pid"]))
        # a queued run gets a minute to start its process before it counts as failed
        if gone and (state == "running" or (state == "queued" and time.time() - status.get("updated", 0) > 60)):
            return "failed"
        return state


@dataclass(frozen=True)
class RunSummary:
    name: str
    path: Path
    state: str
    status: dict[str, Any]
    config: dict[str, Any]


def list_runs(root: str | Path) -> list[RunSummary]:
    """All run folders under `root`, newest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    runs = []
    for path in root.iterdir():
        run = RunFolder(path)
        if not run.exists():
            continue
        try:
            config = json.loads(run.config_path.read_text())
        except (OSError, ValueError):
            continue
        runs.append(RunSummary(path.name, path, run.state(), run.read_status(), config))
    return sorted(runs, key=lambda r: r.status.get("created", 0), reverse=True)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):  # a zombie child counts as gone
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        return state != "Z"
    return True


def launch(config: TrainConfig, root: str | Path | None = None, name: str = "", gpus: int = 1) -> Path:
    """Starts a training run as its own process; returns its run folder at once.

    The process is started from an argument list (never a shell string) in a new session, so it
    goes on when the caller (the app) stops; its output goes to the run's train.log. With
    `gpus` > 1 it runs under torchrun with one process per GPU.

    Raises:
        ValueError: a bad config or name (nothing is started).
    """
    config.validate()
    run = RunFolder.create(root or config.out, config, name or config.name)
    command = [sys.executable, "-m", "detviz.train", "--run-dir", str(run.path)]
    if gpus > 1:
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={gpus}",
            "-m",
            "detviz.train",
            "--run-dir",
            str(run.path),
        ]
    with open(run.log_path, "ab") as log:
        proc = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=os.getcwd(),
        )
    run.write_status(pid=proc.pid, launched=time.time())
    return run.path


def cancel(path: str | Path) -> bool:
    """Asks a run to stop (SIGTERM): it saves a checkpoint and marks itself cancelled.

    Returns False when the run is not running.
    """
    run = RunFolder(path)
    status = run.read_status()
    pid = status.get("pid")
    if not pid or run.state() not in ("running", "queued") or not pid_alive(int(pid)):
        return False
    try:
        os.killpg(int(pid), signal.SIGTERM)  # the whole session: torchrun and its workers too
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGTERM)
    return True
