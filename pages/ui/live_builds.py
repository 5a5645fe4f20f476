"""The live sets' builds: a checkpoint's outputs over (part of) a dataset, computed once per
(checkpoint file, dataset, subset) on a daemon thread that every session asking for it shares,
so no page waits for more than it chooses to (`live_wait`); the last few finished sets kept.

No Streamlit call here: the build threads run outside any script run, and the pages
(pages/ui/live.py) show what a build says (`done`, `total`, `result`, `error`).
`start_default_build` starts the default checkpoint's build on the default dataset once per
server process (app.py), so a class's first Predictions visit finds it running or done.

Both the early start and the short wait are for a served app (`streamlit run`); a scripted run of
app.py (AppTest, in tests and benchmarks) starts nothing early and waits for its set, unless
$DETVIZ_PREWARM / $DETVIZ_LIVE_WAIT say otherwise.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from detviz.data.spec import DatasetSpec, dataset_fingerprint, dataset_splits
from detviz.data.voc import file_stamp
from pages.ui.data import VAL_SPLIT, demo_dir
from pages.ui.widgets import LIVE_FLOOR, NMS_STEPS, SUBSETS

if TYPE_CHECKING:  # torchvision loads with detviz.inference: app.py imports this module on every page
    from detviz.data import DatasetIndex
    from detviz.evaluate import DatasetSweep
    from detviz.inference import Detector

Progress = Callable[[int, int], None]  # (images done, images in all)
Compute = Callable[[Progress], "DatasetSweep"]

KEEP = 4  # finished live sets kept (least recently asked for dropped first): server memory stays flat
RETRY_FAILED_S = 10.0  # a failed build is asked again after this long (its error may have been passing)
SERVED_WAIT_S = 0.5  # how long a served page waits for a build before it shows the progress instead
SCRIPTED_WAIT_S = 3600.0  # an AppTest run shows the numbers on its first run, as its tests expect
LIVE_BATCH = 8  # images per forward pass: the progress moves (and a stop is heard) every 8 images
DEFAULT_LIMIT = next(iter(SUBSETS.values()))  # the "Images scored" picker's first choice
_log = logging.getLogger(__name__)


def served() -> bool:
    """Whether this process is a Streamlit server (`streamlit run`), not a scripted run of the app
    (AppTest stands a mock in for the server's Runtime)."""
    from streamlit import runtime

    return runtime.exists() and type(runtime.get_instance()) is runtime.Runtime


def live_wait() -> float:
    """Seconds a page waits for a live set before showing its progress: $DETVIZ_LIVE_WAIT, else
    SERVED_WAIT_S in a served app and SCRIPTED_WAIT_S in a scripted run."""
    default = SERVED_WAIT_S if served() else SCRIPTED_WAIT_S
    try:
        return max(0.0, float(os.environ.get("DETVIZ_LIVE_WAIT", default)))
    except ValueError:
        return default


class BuildKey(NamedTuple):
    """What a live set is of: the checkpoint file (path and modification stamp), the dataset (spec
    text, split, file fingerprint) and how many of its first images are scored."""

    path: str
    stamp: tuple
    spec: str
    split: str
    fingerprint: tuple
    limit: int


class BuildStopped(RuntimeError):
    """The build was stopped before it finished (the server is shutting down)."""


class LiveBuild:
    """One live set, being computed on its own daemon thread or computed.

    While it runs, `done` of `total` images are scored; then exactly one of `result` (the
    LiveSet, its default NMS already run) and `error` (the exception the computation raised) is
    set, and the thread goes on running NMS for the other values the NMS slider offers (nearest
    first) until they are cached or the build is stopped.
    """

    def __init__(self, key: BuildKey, compute: Compute, on_finish: Callable[[LiveBuild], None]):
        self.key = key
        self.done = 0
        self.total = 0
        self.result: DatasetSweep | None = None
        self.error: Exception | None = None
        self.finished_at = 0.0  # time.monotonic() when finished
        self._ready = threading.Event()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(compute, on_finish), daemon=True,
                                       name=f"live set {Path(key.path).name}")  # fmt: skip

    @property
    def finished(self) -> bool:
        """Whether `result` or `error` is set."""
        return self._ready.is_set()

    def wait(self, timeout: float) -> bool:
        """Waits up to `timeout` seconds for the build to finish; returns whether it has."""
        return self._ready.wait(timeout)

    def stop(self) -> None:
        """Asks the thread to stop: a running computation ends after its current batch, the NMS
        warm-up after its current NMS."""
        self._stop.set()

    def _progress(self, done: int, total: int) -> None:
        if self._stop.is_set():
            raise BuildStopped(f"{Path(self.key.path).name}: stopped before it finished.")
        self.done, self.total = done, total

    def _run(self, compute: Compute, on_finish: Callable[[LiveBuild], None]) -> None:
        from detviz.postprocess import DEFAULT_NMS_IOU  # torch: imported by the build, not with app.py

        try:
            live = compute(self._progress)
            live.sweep.kept_by_nms(DEFAULT_NMS_IOU)  # the first view's NMS, before anyone is told
            self.done = self.total = len(live.index)
            self.result = live
        except Exception as e:  # every error reaches the pages: a waiting tab must never hang
            if not isinstance(e, ValueError | OSError | BuildStopped):  # not a broken file: a bug
                _log.exception("building the live set of %s failed", self.key.path)
            self.error = e
        finally:
            self.finished_at = time.monotonic()
            self._ready.set()
            on_finish(self)
        if self.result is not None:
            # the other values the NMS slider offers, nearest first, while the user looks at the
            # first result: a move to any of them then costs no NMS
            self.result.sweep.warm(sorted(NMS_STEPS, key=lambda v: abs(v - DEFAULT_NMS_IOU)), self._stop)


