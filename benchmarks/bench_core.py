"""Detection core speed (issue 4): SSD loss vs a per-image loop, post-processing vs NMS alone,
matching a big batch. CPU always; CUDA too when present.

Goals:
- ssd_loss, batch 64, 21 classes: >= 10x a straightforward per-image loop at 189 anchors,
  >= 5x at 8,732 anchors with up to 20 objects per image; same value to 1e-5.
- postprocess, 8,732 anchors, 21 classes, one image: <= 5 ms on CPU, <= 1.5x the time of
  torchvision's batched_nms alone on the same candidates.
- matching 64 images x 8,732 anchors x 20 objects: time and peak memory (reported).
"""

from __future__ import annotations

import os
import subprocess
import sys
from functools import partial
from pathlib import Path

import torch
from torchvision.ops import batched_nms

from benchmarks.common import Row, best_of, report
from benchmarks.reference_loss import ssd_loss_loop
from detviz.anchors import PRESETS, make_anchors
from detviz.losses import ssd_loss
from detviz.matching import match_batch
from detviz.postprocess import postprocess

ROOT = Path(__file__).resolve().parents[1]

B, C = 64, 20


def loss_inputs(num_anchors: int, max_objects: int, device: str, seed: int = 0):
    """A batch like a detector's: 1..max_objects objects per image, logits of an SSD whose
    class bias starts near "background"."""
    gen = torch.Generator().manual_seed(seed)
    counts = torch.randint(1, max_objects + 1, (B,), generator=gen)
    valid = torch.arange(max_objects)[None] < counts[:, None]
    xy = torch.rand(B, max_objects, 2, generator=gen) * 0.7
    boxes = torch.cat([xy, xy + 0.03 + torch.rand(B, max_objects, 2, generator=gen) * 0.3], -1).clamp(max=1.0)
    labels = torch.randint(0, C, (B, max_objects), generator=gen)
    logits = torch.randn(B, num_anchors, C + 1, generator=gen) - 4.0
    acts = torch.randn(B, num_anchors, 4, generator=gen) * 0.5
    return [t.to(device) for t in (logits, acts, boxes, labels, valid)]


def loss_rows(device: str) -> list[Row]:
    rows = []
    for preset, max_objects, goal in (("lesson_multiscale", 10, 10.0), ("ssd300", 20, 5.0)):
        anchors = make_anchors(PRESETS[preset]).to(device)
        inputs = loss_inputs(len(anchors), max_objects, device)
        for classification in ("bce", "focal"):
            ours = partial(ssd_loss, *inputs, anchors, classification=classification)
            loop = partial(ssd_loss_loop, *inputs, anchors, classification=classification)
            a, b = float(ours()["loss"]), float(loop()["loss"])
            diff = abs(a - b) / abs(b)
            assert diff <= 1e-5, f"ssd_loss differs from the loop by {diff:.2e}"
            t_ours = best_of(lambda f=ours: _sync(f(), device), 5)
            t_loop = best_of(lambda f=loop: _sync(f(), device), 3)
            name = f"ssd_loss {classification}, batch 64, {len(anchors)} anchors, <= {max_objects} objects ({device})"
            rows.append(Row(f"{name}: time", t_ours * 1000, "ms", None, f"per-image loop {t_loop * 1000:.1f} ms"))
            rows.append(
                Row(
                    f"{name}: loop / ssd_loss",
                    t_loop / t_ours,
                    "x",
                    goal,
                    f"same value: rel. diff {diff:.1e}",
                    higher=True,
                )
            )
    return rows


