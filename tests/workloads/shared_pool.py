"""Test workload: a 2-worker fork pool sharing the parent's argv[1] MiB heap (copy-on-write).

Writes "ready" to the file argv[2] once the workers run, then keeps them alive until the file
argv[3] exists (or 60 s pass).
"""

import multiprocessing
import os
import sys
import time

data = b"\x01" * (int(sys.argv[1]) * 1024 * 1024)  # resident in the parent, shared by the workers


def hold(_: int) -> int:
    deadline = time.monotonic() + 60
    while not os.path.exists(sys.argv[3]) and time.monotonic() < deadline:
        time.sleep(0.02)
    return len(data)


if __name__ == "__main__":
    with multiprocessing.get_context("fork").Pool(2) as pool:
        result = pool.map_async(hold, range(2), chunksize=1)
        time.sleep(0.3)  # let both workers start their task
        with open(sys.argv[2], "w") as f:
            f.write("ready")
        result.get(timeout=90)
