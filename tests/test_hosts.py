"""Statistics and gates per host (issue 16, point 3): a run whose sessions ran on several hosts
is judged per (set, host) group, combined like sets (worst state, every group shown); one host
looks exactly as a local run; a host under several fingerprints is refused unless the campaign
pools hosts (``[executor] allow_mixed_hosts = true``).

All on the scripted ``FakeExecutor``: each fake session says which host it ran on and with what
fingerprint, as the Ray executor's first message does.
"""

from __future__ import annotations

import asyncio
import json
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from perfmon.cli import main
from perfmon.core.campaign import load_campaign
from perfmon.core.model import GateResult, GateState, SessionSpec
from perfmon.core.snapshot import Snapshot
from perfmon.engine.compare import MixedHostsRefused, apply_baseline_run, compare_runs
from perfmon.engine.fake_executor import FakeExecutor, FakeSample, FakeSession
from perfmon.engine.headless import format_gate_table
from perfmon.engine.manifest import stats_options
from perfmon.engine.recorded import (
    allows_mixed_hosts,
    evaluate_recorded,
    gate_groups,
    host_fingerprints,
    judged_per_host,
)
from perfmon.engine.recorder import make_run_dir, read_run
from perfmon.engine.runner import EXIT_FAIL, EXIT_PASS, Runner
from perfmon.tui.widgets.gate_board import per_set_text

FP_1 = "cpu=Xeon 8480;cores=2;mem=16GiB;kernel=6.8;gpu="
FP_2 = "cpu=EPYC 9654;cores=2;mem=16GiB;kernel=6.8;gpu="

GATES = """
[[gate]]
name = "Speed"
expr = "speedup(session_seconds, baseline, candidate) >= 1.2"
[[gate]]
name = "Queue"
expr = "max(event_queue_depth) < 100"
"""


def write_campaign(tmp_path: Path, *, executor: str = "", sessions: int = 10) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "c.toml"
    path.write_text(
        textwrap.dedent(
            f"""
            [campaign]
            name = "fleet"
            sample_interval = "50ms"
            [[workload]]
            name = "kernel"
            command = ["kernel"]
            [variant.baseline]
            [variant.candidate]
            [set.golden]
            sessions = {sessions}
            order = "interleaved"
            {executor}
            """
        )
        + GATES
    )
    return path


Placer = Callable[[int], tuple[str, str]]
"""Pair index (0, 1, ...) -> (host, fingerprint) of that baseline/candidate pair."""


def script(place: Placer, *, slow_on: str = "") -> Callable[[SessionSpec], FakeSession]:
    """Baseline 2 s, candidate 1 s (2x faster), except on host ``slow_on`` where the
    candidate takes 3 s (1.5x slower); a little spread so that no two sessions tie."""

    def make(spec: SessionSpec) -> FakeSession:
        host, fp = place(spec.index)
        wiggle = 0.01 * (spec.index % 7)
        if spec.variant == "baseline":
            wall = 2.0 + wiggle
        else:
            wall = (3.0 if slow_on and host == slow_on else 1.0) + wiggle
        return FakeSession(
            wall_s=wall,
            cpu_s=0.01,
            samples=(FakeSample(0.1, "event_queue_depth", 3.0),),
            host=host,
            host_fingerprint=fp,
        )

    return make


def run(
    tmp_path: Path,
    make: Callable[[SessionSpec], FakeSession],
    *,
    pace: float = 0.0,
    snapshots: list[Snapshot] | None = None,
    hosts_seen: list[int] | None = None,
    **kw: Any,
) -> Any:
    campaign = load_campaign(write_campaign(tmp_path, **kw))
    run_dir = make_run_dir(tmp_path / "runs", campaign.name, time.time())
    factory = FakeExecutor.factory(make, pace=pace)
    runner = Runner(
        campaign,
        run_dir,
        executor_factory=factory,
        sample_system=False,
        snapshot_hz=50.0,
        gate_interval_s=0.0,
        gate_cost_factor=0.0,  # judge live gates on every change: no throttle to outrun
    )
    if snapshots is not None:
        runner.snapshot_listeners.append(snapshots.append)
    if hosts_seen is not None:  # hosts the runner had seen at each snapshot
        runner.snapshot_listeners.append(lambda _: hosts_seen.append(len(runner._hosts)))
    return asyncio.run(runner.run())


