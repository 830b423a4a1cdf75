"""The runner: one campaign, end to end, in one asyncio loop.

Data flows once, with no back and forth (design.md section 3)::

    campaign -> Scheduler -> Supervisor -> workload subprocesses
    workload --probe protocol--> Decoder -> Recorder (run directory, durable)
                                         -> LiveState (bounded) -> gates -> Snapshot
    Snapshot -> listeners (control socket server, headless progress printer)

The same ``Runner`` runs inside the daemon (``perfmon run`` with a viewer attached over the
control socket) and in the foreground (``perfmon run --headless``): there is one code path.

Sessions run through an executor (``perfmon.engine.executor``: the local supervisor by default,
a scripted fake in tests). The loop that launches and reaps them does nothing heavy: live gates
are evaluated in a worker thread when their data changed, on a bounded schedule
(``perfmon.engine.gate_worker``); periodic snapshots are built (and encoded, by
``snapshot_preparers``) in a snapshot thread; the recorder's writes (flushes, session rows,
compaction) and the report run in threads too. The live state is guarded by one lock that the
loop never waits for (``Runner._mutate`` queues its updates while another thread reads). So no
gate, snapshot, report or flush can delay a launch or stretch a session's timing (issue 10).

Sessions run one at a time on a machine. On a benchmark machine two concurrent sessions
measure each other's interference as much as themselves, so perfmon serialises them (as pyperf
and hyperfine do). An executor that runs sessions on several hosts (the Ray executor; the fake
in multi-host mode) says how many it can take at once (``executor.concurrency_of``); the runner
then keeps up to that many in flight, handed out in the scheduler's order, and handles each as
it finishes, whichever finishes first. The executor keeps each host to its
``sessions_per_host`` (default 1), granting a host's slots in hand-out order, so the sessions on
one host follow the scheduler's order (baseline and candidate interleaved there as on one
machine) while hosts work side by side.

At the end the recorder is closed (samples compacted to Parquet) and the gates are evaluated
again on the *full recorded data* (``ArrayMetricSource``, exact quantiles), so that every number
in the report comes from a recorded sample, not from the bounded live aggregates.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perfmon._version import __version__
from perfmon.core.batch import SampleBatch
from perfmon.core.campaign import Campaign
from perfmon.core.commands import (
    PROFILE_USAGE,
    CommandError,
    Export,
    Pause,
    Profile,
    Resume,
    Split,
    Stop,
    TogglePause,
    parse_command,
)
from perfmon.core.gates import live_selections, verdict
from perfmon.core.live import LiveState
from perfmon.core.model import (
    GateResult,
    GateState,
    MetricKind,
    Sample,
    SessionResult,
    SessionSpec,
    SessionStatus,
)
from perfmon.core.noise import NOISE_ATTEMPT
from perfmon.core.schedule import Scheduler, set_decided
from perfmon.core.snapshot import (
    ComparisonPanel,
    GateChange,
    GateEvaluationStats,
    NoiseCounts,
    ProfileEntry,
    RunState,
    Snapshot,
)
from perfmon.core.stats import StatsOptions
from perfmon.engine.events import GateChangeLog
from perfmon.engine.executor import (
    Executor,
    ExecutorCallbacks,
    ExecutorConfig,
    ExecutorFactory,
    SessionChain,
    concurrency_of,
    local_executor,
)
from perfmon.engine.flame_export import write_exports
from perfmon.engine.gate_worker import DEFAULT_COST_FACTOR, GateWorker, LockedSource
from perfmon.engine.host_lanes import HostLanes
from perfmon.engine.manifest import campaign_to_json, stats_options  # re-exported (issue 12)
from perfmon.engine.noise import NoiseMeter
from perfmon.engine.profiler import (
    DEFAULT_SECONDS,
    SNAPSHOT_PROFILES,
    Profiler,
    ProfileRequest,
    RemoteSpy,
)
from perfmon.engine.provenance import collect_provenance
from perfmon.engine.recorded import evaluate_recorded, pooled_live, pools_hosts
from perfmon.engine.recorder import Recorder, read_run, secure_tree
from perfmon.engine.sampler import SystemSampler

log = logging.getLogger(__name__)

MANIFEST_VERSION = 1
FLUSH_INTERVAL_S = 0.5
"""Recorder flush interval: kill -9 of the runner loses at most this much (design.md: <= 1 s)."""

DISK_CHECK_EVERY = 10
"""Measure the run directory's size every this many flushes (about every 5 s)."""

SWITCH_INTERVAL_S = 0.0005
"""The interpreter's thread switch interval during a run (``sys.setswitchinterval``; CPython's
default is 5 ms). Gate evaluation runs in a worker thread that holds the GIL for long stretches
(bootstraps); when the loop's thread wakes up (a session ended, a launch returned from a system
call) it waits for the GIL at most this long instead of 5 ms per wake-up. The interval only
matters while a second thread waits for the GIL, so it costs nothing otherwise."""

EXIT_PASS, EXIT_FAIL, EXIT_USAGE, EXIT_INCOMPLETE = 0, 1, 2, 3
"""Exit statuses (design.md section 7)."""


def evaluate_recorded_gates(
    gates: list[dict[str, Any]], run_dir: Path, *, stats: StatsOptions | None = None
) -> tuple[list[GateResult], Any]:
    """Evaluate gates on the full recorded data of a run directory (whole-run results).

    Statistical gates read one value per measured session from the sessions table
    (``ArrayMetricSource.session_values``). With several sets, each gate's whole-run result is
    its worst result over the sets (see ``perfmon.engine.recorded``).

    Args:
        gates: ``[{name, expr, window_s}]`` as stored in the manifest.
        run_dir: the run directory.
        stats: how statistical gates are computed (default: as stored in the manifest).

    Returns:
        ``(results, run_data)``: one GateResult per gate, and the ``RunData`` read.

    Raises:
        perfmon.core.gates.GateSyntaxError: if a stored gate expression no longer parses.
    """
    recorded, data = evaluate_recorded_gates_by_set(gates, run_dir, stats=stats)
    return recorded.run, data


