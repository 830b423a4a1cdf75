"""Regenerate docs/screenshot.svg: the viewer on a real run of samples/quickstart.toml.

Starts the campaign daemon as ``perfmon run`` does, attaches the real viewer under Textual's
Pilot at 100x30, waits until the run has finished by itself (at most SECONDS), so that the
screen shows the verdict and the comparison panel over every session of both variants, and
saves the screen as SVG.

Run: ``.venv/bin/python docs/screenshot.py [SECONDS]`` (default: at most 180 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from perfmon.engine.client import SocketClient
from perfmon.engine.daemon import socket_path
from perfmon.engine.recorder import make_run_dir
from perfmon.tui.app import PerfmonApp

REPO = Path(__file__).resolve().parents[1]


async def main(seconds: float) -> None:
    runs = Path(tempfile.mkdtemp(prefix="perfmon-shot-"))
    run_dir = make_run_dir(runs, "quickstart", time.time())
    sock = socket_path(run_dir.name)
    campaign = REPO / "samples" / "quickstart.toml"
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
    client.connect(alive=lambda: proc.poll() is None)
    app = PerfmonApp(client)
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                await pilot.pause(0.5)
                snap = app.snapshot
                if snap is not None and snap.state in ("finished", "failed"):
                    break
            await pilot.pause(0.5)
            app.save_screenshot(str(REPO / "docs" / "screenshot.svg"))
            with contextlib.suppress(OSError):  # ConnectionError: the run has ended already
                client.send("stop")
    finally:
        client.wait_finished(120)
        client.close()
        proc.wait(timeout=60)


if __name__ == "__main__":
    asyncio.run(main(float(sys.argv[1]) if len(sys.argv) > 1 else 180.0))
