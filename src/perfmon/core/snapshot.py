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

from dataclasses import asdict, dataclass, fields
from typing import Any

from perfmon.core.model import GateResult, GateState

SNAPSHOT_VERSION = 2
"""The snapshot's wire format. 2 (issue 12): typed ``profiles``, ``profiling``, ``noise``,
``disk_bytes``, ``gate_changes`` and ``gate_evaluation`` fields instead of the ``extra`` dict
of version 1, which ``Snapshot.from_dict`` still decodes."""
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
        """Return a JSON-serialisable dict (the control socket's wire form)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Snapshot:
        """Build a snapshot from ``to_dict``'s output, of this version or of version 1 (whose
        ``extra`` dict becomes the typed fields; keys it does not know are dropped).

        Raises:
            ValueError: if the version is neither ``SNAPSHOT_VERSION`` nor 1, or a field is
                missing or malformed.
        """
        version = data.get("version")
        if version not in (1, SNAPSHOT_VERSION):
            raise ValueError(f"unsupported snapshot version {version!r}")
        try:
            d = dict(data)
            if version == 1:
                d.update(_typed_extra(d.pop("extra", None) or {}))
                d["version"] = SNAPSHOT_VERSION
            d["sessions"] = tuple(SessionRow(**r) for r in d.get("sessions", ()))
            d["metrics"] = tuple(
                MetricSummary(**{**m, "series": tuple(m.get("series", ()))})
                for m in d.get("metrics", ())
            )
            d["gates"] = tuple(GateResult.from_dict(g) for g in d.get("gates", ()))
            d.update(_typed_fields(d))
            return cls(**d)
        except (TypeError, KeyError, AttributeError) as exc:
            raise ValueError(f"malformed snapshot: {exc}") from exc


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