def alternate(pair: int) -> tuple[str, str]:
    return ("gpu-a", FP_1) if pair % 2 == 0 else ("gpu-b", FP_1)


def test_two_hosts_one_passing_one_failing_fail_the_run_and_both_are_shown(
    tmp_path: Path,
) -> None:
    outcome = run(tmp_path, script(alternate, slow_on="gpu-b"), sessions=20)
    assert outcome.exit_status == EXIT_FAIL and outcome.verdict == "fail"
    speed = outcome.gates[0]
    assert speed.state is GateState.FAIL and speed.reason.startswith("[golden @ gpu-b]")
    shown = {name: state for name, state, _ in speed.per_set}
    assert shown == {"golden @ gpu-a": "pass", "golden @ gpu-b": "fail"}
    texts = dict((name, text) for name, _, text in speed.per_set)
    assert texts["golden @ gpu-a"].startswith("1.98x [")
    assert texts["golden @ gpu-b"].startswith("0.67x [")
    report = json.loads((outcome.run_dir / "report.json").read_text())
    assert report["gate_groups"] == "set and host"
    by_group = report["gates_by_set"]
    assert list(by_group) == ["golden @ gpu-a", "golden @ gpu-b"]
    assert [g["state"] for g in by_group["golden @ gpu-a"]] == ["pass", "pass"]
    assert [g["state"] for g in by_group["golden @ gpu-b"]] == ["fail", "pass"]
    # Each host's speedup compares only its own sessions: 10 pairs each, 2x and 1/1.5x.
    assert by_group["golden @ gpu-a"][0]["value"] > 1.9
    assert 0.6 < by_group["golden @ gpu-b"][0]["value"] < 0.7
    md = (outcome.run_dir / "report.md").read_text()
    assert "### Set golden on host gpu-a" in md and "### Set golden on host gpu-b" in md
    assert "judged on its own host's sessions" in md
    assert "every gate passes in every set on every host" in md
    html = (outcome.run_dir / "report.html").read_text()
    assert "<h3>Set golden on host gpu-a</h3>" in html and "on host gpu-b</h3>" in html
    # The headless log and the board show both hosts' groups under the gate.
    table = format_gate_table(outcome.gates).splitlines()
    assert table[2].startswith("Speed") and "FAIL" in table[2]
    assert table[3].split() == ["golden", "@", "gpu-a", "pass", *texts["golden @ gpu-a"].split()]
    assert table[4].split()[:4] == ["golden", "@", "gpu-b", "fail"]
    board = per_set_text(speed.per_set)
    assert board.startswith("golden @ gpu-a ● pass 1.98x [") and "│ golden @ gpu-b ✗ fail" in board


def test_hosts_of_one_fingerprint_are_still_judged_apart(tmp_path: Path) -> None:
    """Pooled, host B's slow candidate would hide under host A's fast one (median of all)."""
    outcome = run(tmp_path, script(alternate, slow_on="gpu-b"), sessions=20)
    data = read_run(outcome.run_dir)
    assert host_fingerprints(data.sessions) == {"gpu-a": [FP_1], "gpu-b": [FP_1]}
    assert judged_per_host(data.sessions, allow_mixed_hosts=False)
    stats = stats_options(data.manifest["campaign"])
    pooled = evaluate_recorded(
        data.manifest["campaign"]["gates"], data, stats, allow_mixed_hosts=True
    )
    assert pooled.per_set == {} and not pooled.per_host  # one group: as a local run
    assert pooled.run[0].state is not GateState.FAIL


def _gate_fields(results: Any) -> list[tuple[Any, ...]]:
    return [(g.name, g.state, g.value, g.ci_low, g.ci_high, g.n, g.reason) for g in results]


