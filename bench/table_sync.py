"""The viewer tables' per-snapshot cost: ``SessionsTable.sync`` and ``MetricsTable.update_metrics``.

Method. The real app is mounted headless (Textual ``run_test``, 100x30) on the fixed audit
snapshot of tests/fixed_run.py (80 sessions, 5 metrics). Then, in-process, ``LOOPS`` = 400
calls of ``SessionsTable.sync`` with one row changed per call (the running session's wall time
and samples: the common case at 4 Hz), and 400 calls of ``MetricsTable.update_metrics`` with
every metric's last value changed, are timed with ``time.perf_counter``; the best of
``REPEATS`` = 5 rounds is kept (the least disturbed by other processes), as microseconds per
call. Rendering is not included (the calls only set cells and request repaints).

Before/after. ``python bench/table_sync.py --before SRC`` runs the measurement ``ROUNDS`` = 4
times each with the perfmon source tree ``SRC`` first on ``PYTHONPATH`` and with this
checkout's, interleaved (before, after, before, after, ...), each in its own process, and
prints both medians and their ratio (after / before). To measure the tables' fitting
(issue 14, point 2) against the tables before it, ``SRC`` is a copy of this ``src`` with the
four widget files of the earlier commit::

    cp -r src /tmp/b && cp -r themes /tmp/b/perfmon/themes
    for f in keyed_table sessions_table metrics_table comparison; do
        git show 7e1cb25:src/perfmon/tui/widgets/$f.py > /tmp/b/perfmon/tui/widgets/$f.py; done
    python bench/table_sync.py --before /tmp/b
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOOPS = 400
REPEATS = 5
ROUNDS = 4


async def _measure() -> dict[str, float]:
    sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]
    from fixed_run import fixed_snapshot
    from perfmon.tui.app import PerfmonApp
    from perfmon.tui.source import ScriptedSource
    from perfmon.tui.widgets.metrics_table import MetricsTable
    from perfmon.tui.widgets.sessions_table import SessionsTable
    from test_tui import settle

    snap = fixed_snapshot()
    app = PerfmonApp(ScriptedSource([snap]))
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app)
        sessions, metrics = app.query_one(SessionsTable), app.query_one(MetricsTable)
        rows = list(snap.sessions)
        last = rows[-1]
        session_steps = [
            (*rows[:-1], dataclasses.replace(last, wall_s=1.0 + k * 1e-3, samples=40 + k % 9))
            for k in range(50)
        ]
        metric_steps = [
            tuple(dataclasses.replace(m, last=m.last * (1 + k * 1e-4)) for m in snap.metrics)
            for k in range(50)
        ]
        best_s = best_m = float("inf")
        for _ in range(REPEATS):
            t0 = time.perf_counter()
            for k in range(LOOPS):
                sessions.sync(session_steps[k % 50])
            best_s = min(best_s, (time.perf_counter() - t0) / LOOPS)
            t0 = time.perf_counter()
            for k in range(LOOPS):
                metrics.update_metrics(metric_steps[k % 50])
            best_m = min(best_m, (time.perf_counter() - t0) / LOOPS)
    return {"sessions_us": best_s * 1e6, "metrics_us": best_m * 1e6}


def _run(src: Path) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(src))
    out = subprocess.run(
        [sys.executable, __file__, "--once"], env=env, capture_output=True, text=True, check=True
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main(before: Path | None) -> None:
    """Print the per-call figures (and, with ``before``, the ratio after / before)."""
    after = ROOT / "src"
    if before is None:
        fig = _run(after)
        print(f"sessions sync {fig['sessions_us']:.0f} us/call, metrics {fig['metrics_us']:.0f}")
        return
    runs: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    for _ in range(ROUNDS):
        runs["before"].append(_run(before))
        runs["after"].append(_run(after))
    for key, name in (("sessions_us", "SessionsTable.sync"), ("metrics_us", "update_metrics")):
        b = statistics.median(r[key] for r in runs["before"])
        a = statistics.median(r[key] for r in runs["after"])
        print(f"{name}: before {b:.0f} us/call, after {a:.0f} us/call, ratio {a / b:.2f}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--once":
        print(json.dumps(asyncio.run(_measure())))
    elif len(sys.argv) > 2 and sys.argv[1] == "--before":
        main(Path(sys.argv[2]).resolve())
    else:
        main(None)
