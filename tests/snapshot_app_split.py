"""The app of the split SVG snapshots (tests/test_snapshots.py): the viewer on the hard
snapshot of tests/fit_run.py (long params, big sample counts, metrics split by variant)."""

from __future__ import annotations

from fit_run import hard_snapshot
from perfmon.tui.app import PerfmonApp
from perfmon.tui.source import ScriptedSource

app = PerfmonApp(ScriptedSource([hard_snapshot()]))
