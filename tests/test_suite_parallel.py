"""The suite's own scheduling (tests/conftest.py): a quiet test runs with nothing else running.

A small suite of sleeping tests runs under pytest-xdist with this directory's conftest; each
test logs when it started and ended. The quiet ones must overlap no other test, and the others
must overlap each other (else the check below would hold trivially, on one worker).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # a pytest run in a subprocess, several seconds

INNER = """
import os, time
from pathlib import Path
import pytest

LOG = Path(__file__).parent / "log.txt"


def _run(name: str) -> None:
    start = time.monotonic()
    time.sleep(0.4)
    with LOG.open("a") as f:
        f.write(f"{name} {start} {time.monotonic()} {os.environ['PYTEST_XDIST_WORKER']}\\n")


@pytest.mark.parametrize("i", range(8))
def test_parallel(i: int) -> None:
    _run(f"parallel{i}")


@pytest.mark.quiet
@pytest.mark.parametrize("i", range(3))
def test_quiet(i: int) -> None:
    _run(f"quiet{i}")


@pytest.mark.slow
@pytest.mark.parametrize("i", range(4))
def test_slow(i: int) -> None:
    _run(f"slow{i}")
"""


def test_quiet_tests_run_alone_and_the_others_in_parallel(tmp_path: Path) -> None:
    suite = tmp_path / "suite"
    suite.mkdir()
    shutil.copy(Path(__file__).with_name("conftest.py"), suite / "conftest.py")
    (suite / "test_inner.py").write_text(INNER)
    (suite / "pytest.ini").write_text("[pytest]\nmarkers =\n  slow: s\n  quiet: q\n")
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-n", "3", "-p", "no:cacheprovider", str(suite)],
        cwd=suite,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    rows = [line.split() for line in (suite / "log.txt").read_text().splitlines()]
    spans = {name: (float(a), float(b)) for name, a, b, _worker in rows}
    assert len(spans) == 15

    def overlap(x: str, y: str) -> bool:
        return spans[x][0] < spans[y][1] and spans[y][0] < spans[x][1]

    quiet = [n for n in spans if n.startswith("quiet")]
    others = [n for n in spans if not n.startswith("quiet")]
    for q in quiet:
        assert not [n for n in spans if n != q and overlap(q, n)], (q, spans)
    assert sum(overlap(a, b) for a in others for b in others if a < b) >= 4, spans
    assert len({worker for *_, worker in rows}) == 3
