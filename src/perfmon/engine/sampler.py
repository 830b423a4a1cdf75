"""psutil samplers: machine-wide memory and CPU, and the RSS of a session's process tree.

Machine-wide samples belong to ``SYSTEM_SESSION``:

- ``system_memory_percent``: ``psutil.virtual_memory().percent`` (used / total, 0..100, where
  "used" excludes reclaimable cache; see psutil's docs for ``virtual_memory``);
- ``system_memory_used_bytes``: ``psutil.virtual_memory().used``;
- ``system_cpu_percent``: ``psutil.cpu_percent(None)``, the whole machine's CPU use since the
  previous call, 0..100 (all cores together).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import psutil

from perfmon.core.model import SYSTEM_SESSION, MetricKind, Sample


def process_tree_rss(pid: int) -> int:
    """Sum the resident set size of a process and all its descendants.

    Sums plain RSS (as ``top`` shows it), so pages shared between processes of the tree are
    counted once per process; PSS would be exact but costs a read of every ``smaps``.

    Args:
        pid: the root process id (a session's leader).

    Returns:
        Bytes; 0 when the root is gone or cannot be read. Descendants that vanish, are
        zombies or cannot be read while being summed are skipped.
    """
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return 0
    total = 0
    for proc in procs:
        try:
            total += int(proc.memory_info().rss)
        except (psutil.NoSuchProcess, psutil.AccessDenied):  # ZombieProcess included
            continue
    return total


def process_peak_rss(pid: int) -> int:
    """The kernel's high-water mark of one process's RSS since its ``exec`` (Linux ``VmHWM``).

    Unlike the sampled RSS it sees spikes between samples; unlike ``ru_maxrss`` from
    ``wait4`` it does not include the RSS of the parent that forked the process (the kernel
    carries the pre-exec memory's high-water mark into ``ru_maxrss``, so a child of a 300 MB
    process reports at least 300 MB there). Read from ``/proc/<pid>/status`` (see proc(5)).

    Args:
        pid: a live process id.

    Returns:
        Bytes; 0 when the process is gone, a zombie, unreadable, or not on Linux.
    """
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024  # the kernel writes "N kB" (KiB)
    except (OSError, ValueError, IndexError):
        return 0
    return 0


def system_samples(now: float) -> list[Sample]:
    """Take one set of machine-wide samples.

    Args:
        now: wall-clock time stamped on the samples, Unix seconds.

    Returns:
        ``system_memory_percent``, ``system_memory_used_bytes`` and ``system_cpu_percent``
        samples of ``SYSTEM_SESSION`` (GAUGE). The CPU figure covers the time since the
        previous ``psutil.cpu_percent(None)`` call in this process.
    """
    vm = psutil.virtual_memory()
    cpu = psutil.cpu_percent(None)
    g = MetricKind.GAUGE
    return [
        Sample(now, SYSTEM_SESSION, "system_memory_percent", float(vm.percent), g),
        Sample(now, SYSTEM_SESSION, "system_memory_used_bytes", float(vm.used), g),
        Sample(now, SYSTEM_SESSION, "system_cpu_percent", float(cpu), g),
    ]


class SystemSampler:
    """Emit machine-wide memory and CPU samples every ``interval_s`` until stopped.

    Args:
        interval_s: seconds between sample sets (> 0).
        on_samples: called in the event loop with each set of three samples.

    Raises:
        ValueError: if ``interval_s`` is not positive.
    """

    def __init__(self, interval_s: float, on_samples: Callable[[list[Sample]], None]) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s!r}")
        self.interval_s = interval_s
        self._on_samples = on_samples
        self._stop = asyncio.Event()

    async def run(self) -> None:
        """Sample every ``interval_s`` (first set one interval after the start) until
        ``stop()`` is called; returns then (at once if ``stop()`` came first). One run per
        sampler."""
        psutil.cpu_percent(None)  # prime: the first call has no previous point
        while not self._stop.is_set():
            try:
                await asyncio.wait_for(self._stop.wait(), self.interval_s)
            except TimeoutError:
                self._on_samples(system_samples(time.time()))

    def stop(self) -> None:
        """Make ``run()`` return at its next wake-up (at once if it is waiting)."""
        self._stop.set()
