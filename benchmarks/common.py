"""Helpers shared by the benchmarks: timing and the printed table."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Row:
    """One measured quantity, its goal and how the goal reads ("<=" goals: smaller is better)."""

    name: str
    value: float
    unit: str
    goal: float | None = None
    reference: str = ""

    @property
    def ratio(self) -> float | None:
        return None if self.goal is None else self.value / self.goal


def best_of(fn: Callable[[], object], repeat: int = 5) -> float:
    """Smallest wall time of `repeat` calls, in seconds."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def print_table(title: str, rows: list[Row]) -> bool:
    """Prints a markdown table; returns True when every goal is met (ratio <= 1)."""
    print(f"\n{title}\n")
    print("| measure | value | goal | ratio to goal | reference |")
    print("|---|---:|---:|---:|---|")
    ok = True
    for r in rows:
        goal = f"<= {r.goal:g} {r.unit}" if r.goal is not None else "-"
        ratio = f"{r.ratio:.2f}" if r.ratio is not None else "-"
        ok &= r.ratio is None or r.ratio <= 1.0
        print(f"| {r.name} | {r.value:.3g} {r.unit} | {goal} | {ratio} | {r.reference} |")
    print(f"\n{'all goals met' if ok else 'SOME GOALS MISSED'}")
    return ok
