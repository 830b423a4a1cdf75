"""A scripted executor on a fake clock, for tests: sessions without processes.

``FakeExecutor`` implements ``perfmon.engine.executor.Executor``. Each session follows a
``FakeSession`` script (its wall and CPU time, exit code, crash signal, start failure, hang,
peak RSS, and the samples it emits at given offsets); the executor replays it on a
``FakeClock`` and delivers what a real session would, through the same callbacks and in the
same order (``on_update`` RUNNING, samples and updates, ``on_update`` finished). It never
starts a process. With ``pace=0`` (the default) a session takes no real time: each scripted
event only yields to the loop once, so a campaign of 1,000 sessions runs in well under a
second; ``pace`` > 0 stretches the fake seconds into real ones (``pace`` real seconds per fake
second) for tests that need sessions to last while something else happens.

Timeouts and cancellation follow the supervisor's rules: a session longer than
``spec.timeout_s`` (or one that ``hang``s) ends ``TIMEOUT`` at the timeout, ``cancel_all``
ends a running session ``CANCELLED`` and every later one at once; a session that
``ignore_term``s takes ``grace_s`` longer to end and its error says SIGKILL.

Multi-host mode (``hosts=("a", "b")``): the executor behaves like the Ray executor on a
cluster of those hosts, with the same per-host rule (``perfmon.engine.executor.HostSlots``):
``concurrency`` is ``len(hosts) * sessions_per_host``, so the runner keeps several sessions in
flight; each session waits for a slot on its host (with ``pair_same_host``, the host its
workload and matrix point were first given), at most ``sessions_per_host`` run at once on a
host, sessions on different hosts overlap, and ``withdraw`` takes back one still waiting. Each
result's ``host`` names its host, and ``timeline`` lists every start and end in the order they
happened, for tests.

Usage::

    factory = FakeExecutor.factory({"baseline": FakeSession(wall_s=1.0),
                                    "candidate": FakeSession(wall_s=0.5)})
    runner = Runner(campaign, run_dir, executor_factory=factory, sample_system=False)
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import signal as _signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from perfmon.core.batch import SampleBatch
from perfmon.core.model import MetricKind, Sample, SessionResult, SessionSpec, SessionStatus
from perfmon.engine.executor import (
    Executor,
    ExecutorCallbacks,
    ExecutorConfig,
    ExecutorFactory,
    HostSlots,
)

__all__ = ["FakeClock", "FakeExecutor", "FakeSample", "FakeSession", "Script"]


class FakeClock:
    """A wall clock that moves only when told to.

    Args:
        start: its first reading, Unix seconds (default: the real time now, so that fake
            samples sit beside real ones such as the system sampler's).
    """

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else float(start)

    def now(self) -> float:
        """The current fake time, Unix seconds."""
        return self._now

    def advance_to(self, t: float) -> None:
        """Move to ``t`` (never backwards)."""
        self._now = max(self._now, t)

    def advance(self, dt: float) -> None:
        """Move forward ``dt`` seconds (>= 0)."""
        self._now += max(0.0, dt)


@dataclass(frozen=True, slots=True)
class FakeSample:
    """One sample a fake session emits.

    Attributes:
        at_s: seconds after the session's start.
        metric: metric name; ``value``: its value; ``kind``: its kind.
    """

    at_s: float
    metric: str
    value: float
    kind: MetricKind = MetricKind.GAUGE


@dataclass(frozen=True, slots=True)
class FakeSession:
    """The script of one fake session.

    Attributes:
        wall_s: how long it runs if nothing ends it, fake seconds.
        cpu_s: CPU seconds it uses over ``wall_s`` (default ``wall_s``: CPU-bound); a session
            ended early reports the same share of its shortened wall time.
        exit_code: its exit code (non-zero gives ``EXIT``).
        signal: a signal that ends it by itself (a crash: ``SIGNAL``), or None.
        start_error: when set, the command "cannot be started": ``START_FAILED``.
        hang: it never ends by itself (only its timeout or ``cancel_all`` ends it).
        ignore_term: it ignores SIGTERM, so ending it takes ``grace_s`` and a SIGKILL.
        peak_rss_bytes: its peak RSS; when set it is also sampled as ``rss_bytes`` every
            ``sample_interval_s``, as the supervisor does.
        samples: probe samples it emits, at offsets from its start.
        malformed: probe lines it sends that cannot be decoded.
        host / host_fingerprint: where it ran, set on the result as it starts, the way the
            Ray executor's first message sets them ("": the daemon's own host).
    """

    wall_s: float = 1.0
    cpu_s: float | None = None
    exit_code: int = 0
    signal: int | None = None
    start_error: str | None = None
    hang: bool = False
    ignore_term: bool = False
    peak_rss_bytes: int | None = None
    samples: tuple[FakeSample, ...] = field(default=())
    malformed: int = 0
    host: str = ""
    host_fingerprint: str = ""


Script = (
    FakeSession
    | Callable[[SessionSpec], FakeSession]
    | Mapping[str, FakeSession]
    | Sequence[FakeSession]
)
"""Which script a session follows: one script for every session, a function of its spec, a
mapping from variant name to script, or a sequence used in launch order (the last entry
repeats)."""


class FakeExecutor:
    """Replays scripted sessions on a fake clock (see the module docstring).

    Args:
        config: as for any executor (``sample_interval_s``, ``grace_s``, ``log_dir``).
        callbacks: the runner's ``on_samples`` / ``on_update``.
        script: which ``FakeSession`` each session follows (see ``Script``).
        clock: the fake clock (default a new one at the real time now).
        pace: real seconds per fake second (0: as fast as the loop allows).
        gap_s: fake seconds between one session's end and the next one's start.
        hosts: host names for the multi-host mode (empty: one anonymous host, one session at
            a time, as before).
        sessions_per_host: sessions at once per host in the multi-host mode.
        pair_same_host: in the multi-host mode, run every session of a workload and matrix
            point on one host (as ``[executor] pair_same_host``).

    Attributes:
        launched: the specs run so far, in order.
        results: the final results, in order.
        timeline: ``(event, session_id, host)`` with event ``"start"`` or ``"end"``, in the
            order they happened (multi-host mode; host ``""`` otherwise).
        max_running: the most sessions that ran at once, overall and per host.

    Raises:
        ValueError: if ``pace`` or ``gap_s`` is negative, or ``sessions_per_host`` < 1.
    """

    def __init__(
        self,
        config: ExecutorConfig,
        callbacks: ExecutorCallbacks,
        script: Script,
        *,
        clock: FakeClock | None = None,
        pace: float = 0.0,
        gap_s: float = 0.001,
        hosts: Sequence[str] = (),
        sessions_per_host: int = 1,
        pair_same_host: bool = True,
    ) -> None:
        if pace < 0 or gap_s < 0:
            raise ValueError(f"pace and gap_s must be >= 0, got {pace!r}, {gap_s!r}")
        self.hosts = tuple(hosts)
        self.slots = HostSlots(sessions_per_host)
        self.pair_same_host = pair_same_host
        self.timeline: list[tuple[str, int, str]] = []
        self.max_running: dict[str, int] = {}
        self.config = config
        self._on_samples = callbacks.on_samples
        self._on_update = callbacks.on_update
        self._script = script
        self.clock = clock or FakeClock()
        self.pace = pace
        self.gap_s = gap_s
        self._running: dict[int, SessionResult] = {}
        self._cancelled = False
        self._cancel = asyncio.Event()
        self._finished: dict[int, asyncio.Event] = {}
        self.launched: list[SessionSpec] = []
        self.results: list[SessionResult] = []
        self._host_of: dict[int, str] = {}
        self._t0 = self.clock.now()
        self._host_t: dict[str, float] = {}
        """Host -> the fake time its last session ended (multi-host mode)."""

    @property
    def concurrency(self) -> int:
        """Sessions the runner may hand over at once: ``len(hosts) * sessions_per_host`` in
        the multi-host mode, else 1."""
        return len(self.hosts) * self.slots.per_host if self.hosts else 1

    def withdraw(self, session_id: int) -> bool:
        """Take back a session still waiting for its host's slot (multi-host mode): its
        ``run_session`` returns a ``PENDING`` result. False if it is not waiting."""
        return self.slots.withdraw(session_id)

    @classmethod
    def factory(
        cls,
        script: Script,
        *,
        clock: FakeClock | None = None,
        pace: float = 0.0,
        gap_s: float = 0.001,
        created: list[FakeExecutor] | None = None,
        hosts: Sequence[str] = (),
        sessions_per_host: int = 1,
        pair_same_host: bool = True,
    ) -> ExecutorFactory:
        """An ``ExecutorFactory`` for ``Runner(executor_factory=...)``.

        Args:
            script, clock, pace, gap_s, hosts, sessions_per_host, pair_same_host: as for the
                constructor.
            created: if given, each executor built is appended to it (for assertions).
        """

        def build(config: ExecutorConfig, callbacks: ExecutorCallbacks) -> Executor:
            ex = cls(
                config,
                callbacks,
                script,
                clock=clock,
                pace=pace,
                gap_s=gap_s,
                hosts=hosts,
                sessions_per_host=sessions_per_host,
                pair_same_host=pair_same_host,
            )
            if created is not None:
                created.append(ex)
            return ex

        return build

    # -- Executor ---------------------------------------------------------------------------

    async def start(self) -> str:
        """Nothing to start: a fake session has no process to contain.

        Returns:
            ``"none (fake executor)"``, for the manifest.
        """
        return "none (fake executor)"

    def close(self) -> None:
        """Nothing to release."""

    def log_paths(self, session_id: int) -> tuple[Path, Path]:
        """Where a session's logs would be (a fake session writes none)."""
        d = Path(self.config.log_dir)
        return d / f"session-{session_id}.stdout.log", d / f"session-{session_id}.stderr.log"

    def pid_of(self, session_id: int) -> int | None:
        """Always None: a fake session has no process."""
        return None

    @property
    def running(self) -> list[int]:
        """Ids of the sessions running now."""
        return list(self._running)

    async def cancel_all(self) -> None:
        """End every running session ``CANCELLED`` and wait for it; later sessions are not
        run."""
        self._cancelled = True
        self._cancel.set()
        self.slots.withdraw_all()
        for sid in list(self._running):
            ev = self._finished.get(sid)
            if ev is not None:
                await ev.wait()

    def script_for(self, spec: SessionSpec) -> FakeSession:
        """The script ``spec`` follows.

        Raises:
            KeyError: a mapping script without the session's variant.
            ValueError: an empty sequence script.
        """
        s = self._script
        if isinstance(s, FakeSession):
            return s
        if callable(s):
            return s(spec)
        if isinstance(s, Mapping):
            return s[spec.variant]
        if not s:
            raise ValueError("empty script")
        return s[min(len(self.launched) - 1, len(s) - 1)]

    async def run_session(self, spec: SessionSpec) -> SessionResult:
        """Replay one scripted session; see ``Executor.run_session``. In the multi-host mode
        it first waits for a slot on its host; withdrawn meanwhile, it returns its result
        still ``PENDING``."""
        result = SessionResult(spec=spec)
        if self._cancelled:
            return self._cancelled_before_start(result)
        if not self.hosts:
            return await self._run(spec, result, "")
        key = (spec.workload, tuple(sorted(spec.params)))
        hosts = self.slots.hosts_for(key, list(self.hosts), pair=self.pair_same_host)
        host = await self.slots.acquire(spec.id, hosts)
        if host is None:
            return self._cancelled_before_start(result) if self._cancelled else result
        try:
            result.host = host
            result.host_fingerprint = "fake"
            return await self._run(spec, result, host)
        finally:
            self.slots.release(host)

    def _cancelled_before_start(self, result: SessionResult) -> SessionResult:
        result.status = SessionStatus.CANCELLED
        result.error = "run cancelled before the session started"
        self._on_update(result)
        return result

    async def _run(self, spec: SessionSpec, result: SessionResult, host: str) -> SessionResult:
        """Replay ``spec`` (its host's slot held, in the multi-host mode)."""
        if self._cancelled:
            return self._cancelled_before_start(result)
        self.launched.append(spec)
        script = self.script_for(spec)
        if host:  # hosts work side by side: each has its own timeline on the fake clock
            start = self._host_t.get(host, self._t0) + self.gap_s
            self.clock.advance_to(start)
        else:
            self.clock.advance(self.gap_s)
            start = self.clock.now()
        result.start_t = start
        if not host:  # one anonymous host: the script says where it ran (as Ray's first message)
            result.host, result.host_fingerprint = script.host, script.host_fingerprint
        if script.start_error is not None:
            result.status = SessionStatus.START_FAILED
            what = spec.argv[0] if spec.argv else "command"
            result.error = f"cannot start {what}: {script.start_error}"
            result.end_t = start
            result.wall_s = 0.0
            self._on_update(result)
            self.results.append(result)
            return result
        result.status = SessionStatus.RUNNING
        self._running[spec.id] = result
        self._host_of[spec.id] = host
        self.timeline.append(("start", spec.id, host))
        for k in ("", host) if host else ("",):
            now = sum(1 for h in self._host_of.values() if not k or h == k)
            self.max_running[k] = max(self.max_running.get(k, 0), now)
        finished = self._finished[spec.id] = asyncio.Event()
        try:
            self._on_update(result)
            ended_by, elapsed = await self._replay(spec, script, result, start)
            self._end(spec, script, result, start, ended_by, elapsed)
        finally:
            self._running.pop(spec.id, None)
            self._host_of.pop(spec.id, None)
            if host:
                self._host_t[host] = result.end_t if result.end_t is not None else start
            self.timeline.append(("end", spec.id, host))
            finished.set()
            self._finished.pop(spec.id, None)
        self._on_update(result)
        self.results.append(result)
        return result

    # -- replay -----------------------------------------------------------------------------

    def _events(
        self, script: FakeSession, end_s: float
    ) -> list[tuple[float, list[FakeSample], bool]]:
        """(offset, probe samples at it, whether RSS is sampled at it) before ``end_s``, in
        time order; RSS every ``sample_interval_s`` when the script has a peak RSS."""
        at: dict[float, list[FakeSample]] = {}
        for s in script.samples:
            if s.at_s < end_s:
                at.setdefault(max(0.0, s.at_s), [])
                at[max(0.0, s.at_s)].append(s)
        rss_at: set[float] = set()
        if script.peak_rss_bytes is not None:
            step = self.config.sample_interval_s
            last = end_s if math.isfinite(end_s) else max([0.0, *at])
            k = 1
            while k * step < last:
                rss_at.add(k * step)
                at.setdefault(k * step, [])
                k += 1
        return [(t, at[t], t in rss_at) for t in sorted(at)]

    async def _wait(self, fake_s: float) -> bool:
        """Let ``fake_s`` fake seconds pass in real time (scaled by ``pace``), or just yield;
        True if ``cancel_all`` was called meanwhile."""
        if self.pace > 0 and fake_s > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._cancel.wait(), fake_s * self.pace)
        else:
            await asyncio.sleep(0)
        return self._cancelled

    async def _replay(
        self, spec: SessionSpec, script: FakeSession, result: SessionResult, start: float
    ) -> tuple[SessionStatus | None, float]:
        """Deliver the session's events; return who ended it (None: itself) and when."""
        natural = math.inf if script.hang else max(0.0, script.wall_s)
        # As the local supervisor: None is the campaign's default timeout, 0 is no limit.
        limit = spec.timeout_s if spec.timeout_s is not None else self.config.default_timeout_s
        timeout = limit if limit else math.inf
        end_s = min(natural, timeout)
        ended_by = SessionStatus.TIMEOUT if timeout < natural else None
        if math.isinf(end_s) and self.pace == 0:
            # A hang with no timeout: only cancel_all can end it; wait for it in real time.
            await self._cancel.wait()
            return SessionStatus.CANCELLED, 0.0
        previous = 0.0
        for offset, samples, sample_rss in self._events(script, end_s):
            if await self._wait(offset - previous):
                return SessionStatus.CANCELLED, previous
            previous = offset
            self.clock.advance_to(start + offset)
            batch = [Sample(start + s.at_s, spec.id, s.metric, s.value, s.kind) for s in samples]
            result.samples += len(batch)
            if sample_rss and script.peak_rss_bytes is not None:
                rss = float(script.peak_rss_bytes)
                batch.append(Sample(start + offset, spec.id, "rss_bytes", rss, MetricKind.GAUGE))
                result.peak_rss_bytes = script.peak_rss_bytes
            if batch:
                self._on_samples(SampleBatch.from_samples(batch))
            result.wall_s = offset
            self._on_update(result)
        if math.isinf(end_s):
            await self._cancel.wait()
            return SessionStatus.CANCELLED, previous
        if await self._wait(end_s - previous):
            return SessionStatus.CANCELLED, previous
        return ended_by, end_s

    def _end(
        self,
        spec: SessionSpec,
        script: FakeSession,
        result: SessionResult,
        start: float,
        ended_by: SessionStatus | None,
        elapsed: float,
    ) -> None:
        """Fill in the final result as the supervisor's reap would."""
        grace = self.config.grace_s if ended_by is not None and script.ignore_term else 0.0
        wall = elapsed + grace
        self.clock.advance_to(start + wall)
        result.end_t = start + wall
        result.wall_s = wall
        cpu = script.wall_s if script.cpu_s is None else script.cpu_s
        rate = cpu / script.wall_s if script.wall_s > 0 else 1.0
        result.cpu_s = cpu if ended_by is None else rate * elapsed
        result.peak_rss_bytes = script.peak_rss_bytes
        result.malformed = script.malformed
        if ended_by is not None:
            result.status = ended_by
            if ended_by is SessionStatus.TIMEOUT:
                limit = spec.timeout_s or self.config.default_timeout_s
                result.error = f"timed out after {limit:g} s"
            else:
                result.error = "cancelled"
            if script.ignore_term:
                result.error += f"; SIGKILL after {self.config.grace_s:g} s grace"
                result.signal = int(_signal.SIGKILL)
            else:
                result.signal = int(_signal.SIGTERM)
        elif script.signal is not None:
            result.status = SessionStatus.SIGNAL
            result.signal = script.signal
        else:
            result.exit_code = script.exit_code
            result.status = SessionStatus.OK if script.exit_code == 0 else SessionStatus.EXIT
