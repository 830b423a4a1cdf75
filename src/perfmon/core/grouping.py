"""``GroupedAggregates``: one bounded aggregate per (metric, a session's label values).

The live state (``perfmon.core.live.LiveState``) pools every session's samples of a metric
into one ``MetricAggregate``. Two readers want them per label values as well, and both use
this one machinery:

- the metrics panel's split by one label (``LiveState.set_split``, issue 11): rows
  ``(metric, ((label, value),))``, while a viewer shows a split;
- the Prometheus endpoint (``LiveState.track_groups``, issue 16 point 5): rows
  ``(metric, (("workload", w), ("variant", v), ("set", s)))``, while ``--metrics-addr`` is on.

Neither exists unless asked for, so the ingest path pays for them only while they are used.
On the ingest path (``queue``) a batch's sessions are mapped to label-value ids and its metric
names to metric ids, and the arrays are queued; a few times a second (at each snapshot,
``flush``) the queued samples are mapped to rows with a few vectorised operations and one
stable radix sort, and each row is folded with one ``MetricAggregate.add_many``. Folding per
batch would cost one ``add_many`` per (row, batch), about as much again as the pooled fold.

Bounds: at most ``max_rows`` rows, plus those of the ``keep`` metrics (first come, first
kept; the samples of further rows are counted in ``samples_dropped`` and their distinct rows
in ``rows_dropped``, exactly up to ``ROWS_DROPPED_EXACT``); the label values of the latest
``SESSIONS_KEPT`` sessions (samples arrive while a session runs, so only recent ones matter);
one interned label-value tuple per distinct value (bounded by the campaign: its workloads,
variants, sets and matrix values).
A row's summary is rebuilt only when the row got samples since the last read (``summaries``).
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import numpy.typing as npt

from perfmon.core.aggregate import MetricAggregate
from perfmon.core.model import MetricKind, SessionSpec
from perfmon.core.snapshot import MetricSummary

__all__ = [
    "PENDING_MAX",
    "ROWS_DROPPED_EXACT",
    "SESSIONS_KEPT",
    "GroupedAggregates",
    "Labels",
]

Labels = tuple[tuple[str, str], ...]
"""A row's label values, ``(("variant", "candidate"),)``, in a fixed label order."""

PENDING_MAX = 1 << 18
"""Samples queued before they are folded without waiting for a snapshot."""

SESSIONS_KEPT = 65_536
"""Sessions whose label values are kept (the latest registered)."""

ROWS_DROPPED_EXACT = 100_000
"""Distinct rows refused by the row cap are counted exactly up to this many."""

_Pending = tuple[
    int | npt.NDArray[np.int64],  # the label-value id, or one per sample
    list[int],  # the batch's metric ids, by key
    npt.NDArray[np.int32],  # keys
    npt.NDArray[np.float64],  # times
    npt.NDArray[np.float64],  # values
]


