"""Bounded aggregates (``perfmon.core.aggregate``) and the live state (``perfmon.core.live``)."""

from __future__ import annotations

import itertools
import json
import math
from typing import Any

import numpy as np
import pytest

from perfmon.core.aggregate import MetricAggregate
from perfmon.core.batch import SampleBatch
from perfmon.core.datasource import ArrayMetricSource
from perfmon.core.gates import MetricSource, parse_gate
from perfmon.core.live import LiveState
from perfmon.core.model import (
    SYSTEM_SESSION,
    GateResult,
    GateState,
    MetricKind,
    Sample,
    SessionResult,
    SessionSpec,
    SessionStatus,
)
from perfmon.core.snapshot import Snapshot

FUNCS_NO_Q = ("max", "min", "mean", "median", "sum", "count", "last")


def _spec(sid: int, *, warmup: bool = False, variant: str = "baseline") -> SessionSpec:
    return SessionSpec(
        id=sid,
        workload="tgat",
        variant=variant,
        set_name="golden",
        index=sid,
        warmup=warmup,
        argv=("python", "-c", "pass"),
        env=(),
        cwd="/tmp",
        timeout_s=None,
        params=(("events", "512"), ("mode", "fast")),
    )


def _live(**kw: Any) -> LiveState:
    return LiveState(
        run_id="20250101T000000Z-audit", campaign="audit", run_dir="/r", started_t=0.0, **kw
    )


# -- MetricAggregate -----------------------------------------------------------------------


@pytest.mark.parametrize("batched", [False, True])
def test_aggregate_is_exact_below_the_reservoir_size(batched: bool) -> None:
    rng = np.random.default_rng(1)
    values = rng.lognormal(0.0, 1.0, 3000)
    ts = np.arange(values.size) * 0.01
    agg = MetricAggregate(MetricKind.HISTOGRAM, reservoir_size=4096)
    if batched:
        for lo in range(0, values.size, 700):
            agg.add_many(ts[lo : lo + 700].tolist(), values[lo : lo + 700].tolist())
    else:
        for t, v in zip(ts.tolist(), values.tolist(), strict=True):
            agg.add(t, v)
    assert agg.count == values.size
    assert agg.total == pytest.approx(values.sum(), rel=1e-12)
    assert agg.min == values.min() and agg.max == values.max()
    assert agg.mean == pytest.approx(values.mean(), rel=1e-12)
    assert agg.last == values[-1] and agg.last_t == ts[-1]
    for q in (0.0, 0.01, 0.25, 0.5, 0.95, 0.999, 1.0):
        assert agg.quantile(q) == np.quantile(values, q, method="linear")
    assert agg.quantiles((0.5, 0.95)) == (
        np.quantile(values, 0.5, method="linear"),
        np.quantile(values, 0.95, method="linear"),
    )
    assert agg.reduce("median") == (np.median(values), values.size)
    assert agg.reduce("quantile", q=0.9) == (np.quantile(values, 0.9), values.size)


@pytest.mark.parametrize("batched", [False, True])
def test_aggregate_quantiles_are_close_above_the_reservoir_size(batched: bool) -> None:
    rng = np.random.default_rng(2)
    values = rng.normal(10.0, 2.0, 60_000)
    ts = np.arange(values.size, dtype=np.float64) * 0.25
    agg = MetricAggregate(MetricKind.GAUGE, reservoir_size=4096, seed=7)
    if batched:
        for lo in range(0, values.size, 5000):
            agg.add_many(ts[lo : lo + 5000], values[lo : lo + 5000])
    else:
        for t, v in zip(ts.tolist(), values.tolist(), strict=True):
            agg.add(t, v)
    # Moments stay exact.
    assert agg.count == values.size
    assert agg.mean == pytest.approx(values.mean(), rel=1e-9)
    assert (agg.min, agg.max) == (values.min(), values.max())
    # Standard error of a p95 from 4096 draws is ~0.07 here; allow 0.3 (seeded, deterministic).
    for q in (0.05, 0.5, 0.95):
        assert agg.quantile(q) == pytest.approx(np.quantile(values, q), abs=0.3)


@pytest.mark.parametrize("batched", [False, True])
def test_reservoir_is_uniform_over_the_whole_stream(batched: bool) -> None:
    # Values = arrival order: a reservoir biased to early or late samples moves the median.
    n = 60_000
    values = np.arange(n, dtype=np.float64)
    agg = MetricAggregate(MetricKind.GAUGE, reservoir_size=2000, seed=3)
    if batched:
        for lo in range(0, n, 30_000):
            agg.add_many(values[lo : lo + 30_000], values[lo : lo + 30_000])
    else:
        for v in values.tolist():
            agg.add(v, v)
    assert agg.quantile(0.5) == pytest.approx(n / 2, rel=0.05)
    assert agg.quantile(0.1) == pytest.approx(n / 10, rel=0.15)
    assert agg.quantile(0.9) == pytest.approx(0.9 * n, rel=0.03)


