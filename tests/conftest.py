"""Test-wide setup: a private runtime directory, and the machine shared fairly between workers.

The runtime directory is short (AF_UNIX socket paths are limited to 107 bytes) and is inherited
by every perfmon subprocess a test starts, through the environment. Each pytest-xdist worker
imports this file, so each worker has its own.

Both tiers run in parallel (``-n auto``). A test that measures timing, or judges how busy the
machine is, would see the other workers as the noise it detects: it is marked
``@pytest.mark.quiet`` and then runs with no other test of the same run in progress. This is a
writer-preferring readers-writer lock on two files shared by the run's workers (``flock(2)``;
the classic turnstile construction, Courtois, Heymans & Parnas, "Concurrent control with
readers and writers", CACM 14(10), 1971): every test holds the run lock shared, a quiet test
holds it exclusively; a quiet test that waits holds the turnstile, so that no new test starts
until it has run. The lock spans the whole test protocol (setup, call and teardown, module
fixtures included). Without xdist (a plain ``pytest``) there is nothing to share and no lock.
Tests are not marked quiet by default: a new test runs in parallel unless it says otherwise.

Collection order (the same in every worker, as xdist requires): the slow tier's tests first,
longest soaks first, so that no long test starts last and leaves one worker running alone at the
end (longest-processing-time-first scheduling, Graham, "Bounds on multiprocessing timing
anomalies", SIAM J. Appl. Math. 17(2), 1969); then the others; the quiet tests last, when the
other workers are in short tests or done, so that waiting for them to finish costs little.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

_RUNTIME = tempfile.mkdtemp(prefix="pmrt-")
os.chmod(_RUNTIME, 0o700)
os.environ["PERFMON_RUNTIME_DIR"] = _RUNTIME


@pytest.fixture(scope="session", autouse=True)
def _private_runtime_dir() -> Iterator[str]:
    yield _RUNTIME
    shutil.rmtree(_RUNTIME, ignore_errors=True)


def _lock_files(config: pytest.Config) -> tuple[Path, Path] | None:
    """The turnstile and run lock of this xdist run, in the run's base temporary directory.

    xdist gives each worker the directory ``<run basetemp>/<worker id>``; the parent is the
    controller's, the same for every worker of the run and rotated away by pytest like any
    ``tmp_path``. ``None`` when not under xdist.
    """
    if "PYTEST_XDIST_WORKER" not in os.environ or not config.option.basetemp:
        return None
    run_dir = Path(config.option.basetemp).parent
    return run_dir / "quiet.turnstile", run_dir / "quiet.run"


def _order(item: pytest.Item) -> tuple[int, float]:
    """Slow tests by their own time limit (longest first), then the rest, quiet tests last.

    A test's ``@pytest.mark.timeout(seconds)`` is what its author expects it may need, so it
    ranks the soaks (600 s, 900 s, 1,800 s limits) before the 120 s default.
    """
    if item.get_closest_marker("quiet") is not None:
        return (2, 0.0)
    if item.get_closest_marker("slow") is None:
        return (1, 0.0)
    limit = item.get_closest_marker("timeout")
    return (0, -float(limit.args[0]) if limit is not None and limit.args else 0.0)


@pytest.hookimpl(trylast=True)  # after pytest's own reordering by fixture scope
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items.sort(key=_order)  # stable: within a rank, the files' order


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, None, None]:
    files = _lock_files(item.config)
    if files is None:
        yield
        return
    quiet = item.get_closest_marker("quiet") is not None
    turnstile_path, run_path = files
    with open(turnstile_path, "ab") as turnstile, open(run_path, "ab") as run:
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        try:
            fcntl.flock(run, fcntl.LOCK_EX if quiet else fcntl.LOCK_SH)
        finally:
            if not quiet:
                fcntl.flock(turnstile, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(run, fcntl.LOCK_UN)
            if quiet:
                fcntl.flock(turnstile, fcntl.LOCK_UN)
