"""Test workload: print to stdout and stderr, then exit with the code given as argv[1]."""

import sys

print("hello from stdout")
print("hello from stderr", file=sys.stderr)
sys.exit(int(sys.argv[1]))