def evaluate_recorded_gates_by_set(
    gates: list[dict[str, Any]], run_dir: Path, *, stats: StatsOptions | None = None
) -> tuple[Any, Any]:
    """Like ``evaluate_recorded_gates``, with per-set results too.

    Returns:
        ``(recorded, run_data)``: a ``perfmon.engine.recorded.RecordedGates`` and the
        ``RunData`` read.
    """

    data = read_run(run_dir)
    if stats is None:
        stats = stats_options(data.manifest.get("campaign") or {})
    return evaluate_recorded(gates, data, stats), data


def write_run_report(
    run_dir: Path, gates: list[dict[str, Any]], *, baseline_run: Path | None = None
) -> tuple[Path, str, list[GateResult]]:
    """Evaluate the gates on a run's recording and write report.md and report.json.

    Args:
        run_dir: the run directory.
        gates: ``[{name, expr, window_s}]`` as stored in the manifest.
        baseline_run: a recorded run directory whose sessions are the baseline side of the
            statistical gates (``perfmon.engine.compare.apply_baseline_run``), or None.

    Returns:
        ``(report_md_path, verdict, whole_run_gate_results)``.
    """
    # Lazy: the report and the comparisons import scipy.stats (about 1.5 s); the daemon must
    # serve its first snapshot without waiting for what only the end of the run needs.
    from perfmon.engine.compare import apply_baseline_run
    from perfmon.engine.report import build_report, write_report

    recorded, data = evaluate_recorded_gates_by_set(gates, run_dir)
    if baseline_run is not None:
        stats = stats_options(data.manifest.get("campaign") or {})
        recorded = apply_baseline_run(gates, data, recorded, baseline_run, stats)
    v = verdict(recorded.run).value if recorded.run else GateState.PASS.value
    report = build_report(data, recorded.run, verdict=v, set_results=recorded.per_set)
    md, _ = write_report(run_dir, report, data=data)
    return md, v, list(recorded.run)


def parse_profile_command(command: str) -> tuple[int | None, float | None]:
    """Parse ``profile [SESSION_ID [SECONDS]]`` into ``(session_id, seconds)``, with the one
    command grammar (``perfmon.core.commands.parse_command``).

    Raises:
        perfmon.core.commands.CommandError: (a ValueError) if ``command`` is not a ``profile``
            command of the grammar: an id of ASCII digits, seconds in (0, 3600].
    """
    parsed = parse_command(command)
    if not isinstance(parsed, Profile):
        raise CommandError(f"expected {PROFILE_USAGE!r}, got {command.strip()[:80]!r}")
    return parsed.session_id, parsed.seconds


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """How a run ended.

    Attributes:
        verdict: ``GateState`` value over the full recorded data.
        exit_status: 0 pass, 1 a gate failed or is undecided, 3 could not complete.
        run_dir: the run directory; ``report_md``: path of report.md (None if not written).
        gates: the final gate results.
    """

    verdict: str
    exit_status: int
    run_dir: Path
    report_md: Path | None
    gates: tuple[GateResult, ...]


SnapshotListener = Callable[[Snapshot], None]
SessionListener = Callable[[SessionResult], None]


