"""The executor interface: one seam between the runner and wherever sessions run.

The runner asks an executor to run each ``SessionSpec`` and hears back through two
callbacks; it never learns whether the session was a local subprocess (``local_executor``,
the ``perfmon.engine.supervisor.Supervisor``), a scripted session on a fake clock
(``perfmon.engine.fake_executor.FakeExecutor``, for tests), or a task on a Ray cluster
(``perfmon.engine.ray_executor.RayExecutor``).

Per session, an executor delivers an ordered stream, all on the event loop's thread:

1. ``on_update(result)`` with ``status == RUNNING`` once the session has started
   (``start_t`` set; a remote executor adds the host and pids to ``result.extra``);
2. while it runs, any number of ``on_samples(batch)`` (decoded probe samples and the
   executor's own ``rss_bytes`` samples) and ``on_update(result)`` (wall time, peak RSS so
   far);
3. once, ``on_update(result)`` with a finished status, then ``run_session`` returns that same
   result.

Future kinds of event (raw probe bytes decoded elsewhere, log chunks of a remote session)
become new optional fields of ``ExecutorCallbacks``; an executor that does not produce them
ignores them, so adding one breaks no executor.

Sessions at once. An executor may say how many sessions the runner should keep in flight with
a ``concurrency`` attribute (an int >= 1, read before each launch; see ``concurrency_of``).
Without one it is 1: the local supervisor and the fake's default keep the runner's one-at-a-time
path, with its chained launches (``SessionChain``). An executor with ``concurrency`` > 1 (the
Ray executor, the fake in multi-host mode) gets up to that many ``run_session`` calls at once
and enforces its own per-host limit with ``HostSlots``: a session handed to it may wait there
for its host's slot. Such an executor also offers ``withdraw(session_id) -> bool``: a session
still waiting for its slot returns a result whose status is ``PENDING`` (the runner hands it
out again after a pause), and ``cancel_all`` ends waiting ones ``CANCELLED``.

Contract that the runner relies on (both implementations keep it; ``tests/test_executor.py``
checks the fake against it):

- ``run_session`` never raises for the workload's failures: a command that cannot be started
  gives ``START_FAILED``, a crash ``SIGNAL``, a non-zero exit ``EXIT``, the timeout
  ``TIMEOUT``, ``cancel_all`` ``CANCELLED``;
- after ``cancel_all``, ``run_session`` returns ``CANCELLED`` at once without running;
- a session's ``start_t``/``end_t``/``wall_s``/``cpu_s`` are taken by the executor itself at
  the start and the end of the workload, never by the runner, so nothing the runner does (gate
  evaluation, report writing) can stretch them.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from perfmon.core.batch import SampleBatch
from perfmon.core.model import SessionResult, SessionSpec, SessionStatus

__all__ = [
    "Executor",
    "ExecutorCallbacks",
    "ExecutorConfig",
    "ExecutorFactory",
    "HostSlots",
    "SessionChain",
    "concurrency_of",
    "local_executor",
]


@runtime_checkable
class Executor(Protocol):
    """Runs sessions and reports what they did (see the module docstring for the contract)."""

    async def run_session(self, spec: SessionSpec) -> SessionResult:
        """Run one session to its end and return what was measured.

        Args:
            spec: the session.

        Returns:
            The final ``SessionResult`` (the object passed to ``on_update``); never raises for
            the workload's failures.
        """
        ...

    async def cancel_all(self) -> None:
        """End every running session (status ``CANCELLED``) and wait until each has ended;
        later ``run_session`` calls return ``CANCELLED`` at once."""
        ...

    def pid_of(self, session_id: int) -> int | None:
        """The local process id of a running session (for py-spy), or None (not running, or
        not a local process)."""
        ...

    @property
    def running(self) -> list[int]:
        """Ids of the sessions running now."""
        ...

    def log_paths(self, session_id: int) -> tuple[Path, Path]:
        """The session's stdout and stderr log files (they may not exist)."""
        ...

    async def start(self) -> str:
        """Prepare to run sessions (locally: start the keeper process) before the first one.

        Returns:
            How the executor contains a session's descendants, for the run's manifest
            (``"keeper-subreaper"`` locally).

        Raises:
            OSError: if the executor cannot be started (the runner records why and goes on;
                ``run_session`` tries again).
        """
        ...

    def close(self) -> None:
        """Release what ``start`` took (locally: end the keeper); idempotent."""
        ...


