"""Immutable snapshots of a run's live state: what viewers, headless progress and exporters see.

The engine folds samples into ``perfmon.core.live.LiveState`` and, a few times a second, takes
a ``Snapshot`` of it. A snapshot is plain frozen data: it crosses the daemon's control socket as
JSON (``to_dict`` / ``from_dict``) and a viewer renders it without ever touching the campaign.

Everything in a snapshot is bounded: a metric's series is downsampled to at most
``SERIES_POINTS`` points however long the run, so a snapshot's size does not grow with time;
the live state keeps at most ``max_session_rows`` session rows and, whatever a workload emits,
a snapshot carries at most ``perfmon.core.live.SNAPSHOT_MAX_METRICS`` metrics, of names no
longer than the campaign's ``max_metric_name_bytes`` (``metrics_total`` and the ``dropped_*``
counts say what is not shown). With the defaults a snapshot stays within a few hundred KB
even when a workload emits 100,000 distinct names (tests/test_hostile.py measures it).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from perfmon.core.model import GateResult, GateState

SNAPSHOT_VERSION = 3
"""The snapshot's wire format. 2 (issues 12 and 14): typed ``profiles``, ``profiling``,
``noise``, ``disk_bytes``, ``gate_changes`` and ``gate_evaluation`` fields instead of the
``extra`` dict of version 1, and the ``comparison`` panel. 3 (issue 16): the ``group_*``
fields (each metric per workload/variant/set, for the Prometheus endpoint).
``Snapshot.from_dict`` still decodes versions 1 (no panel) and 2 (no groups)."""
SNAPSHOT_VERSIONS_READ = (1, 2, 3)
SERIES_POINTS = 120


def dropped_text(
    samples: int,
    long_samples: int,
    names: int,
    names_capped: bool,
    max_metrics: int,
    max_name_bytes: int,
) -> str:
    """Say what the metric-name caps dropped, in one line ("" when nothing was).

    Args:
        samples: samples dropped; long_samples: of them, those of over-long names.
        names: distinct names dropped; names_capped: True when ``names`` is a lower bound.
        max_metrics / max_name_bytes: the caps (names per run, bytes per name; 0: unknown).
    """
    if not samples:
        return ""
    why = []
    if samples > long_samples:
        why.append(f"over the {max_metrics:,}-name cap" if max_metrics else "over the name cap")
    if long_samples:
        why.append(
            f"longer than {max_name_bytes:,} bytes" if max_name_bytes else "with too long names"
        )
    at_least = "at least " if names_capped else ""
    plural = "s" if samples != 1 else ""
    return (
        f"dropped {samples:,} sample{plural} of {at_least}{names:,} metric "
        f"name{'s' if names != 1 else ''} {' or '.join(why)} (counted, not kept)"
    )


class RunState:
    """Lifecycle states of a run, as shown in the status bar."""

    STARTING = "starting"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPING = "stopping"
    FINISHED = "finished"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class SessionRow:
    """One row of the sessions table.

    Attributes:
        id: session id (the table's row key).
        workload / variant / set_name: what the session runs and in which set.
        params: matrix parameters as ``"k=v k=v"`` ("" when none).
        warmup: True for a warm-up session (excluded from statistics).
        status: ``SessionStatus`` value; ``status_text``: e.g. ``"exit 3"``, ``"SIGSEGV"``.
        wall_s / cpu_s: seconds, None until known (wall_s grows while running).
        peak_rss_bytes: peak RSS of the session's process tree so far, bytes.
        samples / malformed: probe samples received and malformed lines dropped.
        background_share: the share of the machine's CPU something else used while the
            session ran, in [0, 1] (``perfmon.core.noise``), None until it has finished or
            where it could not be measured.
        busy: True when the session ran on a busy machine (background over the limit).
        dropped: samples of this session dropped by the metric-name caps (counted, not kept).
    """

    id: int
    workload: str
    variant: str
    set_name: str
    params: str
    warmup: bool
    status: str
    status_text: str
    wall_s: float | None
    cpu_s: float | None
    peak_rss_bytes: int | None
    samples: int
    malformed: int
    background_share: float | None = None
    busy: bool = False
    dropped: int = 0


@dataclass(frozen=True, slots=True)
class MetricSummary:
    """Bounded summary of one metric over the whole run so far.

    Attributes:
        name: metric name; ``kind``: ``MetricKind`` value.
        count: samples seen; ``total``: sum of values (for counters, the total count).
        last / min / max / mean: in the metric's unit.
        p50 / p95: quantiles estimated from a bounded reservoir (exact below its size).
        series: at most ``SERIES_POINTS`` values, oldest first, each the mean of one time
            bucket; ``series_span_s``: the wall-clock time the series covers, seconds.
        series_start_t: when the series' first bucket starts, Unix seconds (0.0 when unknown,
            e.g. from an older daemon).
        series_gaps: the buckets of ``series`` that got no sample (they repeat the previous
            mean), as a hexadecimal bit mask (bit i: bucket i is a gap); "" when every bucket
            got one or when unknown (an older daemon). See ``series_filled``.
        labels: ``((label, value), ...)`` of a row of the metrics split by a label
            (``Snapshot.split_metrics``), e.g. ``(("variant", "candidate"),)``; () when the
            row pools every session.
    """

    name: str
    kind: str
    count: int
    total: float
    last: float
    min: float
    max: float
    mean: float
    p50: float
    p95: float
    series: tuple[float, ...] = ()
    series_span_s: float = 0.0
    series_start_t: float = 0.0
    labels: tuple[tuple[str, str], ...] = ()
    series_gaps: str = ""

    def series_filled(self) -> list[bool]:
        """For each bucket of ``series``, whether it got a sample (``series_gaps``); every
        bucket when the mask is empty or malformed."""
        n = len(self.series)
        try:
            gaps = int(self.series_gaps, 16) if self.series_gaps else 0
        except ValueError:
            gaps = 0
        return [not (gaps >> i) & 1 for i in range(n)]

    def display_name(self) -> str:
        """The name as PromQL writes a selection, e.g. ``session_seconds{variant="candidate"}``
        (the bare name when the row pools every session)."""
        if not self.labels:
            return self.name
        inner = ", ".join(f'{k}="{v}"' for k, v in self.labels)
        return f"{self.name}{{{inner}}}"


# -- the comparison panel (issue 14, point 1) ---------------------------------------------------

MAX_COMPARISON_ROWS = 48
"""Most comparison rows one snapshot carries, over all its metrics (``ComparisonPanel.rows``):
the default metric's rows first; the rest are counted in ``rows_total``."""

