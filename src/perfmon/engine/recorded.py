"""Gates on the full recorded data of a run: whole run and per set, built column-wise.

The report's numbers come from recorded samples, never from the live state's bounded
aggregates. This module turns a ``RunData`` (``perfmon.engine.recorder.read_run``) into exact
``ArrayMetricSource`` objects without materialising one Python object per sample (a 72-hour
soak records tens of millions), and evaluates the campaign's gates:

- per **set** (design.md section 2: a golden set and a canary set each get their own gate
  results). A set's data is the samples of its measured sessions plus the machine-wide samples
  (``system_memory_percent``, ...) recorded between its first session's start and its last
  session's end;
- per **host** (issue 16, point 3), when the run's sessions ran on more than one host (a Ray
  cluster) and the campaign did not pool them (``[executor] allow_mixed_hosts``): each
  (set, host) pair is a group judged on that host's sessions only, so a baseline/candidate
  comparison is only ever between sessions of one host, and a host whose sessions carry more
  than one host fingerprint (two machines behind one name, a machine changed mid-run) is
  refused: its gates stay ``pending`` with a reason saying why, never a pooled number. A run
  on one host (every local run) has no host groups and is judged exactly as before;
- for the **run**: when there is one group, its results; with several, each gate's worst
  state over the groups (fail, then pending, then inconclusive, then pass, the order of
  ``perfmon.core.gates.verdict``), its reason prefixed with that group's name. So the run
  passes only if every gate passes in every set on every host.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from perfmon.core.batch import SampleBatch
from perfmon.core.campaign import GateConfig
from perfmon.core.datasource import ArrayMetricSource
from perfmon.core.gates import evaluate_gates, parse_gate, short_value
from perfmon.core.model import SYSTEM_SESSION, GateResult, GateState, MetricKind
from perfmon.core.stats import StatsOptions
from perfmon.engine.streamed import (
    StreamedSource,
    count_samples,
    from_key,
    numpy_lerp,
    order_keys,
)

_SEVERITY = {
    GateState.FAIL: 3,
    GateState.PENDING: 2,
    GateState.INCONCLUSIVE: 1,
    GateState.PASS: 0,
}


def _select_metrics(
    b: pa.RecordBatch, metrics: Collection[str] | None, codes: dict[str, int], dtype: Any
) -> tuple[Any, Any] | None:
    """The rows of a ``SAMPLES_SCHEMA`` batch whose metric is in ``metrics`` (None: all).

    Args:
        b: the batch (dictionary-encoded ``metric``).
        metrics: the metric names to keep, or None for all.
        codes: metric name -> run-wide code, extended in place with the batch's kept names.
        dtype: the NumPy integer type of the returned codes.

    Returns:
        ``(mask, code)``: a boolean row mask and each kept row's run-wide metric code; None when
        the batch keeps no row.
    """
    if not b.num_rows:
        return None
    mcol = b.column("metric")
    names = [str(x) for x in mcol.dictionary.to_pylist()]
    keep_name = np.array([metrics is None or n in metrics for n in names], dtype=bool)
    if not keep_name.any():
        return None
    local = np.array(
        [
            codes.setdefault(n, len(codes)) if k else -1
            for n, k in zip(names, keep_name, strict=True)
        ],
        dtype=dtype,
    )
    idx = mcol.indices.to_numpy(zero_copy_only=False)
    mask = keep_name[idx]
    if not mask.any():
        return None
    return mask, local[idx[mask]]


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

    @classmethod
    def from_batches(
        cls, batches: Iterable[pa.RecordBatch], metrics: Collection[str] | None = None
    ) -> Columns:
        """Decode recorded batches one at a time, keeping only the samples of ``metrics``.

        Memory is what is kept (28 bytes per kept sample: t, session, code, value) plus one
        batch, never a table of every sample with its strings.

        Args:
            batches: record batches with ``SAMPLES_SCHEMA`` (dictionary-encoded ``metric``
                and ``kind``), e.g. ``RunData.batches()``.
            metrics: the metric names to keep (None: all).
        """
        codes: dict[str, int] = {}
        latest: dict[int, tuple[float, str]] = {}
        parts: list[tuple[Any, Any, Any, Any]] = []
        for b in batches:
            selected = _select_metrics(b, metrics, codes, np.int32)
            if selected is None:
                continue
            mask, code = selected
            kcol = b.column("kind")
            t = b.column("t").to_numpy()[mask]
            kinds = [str(x) for x in kcol.dictionary.to_pylist()]
            kidx = kcol.indices.to_numpy(zero_copy_only=False)[mask]
            # each metric's latest kind: the kind of its sample with the largest t
            order = np.lexsort((t, code))
            last = np.flatnonzero(np.r_[code[order][1:] != code[order][:-1], True])
            for j in order[last]:
                c, tj = int(code[j]), float(t[j])
                prev = latest.get(c)
                if prev is None or tj >= prev[0]:
                    latest[c] = (tj, kinds[int(kidx[j])])
            parts.append(
                (
                    t,
                    b.column("session").to_numpy()[mask],
                    code,
                    b.column("value").to_numpy()[mask],
                )
            )
        names_all = tuple(codes)
        if not parts:
            empty = np.empty(0)
            return cls(
                t=empty,
                session=empty.astype(np.int64),
                code=empty.astype(np.int32),
                value=empty,
                names=names_all,
                kinds=tuple(MetricKind.GAUGE for _ in names_all),
                bounds=np.zeros(len(names_all) + 1, dtype=np.int64),
            )
        t = np.concatenate([p[0] for p in parts])
        code = np.concatenate([p[2] for p in parts])
        order = np.lexsort((t, code))  # by metric, then time; stable for ties
        t = t[order]
        code = code[order]
        session = np.concatenate([p[1] for p in parts])[order].astype(np.int64)
        value = np.concatenate([p[3] for p in parts])[order]
        del parts, order
        bounds = np.searchsorted(code, np.arange(len(names_all) + 1))
        kinds_out = tuple(
            MetricKind(latest[c][1]) if c in latest else MetricKind.GAUGE
            for c in range(len(names_all))
        )
        return cls(
            t=t,
            session=session,
            code=code,
            value=value,
            names=names_all,
            kinds=kinds_out,
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


def session_aggregates(
    batches: Iterable[pa.RecordBatch], metrics: Collection[str] | None = None
) -> dict[str, tuple[Any, Any, Any]]:
    """One value per (metric, session), folded batch by batch: memory grows with sessions
    times metrics, never with samples.

    The value is what ``ArrayMetricSource.session_values`` takes: for a metric whose latest
    kind is ``value`` the session's latest sample (ties in time: the later recorded), for a
    ``counter`` the sum of its increments, for other kinds the mean of its samples.

    Args:
        batches: record batches with ``SAMPLES_SCHEMA``, e.g. ``RunData.batches()``.
        metrics: the metric names to fold (None: all).

    Returns:
        metric name -> ``(session_ids, last_t, values)``, three 1-D arrays of one length.
    """
    codes: dict[str, int] = {}
    latest: dict[int, tuple[float, str]] = {}
    g_key = np.empty(0, np.int64)
    g_sum = np.empty(0)
    g_cnt = np.empty(0, np.int64)
    g_lt = np.empty(0)
    g_lv = np.empty(0)
    for b in batches:
        selected = _select_metrics(b, metrics, codes, np.int64)
        if selected is None:
            continue
        mask, code = selected
        kcol = b.column("kind")
        sess = b.column("session").to_numpy()[mask].astype(np.int64)
        t = b.column("t").to_numpy()[mask]
        v = b.column("value").to_numpy()[mask]
        kinds = [str(x) for x in kcol.dictionary.to_pylist()]
        kidx = kcol.indices.to_numpy(zero_copy_only=False)[mask]
        key = (code << 32) | (sess & 0xFFFFFFFF)
        order = np.lexsort((t, key))  # stable: ties in t keep recording order
        ks, ts, vs = key[order], t[order], v[order]
        starts = np.flatnonzero(np.r_[True, ks[1:] != ks[:-1]])
        ends = np.r_[starts[1:], ks.size] - 1
        for j in order[ends]:
            c, tj = int(code[j]), float(t[j])
            prev = latest.get(c)
            if prev is None or tj >= prev[0]:
                latest[c] = (tj, kinds[int(kidx[j])])
        # merge with what was folded so far (the batch after it, so it wins ties)
        a_key = np.r_[g_key, ks[starts]]
        a_sum = np.r_[g_sum, np.add.reduceat(vs, starts)]
        a_cnt = np.r_[g_cnt, np.diff(np.r_[starts, ks.size])]
        a_lt = np.r_[g_lt, ts[ends]]
        a_lv = np.r_[g_lv, vs[ends]]
        order = np.lexsort((a_lt, a_key))
        a_key, a_lt, a_lv = a_key[order], a_lt[order], a_lv[order]
        a_sum, a_cnt = a_sum[order], a_cnt[order]
        st = np.flatnonzero(np.r_[True, a_key[1:] != a_key[:-1]])
        en = np.r_[st[1:], a_key.size] - 1
        g_key, g_lt, g_lv = a_key[st], a_lt[en], a_lv[en]
        g_sum, g_cnt = np.add.reduceat(a_sum, st), np.add.reduceat(a_cnt, st)
    out: dict[str, tuple[Any, Any, Any]] = {}
    g_code = g_key >> 32
    g_sess = (g_key & 0xFFFFFFFF).astype(np.uint32).astype(np.int32).astype(np.int64)
    for name, c in codes.items():
        sel = g_code == c
        if not sel.any():
            continue
        kind = MetricKind(latest[c][1]) if c in latest else MetricKind.GAUGE
        if kind is MetricKind.VALUE:
            vals = g_lv[sel]
        elif kind is MetricKind.COUNTER:
            vals = g_sum[sel]
        else:
            vals = g_sum[sel] / g_cnt[sel]
        out[name] = (g_sess[sel], g_lt[sel], vals)
    return out


def session_source(data: Any, metrics: Collection[str] | None = None) -> ArrayMetricSource:
    """An ``ArrayMetricSource`` holding one sample per (metric, session): enough, exactly, for
    ``session_values``, ``session_groups`` and ``session_variants`` (statistical gates and
    comparisons), in memory that grows with sessions, not samples.

    Its ``reduce`` and ``points`` see one value per session, so use it only for per-session
    questions.

    Args:
        data: a ``perfmon.engine.recorder.RunData``.
        metrics: the metric names to fold (None: all).
    """
    agg = session_aggregates(data.batches(), metrics)
    return ArrayMetricSource(
        {m: (MetricKind.VALUE, lt, v) for m, (_, lt, v) in agg.items()},
        session_ids={m: sids for m, (sids, _, _) in agg.items()},
        sessions=data.sessions,
    )


def source_from_table(
    table: pa.Table | Columns,
    sessions: Sequence[Mapping[str, Any]],
    *,
    keep_sessions: set[int] | None = None,
    system_span: tuple[float, float] | None = None,
    now: float | None = None,
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
        now: the end of sliding windows (None: the latest sample kept, see
            ``ArrayMetricSource``); pass the recording's end when only some metrics are kept.

    Returns:
        An ``ArrayMetricSource`` holding the selected samples and the sessions table.
    """
    if isinstance(table, pa.Table):
        if table.num_rows == 0:
            return ArrayMetricSource({}, sessions=sessions, now=now)
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


