"""The keeper: timing that a busy daemon cannot delay, cheap spawns, and containment.

Real processes throughout: only real processes show reaping, re-parenting and kill -9.
"""

from __future__ import annotations

import asyncio
import os
import select
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import psutil
import pytest

from perfmon.core.model import SessionResult, SessionSpec, SessionStatus
from perfmon.engine.supervisor import Supervisor

PY = sys.executable
SRC = str(Path(__file__).resolve().parents[1] / "src")

# A workload whose grandchild leaves the session (setsid) and sleeps; the grandchild's pid is
# written to argv[1] once it runs in its own session.
SETSID_WORKLOAD = textwrap.dedent(
    """
    import os, subprocess, sys, time
    code = (
        "import os, sys, time; os.setsid(); "
        "open(sys.argv[1] + '.tmp', 'w').write(str(os.getpid())); "
        "os.replace(sys.argv[1] + '.tmp', sys.argv[1]); time.sleep(120)"
    )
    subprocess.Popen([sys.executable, "-c", code, sys.argv[1]], start_new_session=False)
    while not os.path.exists(sys.argv[1]):
        time.sleep(0.005)
    time.sleep(float(sys.argv[2]))
    """
)


def spec(argv: list[str], *, id: int = 1, timeout_s: float | None = None) -> SessionSpec:
    return SessionSpec(
        id=id,
        workload="w",
        variant="baseline",
        set_name="golden",
        index=0,
        warmup=False,
        argv=tuple(argv),
        env=(),
        cwd=os.getcwd(),
        timeout_s=timeout_s,
    )


