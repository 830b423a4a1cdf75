"""``perfmon run`` as a user sees it: in tmux at 100x30, read with capture-pane, quit with q."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.slow,  # a real viewer in tmux over a real run (see README: the fast suite)
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
]

CAMPAIGN = textwrap.dedent(
    """
    [campaign]
    name = "tmux-demo"
    sample_interval = "100ms"
    grace = "1s"

    [[workload]]
    name = "ticker"
    command = ["{python}", "TICKER", "40", "9", "0.05"]

    [set.golden]
    sessions = 200

    [[gate]]
    name = "Queue depth"
    expr = "p95(event_queue_depth) < 100"
    [[gate]]
    name = "Too strict"
    expr = "max(event_queue_depth) < 5"
    """
)


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=False).stdout


def wait_for(server: str, target: str, needle: str, timeout: float = 40.0) -> str:
    deadline = time.monotonic() + timeout
    screen = ""
    while time.monotonic() < deadline:
        screen = tmux("-L", server, "capture-pane", "-p", "-t", target)
        if needle in screen:
            return screen
        time.sleep(0.25)
    raise AssertionError(f"{needle!r} never appeared; last screen:\n{screen}")


def test_viewer_in_tmux_shows_gates_and_q_stops_the_run_with_a_report(tmp_path: Path) -> None:
    campaign = tmp_path / "demo.toml"
    workload = Path(__file__).resolve().parent / "workloads" / "ticker.py"
    campaign.write_text(CAMPAIGN.replace("TICKER", str(workload)))
    server = f"perfmon-test-{uuid.uuid4().hex[:8]}"
    status_file = tmp_path / "status"
    cmd = f"{sys.executable} -m perfmon run {campaign} --no-mouse; echo $? > {status_file}"
    tmux("-L", server, "new-session", "-d", "-x", "100", "-y", "30", "-s", "t", cmd)
    try:
        screen = wait_for(server, "t", "tmux-demo")
        screen = wait_for(server, "t", "Too strict")
        # The data turns one gate green (pass) and the other red (fail).
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and not (
            "pass" in screen.lower() and "fail" in screen.lower()
        ):
            time.sleep(0.25)
            screen = tmux("-L", server, "capture-pane", "-p", "-t", "t")
        assert "ticker" in screen
        assert "pass" in screen.lower() and "fail" in screen.lower(), screen
        tmux("-L", server, "send-keys", "-t", "t", "q")
        wait_for(server, "t", "Stop run")  # q asks first
        tmux("-L", server, "send-keys", "-t", "t", "y")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not status_file.exists():
            time.sleep(0.25)
        assert status_file.exists(), tmux("-L", server, "capture-pane", "-p", "-t", "t")
        # stopped before the end of its 200 sessions: status 3, and the report is written
        assert status_file.read_text().strip() == "3"
    finally:
        tmux("-L", server, "kill-server")
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1
    report = json.loads((runs[0] / "report.json").read_text())
    assert {g["name"]: g["state"] for g in report["gates"]} == {
        "Queue depth": "pass",
        "Too strict": "fail",
    }
