"""Command line: `python -m detviz.train --help`.

python -m detviz.train --data demo --epochs 30                 a new run in runs/<name>
python -m detviz.train --resume runs/<name>                    continue a stopped run
python -m detviz.train --find-lr --data demo                   only the learning-rate finder
python -m detviz.train --run-dir runs/<name> [--find-lr]       start a run the app queued (launch())
torchrun --nproc_per_node=8 -m detviz.train --device cuda ...  one process per GPU
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
import time
import traceback
from typing import NoReturn

from tqdm import tqdm

from detviz.checkpoints import CheckpointError
from detviz.cli import OneLineParser
from detviz.data import DataError
from detviz.train.build import TrainingError, prepare, resolve_device, start_processes
from detviz.train.config import TrainConfig, parse_learning_rate, parse_numbers
from detviz.train.engine import Callback, Cancelled, Progress, fit
from detviz.train.lr_finder import find_lr
from detviz.train.report import LIVE_STATES, LRFinderResult, RunState
from detviz.train.runs import RunFolder

EXPECTED_ERRORS = (ValueError, TrainingError, DataError, CheckpointError, RuntimeError, OSError)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="python -m detviz.train",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    runs = parser.add_argument_group("runs")
    runs.add_argument("--resume", metavar="RUN", help="continue the run in this folder from its last checkpoint")
    runs.add_argument(
        "--run-dir", metavar="RUN", help="start the queued run prepared in this folder (the app's launcher)"
    )
    runs.add_argument(
        "--find-lr",
        action="store_true",
        help="run the learning-rate finder only and print its suggestion (with --run-dir: also write "
        "lr_find.json and the suggestion to that run folder, then mark it finished)",
    )
    settings = parser.add_argument_group("settings")
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        help_text = f.metadata.get("help", "")
        if f.type in ("bool", bool):
            settings.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=help_text)
        elif f.name == "lr":
            settings.add_argument(
                flag,
                type=_learning_rate,
                default="auto",
                metavar="auto|RATE",
                help="peak learning rate; auto runs the learning-rate finder first",
            )
        elif f.name == "lr_divisors":
            settings.add_argument(flag, type=_numbers, default="", metavar="D1,D2,D3", help=help_text)
        else:
            kind = {"int": int, "float": float}.get(str(f.type), str)
            settings.add_argument(flag, type=kind, default=f.default, help=help_text)
    return parser


def _learning_rate(text: str) -> float:
    try:
        return parse_learning_rate(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _numbers(text: str) -> tuple[float, ...]:
    try:
        return parse_numbers(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


class TqdmCallback(Callback):
    """A progress bar per epoch and a line of validation metrics after each."""

    def __init__(self) -> None:
        self.bar: tqdm | None = None
        self.last_step = 0

    def on_step(self, p: Progress) -> None:
        if self.bar is None:
            per_epoch = max(1, p.total_steps // max(p.epochs, 1))
            self.bar = tqdm(total=per_epoch, desc=f"epoch {p.epoch + 1}/{p.epochs}", unit="step", leave=False)
            self.last_step = p.step - (p.step % per_epoch or per_epoch)
        self.bar.update(p.step - self.last_step)
        self.last_step = p.step
        self.bar.set_postfix(
            {k: f"{v:.3g}" for k, v in p.losses.items() if k != "num_positives"} | {"lr": f"{p.lr:.2g}"}
        )

    def on_epoch(self, p: Progress) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        shown = "  ".join(f"{k} {v:.4g}" for k, v in p.metrics.items())
        tqdm.write(f"epoch {p.epoch + 1}/{p.epochs}  {shown}")


def _find_lr_job(run: RunFolder, config: TrainConfig) -> int:
    """Runs only the learning-rate finder in a queued run folder: status running, then
    lr_find.json and the suggestion in status.json, then finished (or failed / cancelled)."""
    run.write_status(state=RunState.RUNNING, pid=os.getpid(), started=time.time(), error="")
    run.log("learning-rate finder: ramping the rate batch by batch")

    def stop(*_: object) -> NoReturn:
        raise Cancelled

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        result = find_lr(prepare(config), run)
    except Cancelled:
        run.write_status(state=RunState.CANCELLED, finished=time.time())
        run.log("cancelled")
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    run.write_status(state=RunState.FINISHED, finished=time.time(), progress=1.0, suggestion=result.suggestion)
    run.log("finished")
    print(_suggestion_line(result))
    return 0


def _suggestion_line(result: LRFinderResult) -> str:
    return f"suggested learning rate: {result.suggestion:.3g}" + (f" ({result.warning})" if result.warning else "")


def _mark_failed(run: RunFolder | None, message: str) -> None:
    """A run folder whose process stops on an error before (or without) the engine saying so
    is marked failed with the message, so a page shows why at once. Only a folder this process
    owns (holds its lock): another process's run is left alone."""
    if run is None or not run.owned() or not run.exists():
        return
    if run.read_status().state in LIVE_STATES:
        run.write_status(state=RunState.FAILED, error=message, finished=time.time())
        run.log(f"failed: {message}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    owned: list[RunFolder] = []  # run folders this call locked
    try:
        return _main(args, owned)
    finally:
        for run in owned:  # the system releases them at exit anyway; main() may run in-process
            run.unlock()


def _main(args: argparse.Namespace, owned: list[RunFolder]) -> int:
    run: RunFolder | None = None
    main_process = int(os.environ.get("RANK", 0)) == 0  # under torchrun, rank 0 owns the run folder
    try:
        if args.resume or args.run_dir:
            run = RunFolder(args.resume or args.run_dir)
            if not run.exists():
                raise ValueError(f"{run.path}: not a run folder (no config.json).")
            if main_process:
                run.lock()  # before reading its state: two --resume at once, one runs
                owned.append(run)
            state = run.state()
            if args.resume and state in (RunState.RUNNING, RunState.FINISHED):
                raise ValueError(f"{run.path}: the run is {state}; only a stopped run can be resumed.")
            if args.run_dir and state != RunState.QUEUED:
                raise ValueError(f"{run.path}: the run is {state}, not queued; use --resume to continue it.")
            config = run.config()
            if args.find_lr:  # the app's short learning-rate-finder job
                return _find_lr_job(run, config)
            processes = start_processes(resolve_device(config.device))
            progress = fit(config, run if processes.main else None, [TqdmCallback()], resume=bool(args.resume))
        else:
            values = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)}
            config = TrainConfig(**values)
            config.validate()
            if args.find_lr:
                print(_suggestion_line(find_lr(prepare(config))))
                return 0
            processes = start_processes(resolve_device(config.device))
            config = config.with_inline_anchors()  # what the run folder stores, and trains on
            if processes.main:
                run = RunFolder.create(config.out, config, config.name)
                run.lock()
                owned.append(run)
                print(f"run folder: {run.path}")
            progress = fit(config, run, [TqdmCallback()])
    except Cancelled:
        print("cancelled; the last checkpoint is in the run folder (continue with --resume).", file=sys.stderr)
        return 143
    except Exception as e:
        first = str(e).splitlines()[0] if str(e) else ""
        if isinstance(e, EXPECTED_ERRORS):  # bad input or a failed run: its own message says it all
            message = first or type(e).__name__
        else:  # a bug: one line here, the traceback in the run's log
            message = f"{type(e).__name__}: {first}".rstrip(": ")
            if run is not None and run.owned():
                run.log(traceback.format_exc())
        _mark_failed(run, message)
        print(f"error: {message}", file=sys.stderr)
        return 1
    if run is not None:
        best = (
            f", best {'mAP' if 'val_map' in progress.metrics else 'score'} {progress.best:.4f}"
            if progress.best is not None
            else ""
        )
        print(f"finished: {run.path}{best}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
