"""The executor interface: one seam between the runner and wherever sessions run.

The runner asks an executor to run one ``SessionSpec`` at a time and hears back through two
callbacks; it never learns whether the session was a local subprocess (``local_executor``,
the ``perfmon.engine.supervisor.Supervisor``), a scripted session on a fake clock
(``perfmon.engine.fake_executor.FakeExecutor``, for tests), or, later, a task on a Ray
cluster (the fleet issue builds its executor on this same interface).

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
    "SessionChain",
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
