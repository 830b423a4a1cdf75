"""Test workload: leave a sleeping grandchild behind and exit 0 at once.

argv[1]: file to write the grandchild's pid to.
"""

import subprocess
import sys

child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
with open(sys.argv[1], "w") as f:
    f.write(str(child.pid))
