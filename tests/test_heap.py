"""The daemon's heap trimming and allocator choice (issue 13: flat RSS per session).

Pure tests of ``perfmon.engine.heap`` (a fake clock and a fake trim), one check that glibc's
``malloc_trim`` is found where the C library is glibc, and one real ``perfmon run --detach``:
the daemon runs on ``malloc`` and a workload it starts does not inherit ``PYTHONMALLOC``.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from perfmon.engine.heap import (
    MALLOC_MARK,
    HeapTrimmer,
    daemon_environment,
    glibc_malloc_trim,
    restore_workload_environment,
)


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_the_trimmer_trims_once_per_interval_whatever_the_tick_rate() -> None:
    clock = FakeClock()
    calls: list[int] = []

    def trim(pad: int) -> int:
        calls.append(pad)
        return 1

    trimmer = HeapTrimmer(10.0, trim=trim, clock=clock)
    assert trimmer.available
    ticks = 0
    for _ in range(4 * 60 + 1):  # one minute of snapshots at 4 Hz, both ends included
        ticks += trimmer.tick(object())
        clock.t += 0.25
    assert calls == [0] * 6  # at 10, 20, ..., 60 s: pad 0 each time
    assert ticks == trimmer.trims == trimmer.released == 6
    assert trimmer.seconds >= trimmer.longest_s >= 0
    assert "heap trimmed 6 times (6 released memory)" in trimmer.summary()


def test_many_sessions_bring_the_trim_forward_but_never_within_the_minimum() -> None:
    clock = FakeClock()
    calls: list[int] = []

    def trim(pad: int) -> int:
        calls.append(pad)
        return 1

    trimmer = HeapTrimmer(10.0, every_sessions=100, min_interval_s=1.0, trim=trim, clock=clock)
    for _ in range(99):
        trimmer.note_session()
    clock.t += 2.0
    assert not trimmer.tick()  # 99 sessions: not yet due (and 2 s < 10 s)
    trimmer.note_session()
    assert trimmer.tick() and calls == [0]  # the 100th: due now, 8 s before the interval
    for _ in range(500):  # a flood of sessions within the minimum interval
        trimmer.note_session()
    clock.t += 0.5
    assert not trimmer.tick()
    clock.t += 0.5
    assert trimmer.tick() and calls == [0, 0]  # at the minimum interval, not before
    clock.t += 10.0
    assert trimmer.tick()  # by time, with no session at all
    off = HeapTrimmer(10.0, every_sessions=0, trim=lambda pad: 1, clock=clock)
    for _ in range(10_000):
        off.note_session()
    clock.t += 5.0
    assert not off.tick()  # every_sessions = 0: by time only


def test_a_trim_that_releases_nothing_is_counted_apart() -> None:
    clock = FakeClock()
    trimmer = HeapTrimmer(1.0, trim=lambda pad: 0, clock=clock)
    clock.t += 1.0
    assert trimmer.tick()
    assert (trimmer.trims, trimmer.released) == (1, 0)
    assert not trimmer.tick()  # the interval starts again at each trim


def test_concurrent_ticks_trim_once() -> None:
    clock = FakeClock()
    gate = threading.Event()
    entered = threading.Event()
    calls = []

    def slow_trim(pad: int) -> int:
        calls.append(pad)
        entered.set()
        gate.wait(5)
        return 1

    trimmer = HeapTrimmer(1.0, trim=slow_trim, clock=clock)
    clock.t += 2
    first = threading.Thread(target=trimmer.tick)
    first.start()
    assert entered.wait(5)
    assert not trimmer.tick()  # the first is still trimming
    gate.set()
    first.join(5)
    assert calls == [0]


def test_bad_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="interval_s"):
        HeapTrimmer(0)


def test_without_malloc_trim_the_trimmer_is_inert(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("perfmon.engine.heap.glibc_malloc_trim", lambda: None)
    trimmer = HeapTrimmer(0.001)
    assert not trimmer.available
    assert not trimmer.tick() and not trimmer.trim_now()
    assert "unavailable" in trimmer.summary()


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="malloc_trim is glibc's",
)
def test_glibc_malloc_trim_is_found_and_callable() -> None:
    trim = glibc_malloc_trim()
    assert trim is not None
    assert trim(0) in (0, 1)
    assert HeapTrimmer().available


def test_the_daemon_gets_pythonmalloc_and_the_workloads_do_not() -> None:
    env = daemon_environment({"PATH": "/bin", "HOME": "/h"})
    assert env["PYTHONMALLOC"] == "malloc" and env[MALLOC_MARK] == "1"
    assert restore_workload_environment(env)
    assert env == {"PATH": "/bin", "HOME": "/h"}
    assert not restore_workload_environment(env)  # nothing of perfmon's left


@pytest.mark.parametrize("users", ["pymalloc", "malloc", "debug", ""])
def test_a_users_own_pythonmalloc_is_left_alone(users: str) -> None:
    env = daemon_environment({"PYTHONMALLOC": users})
    assert env == {"PYTHONMALLOC": users}
    assert not restore_workload_environment(env)
    assert env == {"PYTHONMALLOC": users}


def test_restore_defaults_to_this_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONMALLOC", "malloc")
    monkeypatch.setenv(MALLOC_MARK, "1")
    assert restore_workload_environment()
    assert "PYTHONMALLOC" not in os.environ and MALLOC_MARK not in os.environ


@pytest.mark.slow
def test_the_real_daemon_runs_on_malloc_and_its_workloads_do_not(tmp_path: Path) -> None:
    """``perfmon run --detach``: the daemon's log names its allocator and its trimming; the
    workload's environment has no ``PYTHONMALLOC`` and no mark of perfmon's."""
    campaign = tmp_path / "c.toml"
    campaign.write_text(
        textwrap.dedent(
            """
            [campaign]
            name = "alloc"
            [[workload]]
            name = "env"
            command = ["sh", "-c", "echo ${PYTHONMALLOC-unset} ${PERFMON_DAEMON_PYTHONMALLOC-0}"]
            [set.one]
            sessions = 1
            """
        )
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONMALLOC", MALLOC_MARK)}
    runs = str(tmp_path / "runs")
    out = subprocess.run(
        [sys.executable, "-m", "perfmon", "run", str(campaign), "--detach", "--runs-dir", runs],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    assert out.returncode == 0, out.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    deadline = time.monotonic() + 60
    log = run_dir / "daemon.log"
    while time.monotonic() < deadline and "heap trim" not in log.read_text():
        time.sleep(0.1)
    text = log.read_text()
    assert "allocator: malloc (set by perfmon for the daemon)" in text
    assert "heap trimmed" in text or "heap trimming unavailable" in text
    assert (run_dir / "logs" / "session-0.stdout.log").read_text() == "unset 0\n"


_ANCESTORS = """
import os
p, out = os.getppid(), []
while p > 1:
    env = open(f"/proc/{p}/environ", "rb").read().split(b"\\0")
    out.append(f"{p}:{int(b'PYTHONMALLOC=malloc' in env)}")
    p = int(open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[1])