def test_one_host_looks_exactly_as_a_local_run(tmp_path: Path) -> None:
    local = run(tmp_path / "local", script(lambda pair: ("", "")))
    ray_one = run(tmp_path / "one", script(lambda pair: ("gpu-a", FP_1)))
    assert local.exit_status == ray_one.exit_status == EXIT_PASS
    assert _gate_fields(local.gates) == _gate_fields(ray_one.gates)
    assert [g.per_set for g in local.gates] == [g.per_set for g in ray_one.gates]
    assert format_gate_table(local.gates) == format_gate_table(ray_one.gates)
    for outcome in (local, ray_one):
        report = json.loads((outcome.run_dir / "report.json").read_text())
        assert report["gates_by_set"] == {} and report["gate_groups"] == "set"
        md = (outcome.run_dir / "report.md").read_text()
        assert " @ " not in md and "on host" not in md
    local_report = json.loads((local.run_dir / "report.json").read_text())
    ray_report = json.loads((ray_one.run_dir / "report.json").read_text())
    assert local_report["gates"] == ray_report["gates"]
    assert local_report["tables"]["tables"] == ray_report["tables"]["tables"]


def test_a_host_under_two_fingerprints_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    def changed(pair: int) -> tuple[str, str]:
        return ("gpu-a", FP_1 if pair < 3 else FP_2)

    outcome = run(tmp_path, script(changed))
    assert outcome.exit_status == EXIT_FAIL and outcome.verdict == "pending"
    for g in outcome.gates:
        assert g.state is GateState.PENDING and g.value is None
        assert "refused: sessions on gpu-a ran under 2 host fingerprints" in g.reason
        assert "allow_mixed_hosts = true" in g.reason
    md = (outcome.run_dir / "report.md").read_text()
    assert "refused: sessions on gpu-a" in md
    report = json.loads((outcome.run_dir / "report.json").read_text())
    tables = report["tables"]
    assert tables["tables"] == []  # no pooled number across fingerprints
    assert any("refused" in x for x in tables["left_out"])


def test_mixed_fingerprints_are_pooled_when_the_campaign_opts_in(tmp_path: Path) -> None:
    def two_kinds(pair: int) -> tuple[str, str]:
        return ("gpu-a", FP_1) if pair % 2 == 0 else ("gpu-b", FP_2)

    opt_in = "[executor]\nallow_mixed_hosts = true"
    outcome = run(tmp_path, script(two_kinds), executor=opt_in)
    assert outcome.exit_status == EXIT_PASS
    data = read_run(outcome.run_dir)
    assert allows_mixed_hosts(data.manifest)
    assert not judged_per_host(data.sessions, allows_mixed_hosts(data.manifest))
    assert all(name == "golden" for g in outcome.gates for name, _, _ in g.per_set)
    report = json.loads((outcome.run_dir / "report.json").read_text())
    assert report["gates_by_set"] == {} and report["gate_groups"] == "set"
    md = (outcome.run_dir / "report.md").read_text()
    assert "pooled over 2 hosts with 2 distinct fingerprints" in md


def test_groups_split_each_set_by_host_and_leave_out_sessions_that_reached_no_host() -> None:
    rows = [
        {"id": 0, "set_name": "golden", "host": "a", "host_fingerprint": FP_1, "start_t": 1.0},
        {"id": 1, "set_name": "golden", "host": "b", "host_fingerprint": FP_1, "start_t": 2.0},
        {"id": 2, "set_name": "canary", "host": "a", "host_fingerprint": FP_1, "end_t": 9.0},
        {"id": 3, "set_name": "canary", "host": "", "status": "lost"},
        {"id": 4, "set_name": "golden", "host": "a", "warmup": True},
    ]
    groups = gate_groups(rows, per_host=True)
    assert [(g.name, g.ids, g.host) for g in groups] == [
        ("golden @ a", {0}, "a"),
        ("golden @ b", {1}, "b"),
        ("canary @ a", {2}, "a"),
    ]
    assert [len(g.rows) for g in groups] == [2, 1, 1]  # the warm-up's row belongs, unmeasured
    assert [g.name for g in gate_groups(rows, per_host=False)] == ["golden", "canary"]
    assert allows_mixed_hosts({"campaign": {"executor": {"allow_mixed_hosts": True}}})
    assert not allows_mixed_hosts({"campaign": {"executor": "garbage"}})
    assert not allows_mixed_hosts([])


