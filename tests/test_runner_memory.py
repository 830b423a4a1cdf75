"""The runner's memory is flat per session once its bounded tables are full (issue 13).

The real ``Runner`` (scheduler, live state, gate worker, recorder, snapshots, noise meter)
runs many sessions on the ``FakeExecutor`` (no processes, ``pace=0``); between two points
past the warm-up, the number of gc-tracked objects and the bytes traced by ``tracemalloc``
must not grow with the sessions. Each point is a window of ``WINDOW`` sessions, counted after
every ``EVERY``-th, with what is flushed by time (queued live-state mutations, the recorder's
buffered batches: hundreds of sessions' worth at ``pace=0``) flushed first; the smallest count of
a window is kept (a snapshot being built at one moment is not state). ``tracemalloc`` runs only
between the two windows (it slows the loop several times), so its figure is the memory
allocated after the first and still held at the second. The statistical gates import scipy
lazily; it is imported first so that its import does not fall between the two points. One
object or one dict entry kept per session would add hundreds of objects between the two points
and fail. The traced bytes are a looser check (~0.3 MB over 436 sessions here: the live state's
bounded windows filling); the bound of 1,500 bytes per session fails on the ~2 KiB per session
issue 13 measured, or on a leaked ``SessionResult`` (~1 KB with its spec).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import multiprocessing
import textwrap
import time
import tracemalloc
from pathlib import Path

import pytest

from perfmon.core.campaign import load_campaign
from perfmon.core.model import SessionResult
from perfmon.engine.fake_executor import FakeExecutor, FakeSample, FakeSession
from perfmon.engine.recorder import make_run_dir
from perfmon.engine.runner import Runner

ROWS = 50  # session rows and values the live state keeps (defaults 1,000 and 2,000): short warm-up
FIRST, LAST, TOTAL = 300, 800, 900
WINDOW, EVERY = 64, 4  # a census window of sessions at FIRST and at LAST; one census in EVERY


def _campaign(tmp_path: Path) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(
        textwrap.dedent(
            f"""
            [campaign]
            name = "flat"
            sample_interval = "250ms"
            grace = "1s"
            [[workload]]
            name = "w"
            command = ["true"]
            [variant.baseline]
            [variant.candidate]
            [set.canary]
            sessions = {TOTAL // 2}
            order = "interleaved"
            [[gate]]
            name = "Speed"
            expr = "speedup(session_seconds, baseline, candidate) >= 0.5"
            [[gate]]
            name = "Queue"
            expr = "max(event_queue_depth) < 100"
            """
        )
    )
    return path


@pytest.mark.slow
def test_per_session_state_does_not_grow_past_warmup(tmp_path: Path) -> None:
    pytest.importorskip("scipy.stats")
    # gc counts every object of the process: in a test worker, what earlier tests left running
    # (threads, loops) allocates beside the runner (+192 objects once in CI), so the census
    # runs in a fresh interpreter
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        objs0, objs1, bytes1 = pool.submit(_census, str(tmp_path)).result(timeout=300)
    sessions = LAST - FIRST - WINDOW
    print(f"objects {objs0} -> {objs1}, traced 0 -> {bytes1} over {sessions} sessions")
    assert objs1 - objs0 < sessions // 4, (objs0, objs1)
    assert bytes1 < 1_500 * sessions, bytes1


def _census(tmp: str) -> tuple[int, int, int]:
    """Run the campaign on the fake executor; the smallest object count of the first window,
    of the last one, and the smallest bytes traced in the last window."""
    import scipy.stats  # noqa: F401  (imported by the gates lazily: not between the windows)

    tmp_path = Path(tmp)
    campaign = load_campaign(_campaign(tmp_path))
    run_dir = make_run_dir(tmp_path / "runs", campaign.name, time.time())
    script = FakeSession(
        wall_s=0.01,
        cpu_s=0.01,
        samples=tuple(FakeSample(i * 0.001, "event_queue_depth", float(i % 5)) for i in range(5)),
        peak_rss_bytes=1 << 20,
    )
    created: list[FakeExecutor] = []
    factory = FakeExecutor.factory(script, pace=0, created=created)
    runner = Runner(campaign, run_dir, executor_factory=factory, sample_system=False)
    runner.live.max_session_rows = ROWS
    runner.live.max_session_values = ROWS  # per-session values kept for statistical gates
    done = 0
    early: list[int] = []  # gc-tracked objects after each session of the first window
    late: list[tuple[int, int]] = []  # (objects, traced bytes) in the last window

    def settle() -> None:
        # Empty what is flushed by time, not by sessions: queued live-state mutations and the
        # recorder's buffered batches (hundreds of sessions' SampleBatch objects at pace=0).
        with runner._live_lock:
            runner._apply_pending()
        runner.recorder.flush()

    def on_session(result: SessionResult) -> None:
        nonlocal done
        done += 1
        for ex in created:  # the fake keeps every spec and result for tests' assertions
            ex.launched.clear()
            ex.results.clear()
        if done % EVERY:
            return
        if FIRST <= done <= LAST:
            settle()
        if FIRST <= done < FIRST + WINDOW:
            gc.collect()
            early.append(len(gc.get_objects()))
            if done + EVERY >= FIRST + WINDOW:
                tracemalloc.start(1)
        elif LAST - WINDOW < done <= LAST:
            gc.collect()
            late.append((len(gc.get_objects()), tracemalloc.get_traced_memory()[0]))

    runner.session_listeners.append(on_session)
    try:
        outcome = asyncio.run(runner.run())
    finally:
        tracemalloc.stop()
    assert done == TOTAL, outcome
    # (``gc.get_objects`` can hand out a tuple another thread is still building, whose resize
    # then raises SystemError there: CPython 3.11 behaviour, caught and logged by the runner's
    # threads; it touches the census, not the runner's state.)
    # What is in flight when a session ends (a snapshot being built in its thread, a gate
    # evaluation) adds objects at one moment and none at the next: the smallest count of each
    # window is the state that stays.
    return min(early), min(o for o, _ in late), min(b for _, b in late)
