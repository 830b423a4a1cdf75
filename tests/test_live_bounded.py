"""LiveState stays bounded over any duration: a time-compressed 72-hour soak under a fake clock.

Sessions come and go (a short session every 20 s for 72 simulated hours), each emitting a few
metrics at 1 Hz; the live state folds them, the soak's gates are evaluated, and snapshots are
taken and serialised, as the daemon does. Python heap (tracemalloc) after 24, 48 and 72 hours
must not grow more than 5% over its size after a warm-up of six simulated hours.
"""

from __future__ import annotations

import gc
import json
import time
import tracemalloc

import numpy as np
import pytest

from perfmon.core.batch import SampleBatch
from perfmon.core.campaign import GateConfig
from perfmon.core.gates import evaluate_gates, parse_gate
from perfmon.core.live import LiveState
from perfmon.core.model import MetricKind, SessionResult, SessionSpec, SessionStatus

METRICS = ("event_queue_depth", "chunk_seconds", "rss_bytes", "session_seconds")
KINDS = (MetricKind.GAUGE, MetricKind.HISTOGRAM, MetricKind.GAUGE, MetricKind.VALUE)
GATES = [
    GateConfig(name, expr, parse_gate(expr))
    for name, expr in (
        ("queue", "p95(event_queue_depth) < 100"),
        ("latency", "p95(chunk_seconds) < 1ms"),
        ("leak", "slope(rss_bytes) < 1MiB/h"),
        ("speed", "speedup(session_seconds, baseline, candidate) >= 1.0"),
    )
]


def _spec(sid: int) -> SessionSpec:
    return SessionSpec(
        id=sid,
        workload="pipeline",
        variant=("baseline", "candidate")[sid % 2],
        set_name="canary",
        index=sid // 2,
        warmup=False,
        argv=("python", "streaming_pipeline.py", "--chunks", "300"),
        env=(("PIPELINE_IMPL", "numpy"),),
        cwd="/tmp",
        timeout_s=60.0,
    )


def _session_batch(rng: np.random.Generator, sid: int, t0: float, seconds: int) -> SampleBatch:
    n = seconds * 3
    t = t0 + np.repeat(np.arange(seconds, dtype=np.float64), 3)
    key = np.tile(np.arange(3, dtype=np.int32), seconds)
    value = np.empty(n)
    value[key == 0] = rng.poisson(30, seconds)
    value[key == 1] = rng.gamma(2.0, 2e-4, seconds)
    value[key == 2] = 50e6 + rng.normal(0, 1e5, seconds)
    t = np.append(t, t0 + seconds)
    key = np.append(key, np.int32(3))
    value = np.append(value, seconds * (1.0 if sid % 2 else 1.3) * rng.uniform(0.98, 1.02))
    return SampleBatch(
        t=t,
        session=np.full(n + 1, sid, dtype=np.int64),
        key=key,
        value=value,
        metrics=METRICS,
        kinds=KINDS,
    )


@pytest.mark.slow
@pytest.mark.timeout(900)  # 12,960 sessions under tracemalloc: minutes on a loaded machine
def test_live_state_memory_is_flat_over_a_simulated_72_hour_soak() -> None:
    rng = np.random.default_rng(72)
    start = 1.8e9
    live = LiveState(
        run_id="soak",
        campaign="soak",
        run_dir="/tmp/soak",
        started_t=start,
        session_metrics={"session_seconds"},
        max_session_rows=200,
        max_session_values=500,
    )
    every_s, session_s = 20, 10
    sessions = 72 * 3600 // every_s
    heap: dict[int, int] = {}
    snapshot_bytes: dict[int, int] = {}
    tracemalloc.start()
    try:
        for sid in range(sessions):
            t0 = start + sid * every_s
            spec = _spec(sid)
            live.add_session(spec)
            live.update_session(SessionResult(spec=spec, status=SessionStatus.RUNNING, start_t=t0))
            live.add_batch(_session_batch(rng, sid, t0, session_s))
            live.update_session(
                SessionResult(
                    spec=spec,
                    status=SessionStatus.OK,
                    exit_code=0,
                    start_t=t0,
                    end_t=t0 + session_s,
                    wall_s=float(session_s),
                    peak_rss_bytes=50_000_000,
                    malformed=sid % 7 == 0,
                )
            )
            hour = (sid + 1) * every_s // 3600
            if (sid + 1) * every_s % 3600 == 0 and hour in (6, 24, 48, 72):
                gates = evaluate_gates(GATES, live)
                snap = live.snapshot(now=t0 + session_s, state="running", gates=gates)
                snapshot_bytes[hour] = len(json.dumps(snap.to_dict()))
                gc.collect()  # measure what is alive, not garbage waiting for a cycle
                heap[hour] = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    # Counts stay exact over every session though the table keeps only the latest rows.
    snap = live.snapshot(now=time.time(), state="finished")
    assert snap.sessions_done == sessions
    assert snap.malformed_total == sum(1 for sid in range(sessions) if sid % 7 == 0)
    assert len(snap.sessions) <= 200
    assert snap.sessions[-1].id == sessions - 1
    assert len(live.session_values("session_seconds", "candidate")) <= 500 + 200
    # The gates still judge the run.
    states = {g.name: g.state.value for g in evaluate_gates(GATES, live)}
    assert states["queue"] == "pass" and states["speed"] == "pass", states
    # Flat: <= 5% growth after a warm-up of 6 simulated hours, by when the table holds its 200
    # rows, the reservoirs (4,096 samples per metric) and the per-session value deques are full.
    for hour in (24, 48, 72):
        assert heap[hour] <= heap[6] * 1.05, (heap, hour)
        assert snapshot_bytes[hour] <= snapshot_bytes[6] * 1.05, snapshot_bytes
