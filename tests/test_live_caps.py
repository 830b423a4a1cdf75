"""Metric-name caps in the live state: what is over a cap is dropped, counted and recorded as a
count; the snapshot stays small however many names a workload emits."""

from __future__ import annotations

import json

import numpy as np
import pytest

from perfmon.core.batch import SampleBatch
from perfmon.core.live import (
    DROPPED_NAMES_METRIC,
    DROPPED_SAMPLES_METRIC,
    SNAPSHOT_MAX_METRICS,
    LiveState,
)
from perfmon.core.model import MetricKind, Sample, SessionResult, SessionSpec, SessionStatus
from perfmon.core.snapshot import SERIES_POINTS, Snapshot, dropped_text


def _live(**kw: object) -> LiveState:
    return LiveState(run_id="r", campaign="c", run_dir="/r", started_t=0.0, **kw)  # type: ignore[arg-type]


def _spec(sid: int) -> SessionSpec:
    return SessionSpec(
        id=sid,
        workload="w",
        variant="v",
        set_name="s",
        index=sid,
        warmup=False,
        argv=("x",),
        env=(),
        cwd="/",
        timeout_s=None,
    )


def _names_batch(sid: int, names: list[str], t: float = 1.0) -> SampleBatch:
    return SampleBatch.from_samples(
        Sample(t + i * 1e-6, sid, name, float(i), MetricKind.GAUGE) for i, name in enumerate(names)
    )


def test_names_over_the_cap_are_dropped_counted_and_recorded_as_counts() -> None:
    live = _live(max_metrics=3)
    live.add_session(_spec(0))
    out = live.add_batch(_names_batch(0, [f"m{i}" for i in range(5)] + ["m0", "m4"]))
    # Kept: the first three names (and m0 again); dropped: m3, m4, m4.
    kept = [s for s in out if not s.metric.startswith("perfmon_")]
    assert [s.metric for s in kept] == ["m0", "m1", "m2", "m0"]
    counters = [s for s in out if s.metric == DROPPED_SAMPLES_METRIC]
    assert [(s.session, s.value, s.kind) for s in counters] == [(0, 3.0, MetricKind.COUNTER)]
    names = [s for s in out if s.metric == DROPPED_NAMES_METRIC]
    assert [s.value for s in names] == [2.0]
    assert (live.dropped_samples, live.dropped_names) == (3, 2)
    snap = live.snapshot(now=2.0, state="running")
    assert snap.dropped_samples == 3 and snap.dropped_names == 2
    assert snap.sessions[0].dropped == 3
    assert {m.name for m in snap.metrics} == {
        "m0",
        "m1",
        "m2",
        DROPPED_SAMPLES_METRIC,
        DROPPED_NAMES_METRIC,
    }
    assert snap.dropped_text() == (
        "dropped 3 samples of 2 metric names over the 3-name cap (counted, not kept)"
    )
    # Later sessions: the same dropped names are not counted twice, their samples are.
    live.add_session(_spec(1))
    live.add_batch(_names_batch(1, ["m3", "m1"]))
    assert (live.dropped_samples, live.dropped_names) == (4, 2)
    assert live.reduce("count", DROPPED_SAMPLES_METRIC) == (4.0, 2)


def test_gate_metrics_and_perfmons_own_are_always_kept() -> None:
    live = _live(max_metrics=1, session_metrics={"gate_metric"})
    live.add_session(_spec(0))
    live.add_batch(_names_batch(0, ["a", "b", "gate_metric", "rss_bytes", "session_seconds"]))
    assert live.kind("gate_metric") is not None and live.kind("rss_bytes") is not None
    assert live.kind("a") is not None and live.kind("b") is None
    assert live.dropped_samples == 1


def test_a_workload_cannot_forge_the_overflow_counters() -> None:
    live = _live()
    live.add_session(_spec(0))
    out = live.add_batch(_names_batch(0, [DROPPED_SAMPLES_METRIC, "ok"]))
    assert [s.metric for s in out if s.metric == DROPPED_SAMPLES_METRIC] == [DROPPED_SAMPLES_METRIC]
    assert live.reduce("count", DROPPED_SAMPLES_METRIC)[0] == 1.0  # perfmon's count, not 0.0


def test_long_names_are_dropped_and_said_so() -> None:
    live = _live(max_metric_name_bytes=10)
    live.add_session(_spec(0))
    live.add_batch(_names_batch(0, ["short", "x" * 11, "x" * 11]))
    assert (live.dropped_samples, live.dropped_long_samples, live.dropped_names) == (2, 2, 1)
    snap = live.snapshot(now=1.0, state="running")
    assert snap.dropped_text() == (
        "dropped 2 samples of 1 metric name longer than 10 bytes (counted, not kept)"
    )


def test_no_drops_return_the_same_batch() -> None:
    live = _live()
    batch = _names_batch(0, ["a", "b"])
    assert live.add_batch(batch) is batch
    assert dropped_text(0, 0, 0, False, 1000, 200) == ""


@pytest.mark.slow
def test_100000_names_give_a_small_snapshot() -> None:
    live = _live()
    for sid in range(4):
        live.add_session(_spec(sid))
        names = [f"metric_{sid}_{i:06d}_{'x' * 150}" for i in range(25_000)]
        live.add_batch(_names_batch(sid, names, t=float(sid)))
        live.update_session(SessionResult(spec=_spec(sid), status=SessionStatus.OK))
    # The kept names then report for a while, so that every series shown is full.
    kept = [f"metric_0_{i:06d}_{'x' * 150}" for i in range(1000)]
    steps = 2 * SERIES_POINTS
    live.add_batch(
        SampleBatch(
            np.repeat(10.0 + np.arange(steps, dtype=np.float64), len(kept)),
            np.zeros(steps * len(kept), dtype=np.int64),
            np.tile(np.arange(len(kept), dtype=np.int32), steps),
            np.random.default_rng(0).random(steps * len(kept)),
            tuple(kept),
            (MetricKind.GAUGE,) * len(kept),
        )
    )
    snap = live.snapshot(now=10.0, state="finished")
    assert live.dropped_names == 99_000 and live.dropped_samples == 99_000
    assert snap.metrics_total == 1002  # 1,000 names and the two overflow counters
    assert len(snap.metrics) == SNAPSHOT_MAX_METRICS
    assert DROPPED_SAMPLES_METRIC in {m.name for m in snap.metrics}
    encoded = json.dumps(snap.to_dict()).encode()
    print(f"snapshot: {len(encoded):,} bytes")
    assert len(encoded) < 512_000, len(encoded)  # 23.6 MB before the caps (issue 13)
    back = Snapshot.from_dict(json.loads(encoded))
    assert back.dropped_text().startswith(
        "dropped 99,000 samples of 99,000 metric names over the 1,000-name cap"
    )


def test_mixed_sessions_in_one_batch_are_counted_per_session() -> None:
    live = _live(max_metrics=1)
    for sid in (0, 1):
        live.add_session(_spec(sid))
    batch = SampleBatch.concat([_names_batch(0, ["a", "b"]), _names_batch(1, ["b", "c", "a"])])
    out = live.add_batch(batch)
    counts = {s.session: s.value for s in out if s.metric == DROPPED_SAMPLES_METRIC}
    assert counts == {0: 1.0, 1: 2.0}
    assert np.isfinite(out.t).all()
    rows = {r.id: r.dropped for r in live.snapshot(now=1.0, state="running").sessions}
    assert rows == {0: 1, 1: 2}