def test_series_doubles_bucket_width_and_merges_pairs() -> None:
    one = MetricAggregate(MetricKind.GAUGE, series_points=4, initial_bucket_s=1.0)
    many = MetricAggregate(MetricKind.GAUGE, series_points=4, initial_bucket_s=1.0)
    for t in range(8):
        one.add(float(t), float(t))
    many.add_many([float(t) for t in range(8)], [float(t) for t in range(8)])
    for agg in (one, many):
        assert agg.series() == ((0.5, 2.5, 4.5, 6.5), 8.0)
        assert agg.bucket_s == 2.0
    one.add(8.0, 8.0)
    many.add_many([8.0, 8.5], [8.0, 8.0])
    for agg in (one, many):
        assert agg.series() == ((1.5, 5.5, 8.0), 12.0)
        assert agg.bucket_s == 4.0


def test_series_fills_gaps_with_the_previous_mean() -> None:
    agg = MetricAggregate(MetricKind.GAUGE, series_points=10, initial_bucket_s=1.0)
    agg.add_many([0.0, 5.0], [2.0, 4.0])
    assert agg.series() == ((2.0, 2.0, 2.0, 2.0, 2.0, 4.0), 6.0)


def test_series_memory_is_bounded_over_a_72h_soak_at_4hz() -> None:
    points = 120
    agg = MetricAggregate(MetricKind.GAUGE, series_points=points, reservoir_size=1024)
    buffers = [agg._b_count, agg._b_sum, agg._b_min, agg._b_max, agg._res_v, agg._res_t]
    sizes = [b.nbytes for b in buffers]
    t0 = 1_700_000_000.0
    step = 0.25
    n_total = int(72 * 3600 / step)
    chunk = 14_400  # one hour of samples per batch
    for lo in range(0, n_total, chunk):
        ts = t0 + np.arange(lo, min(lo + chunk, n_total), dtype=np.float64) * step
        agg.add_many(ts, ts - t0)  # value = elapsed seconds
        series, span = agg.series()
        assert len(series) <= points
    assert agg.count == n_total
    # Same arrays, same sizes: nothing grew.
    assert [b.nbytes for b in (agg._b_count, agg._b_sum, agg._b_min, agg._b_max)] == sizes[:4]
    assert [b.nbytes for b in (agg._res_v, agg._res_t)] == sizes[4:]
    series, span = agg.series()
    assert 72 * 3600 <= span <= 2 * 72 * 3600
    assert len(series) == math.ceil(n_total * step / agg.bucket_s)
    # Each point is its bucket's mean of elapsed time: the bucket's midpoint, give or take
    # half a sample step.
    w = agg.bucket_s
    for i, mean in enumerate(series[:-1]):
        assert mean == pytest.approx((i + 0.5) * w - step / 2, abs=1e-6)
    assert all(b > a for a, b in itertools.pairwise(series))
    assert agg.reduce("count") == (float(n_total), n_total)


def test_windowed_reduce_at_bucket_granularity() -> None:
    agg = MetricAggregate(MetricKind.GAUGE, series_points=128, initial_bucket_s=1.0)
    ts = [float(t) for t in range(100)]
    agg.add_many(ts, ts)
    window = list(range(89, 100))  # [99 - 10, 99]
    assert agg.reduce("count", window_s=10) == (float(len(window)), len(window))
    assert agg.reduce("sum", window_s=10) == (float(sum(window)), len(window))
    assert agg.reduce("min", window_s=10) == (89.0, 11)
    assert agg.reduce("max", window_s=10) == (99.0, 11)
    assert agg.reduce("mean", window_s=10) == (94.0, 11)
    assert agg.reduce("last", window_s=10) == (99.0, 11)
    assert agg.reduce("quantile", q=0.25, window_s=10) == (np.quantile(window, 0.25), 11)
    # A window ending later than the data (another metric went on reporting).
    assert agg.reduce("max", window_s=10, end_t=105.0) == (99.0, 5)
    assert agg.reduce("max", window_s=10, end_t=200.0) == (None, 0)
    assert agg.reduce("last", window_s=10, end_t=200.0) == (None, 0)


def test_counter_count_is_the_sum_of_increments() -> None:
    counter = MetricAggregate(MetricKind.COUNTER)
    gauge = MetricAggregate(MetricKind.GAUGE)
    for agg in (counter, gauge):
        agg.add_many([0.0, 1.0], [1.0, 3.0])
        agg.add(2.0, 5.0)
    assert counter.reduce("count") == (9.0, 3)
    assert gauge.reduce("count") == (3.0, 3)
    assert counter.reduce("sum") == gauge.reduce("sum") == (9.0, 3)
    assert counter.reduce("count", window_s=1.5) == (8.0, 2)