class LiveBuilds:
    """The process's live-set builds, by BuildKey: concurrent first callers of a key share one
    build; at most `keep` finished ones are kept, the least recently asked for dropped first."""

    def __init__(self, keep: int = KEEP):
        self.keep = keep
        self._lock = threading.Lock()
        self._builds: OrderedDict[BuildKey, LiveBuild] = OrderedDict()
        self._threads: list[threading.Thread] = []  # started and maybe still running (evicted builds too)
        self._default_started = False

    def get(self, key: BuildKey, compute: Compute) -> LiveBuild:
        """The build of `key`, started (with `compute`, called on the build's thread with a
        progress callback) when there is none yet, or when the last one failed a while ago."""
        with self._lock:
            build = self._builds.get(key)
            if build is None or (build.error is not None and time.monotonic() - build.finished_at > RETRY_FAILED_S):
                build = LiveBuild(key, compute, self._finished)
                self._builds[key] = build
                self._threads = [t for t in self._threads if t.is_alive()]
                self._threads.append(build.thread)
                build.thread.start()
            self._builds.move_to_end(key)
            self._trim()
            return build

    def peek(self, key: BuildKey) -> LiveBuild | None:
        """The build of `key` if there is one; starts nothing and leaves the order alone."""
        with self._lock:
            return self._builds.get(key)

    def held_keys(self) -> list[BuildKey]:
        """The keys held, least recently asked for first."""
        with self._lock:
            return list(self._builds)

    def start_default(self) -> bool:
        """Starts, once per process (or after `stop_all`), a thread that builds the default live
        set (`default_key`); returns whether it started it now. $DETVIZ_PREWARM=1 turns it on,
        0 off; unset, it is on in a served app only (`served`)."""
        wanted = os.environ.get("DETVIZ_PREWARM", "")
        if not (wanted == "1" or (wanted != "0" and served())):
            return False
        with self._lock:
            if self._default_started:
                return False
            self._default_started = True
            thread = threading.Thread(target=self._build_default, name="live set: default", daemon=True)
            self._threads.append(thread)
            thread.start()
        return True

    def _build_default(self) -> None:
        try:
            key = default_key()
        except (ValueError, OSError) as e:  # a broken default: the page says so when visited
            _log.warning("no default live set: %s", e)
            return
        if key is not None:
            self.get(key, lambda progress: load_and_sweep(key, progress))

    def stop_all(self, timeout: float = 30.0) -> int:
        """Stops every build (and its warm-up), waits for each thread to end and forgets the sets;
        returns how many builds it forgot."""
        forgotten = 0
        while True:  # a thread that was starting the default build may have started one meanwhile
            with self._lock:
                builds, threads = list(self._builds.values()), self._threads
                self._builds.clear()
                self._threads = []
                self._default_started = False
            if not builds and not threads:
                return forgotten
            forgotten += len(builds)
            for build in builds:
                build.stop()
            for thread in threads:
                thread.join(timeout)

    def _finished(self, build: LiveBuild) -> None:
        with self._lock:
            self._trim()

    def _trim(self) -> None:
        """Drops the least recently asked-for finished builds beyond `keep` (lock held)."""
        finished = [key for key, build in self._builds.items() if build.finished]
        for key in finished[: max(0, len(finished) - self.keep)]:
            self._builds.pop(key).stop()


