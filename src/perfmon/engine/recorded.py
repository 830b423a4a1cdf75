"""Gates on the full recorded data of a run: whole run and per set, built column-wise.

The report's numbers come from recorded samples, never from the live state's bounded
aggregates. This module turns a ``RunData`` (``perfmon.engine.recorder.read_run``) into exact
``ArrayMetricSource`` objects without materialising one Python object per sample (a 72-hour
soak records tens of millions), and evaluates the campaign's gates:

- per **set** (design.md section 2: a golden set and a canary set each get their own gate
  results). A set's data is the samples of its measured sessions plus the machine-wide samples
  (``system_memory_percent``, ...) recorded between its first session's start and its last
  session's end;
- for the **run**: when the campaign has one set, its results; with several, each gate's worst
  state over the sets (fail, then pending, then inconclusive, then pass, the order of
  ``perfmon.core.gates.verdict``), its reason prefixed with that set's name. So the run passes
  only if every gate passes in every set.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from perfmon.core.batch import SampleBatch
from perfmon.core.campaign import GateConfig
from perfmon.core.datasource import ArrayMetricSource
from perfmon.core.gates import evaluate_gates, parse_gate
from perfmon.core.model import SYSTEM_SESSION, GateResult, GateState, MetricKind
from perfmon.core.stats import StatsOptions

_SEVERITY = {
    GateState.FAIL: 3,
    GateState.PENDING: 2,
    GateState.INCONCLUSIVE: 1,
    GateState.PASS: 0,
}


@dataclasses.dataclass(frozen=True, slots=True)
class Columns:
    """A recorded samples table as numpy columns, sorted by (metric, t), built once per report.

    Attributes:
        t / session / code / value: one entry per sample; ``code`` indexes ``names``.
        names: metric names; ``kinds``: each metric's kind (of its latest sample, as a
            ``# TYPE`` line applies to the samples after it).
        bounds: samples of metric ``c`` are ``bounds[c]:bounds[c + 1]``.
    """

    t: Any
    session: Any
    code: Any
    value: Any
    names: tuple[str, ...]
    kinds: tuple[MetricKind, ...]
    bounds: Any

    @classmethod
    def from_table(cls, table: pa.Table) -> Columns:
        """Decode a samples table (one dictionary encoding, one stable sort)."""
        metric = pc.dictionary_encode(table.column("metric")).combine_chunks()
        names = tuple(str(x) for x in metric.dictionary.to_pylist())
        t = table.column("t").to_numpy()
        code = metric.indices.to_numpy(zero_copy_only=False)
        order = np.lexsort((t, code))  # by metric, then time; stable for ties
        code = code[order]
        bounds = np.searchsorted(code, np.arange(len(names) + 1))
        kinds_col = table.column("kind").to_numpy(zero_copy_only=False)[order]
        kinds = tuple(
            MetricKind(str(kinds_col[bounds[c + 1] - 1]))
            if bounds[c + 1] > bounds[c]
            else MetricKind.GAUGE
            for c in range(len(names))
        )
        return cls(
            t=t[order],
            session=table.column("session").to_numpy()[order].astype(np.int64),
            code=code.astype(np.int32),
            value=table.column("value").to_numpy()[order],
            names=names,
            kinds=kinds,
            bounds=bounds,
        )

    def batch(self) -> SampleBatch:
        """All samples as one ``SampleBatch`` (to replay a recording into a ``LiveState``)."""
        return SampleBatch(
            t=self.t,
            session=self.session,
            key=self.code,
            value=self.value,
            metrics=self.names,
            kinds=self.kinds,
        )


def source_from_table(
    table: pa.Table | Columns,
    sessions: Sequence[Mapping[str, Any]],
    *,
    keep_sessions: set[int] | None = None,
    system_span: tuple[float, float] | None = None,
) -> ArrayMetricSource:
    """Build an exact metric source from a recorded samples table, column-wise.

    Args:
        table: samples with columns ``t``, ``session``, ``metric``, ``value``, ``kind``, or
            their ``Columns`` when several sources are built from one table.
        sessions: the sessions table (``session_row`` dicts); warm-up sessions and attempts
            repeated by the noise guard (status ``noisy``) are excluded.
        keep_sessions: only samples of these session ids (None: every measured session).
        system_span: ``(start, end)`` Unix seconds: keep machine-wide samples
            (``SYSTEM_SESSION``) recorded in this span only (None: all of them).

    Returns:
        An ``ArrayMetricSource`` holding the selected samples and the sessions table.
    """
    if isinstance(table, pa.Table):
        if table.num_rows == 0:
            return ArrayMetricSource({}, sessions=sessions)
        table = Columns.from_table(table)
    cols = table
    # Warm-ups, and attempts the noise guard repeated (status "noisy"), are not measured.
    warmup = [int(s["id"]) for s in sessions if s.get("warmup") or s.get("status") == "noisy"]
    mask = ~np.isin(cols.session, np.asarray(warmup, dtype=np.int64))
    system = cols.session == SYSTEM_SESSION
    if keep_sessions is not None:
        ids = np.fromiter(keep_sessions, np.int64, len(keep_sessions))
        mask &= np.isin(cols.session, ids) | system
    if system_span is not None:
        start, end = system_span
        mask &= ~system | ((cols.t >= start) & (cols.t <= end))
    data: dict[str, tuple[MetricKind, Any, Any]] = {}
    session_ids: dict[str, Any] = {}
    for c, name in enumerate(cols.names):
        lo, hi = int(cols.bounds[c]), int(cols.bounds[c + 1])
        keep = mask[lo:hi]
        if keep.any():
            data[name] = (cols.kinds[c], cols.t[lo:hi][keep], cols.value[lo:hi][keep])
            session_ids[name] = cols.session[lo:hi][keep]
    return ArrayMetricSource(data, session_ids=session_ids, sessions=sessions)


def set_spans(sessions: Sequence[Mapping[str, Any]]) -> dict[str, tuple[set[int], float, float]]:
    """Each set's measured session ids and its time span (first start, last end), in run order."""
    spans: dict[str, tuple[set[int], float, float]] = {}
    for s in sorted(sessions, key=lambda r: int(r["id"])):
        name = str(s.get("set_name") or "default")
        ids, start, end = spans.get(name, (set(), float("inf"), float("-inf")))
        if not s.get("warmup"):
            ids.add(int(s["id"]))
        if s.get("start_t") is not None:
            start = min(start, float(s["start_t"]))
        if s.get("end_t") is not None:
            end = max(end, float(s["end_t"]))
        spans[name] = (ids, start, end)
    return spans