def postprocess_rows(device: str) -> list[Row]:
    """A detector's outputs: mostly sure "nothing here", with `hot` confident, overlapping pairs.
    Fewer hot pairs is a well-trained model at score 0.05; 1,000 candidates is the cap."""
    anchors = make_anchors(PRESETS["ssd300"]).to(device)
    rows = []
    for hot in (80, 400, 1500):
        gen = torch.Generator().manual_seed(hot)
        logits = torch.randn(1, len(anchors), C + 1, generator=gen) - 6.0
        picked = torch.randint(0, len(anchors), (hot,), generator=gen)
        logits[0, picked, torch.randint(0, C, (hot,), generator=gen)] = torch.randn(hot, generator=gen) + 1.0
        acts = (torch.randn(1, len(anchors), 4, generator=gen) * 0.5).to(device)
        logits = logits.to(device)
        trace = postprocess(logits, acts, anchors, return_trace=True)[0].trace
        t_post = best_of(lambda lg=logits, ac=acts: _sync(postprocess(lg, ac, anchors), device), 50)
        t_nms = best_of(lambda t=trace: _sync(batched_nms(t.boxes, t.scores, t.labels, 0.45), device), 50)
        n = trace.scores.numel()
        goal = 5.0 if device == "cpu" else None
        rows.append(
            Row(
                f"postprocess, 8,732 anchors, 21 classes, 1 image, {n} candidates ({device})",
                t_post * 1000,
                "ms",
                goal,
                "issue 4 goal (CPU)",
            )
        )
        rows.append(
            Row(
                f"postprocess / batched_nms alone on the same {n} candidates ({device})",
                t_post / t_nms,
                "x",
                1.5,
                f"batched_nms {t_nms * 1000:.2f} ms",
            )
        )
    return rows


def matching_rows(device: str) -> list[Row]:
    anchors = make_anchors(PRESETS["ssd300"]).boxes.to(device)
    gen = torch.Generator().manual_seed(2)
    xy = torch.rand(B, 20, 2, generator=gen) * 0.7
    boxes = torch.cat([xy, xy + 0.03 + torch.rand(B, 20, 2, generator=gen) * 0.3], -1).to(device)
    valid = torch.ones(B, 20, dtype=torch.bool, device=device)
    t = best_of(lambda: _sync(match_batch(boxes, valid, anchors), device), 5)
    rows = [Row(f"match_batch 64 x 8,732 anchors x 20 objects ({device})", t * 1000, "ms", None, "reported")]
    if device == "cpu":
        rows.append(
            Row(
                "match_batch peak memory above the inputs (CPU, sampled RSS)",
                _peak_rss_mb(),
                "MB",
                None,
                f"IoU tensor alone {B * 20 * 8732 * 4 / 2**20:.0f} MB",
            )
        )
    else:
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        match_batch(boxes, valid, anchors)
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
        rows.append(Row("match_batch peak memory above the inputs (CUDA)", peak, "MB", None, "reported"))
    return rows


def _peak_rss_mb() -> float:
    """Peak resident memory that one match_batch call adds, sampled in a fresh process.

    Large allocations are made with mmap there (MALLOC_MMAP_THRESHOLD_), so resident memory
    falls again when tensors are freed, and a thread samples it while the call runs.
    """
    code = """
import os, threading, time, torch
from detviz.anchors import PRESETS, make_anchors
from detviz.matching import match_batch
page = os.sysconf("SC_PAGE_SIZE")
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * page
anchors = make_anchors(PRESETS["ssd300"]).boxes
xy = torch.rand(64, 20, 2) * 0.7
boxes = torch.cat([xy, xy + 0.03 + torch.rand(64, 20, 2) * 0.3], -1)
valid = torch.ones(64, 20, dtype=torch.bool)
match_batch(boxes[:1], valid[:1], anchors)
peak, running = [0], [True]
def sample():
    while running[0]:
        peak[0] = max(peak[0], rss())
        time.sleep(0.0002)
base = rss()
thread = threading.Thread(target=sample)
thread.start()
match_batch(boxes, valid, anchors)
running[0] = False
thread.join()
print((peak[0] - base) / 2**20)
"""
    env = os.environ | {"MALLOC_MMAP_THRESHOLD_": "65536"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def _sync(result, device: str):
    if device == "cuda":
        torch.cuda.synchronize()
    return result


def main() -> int:
    torch.manual_seed(0)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows: list[Row] = []
    for device in devices:
        rows += postprocess_rows(device) + matching_rows(device) + loss_rows(device)
    if "cuda" not in devices:
        print("no CUDA device here: CUDA rows not measured")
    return report(f"bench_core: matching, losses, post-processing ({os.cpu_count()} CPU cores)", rows)


if __name__ == "__main__":
    sys.exit(main())
