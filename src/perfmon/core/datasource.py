"""``ArrayMetricSource``: a ``MetricSource`` over a run's full recorded data, exact.

The report evaluates gates over every recorded sample, not over the live state's bounded
aggregates; this module holds those samples as numpy arrays, one pair ``(t, values)`` per
metric, and reduces them exactly.

Quantiles use ``numpy.quantile(..., method="linear")``, which is Hyndman & Fan's definition 7
(R's and numpy's default): Hyndman, R. J. and Fan, Y. (1996), "Sample quantiles in statistical
packages", The American Statistician 50(4), 361-365.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from perfmon.core.labels import Selector, canonical, selector_matches, session_labels
from perfmon.core.model import MetricKind, Sample
from perfmon.core.stats import SessionGroup

POINTS_MAX = 512
"""``points`` bins a metric's samples into at most this many time bins (Theil-Sen is O(n^2))."""

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    FloatArray = npt.NDArray[np.float64]


class ArrayMetricSource:
    """A ``perfmon.core.gates.MetricSource`` over complete per-metric arrays.

    Args:
        data: metric name -> ``(kind, t, values)``: ``t`` a 1-D array of Unix seconds and
            ``values`` a 1-D array of the same length in the metric's base unit. Arrays that are
            not sorted by time are sorted (stably) on construction.
        now: the end of sliding windows, Unix seconds; default the largest ``t`` over all
            metrics (the moment the recording ends), so a metric that stopped reporting has no
            samples in a short window.
        session_ids: metric name -> 1-D int array of each sample's session id (same length
            as its ``values``), needed by ``session_values``.
        sessions: the run's sessions table, one mapping per session with at least ``id``,
            ``variant``, ``set_name``, ``workload``, ``params`` (a dict), ``warmup`` and
            ``status`` (``perfmon.engine.recorder.session_row``'s keys).

    Raises:
        ValueError: if an array is not 1-D, ``t`` and ``values`` differ in length, or a
            ``session_ids`` array differs in length from its metric's values.
    """

    def __init__(
        self,
        data: Mapping[str, tuple[MetricKind, FloatArray, FloatArray]],
        *,
        now: float | None = None,
        session_ids: Mapping[str, Any] | None = None,
        sessions: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        import numpy as np

        self._sids: dict[str, Any] = {}
        self._sessions = list(sessions)
        self._session_cache: dict[str, dict[int, float]] = {}
        self._match_cache: dict[Selector, Any] = {}
        self._data: dict[str, tuple[MetricKind, FloatArray, FloatArray]] = {}
        latest: float | None = None
        for metric, (kind, t, values) in data.items():
            t_arr = np.asarray(t, dtype=np.float64)
            v_arr = np.asarray(values, dtype=np.float64)
            if t_arr.ndim != 1 or v_arr.ndim != 1 or t_arr.shape != v_arr.shape:
                raise ValueError(
                    f"{metric}: t and values must be 1-D arrays of one length, "
                    f"got shapes {t_arr.shape} and {v_arr.shape}"
                )
            sid_arr = None
            if session_ids is not None and metric in session_ids:
                sid_arr = np.asarray(session_ids[metric], dtype=np.int64)
                if sid_arr.shape != v_arr.shape:
                    raise ValueError(
                        f"{metric}: session_ids has shape {sid_arr.shape}, values {v_arr.shape}"
                    )
            if t_arr.size > 1 and bool(np.any(np.diff(t_arr) < 0)):
                order = np.argsort(t_arr, kind="stable")
                t_arr, v_arr = t_arr[order], v_arr[order]
                if sid_arr is not None:
                    sid_arr = sid_arr[order]
            if sid_arr is not None:
                self._sids[metric] = sid_arr
            self._data[metric] = (MetricKind(kind), t_arr, v_arr)
            if t_arr.size:
                last = float(t_arr[-1])
                latest = last if latest is None else max(latest, last)
        self.now = now if now is not None else latest

    def with_sessions(self, sessions: Sequence[Mapping[str, Any]]) -> ArrayMetricSource:
        """This source's samples (shared, not copied) over another sessions table: its
        per-session questions (``session_values``, ``session_groups``, ...) then see only
        ``sessions`` (e.g. one host's, issue 16).

        Args:
            sessions: session rows, as for the constructor.
        """
        other = ArrayMetricSource({}, now=self.now, sessions=sessions)
        other._data, other._sids = self._data, self._sids
        return other

    @classmethod
    def from_samples(
        cls,
        samples: Iterable[Sample],
        *,
        now: float | None = None,
        sessions: Sequence[Mapping[str, Any]] = (),
    ) -> ArrayMetricSource:
        """Build a source from samples in any order.

        A metric's kind is the kind of its latest sample (a ``# TYPE`` line applies to the
        samples after it, see docs/protocol.md).

        Args:
            samples: the samples.
            now: see the class docstring.
            sessions: the sessions table, see the class docstring.
        """
        import numpy as np

        columns: dict[str, tuple[list[float], list[float]]] = {}
        sids: dict[str, list[int]] = {}
        kinds: dict[str, tuple[float, MetricKind]] = {}
        for s in samples:
            ts, vs = columns.setdefault(s.metric, ([], []))
            ts.append(s.t)
            vs.append(s.value)
            sids.setdefault(s.metric, []).append(s.session)
            prev = kinds.get(s.metric)
            if prev is None or s.t >= prev[0]:
                kinds[s.metric] = (s.t, s.kind)
        data = {
            m: (kinds[m][1], np.array(ts, dtype=np.float64), np.array(vs, dtype=np.float64))
            for m, (ts, vs) in columns.items()
        }
        session_ids = {m: np.array(ids, dtype=np.int64) for m, ids in sids.items()}
        return cls(data, now=now, session_ids=session_ids, sessions=sessions)

    @property
    def metric_names(self) -> tuple[str, ...]:
        """The metrics held, sorted by name."""
        return tuple(sorted(self._data))

    def kind(self, metric: str) -> MetricKind | None:
        """The metric's kind, or None if it has no samples."""
        entry = self._data.get(metric)
        if entry is None or entry[1].size == 0:
            return None
        return entry[0]

    def _selected(self, metric: str, where: Selector) -> tuple[FloatArray, FloatArray] | None:
        """The metric's ``(t, values)`` limited to samples whose session matches ``where``.

        A session's labels are its row's ``variant``, ``workload``, ``set_name`` (label
        ``set``) and ``params``; machine-wide samples (negative session ids) have none, so
        they are kept only when every matcher accepts the empty value (PromQL semantics).
        """
        import numpy as np

        entry = self._data.get(metric)
        if entry is None:
            return None
        _, t, v = entry
        if not where:
            return t, v
        key = canonical(where)
        ids = self._match_cache.get(key)
        if ids is None:
            ids = np.asarray(matching_sessions(self._sessions, key), dtype=np.int64)
            self._match_cache[key] = ids
        sids = self._sids.get(metric)
        if sids is None:
            return np.empty(0, dtype=np.float64), np.empty(0, dtype=np.float64)
        mask = np.isin(sids, ids)
        if selector_matches(key, {}):
            mask |= sids < 0
        return t[mask], v[mask]

    def values(
        self, metric: str, *, window_s: float | None = None, where: Selector = ()
    ) -> FloatArray:
        """The metric's values in time order, optionally only those of the window ending at
        ``now`` (``perfmon.core.aggregate.window_bounds``: the last ``window_s`` seconds, cut at
        steps of ``window_s / 32``, as the live state cuts them), and only those of sessions
        whose labels match ``where`` (``perfmon.core.labels``).

        Returns:
            A 1-D float array (empty when the metric is unknown).
        """
        import numpy as np

        selected = self._selected(metric, where)
        if selected is None:
            return np.empty(0, dtype=np.float64)
        t, v = selected
        if window_s is not None and self.now is not None:
            # The live state's window bounds, so live and end-of-run values agree.
            from perfmon.core.aggregate import window_bounds

            low, high = window_bounds(self.now, window_s)
            start = int(np.searchsorted(t, low, side="left"))
            stop = int(np.searchsorted(t, high, side="left"))
            return v[start:stop]
        return v

    def reduce(
        self,
        func: str,
        metric: str,
        *,
        q: float | None = None,
        window_s: float | None = None,
        where: Selector = (),
    ) -> tuple[float | None, int]:
        """Reduce one metric's samples exactly; see ``perfmon.core.gates.MetricSource``.

        Args:
            func: ``max``, ``min``, ``mean``, ``median``, ``quantile``, ``sum``, ``count``
                (sum of increments for a counter, else the number of samples) or ``last``
                (the value with the largest time).
            metric: metric name.
            q: quantile in [0, 1], required for ``quantile``; linear interpolation
                (Hyndman & Fan type 7).
            window_s: only the samples of the window ending at ``now`` (see ``values``).
            where: label matchers; only samples of matching sessions (see ``values``).

        Returns:
            ``(value, n)``, value None when ``n == 0``.

        Raises:
            ValueError: for an unknown ``func`` or a missing or out-of-range ``q``.
        """
        import numpy as np

        if func == "quantile" and (q is None or not 0.0 <= q <= 1.0):
            raise ValueError(f"quantile needs q in [0, 1], got {q!r}")
        v = self.values(metric, window_s=window_s, where=where)
        n = int(v.size)
        if func not in _FUNCS:
            raise ValueError(f"unknown reduction {func!r} (known: {', '.join(_FUNCS)})")
        if n == 0:
            return None, 0
        if func == "max":
            return float(np.max(v)), n
        if func == "min":
            return float(np.min(v)), n
        if func == "mean":
            return float(np.mean(v)), n
        if func == "median":
            return float(np.quantile(v, 0.5, method="linear")), n
        if func == "quantile":
            assert q is not None
            return float(np.quantile(v, q, method="linear")), n
        if func == "sum":
            return float(np.sum(v)), n
        if func == "count":
            if self._data[metric][0] is MetricKind.COUNTER:
                return float(np.sum(v)), n
            return float(n), n
        return float(v[-1]), n  # last

    # -- per-session values (statistical gates) ------------------------------------------------

    def _measured(self) -> list[Mapping[str, Any]]:
        rows = [r for r in self._sessions if not r.get("warmup")]
        return sorted(rows, key=lambda r: int(r["id"]))

    @staticmethod
    def _group(row: Mapping[str, Any]) -> SessionGroup:
        params = row.get("params") or {}
        return SessionGroup(
            str(row.get("set_name", "")),
            str(row.get("workload", "")),
            tuple((str(k), str(v)) for k, v in params.items()),
        )

    def session_groups(self) -> list[SessionGroup]:
        """Groups of the measured sessions in the sessions table; see ``MetricSource``."""
        return list(dict.fromkeys(self._group(r) for r in self._measured()))

    def finished_sessions(self, group: SessionGroup) -> int:
        """Measured sessions of ``group`` that finished OK; see ``MetricSource``."""
        return sum(
            1 for r in self._measured() if r.get("status") == "ok" and self._group(r) == group
        )

    def session_variants(self) -> list[str]:
        """Variants of the measured sessions in the sessions table; see ``MetricSource``."""
        return list(dict.fromkeys(str(r.get("variant", "")) for r in self._measured()))

    def _per_session(self, metric: str) -> dict[int, float]:
        """Session id -> the session's value of ``metric`` (last, sum or mean by kind)."""
        cached = self._session_cache.get(metric)
        if cached is not None:
            return cached
        import numpy as np

        out: dict[int, float] = {}
        entry = self._data.get(metric)
        sids = self._sids.get(metric)
        if entry is not None and sids is not None and sids.size:
            kind, _, v = entry
            uniq, inverse = np.unique(sids, return_inverse=True)
            if kind is MetricKind.VALUE:
                # Values are in time order, so the last index per session is its latest value.
                last = np.zeros(uniq.size, dtype=np.int64)
                np.maximum.at(last, inverse, np.arange(sids.size))
                vals = v[last]
            else:
                sums = np.bincount(inverse, weights=v, minlength=uniq.size).astype(np.float64)
                if kind is MetricKind.COUNTER:
                    vals = sums
                else:
                    vals = sums / np.bincount(inverse, minlength=uniq.size).astype(np.float64)
            out = dict(zip(uniq.tolist(), vals.tolist(), strict=True))
        self._session_cache[metric] = out
        return out

    def session_values(
        self, metric: str, variant: str | None, *, group: SessionGroup | None = None
    ) -> list[float]:
        """One value per measured session that finished OK; see ``MetricSource``.

        Exact: a ``value`` metric gives the session's latest value, a ``counter`` the sum of
        its increments, other kinds the mean of its samples.
        """
        per = self._per_session(metric)
        out: list[float] = []
        for row in self._measured():
            if row.get("status") != "ok":
                continue
            if variant is not None and row.get("variant") != variant:
                continue
            if group is not None and self._group(row) != group:
                continue
            value = per.get(int(row["id"]))
            if value is not None and not math.isnan(value):
                out.append(value)
        return out

    def points(
        self, metric: str, *, window_s: float | None = None, where: Selector = ()
    ) -> tuple[list[float], list[float]]:
        """The metric binned by time into at most ``POINTS_MAX`` means; see ``MetricSource``.

        Bins are of equal width over the samples' time span; empty bins are left out, and
        each bin's time is the mean time of its samples.
        """
        import numpy as np

        selected = self._selected(metric, where)
        if selected is None:
            return [], []
        t, v = selected
        if window_s is not None and self.now is not None:
            start = int(np.searchsorted(t, self.now - window_s, side="left"))
            t, v = t[start:], v[start:]
        if t.size <= POINTS_MAX:
            return t.tolist(), v.tolist()
        span = float(t[-1] - t[0])
        if span <= 0:
            return [float(t[0])], [float(np.mean(v))]
        idx = np.minimum(((t - t[0]) / span * POINTS_MAX).astype(np.int64), POINTS_MAX - 1)
        counts = np.bincount(idx, minlength=POINTS_MAX)
        keep = counts > 0
        tb = np.bincount(idx, weights=t, minlength=POINTS_MAX)[keep] / counts[keep]
        vb = np.bincount(idx, weights=v, minlength=POINTS_MAX)[keep] / counts[keep]
        return tb.tolist(), vb.tolist()


_FUNCS = ("max", "min", "mean", "median", "quantile", "sum", "count", "last")


def matching_sessions(sessions: Iterable[Mapping[str, Any]], where: Selector) -> list[int]:
    """The ids of the session rows whose labels match ``where``.

    A row's labels are its ``variant``, ``workload``, ``set_name`` (label ``set``) and
    ``params`` (``perfmon.core.labels.session_labels``).

    Args:
        sessions: session rows (``perfmon.engine.recorder.session_row``'s keys).
        where: label matchers (``perfmon.core.labels``).
    """
    key = canonical(where)
    return [
        int(r["id"])
        for r in sessions
        if selector_matches(
            key,
            session_labels(
                variant=str(r.get("variant", "")),
                workload=str(r.get("workload", "")),
                set_name=str(r.get("set_name", "")),
                params=(r.get("params") or {}).items(),
            ),
        )
    ]
