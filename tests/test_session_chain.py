"""The runner queues its next session behind the running one (issue 13: launch gap < 5 ms).

``SessionChain`` on a small scripted executor that keeps the keeper's ``after=`` semantics
(pure, no processes): sessions never overlap, a pause withdraws the queued one and it runs
first on resume, a stop cancels it, a noise guard that repeats sessions turns chaining off.
One test runs the real ``Runner`` with the local keeper over short real sessions: what only
real processes show is that the keeper starts the queued session itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from perfmon.core.campaign import load_campaign
from perfmon.core.model import SessionResult, SessionSpec, SessionStatus
from perfmon.engine.executor import ExecutorCallbacks, ExecutorConfig, SessionChain
from perfmon.engine.recorder import make_run_dir
from perfmon.engine.runner import Runner


class ChainingExecutor:
    """Runs each session for ``wall_s`` of real (short) time, one at a time, with the keeper's
    queue: a session asked with ``after=X`` while X is not over starts when X ends; ``withdraw``
    drops it unless it has started; ``cancel_all`` ends everything."""

    chains_sessions = True

    def __init__(self, config: ExecutorConfig, callbacks: ExecutorCallbacks, wall_s: float) -> None:
        self.callbacks = callbacks
        self.wall_s = wall_s
        self.log: list[tuple[str, int, float]] = []  # (event, session, monotonic time)
        self.asked_after: list[tuple[int, int | None]] = []
        self._ended: dict[int, asyncio.Event] = {}
        self._withdrawn: set[int] = set()
        self._cancelled = False
        self._live: set[int] = set()

    async def start(self) -> str:
        return "none (test)"

    def close(self) -> None:
        pass

    def pid_of(self, session_id: int) -> int | None:
        return None

    @property
    def running(self) -> list[int]:
        return sorted(self._live)

    def log_paths(self, session_id: int) -> tuple[Path, Path]:
        return Path("/dev/null"), Path("/dev/null")

    def withdraw(self, session_id: int) -> bool:
        if session_id in self._live or session_id not in self._ended:
            return False
        self._withdrawn.add(session_id)
        return True

    async def cancel_all(self) -> None:
        self._cancelled = True
        for ev in self._ended.values():
            ev.set()

    async def run_session(self, spec: SessionSpec, *, after: int | None = None) -> SessionResult:
        result = SessionResult(spec=spec)
        self.asked_after.append((spec.id, after))
        self._ended[spec.id] = asyncio.Event()
        if after is not None and after in self._ended:
            await self._ended[after].wait()
        if self._cancelled or spec.id in self._withdrawn:
            if self._cancelled:
                result.status = SessionStatus.CANCELLED
                self.callbacks.on_update(result)
            else:
                self._withdrawn.discard(spec.id)
                result.error = "withdrawn before start"
            self._ended[spec.id].set()
            return result
        assert not self._live, f"session {spec.id} started while {self._live} ran"
        self._live.add(spec.id)
        self.log.append(("start", spec.id, time.monotonic()))
        result.status = SessionStatus.RUNNING
        result.start_t = time.time()
        self.callbacks.on_update(result)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._stop_wait(spec.id)), self.wall_s)
        self._live.discard(spec.id)
        self.log.append(("end", spec.id, time.monotonic()))
        result.end_t = time.time()
        result.wall_s = self.wall_s
        result.cpu_s = 0.0
        result.exit_code = 0
        result.status = SessionStatus.CANCELLED if self._cancelled else SessionStatus.OK
        self._ended[spec.id].set()
        self.callbacks.on_update(result)
        return result

    async def _stop_wait(self, sid: int) -> None:
        while not self._cancelled:
            await asyncio.sleep(0.005)


def campaign_file(
    tmp_path: Path, sessions: int, extra: str = "", command: str = '["true"]'
) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(
        textwrap.dedent(
            f"""
            [campaign]
            name = "chain"
            sample_interval = "250ms"
            grace = "1s"
            {extra}
            [[workload]]
            name = "w"
            command = {command}
            [variant.baseline]
            [variant.candidate]
            [set.golden]
            sessions = {sessions}
            order = "interleaved"
            """
        )
    )
    return path


def make(
    tmp_path: Path, sessions: int, wall_s: float = 0.05, extra: str = ""
) -> tuple[Runner, list[ChainingExecutor]]:
    campaign = load_campaign(campaign_file(tmp_path, sessions, extra))
    run_dir = make_run_dir(tmp_path / "runs", campaign.name, time.time())
    created: list[ChainingExecutor] = []

    def factory(config: ExecutorConfig, callbacks: ExecutorCallbacks) -> Any:
        created.append(ChainingExecutor(config, callbacks, wall_s))
        return created[-1]

    return Runner(campaign, run_dir, executor_factory=factory, sample_system=False), created


def rows(runner: Runner) -> list[dict[str, Any]]:
    text = (runner.run_dir / "sessions.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines()]


def assert_sequential(ex: ChainingExecutor) -> None:
    """Every session ended before the next started, each exactly once."""
    events = [(e, s) for e, s, _ in ex.log]
    for i in range(0, len(events), 2):
        assert events[i][0] == "start" and events[i + 1] == ("end", events[i][1])


async def test_each_session_is_queued_behind_the_one_running(tmp_path: Path) -> None:
    runner, created = make(tmp_path, sessions=4)
    outcome = await asyncio.wait_for(runner.run(), 60)
    ex = created[0]
    assert outcome.exit_status == 0
    assert [r["status"] for r in rows(runner)] == ["ok"] * 8
    assert [r["spec"]["id"] if "spec" in r else r["id"] for r in rows(runner)] == list(range(8))
    assert_sequential(ex)
    # the first is launched alone; each later one is asked for behind its predecessor
    assert ex.asked_after == [(0, None)] + [(i, i - 1) for i in range(1, 8)]


async def test_a_noise_guard_that_repeats_sessions_turns_chaining_off(tmp_path: Path) -> None:
    runner, created = make(tmp_path, sessions=2, extra='on_noisy = "repeat"')
    await asyncio.wait_for(runner.run(), 60)
    assert all(after is None for _, after in created[0].asked_after)


async def test_pause_withdraws_the_queued_session_and_resume_runs_it_first(tmp_path: Path) -> None:
    runner, created = make(tmp_path, sessions=2, wall_s=0.4)
    task = asyncio.create_task(runner.run())
    while not created or not created[0].log:
        await asyncio.sleep(0.005)
    ex = created[0]
    while len(ex.asked_after) < 2:  # session 1 queued behind session 0
        await asyncio.sleep(0.005)
    runner.handle_command("pause")
    await asyncio.sleep(0.8)  # session 0 ends; nothing else starts while paused
    assert [s for e, s, _ in ex.log if e == "start"] == [0]
    runner.handle_command("resume")
    outcome = await asyncio.wait_for(task, 60)
    assert outcome.exit_status == 0
    assert_sequential(ex)
    assert [s for e, s, _ in ex.log if e == "start"] == [0, 1, 2, 3]  # the same session 1
    assert [r["status"] for r in rows(runner)] == ["ok"] * 4
    assert runner._chain is not None and runner._chain.withdrawn == 1


async def test_stop_cancels_the_queued_session_and_records_it(tmp_path: Path) -> None:
    runner, created = make(tmp_path, sessions=3, wall_s=5.0)
    task = asyncio.create_task(runner.run())
    while not created or len(created[0].asked_after) < 2:
        await asyncio.sleep(0.005)
    runner.handle_command("stop")
    await asyncio.wait_for(task, 60)
    statuses = [r["status"] for r in rows(runner)]
    assert statuses == ["cancelled", "cancelled"]  # the running one and the queued one
    assert [s for e, s, _ in created[0].log if e == "start"] == [0]


async def test_an_executor_without_after_runs_sessions_one_by_one(tmp_path: Path) -> None:
    """The fake and Ray executors take no ``after=``: ``SessionChain`` stays out of the way."""

    class Plain:
        async def run_session(self, spec: SessionSpec) -> SessionResult:
            return SessionResult(spec=spec, status=SessionStatus.OK)

    chain = SessionChain(Plain())  # type: ignore[arg-type]
    assert not chain.enabled
    spec = SessionSpec(
        id=0,
        workload="w",
        variant="v",
        set_name="s",
        index=0,
        warmup=False,
        argv=("true",),
        env=(),
        cwd="/tmp",
        timeout_s=None,
    )
    task = chain.launch(spec)
    assert not await chain.queue_next(spec, task, lambda: spec, lambda s: True)
    assert (await task).status is SessionStatus.OK
    assert chain.take() is None and not chain.withdraw()


@pytest.mark.slow
async def test_the_keeper_starts_the_runners_queued_sessions(tmp_path: Path) -> None:
    """Real sessions through the local keeper: sequential, all ok, and chained, even when a
    session (``true``) ends before the daemon hears of its start."""
    path = campaign_file(tmp_path, 10, command='["true"]')
    campaign = load_campaign(path)
    run_dir = make_run_dir(tmp_path / "runs", campaign.name, time.time())
    runner = Runner(campaign, run_dir, sample_system=False)
    outcome = await asyncio.wait_for(runner.run(), 120)
    assert outcome.exit_status == 0
    got = rows(runner)
    assert [r["status"] for r in got] == ["ok"] * 20
    for prev, nxt in itertools.pairwise(got):
        assert nxt["start_t"] >= prev["end_t"]
    assert runner._chain is not None and runner._chain.chained >= 1