GATE_SAMPLES_HELD = 1 << 20
"""Samples (28 bytes each: 28 MiB) of the gates' reduced metrics held in memory together;
metrics beyond it are streamed (``perfmon.engine.streamed``), so the verdict's memory does not
grow with the run's length."""


def gate_columns(
    configs: Sequence[GateConfig], data: Any, held: int | None = None
) -> tuple[Columns, dict[str, MetricKind]]:
    """The recorded samples the gates need, read batch by batch.

    A metric read only by per-session expressions (``speedup``, ``regression`` and the other
    variant comparisons, and spreads: they use ``session_values``) is folded to one value per
    session (``session_aggregates``). A metric read by a reduction, ratio or slope keeps all its
    samples (28 bytes each) while the gates' such metrics fit in ``held`` samples together,
    smallest first; the others are *streamed*: folded per session here (for any per-session
    question), and reduced by passes over the recording (``perfmon.engine.streamed``).
    Metrics no gate reads are not kept at all.

    Args:
        configs: the parsed gates.
        data: a ``perfmon.engine.recorder.RunData``.
        held: the budget in samples (None: ``GATE_SAMPLES_HELD``).

    Returns:
        ``(columns, streamed)``: the held samples and per-session values, and each streamed
        metric's kind.
    """
    from perfmon.core.gates import Spread, VariantComparison

    budget = GATE_SAMPLES_HELD if held is None else held
    array_metrics: set[str] = set()
    session_metrics: set[str] = set()
    for c in configs:
        lhs = c.gate.lhs
        target = session_metrics if isinstance(lhs, VariantComparison | Spread) else array_metrics
        target.update(lhs.metrics)
    session_metrics -= array_metrics
    streamed: dict[str, MetricKind] = {}
    if array_metrics:
        counts, latest = count_samples(data.batches(), array_metrics)
        used = 0
        for m in sorted(counts, key=lambda m: (counts[m], m)):
            if used + counts[m] <= budget:
                used += counts[m]
            else:
                streamed[m] = latest[m]
        array_metrics -= set(streamed)
        session_metrics |= set(streamed)
    cols = Columns.from_batches(data.batches() if array_metrics else (), array_metrics)
    if not session_metrics:
        return cols, streamed
    agg = session_aggregates(data.batches(), session_metrics)
    if not agg:
        return cols, streamed
    names = list(cols.names)
    kinds = list(cols.kinds)
    t_parts, s_parts, c_parts, v_parts = [cols.t], [cols.session], [cols.code], [cols.value]
    for name, (sids, last_t, vals) in agg.items():
        code = len(names)
        names.append(name)
        kinds.append(MetricKind.VALUE)  # one value per session, exact for session_values
        t_parts.append(last_t)
        s_parts.append(sids.astype(np.int64))
        c_parts.append(np.full(sids.size, code, dtype=np.int32))
        v_parts.append(vals)
    t = np.concatenate(t_parts)
    code_all = np.concatenate(c_parts)
    order = np.lexsort((t, code_all))
    code_all = code_all[order]
    columns = Columns(
        t=t[order],
        session=np.concatenate(s_parts)[order],
        code=code_all,
        value=np.concatenate(v_parts)[order],
        names=tuple(names),
        kinds=tuple(kinds),
        bounds=np.searchsorted(code_all, np.arange(len(names) + 1)),
    )
    return columns, streamed


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


