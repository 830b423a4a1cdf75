"""A board that tells the truth per set (issue 11, point 5)."""

from __future__ import annotations

import math

import numpy as np

from perfmon.core.batch import SampleBatch
from perfmon.core.gates import VERDICT_RULE, parse_gate
from perfmon.core.live import LiveState
from perfmon.core.model import (
    GateResult,
    GateState,
    Sample,
    SessionResult,
    SessionSpec,
    SessionStatus,
)
from perfmon.core.snapshot import Snapshot
from perfmon.tui.widgets.gate_board import GateBoard, per_set_text


def _spec(sid: int, variant: str, set_name: str) -> SessionSpec:
    return SessionSpec(
        id=sid,
        workload="tgat",
        variant=variant,
        set_name=set_name,
        index=sid,
        warmup=False,
        argv=("true",),
        env=(),
        cwd="/tmp",
        timeout_s=None,
        params=(),
    )


class Sets:
    def __init__(self) -> None:
        self.live = LiveState(run_id="r", campaign="c", run_dir="/r", started_t=0.0)
        self.sid = 0

    def session(self, set_name: str, variant: str, seconds: float | None) -> None:
        spec = _spec(self.sid, variant, set_name)
        self.sid += 1
        self.live.add_session(spec)
        if seconds is None:  # scheduled, not run yet
            return
        self.live.add_batch(
            SampleBatch.from_samples([Sample(float(spec.id), spec.id, "session_seconds", seconds)])
        )
        self.live.update_session(SessionResult(spec=spec, status=SessionStatus.OK))


GATE = parse_gate("speedup(session_seconds, baseline, candidate) >= 1.4")


def test_a_decided_set_keeps_its_state_while_another_set_starts() -> None:
    rng = np.random.default_rng(2)
    run = Sets()
    for _ in range(12):
        run.session("golden", "baseline", float(rng.lognormal(0.0, 0.03)))
        run.session("golden", "candidate", float(rng.lognormal(-math.log(6.0), 0.03)))
    golden = GATE.evaluate(run.live, "Performance")
    assert golden.per_set[0][:2] == ("golden", "pass")
    run.session("canary", "baseline", None)
    run.session("canary", "candidate", None)
    before = GATE.evaluate(run.live, "Performance")
    assert [s[:2] for s in before.per_set] == [("golden", "pass"), ("canary", "not started")]
    for _ in range(3):
        run.session("canary", "baseline", float(rng.lognormal(0.0, 0.03)))
        run.session("canary", "candidate", float(rng.lognormal(-math.log(6.0), 0.03)))
    during = GATE.evaluate(run.live, "Performance")
    assert [s[:2] for s in during.per_set] == [("golden", "pass"), ("canary", "pending")]
    assert during.state is GateState.PENDING  # the verdict needs every set
    assert "6" in during.per_set[0][2] and "[" in during.per_set[0][2]
    assert "every set" in VERDICT_RULE


def test_per_set_survives_the_snapshot_round_trip_and_shows_on_the_board() -> None:
    g = GateResult(
        "Performance",
        "speedup(session_seconds, baseline, candidate) >= 1.4",
        GateState.PENDING,
        None,
        6,
        "waiting",
        per_set=(("golden", "pass", "6.21 [5.71, 19.1]"), ("canary", "pending", "n = 6")),
    )
    empty = Snapshot(
        version=1,
        run_id="r",
        campaign="c",
        run_dir="/r",
        state="running",
        started_t=0.0,
        now_t=1.0,
        sessions_total=0,
        sessions_done=0,
        samples_total=0,
        malformed_total=0,
        gates=(g,),
    )
    snap = Snapshot.from_dict(empty.to_dict())
    assert snap.gates[0] == g
    text = per_set_text(g.per_set)
    assert text == "golden ● pass 6.21 [5.71, 19.1] │ canary … pending n = 6"
    summary = GateBoard.summary((g,))
    assert summary.startswith("1 pending") and "every gate must pass in every set" in summary


async def test_the_board_shows_each_set_and_the_rule() -> None:
    import dataclasses

    from perfmon.tui.app import PerfmonApp
    from perfmon.tui.source import ScriptedSource
    from test_tui import settle, snapshot

    base = snapshot(6)
    per_set = (("golden", "pass", "6.21 [5.71, 19.1]"), ("canary", "not started", ""))
    gates = tuple(
        dataclasses.replace(g, per_set=per_set) if g.name == "Performance" else g
        for g in base.gates
    )
    app = PerfmonApp(ScriptedSource([dataclasses.replace(base, gates=gates)]))
    async with app.run_test(size=(150, 30)) as pilot:
        await settle(pilot, app)
        board = app.query_one(GateBoard)
        reason = board.cell_text("Performance", "reason")
        assert "golden ● pass 6.21 [5.71, 19.1] │ canary ○ not started" in reason
        assert "every gate must pass in every set" in (board.border_subtitle or "")