def test_reduce_rejects_bad_arguments_and_handles_empty() -> None:
    agg = MetricAggregate(MetricKind.GAUGE)
    assert agg.reduce("max") == (None, 0)
    assert agg.reduce("quantile", q=0.5, window_s=5) == (None, 0)
    assert math.isnan(agg.quantile(0.5)) and agg.series() == ((), 0.0)
    with pytest.raises(ValueError, match="unknown reduction"):
        agg.reduce("p95")
    with pytest.raises(ValueError, match="q in"):
        agg.reduce("quantile")
    with pytest.raises(ValueError, match="q in"):
        agg.reduce("quantile", q=1.5)
    with pytest.raises(ValueError, match="window_s"):
        agg.reduce("max", window_s=0)
    with pytest.raises(ValueError):
        agg.add_many([1.0, 2.0], [1.0])
    with pytest.raises(ValueError):
        MetricAggregate(MetricKind.GAUGE, reservoir_size=0)


# -- LiveState ---------------------------------------------------------------------------


def test_live_state_is_a_metric_source_for_gates() -> None:
    live = _live()
    source: MetricSource = live  # checked by mypy: structural conformance
    live.add_session(_spec(0))
    live.add_batch(
        SampleBatch.from_samples(
            Sample(float(t), 0, "event_queue_depth", float(t)) for t in range(200)
        )
    )
    result = parse_gate("p95(event_queue_depth) < 100").evaluate(source, "Queue")
    assert result.state is GateState.FAIL
    assert result.value == pytest.approx(np.quantile(np.arange(200.0), 0.95))
    assert result.n == 200
    assert parse_gate("max(missing_bytes) < 1MB").evaluate(source, "x").state is GateState.PENDING


def test_live_state_agrees_with_the_exact_source_below_the_reservoir_size() -> None:
    rng = np.random.default_rng(5)
    samples = [
        Sample(float(i) * 0.1, i % 3, name, float(v), kind)
        for i, v in enumerate(rng.exponential(2.0, 1500))
        for name, kind in (
            ("chunk_seconds", MetricKind.HISTOGRAM),
            ("chunks_total", MetricKind.COUNTER),
        )
    ]
    live = _live()
    for lo in range(0, len(samples), 250):
        live.add_batch(SampleBatch.from_samples(samples[lo : lo + 250]))
    exact = ArrayMetricSource.from_samples(samples)
    for metric in ("chunk_seconds", "chunks_total"):
        assert live.kind(metric) == exact.kind(metric)
        for func in FUNCS_NO_Q:
            got, n = live.reduce(func, metric)
            want, n_want = exact.reduce(func, metric)
            assert n == n_want
            assert got == pytest.approx(want, rel=1e-12), (metric, func)
        assert live.reduce("quantile", metric, q=0.95) == pytest.approx(
            exact.reduce("quantile", metric, q=0.95), rel=1e-12
        )
    assert live.reduce("max", "nope") == (None, 0)
    with pytest.raises(ValueError):
        live.reduce("nope", "chunk_seconds")


def test_warmup_samples_are_counted_but_not_folded() -> None:
    live = _live()
    live.add_session(_spec(0, warmup=True))
    live.add_session(_spec(1))
    live.add_batch(
        SampleBatch.from_samples(
            [
                Sample(1.0, 0, "session_seconds", 100.0, MetricKind.VALUE),  # cold start, warm-up
                Sample(2.0, 1, "session_seconds", 2.0, MetricKind.VALUE),
                Sample(3.0, 0, "warm_only_bytes", 5.0),
                Sample(3.5, SYSTEM_SESSION, "system_memory_percent", 40.0),
            ]
        )
    )
    assert live.reduce("max", "session_seconds") == (2.0, 1)
    assert live.reduce("count", "session_seconds") == (1.0, 1)
    assert live.reduce("max", "warm_only_bytes") == (None, 0)
    assert live.kind("warm_only_bytes") is MetricKind.GAUGE
    assert live.reduce("last", "system_memory_percent") == (40.0, 1)
    snap = live.snapshot(now=10.0, state="running")
    assert snap.samples_total == 4 == live.samples_total
    assert [m.name for m in snap.metrics] == ["session_seconds", "system_memory_percent"]
    assert [(r.id, r.warmup, r.samples) for r in snap.sessions] == [(0, True, 2), (1, False, 1)]


def test_metric_kind_comes_from_the_first_sample() -> None:
    live = _live()
    live.add_batch(
        SampleBatch.from_samples([Sample(0.0, 0, "chunks_total", 1.0, MetricKind.COUNTER)])
    )
    live.add_batch(
        SampleBatch.from_samples([Sample(1.0, 0, "chunks_total", 2.0, MetricKind.GAUGE)])
    )
    assert live.kind("chunks_total") is MetricKind.COUNTER
    assert live.reduce("count", "chunks_total") == (3.0, 2)
    assert live.kind("never_seen") is None


