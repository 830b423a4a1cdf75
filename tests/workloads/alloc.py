"""Test workload: hold argv[1] MiB of touched memory for argv[2] seconds."""

import sys
import time

data = b"\x01" * (int(sys.argv[1]) * 1024 * 1024)  # bytes() writes every page: resident
time.sleep(float(sys.argv[2]))
print(len(data))
