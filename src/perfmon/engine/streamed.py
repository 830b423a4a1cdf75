"""Exact gate reductions over recorded metrics too large to hold: passes over the batches.

The end-of-run verdict evaluates gates on the recording (``perfmon.engine.recorded``). A gate
that reduces a metric over the whole run (``p95(event_queue_depth) < 100``) needs every sample
of it; held in memory that is 28 bytes a sample (t, session, code, value): 14.5 GB over a
72-hour soak at 2,000 samples/s, so the report's memory would grow with the run (issue 13,
point 2). ``recorded.gate_columns`` holds the gated metrics whose samples fit in
``GATE_SAMPLES_HELD`` together, as before; the others are *streamed*: ``StreamedSource``
answers ``reduce``, ``points`` and ``kind`` for them by reading the recording again, batch by
batch, with the same selection ``ArrayMetricSource`` makes (measured sessions of the group,
machine-wide samples in the group's span, the window ending at ``now``, label matchers):

- ``max``, ``min``, ``mean``, ``sum``, ``count``, ``last``: one pass;
- ``median`` and ``quantile``: one pass to count, then exact radix selection of the one or
  two order statistics numpy's ``linear`` method interpolates between (Hyndman & Fan 1996,
  definition 7), 16 bits of the order-preserving 64-bit key per pass, the bucket collected
  once it holds at most ``BUCKET_COLLECT`` values (Knuth, TAOCP vol. 3, 5.3.3): at most 5
  passes, the same value as ``numpy.quantile`` to the last bit;
- ``points`` (trends): one pass for the time span, one to bin.

Memory: one batch, a 65,536-bin histogram and at most ``BUCKET_COLLECT`` values, whatever the
number of samples. Sums and means add batch by batch, so they may differ from numpy's pairwise
sum in the last bits. Each answer is cached: a gate read twice costs its passes once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from perfmon.core.aggregate import window_bounds
from perfmon.core.datasource import POINTS_MAX, ArrayMetricSource, matching_sessions
from perfmon.core.labels import Selector, canonical, selector_matches
from perfmon.core.model import SYSTEM_SESSION, MetricKind

__all__ = [
    "BUCKET_COLLECT",
    "StreamedSource",
    "count_samples",
    "from_key",
    "numpy_lerp",
    "order_keys",
    "select_ranks",
]

BUCKET_COLLECT = 1 << 16
"""A radix bucket of at most this many values is collected and sorted (0.5 MiB)."""

_SIGN = np.uint64(1 << 63)

Batches = Callable[[], Iterable[pa.RecordBatch]]
"""Returns a fresh iterator of ``SAMPLES_SCHEMA`` batches (``RunData.batches``)."""


def count_samples(
    batches: Iterable[pa.RecordBatch], metrics: Collection[str]
) -> tuple[dict[str, int], dict[str, MetricKind]]:
    """Samples per metric, and each metric's kind (that of its sample with the largest t,
    ties: the later recorded), reading only the ``metric``, ``kind`` and ``t`` columns.

    Args:
        batches: ``SAMPLES_SCHEMA`` batches.
        metrics: the names to count.

    Returns:
        ``(counts, kinds)`` over the names that have samples.
    """
    counts: dict[str, int] = {}
    latest: dict[str, tuple[float, str]] = {}
    for b in batches:
        if not b.num_rows:
            continue
        mcol, kcol = b.column("metric"), b.column("kind")
        names = [str(x) for x in mcol.dictionary.to_pylist()]
        wanted = [i for i, n in enumerate(names) if n in metrics]
        if not wanted:
            continue
        idx = mcol.indices.to_numpy(zero_copy_only=False)
        per = np.bincount(idx, minlength=len(names))
        t = b.column("t").to_numpy()
        kinds = [str(x) for x in kcol.dictionary.to_pylist()]
        kidx = kcol.indices.to_numpy(zero_copy_only=False)
        for i in wanted:
            if not per[i]:
                continue
            counts[names[i]] = counts.get(names[i], 0) + int(per[i])
            rows = np.flatnonzero(idx == i)
            j = int(rows[np.flatnonzero(t[rows] == t[rows].max())[-1]])
            prev = latest.get(names[i])
            if prev is None or float(t[j]) >= prev[0]:
                latest[names[i]] = (float(t[j]), kinds[int(kidx[j])])
    return counts, {m: MetricKind(k) for m, (_, k) in latest.items()}


def order_keys(v: Any) -> Any:
    """Map finite float64 values to uint64 keys with the same order (IEEE 754 total order:
    flip every bit of negatives, the sign bit of the rest); the radix selections here and in
    ``perfmon.engine.recorded.metric_summaries`` work on these."""
    u = np.ascontiguousarray(v, dtype=np.float64).view(np.uint64)
    return np.where(u & _SIGN, ~u, u | _SIGN)


def from_key(k: int) -> float:
    """The float64 an ``order_keys`` key stands for."""
    u = np.uint64(k)
    bits = u & ~_SIGN if u & _SIGN else ~u
    return float(np.array([bits], dtype=np.uint64).view(np.float64)[0])


def select_ranks(values: Callable[[], Iterable[Any]], ranks: Collection[int]) -> dict[int, float]:
    """The values of the given 0-based ranks in ascending order, exactly, in bounded memory.

    Radix selection over order-preserving 64-bit keys (Knuth, TAOCP vol. 3, 5.3.3): each pass
    histograms the next 16 bits of the keys under a rank's known prefix, or, once its bucket
    holds at most ``BUCKET_COLLECT`` values, collects and sorts that bucket.

    Args:
        values: returns a fresh iterator of 1-D float64 arrays (the values, in any order and
            chunking; every call the same values). They must not contain NaN.
        ranks: ranks in ``[0, n)`` where n is the number of values.

    Returns:
        rank -> value.

    Raises:
        ValueError: if a rank is out of range.
    """
    state = {r: [0, 0, r, -1] for r in ranks}  # prefix, bits known, rank within, bucket size
    found: dict[int, float] = {}
    while len(found) < len(state):
        pending = {r: s for r, s in state.items() if r not in found}
        hists: dict[tuple[int, int], Any] = {}
        collect: dict[tuple[int, int], list[Any]] = {}
        for s in pending.values():
            key = (s[0], s[1])
            if 0 <= s[3] <= BUCKET_COLLECT:
                collect.setdefault(key, [])
            else:
                hists.setdefault(key, np.zeros(1 << 16, dtype=np.int64))
        for v in values():
            if not len(v):
                continue
            keys = order_keys(v)
            for prefix, bits in (*hists, *collect):
                k = keys[(keys >> np.uint64(64 - bits)) == np.uint64(prefix)] if bits else keys
                if not k.size:
                    continue
                if (prefix, bits) in collect:
                    collect[(prefix, bits)].append(k)
                else:
                    digit = ((k >> np.uint64(48 - bits)) & np.uint64(0xFFFF)).astype(np.int64)
                    hists[(prefix, bits)] += np.bincount(digit, minlength=1 << 16)
        for r, s in pending.items():
            prefix, bits, within = s[0], s[1], s[2]
            if (prefix, bits) in collect:
                ks = np.sort(np.concatenate(collect[(prefix, bits)] or [np.empty(0, np.uint64)]))
                if not 0 <= within < ks.size:
                    raise ValueError(f"rank {r} out of range")
                found[r] = from_key(int(ks[within]))
                continue
            cum = np.cumsum(hists[(prefix, bits)])
            if not 0 <= within < int(cum[-1]):
                raise ValueError(f"rank {r} out of range")
            digit = int(np.searchsorted(cum, within, side="right"))
            below = int(cum[digit - 1]) if digit else 0
            size = int(hists[(prefix, bits)][digit])
            s[:] = [(prefix << 16) | digit, bits + 16, within - below, size]
            if bits + 16 == 64:
                found[r] = from_key(s[0])
    return found


def numpy_lerp(a: float, b: float, g: float) -> float:
    """numpy's ``_lerp``, as ``numpy.quantile(method="linear")`` and ``numpy.percentile``
    interpolate (exact at both ends)."""
    d = b - a
    return float(b - d * (1 - g)) if g >= 0.5 else float(a + d * g)


class StreamedSource:
    """A ``MetricSource`` that answers for some metrics by passes over the recording.

    Every question about a metric not in ``streamed`` goes to ``base``; so do the
    per-session questions (``session_values`` and the groups), which ``base`` answers from
    one folded value per session. For the streamed metrics, ``reduce``, ``points`` and
    ``kind`` select the samples as ``perfmon.engine.recorded.source_from_table`` and
    ``ArrayMetricSource`` would, and compute the same values (see the module docstring).

    Args:
        base: the source over the held metrics (``recorded.source_from_table``).
        batches: returns a fresh iterator over the run's ``SAMPLES_SCHEMA`` batches.
        streamed: metric name -> its kind (``count_samples``).
        sessions: the sessions table (``session_row`` dicts) of the run.
        keep_sessions: only samples of these sessions (None: every measured session).
        system_span: machine-wide samples only within ``(start, end)``, Unix seconds.
    """

    def __init__(
        self,
        base: ArrayMetricSource,
        batches: Batches,
        streamed: Mapping[str, MetricKind],
        sessions: Sequence[Mapping[str, Any]],
        *,
        keep_sessions: Collection[int] | None = None,
        system_span: tuple[float, float] | None = None,
    ) -> None:
        self._base = base
        self._batches = batches
        self._streamed = dict(streamed)
        self._sessions = list(sessions)
        self.now = base.now
        excluded = [int(s["id"]) for s in sessions if s.get("warmup") or s.get("status") == "noisy"]
        self._exclude = np.asarray(sorted(excluded), dtype=np.int64)
        self._keep = (
            None if keep_sessions is None else np.asarray(sorted(keep_sessions), dtype=np.int64)
        )
        self._span = system_span
        self._cache: dict[tuple[Any, ...], Any] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._base, name)

    # -- selection ----------------------------------------------------------------------

    def _matching(self, where: Selector) -> tuple[Any, bool]:
        """Session ids whose labels match ``where``, and whether machine-wide samples do."""
        ids = matching_sessions(self._sessions, where)
        return np.asarray(sorted(ids), dtype=np.int64), selector_matches(canonical(where), {})

    def _scan(
        self, metric: str, t_range: tuple[float, float] | None, where: Selector
    ) -> Iterator[tuple[Any, Any]]:
        """``(t, values)`` of the selected samples of ``metric``, batch by batch, in recording
        order; ``t_range``: ``[low, high)`` in Unix seconds."""
        matching = self._matching(where) if where else None
        for b in self._batches():
            if not b.num_rows:
                continue
            mcol = b.column("metric")
            names = [str(x) for x in mcol.dictionary.to_pylist()]
            if metric not in names:
                continue
            mask = mcol.indices.to_numpy(zero_copy_only=False) == names.index(metric)
            if not mask.any():
                continue
            sess = b.column("session").to_numpy().astype(np.int64)
            t = b.column("t").to_numpy()
            mask &= ~np.isin(sess, self._exclude)
            system = sess == SYSTEM_SESSION
            if self._keep is not None:
                mask &= np.isin(sess, self._keep) | system
            if self._span is not None:
                mask &= ~system | ((t >= self._span[0]) & (t <= self._span[1]))
            if matching is not None:
                ids, with_system = matching
                sel = np.isin(sess, ids)
                if with_system:
                    sel |= sess < 0
                mask &= sel
            if t_range is not None:
                mask &= (t >= t_range[0]) & (t < t_range[1])
            if mask.any():
                yield t[mask], b.column("value").to_numpy()[mask]

    # -- the MetricSource protocol ----------------------------------------------------------

    def kind(self, metric: str) -> MetricKind | None:
        """The metric's kind (of its latest sample); see ``MetricSource``."""
        if metric in self._streamed:
            return self._streamed[metric]
        kind: MetricKind | None = self._base.kind(metric)
        return kind

    def reduce(
        self,
        func: str,
        metric: str,
        *,
        q: float | None = None,
        window_s: float | None = None,
        where: Selector = (),
    ) -> tuple[float | None, int]:
        """As ``ArrayMetricSource.reduce``, by passes over the recording for a streamed
        metric.

        Raises:
            ValueError: for an unknown ``func`` or a missing or out-of-range ``q``.
        """
        if metric not in self._streamed:
            result: tuple[float | None, int] = self._base.reduce(
                func, metric, q=q, window_s=window_s, where=where
            )
            return result
        if func == "quantile" and (q is None or not 0.0 <= q <= 1.0):
            raise ValueError(f"quantile needs q in [0, 1], got {q!r}")
        if func not in ("max", "min", "mean", "median", "quantile", "sum", "count", "last"):
            raise ValueError(f"unknown reduction {func!r}")
        key = ("reduce", func, metric, q, window_s, canonical(where))
        if key not in self._cache:
            self._cache[key] = self._reduce(func, metric, q, window_s, where)
        cached: tuple[float | None, int] = self._cache[key]
        return cached

    def _window(self, window_s: float | None) -> tuple[float, float] | None:
        if window_s is None or self.now is None:
            return None
        return window_bounds(self.now, window_s)

    def _reduce(
        self, func: str, metric: str, q: float | None, window_s: float | None, where: Selector
    ) -> tuple[float | None, int]:
        t_range = self._window(window_s)
        n, total, nan = 0, 0.0, False
        lo, hi = math.inf, -math.inf
        last_t, last_v = -math.inf, math.nan
        for t, v in self._scan(metric, t_range, where):
            n += int(v.size)
            total += float(np.sum(v))
            if np.isnan(v).any():
                nan = True
            else:
                lo, hi = min(lo, float(v.min())), max(hi, float(v.max()))
            j = int(np.flatnonzero(t == t.max())[-1])
            if float(t[j]) >= last_t:
                last_t, last_v = float(t[j]), float(v[j])
        if n == 0:
            return None, 0
        if func == "last":
            return last_v, n
        if func == "count":
            return (total if self._streamed[metric] is MetricKind.COUNTER else float(n)), n
        if func == "sum":
            return total, n
        if nan:  # numpy propagates NaN through max, min, mean and quantiles
            return math.nan, n
        if func == "max":
            return hi, n
        if func == "min":
            return lo, n
        if func == "mean":
            return total / n, n
        qq = 0.5 if func == "median" else float(q)  # type: ignore[arg-type]
        vi = (n - 1) * qq
        k = math.floor(vi)
        k2 = min(k + 1, n - 1)
        found = select_ranks(lambda: (v for _, v in self._scan(metric, t_range, where)), {k, k2})
        return numpy_lerp(found[k], found[k2], vi - k), n

    def points(
        self, metric: str, *, window_s: float | None = None, where: Selector = ()
    ) -> tuple[list[float], list[float]]:
        """As ``ArrayMetricSource.points``: the metric binned by time into at most
        ``POINTS_MAX`` means (two passes for a streamed metric)."""
        if metric not in self._streamed:
            pts: tuple[list[float], list[float]] = self._base.points(
                metric, window_s=window_s, where=where
            )
            return pts
        key = ("points", metric, window_s, canonical(where))
        if key not in self._cache:
            self._cache[key] = self._points(metric, window_s, where)
        cached: tuple[list[float], list[float]] = self._cache[key]
        return cached

    def _points(
        self, metric: str, window_s: float | None, where: Selector
    ) -> tuple[list[float], list[float]]:
        t_range = None
        if window_s is not None and self.now is not None:
            t_range = (self.now - window_s, math.inf)
        n, t0, t1 = 0, math.inf, -math.inf
        for t, _ in self._scan(metric, t_range, where):
            n += int(t.size)
            t0, t1 = min(t0, float(t.min())), max(t1, float(t.max()))
        if n == 0:
            return [], []
        if n <= POINTS_MAX:
            parts = list(self._scan(metric, t_range, where))
            ts = np.concatenate([p[0] for p in parts])
            vs = np.concatenate([p[1] for p in parts])
            order = np.argsort(ts, kind="stable")
            return ts[order].tolist(), vs[order].tolist()
        span = t1 - t0
        if span <= 0:
            total = sum(float(np.sum(v)) for _, v in self._scan(metric, t_range, where))
            return [t0], [total / n]
        counts = np.zeros(POINTS_MAX)
        tsum = np.zeros(POINTS_MAX)
        vsum = np.zeros(POINTS_MAX)
        for t, v in self._scan(metric, t_range, where):
            idx = np.minimum(((t - t0) / span * POINTS_MAX).astype(np.int64), POINTS_MAX - 1)
            counts += np.bincount(idx, minlength=POINTS_MAX)
            tsum += np.bincount(idx, weights=t, minlength=POINTS_MAX)
            vsum += np.bincount(idx, weights=v, minlength=POINTS_MAX)
        keep = counts > 0
        return (tsum[keep] / counts[keep]).tolist(), (vsum[keep] / counts[keep]).tolist()