def supervisor(tmp_path: Path, *, grace_s: float = 0.3) -> Supervisor:
    return Supervisor(
        log_dir=tmp_path / "logs",
        log_cap_bytes=100_000,
        sample_interval_s=0.05,
        grace_s=grace_s,
        on_samples=lambda batch: None,
        on_update=lambda result: None,
    )


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie has finished running)."""
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def read_pid(path: Path, timeout_s: float = 10.0) -> int:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never written"
        time.sleep(0.01)
    return int(path.read_text())


@pytest.mark.quiet  # a wall time within 60 ms of the session's 0.3 s
async def test_busy_daemon_does_not_delay_the_end_of_a_session(tmp_path: Path) -> None:
    """The end of ``sleep 0.3`` is stamped by the keeper while the daemon is busy: a thread
    spins in pure Python (holding the GIL) and the event loop is blocked for 1 s."""
    sup = supervisor(tmp_path)
    await sup.start()
    stop = threading.Event()

    def spin() -> None:
        x = 0
        while not stop.is_set():
            x += 1

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    loop = asyncio.get_running_loop()
    loop.call_later(0.1, time.sleep, 1.0)  # the loop is blocked past the session's end
    try:
        r = await sup.run_session(spec(["sleep", "0.3"]))
    finally:
        stop.set()
        spinner.join()
        sup.close()
    assert r.status is SessionStatus.OK
    assert r.wall_s is not None and 0.29 <= r.wall_s < 0.36, r.wall_s


@pytest.mark.quiet  # a CPU time under 1.5 ms
async def test_cpu_of_true_is_the_workloads_own(tmp_path: Path) -> None:
    """No Python runs in the child before its exec: ``true`` costs what a bare ``true`` does
    (about 0.5 ms; forking the daemon with a Python preexec cost over 2 ms)."""
    sup = supervisor(tmp_path)
    try:
        results: list[SessionResult] = []
        for i in range(5):
            results.append(await sup.run_session(spec(["true"], id=i)))
    finally:
        sup.close()
    assert all(r.status is SessionStatus.OK for r in results)
    cpu = sorted(r.cpu_s or 0.0 for r in results)
    assert cpu[len(cpu) // 2] < 0.0015, cpu


async def test_start_failure_and_cwd(tmp_path: Path) -> None:
    sup = supervisor(tmp_path)
    missing = await sup.run_session(spec(["no-such-command-xyz"]))
    (tmp_path / "here").write_text("")
    assert missing.status is SessionStatus.START_FAILED
    assert "no-such-command-xyz" in missing.error
    listing = SessionSpec(
        id=2,
        workload="w",
        variant="baseline",
        set_name="golden",
        index=0,
        warmup=False,
        argv=("/bin/sh", "-c", "ls; ./nothing-here 2>/dev/null; exit 0"),
        env=(),
        cwd=str(tmp_path),
        timeout_s=None,
    )
    try:
        r = await sup.run_session(listing)
    finally:
        sup.close()
    assert r.status is SessionStatus.OK
    assert "here" in sup.log_paths(2)[0].read_text()


async def test_manifest_mechanism_is_the_subreaper(tmp_path: Path) -> None:
    sup = supervisor(tmp_path)
    try:
        assert await sup.start() == "keeper-subreaper"
        assert sup.keeper_pid is not None and alive(sup.keeper_pid)
        keeper = sup.keeper_pid
    finally:
        sup.close()
    assert wait_gone(keeper, 5.0)


async def test_background_grandchild_dies_with_a_normal_exit(tmp_path: Path) -> None:
    pidfile = tmp_path / "gc"
    code = (
        "import subprocess, sys; "
        "p = subprocess.Popen(['sleep', '60']); open(sys.argv[1], 'w').write(str(p.pid))"
    )
    sup = supervisor(tmp_path)
    try:
        r = await sup.run_session(spec([PY, "-c", code, str(pidfile)]))
    finally:
        sup.close()
    assert r.status is SessionStatus.OK
    assert not alive(int(pidfile.read_text()))


async def test_setsid_grandchild_dies_with_a_normal_exit(tmp_path: Path) -> None:
    pidfile = tmp_path / "gc"
    sup = supervisor(tmp_path)
    try:
        r = await sup.run_session(spec([PY, "-c", SETSID_WORKLOAD, str(pidfile), "0"]))
    finally:
        sup.close()
    assert r.status is SessionStatus.OK, r.error
    assert not alive(int(pidfile.read_text()))


async def test_setsid_grandchild_dies_with_a_timeout(tmp_path: Path) -> None:
    pidfile = tmp_path / "gc"
    sup = supervisor(tmp_path, grace_s=0.2)
    try:
        r = await sup.run_session(
            spec([PY, "-c", SETSID_WORKLOAD, str(pidfile), "60"], timeout_s=1.0)
        )
    finally:
        sup.close()
    assert r.status is SessionStatus.TIMEOUT
    assert not alive(int(pidfile.read_text()))


async def test_setsid_grandchild_of_a_concurrent_session_is_spared(tmp_path: Path) -> None:
    """Leftovers are attributed to their session: one ending does not kill another's."""
    long_pid, short_pid = tmp_path / "long", tmp_path / "short"
    sup = supervisor(tmp_path)
    try:
        long_task = asyncio.create_task(
            sup.run_session(spec([PY, "-c", SETSID_WORKLOAD, str(long_pid), "60"], id=1))
        )
        while not long_pid.exists():
            await asyncio.sleep(0.02)
        await sup.run_session(spec([PY, "-c", SETSID_WORKLOAD, str(short_pid), "0"], id=2))
        assert not alive(int(short_pid.read_text()))
        assert alive(int(long_pid.read_text()))
        await sup.cancel_all()
        r = await long_task
    finally:
        sup.close()
    assert r.status is SessionStatus.CANCELLED
    assert not alive(int(long_pid.read_text()))


