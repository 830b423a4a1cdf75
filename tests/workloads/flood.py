"""Test workload: write argv[1] MB to stdout as fast as possible, then exit 0."""

import sys

block = b"x" * 1023 + b"\n"
out = sys.stdout.buffer
for _ in range(int(sys.argv[1]) * 1024):
    out.write(block)
out.flush()
