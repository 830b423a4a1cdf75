"""Test workload: keep one CPU busy for argv[1] seconds of CPU time."""

import sys
import time

end = time.process_time() + float(sys.argv[1])
n = 0
while time.process_time() < end:
    n += 1
print(n)