HOST_SEPARATOR = " @ "
"""Between a set's name and a host's in a (set, host) group's name: ``"golden @ gpu-a"``."""


def session_host(row: Mapping[str, Any]) -> str:
    """The host a ``sessions.jsonl`` row ran on ("" when it recorded none: the local executor,
    or a Ray session that never reached a node)."""
    return str(row.get("host") or "")


def host_fingerprints(sessions: Iterable[Mapping[str, Any]]) -> dict[str, list[str]]:
    """Each host sessions ran on, with its distinct host fingerprints.

    Args:
        sessions: ``sessions.jsonl`` rows (``host`` / ``host_fingerprint`` may be missing).

    Returns:
        host -> its fingerprints in order of first appearance ("" left out), hosts in order of
        their first session; rows that recorded no host are left out, so a local run gives
        ``{}``.
    """
    out: dict[str, list[str]] = {}
    for s in sessions:
        host = session_host(s)
        if not host:
            continue
        prints = out.setdefault(host, [])
        fp = str(s.get("host_fingerprint") or "")
        if fp and fp not in prints:
            prints.append(fp)
    return out


def allows_mixed_hosts(manifest: Any) -> bool:
    """Whether a run's campaign pooled sessions of different hosts (``[executor]
    allow_mixed_hosts = true``, as stored in ``manifest.json``); False for a manifest that
    does not say (a local run, an older run, a damaged manifest)."""
    campaign = manifest.get("campaign") if isinstance(manifest, Mapping) else None
    executor = campaign.get("executor") if isinstance(campaign, Mapping) else None
    return isinstance(executor, Mapping) and executor.get("allow_mixed_hosts") is True


