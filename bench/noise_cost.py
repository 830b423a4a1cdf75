"""The cost of measuring machine noise: one ``/proc`` reading per session start and end.

Method. A reading of ``perfmon.engine.noise.ProcReader`` (what the runner uses: ``pread`` of
the first line of the open ``/proc/stat`` and ``/proc/loadavg``, and ``getrusage``) is timed in
``ROUNDS`` rounds of ``CALLS`` calls, interleaved with the one-off ``read_noise`` (open and read
whole files) and with the same
number of calls of the supervisor's own per-interval sampling of a session, one
``psutil.Process(pid).memory_info()`` of a live child process (the baseline); the figures are
medians over the rounds. The noise guard reads twice per session (start and end), on the
runner's loop, outside the session's timed path (perfmon's CPU meanwhile is counted as
background); the second figure is that cost as a share of a 100 ms session, against the
design's bar for all monitoring overhead (under 1% of a workload's wall time).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Figure, emit, median
from perfmon.engine.noise import ProcReader, read_noise

ROUNDS = 15
CALLS = 200


def main() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        proc = psutil.Process(child.pid)
        reader = ProcReader()
        noise_ns: list[float] = []
        oneoff_ns: list[float] = []
        psutil_ns: list[float] = []
        for _ in range(ROUNDS):
            t0 = time.perf_counter_ns()
            for _ in range(CALLS):
                reader()
            noise_ns.append((time.perf_counter_ns() - t0) / CALLS)
            t0 = time.perf_counter_ns()
            for _ in range(CALLS):
                read_noise()
            oneoff_ns.append((time.perf_counter_ns() - t0) / CALLS)
            t0 = time.perf_counter_ns()
            for _ in range(CALLS):
                proc.memory_info()
            psutil_ns.append((time.perf_counter_ns() - t0) / CALLS)
    finally:
        child.kill()
        child.wait()
    reader.close()
    per_read, per_sample, oneoff = median(noise_ns), median(psutil_ns), median(oneoff_ns)
    emit(
        Figure(
            name="noise reading / one psutil RSS sample",
            value=per_read / per_sample,
            unit="x",
            method=(
                f"ProcReader() vs psutil memory_info() of a child, {ROUNDS} interleaved rounds "
                f"of {CALLS} calls, medians"
            ),
            detail=(
                f"ProcReader {per_read / 1000:.1f} us, memory_info {per_sample / 1000:.1f} us, "
                f"one-off read_noise {oneoff / 1000:.1f} us"
            ),
        )
    )
    share = 2 * per_read / 100e6
    emit(
        Figure(
            name="noise readings per session / a 100 ms session",
            value=share,
            unit="ratio",
            budget="<= 0.01",
            met=share <= 0.01,
            method="two ProcReader() readings (start and end) per session, over 100 ms",
            detail=f"{2 * per_read / 1000:.1f} us per session",
        )
    )


if __name__ == "__main__":
    main()