OWNER = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from perfmon.core.model import SessionSpec
    from perfmon.engine.supervisor import Supervisor

    async def main():
        sup = Supervisor(log_dir=Path(sys.argv[1]), log_cap_bytes=10000,
                         sample_interval_s=0.5, grace_s=0.2,
                         on_samples=lambda b: None, on_update=lambda r: None)
        await sup.start()
        print(sup.keeper_pid, flush=True)
        spec = SessionSpec(id=1, workload="w", variant="v", set_name="s", index=0,
                           warmup=False, argv=tuple(sys.argv[2:]), env=(), cwd="/",
                           timeout_s=None)
        await sup.run_session(spec)

    asyncio.run(main())
    """
)


@pytest.mark.slow
def test_daemon_killed_9_leaves_nothing_behind(tmp_path: Path) -> None:
    """kill -9 of the process that owns the Supervisor: the session, its grandchild in the
    group and its setsid'd grandchild all die, and so does the keeper."""
    pidfile = tmp_path / "gc"
    env = {**os.environ, "PYTHONPATH": SRC}
    owner = subprocess.Popen(
        [PY, "-c", OWNER, str(tmp_path / "logs"), PY, "-c", SETSID_WORKLOAD, str(pidfile), "60"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stdout is not None
        keeper = int(owner.stdout.readline())
        grandchild = read_pid(pidfile)
        leaders = [p.pid for p in psutil.Process(keeper).children()]
        assert leaders and alive(grandchild)
        owner.send_signal(signal.SIGKILL)
        owner.wait()
        for pid in [grandchild, keeper, *leaders]:
            assert wait_gone(pid, 5.0), f"pid {pid} outlived the daemon"
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()


def test_stale_control_sockets_are_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A dead daemon's socket (nobody listens) is removed; a live one and a fresh one stay."""
    import socket as socketlib

    from perfmon.engine.registry import list_runs, remove_stale_sockets, runtime_dir

    # a runtime directory of its own: tests in other workers kill daemons, whose sockets
    # would be counted here (3 removed instead of 1, once in CI)
    monkeypatch.setenv("PERFMON_RUNTIME_DIR", str(tmp_path / "rt"))

    base = runtime_dir()
    dead, fresh, live = base / "dead-run.sock", base / "fresh-run.sock", base / "live-run.sock"
    for path in (dead, fresh):
        s = socketlib.socket(socketlib.AF_UNIX, socketlib.SOCK_STREAM)
        s.bind(str(path))
        s.close()  # the file stays, as after kill -9
    listener = socketlib.socket(socketlib.AF_UNIX, socketlib.SOCK_STREAM)
    listener.bind(str(live))
    listener.listen()
    old = time.time() - 60
    for path in (dead, live):
        os.utime(path, (old, old))
    try:
        assert remove_stale_sockets() == 1
        assert not dead.exists() and fresh.exists() and live.exists()
        os.utime(fresh, (old, old))
        list_runs()  # perfmon ls cleans up too
        assert not fresh.exists() and live.exists()
    finally:
        listener.close()
        for path in (dead, fresh, live):
            path.unlink(missing_ok=True)


def limited(argv: list[str], *, timeout_s: float | None, idle_s: float | None) -> SessionSpec:
    return SessionSpec(
        id=1,
        workload="w",
        variant="baseline",
        set_name="golden",
        index=0,
        warmup=False,
        argv=tuple(argv),
        env=(),
        cwd=os.getcwd(),
        timeout_s=timeout_s,
        idle_timeout_s=idle_s,
    )


async def test_a_silent_hang_ends_with_idle_timeout(tmp_path: Path) -> None:
    sup = supervisor(tmp_path, grace_s=0.2)
    try:
        r = await sup.run_session(limited(["sleep", "60"], timeout_s=None, idle_s=0.5))
    finally:
        sup.close()
    assert r.status is SessionStatus.IDLE_TIMEOUT
    assert "idle for 0.5 s" in r.error
    assert r.wall_s is not None and 0.5 <= r.wall_s < 3.0


@pytest.mark.slow
async def test_output_or_cpu_keeps_a_session_from_idling(tmp_path: Path) -> None:
    talk = "import time\nfor _ in range(12):\n    print('tick', flush=True); time.sleep(0.1)"
    spin = "import time\nt = time.monotonic()\nwhile time.monotonic() - t < 1.2: pass"
    sup = supervisor(tmp_path, grace_s=0.2)
    try:
        talker = await sup.run_session(limited([PY, "-c", talk], timeout_s=None, idle_s=0.5))
        spinner = await sup.run_session(limited([PY, "-c", spin], timeout_s=None, idle_s=0.5))
    finally:
        sup.close()
    assert talker.status is SessionStatus.OK, talker.error
    assert spinner.status is SessionStatus.OK, spinner.error


async def test_default_timeout_and_no_limit(tmp_path: Path) -> None:
    sup = Supervisor(
        log_dir=tmp_path / "logs",
        log_cap_bytes=100_000,
        sample_interval_s=0.05,
        grace_s=0.2,
        on_samples=lambda batch: None,
        on_update=lambda result: None,
        default_timeout_s=0.4,
    )
    try:
        by_default = await sup.run_session(limited(["sleep", "60"], timeout_s=None, idle_s=None))
        unlimited = await sup.run_session(limited(["sleep", "0.8"], timeout_s=0.0, idle_s=None))
    finally:
        sup.close()
    assert by_default.status is SessionStatus.TIMEOUT
    assert "timed out after 0.4 s" in by_default.error
    assert unlimited.status is SessionStatus.OK


def test_campaign_time_limits() -> None:
    from perfmon.core.campaign import CampaignError, parse_campaign

    text = """
[campaign]
name = "limits"
{campaign}
[[workload]]
name = "a"
command = ["true"]
{workload}
"""
    path = Path("/tmp/limits.toml")
    plain = parse_campaign(text.format(campaign="", workload=""), path)
    assert plain.timeout_s == 3600.0 and plain.idle_timeout_s == 0.0
    assert plain.workloads[0].timeout_s is None and plain.workloads[0].idle_timeout_s is None
    c = parse_campaign(
        text.format(
            campaign='timeout = "none"\nidle_timeout = "5min"',
            workload='timeout = 0\nidle_timeout = "30s"',
        ),
        path,
    )
    assert c.timeout_s == 0.0 and c.idle_timeout_s == 300.0
    assert c.workloads[0].timeout_s == 0.0 and c.workloads[0].idle_timeout_s == 30.0
    with pytest.raises(CampaignError, match="idle_timeout"):
        parse_campaign(text.format(campaign="", workload='idle_timeout = "-3s"'), path)


async def test_a_queued_session_starts_when_the_previous_one_ends(tmp_path: Path) -> None:
    """``after=``: the keeper starts the next session itself, right after the previous one's
    exit (no round trip through the daemon), even while the daemon's loop is blocked."""
    sup = supervisor(tmp_path)
    await sup.start()
    try:
        first = asyncio.create_task(sup.run_session(spec(["sleep", "1"], id=1)))
        while sup.pid_of(1) is None:
            await asyncio.sleep(0.005)
        second = asyncio.create_task(sup.run_session(spec(["true"], id=2), after=1))
        await asyncio.sleep(0)  # the request is sent while the first runs (for ~1 s more)
        sent_t = time.time()
        # The daemon's loop is blocked until the keeper has told it something: its first
        # message after the first session's end is the second's "started" (it starts the
        # successor before reporting the exit). No timed wait, so no flake under load; the
        # 30 s bound only keeps a broken keeper from hanging the test.
        assert sup._link is not None
        select.select([sup._link.sock], [], [], 30)
        unblocked_t = time.time()
        a, b = await first, await second
        third = asyncio.create_task(sup.run_session(spec(["sleep", "5"], id=3)))
        while sup.pid_of(3) is None:
            await asyncio.sleep(0.005)
        queued = asyncio.create_task(sup.run_session(spec(["true"], id=4), after=3))
        while not sup.requested(4):  # its request is with the keeper, behind session 3
            await asyncio.sleep(0.005)
        await sup.cancel_all()
        c, d = await third, await queued
    finally:
        sup.close()
    assert a.status is SessionStatus.OK and b.status is SessionStatus.OK
    assert a.end_t is not None and b.start_t is not None
    # queued before the first ended; started after it ended, before the loop could ask for it
    assert sent_t < a.end_t <= b.start_t <= unblocked_t, (sent_t, a.end_t, b.start_t, unblocked_t)
    assert c.status is SessionStatus.CANCELLED and d.status is SessionStatus.CANCELLED
    assert d.start_t is None


async def test_a_dead_keeper_ends_its_sessions_and_is_replaced(tmp_path: Path) -> None:
    """kill -9 of the keeper itself: the running session is killed and reported, and the next
    session gets a new keeper."""
    sup = supervisor(tmp_path)
    try:
        await sup.start()
        first_keeper = sup.keeper_pid
        assert first_keeper is not None
        task = asyncio.create_task(sup.run_session(spec(["sleep", "60"], id=1)))
        while sup.pid_of(1) is None:
            await asyncio.sleep(0.01)
        leader = sup.pid_of(1)
        assert leader is not None
        os.kill(first_keeper, signal.SIGKILL)
        r = await asyncio.wait_for(task, 10)
        after = await sup.run_session(spec(["true"], id=2))
    finally:
        sup.close()
    assert r.status is SessionStatus.SIGNAL and "keeper" in r.error
    assert wait_gone(leader, 5.0)
    assert after.status is SessionStatus.OK
    assert sup.keeper_pid not in (None, first_keeper)
