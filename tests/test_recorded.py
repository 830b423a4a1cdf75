"""Gates on recorded data: column-wise sources, and per-set results (golden vs canary)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa

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
