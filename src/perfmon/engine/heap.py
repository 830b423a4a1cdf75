"""Keeping the daemon's heap flat over a long run: the system allocator, trimmed now and then.

Why (docs/performance.md, "Memory over a run's length"): over 20,000 short sessions the
daemon's RSS grew ~2 KB per session in a straight line while the objects it held stayed flat
(gc census, tracemalloc). What grew was CPython's small-object allocator (pymalloc): its
1 MiB arenas are returned to the system only when every block in them is free, and the
daemon's churn of short-lived objects (snapshot rows 4 times a second, per-session
bookkeeping, decoded batches) leaves a few long-lived blocks scattered over many arenas.

The fix has two parts, both here (measured: the RSS floor grows 275-419 bytes/session instead
of 2,084 over 20,000 sessions, ``bench/daemon_memory.py --part 2``; not flat, see
docs/performance.md):

- the daemon runs with ``PYTHONMALLOC=malloc`` (``daemon_environment``, applied by
  ``perfmon run`` when it starts the daemon): every Python object is then allocated by glibc's
  ``malloc``, whose free pages can be given back wherever they lie. The daemon takes the
  variable out of its own environment at start-up (``restore_workload_environment``), so a
  workload never inherits it (perfmon must not change what it measures); a ``PYTHONMALLOC``
  that the user set is left alone, for the daemon and the workloads;
- a ``HeapTrimmer`` calls glibc's ``malloc_trim(0)`` (man 3 malloc_trim: "release free memory
  from the heap", which since glibc 2.8 also ``madvise(MADV_DONTNEED)``s free pages in the
  middle of every arena, not only the top) at most every ``interval_s``, from the runner's
  snapshot thread, never from the event loop that launches and reaps sessions.

Where glibc is missing (musl, macOS) the trimmer is inert (``available`` is False) and the
daemon runs as before.
"""

from __future__ import annotations

import ctypes
import logging
import os
import statistics
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

log = logging.getLogger(__name__)

TRIM_INTERVAL_S = 10.0
"""Default seconds between two ``malloc_trim`` calls. Between two trims the daemon's heap
takes back its working set within seconds, so trimming more often returns little more; each
trim of the ~105 MB daemon took a median 9-27 ms (longest 50-190 ms) on a loaded 2-core VM,
i.e. ~0.1-0.3% of one core at this interval (docs/performance.md, issue 13)."""

TRIM_EVERY_SESSIONS = 500
"""Sessions after which a trim is due even before ``TRIM_INTERVAL_S`` (at least
``TRIM_MIN_INTERVAL_S`` apart): a campaign of tiny sessions (hundreds a second) otherwise piles
up ten seconds of freed pages between trims, a sawtooth of tens of MiB (bench/daemon_memory.py
--part 2: 104 -> 146 MiB at 350 sessions/s)."""

TRIM_MIN_INTERVAL_S = 1.0
"""Least seconds between two trims whatever the sessions: at most ~2.7% of one core at the
longest measured trim (27 ms), in the snapshot thread."""

MALLOC_MARK = "PERFMON_DAEMON_PYTHONMALLOC"
"""Set beside ``PYTHONMALLOC=malloc`` by ``daemon_environment``: tells the daemon the variable
is perfmon's, to be removed before any workload is started."""


def glibc_malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``int malloc_trim(size_t pad)`` through ctypes, or None where there is none.

    The call releases the GIL (``ctypes.CDLL``), so other threads run while it trims.

    Returns:
        The function (``pad`` in bytes; it returns 1 when memory was released, else 0), or
        None off Linux, or where the C library is not glibc (``gnu_get_libc_version`` and
        ``malloc_trim`` are both looked up; musl has neither).
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version.restype = ctypes.c_char_p
        libc.gnu_get_libc_version()
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