def judged_per_host(sessions: Sequence[Mapping[str, Any]], allow_mixed_hosts: bool) -> bool:
    """Whether a run's statistics and gates are computed per host: its sessions ran on more
    than one host, or on one host under more than one fingerprint, and the campaign did not
    opt in to pooling them (``allow_mixed_hosts``)."""
    if allow_mixed_hosts:
        return False
    return pools_hosts(host_fingerprints(sessions))


def pools_hosts(hosts: Mapping[str, Collection[str]]) -> bool:
    """Whether statistics over sessions of these hosts would pool different instruments:
    more than one host, or one host under more than one fingerprint.

    Args:
        hosts: host -> its fingerprints (as ``host_fingerprints`` gives, or a runner's live
            record of them).
    """
    return len(hosts) > 1 or any(len(set(fps) - {""}) > 1 for fps in hosts.values())


def pooled_live(result: GateResult, hosts: int) -> GateResult:
    """A live gate result over sessions of several hosts, marked for what it is.

    The live state folds every session into one set of aggregates, so a live gate pools the
    hosts, which the run's statistics never do (``evaluate_recorded`` judges each host
    apart). Such a result is shown ``pending``, its pooled figure in the reason, until the
    run ends and the per-host results replace it; so neither the board nor ``stop_when =
    "decided"`` acts on a pooled number.

    Args:
        result: the live result.
        hosts: how many hosts the live state has seen.
    """
    reason = (
        f"pooled over {hosts} hosts live, judged per host when the run ends: {result.reason}"
        if hosts > 1
        else f"one host under several fingerprints, judged when the run ends: {result.reason}"
    )
    return dataclasses.replace(result, state=GateState.PENDING, reason=reason, per_set=())


@dataclasses.dataclass(frozen=True, slots=True)
class GateGroup:
    """Sessions whose gates are judged together: one set, or one set on one host.

    Attributes:
        name: the set's name, or ``"SET @ HOST"`` when the run is judged per host.
        ids: its measured session ids (warm-ups left out).
        start / end: its first session's start and last session's end, Unix seconds
            (``inf`` / ``-inf`` when no session started).
        host: the host ("" when the run is not judged per host).
        fingerprints: the host's distinct fingerprints over the group's sessions.
        rows: the group's ``sessions.jsonl`` rows (every row when not judged per host).
    """

    name: str
    ids: set[int]
    start: float
    end: float
    host: str = ""
    fingerprints: tuple[str, ...] = ()
    rows: tuple[Mapping[str, Any], ...] = ()