@dataclass(frozen=True, slots=True)
class ExecutorConfig:
    """How sessions are run, from the campaign.

    Attributes:
        log_dir: directory for each session's stdout/stderr logs (the run directory's
            ``logs/``).
        log_cap_bytes: cap on each log file, bytes.
        sample_interval_s: seconds between a running session's RSS samples and updates.
        grace_s: seconds between SIGTERM and SIGKILL when a session is ended.
        default_timeout_s: wall-clock limit of a session whose spec sets none, seconds (the
            campaign's ``timeout``); 0: none.
        default_idle_timeout_s: idle limit (no output, probe sample or CPU) of a session whose
            spec sets none, seconds (the campaign's ``idle_timeout``); 0: none.
    """

    log_dir: Path
    log_cap_bytes: int
    sample_interval_s: float
    grace_s: float
    default_timeout_s: float = 0.0
    default_idle_timeout_s: float = 0.0


@dataclass(frozen=True, slots=True)
class ExecutorCallbacks:
    """Where an executor delivers what it learns; called on the event loop's thread and
    expected to return quickly (the runner only hands the data on).

    Attributes:
        on_samples: receives each ``SampleBatch`` (probe samples, ``rss_bytes`` samples).
        on_update: receives the session's ``SessionResult`` at start, while running, and once
            finished (the executor may go on mutating its own object; receivers copy).
    """

    on_samples: Callable[[SampleBatch], None]
    on_update: Callable[[SessionResult], None]


ExecutorFactory = Callable[[ExecutorConfig, ExecutorCallbacks], Executor]
"""Builds an executor for one run: ``factory(config, callbacks) -> Executor``."""


def local_executor(config: ExecutorConfig, callbacks: ExecutorCallbacks) -> Executor:
    """The default executor: sessions as local subprocesses (``Supervisor``).

    Args:
        config: log directory and cap, sampling interval, grace period.
        callbacks: the runner's ``on_samples`` / ``on_update``.

    Returns:
        A ``perfmon.engine.supervisor.Supervisor``.

    Raises:
        ValueError: if ``sample_interval_s`` is not positive or ``grace_s`` is negative.
    """
    from perfmon.engine.supervisor import Supervisor

    return Supervisor(
        log_dir=config.log_dir,
        log_cap_bytes=config.log_cap_bytes,
        sample_interval_s=config.sample_interval_s,
        grace_s=config.grace_s,
        on_samples=callbacks.on_samples,
        on_update=callbacks.on_update,
        default_timeout_s=config.default_timeout_s,
        default_idle_timeout_s=config.default_idle_timeout_s,
    )


def concurrency_of(executor: object) -> int:
    """How many sessions ``executor`` can take at once: its ``concurrency`` attribute (an
    int), else 1. Values below 1 count as 1."""
    value = getattr(executor, "concurrency", 1)
    return max(1, int(value)) if isinstance(value, int) else 1


