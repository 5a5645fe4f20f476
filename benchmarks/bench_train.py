"""Training engine speed (issue 6).

- Engine overhead against a bare PyTorch loop (forward, loss, backward, step) on the same model,
  data and batches: <= 10% on this CPU.
- With a CUDA GPU: images/s training resnet34 at 224 px, batch 64, AMP and channels_last
  (goal >= 1,500 img/s on an H100).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import Row, report
from detviz.data import make_demo_dataset
from detviz.train import RunFolder, TrainConfig, fit, prepare

ROOT = Path(__file__).resolve().parents[1]

STEPS = 30


def bare_loop(config: TrainConfig, steps: int) -> float:
    """Images per second of the plainest training loop on what the engine would build."""
    s = prepare(config)
    model, device, task = s.model, s.device, s.task
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    model.train()
    seen, start, done = 0, 0.0, 0
    while done < steps + 3:
        for batch in s.train_loader:
            if done == 3:  # the first steps warm up the allocator and kernels
                start, seen = time.perf_counter(), 0
            batch = batch.to(device)
            loss = task.loss(model(batch.images), batch)["loss"]  # the engine's loss: ssd_loss on the config
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += batch.images.shape[0]
            done += 1
            if done == steps + 3:
                break
    if device.type == "cuda":
        torch.cuda.synchronize()
    return seen / (time.perf_counter() - start)


def engine(config: TrainConfig, steps: int, out: Path) -> float:
    """Images per second of detviz's engine (one-cycle, clipping, NaN checks, run folder, logging)."""
    run = RunFolder.create(out, config, f"bench-{time.time_ns()}")
    marks: dict[int, float] = {}

    class Clock:
        def on_start(self, p): ...
        def on_epoch(self, p): ...
        def on_end(self, p, state, error=""): ...

        def on_step(self, p):
            marks[p.step] = time.perf_counter()

    import detviz.train.engine as engine_module

    every = engine_module.LOG_EVERY
    engine_module.LOG_EVERY = 1  # to time each step; the run folder is written every step then (the worst case)
    try:
        fit(TrainConfig.from_dict(config.to_dict() | {"max_steps": steps + 3, "epochs": 100}), run, [Clock()])
    finally:
        engine_module.LOG_EVERY = every
    return (steps * config.batch_size) / (marks[steps + 3] - marks[3])


def main() -> int:
    torch.manual_seed(0)
    rows = []
    with tempfile.TemporaryDirectory(prefix="detviz-bench-train-") as tmp:
        data = make_demo_dataset(Path(tmp) / "demo", n_train=64, n_val=8, seed=3)
        config = TrainConfig(
            data=f"demo:{data}",
            image_size=224,
            batch_size=16,
            lr=1e-3,
            workers=0,
            augment=False,
            val_split="",
            device="cpu",
            out=str(Path(tmp) / "runs"),
        )
        bare = bare_loop(config, STEPS)
        ours = engine(config, STEPS, Path(tmp) / "runs")
        overhead = (bare / ours - 1) * 100
        rows.append(
            Row(
                "bare loop, small backbone, lesson_multiscale, 224 px, batch 16 (CPU)", bare, "img/s", None, "reference"
            )
        )
        rows.append(
            Row(
                "detviz engine, same model and data, run folder written every step (CPU)",
                ours,
                "img/s",
                None,
                "measured",
            )
        )
        rows.append(Row("engine overhead over the bare loop (CPU)", max(overhead, 0.0), "%", 10.0, "issue 6 goal"))
        if torch.cuda.is_available():
            gpu = TrainConfig.from_dict(
                config.to_dict()
                | {
                    "device": "cuda",
                    "backbone": "resnet34",
                    "batch_size": 64,
                    "amp": True,
                    "channels_last": True,
                    "workers": 8,
                }
            )
            rows.append(
                Row(
                    f"engine, resnet34 224 px batch 64, AMP, channels_last ({torch.cuda.get_device_name()})",
                    engine(gpu, STEPS, Path(tmp) / "runs"),
                    "img/s",
                    1500.0,
                    "issue 6 goal (H100)",
                    higher=True,
                )
            )
        else:
            print("no CUDA device here: the GPU images/s row is not measured")
    return report(f"bench_train: training engine ({os.cpu_count()} CPU cores)", rows)


if __name__ == "__main__":
    sys.exit(main())