def gate_groups(sessions: Sequence[Mapping[str, Any]], *, per_host: bool) -> list[GateGroup]:
    """The groups a run's gates are judged in, in run order: one per set, or with
    ``per_host`` one per (set, host) pair that has sessions; rows that recorded no host (never
    reached a node) then belong to no group.

    Args:
        sessions: ``sessions.jsonl`` rows.
        per_host: split each set by host (``judged_per_host``).
    """
    if not per_host:
        return [
            GateGroup(name, ids, start, end, rows=tuple(sessions))
            for name, (ids, start, end) in set_spans(sessions).items()
        ]
    by_key: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for s in sorted(sessions, key=lambda r: int(r["id"])):
        host = session_host(s)
        if host:
            by_key.setdefault((str(s.get("set_name") or "default"), host), []).append(s)
    out = []
    for (set_name, host), rows in by_key.items():
        ((ids, start, end),) = set_spans(rows).values()
        prints = host_fingerprints(rows).get(host, [])
        name = f"{set_name}{HOST_SEPARATOR}{host}"
        out.append(GateGroup(name, ids, start, end, host, tuple(prints), tuple(rows)))
    return out


@dataclasses.dataclass(frozen=True, slots=True)
class RecordedGates:
    """Gate results on recorded data.

    Attributes:
        run: one result per gate for the whole run (see the module docstring).
        per_set: group name -> one result per gate, in run order; empty when the run has one
            group (then ``run`` is that group's results). A group is a set, or, when the run
            is judged per host (``per_host``), a set on one host (``"golden @ gpu-a"``).
        per_host: whether the groups are (set, host) pairs.
    """

    run: list[GateResult]
    per_set: dict[str, list[GateResult]]
    per_host: bool = False


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


def stored_stats_options(manifest: Any) -> tuple[StatsOptions, str | None]:
    """The statistical options stored in a run's manifest, or the defaults when they are
    missing or malformed (a damaged manifest), with a sentence saying so.

    Args:
        manifest: ``manifest.json``'s content as read (any JSON value).

    Returns:
        ``(options, problem)``; ``problem`` is None when the stored options were used.
    """
    campaign = manifest.get("campaign") if isinstance(manifest, dict) else None
    stored = campaign.get("stats") if isinstance(campaign, dict) else None
    if stored is None:
        return StatsOptions(), None
    if not isinstance(stored, dict):
        return StatsOptions(), "manifest.json: statistical options malformed; defaults used"
    known = {f.name for f in dataclasses.fields(StatsOptions)}
    try:
        return StatsOptions(**{k: v for k, v in stored.items() if k in known}), None
    except (ValueError, TypeError, OverflowError) as exc:
        return StatsOptions(), f"manifest.json: statistical options invalid ({exc}); defaults used"


def _unparsable(gates: Sequence[Mapping[str, Any]], stats: StatsOptions) -> dict[int, GateResult]:
    """Gates (by position) whose stored expression no longer parses, as ``pending`` results
    saying why, so that a damaged manifest can never let the verdict pass."""
    from perfmon.core.gates import GateSyntaxError

    bad: dict[int, GateResult] = {}
    for i, g in enumerate(gates):
        try:
            parse_gate(str(g["expr"]), stats=stats)
        except (GateSyntaxError, ValueError, TypeError, KeyError, RecursionError) as exc:
            reason = f"stored expression does not parse: {' '.join(str(exc).split())[:200]}"
            bad[i] = GateResult(
                str(g.get("name", "")), str(g.get("expr", "")), GateState.PENDING, None, 0, reason
            )
    return bad


def evaluate_recorded_safely(
    gates: Sequence[Mapping[str, Any]], data: Any, stats: StatsOptions
) -> RecordedGates:
    """``evaluate_recorded`` for a run directory that may be damaged: a gate whose stored
    expression no longer parses gets a ``pending`` result saying so (the verdict cannot pass)
    instead of raising; the other gates are evaluated as usual.
    """
    bad = _unparsable(gates, stats)
    good = [g for i, g in enumerate(gates) if i not in bad]
    recorded = evaluate_recorded(good, data, stats)

    def merge(results: Sequence[GateResult]) -> list[GateResult]:
        it = iter(results)
        return [bad[i] if i in bad else next(it) for i in range(len(gates))]

    return RecordedGates(
        run=merge(recorded.run),
        per_set={name: merge(results) for name, results in recorded.per_set.items()},
        per_host=recorded.per_host,
    )


