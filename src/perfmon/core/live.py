"""``LiveState``: a run's live state, folded from samples into bounded aggregates.

The engine feeds it (``add_session`` when a session is scheduled, ``update_session`` as it
runs and ends, ``add_batch`` with every decoded batch, ``add_malformed`` with dropped probe
lines), the gates read it through the ``perfmon.core.gates.MetricSource`` protocol (``reduce``
and ``kind``, implemented structurally here), and a few times a second the engine takes an
immutable ``Snapshot`` of it for viewers, headless progress and exporters.

Memory is bounded for any duration: each metric keeps one
``perfmon.core.aggregate.MetricAggregate`` (a fixed-size reservoir and a fixed number of
time buckets); the sessions table keeps the latest ``max_session_rows`` rows (and every
running or pending one), with the counts that the status bar shows (sessions done, malformed
lines) kept incrementally over all sessions; the per-session values of statistical gates keep
the latest ``max_session_values`` sessions per (metric, group, variant). So a 72-hour soak
takes the same memory after an hour as after three days. The exact numbers of the report come
from the recorded run directory instead, over every session.

Rules:

- samples of warm-up sessions (``SessionSpec.warmup``) are counted in ``samples_total`` and
  in their session's row, but not folded into the metric aggregates: warm-ups are excluded
  from statistics;
- a metric's kind is the kind of its first sample;
- sliding windows (``reduce(..., window_s=W)``) end at the latest sample time seen by this
  state, so a metric that stopped reporting has no samples in a short window;
- a session row's ``samples`` and ``malformed`` are the larger of what the engine reported in
  the ``SessionResult`` and what was counted here through ``add_batch`` and
  ``add_malformed``, so either way of reporting them (or both) gives the same numbers.
"""

from __future__ import annotations

import dataclasses
import math
import re
import zlib
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from perfmon.core.aggregate import MetricAggregate, check_reduce_args
from perfmon.core.batch import SampleBatch
from perfmon.core.commands import SPLIT_LABEL_RE, CommandError, Split, parse_command
from perfmon.core.grouping import GroupedAggregates, Labels
from perfmon.core.labels import Matcher, Selector, canonical, selector_matches, session_labels
from perfmon.core.model import (
    GateResult,
    MetricKind,
    Sample,
    SessionResult,
    SessionSpec,
    SessionStatus,
)
from perfmon.core.noise import NOISE_BACKGROUND_SHARE, NOISE_BUSY
from perfmon.core.snapshot import (
    SERIES_POINTS,
    SNAPSHOT_VERSION,
    MetricSummary,
    SessionRow,
    Snapshot,
)
from perfmon.core.stats import SessionGroup
from perfmon.core.text import one_line

__all__ = [
    "DROPPED_NAMES_EXACT",
    "DROPPED_NAMES_METRIC",
    "DROPPED_SAMPLES_METRIC",
    "GROUP_RESERVOIR",
    "MAX_GROUP_ROWS",
    "MAX_METRICS",
    "MAX_METRIC_NAME_BYTES",
    "MAX_SPLIT_ROWS",
    "PERFMON_METRICS",
    "SNAPSHOT_MAX_METRICS",
    "SPLIT_LABEL_RE",
    "LiveState",
    "parse_split_command",
]

MAX_METRICS = 1000
"""Default cap on distinct metric names per run (``[campaign] max_metrics``)."""

MAX_METRIC_NAME_BYTES = 200
"""Default cap on a metric name's length in bytes (``[campaign] max_metric_name_bytes``); the
protocol alone would allow names of nearly ``perfmon.core.protocol.MAX_LINE`` (4096) bytes."""

SNAPSHOT_MAX_METRICS = 128
"""Most metric summaries one snapshot carries (each has a ``SERIES_POINTS`` series): the
campaign's gate metrics and perfmon's own first, then by name. ``Snapshot.metrics_total``
says how many there are; every one is in the recording and the report."""

DROPPED_NAMES_EXACT = 100_000
"""Distinct dropped names are counted exactly up to this many (a set of 64-bit hashes, a few
MB); beyond it the count is shown as "more than" this (``Snapshot.dropped_names_capped``)."""

DROPPED_SAMPLES_METRIC = "perfmon_dropped_samples_total"
"""Counter recorded for every batch that lost samples to a name cap: its increments are the
samples dropped, per session, so the recording itself says what was left out."""

DROPPED_NAMES_METRIC = "perfmon_dropped_metric_names"
"""Gauge recorded whenever the run's count of distinct dropped names grows: its value is that
count so far (its maximum is the run's)."""

PERFMON_METRICS = frozenset(
    {
        "session_seconds",
        "session_cpu_seconds",
        "session_peak_rss_bytes",
        "session_peak_pss_bytes",
        "session_peak_uss_bytes",
        "rss_bytes",
        "system_memory_percent",
        "system_memory_used_bytes",
        "system_cpu_percent",
        DROPPED_SAMPLES_METRIC,
        DROPPED_NAMES_METRIC,
    }
)
"""Metrics perfmon itself records: always kept, outside the name cap."""

_OVERFLOW = frozenset({DROPPED_SAMPLES_METRIC, DROPPED_NAMES_METRIC})
_LABELS_KEPT = 4096
MAX_SELECTIONS = 1024
"""Most label-selection aggregates one live state keeps (a ``by`` gate over a large matrix
makes one per value); samples of further selections are counted, not kept."""
"""Sessions whose labels the live state keeps for label selections (the latest scheduled)."""