class Runner:
    """Runs one campaign into one run directory.

    Args:
        campaign: the parsed campaign.
        run_dir: an existing, empty run directory (see ``recorder.make_run_dir``).
        python: the interpreter that replaces ``{python}`` in commands (default: this one).
        snapshot_hz: how often a snapshot is published to listeners, per second.
        executor_factory: builds the executor that runs the sessions (default
            ``local_executor``: local subprocesses; tests pass
            ``perfmon.engine.fake_executor.FakeExecutor.factory(...)``).
        sample_system: sample machine-wide metrics (``system_memory_percent`` ...) with
            ``SystemSampler`` (default True; a fake run turns it off).
        gate_interval_s: shortest time between two live gate evaluations, seconds (default
            the snapshot period).
        gate_cost_factor: a live gate evaluation is followed by at least this many times its
            duration without one (bounds its CPU share to ``1 / (1 + factor)``).

    Listeners are plain callables called on the loop's thread; they must not block.
    """

    def __init__(
        self,
        campaign: Campaign,
        run_dir: Path,
        *,
        python: str = sys.executable,
        snapshot_hz: float = 4.0,
        executor_factory: ExecutorFactory = local_executor,
        sample_system: bool = True,
        gate_interval_s: float | None = None,
        gate_cost_factor: float = DEFAULT_COST_FACTOR,
    ) -> None:

        self.campaign = campaign
        self.run_dir = run_dir
        self.run_id = run_dir.name
        self.snapshot_interval_s = 1.0 / max(0.1, snapshot_hz)
        self.scheduler = Scheduler(campaign, python)
        self.started_t = time.time()
        self.live = LiveState(
            run_id=self.run_id,
            campaign=campaign.name,
            run_dir=str(run_dir),
            started_t=self.started_t,
            session_metrics={m for g in campaign.gates for m in g.gate.metrics}
            | set(self._panel_metrics()),
            max_metrics=campaign.max_metrics,
            max_metric_name_bytes=campaign.max_metric_name_bytes,
            selections=live_selections(campaign.gates),
            windows={g.window_s for g in campaign.gates if g.window_s is not None},
        )
        self.recorder = Recorder(run_dir)
        if executor_factory is local_executor and campaign.executor.kind == "ray":
            # Lazy: Ray is an optional extra (``perfmon[ray]``); only a Ray campaign needs it.
            from perfmon.engine.ray_executor import ray_executor_factory

            executor_factory = ray_executor_factory(campaign.executor)  # [executor] kind = "ray"
        self.executor_factory = executor_factory
        self.sample_system = sample_system
        self._live_lock = threading.Lock()
        """Guards ``live``: held for each batch of mutations, each gate read, each snapshot."""
        self._pending: deque[tuple[Callable[..., Any], tuple[Any, ...]]] = deque()
        """Mutations of ``live`` queued by the loop while another thread held the lock."""
        # Issue 16: live gates judged per (set, host) on a fleet, as the run's end judges them
        # (perfmon.engine.host_lanes); None when the campaign pools hosts.
        self._lanes: HostLanes | None = None
        if not campaign.executor.allow_mixed_hosts:
            self._lanes = HostLanes(
                campaign.gates,
                extra_metrics=self._panel_metrics(),
                run_id=self.run_id,
                campaign=campaign.name,
                run_dir=str(run_dir),
                started_t=self.started_t,
            )
        self._lane_keys: set[tuple[str, str]] = set()
        self._per_host_live = False
        """Several hosts, each under one fingerprint: the gate worker judges the lanes."""
        self.gate_worker = GateWorker(
            campaign.gates,
            LockedSource(self.live, self._live_lock, before=self._apply_pending),
            interval_s=self.snapshot_interval_s if gate_interval_s is None else gate_interval_s,
            cost_factor=gate_cost_factor,
            panel=self._panel,
            lanes=self._lane_groups,
        )
        self._panel_final: ComparisonPanel | None = None
        """The comparison panel computed once the run's sessions are all done."""
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="perfmon-recorder")
        """The recorder's writes, in order, off the loop (flushes, session rows, close)."""
        self._io_pending: set[asyncio.Future[Any]] = set()
        self._snap_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="perfmon-snapshot")
        """Builds the periodic snapshots (and runs ``snapshot_preparers``) off the loop."""
        self.state = RunState.STARTING
        self.message = ""
        self.snapshot_listeners: list[SnapshotListener] = []
        self.snapshot_preparers: list[SnapshotListener] = []
        """Called in the snapshot thread with each periodic snapshot before the listeners are
        called on the loop: the place for heavy, thread-safe work such as encoding it."""
        self.session_listeners: list[SessionListener] = []
        self.baseline_run: Path | None = None
        """A recorded run whose sessions are the statistical gates' baseline side at the end
        (``perfmon run --baseline-run``); None: this run's own baseline sessions."""
        self._stop = asyncio.Event()
        self._resume = asyncio.Event()
        self._resume.set()
        self._wake = asyncio.Event()
        """Set on pause, resume and stop: the concurrent loop looks again at what to launch."""
        self._in_flight: dict[asyncio.Task[SessionResult], SessionSpec] = {}
        """Sessions handed to an executor with ``concurrency`` > 1, in hand-out order."""
        self._supervisor: Executor | None = None
        self._chain: SessionChain | None = None
        """Queues the next session behind the running one (``perfmon.engine.executor``)."""
        self._gates: list[GateResult] = []
        # Issue 16: host -> its fingerprints, from the sessions' first updates (live gates pool
        # hosts; with several, they are marked pending until the per-host report judges them).
        self._hosts: dict[str, set[str]] = {}
        self._marked: tuple[tuple[GateResult, ...], tuple[int, bool], list[GateResult]] = (
            (),
            (0, False),
            [],
        )
        self._last_snapshot: Snapshot | None = None
        self._export_lock = asyncio.Lock()
        self._final_verdict: str | None = None
        self.recording_error: str | None = None
        self.disk_bytes = 0
        """Bytes the run directory takes on disk, measured every few seconds."""

        prof = campaign.profile
        self.profiler = Profiler(
            run_dir,
            rate_hz=prof.rate_hz,
            nonblocking=prof.nonblocking,
            subprocesses=prof.subprocesses,
        )
        self._profile_tasks: set[asyncio.Task[Any]] = set()
        self._scheduled_profiles: set[int] = set()
        self._profile_counts: dict[tuple[str, str], int] = {}
        """Sessions started so far per (workload, variant), for ``[profile] every``."""
        self._running_specs: dict[int, SessionSpec] = {}

        self.gate_changes = GateChangeLog(run_dir)
        """Gate state changes: appended to ``events.jsonl``, the latest kept for snapshots."""

        self.noise = NoiseMeter()
        """Reads the machine's noise around each session (``perfmon.core.noise``)."""
        self.noise_counts = {"measured": 0, "busy": 0, "repeated": 0}
        """Sessions with noise figures, flagged busy, and repeated by the noise guard."""

    # ----------------------------------------------------------------- commands
    def request_stop(self) -> None:
        """Stop launching sessions, end the running one, then write the report."""
        if not self._stop.is_set():
            self.message = "stopping: ending the running session, then writing the report"
            self.state = RunState.STOPPING
            self._stop.set()
            self._resume.set()
            self._wake.set()
            if self._supervisor is not None:
                asyncio.get_running_loop().create_task(self._supervisor.cancel_all())

    def pause(self) -> None:
        """Launch no new session until ``resume``; the running session finishes normally."""
        if self.state == RunState.RUNNING:
            self._resume.clear()
            if self._chain is not None:
                self._chain.withdraw()  # the session queued behind the running one waits too
            withdraw = getattr(self._supervisor, "withdraw", None)
            if self._in_flight and withdraw is not None:
                for spec in self._in_flight.values():  # those still waiting for their host
                    withdraw(spec.id)
            self._wake.set()
            self.state = RunState.PAUSED
            self.message = "paused: no new sessions will start (p to resume)"

    def resume(self) -> None:
        """Resume launching sessions after ``pause``."""
        if self.state == RunState.PAUSED:
            self.state = RunState.RUNNING
            self.message = "resumed"
            self._resume.set()
            self._wake.set()

    async def export(self) -> Path | None:
        """Write report.md and report.json now, from what has been recorded so far.

        Returns:
            The path of report.md, or None if it could not be written (the reason is in
            ``message``).
        """
        async with self._export_lock:
            try:
                await self._io_call(self.recorder.flush)
                path = await asyncio.to_thread(self._write_report)
            except Exception as exc:  # a failed export must not end the run
                log.exception("export failed")
                self.message = f"report could not be written: {exc}"
                return None
            self.message = f"report written to {path}"
            return path

    def handle_command(self, command: str) -> None:
        """Apply a viewer command: ``stop``, ``pause``, ``resume``, ``toggle-pause``, ``export``,
        ``profile [SESSION_ID [SECONDS]]`` (py-spy the session, default the running one, for
        ``profiler.DEFAULT_SECONDS``).
        ``split [LABEL]`` splits the snapshot's metrics by a label (``LiveState.set_split``).

        The text is read with the one command grammar (``perfmon.core.commands``), the
        same the viewer checks before sending.

        Raises:
            perfmon.core.commands.CommandError: (a ValueError) for a command outside the
                grammar.
        """
        match parse_command(command):
            case Profile(session_id, seconds):
                self.message = self.request_profile(session_id, seconds)
            case Split(label):
                # The metrics panel's split by a label (issue 11): applied in order with the
                # ingest (LiveState.set_split).
                self._mutate(self.live.set_split, label, time.time())
            case Stop():
                self.request_stop()
            case Pause():
                self.pause()
            case Resume():
                self.resume()
            case TogglePause():
                self.resume() if self.state == RunState.PAUSED else self.pause()
            case Export():
                asyncio.get_running_loop().create_task(self.export())
            case other:  # a verb added to the grammar but not handled here
                raise CommandError(f"command {str(other)!r} is not handled by this runner")

    # ----------------------------------------------------------------- profiling
    def track_groups(self) -> None:
        """Have the live state keep each metric also per (workload, variant, set), for the
        Prometheus endpoint (``LiveState.track_groups``; applied in order with the ingest).
        Only ``--metrics-addr`` asks for it: without it the ingest path does not group."""
        self._mutate(self.live.track_groups, time.time())

    def request_profile(
        self, session_id: int | None = None, seconds: float | None = None, *, reason: str = ""
    ) -> str:
        """Start sampling a running session with py-spy in the background.

        Args:
            session_id: the session (default: the most recently started running one).
            seconds: how long (default ``profiler.DEFAULT_SECONDS``).
            reason: why, stored with the profile (default ``"on demand"``).

        Returns:
            A message for the viewer: what was started, or why nothing was.
        """

        sup = self._supervisor
        running = sup.running if sup is not None else []
        if session_id is None:
            if not running:
                return "profile: no session is running"
            session_id = running[-1]
        target = self._profile_target(session_id)
        if target is None:
            return f"profile: session {session_id} is not running"
        if self.profiler.busy(session_id):
            return f"profile: session {session_id} is already being sampled"
        secs = DEFAULT_SECONDS if seconds is None else seconds
        self._start_profile(session_id, target, secs, reason or "on demand")
        where = f" on {target[2]}" if target[2] else ""
        return f"profiling session {session_id} with py-spy for {secs:g} s{where}"

    def _profile_target(self, session_id: int) -> tuple[int, RemoteSpy | None, str] | None:
        """Where py-spy can reach a running session: ``(pid, None, "")`` for a local process,
        ``(pid on its host, remote, host)`` for one an executor runs elsewhere (its
        ``profile_remote``, e.g. the Ray executor's); None when it is not running."""
        sup = self._supervisor
        if sup is None:
            return None
        pid = sup.pid_of(session_id)
        if pid is not None:
            return pid, None, ""
        profile_remote = getattr(sup, "profile_remote", None)
        found: tuple[int, RemoteSpy, str] | None = (
            profile_remote(session_id) if profile_remote is not None else None
        )
        return found

    def _start_profile(
        self,
        session_id: int,
        target: tuple[int, RemoteSpy | None, str],
        seconds: float | None,
        reason: str,
    ) -> None:
        pid, remote, host = target
        request = ProfileRequest.for_session(
            self._running_specs.get(session_id),
            session_id=session_id,
            pid=pid,
            seconds=seconds,
            reason=reason,
            remote=remote,
            host=host,
        )
        task = self.profiler.start(request)

        def done(t: asyncio.Task[Any]) -> None:
            self._profile_tasks.discard(t)
            if not t.cancelled() and t.exception() is None:
                rec = t.result()
                self.message = f"profile {rec.name}: {rec.message}"

        self._profile_tasks.add(task)
        task.add_done_callback(done)

    def _maybe_schedule_profile(self, result: SessionResult) -> None:
        """Start the campaign's ``every``-th session profile when such a session starts.

        Sessions are counted per (workload, variant), so every variant is profiled alike
        whatever the order: counting by session id, ``every = 2`` with an interleaved order
        (baseline, candidate, baseline, ...) profiled only the candidate.
        """
        sid = result.spec.id
        if result.status is SessionStatus.RUNNING:
            self._running_specs[sid] = result.spec
        else:
            self._running_specs.pop(sid, None)
            self._scheduled_profiles.discard(sid)
        every = self.campaign.profile.every
        if not every or result.status is not SessionStatus.RUNNING:
            return
        if sid in self._scheduled_profiles:
            return
        self._scheduled_profiles.add(sid)
        group = (result.spec.workload, result.spec.variant)
        nth = self._profile_counts[group] = self._profile_counts.get(group, 0) + 1
        if nth % every:
            return
        target = self._profile_target(sid)
        if target is None or self.profiler.busy(sid):
            return
        reason = "every session" if every == 1 else f"1 in {every} sessions of its variant"
        self._start_profile(sid, target, self.campaign.profile.duration_s, reason)

    def _will_profile(self, spec: SessionSpec) -> bool:
        """Whether ``spec`` will be the ``every``-th started session of its (workload, variant)
        (``_maybe_schedule_profile``), asked as it gets its host, before it starts: a hint for
        executors that prepare py-spy on that host (sessions started meanwhile on other hosts
        can make it wrong; then an agent idles through one session, or a profile starts cold)."""
        every = self.campaign.profile.every
        if not every:
            return False
        group = (spec.workload, spec.variant)
        return (self._profile_counts.get(group, 0) + 1) % every == 0

    async def _duty_cycle(self, on_s: float, period_s: float) -> None:
        """Sample the running session for ``on_s`` seconds every ``period_s`` seconds."""
        while True:
            await asyncio.sleep(period_s - on_s)
            running = self._supervisor.running if self._supervisor is not None else []
            if running and not self.profiler.busy(running[-1]):
                self.request_profile(running[-1], on_s, reason=f"duty {on_s:g}s/{period_s:g}s")
            await asyncio.sleep(on_s)

    # ----------------------------------------------------------------- data in
    def _mutate(self, fn: Callable[..., Any], *args: Any) -> None:
        """Apply a mutation of ``live`` from the loop without ever waiting for the lock.

        The mutation is queued; if the lock is free it is taken and the queue applied now,
        else whoever holds the lock (the snapshot or gate thread) applies the queue, in order,
        before its next read, so every reader sees every mutation queued before it read.
        """
        self._pending.append((fn, args))
        if self._live_lock.acquire(blocking=False):
            try:
                self._apply_pending()
            finally:
                self._live_lock.release()

    def _apply_pending(self) -> None:
        """Apply the queued mutations, oldest first (the caller holds ``_live_lock``)."""
        pending = self._pending
        while pending:
            fn, args = pending.popleft()
            try:
                fn(*args)
            except Exception:  # a bad update must not stop the others or the run
                log.exception("live state update failed")

    def _on_samples(self, samples: SampleBatch | Sequence[Sample]) -> None:
        batch = samples if isinstance(samples, SampleBatch) else SampleBatch.from_samples(samples)
        self._mutate(self._ingest, batch)
        self.gate_worker.note_samples(batch.metrics)

    def _ingest(self, batch: SampleBatch) -> None:
        """Fold a batch into the live state and record it (run with ``_live_lock`` held, in
        order with every other mutation): the live state applies the metric-name caps, and
        what it returns is what is recorded (``Recorder.add_batch`` is thread-safe)."""
        kept = self.live.add_batch(batch)
        self.recorder.add_batch(kept)
        if self._lanes is not None:
            self._lanes.add_batch(kept)

    def _on_update(self, result: SessionResult) -> None:
        if self._chain is not None:
            self._chain.note_update(result)
        if result.host:
            self._note_host(result)
        # Noise first: it may turn the final result into NOISY (a repeated attempt).
        self._noise_update(result)
        self._update_live(result)
        self._maybe_schedule_profile(result)

    def _note_host(self, result: SessionResult) -> None:
        """A session update with its host (on the loop): record the host's fingerprint, and
        judge the lanes once the run has several hosts (``_update_live`` feeds them)."""
        self._hosts.setdefault(result.host, set()).add(result.host_fingerprint)
        if self._lanes is None:
            return
        key = (result.spec.set_name or "default", result.host)
        per_host = pools_hosts(self._hosts) and all(
            len(set(fps) - {""}) <= 1 for fps in self._hosts.values()
        )
        if key not in self._lane_keys or per_host != self._per_host_live:
            self._lane_keys.add(key)
            self._per_host_live = per_host
            self.gate_worker.note_sessions()  # every gate's groups changed

    def _lane_groups(self) -> list[tuple[str, LockedSource]]:
        """In the gate worker: the (set, host) lanes to judge the gates over, each read under
        the live lock; none while the run has one host (the pooled state is that host's)."""
        if not self._per_host_live or self._lanes is None:
            return []
        with self._live_lock:
            self._apply_pending()
            lanes = self._lanes.lanes()
        return [
            (name, LockedSource(lane, self._live_lock, before=self._apply_pending))
            for name, lane in lanes
        ]

    def _update_live(self, result: SessionResult) -> None:
        # A copy: the executor goes on mutating its own while the update may wait in the queue
        # (both live states copy what they keep). The lanes get the same update, after the
        # noise guard has had its say (a repeated attempt is NOISY in every live state).
        copy = dataclasses.replace(result)
        self._mutate(self.live.update_session, copy)
        if self._lanes is not None and self._lane_keys:  # a session reported a host
            self._mutate(self._lanes.update, copy)
        if result.status.finished:
            self.gate_worker.note_sessions()

    # ----------------------------------------------------------------- recorder I/O
    async def _io_call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a recorder call in the recorder's thread (after every write queued before)."""
        return await asyncio.get_running_loop().run_in_executor(self._io, fn, *args)

    def _io_submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Queue a recorder write without waiting; a failure stops the run like a full disk."""
        fut = asyncio.get_running_loop().run_in_executor(self._io, fn, *args)
        self._io_pending.add(fut)

        def done(f: asyncio.Future[Any]) -> None:
            self._io_pending.discard(f)
            exc = None if f.cancelled() else f.exception()
            if exc is not None:
                self._recording_failed(exc)

        fut.add_done_callback(done)

    def _recording_failed(self, exc: BaseException) -> None:
        log.error("recording failed: %s", exc)
        if self.recording_error is None:
            self.request_stop()
            self.message = f"recording failed ({exc}); the run was stopped"
            self.recording_error = str(exc)

    async def _io_drain(self) -> None:
        """Wait for every queued recorder write."""
        if self._io_pending:
            await asyncio.wait(list(self._io_pending))

    def _session_samples(self, result: SessionResult) -> list[Sample]:
        """Session-level samples: one ``value`` per finished OK session."""
        if result.status is not SessionStatus.OK:
            return []
        t = result.end_t or time.time()
        sid = result.spec.id
        out = []
        if result.wall_s is not None:
            out.append(Sample(t, sid, "session_seconds", result.wall_s, MetricKind.VALUE))
        if result.cpu_s is not None:
            out.append(Sample(t, sid, "session_cpu_seconds", result.cpu_s, MetricKind.VALUE))
        if result.peak_rss_bytes is not None:
            out.append(
                Sample(
                    t, sid, "session_peak_rss_bytes", float(result.peak_rss_bytes), MetricKind.VALUE
                )
            )
        # RSS of a tree counts shared pages once per process; PSS and USS do not.
        for name, peak in (
            ("session_peak_pss_bytes", result.peak_pss_bytes),
            ("session_peak_uss_bytes", result.peak_uss_bytes),
        ):
            if peak is not None:
                out.append(Sample(t, sid, name, float(peak), MetricKind.VALUE))
        return out

    # ----------------------------------------------------------------- noise
    def _noise_update(self, result: SessionResult) -> None:
        """Measure what else used the machine during a session, and apply the noise guard.

        Called with every update of a session: its first ``RUNNING`` update opens the window
        (a ``/proc/stat`` reading), its first finished one closes it, before anything else
        sees the final result. The noise figures go into ``result.extra``
        (``perfmon.core.noise``'s ``NOISE_*`` keys). A busy session that ended ok is repeated
        when its set's guard says so: it gets status ``NOISY`` (excluded from statistics) and
        the scheduler hands out the same session again next. (Its probe samples already
        reached the live aggregates, which cannot take them back; the report and the final
        gates read the recording, where they are excluded.)
        """
        sid = result.spec.id
        if result.status is SessionStatus.RUNNING:
            self.noise.started(sid)
            return
        if not result.status.finished or not self.noise.is_open(sid):
            return
        guard = self.campaign.noise_guard(result.spec.set_name)
        noise = self.noise.finished(sid, result.cpu_s, limit=guard.limit)
        if noise is None:
            return
        result.extra.update(noise.to_extra())
        result.extra[NOISE_ATTEMPT] = float(result.spec.attempt)
        self.noise_counts["measured"] += 1
        if not noise.busy:
            return
        self.noise_counts["busy"] += 1
        # Warm-ups are not repeated: they are out of the statistics anyway.
        ok = result.status is SessionStatus.OK and not result.spec.warmup
        if self._stop.is_set() or not guard.should_repeat(noise, result.spec.attempt, ok=ok):
            return
        again = self.scheduler.repeat(result.spec)
        if again is None:
            return
        result.status = SessionStatus.NOISY
        result.error = (
            f"background CPU {noise.background_share:.0%} of the machine, over the "
            f"{guard.limit:.0%} limit: repeated as session {again.id}"
        )
        self.noise_counts["repeated"] += 1

    def _noise_counts(self) -> NoiseCounts:
        """``Snapshot.noise``: the counts so far, the default limit and how many readings
        lacked ``/proc/stat``."""
        return NoiseCounts(
            measured=self.noise_counts["measured"],
            busy=self.noise_counts["busy"],
            repeated=self.noise_counts["repeated"],
            limit=self.campaign.noise.limit,
            unavailable=self.noise.unavailable,
        )

    # ----------------------------------------------------------------- snapshots
    def snapshot(self) -> Snapshot:
        """Take a snapshot of the live state now (gates as last evaluated), on the caller's
        thread (it waits for the live state's lock)."""
        snap = self._build_snapshot(self._snapshot_parts())
        self._last_snapshot = snap
        return snap

    def _snapshot_parts(self) -> dict[str, Any]:
        """What a snapshot takes from the runner's own (loop-owned) state, read on the loop."""
        gates = tuple(self._gates)
        if self._final_verdict is not None:
            v = self._final_verdict
        else:
            v = verdict(gates).value if gates else GateState.PASS.value
        typed = {
            **self._profile_fields(),
            "noise": self._noise_counts(),
            "disk_bytes": self.disk_bytes,
            "gate_changes": tuple(GateChange.from_dict(c) for c in self.gate_changes.recent),
            "gate_evaluation": GateEvaluationStats.from_dict(self.gate_worker.stats()),
        }
        return {
            "comparison": self._panel_final or self.gate_worker.panel_result,
            "state": self.state,
            "gates": gates,
            "verdict": v,
            "message": self.message,
            "sessions_total": self.scheduler.planned_total,
            "typed": typed,
        }

    def _build_snapshot(self, parts: dict[str, Any]) -> Snapshot:
        """Snapshot the live state with ``parts``; safe on any thread (takes the lock)."""
        typed = parts.pop("typed")
        comparison = parts.pop("comparison", None)
        with self._live_lock:
            self._apply_pending()
            snap = self.live.snapshot(now=time.time(), **parts)
        return dataclasses.replace(snap, **typed, comparison=comparison)

    # -- the comparison panel (perfmon.engine.live_compare) --------------------------------

    def _panel_metrics(self) -> tuple[str, ...]:
        """The panel's metrics: per-session timings, then the speedup/regression gates'."""
        from perfmon.core.gates import VariantComparison
        from perfmon.engine.live_compare import panel_metrics

        gates = self.campaign.gates
        return panel_metrics(
            g.gate.lhs.metric for g in gates if isinstance(g.gate.lhs, VariantComparison)
        )

    def _panel(self, source: Any, finished: bool = False) -> ComparisonPanel | None:
        """Build the comparison panel from ``source`` (in the gate worker's thread); on a run
        of several hosts, one panel per (set, host) lane, merged (issue 16: a ratio is only
        ever between sessions of one host)."""
        from perfmon.engine.live_compare import build_panel, merge_panels

        camp = self.campaign
        kw: dict[str, Any] = {
            "metrics": self._panel_metrics(),
            "reference": camp.reference,
            "directions": camp.directions,
            "options": camp.stats,
            "planned": {s.name: s.sessions if s.duration_s is None else None for s in camp.sets},
            "variant_order": [v.name for v in camp.variants],
            "finished": finished,
        }
        lanes = self._lane_groups()
        if lanes:
            return merge_panels(
                [
                    build_panel(lane, set_suffix=name[name.index(" @ ") :], **kw)
                    for name, lane in lanes
                ]
            )
        return build_panel(source, **kw)

    def _build_and_prepare(self, parts: dict[str, Any]) -> Snapshot:
        """In the snapshot thread: build the snapshot, then run the preparers on it."""
        snap = self._build_snapshot(parts)
        for prepare in list(self.snapshot_preparers):
            try:
                prepare(snap)
            except Exception:  # a broken preparer must not stop the snapshots
                log.exception("snapshot preparer failed")
        return snap

    def _profile_fields(self) -> dict[str, Any]:
        """What the viewer needs of the profiles: the latest records and the sessions sampled
        now (``Snapshot.profiles`` / ``profiling``); the stacks stay in the run directory,
        which the viewer reads."""
        return {
            "profiles": tuple(
                ProfileEntry.from_dict(r.to_dict())
                for r in self.profiler.records[-SNAPSHOT_PROFILES:]
            ),
            "profiling": tuple(sorted(self.profiler.active)),
        }

    def _observe_gates(self) -> None:
        if self._final_verdict is None:
            self._gates = list(self.gate_worker.results)
            if not self.campaign.executor.allow_mixed_hosts and pools_hosts(self._hosts):
                self._gates = self._pooled_live(self._gates)
        self.gate_changes.observe(self._gates, time.time())

    def _pooled_live(self, results: list[GateResult]) -> list[GateResult]:
        """The live results over several hosts as they may be shown: those the gate worker
        judged per (set, host) lane as they are; any other (pooled: evaluated before the
        second host came, or a host under several fingerprints) marked pending
        (``pooled_live``). Re-marked only when a result, the number of hosts or the lanes' use
        changed (this runs on the loop, every snapshot)."""
        seen, hosts, marked = self._marked
        state = (len(self._hosts), self._per_host_live)
        if hosts != state or len(seen) != len(results):
            changed = True
        else:
            changed = any(a is not b for a, b in zip(seen, results, strict=True))
        if changed:
            grouped = self.gate_worker.per_group if self._per_host_live else [False] * len(results)
            marked = [
                g if judged else pooled_live(g, len(self._hosts))
                for g, judged in zip(results, grouped, strict=True)
            ]
            self._marked = (tuple(results), state, marked)
        return list(marked)

    def _publish(self) -> None:
        """Publish a snapshot built on the loop (at the end of the run, when timing no longer
        matters), with the gates as last evaluated; never evaluates gates itself."""
        self._observe_gates()
        self._deliver(self.snapshot())

    async def _publish_async(self) -> None:
        """Publish a snapshot built (and prepared) in the snapshot thread, so that neither
        the live state's read-out nor its encoding runs on the loop."""
        self._observe_gates()
        parts = self._snapshot_parts()
        loop = asyncio.get_running_loop()
        snap = await loop.run_in_executor(self._snap_pool, self._build_and_prepare, parts)
        self._last_snapshot = snap
        self._deliver(snap)

    def _deliver(self, snap: Snapshot) -> None:
        for listener in list(self.snapshot_listeners):
            try:
                listener(snap)
            except Exception:  # a broken listener must not stop the run
                log.exception("snapshot listener failed")

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.snapshot_interval_s)
            await self._publish_async()

    async def _flush(self) -> None:
        """Flush the recorder every ``FLUSH_INTERVAL_S``; stop the run cleanly if it cannot write.

        A full disk (or any other write error) must not corrupt what is recorded: the run is
        stopped with a clear message, and the report is attempted from what was flushed.
        """
        flushes = 0
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            flushes += 1
            try:
                await self._io_call(self.recorder.flush)
                if flushes % DISK_CHECK_EVERY == 1:
                    self.disk_bytes = await self._io_call(self.recorder.disk_bytes)
            except OSError as exc:
                self._recording_failed(exc)
                return

    # ----------------------------------------------------------------- the run
    def _manifest(self) -> dict[str, Any]:

        return {
            "format": "perfmon-run",
            "version": MANIFEST_VERSION,
            "run_id": self.run_id,
            "perfmon_version": __version__,
            "started_t": self.started_t,
            "campaign": campaign_to_json(self.campaign),
            "provenance": collect_provenance(self.campaign.path),
        }

    def _write_report(self) -> Path:
        md, _, _ = write_run_report(self.run_dir, campaign_to_json(self.campaign)["gates"])
        return md

    async def run(self) -> RunOutcome:
        """Run the campaign to the end (or until ``request_stop``) and write the report.

        Returns:
            The outcome; its exit status is 0 when every gate passes on the recorded data,
            1 when one failed or is undecided, 3 when the run was stopped or broke.
        """

        supervisor = self.executor_factory(
            ExecutorConfig(
                log_dir=self.run_dir / "logs",
                log_cap_bytes=self.campaign.log_cap_bytes,
                sample_interval_s=self.campaign.sample_interval_s,
                grace_s=self.campaign.grace_s,
                default_timeout_s=self.campaign.timeout_s,
                default_idle_timeout_s=self.campaign.idle_timeout_s,
            ),
            ExecutorCallbacks(on_samples=self._on_samples, on_update=self._on_update),
        )
        self._supervisor = supervisor
        if hasattr(supervisor, "profile_hint") and self.campaign.profile.every:
            supervisor.profile_hint = self._will_profile  # e.g. Ray: py-spy's agent made ready
        # The executor (locally: the keeper, the launch/reap/containment process) says which
        # containment it got.
        manifest = self._manifest()
        try:
            manifest["containment"] = await supervisor.start()
        except OSError as exc:
            log.error("cannot start the session executor: %s", exc)
            manifest["containment"] = f"none ({exc})"
        self.recorder.write_manifest(manifest)
        switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(min(switch_interval, SWITCH_INTERVAL_S))
        sampler = SystemSampler(self.campaign.sample_interval_s, self._on_samples)
        background = [
            asyncio.create_task(self._tick(), name="snapshots"),
            asyncio.create_task(self._flush(), name="recorder-flush"),
            asyncio.create_task(self.gate_worker.run(), name="gates"),
        ]
        if self.sample_system:
            background.append(asyncio.create_task(sampler.run(), name="system-sampler"))
        prof = self.campaign.profile
        if prof.duty_on_s is not None and prof.duty_period_s is not None:
            background.append(
                asyncio.create_task(
                    self._duty_cycle(prof.duty_on_s, prof.duty_period_s), name="profile-duty"
                )
            )
        self.state = RunState.RUNNING
        self.message = f"running {self.campaign.name}"
        completed = False
        error: BaseException | None = None
        chain = self._chain = SessionChain(supervisor)
        concurrent = concurrency_of(supervisor) > 1
        try:
            if concurrent:
                completed = await self._run_concurrent(supervisor, chain)
            while not concurrent and not self._stop.is_set():
                queued = chain.take()  # started by the keeper as the previous one ended
                if queued is None:
                    await self._resume.wait()
                    if self._stop.is_set():
                        break
                    spec = self._hand_out()
                    if spec is None:
                        completed = True
                        break
                    queued = (spec, chain.launch(spec))
                spec, running = queued
                await chain.queue_next(spec, running, self._hand_out, self._may_chain)
                result = await running
                if not result.status.finished:  # withdrawn before its start (pause)
                    chain.rerun.append(result.spec)
                    continue
                self._session_done(result)
        except Exception as exc:  # report what we have, then exit 3
            log.exception("run failed")
            error = exc
            self.message = f"run failed: {exc}"
        finally:
            with contextlib.suppress(Exception):
                await supervisor.cancel_all()
            left = await chain.drain()  # queued behind the last one, cancelled by the stop
            lefts = [left] if left is not None else []
            lefts += await self._drain_in_flight()  # in flight when the run broke
            for left in lefts:
                self._io_submit(self.recorder.session_finished, dataclasses.replace(left))
                self._update_live(left)
            close = getattr(supervisor, "close", None)  # the local keeper; not every executor
            if close is not None:
                close()
            sampler.stop()
            self.noise.close()
            for task in background:
                task.cancel()
            for task in background:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await self.gate_worker.close()
            # py-spy stops by itself once its session is gone; wait for the profiles.
            if self._profile_tasks:
                await asyncio.wait(list(self._profile_tasks), timeout=10)
            for task in list(self._profile_tasks):
                task.cancel()
            await self.profiler.close()
            sys.setswitchinterval(switch_interval)

        return await self._finish(completed=completed and error is None)

    def _session_done(self, result: SessionResult) -> None:
        """Everything the runner does once per finished session: noise, session-level
        samples, the recorder's row, the live state, ``stop_when``, the listeners."""
        self._noise_update(result)  # no-op when on_update already closed the window
        extra = self._session_samples(result)
        if extra:
            self._on_samples(extra)
        self._io_submit(self.recorder.session_finished, dataclasses.replace(result))
        self._update_live(result)
        self._stop_when_decided(result.spec)
        for listener in list(self.session_listeners):
            try:
                listener(result)
            except Exception:
                log.exception("session listener failed")

    async def _run_concurrent(self, executor: Executor, chain: SessionChain) -> bool:
        """Run the campaign on an executor that takes several sessions at once.

        Keeps up to ``concurrency_of(executor)`` sessions in flight (read before each
        launch), handed out in the scheduler's order; handles each as it finishes, whichever
        finishes first. Paused, it launches nothing, and the sessions still waiting in the
        executor for their host are withdrawn (``pause``) and handed out first on resume, in
        their order. Stopping, it launches nothing and handles the sessions in flight as they
        end (``cancel_all`` ends them ``CANCELLED``).

        Returns:
            True when every session was run (False: stopped).

        Raises:
            Exception: whatever a session's ``run_session`` raised (the run stops; the
                sessions still in flight are drained by ``_drain_in_flight``).
        """
        in_flight = self._in_flight
        while True:
            while (
                not self._stop.is_set()
                and self._resume.is_set()
                and len(in_flight) < concurrency_of(executor)
            ):
                spec = self._hand_out()
                if spec is None:
                    break
                in_flight[asyncio.ensure_future(executor.run_session(spec))] = spec
            if not in_flight:
                if self._stop.is_set():
                    return False
                if self._resume.is_set():
                    return True  # nothing left to hand out, nothing running
                await self._resume.wait()  # paused with nothing in flight
                continue
            self._wake.clear()
            waker = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait({*in_flight, waker}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waker.cancel()
            withdrawn = False
            for task in [t for t in in_flight if t.done()]:  # in hand-out order
                del in_flight[task]
                result = task.result()
                if not result.status.finished:  # withdrawn before its start (pause)
                    chain.rerun.append(result.spec)
                    withdrawn = True
                    continue
                self._session_done(result)
            if withdrawn:  # run again in the order they were handed out
                chain.rerun = deque(sorted(chain.rerun, key=lambda s: s.id))

    async def _drain_in_flight(self) -> list[SessionResult]:
        """After ``cancel_all``: wait for the sessions still in flight (the run stopped on an
        error) and return those with a finished status."""
        tasks = list(self._in_flight)
        self._in_flight.clear()
        if not tasks:
            return []
        await asyncio.wait(tasks)
        out = []
        for task in tasks:
            if task.cancelled() or task.exception() is not None:
                continue
            if task.result().status.finished:
                out.append(task.result())
        return out

    def _hand_out(self) -> SessionSpec | None:
        """The next session to run (one withdrawn on pause first), added to the live state."""
        chain = self._chain
        spec = chain.rerun.popleft() if chain is not None and chain.rerun else None
        spec = spec or self.scheduler.next_session()
        if spec is not None:
            self._mutate(self.live.add_session, spec)
            self.gate_worker.note_sessions()
        return spec

    def _may_chain(self, spec: SessionSpec) -> bool:
        """Whether the session after ``spec`` may be queued behind it: not paused or stopping,
        and ``spec``'s set does not repeat busy sessions (a repeat must run right after it)."""
        return (
            self._resume.is_set()
            and not self._stop.is_set()
            and self.campaign.noise_guard(spec.set_name).on_noisy != "repeat"
        )

    def _stop_when_decided(self, spec: SessionSpec) -> None:
        """End the session's set once every gate on it is decided (``stop_when = "decided"``).

        Reads the gates as last evaluated by the snapshot loop (no evaluation on the session
        path): a set may run a session or two past its decision, never fewer; the sequences
        stay valid at any stopping time."""
        s = next((x for x in self.campaign.sets if x.name == spec.set_name), None)
        if s is None or s.stop_when != "decided" or spec.set_name in self.scheduler.ended:
            return
        if set_decided(self._gates, spec.set_name):
            self.scheduler.end_set(spec.set_name)
            self.message = f"set {spec.set_name} decided: ended early (stop_when = decided)"

    async def _finish(self, *, completed: bool) -> RunOutcome:
        """Close the recording, evaluate gates on it, write the report, publish the end."""
        self.state = RunState.STOPPING
        self.message = "writing report"
        if self.recording_error is not None:
            self.message = f"recording failed ({self.recording_error}); writing what was flushed"
        self._publish()
        # Snapshots keep flowing while the recording is compacted and the report written, so a
        # viewer sees the run ending, not a frozen screen.
        ticker = asyncio.create_task(self._tick(), name="snapshots-while-finishing")
        report_md: Path | None = None
        results: list[GateResult] = []
        try:
            await self._io_drain()
            await self._io_call(self.recorder.close)

            try:
                await asyncio.to_thread(write_exports, self.run_dir)
            except Exception:  # flame exports must not cost the run its report
                log.exception("flame exports failed")
            gates_json = campaign_to_json(self.campaign)["gates"]
            report_md, v, results = await asyncio.to_thread(
                write_run_report, self.run_dir, gates_json, baseline_run=self.baseline_run
            )
        except Exception as exc:
            log.exception("could not write the report")
            self.message = f"report could not be written: {exc}"
            completed = False
            v = GateState.PENDING.value
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
        try:  # every session is done: the panel over all of them, fixed-n ratios final
            source = LockedSource(self.live, self._live_lock, before=self._apply_pending)
            self._panel_final = await asyncio.to_thread(self._panel, source, completed)
        except Exception:  # the panel is a view: it must not cost the run its end
            log.exception("comparison panel could not be computed")
        self._gates = results or self._gates
        self._final_verdict = v
        if not completed:
            exit_status = EXIT_INCOMPLETE
        elif v == GateState.PASS.value:
            exit_status = EXIT_PASS
        else:
            exit_status = EXIT_FAIL
        self.state = RunState.FINISHED if completed else RunState.FAILED
        if report_md is not None:
            stopped = "" if completed else " (run stopped before the end)"
            self.message = f"verdict {v.upper()}{stopped}; report: {report_md}"
        if self.recording_error is not None:
            self.message = f"recording failed ({self.recording_error}); run stopped. {self.message}"
        self._publish()
        self.gate_changes.close()

        secure_tree(self.run_dir)  # files made while finishing get the run directory's modes
        self._io.shutdown(wait=False)
        self._snap_pool.shutdown(wait=False)
        return RunOutcome(
            verdict=v,
            exit_status=exit_status,
            run_dir=self.run_dir,
            report_md=report_md,
            gates=tuple(results),
        )
