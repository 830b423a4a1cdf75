"""Test workload: ignore SIGTERM, start a grandchild that ignores it too, then sleep.

argv[1]: file to write "<own pid> <grandchild pid>" to once both are running.
"""

import os
import signal
import subprocess
import sys
import time

signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen(
    [
        sys.executable,
        "-c",
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ready', flush=True)\n"
        "time.sleep(120)\n",
    ],
    stdout=subprocess.PIPE,
)
assert child.stdout is not None
child.stdout.readline()  # the grandchild ignores SIGTERM from here on
tmp = sys.argv[1] + ".tmp"
with open(tmp, "w") as f:
    f.write(f"{os.getpid()} {child.pid}")
os.replace(tmp, sys.argv[1])
time.sleep(120)
