"""The benchmarks' verdicts: a budget is met only when the figure's interval is within it."""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path

import pytest

_BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(_BENCH))

from _common import Figure, judge, median_interval  # noqa: E402

_spec = importlib.util.spec_from_file_location("perfmon_bench_run", _BENCH / "run.py")
assert _spec is not None and _spec.loader is not None
_run = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_run)
verdict = _run.verdict


@pytest.mark.parametrize("n", [6, 9, 15, 20])
def test_median_interval_holds_its_stated_level(n: int) -> None:
    rng = random.Random(n)
    trials, covered, level = 4000, 0, 0.0
    median = 0.6931471805599453  # ln 2: the median of an exponential with rate 1 (skewed)
    for _ in range(trials):
        low, high, level = median_interval([rng.expovariate(1.0) for _ in range(n)])
        covered += low <= median <= high
    assert level >= 0.95
    # The exact coverage is `level`; allow 4 binomial standard errors of Monte Carlo noise.
    se = (level * (1 - level) / trials) ** 0.5
    assert covered / trials >= level - 4 * se


def test_median_interval_states_a_lower_level_when_n_is_too_small() -> None:
    assert median_interval([3.0, 1.0, 2.0]) == (1.0, 3.0, 0.75)
    with pytest.raises(ValueError):
        median_interval([])


def test_judge_decides_only_on_a_whole_interval_at_a_sufficient_level() -> None:
    assert judge(0.2, 0.9, 1.0, level=0.96) == "met"
    assert judge(0.2, 1.5, 1.0, level=0.96) == "not shown"
    assert judge(1.1, 1.5, 1.0, level=0.96) == "missed"
    assert judge(-39.0, 0.5, 1.0, level=0.5) == "not shown"  # too few rounds to decide
    assert judge(1.5, 2.0, 1.4, level=0.96, upper=False) == "met"
    assert judge(1.0, 2.0, 1.4, level=0.96, upper=False) == "not shown"


def test_run_counts_only_explicitly_met_budgets() -> None:
    assert verdict({"budget": "<= 1", "verdict": "met"}) == "met"
    assert verdict({"budget": "<= 1", "verdict": "not shown", "met": None}) == "not shown"
    assert verdict({"budget": "<= 1", "met": None}) == "not shown"  # older JSON: not met
    assert verdict({"budget": "<= 1", "met": False}) == "missed"
    assert verdict({"budget": "", "met": None}) == ""
    fig = Figure("x", 0.5, "%", "<= 1", verdict="not shown")
    assert fig.met is None
    assert Figure("x", 0.5, "%", "<= 1", met=True).verdict == "met"
