"""Sessions on several hosts at once (issue 16): the per-host slots, and the runner's
concurrent path on the fake executor's multi-host mode.

A host is a measurement instrument: at most ``sessions_per_host`` (default 1) sessions run on
it at once, granted in hand-out order, while sessions on different hosts overlap. The runner
keeps ``executor.concurrency`` sessions in flight and handles each as it finishes; pause,
stop and ``stop_when = "decided"`` must neither lose a session nor run one twice.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from perfmon.core.campaign import CampaignError, load_campaign
from perfmon.core.snapshot import RunState
from perfmon.engine.executor import HostSlots, concurrency_of
from perfmon.engine.fake_executor import FakeExecutor, FakeSample, FakeSession
from perfmon.engine.recorder import make_run_dir
from perfmon.engine.runner import EXIT_INCOMPLETE, Runner


# ------------------------------------------------------------------ HostSlots alone
async def test_slots_pin_each_key_to_the_least_loaded_host_and_keep_it() -> None:
    slots = HostSlots()
    hosts = ["a", "b"]
    assert slots.hosts_for("w1", hosts, pair=True) == ["a"]
    assert slots.hosts_for("w2", hosts, pair=True) == ["b"]  # spread: a already has a key
    assert slots.hosts_for("w1", hosts, pair=True) == ["a"]  # kept
    assert slots.hosts_for("w3", hosts, pair=True) == ["a"]  # tie on keys: first host
    assert slots.hosts_for("w1", ["b"], pair=True) == []  # its host left: none
    assert slots.hosts_for("w9", hosts, pair=False) == ["a", "b"]


async def test_slots_are_granted_per_host_in_order_and_never_twice() -> None:
    slots = HostSlots(per_host=1)
    first = await slots.acquire(1, ["a"])
    assert first == "a"
    waiting_a = asyncio.ensure_future(slots.acquire(2, ["a"]))
    waiting_a2 = asyncio.ensure_future(slots.acquire(3, ["a"]))
    other = asyncio.ensure_future(slots.acquire(4, ["b"]))
    await asyncio.sleep(0)
    assert other.done() and other.result() == "b"  # a busy host holds back no other host
    assert not waiting_a.done() and slots.waiting() == [2, 3]
    slots.release("a")
    await asyncio.sleep(0)
    assert waiting_a.done() and waiting_a.result() == "a" and not waiting_a2.done()
    assert slots.busy == {"a": 1, "b": 1}
    assert slots.withdraw(3) and await waiting_a2 is None
    assert not slots.withdraw(3)
    slots.release("a")
    slots.release("b")
    assert slots.busy == {"a": 0, "b": 0}


async def test_a_cancelled_waiter_takes_no_slot_with_it() -> None:
    slots = HostSlots(per_host=1)
    assert await slots.acquire(1, ["a"]) == "a"
    waiter = asyncio.ensure_future(slots.acquire(2, ["a"]))
    await asyncio.sleep(0)
    slots.release("a")  # granted to 2 ...
    waiter.cancel()  # ... which is cancelled before it runs again
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert slots.busy["a"] == 0 and slots.waiting() == []
    assert await slots.acquire(3, ["a"]) == "a"


async def test_slots_with_two_per_host() -> None:
    slots = HostSlots(per_host=2)
    assert [await slots.acquire(i, ["a"]) for i in range(2)] == ["a", "a"]
    third = asyncio.ensure_future(slots.acquire(2, ["a"]))
    await asyncio.sleep(0)
    assert not third.done()
    slots.withdraw_all()
    assert await third is None
    with pytest.raises(ValueError):
        HostSlots(per_host=0)


# ------------------------------------------------------------------ the runner, many hosts
def campaign_text(
    workloads: int = 2, sessions: int = 4, extra: str = "", order: str = "interleaved"
) -> str:
    parts = ['[campaign]\nname = "hosts"\nsample_interval = "50ms"\ngrace = "1s"\n']
    for w in range(workloads):
        parts.append(f'[[workload]]\nname = "w{w}"\ncommand = ["true"]\n')
    parts.append("[variant.baseline]\n[variant.candidate]\n")
    parts.append(f'[set.golden]\nsessions = {sessions}\norder = "{order}"\n{extra}\n')
    parts.append('[[gate]]\nname = "Queue"\nexpr = "max(q) < 100"\n')
    return "".join(parts)


def make(
    tmp_path: Path,
    text: str,
    *,
    hosts: tuple[str, ...] = ("h1", "h2"),
    wall_s: float = 1.0,
    pace: float = 0.02,
    script: FakeSession | None = None,
) -> tuple[Runner, list[FakeExecutor]]:
    path = tmp_path / "c.toml"
    path.write_text(text)
    campaign = load_campaign(path)
    created: list[FakeExecutor] = []
    script = script or FakeSession(wall_s=wall_s, samples=(FakeSample(0.1, "q", 1.0),))
    factory = FakeExecutor.factory(script, pace=pace, hosts=hosts, created=created)
    run_dir = make_run_dir(tmp_path / "runs", campaign.name, time.time())
    return Runner(campaign, run_dir, executor_factory=factory, sample_system=False), created


def rows(runner: Runner) -> list[dict[str, Any]]:
    path = runner.run_dir / "sessions.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def check_timeline(ex: FakeExecutor) -> dict[str, list[int]]:
    """Never two sessions at once on a host; each started and ended exactly once. Returns
    each host's sessions in start order."""
    running: dict[str, set[int]] = {}
    starts: dict[str, list[int]] = {}
    for event, sid, host in ex.timeline:
        on = running.setdefault(host, set())
        if event == "start":
            assert not on, f"session {sid} started on {host} while {on} ran there"
            on.add(sid)
            starts.setdefault(host, []).append(sid)
        else:
            on.remove(sid)
    assert not any(running.values())
    counts = Counter(sid for e, sid, _ in ex.timeline if e == "start")
    assert all(n == 1 for n in counts.values()), counts
    return starts


