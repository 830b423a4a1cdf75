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

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from perfmon.core.batch import SampleBatch
from perfmon.core.model import SessionResult, SessionSpec

__all__ = [
    "Executor",
    "ExecutorCallbacks",
    "ExecutorConfig",
    "ExecutorFactory",
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


@dataclass(frozen=True, slots=True)
class ExecutorConfig:
    """How sessions are run, from the campaign.

    Attributes:
        log_dir: directory for each session's stdout/stderr logs (the run directory's
            ``logs/``).
        log_cap_bytes: cap on each log file, bytes.
        sample_interval_s: seconds between a running session's RSS samples and updates.
        grace_s: seconds between SIGTERM and SIGKILL when a session is ended.
        default_timeout_s: wall-clock limit of a session whose workload sets none, seconds
            (0: none; the campaign's ``timeout``).
        default_idle_timeout_s: idle limit of a session whose workload sets none, seconds
            (0: none; the campaign's ``idle_timeout``).
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
