"""The live per-(set, host) lanes (issue 16, point 3; perfmon.engine.host_lanes): which
session and sample goes to which lane, and that a gate over the lanes is judged as the
recorded groups are."""

from __future__ import annotations

import numpy as np

from perfmon.core.batch import SampleBatch
from perfmon.core.campaign import GateConfig
from perfmon.core.gates import evaluate_gates, parse_gate
from perfmon.core.model import MetricKind, SessionResult, SessionSpec, SessionStatus
from perfmon.engine.host_lanes import HostLanes
from perfmon.engine.recorded import worst_of_groups


def _config(name: str, expr: str) -> GateConfig:
    return GateConfig(name=name, expr=expr, gate=parse_gate(expr))


GATES = [
    _config("Queue", "max(q) < 10"),
    _config("Speed", "speedup(session_seconds, baseline, candidate) >= 1.2"),
]


def _spec(sid: int, variant: str = "baseline", set_name: str = "golden") -> SessionSpec:
    return SessionSpec(
        id=sid,
        workload="w",
        variant=variant,
        set_name=set_name,
        index=sid // 2,
        warmup=False,
        argv=("true",),
        env=(),
        cwd="/",
        timeout_s=None,
    )


def _result(spec: SessionSpec, host: str, status: SessionStatus) -> SessionResult:
    r = SessionResult(spec=spec, status=status)
    r.host = host
    return r


def _batch(rows: list[tuple[int, str, float]]) -> SampleBatch:
    metrics = tuple(dict.fromkeys(m for _, m, _ in rows))
    return SampleBatch(
        np.arange(len(rows), dtype=np.float64) + 1.0,
        np.array([s for s, _, _ in rows], dtype=np.int64),
        np.array([metrics.index(m) for _, m, _ in rows], dtype=np.int32),
        np.array([v for _, _, v in rows], dtype=np.float64),
        metrics,
        tuple(MetricKind.GAUGE for _ in metrics),
    )


def _lanes() -> HostLanes:
    return HostLanes(GATES, run_id="r", campaign="c", run_dir="/tmp/r", started_t=0.0)


def test_lanes_are_named_as_the_recorded_groups() -> None:
    lanes = _lanes()
    lanes.update(_result(_spec(0), "gpu-a", SessionStatus.RUNNING))
    lanes.update(_result(_spec(1, set_name="canary"), "gpu-b", SessionStatus.RUNNING))
    lanes.update(_result(_spec(2), "gpu-b", SessionStatus.RUNNING))
    assert [name for name, _ in lanes.lanes()] == [
        "golden @ gpu-a",
        "canary @ gpu-b",
        "golden @ gpu-b",
    ]


def test_a_session_without_a_host_is_in_no_lane() -> None:
    lanes = _lanes()
    lanes.update(_result(_spec(0), "", SessionStatus.LOST))
    assert len(lanes) == 0
    lanes.add_batch(_batch([(0, "q", 5.0)]))  # and its samples go nowhere
    assert len(lanes) == 0


def test_samples_go_to_their_sessions_lane_and_only_the_gated_metrics() -> None:
    lanes = _lanes()
    lanes.update(_result(_spec(0), "gpu-a", SessionStatus.RUNNING))
    lanes.update(_result(_spec(1), "gpu-b", SessionStatus.RUNNING))
    lanes.add_batch(_batch([(0, "q", 1.0), (1, "q", 50.0), (0, "noise", 7.0), (1, "q", 60.0)]))
    a, b = (lane for _, lane in lanes.lanes())
    assert a.reduce("max", "q") == (1.0, 1) and b.reduce("max", "q") == (60.0, 2)
    assert a.kind("noise") is None and b.kind("noise") is None  # not gated: never folded
    # one session's read (the usual batch) takes the fast path
    lanes.add_batch(_batch([(1, "q", 3.0), (1, "q", 4.0)]))
    assert b.reduce("max", "q") == (60.0, 4) and a.reduce("max", "q") == (1.0, 1)


def test_machine_wide_samples_go_to_the_lanes_with_a_session_running() -> None:
    lanes = _lanes()
    lanes.update(_result(_spec(0), "gpu-a", SessionStatus.RUNNING))
    lanes.update(_result(_spec(1), "gpu-b", SessionStatus.RUNNING))
    lanes.update(_result(_spec(1), "gpu-b", SessionStatus.OK))  # ended on gpu-b
    lanes.add_batch(_batch([(-1, "q", 9.0)]))
    a, b = (lane for _, lane in lanes.lanes())
    assert a.reduce("max", "q") == (9.0, 1) and b.reduce("max", "q") == (None, 0)


def test_gates_over_the_lanes_are_combined_like_the_recorded_groups() -> None:
    lanes = _lanes()
    sid = 0
    for host, cand in (("gpu-a", 1.0), ("gpu-b", 3.0)):  # 2x faster on a, 1.5x slower on b
        for i in range(12):
            for variant, wall in (("baseline", 2.0 + 0.01 * i), ("candidate", cand + 0.01 * i)):
                spec = _spec(sid, variant)
                lanes.update(_result(spec, host, SessionStatus.RUNNING))
                lanes.add_batch(_batch([(sid, "q", 1.0)]))
                done = _result(spec, host, SessionStatus.OK)
                done.wall_s = wall
                lanes.add_batch(
                    SampleBatch(
                        np.array([1.0]),
                        np.array([sid], dtype=np.int64),
                        np.array([0], dtype=np.int32),
                        np.array([wall]),
                        ("session_seconds",),
                        (MetricKind.VALUE,),
                    )
                )
                lanes.update(done)
                sid += 1
    per_group = {name: evaluate_gates(GATES, lane) for name, lane in lanes.lanes()}
    speed = worst_of_groups(per_group, 1, GATES[1].gate, per_host=True)
    assert speed.reason.startswith("[golden @ gpu-b]")
    states = {name: state for name, state, _ in speed.per_set}
    assert states == {"golden @ gpu-a": "pass", "golden @ gpu-b": "fail"}
    queue = worst_of_groups(per_group, 0, GATES[0].gate, per_host=True)
    assert queue.state.value == "pass" and len(queue.per_set) == 2