def evaluate_recorded(
    gates: Sequence[Mapping[str, Any]],
    data: Any,
    stats: StatsOptions,
    *,
    allow_mixed_hosts: bool | None = None,
    held: int | None = None,
) -> RecordedGates:
    """Evaluate gates on a run's recorded data, per set (and host) and for the whole run.

    Args:
        gates: ``[{name, expr, window_s}]`` as stored in the manifest.
        data: a ``perfmon.engine.recorder.RunData``.
        stats: statistical options (confidence level, test, bootstrap).
        allow_mixed_hosts: pool the sessions of different hosts (None: as the run's manifest
            says, ``allows_mixed_hosts``).
        held: samples of reduced metrics held in memory (``gate_columns``; None:
            ``GATE_SAMPLES_HELD``); the others are streamed, with the same results.

    Raises:
        perfmon.core.gates.GateSyntaxError: if a stored gate no longer parses.
    """
    configs = _configs(gates, stats)
    if allow_mixed_hosts is None:
        allow_mixed_hosts = allows_mixed_hosts(getattr(data, "manifest", None))
    per_host = judged_per_host(data.sessions, allow_mixed_hosts)
    groups = gate_groups(data.sessions, per_host=per_host)
    cols, streamed = gate_columns(configs, data, held)
    t_max = getattr(data, "t_max", None)

    def stream(source: Any, sessions: Sequence[Mapping[str, Any]], **selection: Any) -> Any:
        """``source``, answering for the streamed metrics by passes over the recording."""
        if not streamed:
            return source
        return StreamedSource(source, data.batches, streamed, sessions, **selection)

    if len(groups) <= 1 and not per_host:
        source = stream(source_from_table(cols, data.sessions, now=t_max), data.sessions)
        return RecordedGates(run=evaluate_gates(configs, source), per_set={})
    per_set: dict[str, list[GateResult]] = {}
    for group in groups:
        if len(group.fingerprints) > 1:
            per_set[group.name] = [_refused(c, group) for c in configs]
            continue
        span = (group.start, group.end) if group.start <= group.end else None
        # a group's windows end where it ended (its last session), the recording's end at most
        now = min(group.end, t_max) if span is not None and t_max is not None else t_max
        source = source_from_table(
            cols, group.rows, keep_sessions=group.ids, system_span=span, now=now
        )
        source = stream(source, group.rows, keep_sessions=group.ids, system_span=span)
        per_set[group.name] = evaluate_gates(configs, source)
    run = [
        worst_of_groups(per_set, i, config.gate, per_host=per_host)
        for i, config in enumerate(configs)
    ]
    return RecordedGates(run=run, per_set=per_set, per_host=per_host)


def worst_of_groups(
    per_set: Mapping[str, Sequence[GateResult]], i: int, gate: Any, *, per_host: bool
) -> GateResult:
    """Gate ``i``'s whole-run result from its groups' results: the worst group's (fail, then
    pending, then inconclusive, then pass), its reason prefixed with the group's name; with
    ``per_host``, ``per_set`` lists every (set, host) group's state and value, for the board.

    Args:
        per_set: group name -> one result per gate (``RecordedGates.per_set``), not empty.
        i: the gate's position.
        gate: the parsed gate (``perfmon.core.gates.Gate``), for the groups' short values.
        per_host: the groups are (set, host) pairs.
    """
    worst_set, worst = max(
        ((name, results[i]) for name, results in per_set.items()),
        key=lambda item: _SEVERITY.get(item[1].state, 0),
    )
    result = dataclasses.replace(worst, reason=f"[{worst_set}] {worst.reason}")
    if per_host:
        # The board shows every (set, host) group of the gate on its line.
        result = dataclasses.replace(
            result,
            per_set=tuple(
                (name, results[i].state.value, short_value(gate, results[i]))
                for name, results in per_set.items()
            ),
        )
    return result


def _refused(config: GateConfig, group: GateGroup) -> GateResult:
    """A gate of a group whose host ran under several fingerprints: pending, saying why."""
    prints = "; ".join(group.fingerprints)
    reason = (
        f"refused: sessions on {group.host} ran under {len(group.fingerprints)} host "
        f"fingerprints ({prints}); comparing across them mixes instruments "
        "([executor] allow_mixed_hosts = true pools them)"
    )
    return config.gate.annotate(
        GateResult(config.name, config.expr, GateState.PENDING, None, 0, reason)
    )


# -- exact per-metric summaries in bounded memory --------------------------------------------

COLLECT_BUDGET = 1 << 18
"""Values (8 bytes each) the summaries may hold at once: metrics whose samples fit together are
kept whole and summarised with numpy; larger ones are resolved by radix selection."""

BUCKET_COLLECT_MAX = 1 << 14
"""A radix bucket holding at most this many values of one metric is collected and sorted."""

RADIX_GROUP = 16
"""Large metrics resolved per group of passes (each holds a 65,536-bin histogram per rank)."""


def _quantile_ranks(n: int) -> dict[str, tuple[int, int, float]]:
    """Order statistics (0-based) and weights of numpy's median and linear p95 over ``n``
    values: median the mean of the middle two (``numpy.median``), p95 Hyndman & Fan type 7,
    virtual index ``(n - 1) * q`` (``numpy.percentile``'s ``linear`` method)."""
    lo, hi = (n - 1) // 2, n // 2
    vi = (n - 1) * 0.95
    k = int(np.floor(vi))
    return {"median": (lo, hi, 0.5), "p95": (k, min(k + 1, n - 1), vi - k)}


