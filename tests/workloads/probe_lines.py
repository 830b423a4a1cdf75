"""Test workload: write good and malformed probe lines to the channel in PERFMON_FD.

Good: three ``event_queue_depth`` samples, one ``chunks_total`` increment (declared a counter
with ``# TYPE``), one timestamped ``chunk_seconds`` sample; the last line has no newline.
Malformed: four lines (NaN, bad name, over-long, too many fields).
"""

import os

lines = [
    b"# PERFMON 1\n",
    b"# TYPE chunks_total counter\n",
    b"event_queue_depth 1\n",
    b"event_queue_depth NaN\n",
    b"event_queue_depth 2\n",
    b"bad-name 3\n",
    b"chunks_total 1\n",
    b"x" * 5000 + b" 1\n",
    b"event_queue_depth 1 2 3\n",
    b"chunk_seconds 0.5 1700000000.25\n",
    b"event_queue_depth 3",
]
fd = int(os.environ["PERFMON_FD"])
for line in lines:
    os.write(fd, line)
