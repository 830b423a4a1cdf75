"""Immutable snapshots of a run's live state: what viewers, headless progress and exporters see.

The engine folds samples into ``perfmon.core.live.LiveState`` and, a few times a second, takes
a ``Snapshot`` of it. A snapshot is plain frozen data: it crosses the daemon's control socket as
JSON (``to_dict`` / ``from_dict``) and a viewer renders it without ever touching the campaign.

Everything in a snapshot is bounded: a metric's series is downsampled to at most
``SERIES_POINTS`` points however long the run, so a snapshot's size does not grow with time
(only with the number of sessions and metrics).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from perfmon.core.model import GateResult, GateState

SNAPSHOT_VERSION = 1
SERIES_POINTS = 120


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
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def elapsed_s(self) -> float:
        """Seconds since the run started."""
        return max(0.0, self.now_t - self.started_t)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict (the control socket's wire form)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Snapshot:
        """Build a snapshot from ``to_dict``'s output.

        Raises:
            ValueError: if the version is not ``SNAPSHOT_VERSION`` or a field is missing.
        """
        if data.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"unsupported snapshot version {data.get('version')!r}")
        try:
            d = dict(data)
            d["sessions"] = tuple(SessionRow(**r) for r in d.get("sessions", ()))
            d["metrics"] = tuple(
                MetricSummary(**{**m, "series": tuple(m.get("series", ()))})
                for m in d.get("metrics", ())
            )
            d["gates"] = tuple(
                GateResult(**{**g, "state": GateState(g["state"])}) for g in d.get("gates", ())
            )
            return cls(**d)
        except (TypeError, KeyError) as exc:
            raise ValueError(f"malformed snapshot: {exc}") from exc