class HostSlots:
    """Per-host session slots: at most ``per_host`` sessions at once on each host, granted in
    the order they were asked for, so that the sessions of one host start in the scheduler's
    order (its interleaving of baseline and candidate holds on every host).

    A host is a measurement instrument (design.md: one session at a time per host by default);
    sessions on different hosts do not wait for each other: a session waiting for a busy host
    never holds back a later one whose host is free. With ``pair``, every session of one *key*
    (a workload and matrix point) runs on the host its key was first given: the least loaded
    candidate when the key is first seen (fewest keys already pinned to it, then fewest
    sessions running or waiting there, then the candidates' order), so workloads spread over
    the hosts and a baseline and its candidate share one.

    The executors with ``concurrency`` > 1 (``RayExecutor``, ``FakeExecutor`` with hosts)
    use it on the event loop's thread only.

    Args:
        per_host: sessions at once per host (>= 1).

    Raises:
        ValueError: if ``per_host`` < 1.
    """

    def __init__(self, per_host: int = 1) -> None:
        if per_host < 1:
            raise ValueError(f"per_host must be >= 1, got {per_host!r}")
        self.per_host = per_host
        self.busy: dict[str, int] = {}
        """Host -> sessions holding a slot there now."""
        self.pins: dict[Any, str] = {}
        """Key -> the host its sessions run on (with ``pair``)."""
        self._waiters: dict[int, tuple[tuple[str, ...], asyncio.Future[str | None]]] = {}

    def hosts_for(self, key: Any, candidates: list[str], *, pair: bool) -> list[str]:
        """The hosts a session of ``key`` may take among ``candidates`` (the hosts that can
        run it, in a stable order): with ``pair``, its key's host (pinned now if the key is
        new); else all of them. Empty when the key's host is not among the candidates (it
        left the cluster)."""
        if not pair:
            return list(candidates)
        pin = self.pins.get(key)
        if pin is None:
            if not candidates:
                return []
            pinned = [0] * len(candidates)
            for host in self.pins.values():
                if host in candidates:
                    pinned[candidates.index(host)] += 1
            waiting = {h: 0 for h in candidates}
            for hosts, _ in self._waiters.values():
                for h in hosts:
                    if h in waiting:
                        waiting[h] += 1
            best = min(
                range(len(candidates)),
                key=lambda i: (
                    pinned[i],
                    self.busy.get(candidates[i], 0) + waiting[candidates[i]],
                    i,
                ),
            )
            pin = self.pins[key] = candidates[best]
        return [pin] if pin in candidates else []

    def waiting(self) -> list[int]:
        """Ids of the sessions waiting for a slot, in the order they asked."""
        return list(self._waiters)

    async def acquire(self, session_id: int, hosts: list[str]) -> str | None:
        """Wait for a slot on one of ``hosts`` and take it.

        Args:
            session_id: the session (for ``withdraw``).
            hosts: the hosts it may run on (non-empty).

        Returns:
            The host whose slot was taken (give it back with ``release``), or None when the
            session was withdrawn (``withdraw`` / ``withdraw_all``) before it got one.

        Raises:
            ValueError: if ``hosts`` is empty.
        """
        if not hosts:
            raise ValueError("no host to wait for")
        fut: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._waiters[session_id] = (tuple(hosts), fut)
        self._grant()
        try:
            return await fut
        except asyncio.CancelledError:  # the waiting task itself was cancelled
            entry = self._waiters.get(session_id)
            if entry is not None and entry[1] is fut:
                del self._waiters[session_id]
            if fut.done() and not fut.cancelled() and fut.result() is not None:
                self.release(str(fut.result()))  # granted just before: give it back
            raise

    def release(self, host: str) -> None:
        """Give back a slot taken on ``host``; the first waiter that may use it gets it."""
        self.busy[host] = max(0, self.busy.get(host, 0) - 1)
        self._grant()

    def withdraw(self, session_id: int) -> bool:
        """Take a waiting session out of the queue (its ``acquire`` returns None).

        Returns:
            True if it was waiting (False: it has its slot already, or is unknown).
        """
        entry = self._waiters.pop(session_id, None)
        if entry is None or entry[1].done():
            return False
        entry[1].set_result(None)
        return True

    def withdraw_all(self) -> None:
        """Withdraw every waiting session (on ``cancel_all``)."""
        for sid in list(self._waiters):
            self.withdraw(sid)

    def _grant(self) -> None:
        """Give free slots to the waiters, oldest first; a waiter whose hosts are all busy
        keeps its place without blocking later ones on other hosts."""
        for sid, (hosts, fut) in list(self._waiters.items()):
            if fut.done():
                self._waiters.pop(sid, None)
                continue
            free = next((h for h in hosts if self.busy.get(h, 0) < self.per_host), None)
            if free is None:
                continue
            self.busy[free] = self.busy.get(free, 0) + 1
            del self._waiters[sid]
            fut.set_result(free)