MAX_SPLIT_ROWS = 1024
"""Most (metric, label value) aggregates the live split of the metrics panel keeps
(``LiveState.set_split``); samples of further rows are counted in ``split_samples_dropped``."""

MAX_GROUP_ROWS = 512
"""Default cap on the (metric, workload, variant, set) aggregates kept for the Prometheus
endpoint (``LiveState.track_groups``); samples of further rows are counted, not kept."""

GROUP_RESERVOIR = 256
"""Reservoir size of a group's aggregate: its p50/p95 are exact up to this many samples and
DDSketch estimates beyond (``perfmon.core.aggregate``), as for the pooled aggregates past
theirs; 256 keeps ``MAX_GROUP_ROWS`` rows within a few MB."""


def parse_split_command(command: str) -> str:
    """The label of a viewer's ``split [LABEL]`` command ("" for ``split``: no split), read
    with the one command grammar (``perfmon.core.commands``).

    Raises:
        ValueError: (``CommandError``) if ``command`` is not ``split`` followed by at most one
            label name (``SPLIT_LABEL_RE``).
    """
    parsed = parse_command(command)
    if not isinstance(parsed, Split):
        raise CommandError(f"expected 'split [LABEL]', got {command[:80]!r}")
    return parsed.label


class LiveState:
    """The live, bounded state of one run.

    Implements ``perfmon.core.gates.MetricSource`` (``reduce``, ``kind``) structurally.

    Args:
        run_id: the run directory's name.
        campaign: the campaign's name.
        run_dir: absolute path of the run directory.
        started_t: when the run started, Unix seconds.
        reservoir_size: per-metric reservoir size for quantiles (exact below it).
        series_points: per-metric number of time buckets of the downsampled series.
        session_metrics: metrics to keep one value per session of, for statistical gates
            (``session_values``); None keeps every metric's.
        max_session_rows: finished session rows kept (older ones leave the table; their
            counts stay in the totals, and the recording keeps everything).
        max_session_values: per-session values kept per (metric, group, variant) for the live
            statistical gates: the latest this many sessions (the report uses all of them).
        max_metrics: distinct metric names kept per run (default ``MAX_METRICS``), first come
            first kept; perfmon's own metrics (``PERFMON_METRICS``) and those in
            ``session_metrics`` (the gates' metrics) are always kept and not counted.
        max_metric_name_bytes: longest metric name kept, bytes (``MAX_METRIC_NAME_BYTES``).
        max_group_rows: most (metric, workload, variant, set) aggregates kept once
            ``track_groups`` is asked for (default ``MAX_GROUP_ROWS``).
        windows: window lengths in seconds (the gates' ``window``) that every metric tracks
            from its first sample, with exact counts and sketch quantiles
            (``perfmon.core.aggregate.window_bounds``); another window is tracked from the
            first time it is asked for, and its count says how much it covers.

    Name caps: ``add_batch`` drops the samples of names over either cap before anything is
    folded, counts them per session and per run (``dropped_samples``, ``dropped_names``, shown
    in every snapshot), and returns the batch to record: the kept samples plus, per session
    that lost some, a ``DROPPED_SAMPLES_METRIC`` counter sample and, when the distinct count
    grew, a ``DROPPED_NAMES_METRIC`` gauge sample. The names themselves are not recorded
    (100,000 names would be 100,000 dictionary entries in every reader); the counts are.
    """

    def __init__(
        self,
        *,
        run_id: str,
        campaign: str,
        run_dir: str,
        started_t: float,
        reservoir_size: int = 4096,
        series_points: int = SERIES_POINTS,
        session_metrics: Iterable[str] | None = None,
        max_session_rows: int = 1000,
        max_session_values: int = 2000,
        max_metrics: int = MAX_METRICS,
        max_metric_name_bytes: int = MAX_METRIC_NAME_BYTES,
        selections: Iterable[tuple[str, Selector, Sequence[str]]] = (),
        windows: Iterable[float] = (),
        max_group_rows: int = MAX_GROUP_ROWS,
    ) -> None:
        self.run_id = run_id
        # Window lengths (the gates' ``window``) every metric tracks from its first sample:
        # exact counts, sketch quantiles (perfmon.core.aggregate). Others asked for are
        # tracked from the moment they are first asked for.
        self._windows: set[float] = {float(w) for w in windows}
        self.campaign = campaign
        self.run_dir = run_dir
        self.started_t = started_t
        self.reservoir_size = reservoir_size
        self.series_points = series_points
        self.max_session_rows = max_session_rows
        self.max_session_values = max_session_values
        # Latest session rows, in id order (ids grow): finished ones are evicted oldest first.
        self._results: dict[int, SessionResult] = {}
        self._warmup: set[int] = set()
        self._session_samples: dict[int, int] = {}
        self._session_malformed: dict[int, int] = {}
        # Counts over every session ever added, kept incrementally.
        self._sessions_added = 0
        self._sessions_done = 0
        self._malformed_total = 0
        self._row_malformed: dict[int, int] = {}
        self._groups: dict[SessionGroup, int] = {}  # group -> measured sessions finished OK
        self._variants: dict[str, None] = {}
        # Values of evicted sessions: (metric, group, variant) -> the latest values.
        self._folded: dict[tuple[str, SessionGroup, str], deque[float]] = {}
        self._samples_total = 0
        self._kinds: dict[str, MetricKind] = {}
        self._metrics: dict[str, MetricAggregate] = {}
        self._latest_t = -math.inf
        self._session_metrics = None if session_metrics is None else frozenset(session_metrics)
        # (session, metric) -> [count, sum, last_t, last]; measured sessions only.
        self._per_session: dict[tuple[int, str], list[float]] = {}
        # Name caps (see the class docstring).
        self.max_metrics = max_metrics
        self.max_metric_name_bytes = max_metric_name_bytes
        self._reserved = PERFMON_METRICS | (self._session_metrics or frozenset())
        self._admitted: set[str] = set()  # workload names kept (at most max_metrics)
        self._refused: set[str] = set()  # the latest refused names (a bounded cache)
        self._dropped_hashes: set[int] = set()  # distinct dropped names, up to the bound
        self.dropped_samples = 0
        """Samples dropped by the name caps, over the whole run."""
        self.dropped_long_samples = 0
        """Of ``dropped_samples``, those of names longer than ``max_metric_name_bytes``."""
        self.dropped_names = 0
        """Distinct names dropped (exact up to ``DROPPED_NAMES_EXACT``, then it stops)."""
        self.dropped_names_capped = False
        """True once more than ``DROPPED_NAMES_EXACT`` distinct names were dropped."""
        self._session_dropped: dict[int, int] = {}
        # Label selections of gates (issue 11): metric -> [(matchers, by labels)], and one
        # aggregate per (metric, matchers with the by labels' values as '=' matchers).
        self._selections: dict[str, list[tuple[Selector, tuple[str, ...]]]] = {}
        for metric, selector, by in selections:
            entry = (canonical(selector), tuple(by))
            if entry not in self._selections.setdefault(metric, []):
                self._selections[metric].append(entry)
        self._selected: dict[tuple[str, Selector], MetricAggregate] = {}
        self._session_labels: dict[int, dict[str, str]] = {}
        self._target_cache: dict[tuple[int, str], list[tuple[str, Selector]]] = {}
        self.selection_samples_dropped = 0
        """Samples not folded into a label selection because ``MAX_SELECTIONS`` were full
        (the gates reading them stay pending live; the report judges them exactly)."""
        # The metrics panel's split by one label (issue 11): see ``set_split``.
        self.split_label = ""
        """The label the metrics are split by ("" when none)."""
        self.split_since_t = 0.0
        """From when the split's aggregates count samples, Unix seconds."""
        self._split: GroupedAggregates | None = None  # rows (metric, label value)
        # Each metric per (workload, variant, set), for Prometheus (issue 16): see
        # ``track_groups``; None (and nothing paid) unless the endpoint asks for it.
        self.max_group_rows = max_group_rows
        self._groups_agg: GroupedAggregates | None = None

    # -- feeding -----------------------------------------------------------------------

    def add_session(self, spec: SessionSpec) -> None:
        """Add a scheduled session (a PENDING row; an existing row keeps its result).

        Args:
            spec: the session.
        """
        if spec.id not in self._results:
            self._register(spec)
            self._results[spec.id] = SessionResult(spec=spec)

    def update_session(self, result: SessionResult) -> None:
        """Record a session's new status, wall time, CPU time or peak RSS.

        A copy of ``result`` is kept, so the engine may go on mutating its own.

        Args:
            result: the session's result as the supervisor has it now.
        """
        sid = result.spec.id
        old = self._results.get(sid)
        if old is None:
            self._register(result.spec)
        was_finished = old is not None and old.status.finished
        self._results[sid] = dataclasses.replace(result)
        if result.status.finished and not was_finished:
            self._sessions_done += 1
            if result.status is SessionStatus.OK and not result.spec.warmup:
                group = _group_of(result.spec)
                self._groups[group] = self._groups.get(group, 0) + 1
        self._recount_malformed(sid)
        self._evict()

    def _register(self, spec: SessionSpec) -> None:
        """Count a session the first time it is seen."""
        self._sessions_added += 1
        if spec.warmup:
            self._warmup.add(spec.id)
        else:
            self._groups.setdefault(_group_of(spec), 0)
            self._variants.setdefault(spec.variant, None)
            if self._split is not None:
                self._split.note_session(spec)
            if self._groups_agg is not None:
                self._groups_agg.note_session(spec)
            if self._selections:
                self._session_labels[spec.id] = session_labels(
                    variant=spec.variant,
                    workload=spec.workload,
                    set_name=spec.set_name,
                    params=spec.params,
                )
                # Bounded: samples come while a session runs, so only recent ones matter.
                while len(self._session_labels) > _LABELS_KEPT:
                    del self._session_labels[next(iter(self._session_labels))]

    @property
    def selections_full(self) -> bool:
        """True once samples were dropped because ``MAX_SELECTIONS`` label selections were
        kept: a ``by`` group without data may then be one that was not kept, so gates keep it
        (pending) instead of leaving it out as a group that emits nothing."""
        return self.selection_samples_dropped > 0

    def _targets(self, sid: int, metric: str) -> list[tuple[str, Selector]]:
        """The selection aggregates one session's samples of ``metric`` fold into (cached)."""
        cached = self._target_cache.get((sid, metric))
        if cached is not None:
            return cached
        labels = {} if sid < 0 else self._session_labels.get(sid)
        if labels is None:
            return []
        out = []
        for selector, by in self._selections.get(metric, ()):
            if not selector_matches(selector, labels) or any(k not in labels for k in by):
                continue
            extra = tuple(Matcher(k, "=", labels[k]) for k in by)
            out.append((metric, canonical((*selector, *extra))))
        self._target_cache[(sid, metric)] = out
        while len(self._target_cache) > _LABELS_KEPT:
            del self._target_cache[next(iter(self._target_cache))]
        return out

    def _fold_selected(self, batch: SampleBatch) -> None:
        """Fold a batch's samples into the aggregates of the gates' label selections."""
        names = batch.metrics
        if not any(name in self._selections for name in names):
            return
        pairs = batch.session * len(names) + batch.key
        for pair in np.unique(pairs).tolist():
            sid, key = divmod(pair, len(names))
            name = names[key]
            if name not in self._selections or sid in self._warmup:
                continue
            targets = self._targets(sid, name)
            if not targets:
                continue
            sel = pairs == pair
            ts, vs = batch.t[sel], batch.value[sel]
            for target in targets:
                agg = self._selected.get(target)
                if agg is None:
                    if len(self._selected) >= MAX_SELECTIONS:
                        self.selection_samples_dropped += int(ts.size)
                        continue
                    agg = self._selected[target] = MetricAggregate(
                        self._kinds[name],
                        reservoir_size=self.reservoir_size,
                        series_points=self.series_points,
                        seed=zlib.crc32(name.encode()),
                    )
                agg.add_many(ts, vs)

    # -- the metrics panel's split by a label (issue 11) -----------------------------------

    def set_split(self, label: str, now: float) -> None:
        """Split the snapshot's metrics by one label from now on ("" for no split).

        A viewer asks for it (the ``split LABEL`` command); the live state then folds each
        measured session's samples also into one aggregate per (metric, the session's value of
        ``label``), and every snapshot carries those rows (``Snapshot.split_metrics``). The
        split counts samples from ``now`` on (``split_since_t``): the live state keeps no
        samples to go back to (the recording does, and a finished run's replay splits all of
        it). Nothing is folded while no split is asked for, so the ingest path pays for a split
        only while one is shown, and for one label at a time: asking for another label (or
        the same one again) starts afresh. Machine-wide samples (``SYSTEM_SESSION``) and
        sessions without the label are not split (the panel shows their pooled row).

        Args:
            label: ``variant``, ``workload``, ``set``, a matrix key, or "" to stop splitting.
            now: the time the split starts, Unix seconds.

        Raises:
            ValueError: if ``label`` is not a label name (``SPLIT_LABEL_RE``).
        """
        if label and not SPLIT_LABEL_RE.match(label):
            raise ValueError(f"not a label name: {label[:80]!r}")
        self.split_label = label
        self.split_since_t = float(now) if label else 0.0
        self._split = None
        if label:
            self._split = GroupedAggregates(
                self._split_labels,
                self._kinds,
                max_rows=MAX_SPLIT_ROWS,
                reservoir_size=self.reservoir_size,
                series_points=self.series_points,
                since_t=now,
            )
            for result in self._results.values():
                if not result.spec.warmup:
                    self._split.note_session(result.spec)

    def _split_labels(self, spec: SessionSpec) -> Labels | None:
        """A session's value of the split label, as a row's labels (None: it has none)."""
        label = self.split_label
        if label in ("variant", "workload", "set"):
            value = {"variant": spec.variant, "workload": spec.workload, "set": spec.set_name}[
                label
            ]
            return ((label, value),)
        found = [str(v) for k, v in spec.params if k == label]
        return ((label, found[0]),) if found else None

    def flush_split(self) -> None:
        """Fold the samples queued for the split and the groups into their aggregates
        (``snapshot`` does it; ``perfmon.core.grouping.GroupedAggregates.flush``)."""
        if self._split is not None:
            self._split.flush()
        if self._groups_agg is not None:
            self._groups_agg.flush()

    @property
    def split_samples_dropped(self) -> int:
        """Samples not folded into the split because ``MAX_SPLIT_ROWS`` rows were full."""
        return 0 if self._split is None else self._split.samples_dropped

    @property
    def split_work_s(self) -> float:
        """CPU-clock seconds spent on the split (queueing and folding) since it was asked
        for: what showing a split costs the ingest path (``bench/ingest.py`` reports it)."""
        return 0.0 if self._split is None else self._split.work_s

    def _split_summaries(self) -> tuple[MetricSummary, ...]:
        """The split's rows for a snapshot: by metric (the snapshot's metrics first), then by
        label value, at most ``SNAPSHOT_MAX_METRICS`` of them."""
        if self._split is None:
            return ()
        self._split.flush()
        shown = set(self._snapshot_metrics())
        keys = sorted(self._split.rows, key=lambda k: (k[0] not in shown, k[0], k[1]))
        return self._split.summaries(_summary, keys[:SNAPSHOT_MAX_METRICS])

    # -- workload metrics per workload/variant/set (issue 16 point 5: Prometheus) ----------

    def track_groups(self, now: float) -> None:
        """Keep each metric also per (workload, variant, set) from now on (idempotent).

        The Prometheus endpoint (``perfmon run --metrics-addr``) asks for it before the run
        starts; nothing is grouped otherwise, so without the endpoint the ingest path costs
        what it did. The rows are ``perfmon.core.grouping.GroupedAggregates`` (the split's
        machinery): at most ``max_group_rows`` of them (and those of the gates' metrics and
        perfmon's own, which a flood cannot push out), each with a ``GROUP_RESERVOIR``-value
        reservoir and no series, folded at each snapshot; a snapshot carries every row
        (``Snapshot.group_metrics``, without series) and what the cap refused.
        Machine-wide samples (``SYSTEM_SESSION``) and warm-ups are not grouped.

        Args:
            now: from when the groups count samples, Unix seconds.
        """
        if self._groups_agg is not None:
            return
        self._groups_agg = GroupedAggregates(
            _group_labels,
            self._kinds,
            max_rows=self.max_group_rows,
            reservoir_size=min(self.reservoir_size, GROUP_RESERVOIR),
            series_points=2,
            since_t=now,
            keep=self._reserved - _OVERFLOW,
            skip=_OVERFLOW,
        )
        for result in self._results.values():
            if not result.spec.warmup:
                self._groups_agg.note_session(result.spec)

    @property
    def groups_work_s(self) -> tuple[float, float]:
        """Seconds (``time.perf_counter``) spent on the groups since ``track_groups``:
        ``(queueing on the ingest path, folding at the snapshots)``, what the Prometheus
        endpoint costs the live state (``bench/fleet.py --scrape`` reports it)."""
        g = self._groups_agg
        return (0.0, 0.0) if g is None else (g.queue_s, g.flush_s)

    def _recount_malformed(self, sid: int) -> None:
        """Keep ``_malformed_total`` equal to the sum of every session's malformed count."""
        r = self._results.get(sid)
        now = max(r.malformed if r is not None else 0, self._session_malformed.get(sid, 0))
        before = self._row_malformed.get(sid, 0)
        if now != before:
            self._malformed_total += now - before
            self._row_malformed[sid] = now

    def _evict(self) -> None:
        """Drop the oldest finished rows beyond ``max_session_rows``, folding their values."""
        excess = len(self._results) - self.max_session_rows
        if excess <= 0:
            return
        for sid in list(self._results):
            if excess <= 0:
                break
            r = self._results[sid]
            if not r.status.finished:
                continue
            self._fold_session(r)
            del self._results[sid]
            self._session_samples.pop(sid, None)
            self._session_malformed.pop(sid, None)
            self._row_malformed.pop(sid, None)
            self._session_dropped.pop(sid, None)
            excess -= 1

    def _fold_session(self, r: SessionResult) -> None:
        """Move an evicted session's per-session values into the bounded ``_folded`` deques."""
        sid, spec = r.spec.id, r.spec
        keys = [key for key in self._per_session if key[0] == sid]
        if spec.warmup or r.status is not SessionStatus.OK:
            for key in keys:
                del self._per_session[key]
            return
        group = _group_of(spec)
        for key in keys:
            metric = key[1]
            value = self._value_of(metric, self._per_session.pop(key))
            if value is None:
                continue
            dq = self._folded.get((metric, group, spec.variant))
            if dq is None:
                dq = self._folded[(metric, group, spec.variant)] = deque(
                    maxlen=self.max_session_values
                )
            dq.append(value)

    def _value_of(self, metric: str, entry: list[float]) -> float | None:
        """A session's value of a metric from its [count, sum, last_t, last] accumulator."""
        if not entry[0]:
            return None
        kind = self._kinds.get(metric)
        if kind is MetricKind.VALUE:
            return entry[3]
        if kind is MetricKind.COUNTER:
            return entry[1]
        return entry[1] / entry[0]

    def add_malformed(self, session: int, n: int) -> None:
        """Count ``n`` malformed probe lines dropped from ``session``.

        Args:
            session: session id.
            n: number of lines (>= 0).
        """
        self._session_malformed[session] = self._session_malformed.get(session, 0) + n
        self._recount_malformed(session)

    def add_batch(self, batch: SampleBatch) -> SampleBatch:
        """Fold a columnar batch of samples in (the ingest hot path).

        Samples of names over the name caps are dropped and counted first (see the class
        docstring). Samples are counted per session with NumPy, warm-up sessions' samples
        are masked out, and each metric's samples (in batch order) are folded with one
        vectorised ``MetricAggregate.add_many``.

        Args:
            batch: decoded samples, any sessions and metrics, in any order.

        Returns:
            The batch to record: ``batch`` itself when nothing was dropped, else the kept
            samples followed by the overflow counters.
        """
        batch = self._admit(batch)
        self._fold_batch(batch)
        return batch

    def _admit(self, batch: SampleBatch) -> SampleBatch:
        """Apply the name caps to a batch (see the class docstring)."""
        names = batch.metrics
        if not len(batch):
            return batch
        admitted, reserved = self._admitted, self._reserved
        if all(name in admitted or name in reserved for name in names) and not (
            _OVERFLOW.intersection(names)
        ):
            return batch  # the common case: one set lookup per distinct name in the batch
        keep = np.ones(len(names), dtype=bool)
        long_key = np.zeros(len(names), dtype=bool)
        grew = False
        for i, name in enumerate(names):
            if name in admitted or (name in reserved and name not in _OVERFLOW):
                continue
            if name in _OVERFLOW:  # only perfmon may write its overflow counters
                keep[i] = False
                continue
            if len(name) > self.max_metric_name_bytes:  # metric names are ASCII
                keep[i] = False
                long_key[i] = True
            elif name not in self._refused and len(admitted) < self.max_metrics:
                admitted.add(name)
                continue
            else:
                keep[i] = False
            grew |= self._count_dropped_name(name)
        mask = keep[batch.key]
        if mask.all():
            return batch
        dropped_sessions = batch.session[~mask]
        self.dropped_samples += int(dropped_sessions.size)
        self.dropped_long_samples += int(long_key[batch.key[~mask]].sum())
        remap = np.cumsum(keep, dtype=np.int64) - 1
        kept = SampleBatch(
            batch.t[mask],
            batch.session[mask],
            remap[batch.key[mask]].astype(np.int32),
            batch.value[mask],
            tuple(n for n, k in zip(names, keep, strict=True) if k),
            tuple(k_ for k_, k in zip(batch.kinds, keep, strict=True) if k),
        )
        t_end = float(batch.t[~mask].max())
        extra: list[Sample] = []
        uniq, counts = np.unique(dropped_sessions, return_counts=True)
        for sid, c in zip(uniq.tolist(), counts.tolist(), strict=True):
            self._session_dropped[sid] = self._session_dropped.get(sid, 0) + c
            extra.append(Sample(t_end, sid, DROPPED_SAMPLES_METRIC, float(c), MetricKind.COUNTER))
        if grew:
            extra.append(
                Sample(
                    t_end,
                    int(uniq[-1]),
                    DROPPED_NAMES_METRIC,
                    float(self.dropped_names),
                    MetricKind.GAUGE,
                )
            )
        return SampleBatch.concat([kept, SampleBatch.from_samples(extra)])

    def _count_dropped_name(self, name: str) -> bool:
        """Count a dropped name once; True when the distinct count grew."""
        refused = self._refused
        if name in refused:
            return False
        if len(refused) >= 4096:  # a bounded cache of recent refusals, for speed only
            refused.clear()
        refused.add(name)
        if self.dropped_names_capped:
            return False
        h = hash(name)
        if h in self._dropped_hashes:
            return False
        if len(self._dropped_hashes) >= DROPPED_NAMES_EXACT:
            self.dropped_names_capped = True
            self._dropped_hashes.clear()  # the count stays; the memory goes
            return False
        self._dropped_hashes.add(h)
        self.dropped_names += 1
        return True

    def _fold_batch(self, batch: SampleBatch) -> None:
        """Fold an admitted batch into the aggregates (the former body of ``add_batch``)."""
        n = len(batch)
        if not n:
            return
        self._samples_total += n
        counts = self._session_samples
        sessions = batch.session
        s0 = int(sessions[0])
        one_session = s0 == int(sessions[-1]) and bool((sessions == s0).all())
        if one_session:
            counts[s0] = counts.get(s0, 0) + n
        else:
            uniq, per = np.unique(sessions, return_counts=True)
            for sid, c in zip(uniq.tolist(), per.tolist(), strict=True):
                counts[sid] = counts.get(sid, 0) + c
        kinds = self._kinds
        # A metric's kind is the kind of its first sample; keys are in first-appearance order.
        for name, kind in zip(batch.metrics, batch.kinds, strict=True):
            if name not in kinds:
                kinds[name] = kind
        self._track_sessions(batch)
        if self._selections:
            self._fold_selected(batch)
        keys, ts, vs = batch.key, batch.t, batch.value
        if one_session:
            if s0 in self._warmup:
                return
        elif self._warmup:
            keep = ~np.isin(sessions, np.fromiter(self._warmup, np.int64, len(self._warmup)))
            if not keep.all():
                keys, ts, vs, sessions = keys[keep], ts[keep], vs[keep], sessions[keep]
                if not len(keys):
                    return
        names = batch.metrics
        # Keys of one name (two kinds from two sessions) fold into the same aggregate.
        groups: dict[str, list[int]] = {}
        for i, name in enumerate(names):
            groups.setdefault(name, []).append(i)
        if self._split is not None:
            self._split.queue(batch.metrics, sessions, keys, ts, vs, one_session)
        if self._groups_agg is not None:
            self._groups_agg.queue(batch.metrics, sessions, keys, ts, vs, one_session)
        if len(names) == 1:
            self._fold(names[0], ts, vs)
            return
        order = np.argsort(keys, kind="stable")
        bounds = np.searchsorted(keys[order], np.arange(len(names) + 1))
        for name, idx in groups.items():
            if len(idx) == 1:
                sel = order[bounds[idx[0]] : bounds[idx[0] + 1]]
            else:
                sel = np.sort(np.concatenate([order[bounds[i] : bounds[i + 1]] for i in idx]))
            if len(sel):
                self._fold(name, ts[sel], vs[sel])

    def _fold(self, metric: str, ts: npt.NDArray[np.float64], vs: npt.NDArray[np.float64]) -> None:
        agg = self._metrics.get(metric)
        if agg is None:
            agg = self._metrics[metric] = MetricAggregate(
                self._kinds[metric],
                reservoir_size=self.reservoir_size,
                series_points=self.series_points,
                seed=zlib.crc32(metric.encode()),  # stable across processes, unlike hash()
                windows=tuple(self._windows),
            )
        agg.add_many(ts, vs)
        if agg.last_t > self._latest_t:
            self._latest_t = agg.last_t

    def _track_sessions(self, batch: SampleBatch) -> None:
        """Fold a batch into per-(session, metric) count, sum and last value."""
        wanted = self._session_metrics
        names = batch.metrics
        if wanted is not None and not any(name in wanted for name in names):
            return
        sessions, keys = batch.session, batch.key
        pairs = sessions * len(names) + keys
        acc = self._per_session
        for pair in np.unique(pairs).tolist():
            sid, key = divmod(pair, len(names))
            name = names[key]
            if sid < 0 or sid in self._warmup or (wanted is not None and name not in wanted):
                continue
            sel = pairs == pair
            vs, ts = batch.value[sel], batch.t[sel]
            i = int(ts.size - 1 - np.argmax(ts[::-1]))  # the latest; on ties the last sent
            entry = acc.get((sid, name))
            if entry is None:
                entry = acc[(sid, name)] = [0.0, 0.0, -math.inf, math.nan]
            entry[0] += float(vs.size)
            entry[1] += float(vs.sum())
            if ts[i] >= entry[2]:
                entry[2], entry[3] = float(ts[i]), float(vs[i])

    # -- MetricSource ------------------------------------------------------------------

    def reduce(
        self,
        func: str,
        metric: str,
        *,
        q: float | None = None,
        window_s: float | None = None,
        where: Selector = (),
    ) -> tuple[float | None, int]:
        """Reduce one metric's (non-warm-up) samples to a number.

        With ``where`` (label matchers), only samples of matching sessions: these are kept in
        their own aggregate per selection given to the constructor (``selections``, see
        ``perfmon.core.gates.live_selections``); a selection not given has no data here.

        Args:
            func: ``"max"``, ``"min"``, ``"mean"``, ``"median"``, ``"quantile"``, ``"sum"``,
                ``"count"`` or ``"last"``; ``count`` of a counter is the sum of its
                increments, of other kinds the number of samples.
            metric: metric name.
            q: quantile in [0, 1], for ``"quantile"``.
            window_s: only the last ``window_s`` seconds up to the latest sample seen by this
                state (``perfmon.core.aggregate.window_bounds``: exact counts, quantiles from
                merged per-bucket DDSketches), or None.

        Returns:
            ``(value, n)``: value in the metric's unit and the number of samples it was
            computed from; ``(None, 0)`` for an unknown metric or an empty window.

        Raises:
            ValueError: unknown ``func``, bad ``q`` or ``window_s``.
        """
        check_reduce_args(func, q, window_s)
        agg = self._selected.get((metric, canonical(where))) if where else self._metrics.get(metric)
        if agg is None:
            return None, 0
        end_t = self._latest_t if window_s is not None else None
        if window_s is not None and float(window_s) not in self._windows:
            self._windows.add(float(window_s))
            for each in self._metrics.values():
                each.track_window(window_s)
        return agg.reduce(func, q=q, window_s=window_s, end_t=end_t)

    def kind(self, metric: str) -> MetricKind | None:
        """Return the metric's kind (of its first sample), or None if none was seen."""
        return self._kinds.get(metric)

    def session_groups(self) -> list[SessionGroup]:
        """Groups of the measured sessions scheduled so far; see ``MetricSource``."""
        return list(self._groups)

    def finished_sessions(self, group: SessionGroup) -> int:
        """Measured sessions of ``group`` that finished OK; see ``MetricSource``."""
        return self._groups.get(group, 0)

    def session_variants(self) -> list[str]:
        """Variants of the measured sessions scheduled so far; see ``MetricSource``."""
        return list(self._variants)

    def session_values(
        self, metric: str, variant: str | None, *, group: SessionGroup | None = None
    ) -> list[float]:
        """One value per measured session that finished OK; see ``MetricSource``.

        Kept per session as count, sum and last value, so a ``value`` metric gives its last
        value, a ``counter`` its sum and other kinds their mean. Only metrics in
        ``session_metrics`` (when given) are kept, and for sessions that left the table only
        the latest ``max_session_values`` per (metric, group, variant), oldest first.
        """
        out: list[float] = []
        for (m, g, v), values in self._folded.items():
            if m == metric and (variant is None or v == variant) and (group is None or g == group):
                out.extend(values)
        for sid, r in self._results.items():
            spec = r.spec
            if spec.warmup or r.status is not SessionStatus.OK:
                continue
            if variant is not None and spec.variant != variant:
                continue
            if group is not None and _group_of(spec) != group:
                continue
            entry = self._per_session.get((sid, metric))
            value = None if entry is None else self._value_of(metric, entry)
            if value is not None:
                out.append(value)
        return out

    def points(
        self, metric: str, *, window_s: float | None = None, where: Selector = ()
    ) -> tuple[list[float], list[float]]:
        """The metric's downsampled series (bucket means); see ``MetricSource``.

        Times are bucket centres counted from the first bucket; with ``window_s`` only the
        buckets that overlap the last ``window_s`` seconds are given; ``where`` as for
        ``reduce``.
        """
        agg = self._selected.get((metric, canonical(where))) if where else self._metrics.get(metric)
        if agg is None:
            return [], []
        means, _ = agg.series()
        width = agg.bucket_s
        start = 0
        if window_s is not None and width > 0:
            start = max(0, len(means) - math.ceil(window_s / width))
        t = [(i + 0.5) * width for i in range(start, len(means))]
        v = list(means[start:])
        return t, v

    # -- read-outs -----------------------------------------------------------------------

    @property
    def samples_total(self) -> int:
        """Samples ingested, warm-ups included."""
        return self._samples_total

    def snapshot(
        self,
        *,
        now: float,
        state: str,
        gates: Sequence[GateResult] = (),
        verdict: str = "pending",
        message: str = "",
        sessions_total: int | None = None,
    ) -> Snapshot:
        """Take an immutable snapshot of the run.

        Args:
            now: the snapshot's time, Unix seconds.
            state: a ``perfmon.core.snapshot.RunState`` value.
            gates: the gate board as last evaluated, in campaign order.
            verdict: the run's verdict so far (a ``GateState`` value).
            message: the latest notable event.
            sessions_total: sessions planned; default the number of sessions added so far.

        Returns:
            The snapshot: sessions in id order, metrics sorted by name.
        """
        self.flush_split()
        rows: list[SessionRow] = []
        for sid in sorted(self._results):
            r = self._results[sid]
            spec = r.spec
            malformed = max(r.malformed, self._session_malformed.get(sid, 0))
            rows.append(
                SessionRow(
                    id=sid,
                    workload=_clean(spec.workload),
                    variant=_clean(spec.variant),
                    set_name=_clean(spec.set_name),
                    params=_clean(" ".join(f"{k}={v}" for k, v in spec.params)),
                    warmup=spec.warmup,
                    status=r.status.value,
                    status_text=_clean(r.status_text),
                    wall_s=r.wall_s,
                    cpu_s=r.cpu_s,
                    peak_rss_bytes=r.peak_rss_bytes,
                    samples=max(r.samples, self._session_samples.get(sid, 0)),
                    malformed=malformed,
                    background_share=r.extra.get(NOISE_BACKGROUND_SHARE),
                    busy=bool(r.extra.get(NOISE_BUSY)),
                    dropped=self._session_dropped.get(sid, 0),
                )
            )
        metrics = [_summary(name, self._metrics[name]) for name in self._snapshot_metrics()]
        return Snapshot(
            version=SNAPSHOT_VERSION,
            run_id=self.run_id,
            campaign=self.campaign,
            run_dir=self.run_dir,
            state=state,
            started_t=self.started_t,
            now_t=now,
            sessions_total=self._sessions_added if sessions_total is None else sessions_total,
            sessions_done=self._sessions_done,
            samples_total=self._samples_total,
            malformed_total=self._malformed_total,
            sessions=tuple(rows),
            metrics=tuple(metrics),
            gates=tuple(_clean_gate(g) for g in gates),
            verdict=verdict,
            message=_clean(message),
            metrics_total=len(self._metrics),
            dropped_samples=self.dropped_samples,
            dropped_long_samples=self.dropped_long_samples,
            dropped_names=self.dropped_names,
            dropped_names_capped=self.dropped_names_capped,
            max_metrics=self.max_metrics,
            max_metric_name_bytes=self.max_metric_name_bytes,
            split_label=self.split_label,
            split_since_t=self.split_since_t,
            split_metrics=self._split_summaries(),
            split_rows_total=0 if self._split is None else len(self._split.rows),
            split_samples_dropped=self.split_samples_dropped,
            **self._group_fields(),
        )

    def _group_fields(self) -> dict[str, Any]:
        """The snapshot's ``group_*`` fields (empty while no groups are tracked)."""
        groups = self._groups_agg
        if groups is None:
            return {}
        return {
            "group_since_t": groups.since_t,
            "group_metrics": groups.summaries(_group_summary),
            "group_rows_max": groups.max_rows,
            "group_rows_dropped": groups.rows_dropped,
            "group_rows_dropped_capped": groups.rows_dropped_capped,
            "group_samples_dropped": groups.samples_dropped,
        }

    def _snapshot_metrics(self) -> list[str]:
        """The metrics a snapshot carries, sorted by name: all of them when they fit in
        ``SNAPSHOT_MAX_METRICS``, else perfmon's own and the gates' first, then by name."""
        names = sorted(self._metrics)
        if len(names) <= SNAPSHOT_MAX_METRICS:
            return names
        first = [n for n in names if n in self._reserved]
        rest = [n for n in names if n not in self._reserved]
        return sorted((first + rest)[:SNAPSHOT_MAX_METRICS])


