"""The data model every layer speaks: metrics, samples, sessions and their statuses.

A *sample* is one measurement ``(t, session, metric, value)``: ``t`` is wall-clock time in
Unix seconds, ``session`` the integer id of the session that produced it (``SYSTEM_SESSION``
for machine-wide measurements such as ``system_memory_percent``), ``metric`` a Prometheus-style
snake_case name whose suffix gives the unit (``_seconds``, ``_bytes``, ``_percent``, ``_total``).

A *metric kind* says how samples of one name combine (Prometheus' data model, see
https://prometheus.io/docs/concepts/metric_types/, with one addition):

- ``gauge``: a level that goes up and down (queue depth, RSS);
- ``counter``: each sample is an *increment* (not a running total, unlike Prometheus'
  exposition format), so ``count(name)`` is the sum of increments;
- ``histogram``: observations of a distribution (timings, sizes);
- ``value``: a one-off result of a session (a parity diff, a file size).

This module is pure: no I/O, no third-party imports.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import Any

SYSTEM_SESSION = -1
"""Session id of machine-wide samples (system memory and CPU percent)."""

METRIC_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
"""Valid metric names, as in Prometheus' data model."""


class MetricKind(enum.StrEnum):
    """How samples of one metric combine; see the module docstring."""

    GAUGE = "gauge"
    COUNTER = "counter"
    HISTOGRAM = "histogram"
    VALUE = "value"


# Unit dimensions, derived from a metric's name suffix (Prometheus naming conventions,
# https://prometheus.io/docs/practices/naming/#base-units).
class Dimension(enum.StrEnum):
    """The physical dimension of a metric or of a number with a unit."""

    TIME = "time"  # seconds
    BYTES = "bytes"
    PERCENT = "percent"  # 0..100
    RATIO = "ratio"  # dimensionless, 1.0 == 100%
    COUNT = "count"  # dimensionless count of events
    NONE = "none"  # dimensionless, unknown


_SUFFIX_DIMENSION: tuple[tuple[str, Dimension], ...] = (
    ("_seconds", Dimension.TIME),
    ("_bytes", Dimension.BYTES),
    ("_percent", Dimension.PERCENT),
    ("_ratio", Dimension.RATIO),
    ("_total", Dimension.COUNT),
)


def metric_dimension(name: str) -> Dimension:
    """Return the dimension implied by a metric name's unit suffix.

    Args:
        name: a metric name such as ``"chunk_seconds"`` or ``"rss_bytes"``.

    Returns:
        ``Dimension.TIME`` for ``*_seconds``, ``BYTES`` for ``*_bytes``, ``PERCENT`` for
        ``*_percent``, ``RATIO`` for ``*_ratio``, ``COUNT`` for ``*_total``, else ``NONE``.
    """
    for suffix, dim in _SUFFIX_DIMENSION:
        if name.endswith(suffix):
            return dim
    return Dimension.NONE


@dataclass(frozen=True, slots=True)
class Sample:
    """One measurement.

    Attributes:
        t: wall-clock time, Unix seconds.
        session: session id, or ``SYSTEM_SESSION`` for machine-wide samples.
        metric: metric name (see ``METRIC_NAME_RE``).
        value: the measured value, in the unit the metric name's suffix gives.
        kind: how the value combines with others of the same metric.
    """

    t: float
    session: int
    metric: str
    value: float
    kind: MetricKind = MetricKind.GAUGE


class SessionStatus(enum.StrEnum):
    """What became of a session. Each failure mode has its own status (design.md section 7)."""

    PENDING = "pending"  # scheduled, not started
    RUNNING = "running"
    OK = "ok"  # exit code 0
    EXIT = "exit"  # non-zero exit code (see SessionResult.exit_code)
    SIGNAL = "signal"  # killed by a signal it did not get from perfmon (crash, OOM kill)
    TIMEOUT = "timeout"  # wall-clock timeout reached; perfmon ended it
    IDLE_TIMEOUT = "idle_timeout"  # no output, probe sample or CPU for idle_timeout_s; ended
    START_FAILED = "start_failed"  # the command could not be started
    CANCELLED = "cancelled"  # the run was stopped before or while this session ran
    NOISY = "noisy"  # exited 0 on a busy machine and was repeated (perfmon.core.noise)
    LOST = "lost"  # its remote worker or node died (Ray executor); never re-run silently

    @property
    def finished(self) -> bool:
        """True once the session has ended, whatever the outcome."""
        return self not in (SessionStatus.PENDING, SessionStatus.RUNNING)