class SessionChain:
    """Queues a run's next session in the executor while the current one runs.

    With the local executor (``Supervisor.chains_sessions``), ``queue_next`` hands the next
    session to the keeper with ``after=`` the running one: the keeper starts it the moment the
    running one has ended and been cleared, with no round trip through the daemon (issue 13:
    launch gap under 5 ms). Other executors run sessions one at a time as before (``enabled``
    is False and ``queue_next`` does nothing).

    A session is queued only once the current one's request has gone to the executor
    (``Supervisor.requested``) or, for an executor that cannot say, once it is known to have
    started (its ``RUNNING`` update, passed on by ``note_update``), so the keeper always sees
    the two requests in order and never runs two sessions of a chain at once. ``withdraw``
    takes the queued one back (on pause) when the keeper has not started it; its task then
    returns a result whose status is still ``PENDING`` and its spec goes to ``rerun``, to run
    first on resume. On
    stop, the executor's ``cancel_all`` ends it (``CANCELLED``) and ``drain`` returns it.

    Used by ``perfmon.engine.runner.Runner.run`` on the event loop's thread only.

    Args:
        executor: the run's executor.
    """

    def __init__(self, executor: Executor) -> None:
        self.executor = executor
        self.enabled = bool(getattr(executor, "chains_sessions", False))
        """True when the executor takes ``after=`` and ``withdraw``."""
        self.rerun: deque[SessionSpec] = deque()
        """Sessions withdrawn before their start, to run first when the run goes on."""
        self.chained = 0
        """Sessions queued behind a running one."""
        self.withdrawn = 0
        """Queued sessions withdrawn before they started."""
        self._queued: tuple[SessionSpec, asyncio.Task[SessionResult]] | None = None
        self._started: dict[int, asyncio.Event] = {}

    def launch(self, spec: SessionSpec) -> asyncio.Task[SessionResult]:
        """Start a session now (no chaining); returns the task running it."""
        if self.enabled:
            self._started[spec.id] = asyncio.Event()
        return asyncio.ensure_future(self.executor.run_session(spec))

    def note_update(self, result: SessionResult) -> None:
        """Pass on each ``on_update``: a session's start (or end) releases ``queue_next``."""
        if result.status is not SessionStatus.PENDING:
            event = self._started.get(result.spec.id)
            if event is not None:
                event.set()

    async def queue_next(
        self,
        spec: SessionSpec,
        running: asyncio.Task[SessionResult],
        next_spec: Callable[[], SessionSpec | None],
        allowed: Callable[[SessionSpec], bool],
    ) -> bool:
        """Queue the session after ``spec`` once ``spec`` has started.

        Call it once per session handed out (``launch`` or ``take``), also when chaining is
        not wanted: it forgets the session's start event.

        Args:
            spec: the session running (or about to) in ``running``.
            running: its task (from ``launch`` or a previous ``take``).
            next_spec: hands out the next session (called at most once, only when one will be
                queued); None: nothing left to run.
            allowed: ``allowed(spec)``, checked before and once ``spec`` has started; False
                (paused, stopping, a set whose noise guard repeats sessions) queues nothing.

        Returns:
            True when a session was queued (``take`` returns it next).
        """
        event = self._started.get(spec.id)
        if event is None or self._queued is not None or not allowed(spec):
            self._started.pop(spec.id, None)
            return False
        # An executor that says when a request is on its way (the local keeper reads its
        # socket in order) lets the next one be queued at once, even behind a session too
        # short for its start to be heard of before it ends; otherwise wait for the start.
        await asyncio.sleep(0)  # `running` takes its first step: it sends its request there
        requested = getattr(self.executor, "requested", None)
        if not event.is_set() and not (requested is not None and requested(spec.id)):
            waiter = asyncio.ensure_future(event.wait())
            try:
                await asyncio.wait({running, waiter}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
                self._started.pop(spec.id, None)
        self._started.pop(spec.id, None)
        if running.done() or not allowed(spec):
            return False  # ended already: the next one starts as usual, without a chain
        nxt = next_spec()
        if nxt is None:
            return False
        self._started[nxt.id] = asyncio.Event()
        run_session: Callable[..., Any] = self.executor.run_session
        self._queued = (nxt, asyncio.ensure_future(run_session(nxt, after=spec.id)))
        self.chained += 1
        return True

    def take(self) -> tuple[SessionSpec, asyncio.Task[SessionResult]] | None:
        """The queued session and its task, handed over once (None when none is queued)."""
        queued, self._queued = self._queued, None
        return queued

    def withdraw(self) -> bool:
        """Ask the executor to drop the queued session if it has not started (on pause).

        Returns:
            True when the withdrawal was asked for (the keeper may still have started it; the
            task's result says which: status ``PENDING`` means withdrawn).
        """
        if self._queued is None:
            return False
        withdraw = getattr(self.executor, "withdraw", None)
        if withdraw is None or not withdraw(self._queued[0].id):
            return False
        self.withdrawn += 1
        return True

    async def drain(self) -> SessionResult | None:
        """After the executor's ``cancel_all``: wait for the queued session's task and return
        its result when it has a finished status (``CANCELLED`` before its start, or a
        session that had started); None when nothing was queued or it was withdrawn."""
        queued = self.take()
        if queued is None:
            return None
        spec, task = queued
        self._started.pop(spec.id, None)
        await asyncio.wait({task})
        if task.cancelled() or task.exception() is not None:
            return None
        result = task.result()
        return result if result.status.finished else None
