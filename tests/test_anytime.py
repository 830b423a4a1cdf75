"""Anytime-valid inference (issue 11, point 3): the confidence sequence and the live gate.

The coverage at 1,000 A/A sequences is a bench figure (``bench/stats_honesty.py --anytime``);
here a smaller, seeded simulation checks the sequence keeps its level over every look, plus the
properties a gate relies on: it only shrinks (no flapping), it decides real effects, it is exact
under ties and constant ratios, and its incremental cache gives the same answer as a replay.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from perfmon.core.gates import parse_gate
from perfmon.core.model import GateState
from perfmon.core.stats import ShiftSequence, StatsOptions, anytime_ratio
from test_gates_stats import Run, _ab


def _aa_pool() -> np.ndarray:
    rng = np.random.default_rng(7)
    # Right-skewed like real session times: a lognormal body with a heavy Pareto tail.
    body = rng.lognormal(mean=math.log(0.15), sigma=0.08, size=400)
    tail = 0.15 * (1.0 + rng.pareto(2.5, size=40))
    return np.concatenate([body, tail])


def test_aa_sequences_rarely_ever_exclude_the_truth_at_any_look() -> None:
    pool = _aa_pool()
    rng = np.random.default_rng(11)
    ever = 0
    runs = 120
    for _ in range(runs):
        seq = ShiftSequence(0.05)
        for i in range(30):
            a, b = rng.choice(pool, 2)
            seq.update(math.log(a) - math.log(b))
            low, high = seq.interval()
            if i + 1 >= 3 and not low <= 0.0 <= high:
                ever += 1
                break
    # 5% of 120 is 6; the binomial 99.9% upper bound at p = 0.05 is 15.
    assert ever <= 15


def test_the_sequence_only_shrinks_and_decides_a_real_slowdown() -> None:
    rng = np.random.default_rng(3)
    seq = ShiftSequence(0.05)
    prev = (-math.inf, math.inf)
    for _ in range(40):
        a = rng.lognormal(math.log(1.0), 0.05)
        b = rng.lognormal(math.log(1.5), 0.05)
        seq.update(math.log(a) - math.log(b))
        low, high = seq.interval()
        assert prev[0] <= low <= high <= prev[1]
        prev = (low, high)
    assert seq.n == 40
    low, high = prev
    assert low <= -math.log(1.5) <= high
    assert high < -math.log(1.1)


def test_a_constant_ratio_is_kept_at_the_grid_resolution() -> None:
    seq = ShiftSequence(0.05)
    for _ in range(60):
        seq.update(math.log(1.05))
    low, high = seq.interval()
    assert low <= math.log(1.05) <= high
    assert high - low <= 0.02


def test_ties_never_move_the_sequence() -> None:
    seq = ShiftSequence(0.05)
    for _ in range(30):
        seq.update(0.0)
    low, high = seq.interval()
    assert low < 0.0 < high


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="alpha"):
        ShiftSequence(1.5)
    with pytest.raises(ValueError, match="finite"):
        ShiftSequence().update(math.inf)
    with pytest.raises(ValueError, match="positive"):
        anytime_ratio([1.0, -1.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="inference"):
        StatsOptions(inference="sometimes")


def test_incremental_cache_matches_a_replay() -> None:
    rng = np.random.default_rng(5)
    a = list(rng.lognormal(0.0, 0.1, 25))
    b = list(rng.lognormal(-0.2, 0.1, 25))
    for k in range(3, 26):
        anytime_ratio(a[:k], b[:k], key="t")  # feeds the kept sequence one pair at a time
    cached = anytime_ratio(a, b, key="t")
    seq = ShiftSequence(0.05)
    for x, y in zip(a, b, strict=True):
        seq.update(math.log(x) - math.log(y))
    low, high = seq.interval()
    assert cached.speedup_low == pytest.approx(math.exp(low))
    assert cached.speedup_high == pytest.approx(math.exp(high))
    assert cached.pairs == 25
    # an unpaired last session waits for its partner
    assert anytime_ratio(a, b[:-1]).pairs == 24
    # pairs that do not extend the kept ones rebuild it: the same answer as a fresh sequence
    assert anytime_ratio(a[1:], b[1:], key="t") == anytime_ratio(a[1:], b[1:])


def test_the_live_gate_is_anytime_by_default_and_never_falls_back() -> None:
    rng = np.random.default_rng(9)
    base = list(rng.lognormal(0.0, 0.03, 30))
    fast = list(rng.lognormal(-math.log(1.6), 0.03, 30))
    gate = parse_gate("speedup(session_seconds, baseline, candidate) >= 1.2")
    states = []
    for k in range(5, 31, 5):
        run = Run()
        _ab(run, base[:k], fast[:k])
        r = gate.evaluate(run.live(), "Perf")
        states.append(r.state)
        assert "anytime-valid CS" in r.reason
        assert f"n = {k}/{k}" in r.reason
    assert states[-1] is GateState.PASS
    first = states.index(GateState.PASS)
    assert all(s is GateState.PASS for s in states[first:])


def test_fixed_inference_is_labelled_provisional() -> None:
    run = Run()
    _ab(run, [1.0, 1.02, 0.98, 1.01, 0.99], [0.5, 0.51, 0.49, 0.5, 0.52])
    opts = StatsOptions(inference="fixed", resamples=1000)
    r = parse_gate("speedup(session_seconds, baseline, candidate) >= 1.2", stats=opts).evaluate(
        run.live(), "Perf"
    )
    assert r.state is GateState.PASS
    assert "provisional until the planned n" in r.reason


def test_oriented_rate_with_an_unbounded_sequence_does_not_divide_by_zero() -> None:
    """A higher-is-better metric whose confidence sequence still reaches 0 (5 pairs, parquet
    throughput) turns into a speedup interval reaching infinity, not a ZeroDivisionError."""
    import math

    from perfmon.core.gates import oriented
    from perfmon.core.stats import AnytimeRatio

    r = AnytimeRatio(1.25, 0.0, math.inf, -0.2, -1.0, math.inf, 5, 5, 5, 0.95)
    f, lo, hi = oriented(r, "speedup", "higher")
    assert f == 0.8
    assert lo == 0.0
    assert hi == math.inf
    assert oriented(r, "regression", "higher") == (0.2, -math.inf, 1.0)


def test_the_scale_s_mad_equals_sorting_the_deviations_to_the_last_bit() -> None:
    """``_sorted_mad`` (O(log n), used at every update of the sequence) gives the very float
    that sorting every absolute deviation gives: ties, signs, huge and tiny values."""
    import random

    from perfmon.core.stats import _sorted_mad, _sorted_median

    rng = random.Random(3)
    for trial in range(4000):
        n = rng.randint(1, 40)
        kind = trial % 4
        if kind == 0:
            v = [rng.gauss(0, 1) for _ in range(n)]
        elif kind == 1:
            v = [rng.randint(-3, 3) * 0.5 for _ in range(n)]
        elif kind == 2:
            v = [rng.choice([0.1, 0.2, 0.3, 1e-9, -1e300, 7.0]) for _ in range(n)]
        else:
            v = [rng.lognormvariate(0, 3) * rng.choice([1, -1]) for _ in range(n)]
        v.sort()
        med = _sorted_median(v)
        assert _sorted_mad(v, med) == _sorted_median(sorted(abs(x - med) for x in v)), v