@dataclass(frozen=True, slots=True)
class SessionSpec:
    """One session to execute: a workload variant, with everything resolved.

    Attributes:
        id: session id, unique within a run, counting from 0 in schedule order.
        workload: workload name.
        variant: variant name (``"default"`` when the campaign names none).
        set_name: name of the set this session belongs to (``"golden"``, ``"canary"``, ...).
        index: position of this session within its set and variant, from 0.
        warmup: True for warm-up sessions, which are recorded but excluded from statistics.
        argv: the command, fully resolved.
        env: environment variables added to perfmon's own environment.
        cwd: working directory (absolute path as a string).
        timeout_s: wall-clock limit in seconds; None: the supervisor's default (the campaign's
            ``timeout``, 1 h unless set); 0: no limit.
        params: matrix parameters of this session (e.g. ``{"events": "512"}``).
        attempt: 0 for a session's first run; n for its n-th repetition after it ran on a
            busy machine (``Scheduler.repeat``, ``perfmon.core.noise``).
        idle_timeout_s: a session with no output, no probe sample and no CPU time for this
            long is ended with status ``IDLE_TIMEOUT``; None: the supervisor's default; 0: none.
    """

    id: int
    workload: str
    variant: str
    set_name: str
    index: int
    warmup: bool
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    cwd: str
    timeout_s: float | None
    params: tuple[tuple[str, str], ...] = ()
    attempt: int = 0
    idle_timeout_s: float | None = None


@dataclass(slots=True)
class SessionResult:
    """What the supervisor measured of one session. Mutable while the session runs.

    Attributes:
        spec: the session that was run.
        status: its status.
        exit_code: process exit code, when it exited normally.
        signal: the number of the signal that ended it, when one did.
        start_t / end_t: wall-clock start and end, Unix seconds.
        wall_s: wall-clock duration in seconds (monotonic clock).
        cpu_s: user + system CPU seconds of the session and its waited-for children (rusage).
        peak_rss_bytes: the largest of the process tree's sampled RSS (psutil), the leader's
            kernel high-water mark (VmHWM), and ru_maxrss only where it exceeds perfmon's own
            RSS at spawn (the kernel carries the parent's RSS into a forked child's ru_maxrss);
            None when nothing could be measured (a very short session). RSS counts pages
            shared between the tree's processes once per process (see ``peak_pss_bytes``).
        peak_pss_bytes: the largest sampled sum of the tree's proportional set sizes (shared
            pages split among the processes mapping them), bytes; read often in the first
            second, then at most once a second (a page-table walk; less often for large trees,
            keeping it under 1% of wall time), so a short spike between reads is missed. None when
            never read (no ``/proc/<pid>/smaps_rollup``, or ended before the first read).
        peak_uss_bytes: the largest sampled sum of the tree's unique set sizes (pages private
            to each process), bytes; read with ``peak_pss_bytes``.
        malformed: probe protocol lines that could not be decoded and were dropped.
        samples: probe samples received from the workload.
        error: a human-readable reason for START_FAILED, TIMEOUT and the like.
        extra: further per-session figures by name, as floats (e.g. the ``noise_*`` figures
            of ``perfmon.core.noise``: what else used the machine meanwhile).
        host: the host the session ran on ("" for the local executor: the daemon's host).
        host_fingerprint: what makes two hosts comparable instruments (CPU model, cores,
            memory, kernel, GPU; ``perfmon.engine.ray_executor.host_fingerprint``), "" locally.
    """

    spec: SessionSpec
    status: SessionStatus = SessionStatus.PENDING
    exit_code: int | None = None
    signal: int | None = None
    start_t: float | None = None
    end_t: float | None = None
    wall_s: float | None = None
    cpu_s: float | None = None
    peak_rss_bytes: int | None = None
    peak_pss_bytes: int | None = None
    peak_uss_bytes: int | None = None
    malformed: int = 0
    samples: int = 0
    error: str = ""
    extra: dict[str, float] = field(default_factory=dict)
    # Where it ran (the Ray executor, issue 16).
    host: str = ""
    host_fingerprint: str = ""

    @property
    def status_text(self) -> str:
        """A short human-readable status such as ``"ok"``, ``"exit 3"`` or ``"SIGSEGV"``."""
        if self.status is SessionStatus.EXIT:
            return f"exit {self.exit_code}"
        if self.status is SessionStatus.SIGNAL and self.signal is not None:
            import signal as _signal

            try:
                return _signal.Signals(self.signal).name
            except ValueError:
                return f"signal {self.signal}"
        return self.status.value.replace("_", " ")


class GateState(enum.StrEnum):
    """State of a gate (design.md section 2)."""

    PENDING = "pending"  # not enough data yet
    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"  # a statistical gate whose CI straddles the threshold


