"""Run folders: what a training run writes, so that a page or a person can follow it.

    runs/<name>/config.json        the TrainConfig
    runs/<name>/status.json        report.RunStatus: state (report.RunState), pid, progress, ETA,
                                   error, last metrics; rewritten atomically
    runs/<name>/metrics.jsonl      one json line per logged step and per epoch, flushed at once
    runs/<name>/train.log          the run's own words (and its process output when launched)
    runs/<name>/lr_find.json       report.LRFinderResult: the learning-rate finder's curve, when it
                                   ran (a run with lr 0, or a finder-only job: status kind "lr_find")
    runs/<name>/checkpoints/last.pt, best.pt   written to a temporary file, then renamed
    runs/<name>/.lock              locked (flock) by the one process that owns the run

Every file is written so that a reader never sees half of it, and a failed write (a full
disk) leaves the previous version in place. Exactly one process owns a run folder at a time:
it holds an OS lock on .lock, which the system releases when the process ends however it ends;
a second process that asks for the folder is refused (RunBusy).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from detviz.data.voc import file_stamp
from detviz.train.config import TrainConfig
from detviz.train.report import LIVE_STATES, LR_FIND, LRFinderResult, RunState, RunStatus

QUEUED_GRACE_SECONDS = 60  # a queued run's process may take this long to import torch and start
LOG_TAIL_BYTES = 64 * 1024  # log_tail reads at most this much of the end of train.log
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
CHECKPOINT_NAMES = ("last.pt", "best.pt")


class RunBusy(ValueError):
    """Another process owns the run folder (holds its lock)."""


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
        self.lock_path = self.path / ".lock"
        self._lock: int | None = None  # file descriptor holding the lock, while this object owns the run

    @classmethod
    def create(cls, root: str | Path, config: TrainConfig, name: str = "") -> RunFolder:
        """Makes a new run folder with config.json and a queued status.

        Anchors from a file are stored as their JSON text (TrainConfig.with_inline_anchors): a
        resumed run trains on the anchors it started with.

        Raises:
            ValueError: the name is not a plain folder name, the folder exists already, or the
                anchors file cannot be read.
        """
        root = Path(root)
        config = config.with_inline_anchors()
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
        run.write_status(state=RunState.QUEUED, created=time.time())
        return run

    def exists(self) -> bool:
        return self.config_path.is_file()

    def config(self) -> TrainConfig:
        """The run's TrainConfig. Raises ValueError naming config.json when it is not readable
        or holds unknown, wrongly typed or bad settings."""
        try:
            data = json.loads(self.config_path.read_text())
        except (OSError, ValueError) as e:
            raise ValueError(f"{self.config_path}: not a readable training config ({e}).") from None
        if not isinstance(data, dict):
            raise ValueError(f"{self.config_path}: expected an object of settings, got {type(data).__name__}.")
        try:
            config = TrainConfig.from_dict(data)
            config.validate()
        except ValueError as e:
            raise ValueError(f"{self.config_path}: {e}") from None
        return config

    def lock(self) -> None:
        """Makes this process the run folder's only owner until it ends (or unlock()).

        The lock is an flock on .lock, so the system releases it when the process dies, however
        it dies; the pid written into the file is only for the message.

        Raises:
            RunBusy: another process owns the folder.
        """
        if self._lock is not None:
            return
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise RunBusy(
                f"{self.path}: another process (pid {owner}) is using this run folder; wait for it to end or cancel it."
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock = fd

    def unlock(self) -> None:
        if self._lock is not None:
            os.close(self._lock)  # closing the descriptor releases the flock
            self._lock = None

    def owned(self) -> bool:
        """Whether this object holds the folder's lock."""
        return self._lock is not None

    def locked(self) -> bool:
        """Whether some process (this object excepted) owns the folder now."""
        if self._lock is not None or not self.lock_path.is_file():
            return False
        try:
            fd = os.open(self.lock_path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def remove_partial_writes(self) -> list[Path]:
        """Deletes the temporary files of checkpoint writes that were killed half-way (a
        complete checkpoint is only ever renamed into place, so no complete file is touched).
        Call it only as the folder's owner (lock()); returns what it deleted."""
        removed = []
        if self.checkpoints.is_dir():
            for path in self.checkpoints.iterdir():
                if any(path.name.startswith(f".{name}.") for name in CHECKPOINT_NAMES) and path.is_file():
                    path.unlink(missing_ok=True)
                    removed.append(path)
        return removed

    def read_status(self) -> RunStatus:
        """status.json; an empty RunStatus (state "unknown") when it is missing or unreadable."""
        try:
            return RunStatus.from_json(self.status_path.read_bytes())
        except (OSError, ValueError):
            return RunStatus()

    def write_status(self, status: RunStatus | None = None, **fields: Any) -> RunStatus:
        """Rewrites status.json (atomically) as `status` (default: the file as it is) with the
        RunStatus `fields` given changed and `updated` set to now; returns what it wrote.

        Raises:
            TypeError: a field RunStatus does not have.
        """
        status = dataclasses.replace(status or self.read_status(), **fields, updated=time.time())
        atomic_write(self.status_path, status.to_json().encode())
        return status

    def append_metrics(self, record: dict[str, Any]) -> None:
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()

    def rewrite_metrics(self, keep: Callable[[dict[str, Any]], bool], add: Sequence[dict[str, Any]] = ()) -> int:
        """Rewrites metrics.jsonl (atomically) with only the records `keep` accepts, then
        `add`; returns how many records were dropped. A resumed run uses it so that every step
        and every epoch has exactly one record."""
        records = self.read_metrics()
        kept = [r for r in records if keep(r)] + list(add)
        if len(kept) != len(records) or add:
            atomic_write(self.metrics_path, "".join(json.dumps(r) + "\n" for r in kept).encode())
        return len(records) - (len(kept) - len(add))

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
        """The last `lines` lines of train.log as a terminal would show them: a progress bar
        redrawn with carriage returns shows its last state. Reads only the end of the file."""
        try:
            with open(self.log_path, "rb") as f:
                size = f.seek(0, os.SEEK_END)
                f.seek(max(0, size - LOG_TAIL_BYTES))
                data = f.read()
        except OSError:
            return ""
        shown = [_last_redraw(line) for line in data.decode(errors="replace").split("\n")]
        if len(data) == LOG_TAIL_BYTES and size > LOG_TAIL_BYTES:
            shown = shown[1:]  # the first line was cut
        while shown and not shown[-1]:
            shown.pop()
        return "\n".join(shown[-lines:])

    def lr_find(self) -> LRFinderResult | None:
        """lr_find.json, or None when the finder has not written it (yet) or it is unreadable."""
        try:
            return LRFinderResult.from_json(self.lr_find_path.read_bytes())
        except (OSError, ValueError):
            return None

    def write_lr_find(self, result: LRFinderResult) -> None:
        atomic_write(self.lr_find_path, result.to_json().encode())

    def checkpoint(self, which: str = "best") -> Path:
        return self.checkpoints / f"{which}.pt"

    def state(self) -> str:
        """The run's state (one of report.STATES, or "unknown" without a readable status.json)."""
        return effective_state(self.read_status())


def effective_state(status: RunStatus, alive: Callable[[int], bool] | None = None, now: float | None = None) -> str:
    """What a status.json means now: its "state", corrected for a process that is gone.

    A live state (queued, running) whose process has ended without writing its final state
    is "cancelled" when a cancel was asked for (the process was killed before it could
    handle the signal), else "failed" (killed, or crashed hard); a queued run gets
    QUEUED_GRACE_SECONDS to start its process first. `alive(pid) -> bool` says whether a
    process runs (default pid_alive); `now` is the time (default time.time()).
    """
    state, pid = status.state, status.pid
    if state not in LIVE_STATES or not pid or (alive or pid_alive)(int(pid)):
        return state
    if (status.cancel_requested or 0) > (status.started or 0):  # asked since this process started
        return RunState.CANCELLED
    waited = (now if now is not None else time.time()) - (status.updated or 0)
    if state == RunState.QUEUED and waited <= QUEUED_GRACE_SECONDS:
        return RunState.QUEUED
    return RunState.FAILED


def _last_redraw(line: str) -> str:
    """What a terminal shows of a line redrawn with carriage returns (tqdm): its last
    non-blank part."""
    parts = [p for p in line.split("\r") if p.strip()]
    return parts[-1].rstrip() if parts else ""


@dataclass(frozen=True)
class RunSummary:
    name: str
    path: Path
    state: str
    status: RunStatus
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
    return sorted(runs, key=lambda r: r.status.created or 0, reverse=True)


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


def launch(
    config: TrainConfig, root: str | Path | None = None, name: str = "", gpus: int = 1, find_lr: bool = False
) -> Path:
    """Starts a training run as its own process; returns its run folder at once.

    The process is started from an argument list (never a shell string) in a new session, so it
    goes on when the caller (the app) stops; its output goes to the run's train.log. With
    `gpus` > 1 it runs under torchrun with one process per GPU. With `find_lr` the process only
    runs the learning-rate finder (`python -m detviz.train --run-dir <folder> --find-lr`: it
    writes lr_find.json and the suggestion to status.json, then finishes): a short job in a run
    folder of its own, named <date>-lr-find-<random> unless `name` is given.

    Raises:
        ValueError: a bad config or name (nothing is started).
    """
    config.validate()
    if find_lr and not name:
        name = f"{datetime.now():%Y%m%d-%H%M%S}-lr-find-{secrets.token_hex(3)}"
    run = RunFolder.create(root or config.out, config, name or config.name)
    entry = ["-m", "detviz.train", "--run-dir", str(run.path)]
    if find_lr:
        run.write_status(kind=LR_FIND)
        command = [sys.executable, *entry, "--find-lr"]
    elif gpus > 1:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}", *entry]
    else:
        command = [sys.executable, *entry]
    _start(run, command)
    return run.path


