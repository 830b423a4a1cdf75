"""psutil samplers: machine-wide memory and CPU, and the memory of a session's process tree.

A session's tree is measured two ways:

- **RSS** (``process_tree_rss``, every sample): the sum of each process's resident set size,
  as ``top`` shows it. Cheap (one ``/proc/<pid>/statm`` read per process), but pages shared
  between processes of the tree (a forked worker pool's copy-on-write heap, shared libraries)
  are counted once per process: a tree's RSS overstates its footprint.
- **PSS and USS** (``TreeMemorySampler``, less often): proportional set size splits each
  shared page among the processes mapping it, so the tree's PSS sum counts a page shared
  within the tree once (and a page shared with processes outside the tree in proportion);
  unique set size counts only pages private to each process (what ending the tree frees for
  sure). Both come from ``/proc/<pid>/smaps_rollup`` via psutil's ``memory_full_info``
  (proc(5)), which walks the process's page tables: measured here ~0.3 ms per small Python
  process and ~80 ms for a process of 450 MB RSS (docs/performance.md), so they are read on a
  schedule that keeps the reading under 1% of the session's wall time, in a worker thread.

Machine-wide samples belong to ``SYSTEM_SESSION``:

- ``system_memory_percent``: ``psutil.virtual_memory().percent`` (used / total, 0..100, where
  "used" excludes reclaimable cache; see psutil's docs for ``virtual_memory``);
- ``system_memory_used_bytes``: ``psutil.virtual_memory().used``;
- ``system_cpu_percent``: ``psutil.cpu_percent(None)``, the whole machine's CPU use since the
  previous call, 0..100 (all cores together).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import psutil

from perfmon.core.model import SYSTEM_SESSION, MetricKind, Sample

_HAS_PROC_CHILDREN = os.path.exists(f"/proc/self/task/{os.getpid()}/children")
"""Linux ``/proc/<pid>/task/<tid>/children`` (CONFIG_PROC_CHILDREN, Linux 3.5+; proc(5))."""


def _tree(pid: int) -> list[psutil.Process]:
    """A process and its descendants, parents first.

    With ``/proc/<pid>/task/<tid>/children`` the walk reads only the tree's own processes;
    psutil's ``children(recursive=True)`` reads ``/proc/<pid>/stat`` of every process on the
    machine to build a parent map (measured here: ~20 ms with 129 processes, every sample).
    The kernel notes the children lists can miss a process forked or exiting during the walk;
    the next sample sees it.

    Raises:
        psutil.NoSuchProcess / psutil.AccessDenied: the root is gone or unreadable.
    """
    root = psutil.Process(pid)
    if not _HAS_PROC_CHILDREN:
        return [root, *root.children(recursive=True)]
    procs, seen, queue = [root], {pid}, [pid]
    while queue:
        parent = queue.pop()
        try:
            tids = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{parent}/task/{tid}/children", "rb") as f:
                    kids = [int(x) for x in f.read().split()]
            except (OSError, ValueError):
                continue
            for kid in kids:
                if kid in seen:
                    continue
                seen.add(kid)
                try:
                    procs.append(psutil.Process(kid))
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
                queue.append(kid)
    return procs


def process_tree_rss(pid: int) -> int:
    """Sum the resident set size of a process and all its descendants.

    Sums plain RSS (as ``top`` shows it), so pages shared between processes of the tree are
    counted once per process (a forked pool's shared heap once per worker);
    ``process_tree_pss_uss`` gives the tree's PSS and USS, at the cost of a page-table walk.

    Args:
        pid: the root process id (a session's leader).

    Returns:
        Bytes; 0 when the root is gone or cannot be read. Descendants that vanish, are
        zombies or cannot be read while being summed are skipped.
    """
    try:
        procs = _tree(pid)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return 0
    total = 0
    for proc in procs:
        try:
            total += int(proc.memory_info().rss)
        except (psutil.NoSuchProcess, psutil.AccessDenied):  # ZombieProcess included
            continue
    return total


@dataclass(frozen=True, slots=True)
class TreeMemory:
    """PSS and USS of a process tree at one moment.

    Attributes:
        pss_bytes: sum of the proportional set sizes of the tree's processes, bytes.
        uss_bytes: sum of their unique set sizes (private clean + private dirty pages), bytes.
        processes: processes summed (vanished or unreadable ones are skipped).
        cost_s: seconds the reading took (perf_counter), perfmon's own cost.
    """

    pss_bytes: int
    uss_bytes: int
    processes: int
    cost_s: float


def process_tree_pss_uss(pid: int) -> TreeMemory | None:
    """Sum the PSS and USS of a process and all its descendants (psutil ``memory_full_info``).

    Costs a page-table walk of every process of the tree (``/proc/<pid>/smaps_rollup``):
    call it in a worker thread and not often (``TreeMemorySampler``).

    Args:
        pid: the root process id (a session's leader).

    Returns:
        The sums, or None when the root is gone or no process of the tree could be read
        (``smaps_rollup`` missing: Linux before 4.14, or another OS without USS/PSS).
    """
    t0 = time.perf_counter()
    try:
        procs = _tree(pid)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    pss = uss = n = 0
    for proc in procs:
        try:
            full = proc.memory_full_info()
            pss += int(getattr(full, "pss", 0))
            uss += int(full.uss)
            n += 1
        except (psutil.NoSuchProcess, psutil.AccessDenied, AttributeError, OSError):
            continue  # vanished, zombie, or no USS on this platform
    if n == 0:
        return None
    return TreeMemory(pss, uss, n, time.perf_counter() - t0)


class TreeMemorySampler:
    """Reads a tree's PSS/USS on a schedule that bounds its own cost.

    The first read is due at once; after a read that took ``c`` seconds, ``a`` seconds after
    the sampler was made, the next is due ``max(min(min_interval_s, a / 2),
    c / max_cost_fraction)`` seconds later: early reads come often (a short session still
    gets its peak, as the RSS sampler's early samples do), then every ``min_interval_s``, and
    reading never takes more than ``max_cost_fraction`` of the wall time (the
    ``smaps_rollup`` walk grows with the tree's resident memory: ~80 ms at 450 MB here).
    One sampler per session; not thread-safe (``read`` runs in one worker thread at a time).

    Args:
        min_interval_s: least seconds between reads (> 0).
        max_cost_fraction: most of the wall time spent reading, in (0, 1].
        clock: monotonic seconds (injected by tests).

    Raises:
        ValueError: an argument is out of range.
    """

    def __init__(
        self,
        min_interval_s: float = 1.0,
        max_cost_fraction: float = 0.01,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not min_interval_s > 0:
            raise ValueError(f"min_interval_s must be > 0, got {min_interval_s!r}")
        if not 0 < max_cost_fraction <= 1:
            raise ValueError(f"max_cost_fraction must be in (0, 1], got {max_cost_fraction!r}")
        self.min_interval_s = min_interval_s
        self.max_cost_fraction = max_cost_fraction
        self._clock = clock
        self._start = clock()
        self._next = -float("inf")
        self.peak_pss_bytes: int | None = None
        self.peak_uss_bytes: int | None = None
        self.reads = 0
        self.cost_s = 0.0

    def due(self) -> bool:
        """Whether the next read is due now."""
        return self._clock() >= self._next

    def schedule(self, cost_s: float) -> None:
        """Plan the next read after one that took ``cost_s`` seconds."""
        now = self._clock()
        gap = min(self.min_interval_s, (now - self._start) / 2)
        self._next = now + max(gap, cost_s / self.max_cost_fraction)

    def read(self, pid: int) -> TreeMemory | None:
        """Read the tree of ``pid`` (``process_tree_pss_uss``), keep the peaks, schedule the
        next read. Returns the reading, or None when nothing could be read."""
        mem = process_tree_pss_uss(pid)
        self.schedule(mem.cost_s if mem is not None else 0.0)
        if mem is None:
            return None
        self.reads += 1
        self.cost_s += mem.cost_s
        self.peak_pss_bytes = max(self.peak_pss_bytes or 0, mem.pss_bytes)
        self.peak_uss_bytes = max(self.peak_uss_bytes or 0, mem.uss_bytes)
        return mem


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
