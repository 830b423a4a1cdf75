"""Reading the machine's noise around each session: ``/proc/stat``, ``/proc/loadavg``, rusage.

``NoiseMeter`` takes a ``NoiseReading`` when a session starts and when it ends and hands them to
``perfmon.core.noise.session_noise``, which does the arithmetic (see that module for what is
measured and its resolution). A reading costs two small ``/proc`` reads and one
``getrusage`` (tens of microseconds), taken on the runner's loop when the supervisor reports a
session started or finished, never while the workload is being timed.

Where ``/proc`` is missing (not Linux) or unreadable, readings carry no CPU ticks and sessions
simply have no noise figures; ``unavailable`` counts such readings.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Callable
from pathlib import Path

from perfmon.core.noise import (
    NoiseReading,
    SessionNoise,
    parse_loadavg,
    parse_proc_stat,
    session_noise,
)

PROC_STAT = Path("/proc/stat")
PROC_LOADAVG = Path("/proc/loadavg")


def ticks_per_second() -> float:
    """``USER_HZ``, the unit of ``/proc/stat`` (``os.sysconf("SC_CLK_TCK")``; 100 if unknown)."""
    try:
        value = os.sysconf("SC_CLK_TCK")
    except (ValueError, OSError, AttributeError):
        return 100.0
    return float(value) if value > 0 else 100.0


def perfmon_cpu_seconds() -> float:
    """This process's own user + system CPU seconds, all threads (``getrusage(RUSAGE_SELF)``;
    children excluded, so the sessions' CPU is not in it)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def read_noise(stat_path: Path = PROC_STAT, loadavg_path: Path = PROC_LOADAVG) -> NoiseReading:
    """Read the machine's CPU counters, load average and perfmon's own CPU time now.

    Never raises for an unreadable or malformed ``/proc`` file: the missing part is None.

    Args:
        stat_path / loadavg_path: the files to read (tests point them at fakes).
    """
    self_cpu = perfmon_cpu_seconds()
    try:
        cpu = parse_proc_stat(stat_path.read_text(encoding="ascii", errors="replace"))
    except (OSError, ValueError):
        cpu = None
    try:
        load1: float | None = parse_loadavg(loadavg_path.read_text(encoding="ascii"))
    except (OSError, ValueError, UnicodeDecodeError):
        load1 = None
    return NoiseReading(cpu=cpu, perfmon_cpu_s=self_cpu, load1=load1)


class NoiseMeter:
    """Brackets sessions with noise readings.

    Args:
        reader: takes a reading (default ``read_noise``; tests inject fakes).
        ticks_per_s: the unit of the CPU counters (default ``ticks_per_second()``).

    Several sessions may be open at once (keyed by id); each is measured over its own window,
    and sessions running concurrently count as each other's background, which they are.
    """

    def __init__(
        self,
        reader: Callable[[], NoiseReading] = read_noise,
        *,
        ticks_per_s: float | None = None,
    ) -> None:
        self._reader = reader
        self.ticks_per_s = ticks_per_second() if ticks_per_s is None else ticks_per_s
        self._open: dict[int, NoiseReading] = {}
        self.unavailable = 0
        """Readings without CPU counters (no or unreadable ``/proc/stat``)."""

    def _read(self) -> NoiseReading:
        reading = self._reader()
        if reading.cpu is None:
            self.unavailable += 1
        return reading

    def started(self, session_id: int) -> None:
        """Take the start reading of a session (a second call for the same id is ignored)."""
        if session_id not in self._open:
            self._open[session_id] = self._read()

    def is_open(self, session_id: int) -> bool:
        """True between ``started`` and ``finished`` of a session."""
        return session_id in self._open

    def finished(
        self, session_id: int, session_cpu_s: float | None, *, limit: float
    ) -> SessionNoise | None:
        """Take the end reading of a session and compute its noise.

        Args:
            session_id: the session.
            session_cpu_s: its tree's CPU seconds (rusage), or None when unknown.
            limit: the background share above which it is busy, in [0, 1].

        Returns:
            The noise, or None when the session was never ``started`` or the readings lack
            CPU counters.
        """
        start = self._open.pop(session_id, None)
        if start is None:
            return None
        return session_noise(
            start, self._read(), session_cpu_s, ticks_per_s=self.ticks_per_s, limit=limit
        )