MAX_COMPARISON_VALUES = 64
"""Most per-session values one side of a comparison row carries (the latest, in session
order); its n, median and quartiles are computed over all of its values."""


@dataclass(frozen=True, slots=True)
class ComparisonSide:
    """One variant's per-session values in one comparison row.

    Attributes:
        variant: the variant's name.
        n: measured sessions that finished OK (every one, not only those in ``values``).
        median / q1 / q3 / low / high: its median, quartiles (linear interpolation, numpy's
            default), minimum and maximum, in the metric's base unit; None when ``n`` is 0
            (snapshots cross the socket as strict JSON: no NaN).
        values: the latest at most ``MAX_COMPARISON_VALUES`` per-session values, in session
            order (``n - len(values)`` older ones are not carried).
        outliers: how many of all ``n`` values lie beyond 3 scaled MADs of the median
            (``perfmon.core.stats.modified_z_scores``, |z| > 3).
    """

    variant: str
    n: int
    median: float | None
    q1: float | None
    q3: float | None
    low: float | None
    high: float | None
    values: tuple[float, ...] = ()
    outliers: int = 0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ComparisonSide:
        """Inverse of ``dataclasses.asdict``. Raises TypeError/KeyError on a bad dict."""
        return cls(**{**data, "values": tuple(float(v) for v in data.get("values", ()))})


