"""Shared helpers of perfmon's benchmark scripts: timing and reporting figures.

Every script prints its figures as lines a person can read and, when ``PERFMON_BENCH_JSON``
names a file, appends one JSON object per figure to it (``bench/run.py`` collects them into a
summary table). These machines are shared and noisy, so each figure is a ratio against a
baseline measured in the same run, interleaved with it, and summarised by a median.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass


@dataclass
class Figure:
    """One benchmark figure.

    Attributes:
        name: what was measured, e.g. ``"probe cost / Gauge.set"``.
        value: the figure.
        unit: its unit (``"x"`` for a ratio, ``"samples/s"``, ``"bytes/sample"``, ...).
        budget: the budget as text (``"<= 0.6"``), or ``""`` for a figure without one.
        met: whether the budget is met (None without a budget).
        method: one sentence: how it was measured, with the baseline.
        detail: the raw numbers behind the figure.
    """

    name: str
    value: float
    unit: str
    budget: str = ""
    met: bool | None = None
    method: str = ""
    detail: str = ""


def emit(fig: Figure) -> None:
    """Print a figure and append it to ``$PERFMON_BENCH_JSON`` when set."""
    verdict = "" if fig.met is None else ("  [met]" if fig.met else "  [NOT MET]")
    budget = f"  (budget {fig.budget})" if fig.budget else ""
    print(f"{fig.name}: {fig.value:.4g} {fig.unit}{budget}{verdict}")
    if fig.detail:
        print(f"    {fig.detail}")
    if fig.method:
        print(f"    method: {fig.method}")
    path = os.environ.get("PERFMON_BENCH_JSON")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(asdict(fig)) + "\n")


def median(xs: list[float]) -> float:
    """Median of a non-empty list."""
    return statistics.median(xs)


def per_call_ns(fn: Callable[[int], None], n: int) -> float:
    """Wall nanoseconds per iteration of ``fn(n)``, which runs ``n`` iterations."""
    t0 = time.perf_counter_ns()
    fn(n)
    return (time.perf_counter_ns() - t0) / n


def machine() -> str:
    """A one-line description of this machine (CPU model, cores, Python)."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"
    )