async def test_sessions_on_two_hosts_overlap_and_never_two_on_one_host(tmp_path: Path) -> None:
    runner, created = make(tmp_path, campaign_text(workloads=2, sessions=4))
    outcome = await asyncio.wait_for(runner.run(), timeout=60)
    assert outcome.exit_status == 0, runner.message
    ex = created[0]
    assert concurrency_of(ex) == 2
    starts = check_timeline(ex)
    assert ex.max_running[""] == 2 and ex.max_running["h1"] == ex.max_running["h2"] == 1
    recorded = rows(runner)
    assert len(recorded) == 16 and {r["status"] for r in recorded} == {"ok"}
    assert sorted(r["id"] for r in recorded) == list(range(16))  # none lost, none twice
    # each workload on one host (baseline and candidate together), the two on different hosts
    host_of: dict[str, set[str]] = {r["workload"]: set() for r in recorded}
    for r in recorded:
        host_of[r["workload"]].add(r["host"])
    assert host_of == {"w0": {"h1"}, "w1": {"h2"}}
    # on each host, sessions start in the scheduler's order: baseline/candidate interleaved
    for sids in starts.values():
        assert sids == sorted(sids)
        variants = [next(r["variant"] for r in recorded if r["id"] == s) for s in sids]
        assert variants[:4] == ["baseline", "candidate", "baseline", "candidate"]
    # overlap in the sessions' own times too
    h1 = [r for r in recorded if r["host"] == "h1"]
    h2 = [r for r in recorded if r["host"] == "h2"]
    assert any(a["start_t"] < b["end_t"] and b["start_t"] < a["end_t"] for a in h1 for b in h2)
    for side in (h1, h2):  # and never on one host
        for a, b in itertools.pairwise(side):
            assert a["end_t"] <= b["start_t"]


async def test_one_workload_on_two_hosts_runs_one_at_a_time_on_its_host(tmp_path: Path) -> None:
    runner, created = make(tmp_path, campaign_text(workloads=1, sessions=3))
    outcome = await asyncio.wait_for(runner.run(), timeout=60)
    assert outcome.exit_status == 0, runner.message
    ex = created[0]
    check_timeline(ex)
    assert ex.max_running[""] == 1  # pair_same_host: all on the first host, in turn
    assert {r["host"] for r in rows(runner)} == {"h1"}