class HeapTrimmer:
    """Calls ``malloc_trim(0)`` at most every ``interval_s`` seconds; see the module docstring.

    Use ``tick`` as a runner snapshot preparer (``Runner.snapshot_preparers``): it is then
    called 4 times a second in the snapshot thread and trims when the interval has passed, or
    when ``every_sessions`` sessions ended since the last trim (``note_session``, a session
    listener on the loop: one increment) and ``min_interval_s`` has passed. Thread-safe: two
    concurrent ``tick`` calls never trim twice.

    Args:
        interval_s: least seconds between two trims (> 0).
        every_sessions: sessions after which a trim is due sooner (0: only by time).
        min_interval_s: least seconds between two trims due by sessions.
        trim: the trim function (``pad`` bytes -> 1 if released); None: glibc's
            (``glibc_malloc_trim``); tests pass a fake.
        clock: a monotonic clock in seconds (tests pass a fake).

    Raises:
        ValueError: if ``interval_s`` is not positive.
    """

    def __init__(
        self,
        interval_s: float = TRIM_INTERVAL_S,
        *,
        every_sessions: int = TRIM_EVERY_SESSIONS,
        min_interval_s: float = TRIM_MIN_INTERVAL_S,
        trim: Callable[[int], int] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s!r}")
        self.interval_s = interval_s
        self.every_sessions = every_sessions
        self.min_interval_s = min_interval_s
        self._sessions = 0  # ended since the last trim (written on the loop only)
        self._sessions_at_trim = 0
        self._trim = trim if trim is not None else glibc_malloc_trim()
        self._clock = clock
        self._lock = threading.Lock()
        self._last = clock()
        self.trims = 0
        """Calls of ``malloc_trim`` so far."""
        self.released = 0
        """Calls that released memory (``malloc_trim`` returned 1)."""
        self.seconds = 0.0
        """Wall seconds spent in ``malloc_trim`` so far (in the calling thread)."""
        self.longest_s = 0.0
        """The longest single call, seconds."""
        self.recent: deque[float] = deque(maxlen=1024)
        """Seconds of the last 1,024 calls (for ``summary``'s median)."""

    @property
    def available(self) -> bool:
        """True when there is a ``malloc_trim`` to call (glibc)."""
        return self._trim is not None

    def note_session(self, *_: Any) -> None:
        """A session ended (a ``Runner.session_listeners`` entry: one increment on the loop)."""
        self._sessions += 1

    def tick(self, *_: Any) -> bool:
        """Trim if ``interval_s`` has passed since the last trim (or since creation), or
        ``every_sessions`` sessions ended since it and ``min_interval_s`` has passed.

        Args:
            *_: ignored (so that it can be a snapshot preparer, which gets the snapshot).

        Returns:
            True when it trimmed.
        """
        if self._trim is None:
            return False
        since = self._clock() - self._last
        sessions = self._sessions - self._sessions_at_trim
        due = since >= self.interval_s or (
            0 < self.every_sessions <= sessions and since >= self.min_interval_s
        )
        if not due or not self._lock.acquire(blocking=False):
            return False
        try:
            self._sessions_at_trim = self._sessions
            self.trim_now()
        finally:
            self._lock.release()
        return True

    def trim_now(self) -> bool:
        """Trim now, whatever the interval; return whether memory was released."""
        if self._trim is None:
            return False
        t0 = time.perf_counter()
        released = bool(self._trim(0))
        took = time.perf_counter() - t0
        self._last = self._clock()
        self.trims += 1
        self.released += released
        self.seconds += took
        self.longest_s = max(self.longest_s, took)
        self.recent.append(took)
        return released

    def summary(self) -> str:
        """One line for the daemon's log: calls, total and longest time."""
        if self._trim is None:
            return "heap trimming unavailable (no glibc malloc_trim)"
        median = statistics.median(self.recent) if self.recent else 0.0
        return (
            f"heap trimmed {self.trims} times ({self.released} released memory), "
            f"{self.seconds * 1e3:.1f} ms in all, median {median * 1e3:.2f} ms, "
            f"longest {self.longest_s * 1e3:.2f} ms"
        )


def daemon_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment to start the daemon with: ``environ`` plus ``PYTHONMALLOC=malloc``.

    Where the user has set ``PYTHONMALLOC`` (to anything, even empty) it is kept as it is and
    nothing is added; otherwise ``PYTHONMALLOC=malloc`` and ``PERFMON_DAEMON_PYTHONMALLOC=1``
    are added, so that the daemon can take both out again before it starts a workload
    (``restore_workload_environment``).

    Args:
        environ: the environment the daemon would otherwise get (usually ``os.environ``).

    Returns:
        A new dict.
    """
    env = dict(environ)
    if "PYTHONMALLOC" not in env:
        env["PYTHONMALLOC"] = "malloc"
        env[MALLOC_MARK] = "1"
    return env


def reexec_with_system_malloc() -> None:
    """Run this process's command again under ``PYTHONMALLOC=malloc`` (``execve``: same pid,
    same file descriptors), for ``perfmon run --headless``, whose runner lives in the CLI's
    own process: without it the headless runner's RSS grows with the run as the daemon's
    did (pymalloc arenas, about 0.6-1 KiB per session: docs/performance.md).

    Does nothing (returns) when ``PYTHONMALLOC`` is already set (by the user, or by this
    re-exec: the child sees perfmon's mark and takes both out with
    ``restore_workload_environment`` before any workload starts), or where there is no glibc
    ``malloc_trim`` to give pages back. Re-runs ``sys.orig_argv`` with ``sys.executable``, so
    interpreter options and ``-m perfmon`` or the console script are kept as they were.

    Raises:
        OSError: if the interpreter cannot be executed (the caller may go on as it is).
    """
    if "PYTHONMALLOC" in os.environ or glibc_malloc_trim() is None:
        return
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os.execve(sys.executable, list(sys.orig_argv), daemon_environment(os.environ))


def restore_workload_environment(environ: MutableMapping[str, str] | None = None) -> bool:
    """Undo ``daemon_environment`` in the daemon's own environment (default ``os.environ``).

    Call it at the daemon's start, before any session is launched: the workloads then get the
    environment the user ran ``perfmon`` with (sessions' environments are built from
    ``os.environ``).

    Returns:
        True when perfmon's ``PYTHONMALLOC`` was found and removed.
    """
    env = os.environ if environ is None else environ
    if env.pop(MALLOC_MARK, None) is None:
        return False
    env.pop("PYTHONMALLOC", None)
    return True
