"""The live sets' builds (pages/ui/live_builds.py): one background build per key, shared by
every caller, bounded, stoppable, with progress and errors; and the default one at server start.
(The pages' side, progress then numbers, is in tests/test_live_pages.py.)"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import wait_for
from test_bad_checkpoints import _nan_checkpoint
from test_live_pages import _checkpoint

from detviz.data import read_voc
from detviz.data.spec import DatasetSpec, dataset_fingerprint
from detviz.data.voc import file_stamp
from detviz.evaluate import sweep_dataset
from detviz.inference import Detector, NonFiniteOutputs
from pages.ui import live_builds
from pages.ui.live_builds import BuildKey, BuildStopped, LiveBuilds, load_and_sweep
from pages.ui.widgets import LIVE_FLOOR


def _key(name: str = "a.pt", limit: int = 100) -> BuildKey:
    return BuildKey(f"/nowhere/{name}", (1, 2), "demo:/nowhere", "val", ((3, 4),), limit)


def _fake_live(n: int = 3, nms: list | None = None) -> SimpleNamespace:
    """Stands in for a LiveSet where only the registry is under test: NMS costs nothing (the
    IoUs asked for go to `nms`)."""
    nms = [] if nms is None else nms
    sweep = SimpleNamespace(kept_by_nms=nms.append, warm=lambda values, stop: nms.extend(values))
    return SimpleNamespace(sweep=sweep, index=list(range(n)))


@pytest.fixture
def registry() -> LiveBuilds:
    builds = LiveBuilds()
    yield builds
    builds.stop_all()


class _SlowToMake(live_builds.LiveBuild):
    """A build that takes a while to set up, so callers racing for one key meet inside `get`."""

    def __init__(self, *args, **kwargs) -> None:
        time.sleep(0.02)
        super().__init__(*args, **kwargs)


def test_concurrent_first_callers_share_one_build(registry: LiveBuilds, monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutations killed: `get` without its lock (two callers both see no build and start one
    each); the set handed out before its first NMS."""
    calls, release, nms = [], threading.Event(), []

    def compute(progress):
        calls.append(1)
        release.wait(10)
        return _fake_live(nms=nms)

    monkeypatch.setattr(live_builds, "LiveBuild", _SlowToMake)
    start, got = threading.Barrier(16), []

    def ask() -> None:
        start.wait()
        got.append(registry.get(_key(), compute))

    askers = [threading.Thread(target=ask) for _ in range(16)]
    for t in askers:
        t.start()
    for t in askers:
        t.join(10)
    release.set()
    assert len(got) == 16 and all(b is got[0] for b in got)
    assert got[0].wait(10) and len(calls) == 1 and registry.held_keys() == [_key()]
    assert nms[0] == 0.45  # the first view's NMS ran before the set was handed out (then the warm-up)


def test_progress_reaches_the_total_and_the_set_equals_sweep_dataset(
    registry: LiveBuilds, demo_root: Path, tmp_path: Path
) -> None:
    """Mutations killed: progress not passed on to sweep_dataset (stays 0), the subset limit
    ignored, a build result other than sweep_dataset's."""
    path = _checkpoint(tmp_path / "small.pt")
    spec = DatasetSpec("demo", str(demo_root))
    key = BuildKey(str(path), file_stamp(path), str(spec), "train", dataset_fingerprint(spec, "train"), 20)
    seen = []

    def compute(progress):
        return load_and_sweep(key, lambda done, total: (seen.append((done, total)), progress(done, total)))

    build = registry.get(key, compute)
    assert build.wait(120) and build.error is None
    done = [d for d, _ in seen]
    assert all(total == 20 for _, total in seen) and done == sorted(done) and {0, 8, 16} <= set(done)
    assert seen[-1] == (20, 20) and (build.done, build.total) == (20, 20)
    live = build.result
    full = read_voc(demo_root, split="train")  # 24 images, 20 of them scored
    direct = sweep_dataset(Detector.from_checkpoint(path), full.subset(range(20)), floor=LIVE_FLOOR)
    assert [r.image_id for r in live.index] == [r.image_id for r in direct.index]
    for thresholds in ((0.01, 0.45, 100, 0.5), (0.3, 0.6, 10, 0.5), (0.05, 0.3, 100, 0.75)):
        got, expected = live.sweep.evaluate(*thresholds, method="all"), direct.sweep.evaluate(*thresholds, method="all")
        assert got.map == pytest.approx(expected.map, abs=1e-9) and got.map == got.map  # not NaN