class _Decoded:
    """One batch's rows of kept sessions: metric codes (global), t, value."""

    __slots__ = ("code", "kidx", "kinds", "t", "value")

    def __init__(self, b: pa.RecordBatch, codes: dict[str, int], exclude: Any) -> None:
        mcol, kcol = b.column("metric"), b.column("kind")
        local = np.array(
            [codes.setdefault(str(n), len(codes)) for n in mcol.dictionary.to_pylist()],
            dtype=np.int64,
        )
        idx = mcol.indices.to_numpy(zero_copy_only=False)
        keep = ~np.isin(b.column("session").to_numpy(), exclude)
        self.code = local[idx[keep]]
        self.t = b.column("t").to_numpy()[keep]
        self.value = b.column("value").to_numpy()[keep]
        self.kinds = [str(x) for x in kcol.dictionary.to_pylist()]
        self.kidx = kcol.indices.to_numpy(zero_copy_only=False)[keep]


def metric_summaries(
    batches: Callable[[], Iterable[pa.RecordBatch]], exclude_sessions: Iterable[int] = ()
) -> list[dict[str, Any]]:
    """Per metric ``n``, ``min``, ``median``, ``p95``, ``max``, ``last``, ``total`` and ``kind``
    over every recorded sample except those of ``exclude_sessions``, exact, in bounded memory.

    The samples are read several times, batch by batch (``batches`` is called once per pass):
    pass 1 counts and takes min, max, sum, last and kind; pass 2 keeps the values of the
    metrics that fit in ``COLLECT_BUDGET`` together (summarised with ``numpy.median`` and
    ``numpy.percentile(x, 95)``, as ``perfmon.engine.report.describe``) and histograms the
    16 high bits of the order-preserving integer keys of the others; each further pass either
    collects the values of the bucket that holds a wanted order statistic (when it holds at
    most ``BUCKET_COLLECT_MAX``) or histograms the next 16 bits: exact radix selection (Knuth,
    TAOCP vol. 3, 5.2.5 and 5.3.3), at most 4 passes more. The order statistics are combined
    as numpy does (median: mean of the middle two; p95: Hyndman & Fan 1996 definition 7).
    Memory: ``COLLECT_BUDGET`` values plus ``RADIX_GROUP`` 65,536-bin histograms per pass,
    whatever the number of samples.

    Non-finite values are left out of ``n``, min, median, p95 and max (as ``describe``); ``last``
    is the value with the largest ``t`` (ties: the later read) and ``total`` the sum of all.

    Args:
        batches: returns a fresh iterator of ``SAMPLES_SCHEMA`` batches (``RunData.batches``).
        exclude_sessions: session ids whose samples are left out (warm-ups).

    Returns:
        One dict per metric with at least one sample, sorted by name; statistics None when
        the metric has no finite value.
    """
    exclude = np.asarray(sorted(set(exclude_sessions)), dtype=np.int32)
    codes: dict[str, int] = {}
    n: dict[int, int] = {}
    vmin: dict[int, float] = {}
    vmax: dict[int, float] = {}
    total: dict[int, float] = {}
    rows: dict[int, int] = {}
    last: dict[int, tuple[float, float, str]] = {}
    for b in batches():
        d = _Decoded(b, codes, exclude)
        if not d.code.size:
            continue
        order = np.lexsort((d.t, d.code))
        cs = d.code[order]
        starts = np.flatnonzero(np.r_[True, cs[1:] != cs[:-1]])
        ends = np.r_[starts[1:], cs.size]
        vs = d.value[order]
        fin = np.isfinite(vs)
        for a, e in zip(starts, ends, strict=True):
            c = int(cs[a])
            seg, f = vs[a:e], fin[a:e]
            rows[c] = rows.get(c, 0) + int(e - a)
            total[c] = total.get(c, 0.0) + float(seg.sum())
            j = int(order[e - 1])
            tl = float(d.t[j])
            if c not in last or tl >= last[c][0]:
                last[c] = (tl, float(d.value[j]), d.kinds[int(d.kidx[j])])
            if f.any():
                good = seg[f]
                n[c] = n.get(c, 0) + int(good.size)
                lo, hi = float(good.min()), float(good.max())
                vmin[c] = min(vmin.get(c, lo), lo)
                vmax[c] = max(vmax.get(c, hi), hi)
    names = {c: name for name, c in codes.items()}
    quant: dict[int, dict[str, float]] = {}
    # metrics small enough to hold together, smallest first
    small: set[int] = set()
    used = 0
    for c in sorted(n, key=lambda c: n[c]):
        if used + n[c] > COLLECT_BUDGET:
            break
        small.add(c)
        used += n[c]
    big = [c for c in sorted(n) if c not in small]
    if small:
        kept: dict[int, list[Any]] = {c: [] for c in small}
        for b in batches():
            d = _Decoded(b, codes, exclude)
            sel = np.isin(d.code, list(small)) & np.isfinite(d.value)
            if not sel.any():
                continue
            cs, vs = d.code[sel], d.value[sel]
            order = np.argsort(cs, kind="stable")
            cs, vs = cs[order], vs[order]
            starts = np.flatnonzero(np.r_[True, cs[1:] != cs[:-1]])
            for a, e in zip(starts, np.r_[starts[1:], cs.size], strict=True):
                kept[int(cs[a])].append(vs[a:e])
        for c in list(kept):
            arr = np.concatenate(kept.pop(c))
            median = float(np.median(arr))
            p95 = float(np.percentile(arr, 95, overwrite_input=True))
            quant[c] = {"median": median, "p95": p95}
            del arr
    for i in range(0, len(big), RADIX_GROUP):
        quant.update(
            _radix_quantiles(batches, codes, exclude, {c: n[c] for c in big[i : i + RADIX_GROUP]})
        )
    out: list[dict[str, Any]] = []
    for c, name in names.items():
        if c not in rows:
            continue
        q = quant.get(c, {})
        out.append(
            {
                "name": name,
                "kind": last[c][2],
                "n": n.get(c, 0),
                "min": vmin.get(c),
                "median": q.get("median"),
                "p95": q.get("p95"),
                "max": vmax.get(c),
                "last": last[c][1] if np.isfinite(last[c][1]) else None,
                "total": total[c] if np.isfinite(total[c]) else None,
            }
        )
    out.sort(key=lambda m: str(m["name"]))
    return out