async def test_pause_with_sessions_in_flight_withdraws_the_waiting_ones(tmp_path: Path) -> None:
    # one workload, two hosts: one session runs, the next waits for the same host
    runner, created = make(tmp_path, campaign_text(workloads=1, sessions=3), wall_s=10, pace=0.03)
    task = asyncio.create_task(runner.run())
    deadline = time.monotonic() + 30
    while not (created and created[0].running and created[0].slots.waiting()):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    ex = created[0]
    waiting = ex.slots.waiting()
    runner.handle_command("pause")
    assert runner.state == RunState.PAUSED
    assert ex.slots.waiting() == []  # withdrawn
    while ex.running:
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.5)  # paused: nothing starts
    assert ex.running == [] and len(ex.launched) == 1
    runner.handle_command("resume")
    outcome = await asyncio.wait_for(task, timeout=60)
    assert outcome.exit_status == 0, runner.message
    check_timeline(ex)
    assert [s.id for s in ex.launched][:2] == [0, waiting[0]]  # the withdrawn one ran next
    recorded = rows(runner)
    assert sorted(r["id"] for r in recorded) == list(range(6))
    assert {r["status"] for r in recorded} == {"ok"}


async def test_stop_with_sessions_in_flight_cancels_and_records_each_once(tmp_path: Path) -> None:
    runner, created = make(tmp_path, campaign_text(workloads=3, sessions=4), wall_s=100, pace=0.05)
    task = asyncio.create_task(runner.run())
    deadline = time.monotonic() + 30
    while not (created and len(created[0].running) == 2):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    ex = created[0]
    in_flight = sorted(ex.running)
    runner.handle_command("stop")
    outcome = await asyncio.wait_for(task, timeout=60)
    assert outcome.exit_status == EXIT_INCOMPLETE
    check_timeline(ex)
    assert ex.running == [] and ex.slots.waiting() == []
    recorded = {r["id"]: r for r in rows(runner)}
    assert len(recorded) == len(rows(runner))  # each recorded once
    assert sorted(recorded) == list(range(runner.scheduler.handed_out))  # none lost
    cancelled = sorted(i for i, r in recorded.items() if r["status"] == "cancelled")
    assert cancelled == in_flight  # the two in flight, ended by the stop
    assert {recorded[i]["host"] for i in in_flight} == {"h1", "h2"}
    assert {r["status"] for i, r in recorded.items() if i not in in_flight} <= {"ok"}


async def test_stop_while_a_session_waits_for_its_host(tmp_path: Path) -> None:
    runner, created = make(tmp_path, campaign_text(workloads=1, sessions=3), wall_s=100, pace=0.05)
    task = asyncio.create_task(runner.run())
    deadline = time.monotonic() + 30
    while not (created and created[0].running and created[0].slots.waiting()):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    runner.handle_command("stop")
    outcome = await asyncio.wait_for(task, timeout=60)
    assert outcome.exit_status == EXIT_INCOMPLETE
    recorded = rows(runner)
    assert sorted(r["id"] for r in recorded) == [0, 1]
    assert {r["status"] for r in recorded} == {"cancelled"}
    assert len(created[0].launched) == 1  # the waiting one never started


async def test_stop_when_decided_with_sessions_in_flight(tmp_path: Path) -> None:
    # Live gates pool the hosts; only a campaign that opts in acts on pooled figures early.
    text = campaign_text(workloads=2, sessions=200, extra='stop_when = "decided"')
    text += "[executor]\nallow_mixed_hosts = true\n"
    runner, created = make(tmp_path, text, wall_s=0.2, pace=0.05)
    handed: list[int] = []
    hand_out = runner._hand_out

    def recording_hand_out() -> Any:
        spec = hand_out()
        if spec is not None:
            handed.append(spec.id)
        return spec

    runner._hand_out = recording_hand_out  # type: ignore[method-assign]
    outcome = await asyncio.wait_for(runner.run(), timeout=120)
    assert outcome.exit_status == 0, runner.message
    assert "golden" in runner.scheduler.ended
    ex = created[0]
    check_timeline(ex)
    recorded = rows(runner)
    ids = [r["id"] for r in recorded]
    assert 0 < len(ids) < 800 and len(ids) == len(set(ids))
    # every session handed out ran to its end and was recorded (none lost in flight)
    assert sorted(ids) == sorted(handed)
    assert {r["status"] for r in recorded} == {"ok"}