print(os.environ.get("PYTHONMALLOC", "unset"), os.environ.get("PERFMON_DAEMON_PYTHONMALLOC", "0"))
print(" ".join(out))
"""


@pytest.mark.skipif(glibc_malloc_trim() is None, reason="no glibc malloc_trim: no re-exec")
def test_headless_runs_itself_again_on_malloc_and_its_workloads_do_not(tmp_path: Path) -> None:
    """``perfmon run --headless`` (the runner in the CLI's own process) executes itself
    again under ``PYTHONMALLOC=malloc`` (same pid); the workload's environment has neither
    the variable nor perfmon's mark."""
    (tmp_path / "ancestors.py").write_text(_ANCESTORS)
    campaign = tmp_path / "c.toml"
    campaign.write_text(
        textwrap.dedent(
            f"""
            [campaign]
            name = "alloc"
            [[workload]]
            name = "env"
            command = ["{{python}}", "{tmp_path / "ancestors.py"}"]
            [set.one]
            sessions = 1
            """
        )
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONMALLOC", MALLOC_MARK)}
    runs = tmp_path / "runs"
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "perfmon", "run", str(campaign)),
            *("--headless", "--runs-dir", str(runs)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, out + err
    (run_dir,) = runs.iterdir()
    workload_env, ancestors = (run_dir / "logs" / "session-0.stdout.log").read_text().splitlines()
    assert workload_env == "unset 0"
    on_malloc = dict(a.split(":") for a in ancestors.split())
    assert on_malloc[str(proc.pid)] == "1"  # perfmon itself, after its execve
    assert list(on_malloc.values()).count("1") == 1  # and no process between it and the workload