def sweep_live(detector: Detector, full: DatasetIndex, limit: int, progress: Progress | None = None) -> DatasetSweep:
    """The detector's outputs over the first `limit` images of `full`, candidates down to LIVE_FLOOR."""
    from detviz.evaluate import sweep_dataset

    subset = full.subset(list(range(min(limit, len(full)))))
    if progress is not None:
        progress(0, len(subset))  # the total, at once (and a stop asked for meanwhile is heard)
    return sweep_dataset(detector, subset, floor=LIVE_FLOOR, batch_size=LIVE_BATCH, progress=progress)


def load_and_sweep(key: BuildKey, progress: Progress | None = None) -> DatasetSweep:
    """`sweep_live` of the key's checkpoint over its dataset, both read from their files here.

    Raises:
        CheckpointError, NonFiniteOutputs, DataError (ValueErrors), OSError: as their readers do.
    """
    from detviz.data.spec import open_dataset
    from detviz.inference import Detector

    full = open_dataset(key.spec, key.split, strict=False)
    return sweep_live(Detector.from_checkpoint(key.path), full, key.limit, progress)


def default_key() -> BuildKey | None:
    """The live set a first visit to Predictions asks for: the default checkpoint (DEFAULT_CHECKPOINT
    among the shipped ones) on the built-in demo dataset's val split, the first "Images scored"
    choice. None when the checkpoint or the demo dataset (or its val split) is not there."""
    from pages.ui.models import DEFAULT_CHECKPOINT, shipped_checkpoints  # torchvision: on the thread

    path = shipped_checkpoints().get(DEFAULT_CHECKPOINT)
    spec = DatasetSpec("demo", str(demo_dir()))
    if path is None or VAL_SPLIT not in dataset_splits(spec):
        return None
    fingerprint = dataset_fingerprint(spec, VAL_SPLIT)
    return BuildKey(str(path), file_stamp(path), str(spec), VAL_SPLIT, fingerprint, DEFAULT_LIMIT)


# The one registry of the server process (a class's sessions share its sets); emptied at exit
# and after each test (tests/conftest.py), so no thread outlives its test or runs into shutdown.
BUILDS = LiveBuilds()


def start_default_build() -> None:
    """app.py's call on every run: the first one of the process starts the default live set."""
    BUILDS.start_default()


@atexit.register
def stop_warming(timeout: float = 30.0) -> int:
    """Stops every live-set build and NMS warm-up thread, waits for each, and forgets the sets;
    returns how many builds it forgot. Runs at exit (a daemon thread inside a torch call when the
    interpreter goes away aborts the process) and after each test (none outlives its test)."""
    return BUILDS.stop_all(timeout)