def test_windows_end_at_the_latest_sample_of_any_metric() -> None:
    live = _live()
    live.add_batch(
        SampleBatch.from_samples(Sample(float(t), 0, "old_bytes", 1.0) for t in range(10))
    )
    live.add_batch(
        SampleBatch.from_samples(Sample(float(t), 0, "new_bytes", 2.0) for t in range(100, 110))
    )
    assert live.reduce("count", "old_bytes", window_s=30) == (None, 0)
    assert live.reduce("count", "new_bytes", window_s=30) == (10.0, 10)
    # Windows the state was told about are exact from the first sample, with sketch quantiles.
    told = LiveState(run_id="r", campaign="c", run_dir="/r", started_t=0.0, windows=(30.0,))
    told.add_batch(
        SampleBatch.from_samples(
            Sample(float(t), 0, "new_bytes", float(t)) for t in range(100, 200)
        )
    )
    assert told.reduce("count", "new_bytes", window_s=30) == (30.0, 30)  # t = 170 .. 199
    value, n = told.reduce("quantile", "new_bytes", q=0.5, window_s=30)
    assert n == 30 and value == pytest.approx(184.5, rel=0.01)


def test_snapshot_rows_counts_and_json_round_trip() -> None:
    live = _live()
    for sid in (3, 1, 2, 0):  # added out of order; rows come back in id order
        live.add_session(
            _spec(sid, warmup=sid == 0, variant="candidate" if sid % 2 else "baseline")
        )
    running = SessionResult(spec=_spec(1, variant="candidate"), status=SessionStatus.RUNNING)
    running.wall_s = 1.5
    running.peak_rss_bytes = 10_000_000
    live.update_session(running)
    running.wall_s = 99.0  # the engine mutating its own copy does not leak in
    live.update_session(
        SessionResult(
            spec=_spec(2),
            status=SessionStatus.EXIT,
            exit_code=3,
            wall_s=4.0,
            cpu_s=3.5,
            malformed=2,
        )
    )
    live.update_session(
        SessionResult(spec=_spec(0, warmup=True), status=SessionStatus.OK, wall_s=1.0)
    )
    live.add_malformed(1, 5)
    live.add_malformed(42, 1)  # a session the table does not know still counts in the total
    live.add_batch(
        SampleBatch.from_samples(
            [
                Sample(10.0 + i, 1, "chunk_seconds", 0.001 * (i + 1), MetricKind.HISTOGRAM)
                for i in range(20)
            ]
            + [Sample(12.0, 2, "chunks_total", 1.0, MetricKind.COUNTER)]
        )
    )
    gate = GateResult("Perf", "p95(chunk_seconds) < 1ms", GateState.FAIL, 0.019, 20, "p95 = 19 ms")
    snap = live.snapshot(now=40.0, state="running", gates=[gate], verdict="fail", message="hi")

    assert [r.id for r in snap.sessions] == [0, 1, 2, 3]
    row = {r.id: r for r in snap.sessions}
    assert (
        row[1].status == "running" and row[1].wall_s == 1.5 and row[1].peak_rss_bytes == 10_000_000
    )
    assert row[1].samples == 20 and row[1].malformed == 5
    assert row[2].status_text == "exit 3" and row[2].malformed == 2 and row[2].cpu_s == 3.5
    assert row[3].status == "pending" and row[3].wall_s is None
    assert row[0].params == "events=512 mode=fast"
    assert snap.sessions_done == 2 and snap.sessions_total == 4
    assert snap.malformed_total == 5 + 2 + 1
    assert snap.samples_total == 21
    assert snap.elapsed_s == 40.0
    chunk = next(m for m in snap.metrics if m.name == "chunk_seconds")
    values = [0.001 * (i + 1) for i in range(20)]
    assert chunk.kind == "histogram" and chunk.count == 20
    assert chunk.p95 == pytest.approx(np.quantile(values, 0.95))
    assert chunk.p50 == pytest.approx(np.quantile(values, 0.5))
    assert chunk.last == 0.02 and chunk.min == 0.001 and chunk.max == 0.02
    assert len(chunk.series) >= 1 and chunk.series_span_s > 0
    assert [m.name for m in snap.metrics] == ["chunk_seconds", "chunks_total"]

    wire = json.dumps(snap.to_dict(), allow_nan=False)  # strict JSON: no NaN leaks out
    back = Snapshot.from_dict(json.loads(wire))
    assert back == snap
    assert live.snapshot(now=40.0, state="running", sessions_total=10).sessions_total == 10
