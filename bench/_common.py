"""Shared helpers of perfmon's benchmark scripts: timing and reporting figures.

Every script prints its figures as lines a person can read and, when ``PERFMON_BENCH_JSON``
names a file, appends one JSON object per figure to it (``bench/run.py`` collects them into a
summary table). These machines are shared and noisy, so each figure is a ratio against a
baseline measured in the same run, interleaved with it, and summarised by a median.

A budget is judged on the figure's interval when it has one (``judge``): ``met`` only when
the whole interval is within the budget, ``missed`` when the whole interval is outside it,
``not shown`` when it straddles the limit (this run cannot tell).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

# One implementation of the median's order-statistic interval (Conover 1999, section 3.2).
from perfmon.engine.tables import median_interval as median_interval  # re-exported to the benches

MET = "met"
MISSED = "missed"
NOT_SHOWN = "not shown"


@dataclass
class Figure:
    """One benchmark figure.

    Attributes:
        name: what was measured, e.g. ``"probe cost / Gauge.set"``.
        value: the figure.
        unit: its unit (``"x"`` for a ratio, ``"samples/s"``, ``"bytes/sample"``, ...).
        budget: the budget as text (``"<= 0.6"``), or ``""`` for a figure without one.
        met: whether the budget is met (None without a budget, or when this run cannot
            tell); set from ``verdict`` when a verdict is given.
        method: one sentence: how it was measured, with the baseline.
        detail: the raw numbers behind the figure.
        low / high: the figure's confidence interval, in its unit (None without one).
        level: the interval's coverage (e.g. 0.961: order statistics give exact levels).
        verdict: ``"met"``, ``"missed"`` or ``"not shown"`` (see ``judge``); ``""`` without
            a budget. Derived from ``met`` when not given: True is met, False missed, None
            not shown.
    """

    name: str
    value: float
    unit: str
    budget: str = ""
    met: bool | None = None
    method: str = ""
    detail: str = ""
    low: float | None = None
    high: float | None = None
    level: float | None = None
    verdict: str = ""

    def __post_init__(self) -> None:
        if not self.budget:
            self.verdict = ""
        elif self.verdict:
            if self.verdict not in (MET, MISSED, NOT_SHOWN):
                raise ValueError(f"unknown verdict {self.verdict!r}")
            self.met = {MET: True, MISSED: False}.get(self.verdict)
        else:
            self.verdict = {True: MET, False: MISSED}.get(self.met, NOT_SHOWN)  # type: ignore[arg-type]


JUDGE_LEVEL = 0.95
"""Least coverage of an interval that may decide a budget either way."""


def judge(low: float, high: float, limit: float, *, level: float = 1.0, upper: bool = True) -> str:
    """Judge an interval against a budget: ``met``, ``missed`` or ``not shown``.

    Args:
        low / high: the figure's interval.
        limit: the budget's limit, in the figure's unit.
        level: the interval's coverage; below ``JUDGE_LEVEL`` (too few rounds) nothing is
            decided.
        upper: True for a budget ``<= limit`` (the figure must stay below), False for
            ``>= limit``.

    Returns:
        ``"met"`` when the whole interval is within the budget, ``"missed"`` when the whole
        interval is outside it, ``"not shown"`` when it straddles the limit or its coverage
        is below ``JUDGE_LEVEL``.
    """
    if level < JUDGE_LEVEL:
        return NOT_SHOWN
    if upper:
        if high <= limit:
            return MET
        return MISSED if low > limit else NOT_SHOWN
    if low >= limit:
        return MET
    return MISSED if high < limit else NOT_SHOWN


def emit(fig: Figure) -> None:
    """Print a figure and append it to ``$PERFMON_BENCH_JSON`` when set."""
    verdict = f"  [{fig.verdict}]" if fig.verdict else ""
    budget = f"  (budget {fig.budget})" if fig.budget else ""
    interval = ""
    if fig.low is not None and fig.high is not None:
        level = f"{fig.level:.1%} " if fig.level is not None else ""
        interval = f"  [{level}CI {fig.low:.4g} .. {fig.high:.4g}]"
    print(f"{fig.name}: {fig.value:.4g} {fig.unit}{interval}{budget}{verdict}")
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