def _start(run: RunFolder, command: list[str]) -> None:
    """Starts `command` in a session of its own, its output appended to the run's train.log, and
    records its pid."""
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


RESUMABLE_STATES = (RunState.CANCELLED, RunState.FAILED)


def resume_problems(path: str | Path) -> list[str]:
    """Why the run in `path` cannot be resumed (`python -m detviz.train --resume`); [] when it can:
    a training run (not a learning-rate finder job) that was cancelled or failed after saving
    checkpoints/last.pt, with no process still using its folder."""
    run = RunFolder(path)
    if not run.exists():
        return [f"{run.path}: not a run folder (no config.json)."]
    state = run.state()
    if run.read_status().is_lr_find:
        return [f"{run.path.name} is a learning-rate finder job; launch a new one instead."]
    if state not in RESUMABLE_STATES:
        return [f"{run.path.name} is {state}; only a cancelled or failed run can be resumed."]
    if not run.checkpoint("last").is_file():
        return [f"{run.path.name} ended before its first checkpoint (no checkpoints/last.pt); launch it again."]
    if run.locked():
        return [f"{run.path.name}: a process is still using the run; wait for it to end."]
    return []


def resume(path: str | Path) -> Path:
    """Continues a cancelled or failed run from its last checkpoint as its own process (`python -m
    detviz.train --resume <folder>`, as from a terminal), one process; returns the folder at once.
    The run is queued until that process takes it over.

    Raises:
        ValueError: see `resume_problems` (nothing is started).
    """
    problems = resume_problems(path)
    if problems:
        raise ValueError(problems[0])
    run = RunFolder(path)
    run.write_status(state=RunState.QUEUED, error="", cancel_requested=None, finished=None)
    _start(run, [sys.executable, "-m", "detviz.train", "--resume", str(run.path)])
    return run.path


