"""The scripted FakeExecutor keeps the executor contract the runner relies on."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from perfmon.core.batch import SampleBatch
from perfmon.core.model import SessionResult, SessionSpec, SessionStatus
from perfmon.engine.executor import Executor, ExecutorCallbacks, ExecutorConfig
from perfmon.engine.fake_executor import FakeClock, FakeExecutor, FakeSample, FakeSession


def spec(i: int = 0, variant: str = "baseline", timeout_s: float | None = None) -> SessionSpec:
    return SessionSpec(
        id=i,
        workload="w",
        variant=variant,
        set_name="golden",
        index=i,
        warmup=False,
        argv=("work",),
        env=(),
        cwd="/",
        timeout_s=timeout_s,
    )


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    def samples(self, batch: SampleBatch) -> None:
        self.events.append(("samples", [(s.metric, s.value, s.t) for s in batch]))

    def update(self, result: SessionResult) -> None:
        self.events.append(("update", (result.status, result.wall_s)))


def make(script, tmp_path: Path, **kw) -> tuple[FakeExecutor, Recorder]:  # type: ignore[no-untyped-def]
    rec = Recorder()
    config = ExecutorConfig(
        log_dir=tmp_path, log_cap_bytes=1000, sample_interval_s=0.5, grace_s=2.0
    )
    ex = FakeExecutor(config, ExecutorCallbacks(rec.samples, rec.update), script, **kw)
    return ex, rec


async def test_a_session_replays_its_samples_in_order_on_the_fake_clock(tmp_path: Path) -> None:
    clock = FakeClock(1000.0)
    script = FakeSession(
        wall_s=1.2,
        cpu_s=0.9,
        peak_rss_bytes=1 << 20,
        samples=(FakeSample(0.3, "q_depth", 4.0), FakeSample(0.1, "q_depth", 2.0)),
    )
    ex, rec = make(script, tmp_path, clock=clock, gap_s=0.0)
    assert isinstance(ex, Executor)
    result = await ex.run_session(spec())
    assert result.status is SessionStatus.OK and result.exit_code == 0
    assert (result.start_t, result.end_t, result.wall_s, result.cpu_s) == (1000.0, 1001.2, 1.2, 0.9)
    assert result.samples == 2 and result.peak_rss_bytes == 1 << 20
    assert clock.now() == 1001.2
    assert rec.events[0] == ("update", (SessionStatus.RUNNING, None))
    assert rec.events[-1] == ("update", (SessionStatus.OK, 1.2))
    batches = [e[1] for e in rec.events if e[0] == "samples"]
    assert batches == [
        [("q_depth", 2.0, 1000.1)],
        [("q_depth", 4.0, 1000.3)],
        [("rss_bytes", float(1 << 20), 1000.5)],
        [("rss_bytes", float(1 << 20), 1001.0)],
    ]
    assert ex.pid_of(0) is None and ex.running == []


async def test_each_failure_mode_gets_its_own_status(tmp_path: Path) -> None:
    scripts = [
        FakeSession(exit_code=3),
        FakeSession(signal=int(signal.SIGSEGV)),
        FakeSession(start_error="No such file"),
        FakeSession(wall_s=10.0, cpu_s=5.0),  # timeout 4 s
        FakeSession(hang=True, ignore_term=True),  # timeout 4 s, SIGKILL after grace
    ]
    ex, _ = make(scripts, tmp_path)
    r = [await ex.run_session(spec(i, timeout_s=4.0)) for i in range(5)]
    assert r[0].status is SessionStatus.EXIT and r[0].status_text == "exit 3"
    assert r[1].status is SessionStatus.SIGNAL and r[1].status_text == "SIGSEGV"
    assert r[2].status is SessionStatus.START_FAILED and "No such file" in r[2].error
    assert r[3].status is SessionStatus.TIMEOUT and r[3].wall_s == 4.0 and r[3].cpu_s == 2.0
    assert r[3].error == "timed out after 4 s"
    assert r[4].status is SessionStatus.TIMEOUT and r[4].wall_s == 6.0
    assert "SIGKILL after 2 s grace" in r[4].error


async def test_cancel_all_ends_the_running_session_and_refuses_later_ones(tmp_path: Path) -> None:
    ex, _ = make({"baseline": FakeSession(hang=True)}, tmp_path)
    task = asyncio.create_task(ex.run_session(spec()))
    while not ex.running:
        await asyncio.sleep(0)
    await ex.cancel_all()
    result = await task
    assert result.status is SessionStatus.CANCELLED and result.error == "cancelled"
    later = await ex.run_session(spec(1))
    assert later.status is SessionStatus.CANCELLED
    assert "before the session started" in later.error
    assert [s.id for s in ex.launched] == [0]


async def test_pace_turns_fake_seconds_into_real_ones(tmp_path: Path) -> None:
    ex, _ = make(lambda s: FakeSession(wall_s=2.0), tmp_path, pace=0.05)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    result = await ex.run_session(spec())
    assert loop.time() - t0 >= 0.09  # 2 fake seconds at 0.05 s each
    assert result.wall_s == 2.0