def _radix_quantiles(
    batches: Callable[[], Iterable[pa.RecordBatch]],
    codes: dict[str, int],
    exclude: Any,
    sizes: dict[int, int],
) -> dict[int, dict[str, float]]:
    """Exact median and p95 of the metrics ``sizes`` (code -> finite count) by radix
    selection over the order keys, 16 bits per pass; see ``metric_summaries``."""
    # wanted order statistics per metric: rank -> [prefix, bits known, rank within prefix]
    state: dict[tuple[int, int], list[int]] = {}
    for c, size in sizes.items():
        for lo, hi, _ in _quantile_ranks(size).values():
            for r in (lo, hi):
                state[(c, r)] = [0, 0, r]
    found: dict[tuple[int, int], float] = {}
    while len(found) < len(state):
        pending = {k: s for k, s in state.items() if k not in found}
        # (metric, prefix, bits) -> histogram or collected values
        hists: dict[tuple[int, int, int], Any] = {}
        collect: dict[tuple[int, int, int], list[Any]] = {}
        for (c, _), st in pending.items():
            prefix, bits = st[0], st[1]
            key = (c, prefix, bits)
            if key in hists or key in collect:
                continue
            if bits and _bucket_size(state, c, prefix, bits) <= BUCKET_COLLECT_MAX:
                collect[key] = []
            else:
                hists[key] = np.zeros(1 << 16, dtype=np.int64)
        wanted = {c for c, _, _ in (*hists, *collect)}
        for b in batches():
            d = _Decoded(b, codes, exclude)
            sel = np.isin(d.code, list(wanted)) & np.isfinite(d.value)
            if not sel.any():
                continue
            cs, keys = d.code[sel], order_keys(d.value[sel])
            for c, prefix, bits in (*hists, *collect):
                m = cs == c
                if bits:
                    m &= (keys >> np.uint64(64 - bits)) == np.uint64(prefix)
                k = keys[m]
                if not k.size:
                    continue
                if (c, prefix, bits) in collect:
                    collect[(c, prefix, bits)].append(k)
                else:
                    digit = (k >> np.uint64(48 - bits)) & np.uint64(0xFFFF)
                    hists[(c, prefix, bits)] += np.bincount(
                        digit.astype(np.int64), minlength=1 << 16
                    )
        for (c, r), s in pending.items():
            prefix, bits, rr = s[0], s[1], s[2]
            if (c, prefix, bits) in collect:
                ks = np.sort(np.concatenate(collect[(c, prefix, bits)] or [np.empty(0, np.uint64)]))
                found[(c, r)] = from_key(int(ks[rr]))
                continue
            hist = hists[(c, prefix, bits)]
            cum = np.cumsum(hist)
            digit = int(np.searchsorted(cum, rr, side="right"))
            below = int(cum[digit - 1]) if digit else 0
            s[:] = [(prefix << 16) | digit, bits + 16, rr - below]
            s.append(int(hist[digit]))  # the bucket's size, for _bucket_size
            if bits + 16 == 64:
                found[(c, r)] = from_key(s[0])
    out: dict[int, dict[str, float]] = {}
    for c, size in sizes.items():
        res: dict[str, float] = {}
        for name, (lo, hi, g) in _quantile_ranks(size).items():
            a, b2 = found[(c, lo)], found[(c, hi)]
            res[name] = float(np.mean([a, b2])) if name == "median" else numpy_lerp(a, b2, g)
        out[c] = res
    return out


def _bucket_size(state: dict[tuple[int, int], list[int]], c: int, prefix: int, bits: int) -> int:
    """The number of values of metric ``c`` under ``prefix`` (from the last histogram)."""
    for (c2, _), s in state.items():
        if c2 == c and s[0] == prefix and s[1] == bits and len(s) > 3:
            return s[3]
    return BUCKET_COLLECT_MAX + 1
