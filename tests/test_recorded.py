"""Gates on recorded data: column-wise sources, and per-set results (golden vs canary)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from perfmon.core.datasource import ArrayMetricSource
from perfmon.core.model import SYSTEM_SESSION, MetricKind, Sample
from perfmon.engine.recorded import set_spans, source_from_table


def _table(rows: list[tuple[float, int, str, float, str]]) -> pa.Table:
    t, s, m, v, k = zip(*rows, strict=True)
    return pa.table(
        {
            "t": pa.array(t, pa.float64()),
            "session": pa.array(s, pa.int32()),
            "metric": pa.array(m, pa.string()),
            "value": pa.array(v, pa.float64()),
            "kind": pa.array(k, pa.string()),
        }
    )


SESSIONS = [
    {"id": 0, "set_name": "golden", "warmup": True, "start_t": 0.0, "end_t": 1.0},
    {"id": 1, "set_name": "golden", "warmup": False, "start_t": 1.0, "end_t": 2.0},
    {"id": 2, "set_name": "canary", "warmup": False, "start_t": 2.0, "end_t": 3.0},
]


def test_columnar_source_equals_the_sample_by_sample_source() -> None:
    rng = np.random.default_rng(3)
    rows = []
    for i in range(500):
        sess = int(rng.integers(-1, 3))
        metric = ["a_seconds", "b_bytes", "c_total"][i % 3]
        kind = {"a_seconds": "histogram", "b_bytes": "gauge", "c_total": "counter"}[metric]
        rows.append((float(rng.uniform(0, 3)), sess, metric, float(rng.normal()), kind))
    fast = source_from_table(_table(rows), SESSIONS)
    slow = ArrayMetricSource.from_samples(
        Sample(t, s, m, v, MetricKind(k))
        for t, s, m, v, k in rows
        if s != 0  # 0 is a warm-up
    )
    for metric in ("a_seconds", "b_bytes", "c_total"):
        assert fast.kind(metric) == slow.kind(metric)
        for func in ("max", "min", "mean", "median", "count", "sum", "last"):
            assert fast.reduce(func, metric) == slow.reduce(func, metric), (func, metric)
        assert fast.reduce("quantile", metric, q=0.95) == slow.reduce("quantile", metric, q=0.95)


def test_a_set_keeps_its_sessions_and_the_system_samples_of_its_span() -> None:
    rows = [
        (0.5, 0, "depth", 100.0, "gauge"),  # warm-up: never counted
        (1.5, 1, "depth", 5.0, "gauge"),
        (2.5, 2, "depth", 50.0, "gauge"),
        (1.5, SYSTEM_SESSION, "system_memory_percent", 10.0, "gauge"),
        (2.5, SYSTEM_SESSION, "system_memory_percent", 90.0, "gauge"),
    ]
    spans = set_spans(SESSIONS)
    assert list(spans) == ["golden", "canary"]
    ids, start, end = spans["golden"]
    golden = source_from_table(_table(rows), SESSIONS, keep_sessions=ids, system_span=(start, end))
    assert golden.reduce("max", "depth") == (5.0, 1)
    assert golden.reduce("max", "system_memory_percent") == (10.0, 1)
    ids, start, end = spans["canary"]
    canary = source_from_table(_table(rows), SESSIONS, keep_sessions=ids, system_span=(start, end))
    assert canary.reduce("max", "depth") == (50.0, 1)
    assert canary.reduce("max", "system_memory_percent") == (90.0, 1)


@pytest.mark.slow
def test_golden_and_canary_get_their_own_gate_results(tmp_path: Path) -> None:
    campaign = tmp_path / "sets.toml"
    campaign.write_text(
        textwrap.dedent(
            """
            [campaign]
            name = "sets"
            [[workload]]
            name = "depth"
            command = [
              "/bin/sh", "-c",
              'echo "event_queue_depth $((PERFMON_SESSION * 10))" >&$PERFMON_FD',
            ]
            [set.golden]
            sessions = 2
            [set.canary]
            sessions = 2
            [[gate]]
            name = "Depth"
            expr = "max(event_queue_depth) < 20"
            """
        )
    )
    out = subprocess.run(
        [sys.executable, "-m", "perfmon", "run", str(campaign), "--headless"],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    # golden: sessions 0 and 1 emit 0 and 10 (pass); canary: 20 and 30 (fail)
    assert out.returncode == 1, out.stdout + out.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    report = json.loads((run_dir / "report.json").read_text())
    assert report["gates_by_set"]["golden"][0]["state"] == "pass"
    assert report["gates_by_set"]["canary"][0]["state"] == "fail"
    assert report["gates"][0]["state"] == "fail"
    assert report["gates"][0]["reason"].startswith("[canary]")
    md = (run_dir / "report.md").read_text()
    assert "### Set golden" in md and "### Set canary" in md
    # perfmon attach on the finished run shows the same from the recording
    from perfmon.engine.replay import snapshot_from_run_dir

    snap = snapshot_from_run_dir(run_dir)
    assert snap.state == "finished" and snap.sessions_done == 4
    assert [g.state.value for g in snap.gates] == ["fail"]
    depth = next(m for m in snap.metrics if m.name == "event_queue_depth")
    assert (depth.count, depth.max) == (4, 30.0)


def test_statistical_gates_skip_workloads_that_never_emit_the_metric() -> None:
    """A speedup gate over a metric only one workload emits is decided, not pending forever."""
    from perfmon.core.campaign import GateConfig
    from perfmon.core.gates import evaluate_gates, parse_gate

    sessions = []
    samples = []
    rng = np.random.default_rng(0)
    sid = 0
    for workload in ("tgat", "dag"):
        for i in range(8):
            for variant, scale in (("baseline", 2.0), ("candidate", 1.0)):
                sessions.append(
                    {
                        "id": sid,
                        "set_name": "golden",
                        "workload": workload,
                        "variant": variant,
                        "params": {},
                        "warmup": False,
                        "status": "ok",
                        "start_t": float(sid),
                        "end_t": float(sid) + 0.5,
                    }
                )
                if workload == "tgat":
                    value = scale * (1 + 0.01 * rng.standard_normal())
                    samples.append((float(sid) + 0.4, sid, "pass_seconds", value, "value"))
                samples.append((float(sid) + 0.5, sid, "session_seconds", 1.0 + i, "value"))
                sid += 1
    source = source_from_table(_table(samples), sessions)
    gate = GateConfig("Perf", "x", parse_gate("speedup(pass_seconds, baseline, candidate) >= 1.4"))
    (result,) = evaluate_gates([gate], source)
    assert result.state.value == "pass", result.reason
    assert "dag" not in result.reason


# -- streaming readers: exact in bounded memory ------------------------------------------------


def _batches(seed: int = 1) -> list[pa.RecordBatch]:
    from perfmon.engine.recorder import SAMPLES_SCHEMA

    rng = np.random.default_rng(seed)
    out = []
    for i in range(30):
        n = int(rng.integers(1, 3000))
        names = ["a_seconds", "b_bytes", "c_total"] if i % 2 else ["c_total", "d"]
        kinds = ["gauge", "counter", "value"]
        m = rng.integers(0, len(names), n).astype(np.int32)
        v = np.where(
            rng.random(n) < 0.3,
            rng.integers(-3, 3, n).astype(float),  # many ties
            rng.standard_normal(n) * 10.0 ** rng.integers(-5, 5, n),
        )
        out.append(
            pa.record_batch(
                [
                    pa.array(rng.uniform(0, 100, n)),
                    pa.array(rng.integers(-1, 5, n).astype(np.int32)),
                    pa.DictionaryArray.from_arrays(pa.array(m), pa.array(names)),
                    pa.array(v),
                    pa.DictionaryArray.from_arrays(
                        pa.array((m % 3).astype(np.int32)), pa.array(kinds)
                    ),
                ],
                schema=SAMPLES_SCHEMA,
            )
        )
    return out


@pytest.mark.parametrize(
    ("budget", "bucket"), [(1 << 30, 1 << 16), (10, 50), (10, 1 << 16), (10, 0)]
)
def test_metric_summaries_are_numpy_exact_whatever_the_memory_budget(
    monkeypatch: pytest.MonkeyPatch, budget: int, bucket: int
) -> None:
    """Collected whole, or by radix selection down to the last of the 64 bits: the same numbers
    as numpy.median / numpy.percentile on all values, to the last bit."""
    from perfmon.engine import recorded

    monkeypatch.setattr(recorded, "COLLECT_BUDGET", budget)
    monkeypatch.setattr(recorded, "BUCKET_COLLECT_MAX", bucket)
    batches = _batches()
    table = pa.Table.from_batches(batches)
    metric = np.array([str(x) for x in table.column("metric").to_pylist()])
    session = table.column("session").to_numpy()
    value = table.column("value").to_numpy()
    out = recorded.metric_summaries(lambda: iter(batches), exclude_sessions=[0])
    assert [m["name"] for m in out] == ["a_seconds", "b_bytes", "c_total", "d"]
    for m in out:
        v = value[(metric == m["name"]) & (session != 0)]
        assert m["n"] == v.size
        assert m["median"] == np.median(v)
        assert m["p95"] == np.percentile(v, 95)
        assert (m["min"], m["max"]) == (v.min(), v.max())
        assert m["total"] == pytest.approx(v.sum())


def test_session_aggregates_equal_the_full_array_source() -> None:
    from perfmon.engine.recorded import Columns, session_aggregates

    batches = _batches(2)
    table = pa.Table.from_batches(batches)
    full = source_from_table(Columns.from_batches(batches), [])
    agg = session_aggregates(batches)
    for name, (sids, _, vals) in agg.items():
        per = full._per_session(name)
        assert dict(zip(sids.tolist(), vals.tolist(), strict=True)) == pytest.approx(per)
    assert set(agg) == set(str(x) for x in table.column("metric").to_pylist())


def test_columns_from_batches_equal_columns_from_the_table() -> None:
    from perfmon.engine.recorded import Columns
    from perfmon.engine.recorder import READ_SCHEMA

    batches = _batches(3)
    table = pa.Table.from_batches(batches).select(READ_SCHEMA.names).cast(READ_SCHEMA)
    a, b = Columns.from_batches(batches), Columns.from_table(table)
    assert a.names == b.names and a.kinds == b.kinds
    for col in ("t", "session", "code", "value", "bounds"):
        assert np.array_equal(getattr(a, col), getattr(b, col)), col
    only = Columns.from_batches(batches, {"b_bytes"})
    code = b.names.index("b_bytes")
    assert only.names == ("b_bytes",) and only.value.size == int(np.sum(b.code == code))


# -- gates over metrics too large to hold: streamed, same results ------------------------------


def _streamed_run(tmp_path: Path) -> Any:
    """A run of 6 sessions on two hosts (one a warm-up, one noisy) plus machine-wide samples,
    ties in time, a counter and a value metric; batches served as a closed run's would be."""
    from perfmon.engine.recorder import SAMPLES_SCHEMA, RunData

    rng = np.random.default_rng(11)
    sessions = [
        {
            "id": i,
            "variant": ("baseline", "candidate")[i % 2],
            "set_name": "golden",
            "workload": "w",
            "params": {"n": str(i % 3)},
            "warmup": i == 0,
            "status": "noisy" if i == 3 else "ok",
            "host": ("a", "b")[i // 4],
            "host_fingerprint": "fp",
            "start_t": 10.0 * i,
            "end_t": 10.0 * i + 9.0,
        }
        for i in range(8)
    ]
    names = ["lat_seconds", "q", "events_total", "final_value"]
    kinds = ["gauge", "gauge", "counter", "value"]
    batches = []
    for _ in range(25):
        n = int(rng.integers(50, 1500))
        m = rng.integers(0, 4, n).astype(np.int32)
        v = np.where(
            rng.random(n) < 0.3, rng.integers(0, 4, n).astype(float), rng.gamma(2.0, 3.0, n)
        )
        batches.append(
            pa.record_batch(
                [
                    pa.array(np.round(rng.uniform(0, 80, n), 1)),  # ties in time
                    pa.array(rng.integers(-1, 8, n).astype(np.int32)),
                    pa.DictionaryArray.from_arrays(pa.array(m), pa.array(names)),
                    pa.array(v),
                    pa.DictionaryArray.from_arrays(pa.array(m), pa.array(kinds)),
                ],
                schema=SAMPLES_SCHEMA,
            )
        )
    return RunData(
        run_dir=tmp_path,
        manifest={},
        sessions=sessions,
        closed=True,
        t_max=80.0,
        batch_source=lambda: iter(batches),
    )


STREAMED_GATES: list[dict[str, Any]] = [
    {"name": "P95", "expr": "p95(lat_seconds) < 8", "window_s": None},
    {"name": "P999", "expr": "p99.9(lat_seconds) < 30", "window_s": None},
    {"name": "Median", "expr": "median(q) > 1", "window_s": None},
    {"name": "Max", "expr": "max(q) < 40", "window_s": None},
    {"name": "Min", "expr": "min(q) >= 0", "window_s": None},
    {"name": "Mean", "expr": "mean(lat_seconds) < 7", "window_s": None},
    {"name": "Sum", "expr": "sum(q) < 1e9", "window_s": None},
    {"name": "Count", "expr": "count(events_total) > 0", "window_s": None},
    {"name": "Last", "expr": "last(final_value) < 100", "window_s": None},
    {"name": "Windowed", "expr": "p95(lat_seconds) < 8", "window_s": 20.0},
    {"name": "Labelled", "expr": 'p50(lat_seconds{variant="candidate"}) < 6', "window_s": None},
    {"name": "NotBase", "expr": 'max(q{variant!="baseline"}) < 40', "window_s": None},
    {"name": "Ratio", "expr": "ratio(p95(lat_seconds), median(q)) < 10", "window_s": None},
    {"name": "Slope", "expr": "slope(q) < 1/s", "window_s": None},
    {"name": "Speed", "expr": "speedup(lat_seconds, baseline, candidate) >= 0.5", "window_s": None},
]


@pytest.mark.parametrize("per_host", [False, True])
def test_streamed_gate_metrics_give_the_held_results(tmp_path: Path, per_host: bool) -> None:
    """With no sample held (every reduced metric streamed by passes over the batches), each
    gate's state, value and n equal those over the held arrays: whole run, and per (set,
    host) group with its sessions, warm-up and noisy attempts left out, machine-wide
    samples in its span, windows and label matchers."""
    from perfmon.engine.manifest import stats_options
    from perfmon.engine.recorded import evaluate_recorded

    data = _streamed_run(tmp_path)
    if not per_host:
        data.sessions = [{**s, "host": ""} for s in data.sessions]
    stats = stats_options({})
    held = evaluate_recorded(STREAMED_GATES, data, stats)
    streamed = evaluate_recorded(STREAMED_GATES, data, stats, held=0)
    assert held.per_host is per_host
    groups = [("run", held.run, streamed.run)]
    groups += [(k, v, streamed.per_set[k]) for k, v in held.per_set.items()]
    assert len(groups) == (3 if per_host else 1)
    for name, a, b in groups:
        for ga, gb in zip(a, b, strict=True):
            assert (ga.state, ga.n) == (gb.state, gb.n), (name, ga.name)
            assert gb.value == pytest.approx(ga.value, rel=1e-12, nan_ok=True), (name, ga.name)
            assert ga.n > 0 or ga.name in {"Windowed"}, (name, ga.name, ga.reason)


def test_select_ranks_is_numpy_exact_down_to_the_last_bits(monkeypatch: pytest.MonkeyPatch) -> None:
    from perfmon.engine import streamed

    rng = np.random.default_rng(5)
    v = np.concatenate(
        [
            rng.standard_normal(5000) * 10.0 ** rng.integers(-8, 8, 5000),
            np.zeros(300),
            -np.zeros(10),
            np.full(200, 3.25),
        ]
    )
    chunks = np.array_split(rng.permutation(v), 7)
    ranks = {0, 1, 2500, 4999, v.size - 1}
    for bucket in (1 << 16, 40, 0):  # collected at once, after a pass or two, or never
        monkeypatch.setattr(streamed, "BUCKET_COLLECT", bucket)
        found = streamed.select_ranks(lambda: iter(chunks), ranks)
        assert found == {r: float(np.sort(v)[r]) for r in ranks}
    with pytest.raises(ValueError, match="out of range"):
        streamed.select_ranks(lambda: iter(chunks), {v.size})
