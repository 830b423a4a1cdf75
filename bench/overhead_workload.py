"""The CPU-bound workload of ``bench/overhead.py``: fixed work, one probe sample per step.

``python overhead_workload.py STEPS WORK OUT``: runs ``STEPS`` steps of ``WORK`` iterations of
integer arithmetic, calls ``probe.observe("step_value", ...)`` once per step, flushes the probe,
and writes the loop's wall seconds (``time.perf_counter``, flush included), a checksum and the
loop's CPU seconds (``time.process_time``: this process only, all its threads) to ``OUT``.
Outside perfmon the probe calls are no-ops, which is the bare baseline.
"""

from __future__ import annotations

import sys
import time

from perfmon import probe


def main() -> None:
    steps, work, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    observe = probe.observe
    acc = 0
    t0 = time.perf_counter()
    c0 = time.process_time()
    for i in range(steps):
        s = i
        for j in range(work):
            s = (s * 31 + j) & 0xFFFF
        acc += s
        observe("step_value", s)
    probe.flush()
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - c0
    with open(out, "w", encoding="utf-8") as f:
        f.write(f"{elapsed!r} {acc} {cpu!r}\n")


if __name__ == "__main__":
    main()