def cancel(path: str | Path) -> bool:
    """Asks a run to stop (SIGTERM): it saves a checkpoint and marks itself cancelled.

    Returns False when the run is not running.
    """
    run = RunFolder(path)
    status = run.read_status()
    pid = status.pid
    if not pid or run.state() not in LIVE_STATES or not pid_alive(int(pid)):
        return False
    # marks the request first: a process killed before it installed its handler (still
    # importing torch) cannot write "cancelled" itself, and then counts as cancelled
    run.write_status(cancel_requested=time.time())
    try:
        os.killpg(int(pid), signal.SIGTERM)  # the whole session: torchrun and its workers too
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGTERM)
    return True


def delete_run(path: str | Path, root: str | Path) -> None:
    """Deletes a run folder that sits directly in `root` and is not running.

    Raises:
        ValueError: the folder is not a run folder of `root` (symbolic links resolved), or its
            run is queued or running (cancel it first).
    """
    root, path = Path(root).resolve(), Path(path)
    resolved = path.resolve()
    if resolved.parent != root or path.is_symlink():
        raise ValueError(f"{path}: not a run folder inside {root}; refusing to delete it.")
    run = RunFolder(resolved)
    if not run.exists():
        raise ValueError(f"{path}: not a run folder (no config.json).")
    if run.state() in LIVE_STATES:
        raise ValueError(f"{path}: the run is {run.state()}; cancel it before deleting it.")
    if run.locked():
        raise ValueError(f"{path}: a process is still using the run; wait for it to end before deleting it.")
    shutil.rmtree(resolved)


