"""Helpers shared by the benchmarks: timing and the printed table."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Row:
    """One measured quantity and its goal.

    `higher` says which way the goal reads: False for "at most goal" (times, memory), True
    for "at least goal" (speed-ups).
    """

    name: str
    value: float
    unit: str
    goal: float | None = None
    reference: str = ""
    higher: bool = False

    @property
    def ratio(self) -> float | None:
        """value / goal: at most 1 meets an "at most" goal, at least 1 an "at least" goal."""
        if self.goal is None:
            return None
        if self.goal == 0:  # "none at all" (exceptions, hung tabs): met only by 0
            return 0.0 if self.value == 0 else float("inf")
        return self.value / self.goal

    @property
    def met(self) -> bool:
        if self.ratio is None:
            return True
        return self.ratio >= 1.0 if self.higher else self.ratio <= 1.0


def best_of(fn: Callable[[], object], repeat: int = 5) -> float:
    """Smallest wall time of `repeat` calls, in seconds."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def print_table(title: str, rows: list[Row]) -> bool:
    """Prints a markdown table; returns True when every goal is met."""
    print(f"\n{title}\n")
    print("| measure | value | goal | value / goal | met | reference |")
    print("|---|---:|---:|---:|:---:|---|")
    for r in rows:
        goal = f"{'>=' if r.higher else '<='} {r.goal:g} {r.unit}" if r.goal is not None else "-"
        ratio = f"{r.ratio:.2f}" if r.ratio is not None else "-"
        met = "-" if r.goal is None else ("yes" if r.met else "NO")
        print(f"| {r.name} | {r.value:.3g} {r.unit} | {goal} | {ratio} | {met} | {r.reference} |")
    ok = all(r.met for r in rows)
    print(f"\n{'all goals met' if ok else 'SOME GOALS MISSED'}")
    return ok


def report(title: str, rows: list[Row]) -> int:
    """Prints the table; returns the benchmark's exit status: 0 when every goal is met, else 1."""
    return 0 if print_table(title, rows) else 1


def rows_in_temp_dir(*builders: Callable[[Path], list[Row]]) -> list[Row]:
    """The rows of each builder in turn, all given one temporary folder (removed afterwards)."""
    with tempfile.TemporaryDirectory(prefix="detviz-bench-") as tmp:
        return [row for build in builders for row in build(Path(tmp))]


def app_session(root, page: str, **params: str):
    """An AppTest of root/app.py opened on `page` with the query parameters, run twice so its
    caches are warm (what a user who is already looking at the page has)."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(root / "app.py"), default_timeout=600)
    at.query_params.update(params)
    at.switch_page(page)
    at.run()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def median_move_ms(at, key: str, values: list, moves: int = 6) -> float:
    """Median ms of the script run that follows each move of the slider `key` through `values`."""
    import statistics

    times = []
    for k in range(moves):
        at.slider(key=key).set_value(values[k % len(values)])
        start = time.perf_counter()
        at.run()
        times.append((time.perf_counter() - start) * 1000)
        assert not at.exception, [e.value for e in at.exception]
    return statistics.median(times)
