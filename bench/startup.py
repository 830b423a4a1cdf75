"""Start-up: ``perfmon --version`` wall time, and the viewer's first frame.

Method. ``perfmon --version``: ``RUNS`` fresh runs of the installed console script,
wall time from spawn to exit, median; baseline in the same
run, interleaved: ``python -c pass`` (the interpreter's own start). First frame: a fresh
process imports what ``perfmon attach`` imports (``perfmon.cli``, the socket client, the
viewer), decodes a snapshot message of a run with 200 sessions and 20 metrics (made by the
parent: the daemon's JSON line, as the client receives it) and runs ``PerfmonApp`` under
Textual's headless driver (``App.run_test``, 100x30) until the first frame has been composed
and refreshed (``pilot.pause()`` after mount); the time is from spawn to that point, median of
``RUNS``; baseline: the same with a bare Textual ``App`` showing one ``Static``. (An earlier
version built the snapshot in the child with ``LiveState``, which imports NumPy; the viewer
never does, so it counted 0.1-0.2 s that users do not wait for.)
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Figure, emit, median

RUNS = 9

FIRST_FRAME = """
import asyncio, json, sys
import perfmon.cli  # what `perfmon attach` imports before the viewer
from perfmon.core.batch import SampleBatch
from perfmon.core.snapshot import Snapshot
import perfmon.engine.client  # the socket client the viewer reads snapshots with
from perfmon.tui.app import PerfmonApp
from perfmon.tui.source import StaticSource

with open(sys.argv[1], "rb") as f:  # the daemon's snapshot line, as the client decodes it
    app = PerfmonApp(StaticSource(Snapshot.from_dict(json.loads(f.read())["snapshot"])))

async def main():
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        print("frame", flush=True)

asyncio.run(main())
"""


def snapshot_line() -> bytes:
    """The control socket's snapshot message of a run with 200 sessions and 20 metrics."""
    from perfmon.core.batch import SampleBatch
    from perfmon.core.live import LiveState
    from perfmon.core.model import Sample, SessionSpec

    live = LiveState(run_id="bench", campaign="bench", run_dir="/tmp/bench", started_t=0.0)
    for i in range(200):
        live.add_session(SessionSpec(i, "w", "v", "golden", i, False, ("x",), (), "/", None))
    live.add_batch(
        SampleBatch.from_samples(
            Sample(float(t), t % 200, f"metric_{t % 20}_seconds", t * 0.001) for t in range(4000)
        )
    )
    snap = live.snapshot(now=4000.0, state="running")
    return json.dumps({"type": "snapshot", "snapshot": snap.to_dict()}).encode()


BARE = """
import asyncio
from textual.app import App
from textual.widgets import Static

class Bare(App):
    def compose(self):
        yield Static("hello")

async def main():
    async with Bare().run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        print("frame", flush=True)

asyncio.run(main())
"""


def wall(cmd: list[str], expect: str) -> float:
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    dt = time.perf_counter() - t0
    if expect not in res.stdout:
        raise SystemExit(f"startup bench: {cmd[:3]} printed {res.stdout!r}")
    return dt


def main() -> None:
    py = sys.executable
    perfmon = str(Path(py).parent / "perfmon")  # the console script users run
    version, bare_py, frame, bare_frame = [], [], [], []
    with tempfile.NamedTemporaryFile(suffix=".json") as snap:
        snap.write(snapshot_line())
        snap.flush()
        for _ in range(RUNS):
            version.append(wall([perfmon, "--version"], "perfmon"))
            bare_py.append(wall([py, "-c", "print('perfmon')"], "perfmon"))
            frame.append(wall([py, "-c", FIRST_FRAME, snap.name], "frame"))
            bare_frame.append(wall([py, "-c", BARE], "frame"))
    v = median(version)
    emit(
        Figure(
            "perfmon --version wall time",
            v * 1000,
            "ms",
            "<= 150 ms",
            v <= 0.150,
            f"median of {RUNS} fresh runs of the perfmon console script",
            f"bare interpreter start {median(bare_py) * 1000:.0f} ms "
            f"(ratio {v / median(bare_py):.2f})",
        )
    )
    f = median(frame)
    emit(
        Figure(
            "viewer first frame (200 sessions)",
            f * 1000,
            "ms",
            "<= 1000 ms",
            f <= 1.0,
            f"median of {RUNS} fresh processes: spawn to first composed frame of PerfmonApp "
            "under Textual's headless driver, 100x30",
            f"bare Textual app {median(bare_frame) * 1000:.0f} ms "
            f"(ratio {f / median(bare_frame):.2f})",
        )
    )


if __name__ == "__main__":
    main()