class MetricsFollower:
    """Follows a run's metrics.jsonl as it grows: each read() parses only the bytes added since
    the last one (a page polling a long run every two seconds would otherwise parse the whole
    file every time).

    A line still being written is left for the next read; a file that shrank, disappeared or
    was replaced (the run folder deleted or made again, a resume rewriting it) is read again
    from the start.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.offset = 0  # bytes of complete lines parsed so far
        self.inode = 0  # the file those bytes came from: a rewritten file (a resume) is a new one
        self.records: list[dict[str, Any]] = []

    def read(self) -> list[dict[str, Any]]:
        """Every complete record so far, in file order (the same list object, grown)."""
        try:
            stat = self.path.stat()
            size, inode = stat.st_size, stat.st_ino
        except OSError:
            size, inode = 0, 0
        if size < self.offset or inode != self.inode:
            self.offset, self.records, self.inode = 0, [], inode
        if size == self.offset:
            return self.records
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read(size - self.offset)
        complete = data.rfind(b"\n") + 1
        for line in data[:complete].splitlines():
            with contextlib.suppress(ValueError):
                self.records.append(json.loads(line))
        self.offset += complete
        return self.records


def poll_interval(state: str, every: float) -> float | None:
    """How often a view of a run in `state` should re-read it: `every` seconds while a process
    is at work (queued, running), never (None) once it has ended."""
    return every if state in LIVE_STATES else None


def launch_problems(config: TrainConfig, gpus: int, cuda_devices: int) -> list[str]:
    """Why `config` cannot be launched here with `gpus` processes; [] when it can.

    `cuda_devices` is how many CUDA GPUs this machine has (torch.cuda.device_count()). Each
    problem is one sentence with the fix; the command line may still be fine for another
    machine (a cluster), so hardware problems name this machine.
    """
    problems = []
    try:
        config.validate()
    except ValueError as e:
        problems.append(str(e))
    if config.name and not NAME_PATTERN.match(config.name):
        problems.append(f"Run name {config.name!r}: use letters, digits, '.', '_' or '-' (up to 100).")
    device = config.device
    if device.startswith("cuda") and cuda_devices == 0:
        problems.append(f"--device {device}: this machine has no CUDA GPU; choose cpu or auto.")
    elif device.startswith("cuda:") and device[5:].isdigit() and int(device[5:]) >= cuda_devices:
        problems.append(f"--device {device}: this machine has {cuda_devices} CUDA GPU(s), cuda:0 to cuda:{cuda_devices - 1}.")  # fmt: skip
    problems += init_backbone_problems(config)
    if gpus < 1:
        problems.append(f"Number of GPUs {gpus}: at least 1.")
    elif gpus > 1:
        if device not in ("auto", "cuda"):
            problems.append(f"{gpus} GPUs need --device cuda or auto (each process takes its own GPU), not {device}.")
        if cuda_devices and gpus > cuda_devices:
            problems.append(f"{gpus} GPUs: this machine has {cuda_devices}; lower the number.")
        elif not cuda_devices:
            problems.append(f"{gpus} GPUs: this machine has none; run the command on a machine that has them.")
        if config.batch_size < gpus:
            problems.append(f"--batch-size {config.batch_size} is split over {gpus} GPUs: give at least {gpus}.")
    return problems


def init_backbone_problems(config: TrainConfig) -> list[str]:
    """Why config.init_backbone cannot start this run's backbone (not a readable detviz checkpoint,
    or a backbone of another kind); [] when it can, or when none is named. The Train form asks on
    every rerun (for the run and for the learning-rate finder): the answer is kept per file stamp."""
    if not config.init_backbone:
        return []
    stamp = file_stamp(Path(config.init_backbone))  # (-1, -1) when missing: the checkpoint reader says so
    return list(_init_backbone_problems(config.init_backbone, stamp, config.backbone))


@functools.lru_cache(maxsize=16)
def _init_backbone_problems(path: str, stamp: tuple[int, int], backbone: str) -> tuple[str, ...]:
    from detviz.checkpoints import CheckpointError, compatibility_problems, load_checkpoint

    try:
        _, info = load_checkpoint(path)
    except CheckpointError as e:
        return (f"--init-backbone: {e}",)
    return tuple(
        f"--init-backbone {Path(path).name}: {p}; choose --backbone {info.model.backbone} or another file."
        for p in compatibility_problems(info, backbone=backbone)
    )
