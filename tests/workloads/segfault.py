"""Test workload: crash with SIGSEGV."""

import os
import signal

os.kill(os.getpid(), signal.SIGSEGV)
