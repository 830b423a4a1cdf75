"""The app the SVG snapshot tests draw (tests/test_snapshots.py): the viewer on the fixed
snapshot of tests/fixed_run.py, from a scripted source that never finishes (so the run shows
as running and nothing changes while the screen is taken)."""

from __future__ import annotations

from fixed_run import fixed_snapshot
from perfmon.tui.app import PerfmonApp
from perfmon.tui.source import ScriptedSource

app = PerfmonApp(ScriptedSource([fixed_snapshot()]))