@dataclass(frozen=True, slots=True)
class ComparisonRatio:
    """A variant against the reference variant in one comparison row.

    Attributes:
        variant / against: the candidate and the reference (baseline) variant.
        state: ``"pending"`` (not ``min_sessions`` per side yet, or no interval at this n),
            ``"decided"`` (the interval excludes 1: the change is shown), ``"undecided"``
            (it straddles 1), or ``"provisional"`` (fixed-n inference before the planned n:
            the interval does not hold its level until then).
        text: for people, e.g. ``"1.39x faster [1.30, 1.51]"`` or ``"3 of 5 sessions per
            side"``.
        factor / low / high: how many times better ``variant`` is than ``against`` in the
            metric's direction (> 1: better) and its interval; None while pending, and a
            bound None where the interval is unbounded (beyond the anytime grid).
        level: the interval's confidence (its actual level for the exact rank interval).
        p_value: the fixed-n test's two-sided p-value, or None (anytime-valid inference
            reports no p-value: a fixed-n p-value does not hold its level when looked at
            repeatedly).
        method: how the interval (and p) were computed, for people.
    """

    variant: str
    against: str
    state: str
    text: str
    factor: float | None = None
    low: float | None = None
    high: float | None = None
    level: float | None = None
    p_value: float | None = None
    method: str = ""


@dataclass(frozen=True, slots=True)
class ComparisonRow:
    """One (set, workload, matrix values) group of the comparison panel, for one metric.

    Attributes:
        key: a stable key (``metric|set|workload|params``).
        metric: the per-session metric compared (``session_seconds`` by default).
        set_name / workload / params: the group; ``params`` as ``"k=v k=v"`` ("" when none).
        sides: each variant's values, the reference first.
        ratios: each other variant against the reference.
    """

    key: str
    metric: str
    set_name: str
    workload: str
    params: str
    sides: tuple[ComparisonSide, ...] = ()
    ratios: tuple[ComparisonRatio, ...] = ()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ComparisonRow:
        """Inverse of ``dataclasses.asdict``. Raises TypeError/KeyError on a bad dict."""
        return cls(
            **{
                **data,
                "sides": tuple(ComparisonSide.from_dict(s) for s in data.get("sides", ())),
                "ratios": tuple(ComparisonRatio(**r) for r in data.get("ratios", ())),
            }
        )


@dataclass(frozen=True, slots=True)
class ComparisonPanel:
    """Baseline against candidate, per group and per-session metric (the viewer's panel).

    Computed by the daemon off the sessions' path (``perfmon.engine.live_compare``) only when
    a session finished, and bounded: at most ``MAX_COMPARISON_ROWS`` rows and
    ``MAX_COMPARISON_VALUES`` values per side.

    Attributes:
        metrics: the per-session metrics compared, the default (``session_seconds``) first.
        inference: ``"anytime"`` or ``"fixed"`` (the campaign's ``inference``).
        confidence: the level asked for (``confidence``).
        min_sessions: sessions per side before a ratio is shown.
        rows: the rows, grouped by metric in ``metrics`` order.
        rows_total: rows there were before the cap (``rows_total - len(rows)`` not carried).
    """

    metrics: tuple[str, ...] = ()
    inference: str = "anytime"
    confidence: float = 0.95
    min_sessions: int = 5
    rows: tuple[ComparisonRow, ...] = ()
    rows_total: int = 0

    def rows_of(self, metric: str) -> tuple[ComparisonRow, ...]:
        """The rows of one metric, in group order."""
        return tuple(r for r in self.rows if r.metric == metric)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (``from_dict`` reads it back)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ComparisonPanel:
        """Build a panel from ``to_dict``'s output.

        Raises:
            ValueError: for a malformed dict.
        """
        try:
            return cls(
                **{
                    **data,
                    "metrics": tuple(data.get("metrics", ())),
                    "rows": tuple(ComparisonRow.from_dict(r) for r in data.get("rows", ())),
                }
            )
        except (TypeError, KeyError, AttributeError) as exc:
            raise ValueError(f"malformed comparison panel: {exc}") from exc


def _finite_fields(gate: dict[str, Any]) -> None:
    """Set a gate dict's non-finite ``value``/``ci_low``/``ci_high`` (and its groups') to None."""
    for key in ("value", "ci_low", "ci_high"):
        v = gate.get(key)
        if isinstance(v, float) and not math.isfinite(v):
            gate[key] = None
    for group in gate.get("groups") or ():
        if isinstance(group, dict):
            _finite_fields(group)


