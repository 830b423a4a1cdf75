"""``ArrayMetricSource``: a ``MetricSource`` over a run's full recorded data, exact.

The report evaluates gates over every recorded sample, not over the live state's bounded
aggregates; this module holds those samples as numpy arrays, one pair ``(t, values)`` per
metric, and reduces them exactly.

Quantiles use ``numpy.quantile(..., method="linear")``, which is Hyndman & Fan's definition 7
(R's and numpy's default): Hyndman, R. J. and Fan, Y. (1996), "Sample quantiles in statistical
packages", The American Statistician 50(4), 361-365.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from perfmon.core.model import MetricKind, Sample

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

    Raises:
        ValueError: if an array is not 1-D or ``t`` and ``values`` differ in length.
    """

    def __init__(
        self,
        data: Mapping[str, tuple[MetricKind, FloatArray, FloatArray]],
        *,
        now: float | None = None,
    ) -> None:
        import numpy as np

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
            if t_arr.size > 1 and bool(np.any(np.diff(t_arr) < 0)):
                order = np.argsort(t_arr, kind="stable")
                t_arr, v_arr = t_arr[order], v_arr[order]
            self._data[metric] = (MetricKind(kind), t_arr, v_arr)
            if t_arr.size:
                last = float(t_arr[-1])
                latest = last if latest is None else max(latest, last)
        self.now = now if now is not None else latest

    @classmethod
    def from_samples(
        cls, samples: Iterable[Sample], *, now: float | None = None
    ) -> ArrayMetricSource:
        """Build a source from samples in any order.

        A metric's kind is the kind of its latest sample (a ``# TYPE`` line applies to the
        samples after it, see docs/protocol.md).

        Args:
            samples: the samples.
            now: see the class docstring.
        """
        import numpy as np

        columns: dict[str, tuple[list[float], list[float]]] = {}
        kinds: dict[str, tuple[float, MetricKind]] = {}
        for s in samples:
            ts, vs = columns.setdefault(s.metric, ([], []))
            ts.append(s.t)
            vs.append(s.value)
            prev = kinds.get(s.metric)
            if prev is None or s.t >= prev[0]:
                kinds[s.metric] = (s.t, s.kind)
        data = {
            m: (kinds[m][1], np.array(ts, dtype=np.float64), np.array(vs, dtype=np.float64))
            for m, (ts, vs) in columns.items()
        }
        return cls(data, now=now)

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

    def values(self, metric: str, *, window_s: float | None = None) -> FloatArray:
        """The metric's values in time order, optionally only those with ``t >= now - window_s``.

        Returns:
            A 1-D float array (empty when the metric is unknown).
        """
        import numpy as np

        entry = self._data.get(metric)
        if entry is None:
            return np.empty(0, dtype=np.float64)
        _, t, v = entry
        if window_s is not None and self.now is not None:
            start = int(np.searchsorted(t, self.now - window_s, side="left"))
            return v[start:]
        return v

    def reduce(
        self, func: str, metric: str, *, q: float | None = None, window_s: float | None = None
    ) -> tuple[float | None, int]:
        """Reduce one metric's samples exactly; see ``perfmon.core.gates.MetricSource``.

        Args:
            func: ``max``, ``min``, ``mean``, ``median``, ``quantile``, ``sum``, ``count``
                (sum of increments for a counter, else the number of samples) or ``last``
                (the value with the largest time).
            metric: metric name.
            q: quantile in [0, 1], required for ``quantile``; linear interpolation
                (Hyndman & Fan type 7).
            window_s: only samples with ``t >= now - window_s``.

        Returns:
            ``(value, n)``, value None when ``n == 0``.

        Raises:
            ValueError: for an unknown ``func`` or a missing or out-of-range ``q``.
        """
        import numpy as np

        if func == "quantile" and (q is None or not 0.0 <= q <= 1.0):
            raise ValueError(f"quantile needs q in [0, 1], got {q!r}")
        v = self.values(metric, window_s=window_s)
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


_FUNCS = ("max", "min", "mean", "median", "quantile", "sum", "count", "last")