@dataclasses.dataclass(frozen=True, slots=True)
class RecordedGates:
    """Gate results on recorded data.

    Attributes:
        run: one result per gate for the whole run (see the module docstring).
        per_set: set name -> one result per gate, in run order; empty when the run has one
            set (then ``run`` is that set's results).
    """

    run: list[GateResult]
    per_set: dict[str, list[GateResult]]


def parse_stored_gate(g: Mapping[str, Any], stats: StatsOptions) -> Any:
    """Parse a gate as the manifest stores it (``{name, expr, window_s, by, directions}``).

    The metric directions stored with the gate orient ``speedup``/``regression``; a gate
    stored before directions existed (no ``directions`` key) is read lower-is-better, as it
    was judged then.

    Raises:
        perfmon.core.gates.GateSyntaxError: if the stored expression no longer parses.
    """
    return parse_gate(
        str(g["expr"]),
        stats=stats,
        directions=g.get("directions") or {},
        default_direction=None if "directions" in g else "lower",
    )


def _configs(gates: Sequence[Mapping[str, Any]], stats: StatsOptions) -> list[GateConfig]:
    return [
        GateConfig(
            name=str(g["name"]),
            expr=str(g["expr"]),
            gate=parse_stored_gate(g, stats),
            window_s=g.get("window_s"),
            by=tuple(g.get("by") or ()),
        )
        for g in gates
    ]


def evaluate_recorded(
    gates: Sequence[Mapping[str, Any]], data: Any, stats: StatsOptions
) -> RecordedGates:
    """Evaluate gates on a run's recorded data, per set and for the whole run.

    Args:
        gates: ``[{name, expr, window_s}]`` as stored in the manifest.
        data: a ``perfmon.engine.recorder.RunData``.
        stats: statistical options (confidence level, test, bootstrap).

    Raises:
        perfmon.core.gates.GateSyntaxError: if a stored gate no longer parses.
    """
    configs = _configs(gates, stats)
    spans = set_spans(data.sessions)
    cols: pa.Table | Columns = data.samples
    if len(spans) <= 1:
        source = source_from_table(cols, data.sessions)
        return RecordedGates(run=evaluate_gates(configs, source), per_set={})
    if data.samples.num_rows:
        cols = Columns.from_table(data.samples)  # decoded once for every set
    per_set: dict[str, list[GateResult]] = {}
    for name, (ids, start, end) in spans.items():
        span = (start, end) if start <= end else None
        source = source_from_table(cols, data.sessions, keep_sessions=ids, system_span=span)
        per_set[name] = evaluate_gates(configs, source)
    run: list[GateResult] = []
    for i, _config in enumerate(configs):
        worst_set, worst = max(
            ((name, results[i]) for name, results in per_set.items()),
            key=lambda item: _SEVERITY.get(item[1].state, 0),
        )
        run.append(dataclasses.replace(worst, reason=f"[{worst_set}] {worst.reason}"))
    return RecordedGates(run=run, per_set=per_set)
