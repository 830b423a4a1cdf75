"""The runner in-process: commands, on-demand export, and a disk that fills up."""

from __future__ import annotations

import asyncio
import errno
import textwrap
import time
from pathlib import Path

from perfmon.core.campaign import load_campaign
from perfmon.core.snapshot import RunState, Snapshot
from perfmon.engine.recorder import make_run_dir
from perfmon.engine.runner import EXIT_INCOMPLETE, Runner

TICKER = Path(__file__).resolve().parent / "workloads" / "ticker.py"


def make_runner(tmp_path: Path, sessions: int = 3, count: int = 20) -> Runner:
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
    campaign = load_campaign(path)
    return Runner(campaign, make_run_dir(tmp_path / "runs", campaign.name, time.time()))


async def _wait(predicate, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_a_full_disk_stops_the_run_cleanly_with_a_clear_message(tmp_path: Path) -> None:
    runner = make_runner(tmp_path, sessions=50)
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
    assert runner.live.snapshot(now=time.time(), state="x").sessions_done < 50


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