@dataclass(frozen=True, slots=True)
class GateResult:
    """The evaluation of one gate at one moment.

    Attributes:
        name: the gate's name from the campaign.
        expr: the gate expression as written.
        state: pending, pass, fail or inconclusive.
        value: the measured left-hand side, in the metric's base unit (seconds, bytes, ...),
            or None while pending.
        n: the number of samples the value was computed from.
        reason: one line a person can read, e.g. ``"p95 = 131 over 4,812 samples, limit < 100"``.
        ci_low / ci_high: confidence interval of ``value`` where the gate is statistical.
        groups: every group the gate was judged in, each with its own value and state, when
            it is judged per group (a gate's ``by`` labels, or a statistical gate's
            (set, workload, matrix values) groups); empty otherwise. ``state`` is the worst
            of them (fail, then pending, then inconclusive, then pass), and ``value``/``n``/
            ``reason`` are the deciding group's.
        per_set: for a gate judged per group of sessions, each set's own state, in the order
            the sets first appear: ``((set, state, text), ...)`` with ``state`` a
            ``GateState`` value or ``"not started"`` and ``text`` the set's value and interval
            (``"6.21x [5.71, 19.1]"``) or what it waits for (``"n = 3/3"``). A set's decided
            state stays visible when another set starts (issue 11, point 5). In a recorded
            run judged per host (issue 16), each (set, host) group: ``"golden @ gpu-a"``.
        op ... selections: the gate's grammar, filled where the gate is parsed and evaluated
            (``perfmon.core.gates.Gate.annotate``), so that no reader parses ``expr`` again
            (issue 12); their defaults mean unknown (a result built by hand, a gate whose
            expression did not parse, or a result from an older daemon):
        op: the comparison, ``<``, ``<=``, ``>`` or ``>=`` ("" when unknown).
        threshold: the limit in the value's base unit (None when unknown).
        threshold_text: the limit as written, e.g. ``"50MB"``.
        limit: the limit for people, e.g. ``"< 47.7 MiB (50MB)"``.
        unit: the ``Dimension`` value of ``value``, ``ci_*`` and ``threshold`` (``"time"``,
            ``"bytes"``, ``"percent"``, ``"ratio"``, ``"count"``, ``"none"``; "" unknown).
        rate: True when they are that unit per second (``slope``).
        direction: whether the metric read is better ``"lower"`` or ``"higher"`` (its unit
            suffix or the campaign's ``[metric.NAME] better``), "" when unknown or not one
            metric (a ratio of two counts).
        selections: every metric the gate reads with its label matchers, in expression
            order: ``((metric, ((label, op, value), ...)), ...)``.
        func: the function whose value is judged (``"p95"``, ``"max"``, ``"speedup"``,
            ``"regression"``, ``"ratio"``, ``"slope"``, ``"cv"``, ...; "" when unknown): a
            speedup reads ``1.39x`` and a regression ``+8.34%``, never the fraction.
    """

    name: str
    expr: str
    state: GateState
    value: float | None
    n: int
    reason: str
    ci_low: float | None = None
    ci_high: float | None = None
    groups: tuple[GroupResult, ...] = ()
    per_set: tuple[tuple[str, str, str], ...] = ()
    # The gate's grammar (issue 12, point 1).
    op: str = ""
    threshold: float | None = None
    threshold_text: str = ""
    limit: str = ""
    unit: str = ""
    rate: bool = False
    direction: str = ""
    selections: tuple[tuple[str, tuple[tuple[str, str, str], ...]], ...] = ()
    func: str = ""

    @property
    def metrics(self) -> tuple[str, ...]:
        """The metric names the gate reads, sorted, each once."""
        return tuple(sorted({m for m, _ in self.selections}))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GateResult:
        """Rebuild from ``dataclasses.asdict`` output (the snapshot's wire form).

        Raises:
            TypeError / KeyError / ValueError: for a malformed dict.
        """
        groups = tuple(
            GroupResult(**{**g, "state": GateState(g["state"])}) for g in d.get("groups") or ()
        )
        per_set = tuple((str(s), str(st), str(t)) for s, st, t in d.get("per_set") or ())
        selections = tuple(
            (str(metric), tuple((str(k), str(op), str(v)) for k, op, v in matchers))
            for metric, matchers in d.get("selections") or ()
        )
        return cls(
            **{
                **d,
                "state": GateState(d["state"]),
                "groups": groups,
                "per_set": per_set,
                "selections": selections,
            }
        )


@dataclass(frozen=True, slots=True)
class GroupResult:
    """One group of a gate judged per group (``GateResult.groups``).

    Attributes:
        label: which group, e.g. ``"events=512"`` or ``"golden tgat events=512"``.
        state: its own state.
        value: its value in the gate's unit, or None while pending.
        n: samples (or sessions) it was computed from.
        reason: one line a person can read.
        ci_low / ci_high: its confidence interval where the gate is statistical.
    """

    label: str
    state: GateState
    value: float | None
    n: int
    reason: str
    ci_low: float | None = None
    ci_high: float | None = None
