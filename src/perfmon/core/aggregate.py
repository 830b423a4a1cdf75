"""Bounded aggregates of one metric: exact moments, a uniform reservoir, a downsampled series.

A 72-hour soak at 4 Hz is a million samples per metric; the live state must not keep them
(the recorder does, on disk). ``MetricAggregate`` keeps, in memory that never grows:

- exact running ``count``, ``total``, ``min``, ``max``, ``mean``, ``last`` and ``last_t``;
- a uniform random sample of at most ``reservoir_size`` ``(t, value)`` pairs, kept with
  Vitter's Algorithm R (J. S. Vitter, "Random sampling with a reservoir", ACM TOMS 11(1),
  1985): the k-th sample replaces a uniformly chosen slot with probability
  ``reservoir_size / k``. Quantiles are computed from it with ``numpy.quantile(...,
  method="linear")``, i.e. Hyndman & Fan's type 7 (the default of numpy and R), the one
  method used everywhere in perfmon. While ``count <= reservoir_size`` the reservoir holds
  every sample and quantiles are exact;
- a time series of ``series_points`` buckets, each keeping count, sum, min and max. Buckets
  start ``initial_bucket_s`` wide from the first sample's time; when a sample falls beyond
  the last bucket, the width doubles and neighbouring buckets merge pairwise (as in
  RRDtool-style consolidation), so the series always covers the whole run at the finest
  width that fits.

Windowed reductions (``reduce(..., window_s=W)``) cover ``[end_t - W, end_t]`` where
``end_t`` defaults to the time of the latest sample. ``count``, ``sum``, ``min``, ``max`` and
``mean`` are exact over the buckets that *end* within the window (so at bucket granularity:
the oldest bucket may start up to one bucket width before the window) for a window the
aggregate was not told about (or that began to be tracked after the window's start). For a
window it tracks (``windows=`` or ``track_window``; a window asked for is tracked from then
on), every reduction comes from a ring of
``WINDOW_STEPS + 1`` time buckets ``W / WINDOW_STEPS`` wide, aligned to multiples of their
width from t = 0 (``window_bounds``), each holding the exact count, sum, min and max and a
mergeable DDSketch of its values (Masson, C., Rim, J. E. and Lee, H. K. (2019), "DDSketch: a
fast and fully-mergeable quantile sketch with relative-error guarantees", PVLDB 12(12),
2195-2205; the ``ddsketch`` library's logarithmic mapping at relative accuracy
``SKETCH_ACCURACY``, its bins counted with numpy, ``_LogSketch``). The window is the
``WINDOW_STEPS`` buckets ending with the one that holds ``end_t``: exactly ``W`` long, sliding
in steps of ``W / WINDOW_STEPS``; its count is the true count of the samples in it, and its
quantiles are those of the merged sketches, within ``SKETCH_ACCURACY`` (relative) of a sample
value at the quantile's rank. ``perfmon.core.datasource`` cuts the recorded samples at the same
bounds, so the live and the end-of-run values of one windowed quantity agree.
Whole-run quantiles come from the reservoir while it holds every sample (exact), and from a
whole-run DDSketch beyond that (relative error at most ``SKETCH_ACCURACY``, where a reservoir's
subsample would give a random error). ``last`` is the latest value if it lies in the window.

Two random generators, both seeded with ``seed`` so results are reproducible for a given
order of calls: ``add`` draws from ``random.Random`` (cheap per call), ``add_many`` from
``numpy.random.Generator(PCG64)`` (one vectorised draw per batch, the ingest hot path).

Samples older than the first sample (out of order across sessions) are folded into the first
bucket.
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Sequence
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from perfmon.core.model import MetricKind

REDUCE_FUNCS = frozenset({"max", "min", "mean", "median", "quantile", "sum", "count", "last"})
"""Reduction names understood by ``MetricAggregate.reduce`` (and the gate language)."""

QUANTILE_METHOD: Final = "linear"
"""``numpy.quantile`` method used throughout perfmon: Hyndman & Fan (1996) type 7."""

_F64 = npt.NDArray[np.float64]

SKETCH_ACCURACY: Final = 0.005
"""Relative accuracy of the DDSketches of quantiles (0.5%: a p95 within 1% of the exact one,
with room for the difference between the sketch's rank and Hyndman & Fan's interpolation)."""

WINDOW_STEPS: Final = 32
"""Buckets per tracked window: the window slides in steps of 1/32 of its length."""


def window_bounds(end_t: float, window_s: float) -> tuple[float, float]:
    """The bounds ``[start, stop)`` of a tracked window ending at ``end_t``, Unix seconds.

    The window is the ``WINDOW_STEPS`` buckets of width ``window_s / WINDOW_STEPS`` (aligned
    to multiples of the width from t = 0) ending with the bucket that holds ``end_t``: exactly
    ``window_s`` long. The live state and the recorded data source both cut here.
    """
    if not window_s > 0:
        return end_t, math.nextafter(end_t, math.inf)  # a zero window: samples at end_t
    width = window_s / WINDOW_STEPS
    k = math.floor(end_t / width)
    return (k - WINDOW_STEPS + 1) * width, (k + 1) * width


@functools.lru_cache(maxsize=1)
def _mapping() -> Any:
    """The ``ddsketch`` logarithmic key mapping at ``SKETCH_ACCURACY`` (imported on first use)."""
    from ddsketch.mapping import LogarithmicMapping

    return LogarithmicMapping(SKETCH_ACCURACY)


class _Bins:
    """Dense counts of integer sketch keys from ``offset`` on (a numpy array that grows)."""

    __slots__ = ("counts", "offset")

    def __init__(self) -> None:
        self.counts = np.zeros(0, dtype=np.int64)
        self.offset = 0

    def add_keys(self, keys: npt.NDArray[np.int64]) -> None:
        if not keys.size:
            return
        low, high = int(keys.min()), int(keys.max())
        self._cover(low, high)
        self.counts += np.bincount(keys - self.offset, minlength=self.counts.size)

    def merge(self, other: _Bins) -> None:
        if not other.counts.size:
            return
        self._cover(other.offset, other.offset + other.counts.size - 1)
        start = other.offset - self.offset
        self.counts[start : start + other.counts.size] += other.counts

    def _cover(self, low: int, high: int) -> None:
        if not self.counts.size:
            self.counts = np.zeros(high - low + 1, dtype=np.int64)
            self.offset = low
            return
        top = self.offset + self.counts.size - 1
        new_low, new_high = min(low, self.offset), max(high, top)
        if new_low < self.offset or new_high > top:
            grown = np.zeros(new_high - new_low + 1, dtype=np.int64)
            grown[self.offset - new_low : self.offset - new_low + self.counts.size] = self.counts
            self.counts, self.offset = grown, new_low

    def key_at_rank(self, rank: float, lower: bool) -> int:
        cum = np.cumsum(self.counts)
        i = (
            int(np.searchsorted(cum, rank, side="right"))
            if lower
            else int(np.searchsorted(cum, rank + 1.0, side="left"))
        )
        return self.offset + min(i, self.counts.size - 1)


class _LogSketch:
    """A DDSketch (Masson, Rim & Lee 2019) kept as numpy bin counts.

    The bins are those of ``ddsketch``'s ``LogarithmicMapping`` at ``SKETCH_ACCURACY`` (key
    ``ceil(log(x) / log(gamma))``, computed for a whole batch with numpy), so a batch costs a
    few vectorised passes instead of one Python call per value; ``quantile_value`` follows
    ``ddsketch.DDSketch.get_quantile_value`` (rank ``q (n - 1)``, the bin's representative
    value ``mapping.value(key)``), which tests/test_windows.py checks against the library on
    the same data. Mergeable: bin counts add.
    """

    __slots__ = ("neg", "pos", "zero")

    def __init__(self) -> None:
        self.pos = _Bins()
        self.neg = _Bins()
        self.zero = 0

    @property
    def count(self) -> int:
        return int(self.pos.counts.sum() + self.neg.counts.sum()) + self.zero

    def add_many(self, v: _F64) -> None:
        if not v.size:
            return
        mapping = _mapping()
        tiny = mapping.min_possible
        log_gamma = math.log(mapping.gamma)
        pos = v[v > tiny]
        neg = -v[v < -tiny]
        self.zero += int(v.size - pos.size - neg.size)
        for bins, part in ((self.pos, pos), (self.neg, neg)):
            if part.size:
                bins.add_keys(np.ceil(np.log(part) / log_gamma).astype(np.int64))

    def merge(self, other: _LogSketch) -> None:
        self.pos.merge(other.pos)
        self.neg.merge(other.neg)
        self.zero += other.zero

    def quantile_value(self, q: float) -> float:
        n = self.count
        if n == 0:
            return math.nan
        mapping = _mapping()
        rank = q * (n - 1)
        n_neg = int(self.neg.counts.sum())
        if rank < n_neg:
            return -float(mapping.value(self.neg.key_at_rank(n_neg - rank - 1, lower=False)))
        if rank < n_neg + self.zero:
            return 0.0
        return float(mapping.value(self.pos.key_at_rank(rank - self.zero - n_neg, lower=True)))


def _sketch_quantile(sketch: _LogSketch, q: float, lo: float, hi: float) -> float:
    """Hyndman & Fan type 7 on a sketch: the sketch's values at ranks ``floor(h)`` and
    ``floor(h) + 1`` of ``h = q (n - 1)``, interpolated as ``numpy.quantile(method="linear")``
    interpolates between order statistics (so one definition of a quantile is used live and at
    the end of a run); held within the exact ``[lo, hi]``."""
    n = sketch.count
    get = sketch.quantile_value
    if n <= 1:
        value = get(q)
    else:
        h = q * (n - 1)
        k = math.floor(h)
        below = get(k / (n - 1))
        above = get(min(k + 1, n - 1) / (n - 1)) if h > k else below
        value = below + (h - k) * (above - below)
    return min(max(value, lo), hi)


class _Bucket:
    """One time bucket of a tracked window: exact count, sum, min, max and a sketch."""

    __slots__ = ("count", "max", "min", "sketch", "total")

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.min = math.inf
        self.max = -math.inf
        self.sketch = _LogSketch()

    def add_many(self, v: _F64) -> None:
        self.count += int(v.size)
        self.total += float(v.sum())
        self.min = min(self.min, float(v.min()))
        self.max = max(self.max, float(v.max()))
        self.sketch.add_many(v)


class _WindowRing:
    """The last ``WINDOW_STEPS + 1`` buckets of one window length (see the module docstring)."""

    __slots__ = ("buckets", "since", "top", "width", "window_s")

    def __init__(self, window_s: float, since: float) -> None:
        self.window_s = window_s
        self.since = since  # samples after this time are all in the ring
        self.width = window_s / WINDOW_STEPS
        self.buckets: dict[int, _Bucket] = {}
        self.top = -(2**62)

    def add_many(self, t: _F64, v: _F64) -> None:
        keys = np.floor(t / self.width).astype(np.int64)
        top = int(keys.max())
        if top > self.top:
            self.top = top
            floor = top - WINDOW_STEPS
            for k in [k for k in self.buckets if k < floor]:
                del self.buckets[k]
        floor = self.top - WINDOW_STEPS
        for k in np.unique(keys).tolist():
            if k < floor:
                continue  # older than any window that can still be asked for
            sel = keys == k
            bucket = self.buckets.get(k)
            if bucket is None:
                bucket = self.buckets[k] = _Bucket()
            bucket.add_many(v[sel] if not sel.all() else v)

    def reduce(self, func: str, q: float | None, end_t: float) -> tuple[float | None, int]:
        k_end = math.floor(end_t / self.width)
        chosen = [
            b for k, b in self.buckets.items() if k_end - WINDOW_STEPS < k <= k_end and b.count
        ]
        n = sum(b.count for b in chosen)
        if n == 0:
            return None, 0
        if func in ("count", "sum"):
            return float(sum(b.total for b in chosen)) if func == "sum" else float(n), n
        if func == "mean":
            return sum(b.total for b in chosen) / n, n
        if func == "min":
            return min(b.min for b in chosen), n
        if func == "max":
            return max(b.max for b in chosen), n
        merged = _LogSketch()
        for b in chosen:
            merged.merge(b.sketch)
        lo = min(b.min for b in chosen)
        hi = max(b.max for b in chosen)
        return _sketch_quantile(merged, _quantile_of(func, q), lo, hi), n


def check_reduce_args(func: str, q: float | None, window_s: float | None) -> None:
    """Validate a reduction request.

    Args:
        func: one of ``REDUCE_FUNCS``.
        q: the quantile in [0, 1], required for ``"quantile"`` and ignored otherwise.
        window_s: window length in seconds (> 0), or None for the whole run.

    Raises:
        ValueError: unknown ``func``, missing or out-of-range ``q``, or ``window_s <= 0``.
    """
    if func not in REDUCE_FUNCS:
        raise ValueError(f"unknown reduction {func!r}; expected one of {sorted(REDUCE_FUNCS)}")
    if func == "quantile" and (q is None or not 0.0 <= q <= 1.0):
        raise ValueError(f"quantile needs q in [0, 1], got {q!r}")
    if window_s is not None and not window_s > 0:
        raise ValueError(f"window_s must be > 0, got {window_s!r}")


def _quantile_of(func: str, q: float | None) -> float:
    if func == "median":
        return 0.5
    assert q is not None  # checked by check_reduce_args
    return float(q)


class MetricAggregate:
    """Bounded running summary of one metric's samples (see the module docstring).

    Args:
        kind: the metric's kind; for ``COUNTER`` metrics ``reduce("count")`` is the sum of
            increments, for the others the number of samples.
        reservoir_size: at most this many ``(t, value)`` pairs are kept for quantiles (> 0).
        series_points: number of time buckets of the downsampled series (>= 2).
        seed: seed of the reservoir's random generators.
        initial_bucket_s: width of a bucket, in seconds, before any doubling (> 0).

    Raises:
        ValueError: a size or width out of range.
    """

    def __init__(
        self,
        kind: MetricKind,
        reservoir_size: int = 4096,
        series_points: int = 120,
        seed: int = 0,
        initial_bucket_s: float = 0.5,
        windows: Sequence[float] = (),
    ) -> None:
        if reservoir_size < 1:
            raise ValueError(f"reservoir_size must be >= 1, got {reservoir_size}")
        if series_points < 2:
            raise ValueError(f"series_points must be >= 2, got {series_points}")
        if not initial_bucket_s > 0:
            raise ValueError(f"initial_bucket_s must be > 0, got {initial_bucket_s}")
        self.kind = kind
        self.reservoir_size = reservoir_size
        self.series_points = series_points
        self._count = 0
        self._total = 0.0
        self._min = math.inf
        self._max = -math.inf
        self._last = math.nan
        self._last_t = -math.inf
        # Reservoir (Algorithm R): the first min(count, size) slots are filled.
        self._res_v: _F64 = np.empty(reservoir_size, dtype=np.float64)
        self._res_t: _F64 = np.empty(reservoir_size, dtype=np.float64)
        self._py_rng = random.Random(seed)
        self._np_rng = np.random.Generator(np.random.PCG64(seed))
        # Series buckets; bucket i covers [t0 + i*width, t0 + (i+1)*width).
        self._t0: float | None = None
        self._width = float(initial_bucket_s)
        self._used = 0  # buckets 0 .. _used-1 are in use (highest index seen + 1)
        self._b_count = np.zeros(series_points, dtype=np.int64)
        self._b_sum = np.zeros(series_points, dtype=np.float64)
        self._b_min = np.full(series_points, math.inf, dtype=np.float64)
        self._b_max = np.full(series_points, -math.inf, dtype=np.float64)
        # Whole-run sketch (quantiles beyond the reservoir) and tracked windows.
        self._sketch = _LogSketch()
        self._windows: dict[float, _WindowRing] = {}
        for w in windows:
            self.track_window(w)

    def track_window(self, window_s: float) -> None:
        """Track a window of ``window_s`` seconds from now on (see the module docstring).

        Raises:
            ValueError: ``window_s <= 0``.
        """
        if not window_s > 0:
            raise ValueError(f"window_s must be > 0, got {window_s!r}")
        if window_s not in self._windows:
            # Tracked from the next sample on: a window starting before then is answered the
            # old way (bucket-granular counts, reservoir quantiles) until the ring covers it.
            self._windows[float(window_s)] = _WindowRing(float(window_s), self._last_t)

    @property
    def windows(self) -> tuple[float, ...]:
        """The window lengths tracked, seconds."""
        return tuple(self._windows)

    # -- read-outs ---------------------------------------------------------------------

    @property
    def count(self) -> int:
        """Number of samples folded in."""
        return self._count

    @property
    def total(self) -> float:
        """Sum of all values (for a counter: the total count)."""
        return self._total

    @property
    def min(self) -> float:
        """Smallest value (``inf`` while empty)."""
        return self._min

    @property
    def max(self) -> float:
        """Largest value (``-inf`` while empty)."""
        return self._max

    @property
    def mean(self) -> float:
        """Arithmetic mean (NaN while empty)."""
        return self._total / self._count if self._count else math.nan

    @property
    def last(self) -> float:
        """Value of the sample with the latest time (NaN while empty)."""
        return self._last

    @property
    def last_t(self) -> float:
        """Time of the latest sample, Unix seconds (``-inf`` while empty)."""
        return self._last_t

    @property
    def series_start_t(self) -> float:
        """Start of the series' first bucket (the first sample's time), Unix seconds; NaN
        while empty."""
        return self._t0 if self._t0 is not None else math.nan

    @property
    def bucket_s(self) -> float:
        """Current width of a series bucket, seconds."""
        return self._width

    def quantile(self, q: float) -> float:
        """Estimate the ``q`` quantile (Hyndman & Fan type 7) from the reservoir.

        Args:
            q: in [0, 1].

        Returns:
            The estimate, exact while ``count <= reservoir_size``; NaN while empty.

        Raises:
            ValueError: ``q`` outside [0, 1].
        """
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"q must be in [0, 1], got {q!r}")
        filled = min(self._count, self.reservoir_size)
        if not filled:
            return math.nan
        if self._count > self.reservoir_size:
            return self._sketch_quantile(q)
        return float(np.quantile(self._res_v[:filled], q, method=QUANTILE_METHOD))

    def _sketch_quantile(self, q: float) -> float:
        return _sketch_quantile(self._sketch, q, self._min, self._max)

    def quantiles(self, qs: Sequence[float]) -> tuple[float, ...]:
        """Estimate several quantiles at once (one sort of the reservoir).

        Args:
            qs: quantiles, each in [0, 1].

        Returns:
            One estimate per ``q``, as ``quantile`` gives them; NaNs while empty.

        Raises:
            ValueError: a ``q`` outside [0, 1].
        """
        if any(not 0.0 <= q <= 1.0 for q in qs):
            raise ValueError(f"quantiles must be in [0, 1], got {list(qs)!r}")
        filled = min(self._count, self.reservoir_size)
        if not filled:
            return tuple(math.nan for _ in qs)
        if self._count > self.reservoir_size:
            return tuple(self._sketch_quantile(q) for q in qs)
        est = np.quantile(
            self._res_v[:filled], np.asarray(qs, dtype=np.float64), method=QUANTILE_METHOD
        )
        return tuple(float(x) for x in est)

    def series(self) -> tuple[tuple[float, ...], float]:
        """Return the downsampled series.

        Returns:
            ``(means, span_s)``: one mean per bucket from the first sample's bucket to the
            latest one, oldest first, at most ``series_points`` of them (a bucket that got no
            sample repeats the previous bucket's mean); ``span_s`` is ``len(means)`` times
            the bucket width, seconds.
        """
        n = self._used
        if not n:
            return (), 0.0
        counts = self._b_count[:n]
        sums = self._b_sum[:n]
        out: list[float] = []
        prev = math.nan
        for c, s in zip(counts.tolist(), sums.tolist(), strict=True):
            if c:
                prev = s / c
            out.append(prev)
        return tuple(out), n * self._width

    def series_filled(self) -> tuple[bool, ...]:
        """Which buckets of ``series`` got a sample (the others repeat the previous mean), so
        that a chart can draw a one-off value as a point and a pause as a gap (issue 14)."""
        return tuple(bool(c) for c in self._b_count[: self._used].tolist())

    # -- folding -----------------------------------------------------------------------

    def add(self, t: float, value: float) -> None:
        """Fold one sample in.

        Args:
            t: sample time, Unix seconds.
            value: sample value in the metric's unit.
        """
        k = self._count + 1
        self._count = k
        self._total += value
        if value < self._min:
            self._min = value
        if value > self._max:
            self._max = value
        if t >= self._last_t:
            self._last_t = t
            self._last = value
        size = self.reservoir_size
        if k <= size:
            self._res_v[k - 1] = value
            self._res_t[k - 1] = t
        else:
            j = self._py_rng.randrange(k)
            if j < size:
                self._res_v[j] = value
                self._res_t[j] = t
        one_t = np.array([t], dtype=np.float64)
        one_v = np.array([value], dtype=np.float64)
        self._sketch.add_many(one_v)
        for ring in self._windows.values():
            ring.add_many(one_t, one_v)
        i = self._bucket_index(t)
        self._b_count[i] += 1
        self._b_sum[i] += value
        if value < self._b_min[i]:
            self._b_min[i] = value
        if value > self._b_max[i]:
            self._b_max[i] = value

    def add_many(self, ts: Sequence[float] | _F64, values: Sequence[float] | _F64) -> None:
        """Fold a batch of samples in, vectorised.

        Args:
            ts: sample times, Unix seconds, shape ``(n,)``.
            values: sample values, shape ``(n,)``, in the metric's unit.

        Raises:
            ValueError: ``ts`` and ``values`` differ in length.
        """
        t = np.asarray(ts, dtype=np.float64)
        v = np.asarray(values, dtype=np.float64)
        if t.shape != v.shape or t.ndim != 1:
            raise ValueError(f"ts and values must be 1-d of one length, got {t.shape}, {v.shape}")
        n = int(v.size)
        if not n:
            return
        if n == 1:
            self.add(float(t[0]), float(v[0]))
            return
        start = self._count
        self._count = start + n
        self._total += float(v.sum())
        self._min = min(self._min, float(v.min()))
        self._max = max(self._max, float(v.max()))
        i_last = int(np.argmax(t[::-1]))  # latest time; among ties, the last in the batch
        t_last = float(t[n - 1 - i_last])
        if t_last >= self._last_t:
            self._last_t = t_last
            self._last = float(v[n - 1 - i_last])
        self._reservoir_many(start, t, v)
        self._buckets_many(t, v)
        self._sketch.add_many(v)
        for ring in self._windows.values():
            ring.add_many(t, v)

    def _reservoir_many(self, start: int, t: _F64, v: _F64) -> None:
        size = self.reservoir_size
        n = int(v.size)
        fill = max(0, min(n, size - start))
        if fill:
            self._res_v[start : start + fill] = v[:fill]
            self._res_t[start : start + fill] = t[:fill]
        if fill == n:
            return
        # Algorithm R for samples k = start+fill+1 .. start+n: slot j uniform in [0, k).
        tail_t, tail_v = t[fill:], v[fill:]
        k = np.arange(start + fill + 1, start + n + 1, dtype=np.float64)
        j = np.floor(self._np_rng.random(n - fill) * k).astype(np.int64)
        hit = np.flatnonzero(j < size)
        if not hit.size:
            return
        # Sequential semantics: where one slot is hit twice, the later sample wins, so take
        # each slot's last hit (its first occurrence in the reversed hits).
        slots_rev = j[hit][::-1]
        slots, first_rev = np.unique(slots_rev, return_index=True)
        winners = hit[hit.size - 1 - first_rev]
        self._res_v[slots] = tail_v[winners]
        self._res_t[slots] = tail_t[winners]

    def _buckets_many(self, t: _F64, v: _F64) -> None:
        if self._t0 is None:
            self._t0 = float(t[0])
        t_max = float(t.max())
        self._bucket_index(t_max)  # widen (merge) first so that every sample fits
        idx = np.floor((t - self._t0) / self._width).astype(np.int64)
        np.clip(idx, 0, self.series_points - 1, out=idx)
        points = self.series_points
        self._b_count += np.bincount(idx, minlength=points)
        self._b_sum += np.bincount(idx, weights=v, minlength=points)
        np.minimum.at(self._b_min, idx, v)
        np.maximum.at(self._b_max, idx, v)

    def _bucket_index(self, t: float) -> int:
        """Return the bucket of time ``t``, widening the buckets until it fits."""
        if self._t0 is None:
            self._t0 = t
        offset = t - self._t0
        if offset <= 0:
            i = 0
        else:
            i = int(offset // self._width)
            while i >= self.series_points:
                self._merge_pairs()
                i = int(offset // self._width)
        if i + 1 > self._used:
            self._used = i + 1
        return i

    def _merge_pairs(self) -> None:
        """Double the bucket width: bucket k becomes old buckets 2k and 2k+1."""
        points = self.series_points
        half = (points + 1) // 2

        def pairs(a: npt.NDArray[np.generic], empty: float) -> npt.NDArray[np.generic]:
            padded = np.concatenate([a, np.full(2 * half - points, empty, dtype=a.dtype)])
            return padded.reshape(half, 2)

        for arr, empty, reduce in (
            (self._b_count, 0, np.add.reduce),
            (self._b_sum, 0.0, np.add.reduce),
            (self._b_min, math.inf, np.minimum.reduce),
            (self._b_max, -math.inf, np.maximum.reduce),
        ):
            merged = reduce(pairs(arr, empty), axis=1)
            arr[:half] = merged
            arr[half:] = empty
        self._width *= 2.0
        self._used = (self._used + 1) // 2

    # -- reductions --------------------------------------------------------------------

    def reduce(
        self,
        func: str,
        q: float | None = None,
        window_s: float | None = None,
        end_t: float | None = None,
    ) -> tuple[float | None, int]:
        """Reduce the metric to one number.

        Args:
            func: ``"max"``, ``"min"``, ``"mean"``, ``"median"``, ``"quantile"``, ``"sum"``,
                ``"count"`` or ``"last"``. ``"count"`` of a ``COUNTER`` is the sum of its
                increments, of other kinds the number of samples.
            q: quantile in [0, 1], for ``"quantile"``.
            window_s: only the last ``window_s`` seconds (see the module docstring for the
                granularity), or None for the whole run.
            end_t: end of the window, Unix seconds; defaults to the latest sample's time.

        Returns:
            ``(value, n)``: ``n`` is the number of samples considered, ``value`` is None when
            ``n == 0``.

        Raises:
            ValueError: see ``check_reduce_args``.
        """
        check_reduce_args(func, q, window_s)
        if not self._count:
            return None, 0
        if window_s is None:
            return self._reduce_all(func, q)
        end = self._last_t if end_t is None else end_t
        ring = self._windows.get(float(window_s))
        if ring is not None and window_bounds(end, window_s)[0] > ring.since:
            if func == "last":
                start, _ = window_bounds(end, window_s)
                n = ring.reduce("count", None, end)[1]
                return (self._last, n) if n and self._last_t >= start else (None, 0)
            return ring.reduce(func, q, end)
        return self._reduce_window(func, q, window_s, end)

    def _reduce_all(self, func: str, q: float | None) -> tuple[float | None, int]:
        n = self._count
        if func == "count":
            return (self._total if self.kind is MetricKind.COUNTER else float(n)), n
        if func == "sum":
            return self._total, n
        if func == "min":
            return self._min, n
        if func == "max":
            return self._max, n
        if func == "mean":
            return self.mean, n
        if func == "last":
            return self._last, n
        return self.quantile(_quantile_of(func, q)), n

    def _reduce_window(
        self, func: str, q: float | None, window_s: float, end_t: float
    ) -> tuple[float | None, int]:
        start_t = end_t - window_s
        t0 = self._t0 if self._t0 is not None else 0.0
        used = self._used
        ends = t0 + (np.arange(1, used + 1, dtype=np.float64) * self._width)
        first = int(np.searchsorted(ends, start_t, side="right"))  # ends after the start
        stop = int(np.searchsorted(ends - self._width, end_t, side="right"))  # starts by end
        sel = slice(first, max(first, stop))
        counts = self._b_count[sel]
        n = int(counts.sum())
        if n == 0:
            return None, 0
        if func == "last":
            return (self._last, n) if self._last_t >= start_t else (None, 0)
        total = float(self._b_sum[sel].sum())
        if func == "count":
            return (total if self.kind is MetricKind.COUNTER else float(n)), n
        if func == "sum":
            return total, n
        if func == "mean":
            return total / n, n
        if func == "min":
            return float(self._b_min[sel].min()), n
        if func == "max":
            return float(self._b_max[sel].max()), n
        filled = min(self._count, self.reservoir_size)
        res_t = self._res_t[:filled]
        in_window = self._res_v[:filled][(res_t >= start_t) & (res_t <= end_t)]
        if not in_window.size:
            return None, 0
        qq = _quantile_of(func, q)
        return float(np.quantile(in_window, qq, method=QUANTILE_METHOD)), n
