"""The session supervisor with real subprocesses (tests/workloads/*.py run by sys.executable)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import psutil
import pytest

from perfmon.core.model import MetricKind, Sample, SessionResult, SessionSpec, SessionStatus
from perfmon.core.text import strip_terminal_escapes
from perfmon.engine.supervisor import Supervisor

WORKLOADS = Path(__file__).parent / "workloads"
PY = sys.executable


def spec(
    argv: list[str],
    *,
    id: int = 1,
    timeout_s: float | None = None,
    env: dict[str, str] | None = None,
) -> SessionSpec:
    return SessionSpec(
        id=id,
        workload="w",
        variant="baseline",
        set_name="golden",
        index=0,
        warmup=False,
        argv=tuple(argv),
        env=tuple((env or {}).items()),
        cwd=str(WORKLOADS),
        timeout_s=timeout_s,
    )


class Harness:
    def __init__(self, tmp_path: Path, *, cap: int = 1_000_000, interval: float = 0.05) -> None:
        self.samples: list[Sample] = []
        self.updates: list[tuple[SessionStatus, float | None]] = []
        self.sup = Supervisor(
            log_dir=tmp_path / "logs",
            log_cap_bytes=cap,
            sample_interval_s=interval,
            grace_s=0.3,
            on_samples=self.samples.extend,
            on_update=self._update,
        )

    def _update(self, r: SessionResult) -> None:
        self.updates.append((r.status, r.wall_s))

    def probe(self, session: int = 1) -> list[Sample]:
        return [s for s in self.samples if s.session == session and s.metric != "rss_bytes"]


def live_members(pgid: int) -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter():
        try:
            if os.getpgid(p.pid) == pgid and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except (OSError, psutil.Error):
            pass
    return out


async def test_exit_zero_logs_and_updates(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    r = await h.sup.run_session(spec([PY, "exit_with.py", "0"]))
    assert r.status is SessionStatus.OK
    assert r.exit_code == 0 and r.signal is None and r.error == ""
    assert r.wall_s is not None and r.wall_s > 0
    assert r.start_t is not None and r.end_t is not None and r.end_t >= r.start_t
    out, err = h.sup.log_paths(1)
    assert out.read_text() == "hello from stdout\n"
    assert err.read_text() == "hello from stderr\n"
    assert h.updates[0][0] is SessionStatus.RUNNING
    assert h.updates[-1][0] is SessionStatus.OK
    assert h.sup.running == []


async def test_non_zero_exit(tmp_path: Path) -> None:
    r = await Harness(tmp_path).sup.run_session(spec([PY, "exit_with.py", "3"]))
    assert r.status is SessionStatus.EXIT
    assert r.exit_code == 3
    assert r.status_text == "exit 3"


async def test_segfault_is_signal(tmp_path: Path) -> None:
    r = await Harness(tmp_path).sup.run_session(spec([PY, "segfault.py"]))
    assert r.status is SessionStatus.SIGNAL
    assert r.signal == signal.SIGSEGV
    assert r.status_text == "SIGSEGV"


@pytest.mark.slow
async def test_timeout_kills_stubborn_group(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    pidfile = tmp_path / "pids"
    r = await h.sup.run_session(spec([PY, "stubborn.py", str(pidfile)], timeout_s=1.5))
    assert r.status is SessionStatus.TIMEOUT
    assert r.signal == signal.SIGKILL  # SIGTERM was ignored; SIGKILL after the grace period
    assert "timed out after 1.5 s" in r.error and "SIGKILL" in r.error
    leader, grandchild = (int(x) for x in pidfile.read_text().split())
    assert live_members(leader) == []
    gone = not psutil.pid_exists(grandchild) or (
        psutil.Process(grandchild).status() == psutil.STATUS_ZOMBIE
    )
    assert gone


async def test_grandchild_left_behind_is_killed(tmp_path: Path) -> None:
    pidfile = tmp_path / "orphan"
    r = await Harness(tmp_path).sup.run_session(spec([PY, "orphan.py", str(pidfile)]))
    assert r.status is SessionStatus.OK
    grandchild = int(pidfile.read_text())
    assert not psutil.pid_exists(grandchild) or (
        psutil.Process(grandchild).status() == psutil.STATUS_ZOMBIE
    )


async def test_stdout_flood_is_capped_and_drained(tmp_path: Path) -> None:
    cap = 100_000
    h = Harness(tmp_path, cap=cap)
    r = await h.sup.run_session(spec([PY, "flood.py", "50"], timeout_s=60))
    assert r.status is SessionStatus.OK  # the child never blocked on a full pipe
    text = h.sup.log_paths(1)[0].read_bytes()
    note = f"[perfmon: log capped at {cap} bytes, {50 * 2**20 - cap} bytes dropped]\n".encode()
    assert text.endswith(b"\n" + note)
    assert len(text) == cap + 1 + len(note)


async def test_probe_lines_good_and_malformed(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    r = await h.sup.run_session(spec([PY, "probe_lines.py"]))
    assert r.status is SessionStatus.OK
    assert r.malformed == 4
    assert r.samples == 5
    got = [(s.metric, s.value, s.kind) for s in h.probe()]
    assert got == [
        ("event_queue_depth", 1.0, MetricKind.GAUGE),
        ("event_queue_depth", 2.0, MetricKind.GAUGE),
        ("chunks_total", 1.0, MetricKind.COUNTER),
        ("chunk_seconds", 0.5, MetricKind.GAUGE),
        ("event_queue_depth", 3.0, MetricKind.GAUGE),
    ]
    assert h.probe()[3].t == 1700000000.25


async def test_probe_line_from_shell(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    r = await h.sup.run_session(
        spec(["/bin/sh", "-c", 'echo "event_queue_depth 12" >&$PERFMON_FD'])
    )
    assert r.status is SessionStatus.OK
    assert [(s.session, s.metric, s.value) for s in h.probe()] == [(1, "event_queue_depth", 12.0)]


async def test_environment(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    script = 'echo "$PERFMON_SESSION $PERFMON_PROTOCOL $MY_VAR"; ls -l /proc/self/fd/0'
    r = await h.sup.run_session(spec(["/bin/sh", "-c", script], id=5, env={"MY_VAR": "x"}))
    assert r.status is SessionStatus.OK
    out = h.sup.log_paths(5)[0].read_text()
    assert out.startswith("5 2 x\n")  # PERFMON_PROTOCOL: version 2, binary frames
    assert out.rstrip().endswith("/dev/null")


async def test_start_failure(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    r = await h.sup.run_session(spec(["/nonexistent/perfmon-test-command"]))
    assert r.status is SessionStatus.START_FAILED
    assert "No such file" in r.error
    assert h.updates[-1][0] is SessionStatus.START_FAILED
    r2 = await h.sup.run_session(spec([PY, "exit_with.py", "0"], id=2))
    assert r2.status is SessionStatus.OK  # the campaign goes on


async def test_cancel_all_while_running(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    task = asyncio.create_task(h.sup.run_session(spec([PY, "-c", "import time; time.sleep(60)"])))
    while not h.updates:
        await asyncio.sleep(0.01)
    pid = h.sup.pid_of(1)
    assert pid is not None
    await h.sup.cancel_all()
    r = await task
    assert r.status is SessionStatus.CANCELLED
    assert r.signal == signal.SIGTERM
    assert live_members(pid) == []
    later = await h.sup.run_session(spec([PY, "exit_with.py", "0"], id=2))
    assert later.status is SessionStatus.CANCELLED
    assert not h.sup.log_paths(2)[0].exists()


async def test_task_cancellation_kills_the_group(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    task = asyncio.create_task(h.sup.run_session(spec([PY, "-c", "import time; time.sleep(60)"])))
    while not h.updates:
        await asyncio.sleep(0.01)
    pid = h.sup.pid_of(1)
    assert pid is not None
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert live_members(pid) == []
    assert h.sup.running == []


async def test_peak_rss_of_100_mb_child(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    r = await h.sup.run_session(spec([PY, "alloc.py", "100", "0.5"]))
    assert r.status is SessionStatus.OK
    assert r.peak_rss_bytes is not None and r.peak_rss_bytes >= 90 * 2**20
    rss = [s for s in h.samples if s.metric == "rss_bytes"]
    assert rss and all(s.session == 1 and s.kind is MetricKind.GAUGE for s in rss)
    assert max(s.value for s in rss) >= 90 * 2**20
    assert any(st is SessionStatus.RUNNING and w is not None and w > 0 for st, w in h.updates)


async def test_peak_rss_ignores_perfmon_own_memory(tmp_path: Path) -> None:
    ballast = b"\x01" * (300 * 2**20)  # the kernel carries this into the child's ru_maxrss
    r = await Harness(tmp_path).sup.run_session(spec([PY, "alloc.py", "1", "0.3"]))
    assert r.peak_rss_bytes is not None and r.peak_rss_bytes < 200 * 2**20
    del ballast


async def test_cpu_of_busy_child(tmp_path: Path) -> None:
    r = await Harness(tmp_path).sup.run_session(spec([PY, "busy.py", "0.2"]))
    assert r.status is SessionStatus.OK
    assert r.cpu_s is not None and r.cpu_s >= 0.15


def test_strip_terminal_escapes() -> None:
    raw = (
        "\x1b[31mred\x1b[0m plain\ttab\n"
        "\x1b]0;new title\x07title gone\n"
        "\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\\n"
        "cr\rbell\x07bs\x08 \x1b(Bdone\x9b2J \x1bPdcs\x1b\\end\x1b"
    )
    assert strip_terminal_escapes(raw) == ("red plain\ttab\ntitle gone\nlink\ncrbellbs done end")
    assert strip_terminal_escapes("héllo wörld ✓") == "héllo wörld ✓"


async def test_shell_probe_when_no_low_fd_is_free(tmp_path: Path) -> None:
    held: list[int] = []
    try:
        while not held or held[-1] <= 9:  # take every free descriptor below 10
            held.append(os.open(os.devnull, os.O_RDONLY))
        h = Harness(tmp_path)
        script = 'echo "event_queue_depth 7" >&$PERFMON_FD; echo $PERFMON_FD'
        r = await h.sup.run_session(spec(["/bin/sh", "-c", script]))
    finally:
        for fd in held:
            os.close(fd)
    assert r.status is SessionStatus.OK, h.sup.log_paths(1)[1].read_text()
    assert h.sup.log_paths(1)[0].read_text() == "3\n"
    assert [(s.metric, s.value) for s in h.probe()] == [("event_queue_depth", 7.0)]