def test_live_gates_over_several_hosts_are_judged_per_host_as_the_end_judges_them(
    tmp_path: Path,
) -> None:
    """While the run goes on, each live gate over two hosts is judged per (set, host) lane
    (perfmon.engine.host_lanes), never on a pooled figure: the board shows both hosts'
    groups, and the live states converge on the final per-host verdict."""
    snapshots: list[Snapshot] = []
    # 20 pairs per host: the speedup is decided at 7, so ~26 sessions run after it (~0.5 s at
    # this pace), time for the gate worker to judge the lanes even on a loaded machine
    outcome = run(
        tmp_path, script(alternate, slow_on="gpu-b"), sessions=40, pace=0.01, snapshots=snapshots
    )
    assert outcome.exit_status == EXIT_FAIL
    two_hosts = [s for s in snapshots if s.state == "running" and s.sessions_done >= 8]
    assert two_hosts, "no snapshot while two hosts had sessions"
    judged = [s for s in two_hosts if s.gates[1].per_set]
    assert judged, "no live gate was judged per host"
    for snap in judged:
        for g in snap.gates:
            assert "pooled" not in g.reason
            names = [name for name, _, _ in g.per_set]
            assert names and all(" @ gpu-" in name for name in names), names
    # the queue gate passes on both hosts live; the speedup fails on gpu-b before the end
    queue = judged[-1].gates[1]
    assert queue.state is GateState.PASS
    assert {name: state for name, state, _ in queue.per_set} == {
        "golden @ gpu-a": "pass",
        "golden @ gpu-b": "pass",
    }
    live_speed = [s.gates[0] for s in judged if s.gates[0].state is GateState.FAIL]
    assert live_speed, "the speedup never failed live on gpu-b"
    shown = dict((name, state) for name, state, _ in live_speed[-1].per_set)
    assert shown["golden @ gpu-b"] == "fail" and shown["golden @ gpu-a"] != "fail"
    assert live_speed[-1].reason.startswith("[golden @ gpu-b]")
    final = snapshots[-1]
    assert final.verdict == "fail"
    assert [name for name, _, _ in final.gates[1].per_set] == ["golden @ gpu-a", "golden @ gpu-b"]


def test_the_live_comparison_panel_compares_each_host_apart(tmp_path: Path) -> None:
    """On two hosts the panel has one row per (set, host) group, each host's candidate
    against its own baseline (2x faster on gpu-a, 1.5x slower on gpu-b), never the pooled
    median; the final panel too."""
    snapshots: list[Snapshot] = []
    run(tmp_path, script(alternate, slow_on="gpu-b"), sessions=20, pace=0.01, snapshots=snapshots)
    panels = [s.comparison for s in snapshots if s.comparison is not None]
    assert panels, "no comparison panel"
    final = panels[-1]
    rows = final.rows_of("session_seconds")
    assert [r.set_name for r in rows] == ["golden @ gpu-a", "golden @ gpu-b"]
    assert len({r.key for r in final.rows}) == len(final.rows)  # one key per host's row
    (fast,), (slow,) = rows[0].ratios, rows[1].ratios
    assert fast.factor is not None and fast.factor > 1.9
    assert slow.factor is not None and 0.6 < slow.factor < 0.7
    assert [len(side.values) for side in rows[0].sides] == [10, 10]  # its own host's only


def test_a_session_the_noise_guard_repeats_is_not_counted_ok_in_its_lane(tmp_path: Path) -> None:
    """The lanes get each session's update after the noise guard, as the pooled live state
    does: an attempt it marks NOISY counts as finished OK in neither."""
    from perfmon.core.model import SessionResult, SessionStatus

    campaign = load_campaign(write_campaign(tmp_path))
    runner = Runner(
        campaign,
        make_run_dir(tmp_path / "runs", campaign.name, time.time()),
        executor_factory=FakeExecutor.factory(script(alternate)),
        sample_system=False,
    )
    spec = runner.scheduler.next_session()
    assert spec is not None

    def noisy(r: SessionResult) -> None:  # the guard's verdict on the session's last update
        if r.status.finished:
            r.status = SessionStatus.NOISY

    runner._noise_update = noisy  # type: ignore[method-assign,assignment]
    result = SessionResult(spec=spec, status=SessionStatus.RUNNING)
    result.host, result.host_fingerprint = "gpu-a", FP_1
    runner._on_update(result)
    result.status = SessionStatus.OK  # the executor's final update, then the guard's
    runner._on_update(result)
    assert result.status is SessionStatus.NOISY
    with runner._live_lock:
        runner._apply_pending()
    assert runner._lanes is not None
    ((name, lane),) = runner._lanes.lanes()
    assert name == "golden @ gpu-a"
    (group,) = lane.session_groups()
    assert lane.finished_sessions(group) == runner.live.finished_sessions(group) == 0


