"""The runner in-process: commands, on-demand export, and a disk that fills up.

These run on the scripted ``FakeExecutor`` (no processes); ``test_a_real_campaign_...`` keeps
one end-to-end run of real subprocesses for what only they show (timings from rusage, the
probe over a real pipe, logs).
"""

from __future__ import annotations

import asyncio
import errno
import json
import textwrap
import time
from pathlib import Path

import pytest

from perfmon.core.campaign import load_campaign
from perfmon.core.model import MetricKind
from perfmon.core.snapshot import RunState, Snapshot
from perfmon.engine.executor import Executor
from perfmon.engine.fake_executor import FakeExecutor, FakeSample, FakeSession
from perfmon.engine.recorder import make_run_dir
from perfmon.engine.runner import EXIT_INCOMPLETE, Runner

TICKER = Path(__file__).resolve().parent / "workloads" / "ticker.py"


def ticker_script(count: int = 20, modulo: int = 5, pause: float = 0.05) -> FakeSession:
    """The fake twin of tests/workloads/ticker.py: ``event_queue_depth`` i % modulo."""
    samples = tuple(
        FakeSample(i * pause, "event_queue_depth", float(i % modulo)) for i in range(count)
    )
    return FakeSession(wall_s=count * pause, cpu_s=0.01, samples=samples, peak_rss_bytes=20 << 20)


def write_campaign(tmp_path: Path, sessions: int, count: int = 20) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(
        textwrap.dedent(
            f"""
            [campaign]
            name = "inproc"
            sample_interval = "50ms"
            grace = "1s"
            [[workload]]
            name = "ticker"
            command = ["{{python}}", "{TICKER}", "{count}", "5", "0.05"]
            [set.golden]
            sessions = {sessions}
            [[gate]]
            name = "Queue"
            expr = "max(event_queue_depth) < 100"
            """
        )
    )
    return path


def make_runner(
    tmp_path: Path, sessions: int = 3, count: int = 20, *, pace: float = 0.2, real: bool = False
) -> Runner:
    campaign = load_campaign(write_campaign(tmp_path, sessions, count))
    run_dir = make_run_dir(tmp_path / "runs", campaign.name, time.time())
    if real:
        return Runner(campaign, run_dir)
    factory = FakeExecutor.factory(ticker_script(count), pace=pace)
    return Runner(campaign, run_dir, executor_factory=factory, sample_system=False)


async def _wait(predicate, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


@pytest.mark.slow
async def test_a_full_disk_stops_the_run_cleanly_with_a_clear_message(tmp_path: Path) -> None:
    runner = make_runner(tmp_path, sessions=200, pace=0.05)
    snapshots: list[Snapshot] = []
    runner.snapshot_listeners.append(snapshots.append)
    real_flush = runner.recorder.flush
    calls = {"n": 0}

    def flush() -> None:
        calls["n"] += 1
        if calls["n"] > 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_flush()

    runner.recorder.flush = flush  # type: ignore[method-assign]
    outcome = await asyncio.wait_for(runner.run(), timeout=120)
    assert outcome.exit_status == EXIT_INCOMPLETE
    assert runner.recording_error is not None and "No space left" in runner.recording_error
    assert any("No space left" in s.message for s in snapshots)
    assert runner.live.snapshot(now=time.time(), state="x").sessions_done < 200


async def test_a_failed_session_row_write_stops_the_run_like_a_full_disk(tmp_path: Path) -> None:
    runner = make_runner(tmp_path, sessions=50, pace=0.05)

    def session_finished(result: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    runner.recorder.session_finished = session_finished  # type: ignore[method-assign]
    outcome = await asyncio.wait_for(runner.run(), timeout=60)
    assert outcome.exit_status == EXIT_INCOMPLETE
    assert runner.recording_error is not None and "No space left" in runner.recording_error
    assert runner.live.snapshot(now=time.time(), state="x").sessions_done < 50


@pytest.mark.slow
async def test_pause_holds_new_sessions_and_export_writes_a_report_mid_run(tmp_path: Path) -> None:
    runner = make_runner(tmp_path, sessions=4)
    task = asyncio.create_task(runner.run())
    await _wait(lambda: runner.state == RunState.RUNNING)
    runner.handle_command("pause")
    assert runner.state == RunState.PAUSED
    # the running session finishes; no new one starts while paused
    await _wait(lambda: runner.snapshot().sessions_done >= 1)
    done = runner.snapshot().sessions_done
    await asyncio.sleep(1.5)
    assert runner.snapshot().sessions_done == done
    path = await runner.export()
    assert path is not None and path.is_file()
    assert "Queue" in path.read_text()
    runner.handle_command("resume")
    outcome = await asyncio.wait_for(task, timeout=120)
    assert outcome.exit_status == 0
    assert runner.snapshot().sessions_done == 4


async def test_the_fake_run_records_what_its_script_says(tmp_path: Path) -> None:
    created: list[FakeExecutor] = []
    campaign = load_campaign(write_campaign(tmp_path, sessions=5))
    run_dir = make_run_dir(tmp_path / "runs", campaign.name, time.time())
    script = FakeSession(
        wall_s=2.0, cpu_s=1.5, samples=(FakeSample(0.5, "event_queue_depth", 7.0),)
    )
    factory = FakeExecutor.factory([script], created=created)
    runner = Runner(campaign, run_dir, executor_factory=factory, sample_system=False)
    started = time.monotonic()
    outcome = await asyncio.wait_for(runner.run(), timeout=60)
    assert time.monotonic() - started < 10  # 10 fake seconds, no real waiting
    assert outcome.exit_status == 0
    assert isinstance(created[0], Executor)
    assert [s.id for s in created[0].launched] == [0, 1, 2, 3, 4]
    rows = [json.loads(line) for line in (run_dir / "sessions.jsonl").read_text().splitlines()]
    assert [r["wall_s"] for r in rows] == [2.0] * 5
    assert [r["cpu_s"] for r in rows] == [1.5] * 5
    assert outcome.gates[0].value == 7.0 and outcome.gates[0].n == 5
    assert runner.live.kind("event_queue_depth") is MetricKind.GAUGE


async def test_a_real_campaign_runs_end_to_end_and_records_rusage_timings(tmp_path: Path) -> None:
    runner = make_runner(tmp_path, sessions=2, count=4, real=True)
    outcome = await asyncio.wait_for(runner.run(), timeout=120)
    assert outcome.exit_status == 0
    assert outcome.gates[0].value == 3.0 and outcome.gates[0].n == 8
    rows = [
        json.loads(line) for line in (runner.run_dir / "sessions.jsonl").read_text().splitlines()
    ]
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert all(r["wall_s"] >= 0.15 and 0 < r["cpu_s"] < r["wall_s"] for r in rows)
    assert (runner.run_dir / "logs" / "session-0.stdout.log").read_text() == "emitted 4 samples\n"


def test_the_daemon_sends_the_encoding_its_preparer_made_off_the_loop(tmp_path: Path) -> None:
    from perfmon.engine.daemon import ControlServer, encode

    runner = make_runner(tmp_path)
    server = ControlServer(runner, tmp_path / "s.sock")
    snap = runner.snapshot()
    server.prepare(snap)  # in the runner's snapshot thread
    assert server._prepared is not None
    prepared = server._prepared[1]
    server.publish(snap)  # on the loop: no second encoding
    assert server._last is prepared
    other = runner.snapshot()  # not prepared (e.g. the final one): encoded on the spot
    server.publish(other)
    assert server._last == encode({"type": "snapshot", "snapshot": other.to_dict()})
