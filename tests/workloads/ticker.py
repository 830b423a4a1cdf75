"""Test workload: emit ``event_queue_depth`` (i % argv[2]) argv[1] times, argv[3] s apart.

Uses the real probe, so it also exercises ``from perfmon import probe`` in a session.
"""

import sys
import time

from perfmon import probe

count, modulo, pause = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
for i in range(count):
    probe.gauge("event_queue_depth", i % modulo)
    time.sleep(pause)
print(f"emitted {count} samples")