def test_a_live_gate_judged_before_the_second_host_came_is_not_shown_as_per_host(
    tmp_path: Path,
) -> None:
    """A result the worker computed over the pooled state (before the second host came) is
    marked pending until the worker judges the lanes; a lane-judged one is shown as is."""
    campaign = load_campaign(write_campaign(tmp_path))
    runner = Runner(
        campaign,
        make_run_dir(tmp_path / "runs", campaign.name, time.time()),
        executor_factory=FakeExecutor.factory(script(alternate)),
        sample_system=False,
    )
    lane_judged = GateResult(
        "Speed",
        "speedup(...) >= 1.2",
        GateState.FAIL,
        0.5,
        10,
        "[golden @ gpu-b] 0.5x",
        per_set=(("golden @ gpu-a", "pass", "2x"), ("golden @ gpu-b", "fail", "0.5x")),
    )
    pooled = GateResult("Queue", "max(event_queue_depth) < 100", GateState.PASS, 3.0, 40, "ok")
    runner.gate_worker.results = [lane_judged, pooled]
    runner.gate_worker.per_group = [True, False]
    runner._hosts = {"gpu-a": {FP_1}, "gpu-b": {FP_1}}
    runner._per_host_live = True
    runner._observe_gates()
    assert runner._gates[0] is lane_judged
    assert runner._gates[1].state is GateState.PENDING and runner._gates[1].per_set == ()
    assert runner._gates[1].reason.startswith("pooled over 2 hosts live")
    # a host under two fingerprints: no lane can be trusted, everything waits for the end
    runner._hosts = {"gpu-a": {FP_1, FP_2}, "gpu-b": {FP_1}}
    runner._per_host_live = False
    runner._observe_gates()
    assert [g.state for g in runner._gates] == [GateState.PENDING, GateState.PENDING]


def test_live_gates_on_one_host_are_not_marked(tmp_path: Path) -> None:
    snapshots: list[Snapshot] = []
    run(tmp_path, script(lambda pair: ("gpu-a", FP_1)), sessions=5, pace=0.01, snapshots=snapshots)
    queue = [s.gates[1] for s in snapshots if s.state == "running" and s.sessions_done >= 2]
    assert queue and all(g.state is GateState.PASS for g in queue)
    assert all("pooled" not in g.reason for g in queue)


def test_the_reports_comparison_compares_each_host_apart(tmp_path: Path) -> None:
    outcome = run(tmp_path, script(alternate, slow_on="gpu-b"), sessions=10)
    report = json.loads((outcome.run_dir / "report.json").read_text())
    rows = [r for r in report["comparison"]["rows"] if r["metric"] == "session_seconds"]
    assert [r["group"] for r in rows] == ["golden @ gpu-a kernel", "golden @ gpu-b kernel"]
    assert [(r["a_n"], r["b_n"]) for r in rows] == [(5, 5), (5, 5)]
    assert rows[0]["speedup"] > 1.9 and rows[1]["speedup"] < 0.7  # never the pooled median


def _two_runs(tmp_path: Path, fp_b: str, *, executor: str = "") -> tuple[Path, Path]:
    a = run(tmp_path / "a", script(lambda pair: ("gpu-a", FP_1)), sessions=5).run_dir
    b = run(tmp_path / "b", script(lambda pair: ("gpu-b", fp_b)), sessions=5, executor=executor)
    return a, b.run_dir