def _summary(
    name: str,
    agg: MetricAggregate,
    labels: tuple[tuple[str, str], ...] = (),
    *,
    with_series: bool = True,
) -> MetricSummary:
    """A snapshot's summary of one aggregate (``labels``: the split's or group's labels;
    ``with_series`` False leaves the series out)."""
    p50, p95 = agg.quantiles((0.5, 0.95))
    series, span_s = agg.series() if with_series else ((), 0.0)
    return MetricSummary(
        name=name,
        kind=agg.kind.value,
        count=agg.count,
        total=agg.total,
        last=agg.last,
        min=agg.min,
        max=agg.max,
        mean=agg.mean,
        p50=p50,
        p95=p95,
        series=series,
        series_span_s=span_s,
        series_start_t=agg.series_start_t if series else 0.0,
        labels=tuple((k, _clean(v)) for k, v in labels),
        series_gaps=_gaps_mask(agg.series_filled()) if series else "",
    )


def _group_summary(name: str, agg: MetricAggregate, labels: Labels) -> MetricSummary:
    """A group's summary for ``Snapshot.group_metrics``: as ``_summary``, without the series
    (the exporter serves the latest values; the series stay the pooled rows')."""
    return _summary(name, agg, tuple(labels), with_series=False)


def _group_labels(spec: SessionSpec) -> Labels:
    """A session's (workload, variant, set) labels, the Prometheus endpoint's groups."""
    return (("workload", spec.workload), ("variant", spec.variant), ("set", spec.set_name))


def _gaps_mask(filled: Sequence[bool]) -> str:
    """``MetricSummary.series_gaps``: bit i set when bucket i got no sample ("" for none)."""
    mask = sum(1 << i for i, f in enumerate(filled) if not f)
    return f"{mask:x}" if mask else ""


_UNSAFE_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _clean(text: str) -> str:
    """Campaign or workload text as a snapshot may carry it: one line, no escapes or control
    bytes (``perfmon.core.text.one_line``); unchanged, and not copied, when already clean."""
    return one_line(text) if _UNSAFE_RE.search(text) else text


def _clean_gate(g: GateResult) -> GateResult:
    """A gate result whose name, expression and reason are ``_clean``."""
    name, expr, reason = _clean(g.name), _clean(g.expr), _clean(g.reason)
    if name is g.name and expr is g.expr and reason is g.reason:
        return g
    return dataclasses.replace(g, name=name, expr=expr, reason=reason)


def _group_of(spec: SessionSpec) -> SessionGroup:
    """The (set, workload, matrix values) group a session is compared within."""
    return SessionGroup(spec.set_name, spec.workload, spec.params)
