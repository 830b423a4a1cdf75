"""The viewer on a real run: a daemon process, its socket, and the Textual app under Pilot."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from perfmon.core.model import GateState
from perfmon.engine.client import SocketClient
from perfmon.engine.daemon import socket_path
from perfmon.engine.recorder import make_run_dir
from perfmon.tui.app import PerfmonApp
from perfmon.tui.widgets.gate_board import GateBoard
from perfmon.tui.widgets.sessions_table import SessionsTable

TICKER = Path(__file__).resolve().parent / "workloads" / "ticker.py"

CAMPAIGN = textwrap.dedent(
    """
    [campaign]
    name = "pilot-live"
    sample_interval = "100ms"
    grace = "1s"

    [[workload]]
    name = "ticker"
    command = ["{python}", "TICKER", "30", "9", "0.05"]

    [set.golden]
    sessions = 100

    [[gate]]
    name = "Queue depth"
    expr = "p95(event_queue_depth) < 100"
    [[gate]]
    name = "Too strict"
    expr = "max(event_queue_depth) < 5"
    """
).replace("TICKER", str(TICKER))


@pytest.mark.slow
async def test_gates_turn_green_and_red_live_and_q_writes_the_report(tmp_path: Path) -> None:
    campaign = tmp_path / "pilot.toml"
    campaign.write_text(CAMPAIGN)
    run_dir = make_run_dir(tmp_path / "runs", "pilot-live", time.time())
    sock = socket_path(run_dir.name)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "perfmon",
            "_daemon",
            str(campaign),
            "--run-dir",
            str(run_dir),
            "--socket",
            str(sock),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    client = SocketClient(sock)
    try:
        client.connect(alive=lambda: proc.poll() is None)
        app = PerfmonApp(client, refresh_hz=10)
        async with app.run_test(size=(100, 30)) as pilot:
            states: dict[str, GateState] = {}
            for _ in range(300):
                await pilot.pause(0.1)
                if app.snapshot is not None:
                    states = {g.name: g.state for g in app.snapshot.gates}
                    if states == {"Queue depth": GateState.PASS, "Too strict": GateState.FAIL}:
                        break
            assert states == {"Queue depth": GateState.PASS, "Too strict": GateState.FAIL}
            board = app.query_one(GateBoard)
            assert board.row_count == 2
            assert app.query_one(SessionsTable).row_count >= 1
            await pilot.press("q", "y")  # q asks, y confirms
            for _ in range(300):
                if client.finished:
                    break
                await asyncio.sleep(0.1)
            await pilot.pause(0.3)
        assert client.finished
        assert client.end is not None and client.end["exit_status"] == 3  # stopped early
        assert proc.wait(timeout=30) == 3
    finally:
        client.close()
        if proc.poll() is None:
            proc.kill()
    report = json.loads((run_dir / "report.json").read_text())
    assert {g["name"]: g["state"] for g in report["gates"]} == {
        "Queue depth": "pass",
        "Too strict": "fail",
    }