def _known(cls: type[Any], data: Any) -> dict[str, Any]:
    """``data``'s keys that are fields of ``cls`` (newer writers may add keys).

    Raises:
        TypeError: if ``data`` is not a mapping.
    """
    if not isinstance(data, dict):
        raise TypeError(f"{cls.__name__} needs an object, got {type(data).__name__}")
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}


@dataclass(frozen=True, slots=True)
class ProfileEntry:
    """One py-spy profile of one session, as the viewer sees it (the run's
    ``perfmon.engine.profiler.ProfileRecord``, one line of ``profiles/index.jsonl``).

    Attributes:
        name: file stem, e.g. ``"s0007-p01"``; the stacks are ``profiles/<name>.collapsed``.
        session: session id; workload / variant / params / set_name: what the session ran.
        started_t: Unix seconds when sampling began; seconds: wall time sampled.
        rate_hz: samples per second asked of py-spy; nonblocking: ``--nonblocking`` was used.
        reason: why it was taken (``"on demand"``, ``"every 5th session"``).
        status: ``"ok"``, ``"partial"`` or ``"failed"``; message: a sentence saying so.
        samples: stack samples written; errors: samples py-spy could not take.
        pyspy_cpu_s: CPU seconds py-spy itself used, None when unknown.
    """

    name: str
    session: int
    workload: str
    variant: str
    params: str
    set_name: str
    started_t: float
    seconds: float
    rate_hz: int
    nonblocking: bool
    reason: str
    status: str
    samples: int
    errors: int
    message: str
    pyspy_cpu_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (the keys of ``profiles/index.jsonl``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProfileEntry:
        """Inverse of ``to_dict``; unknown keys are ignored.

        Raises:
            TypeError: if ``data`` is not a dict or a field is missing.
        """
        return cls(**_known(cls, data))


@dataclass(frozen=True, slots=True)
class GateChange:
    """A gate that changed state while the run was watched (one ``events.jsonl`` event).

    Attributes:
        t: when, Unix seconds; gate: its name; old / new: ``GateState`` values;
        reason: the gate's reason line at the change.
    """

    t: float
    gate: str
    old: str
    new: str
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data: ``{t, gate, old, new, reason}``."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GateChange:
        """Inverse of ``to_dict``; unknown keys are ignored.

        Raises:
            TypeError: if ``data`` is not a dict or a field is missing.
        """
        return cls(**_known(cls, data))


@dataclass(frozen=True, slots=True)
class NoiseCounts:
    """How quiet the machine was so far (``perfmon.core.noise``).

    Attributes:
        measured: sessions with noise figures; busy: of them, run on a busy machine;
        repeated: attempts the noise guard repeated; limit: the campaign's background-CPU
        limit, a share in [0, 1] (None: unknown); unavailable: readings without
        ``/proc/stat``.
    """

    measured: int = 0
    busy: int = 0
    repeated: int = 0
    limit: float | None = None
    unavailable: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NoiseCounts:
        """Inverse of ``to_dict``; unknown keys are ignored, missing ones take defaults.

        Raises:
            TypeError: if ``data`` is not a dict.
        """
        return cls(**_known(cls, data))


@dataclass(frozen=True, slots=True)
class GateEvaluationStats:
    """What evaluating the gates has cost so far (``perfmon.engine.gate_worker``).

    Attributes:
        evaluations: evaluation rounds; gate_evaluations: gates evaluated over them;
        last_s: the last round's wall time, seconds; busy_s: CPU seconds spent in all.
    """

    evaluations: int = 0
    gate_evaluations: int = 0
    last_s: float = 0.0
    busy_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GateEvaluationStats:
        """Inverse of ``to_dict``; unknown keys are ignored, missing ones take defaults.

        Raises:
            TypeError: if ``data`` is not a dict.
        """
        return cls(**_known(cls, data))


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The state of a run at one moment.

    Attributes:
        version: ``SNAPSHOT_VERSION``.
        run_id: the run directory's name; ``campaign``: the campaign's name.
        run_dir: absolute path of the run directory.
        state: a ``RunState`` value.
        started_t / now_t: Unix seconds; elapsed time is ``now_t - started_t``.
        sessions_total / sessions_done: sessions scheduled and finished.
        samples_total / malformed_total: samples ingested and malformed lines dropped.
        sessions: the sessions table, in schedule order.
        metrics: one summary per metric, sorted by name.
        gates: the gate board, in campaign order.
        verdict: the run's verdict so far (``GateState`` value: pass only if every gate passes).
        message: the latest notable event, e.g. ``"report written to runs/.../report.md"``.
        profiles: the latest py-spy profiles (at most
            ``perfmon.engine.profiler.SNAPSHOT_PROFILES``); ``profiling``: the sessions being
            sampled now.
        noise: how quiet the machine was so far (None: not measured).
        disk_bytes: bytes the run directory takes on disk (None: not measured yet).
        gate_changes: the latest gate changes, oldest first (None: the snapshot does not carry
            them, e.g. one rebuilt from a recording: read ``events.jsonl``).
        gate_evaluation: what evaluating the gates has cost (None: not known).
        metrics_total: metrics kept by the run (``metrics`` may show fewer; -1: unknown, from
            an older daemon).
        dropped_samples: samples dropped by the metric-name caps over the run, of which
            ``dropped_long_samples`` for names longer than ``max_metric_name_bytes``;
            ``dropped_names``: distinct names dropped (at least, when
            ``dropped_names_capped``); ``max_metrics`` / ``max_metric_name_bytes``: the caps.
        split_label: the label the metrics are split by for the metrics panel ("" for none;
            a viewer asks with the ``split LABEL`` command); ``split_since_t``: from when the
            split counts samples, Unix seconds (the run's start for a replayed run);
            ``split_metrics``: one summary per (metric, label value), each with its
            ``labels``, at most ``perfmon.core.live.SNAPSHOT_MAX_METRICS`` of them, of
            ``split_rows_total`` kept; ``split_samples_dropped``: samples not split because
            ``perfmon.core.live.MAX_SPLIT_ROWS`` rows were full.
        group_since_t: from when each metric is also kept per (workload, variant, set),
            Unix seconds; 0.0 when it is not (only the Prometheus endpoint asks for it,
            ``perfmon.core.live.LiveState.track_groups``).
        group_metrics: one summary per (metric, workload, variant, set), sorted, each with
            its ``labels`` ``(("workload", w), ("variant", v), ("set", s))`` and no series;
            at most ``group_rows_max`` of them (every row kept: bounded by the cap).
        group_rows_dropped: distinct (metric, group) rows refused by that cap (at least,
            when ``group_rows_dropped_capped``); ``group_samples_dropped``: their samples.
    """

    version: int
    run_id: str
    campaign: str
    run_dir: str
    state: str
    started_t: float
    now_t: float
    sessions_total: int
    sessions_done: int
    samples_total: int
    malformed_total: int
    sessions: tuple[SessionRow, ...] = ()
    metrics: tuple[MetricSummary, ...] = ()
    gates: tuple[GateResult, ...] = ()
    verdict: str = GateState.PENDING.value
    message: str = ""
    metrics_total: int = -1
    dropped_samples: int = 0
    dropped_long_samples: int = 0
    dropped_names: int = 0
    dropped_names_capped: bool = False
    max_metrics: int = 0
    max_metric_name_bytes: int = 0
    # -- the metrics split by a label (issue 11) --
    split_label: str = ""
    split_since_t: float = 0.0
    split_metrics: tuple[MetricSummary, ...] = ()
    split_rows_total: int = 0
    split_samples_dropped: int = 0
    # -- each metric per workload/variant/set, for Prometheus (issue 16, version 3) --
    group_since_t: float = 0.0
    group_metrics: tuple[MetricSummary, ...] = ()
    group_rows_max: int = 0
    group_rows_dropped: int = 0
    group_rows_dropped_capped: bool = False
    group_samples_dropped: int = 0
    comparison: ComparisonPanel | None = None
    """The comparison panel (version 2), None when not computed (older daemons, one variant)."""
    # Typed run-side state (issue 12, point 6; the ``extra`` dict of version 1).
    profiles: tuple[ProfileEntry, ...] = ()
    profiling: tuple[int, ...] = ()
    noise: NoiseCounts | None = None
    disk_bytes: int | None = None
    gate_changes: tuple[GateChange, ...] | None = None
    gate_evaluation: GateEvaluationStats | None = None

    def dropped_text(self) -> str:
        """One line on what the metric-name caps dropped, or "" when nothing was, e.g.
        ``"dropped 99,000 samples of 99,000 metric names over the 1,000-name cap"``."""
        return dropped_text(
            self.dropped_samples,
            self.dropped_long_samples,
            self.dropped_names,
            self.dropped_names_capped,
            self.max_metrics,
            self.max_metric_name_bytes,
        )

    @property
    def elapsed_s(self) -> float:
        """Seconds since the run started."""
        return max(0.0, self.now_t - self.started_t)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict (the control socket's wire form).

        A gate's value or interval bound that is not finite (an anytime-valid sequence still
        unbounded: ``[-100%, +inf%]``) is sent as None, since strict JSON has no infinity; its
        reason still says it in words. Without this the run's final snapshot could not be sent.
        """
        out = asdict(self)
        for gate in out.get("gates", ()):
            _finite_fields(gate)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Snapshot:
        """Build a snapshot from ``to_dict``'s output, of this version or of version 1 (whose
        ``extra`` dict becomes the typed fields; keys it does not know are dropped).

        Raises:
            ValueError: if the version is not one of ``SNAPSHOT_VERSIONS_READ`` (a version 1
                snapshot has no ``comparison``), or a field is missing or malformed.
        """
        version = data.get("version")
        if version not in SNAPSHOT_VERSIONS_READ:
            raise ValueError(f"unsupported snapshot version {version!r}")
        try:
            d = dict(data)
            if version == 1:
                d.update(_typed_extra(d.pop("extra", None) or {}))
            d["version"] = SNAPSHOT_VERSION
            panel = d.get("comparison")
            d["comparison"] = None if panel is None else ComparisonPanel.from_dict(panel)
            d["sessions"] = tuple(SessionRow(**r) for r in d.get("sessions", ()))
            d["metrics"] = tuple(_summary_from_dict(m) for m in d.get("metrics", ()))
            d["gates"] = tuple(GateResult.from_dict(g) for g in d.get("gates", ()))
            d["split_metrics"] = tuple(_summary_from_dict(m) for m in d.get("split_metrics", ()))
            d["group_metrics"] = tuple(_summary_from_dict(m) for m in d.get("group_metrics", ()))
            d.update(_typed_fields(d))
            return cls(**d)
        except (TypeError, KeyError, AttributeError) as exc:
            raise ValueError(f"malformed snapshot: {exc}") from exc


def _summary_from_dict(m: dict[str, Any]) -> MetricSummary:
    """A ``MetricSummary`` from its JSON form (lists back to tuples)."""
    labels = tuple((str(k), str(v)) for k, v in m.get("labels", ()))
    return MetricSummary(**{**m, "series": tuple(m.get("series", ())), "labels": labels})


def _typed_fields(d: dict[str, Any]) -> dict[str, Any]:
    """The typed run-side fields of a version 2 wire dict, decoded."""
    changes = d.get("gate_changes")
    noise, evaluation = d.get("noise"), d.get("gate_evaluation")
    return {
        "profiles": tuple(ProfileEntry.from_dict(p) for p in d.get("profiles") or ()),
        "profiling": tuple(int(s) for s in d.get("profiling") or ()),
        "noise": None if noise is None else NoiseCounts.from_dict(noise),
        "disk_bytes": None if d.get("disk_bytes") is None else int(d["disk_bytes"]),
        "gate_changes": None
        if changes is None
        else tuple(GateChange.from_dict(c) for c in changes),
        "gate_evaluation": None
        if evaluation is None
        else GateEvaluationStats.from_dict(evaluation),
    }


def _typed_extra(extra: dict[str, Any]) -> dict[str, Any]:
    """A version 1 snapshot's ``extra`` dict as version 2's wire keys (the same shapes)."""
    if not isinstance(extra, dict):
        raise TypeError(f"extra must be an object, got {type(extra).__name__}")
    keys = ("profiles", "profiling", "noise", "disk_bytes", "gate_changes", "gate_evaluation")
    return {k: extra[k] for k in keys if k in extra}