def test_a_nan_checkpoint_fails_and_a_fixed_file_builds_again(
    registry: LiveBuilds, demo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mutations killed: an error that leaves the build unfinished (a waiting page hangs), a failed
    build kept for good (a passing error never retried), a failed one recomputed at every ask."""
    path = _nan_checkpoint(tmp_path / "nan.pt")
    spec = DatasetSpec("demo", str(demo_root))

    def key() -> BuildKey:
        return BuildKey(str(path), file_stamp(path), str(spec), "val", dataset_fingerprint(spec, "val"), 4)

    failed = registry.get(key(), lambda progress: load_and_sweep(key(), progress))
    assert failed.wait(60) and failed.result is None and isinstance(failed.error, NonFiniteOutputs)
    assert str(failed.error).startswith(str(path))
    assert registry.get(key(), lambda progress: pytest.fail("asked again at once: not recomputed")) is failed
    monkeypatch.setattr(live_builds, "RETRY_FAILED_S", 0.0)
    again = registry.get(key(), lambda progress: load_and_sweep(key(), progress))
    assert again is not failed and again.wait(60) and isinstance(again.error, NonFiniteOutputs)

    _checkpoint(path)
    stamp = os.stat(path).st_mtime_ns + 10**9
    os.utime(path, ns=(stamp, stamp))  # a fixed file: a new stamp, a new key
    fixed = registry.get(key(), lambda progress: load_and_sweep(key(), progress))
    assert fixed.wait(120) and fixed.error is None and len(fixed.result.index) == 4


def test_at_most_four_finished_sets_are_kept_least_recently_asked_first(registry: LiveBuilds) -> None:
    """Mutations killed: no bound (server memory grows with every checkpoint and dataset), a bound
    that drops the oldest started instead of the least recently asked for."""
    keys = [_key(f"{i}.pt") for i in range(5)]
    for key in keys[:4]:
        assert registry.get(key, lambda progress: _fake_live()).wait(10)
    first = registry.get(keys[0], lambda progress: pytest.fail("kept: not built again"))  # asked again: newest
    assert registry.get(keys[4], lambda progress: _fake_live()).wait(10)
    wait_for(lambda: len(registry.held_keys()) == 4, 10)
    assert registry.held_keys() == [keys[2], keys[3], keys[0], keys[4]]  # keys[1]: the least recently asked for
    assert registry.peek(keys[0]) is first and registry.peek(keys[1]) is None
    rebuilt = registry.get(keys[1], lambda progress: _fake_live())
    assert rebuilt.wait(10) and len(registry.held_keys()) == 4 and registry.peek(keys[2]) is None


def test_stopping_ends_a_running_build_and_joins_its_thread(registry: LiveBuilds) -> None:
    """Mutations killed: stop_all not stopping a build mid-way, or not waiting for its thread
    (it would outlive its test, or run into the interpreter's shutdown)."""
    started = threading.Event()

    def endless(progress):
        started.set()
        while True:
            progress(0, 10)
            threading.Event().wait(0.01)

    build = registry.get(_key(), endless)
    assert started.wait(10)
    assert registry.stop_all() == 1
    assert not build.thread.is_alive() and isinstance(build.error, BuildStopped)
    assert registry.held_keys() == [] and registry.stop_all() == 0


def test_a_served_page_waits_briefly_a_scripted_run_as_long_as_it_takes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutations killed: DETVIZ_LIVE_WAIT ignored, a bad value crashing the page, the served
    default (0.5 s) used in AppTest runs (their first run would show progress, not numbers)."""
    monkeypatch.delenv("DETVIZ_LIVE_WAIT", raising=False)
    assert not live_builds.served() and live_builds.live_wait() == live_builds.SCRIPTED_WAIT_S
    monkeypatch.setattr(live_builds, "served", lambda: True)
    assert live_builds.live_wait() == 0.5
    monkeypatch.setenv("DETVIZ_LIVE_WAIT", "0.25")
    assert live_builds.live_wait() == 0.25
    monkeypatch.setenv("DETVIZ_LIVE_WAIT", "soon")
    assert live_builds.live_wait() == 0.5
