"""Reading the machine's noise around each session: ``/proc/stat``, ``/proc/loadavg``, rusage.

``NoiseMeter`` takes a ``NoiseReading`` when a session starts and when it ends and hands them to
``perfmon.core.noise.session_noise``, which does the arithmetic (see that module for what is
measured and its resolution). Readings are taken on the runner's loop when the supervisor
reports a session started or finished, never on the session's timed path, and are cheap:
``ProcReader`` keeps ``/proc/stat`` and ``/proc/loadavg`` open and ``pread``s only their first
line (opening a ``/proc`` file and generating all of ``/proc/stat``, whose ``intr`` line sums
every interrupt counter, costs several times more; ``bench/noise_cost.py`` measures it).

Where ``/proc`` is missing (not Linux) or unreadable, readings carry no CPU ticks and sessions
simply have no noise figures; ``unavailable`` counts such readings.
"""

from __future__ import annotations

import contextlib
import dataclasses
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


_FIRST_LINE = 256
"""Bytes enough for ``/proc/stat``'s aggregate line (10 counters of at most 20 digits)."""


class ProcReader:
    """Takes ``NoiseReading``s cheaply: the ``/proc`` files stay open, each reading ``pread``s
    their first line. The number of CPUs is counted once, from a full read of ``/proc/stat``.

    Args:
        stat_path / loadavg_path: the files (tests point them at fakes).

    A file that cannot be opened or read gives readings without that part (``cpu`` or
    ``load1`` None); nothing here raises. ``close`` releases the descriptors (they are
    close-on-exec, so sessions never inherit them).
    """

    def __init__(self, stat_path: Path = PROC_STAT, loadavg_path: Path = PROC_LOADAVG) -> None:
        self.stat_path = stat_path
        self.loadavg_path = loadavg_path
        self._stat_fd = self._open(stat_path)
        self._load_fd = self._open(loadavg_path)
        self.ncpu: int | None = None
        with contextlib.suppress(OSError, ValueError, UnicodeDecodeError):
            self.ncpu = parse_proc_stat(stat_path.read_text(encoding="ascii")).ncpu

    @staticmethod
    def _open(path: Path) -> int | None:
        try:
            return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None

    def _first_line(self, fd: int | None) -> str | None:
        if fd is None:
            return None
        try:
            data = os.pread(fd, _FIRST_LINE, 0)
        except OSError:
            return None
        return data.split(b"\n", 1)[0].decode("ascii", "replace")

    def __call__(self) -> NoiseReading:
        """A reading now (see ``read_noise``)."""
        self_cpu = perfmon_cpu_seconds()
        cpu = None
        line = self._first_line(self._stat_fd)
        if line is not None and self.ncpu is not None:
            try:
                cpu = dataclasses.replace(parse_proc_stat(line), ncpu=self.ncpu)
            except ValueError:
                cpu = None
        load1 = None
        line = self._first_line(self._load_fd)
        if line is not None:
            try:
                load1 = parse_loadavg(line)
            except ValueError:
                load1 = None
        return NoiseReading(cpu=cpu, perfmon_cpu_s=self_cpu, load1=load1)

    def close(self) -> None:
        """Close the files (idempotent)."""
        for fd in (self._stat_fd, self._load_fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._stat_fd = self._load_fd = None


def read_noise(stat_path: Path = PROC_STAT, loadavg_path: Path = PROC_LOADAVG) -> NoiseReading:
    """Read the machine's CPU counters, load average and perfmon's own CPU time now.

    Never raises for an unreadable or malformed ``/proc`` file: the missing part is None.
    One-off readings; ``ProcReader`` is the cheap way to take many.

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
        reader: takes a reading (default a ``ProcReader``; tests inject fakes).
        ticks_per_s: the unit of the CPU counters (default ``ticks_per_second()``).

    Several sessions may be open at once (keyed by id); each is measured over its own window,
    and sessions running concurrently count as each other's background, which they are.
    """

    def __init__(
        self,
        reader: Callable[[], NoiseReading] | None = None,
        *,
        ticks_per_s: float | None = None,
    ) -> None:
        self._reader = reader if reader is not None else ProcReader()
        self.ticks_per_s = ticks_per_second() if ticks_per_s is None else ticks_per_s
        self._open: dict[int, NoiseReading] = {}
        self.unavailable = 0
        """Readings without CPU counters (no or unreadable ``/proc/stat``)."""

    def close(self) -> None:
        """Release the reader's files, when it has any (``ProcReader.close``)."""
        close = getattr(self._reader, "close", None)
        if callable(close):
            close()

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