class GroupedAggregates:
    """Bounded aggregates of a run's samples per (metric, session label values).

    Args:
        labels_of: a session's label values (``Labels``), or None for a session that has
            none (it is not grouped).
        kinds: the live state's metric kinds (read when a row is created: a row's kind is
            its metric's, the kind of the metric's first sample).
        max_rows: most rows kept (> 0).
        reservoir_size: each row's reservoir for quantiles (exact below it, DDSketch
            estimates beyond: ``perfmon.core.aggregate``).
        series_points: each row's number of time buckets (>= 2).
        since_t: from when the rows count samples, Unix seconds.
        keep: metrics whose rows are kept beyond ``max_rows`` (the gates' metrics and
            perfmon's own: a flood of other names cannot push them out; bounded by the
            campaign).
        skip: metrics never grouped.

    Raises:
        ValueError: ``max_rows < 1`` (and ``MetricAggregate``'s errors when a row is made).
    """

    def __init__(
        self,
        labels_of: Callable[[SessionSpec], Labels | None],
        kinds: Mapping[str, MetricKind],
        *,
        max_rows: int,
        reservoir_size: int,
        series_points: int,
        since_t: float,
        keep: frozenset[str] = frozenset(),
        skip: frozenset[str] = frozenset(),
    ) -> None:
        if max_rows < 1:
            raise ValueError(f"max_rows must be >= 1, got {max_rows}")
        self._labels_of = labels_of
        self._kinds = kinds
        self.max_rows = max_rows
        self.reservoir_size = reservoir_size
        self.series_points = series_points
        self.since_t = float(since_t)
        self._keep = keep
        self._skip = skip
        self.rows: dict[tuple[str, Labels], MetricAggregate] = {}
        """The rows: (metric, label values) -> aggregate."""
        self.samples_dropped = 0
        """Samples not folded because ``max_rows`` rows were full."""
        self.rows_dropped = 0
        """Distinct rows refused by the cap (exact up to ``ROWS_DROPPED_EXACT``)."""
        self.rows_dropped_capped = False
        """True once more than ``ROWS_DROPPED_EXACT`` distinct rows were refused."""
        self.queue_s = 0.0
        """Seconds (``time.perf_counter``) spent queueing samples: the ingest path's share."""
        self.flush_s = 0.0
        """Seconds spent folding queued samples into rows (at each snapshot, in the thread
        that takes it, or on the ingest path when ``PENDING_MAX`` samples are queued)."""
        self._session_vid: dict[int, int] = {}  # session -> label-value id (the latest)
        self._value_ids: dict[Labels, int] = {}  # label values -> id (interned)
        self._values: list[Labels] = []  # id -> label values
        self._metric_ids: dict[str, int] = {}
        self._pending: list[_Pending] = []
        self._pending_n = 0
        self._refused: set[tuple[int, int]] = set()  # (metric id, value id) refused
        self._dirty: set[tuple[str, Labels]] = set()  # rows folded since their summary
        self._summaries: dict[tuple[str, Labels], MetricSummary] = {}

    def note_session(self, spec: SessionSpec) -> None:
        """Remember a session's label values (a session without them is not grouped)."""
        labels = self._labels_of(spec)
        if labels is None:
            return
        vid = self._value_ids.get(labels)
        if vid is None:
            vid = self._value_ids[labels] = len(self._values)
            self._values.append(labels)
        kept = self._session_vid
        kept[spec.id] = vid
        while len(kept) > SESSIONS_KEPT:
            del kept[next(iter(kept))]

    def queue(
        self,
        names: Sequence[str],
        sessions: npt.NDArray[np.int64],
        keys: npt.NDArray[np.int32],
        ts: npt.NDArray[np.float64],
        vs: npt.NDArray[np.float64],
        one_session: bool,
    ) -> None:
        """Queue measured samples (the ingest path): folded by ``flush``.

        Args:
            names: the batch's metric names (``keys`` index them).
            sessions / keys / ts / vs: per sample, its session id, metric key, time (Unix
                seconds) and value; equal lengths.
            one_session: True when every sample is of ``sessions[0]``.
        """
        t0 = time.perf_counter()
        known = self._session_vid
        vid: int | npt.NDArray[np.int64]
        if one_session:
            found = known.get(int(sessions[0]))
            if found is None:
                self.queue_s += time.perf_counter() - t0
                return
            vid = found  # expanded at the flush
        else:
            uniq, inverse = np.unique(sessions, return_inverse=True)
            per = np.array([known.get(s, -1) for s in uniq.tolist()], dtype=np.int64)
            vid = per[inverse]
        metric_ids = self._metric_ids
        skip = self._skip
        mid = [-1 if n in skip else metric_ids.setdefault(n, len(metric_ids)) for n in names]
        self._pending.append((vid, mid, keys, ts, vs))
        self._pending_n += len(keys)
        if self._pending_n >= PENDING_MAX:
            t1 = time.perf_counter()
            self._flush()
            self.flush_s += time.perf_counter() - t1
            t0 += time.perf_counter() - t1
        self.queue_s += time.perf_counter() - t0

    def flush(self) -> None:
        """Fold the queued samples into their rows; within a row, in arrival order."""
        if self._pending:
            t0 = time.perf_counter()
            self._flush()
            self.flush_s += time.perf_counter() - t0

    @property
    def work_s(self) -> float:
        """Seconds spent queueing and folding: what the rows cost in all."""
        return self.queue_s + self.flush_s

    def _flush(self) -> None:
        pending = self._pending
        if not pending:
            return
        self._pending = []
        self._pending_n = 0
        lengths = np.array([len(p[2]) for p in pending], dtype=np.int64)
        if all(isinstance(p[0], int) for p in pending):
            vid = np.repeat(np.array([p[0] for p in pending], dtype=np.int64), lengths)
        else:
            vid = np.concatenate(
                [
                    np.full(len(p[2]), p[0], np.int64) if isinstance(p[0], int) else p[0]
                    for p in pending
                ]
            )
        # Each batch's keys index its own names: offset them into one table of metric ids.
        table = np.array([m for p in pending for m in p[1]], dtype=np.int64)
        starts = np.cumsum([0] + [len(p[1]) for p in pending[:-1]], dtype=np.int64)
        keys = np.concatenate([p[2] for p in pending]).astype(np.int64)
        mid = table[keys + np.repeat(starts, lengths)]
        ts = np.concatenate([p[3] for p in pending])
        vs = np.concatenate([p[4] for p in pending])
        keep = (vid >= 0) & (mid >= 0)
        if not keep.all():
            vid, mid, ts, vs = vid[keep], mid[keep], ts[keep], vs[keep]
        if not len(vid):
            return
        n_metrics = max(1, len(self._metric_ids))
        row = vid * n_metrics + mid
        names = list(self._metric_ids)
        counts = np.bincount(row)
        present = np.flatnonzero(counts)
        # A stable sort keeps arrival order within a row; on 16-bit keys numpy's stable sort
        # is a radix sort, linear in the samples (the usual case: few metrics and values).
        small = row.astype(np.uint16) if len(counts) <= 1 << 16 else row
        order = np.argsort(small, kind="stable")
        ts, vs = ts[order], vs[order]
        ends = np.cumsum(counts[present]).tolist()
        for r, end, n in zip(present.tolist(), ends, counts[present].tolist(), strict=True):
            v, m = divmod(r, n_metrics)
            self._fold_one(m, v, names[m], ts[end - n : end], vs[end - n : end])

    def _fold_one(
        self,
        mid: int,
        vid: int,
        name: str,
        ts: npt.NDArray[np.float64],
        vs: npt.NDArray[np.float64],
    ) -> None:
        key = (name, self._values[vid])
        agg = self.rows.get(key)
        if agg is None:
            if len(self.rows) >= self.max_rows and name not in self._keep:
                self.samples_dropped += int(ts.size)
                self._count_refused(mid, vid)
                return
            agg = self.rows[key] = MetricAggregate(
                self._kinds[name],
                reservoir_size=self.reservoir_size,
                series_points=self.series_points,
                seed=zlib.crc32("\0".join((name, *(v for _, v in key[1]))).encode()),
            )
        agg.add_many(ts, vs)
        self._dirty.add(key)

    def _count_refused(self, mid: int, vid: int) -> None:
        if self.rows_dropped_capped or (mid, vid) in self._refused:
            return
        if len(self._refused) >= ROWS_DROPPED_EXACT:
            self.rows_dropped_capped = True
            self._refused.clear()  # the count stays; the memory goes
            return
        self._refused.add((mid, vid))
        self.rows_dropped += 1

    def summaries(
        self,
        summarise: Callable[[str, MetricAggregate, Labels], MetricSummary],
        keys: Iterable[tuple[str, Labels]] | None = None,
    ) -> tuple[MetricSummary, ...]:
        """The rows' summaries (after a ``flush``), each rebuilt only if its row was folded
        since it was last built.

        Args:
            summarise: builds one row's summary from its metric, aggregate and labels.
            keys: the rows wanted, in order (default every row, sorted by metric then label
                values).
        """
        self.flush()
        cache, dirty = self._summaries, self._dirty
        for key in dirty:
            cache.pop(key, None)
        dirty.clear()
        out = []
        for key in sorted(self.rows) if keys is None else keys:
            summary = cache.get(key)
            if summary is None:
                summary = cache[key] = summarise(key[0], self.rows[key], key[1])
            out.append(summary)
        return tuple(out)