async def test_stop_when_decided_on_two_hosts_decides_per_host_by_default(
    tmp_path: Path,
) -> None:
    # Without the opt-in, live gates are judged per (set, host) lane: the set ends once the
    # gate is decided on every host that ran it, and the final verdict agrees.
    text = campaign_text(workloads=2, sessions=200, extra='stop_when = "decided"')
    runner, created = make(tmp_path, text, wall_s=0.2, pace=0.05)
    outcome = await asyncio.wait_for(runner.run(), timeout=120)
    assert outcome.exit_status == 0, runner.message
    assert "golden" in runner.scheduler.ended
    check_timeline(created[0])
    recorded = rows(runner)
    assert 0 < len(recorded) < 800
    assert {r["host"] for r in recorded} == {"h1", "h2"}
    assert [g.state.value for g in runner._gates] == ["pass"]
    groups = [name for name, _, _ in runner._gates[0].per_set]
    assert groups == ["golden @ h1", "golden @ h2"]  # judged per (set, host)


async def test_an_error_in_one_session_drains_the_others(tmp_path: Path) -> None:
    def script(spec: Any) -> FakeSession:
        if spec.id == 2:  # run_session raises (as the Ray executor's PlacementError does)
            raise RuntimeError("the cluster went away")
        return FakeSession(wall_s=1.0 if spec.id == 0 else 100.0)

    path = tmp_path / "c.toml"
    path.write_text(campaign_text(workloads=2, sessions=4))
    campaign = load_campaign(path)
    created: list[FakeExecutor] = []
    factory = FakeExecutor.factory(script, pace=0.05, hosts=("h1", "h2"), created=created)
    run_dir = make_run_dir(tmp_path / "runs", campaign.name, time.time())
    runner = Runner(campaign, run_dir, executor_factory=factory, sample_system=False)
    outcome = await asyncio.wait_for(runner.run(), timeout=60)
    assert outcome.exit_status == EXIT_INCOMPLETE
    ex = created[0]
    assert ex.running == [] and ex.slots.waiting() == [] and not any(ex.slots.busy.values())
    check_timeline(ex)
    assert {r["id"]: r["status"] for r in rows(runner)} == {0: "ok", 1: "cancelled"}


# ------------------------------------------------------------------ the campaign key
CAMP = textwrap.dedent(
    """
    [campaign]
    name = "c"
    [[workload]]
    name = "w"
    command = ["true"]
    [set.golden]
    sessions = 1
    [executor]
    """
)


def test_sessions_per_host_is_parsed(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(CAMP + 'kind = "ray"\nsessions_per_host = 2\n')
    assert load_campaign(path).executor.sessions_per_host == 2
    path.write_text(CAMP + 'kind = "ray"\n')
    assert load_campaign(path).executor.sessions_per_host == 1


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('kind = "ray"\nsessions_per_host = 0', "must be >= 1"),
        ('kind = "ray"\nsessions_per_host = "two"', "expected an integer"),
        ('kind = "ray"\nsessions_per_host = true', "expected an integer"),
        ('kind = "ray"\nsessions_per_host = 1.5', "expected an integer"),
        ("sessions_per_host = 2", 'needs kind = "ray"'),
    ],
)
def test_bad_sessions_per_host_is_a_campaign_error(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(CAMP + line + "\n")
    with pytest.raises(CampaignError, match=message) as info:
        load_campaign(path)
    text = str(info.value)
    assert "sessions_per_host" in text and "c.toml" in text
