"""Test workload: emit gauge ``tick`` = 0, 1, 2, ... and log each emission's time to a file.

argv: OUTFILE COUNT PAUSE_S. The ground-truth file (``i t`` per line, flushed at once) lets a
test check what the recording kept against what the workload sent.
"""

import os
import sys
import time

from perfmon import probe

out, count, pause = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
with open(out, "a", buffering=1) as log:
    for i in range(count):
        probe.gauge("tick", i)
        probe.flush()
        log.write(f"{i} {time.time():.6f} {os.getpid()}\n")
        time.sleep(pause)