def test_compare_refuses_runs_of_different_fingerprints_unless_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = _two_runs(tmp_path, FP_2)
    with pytest.raises(MixedHostsRefused, match="2 different host fingerprints"):
        compare_runs(a, b)
    assert main(["compare", str(a), str(b)]) == 2
    err = capsys.readouterr().err
    assert "refused" in err and "--allow-mixed-hosts" in err and "Traceback" not in err
    expr = "regression(session_seconds) > 5%"
    assert main(["compare", str(a), str(b), "--fail-if", expr]) == 2
    assert main(["compare", str(a), str(b), "--allow-mixed-hosts"]) == 0
    rows, _ = compare_runs(a, b, allow_mixed_hosts=True)
    assert rows


def test_compare_takes_runs_of_one_fingerprint_on_different_hosts(tmp_path: Path) -> None:
    a, b = _two_runs(tmp_path, FP_1)
    rows, _ = compare_runs(a, b)
    assert any(r.metric == "session_seconds" for r in rows)


def test_compare_takes_runs_when_a_campaign_opted_in(tmp_path: Path) -> None:
    a, b = _two_runs(tmp_path, FP_2, executor="[executor]\nallow_mixed_hosts = true")
    rows, _ = compare_runs(a, b)
    assert rows


def test_a_baseline_run_on_another_kind_of_host_is_refused(tmp_path: Path) -> None:
    a, b = _two_runs(tmp_path, FP_2)
    data = read_run(b)
    gates = data.manifest["campaign"]["gates"]
    stats = stats_options(data.manifest["campaign"])
    recorded = evaluate_recorded(gates, data, stats)
    again = apply_baseline_run(gates, data, recorded, a, stats)
    speed = again.run[0]
    assert speed.state is GateState.PENDING and speed.value is None
    assert "refused: the runs' sessions ran under 2 different host fingerprints" in speed.reason
    assert again.run[1] == recorded.run[1]  # a gate on this run's data alone is kept


def test_a_baseline_run_is_compared_with_each_host_of_this_run(tmp_path: Path) -> None:
    base = run(tmp_path / "a", script(lambda pair: ("gpu-c", FP_1)), sessions=10).run_dir
    new = run(tmp_path / "b", script(alternate, slow_on="gpu-b"), sessions=20).run_dir
    data = read_run(new)
    gates = data.manifest["campaign"]["gates"]
    stats = stats_options(data.manifest["campaign"])
    recorded = evaluate_recorded(gates, data, stats)
    again = apply_baseline_run(gates, data, recorded, base, stats)
    assert again.per_host and list(again.per_set) == ["golden @ gpu-a", "golden @ gpu-b"]
    a_host, b_host = again.per_set["golden @ gpu-a"][0], again.per_set["golden @ gpu-b"][0]
    assert a_host.reason.startswith("baseline ") and b_host.reason.startswith("baseline ")
    assert a_host.state is GateState.PASS and b_host.state is GateState.FAIL
    speed = again.run[0]
    assert speed.state is GateState.FAIL and speed.reason.startswith("[golden @ gpu-b] baseline")
    assert [state for _, state, _ in speed.per_set] == ["pass", "fail"]


def test_perfmon_report_of_a_finished_run_groups_by_host_from_the_recording(
    tmp_path: Path,
) -> None:
    """Host and fingerprint are in the recording: the report is rebuilt without the cluster."""
    outcome = run(tmp_path, script(alternate, slow_on="gpu-b"), sessions=20)
    rows = [json.loads(x) for x in (outcome.run_dir / "sessions.jsonl").read_text().splitlines()]
    assert {(r["host"], r["host_fingerprint"]) for r in rows} == {("gpu-a", FP_1), ("gpu-b", FP_1)}
    first = json.loads((outcome.run_dir / "report.json").read_text())
    for name in ("report.json", "report.md", "report.html"):
        (outcome.run_dir / name).unlink()
    assert main(["report", str(outcome.run_dir)]) == 0  # written from an intact recording
    again = json.loads((outcome.run_dir / "report.json").read_text())
    assert again["gates_by_set"] == first["gates_by_set"]
    assert again["verdict"] == "fail" and again["gate_groups"] == "set and host"
