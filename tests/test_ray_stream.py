"""The session stream from a remote host (issue 16, point 1): raw probe bytes decoded on the
daemon, the worker's clock offset applied to its times, py-spy on the session's host.

The pure parts (the offset estimate and its bound, the batching of probe reads, the
supervisor's raw hand-off) run everywhere; the rest runs on the two-node local Ray cluster of
``tests/test_ray_executor.py`` (``slow``, skipped without the ``ray`` extra), the profiles also
skip where py-spy may not attach (no ptrace permission), as ``tests/test_profiler.py`` does.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import random
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

import test_ray_executor
from perfmon.core.campaign import ExecutorSettings, load_campaign
from perfmon.core.model import SessionSpec, SessionStatus
from perfmon.core.protocol import Decoder
from perfmon.engine.executor import local_executor
from perfmon.engine.profiler import Profiler, ProfileRequest, find_py_spy, load_stacks
from perfmon.engine.ray_executor import (
    PROBE_CHUNK_BYTES,
    RayExecutor,
    _coalesce,
    _drain_queue,
    estimate_offset,
)
from perfmon.engine.supervisor import Supervisor
from test_ray_executor import Events, config, spec

WORKLOADS = Path(__file__).parent / "workloads"

cluster = test_ray_executor.cluster  # the two-node cluster fixture, shared with that module


# ------------------------------------------------------------------ the clock offset
def test_the_offset_is_ntps_midpoint_of_the_shortest_round_trip() -> None:
    # RFC 5905 section 8 with T2 = T3: offset = T2 - (T1 + T4) / 2, delay = T4 - T1
    got = estimate_offset([(10.0, 15.0, 10.4), (20.0, 25.05, 20.1), (30.0, 35.3, 30.6)], "agent")
    assert got.offset_s == pytest.approx(25.05 - 20.05)
    assert got.uncertainty_s == pytest.approx(0.05)
    assert got.measured_t == 20.1 and got.source == "agent"
    assert got.to_daemon(25.05) == pytest.approx(20.05)
    with pytest.raises(ValueError, match="no clock exchange"):
        estimate_offset([], "agent")
    with pytest.raises(ValueError, match="before it was sent"):
        estimate_offset([(2.0, 0.0, 1.0)], "agent")


def test_the_true_offset_lies_within_the_uncertainty_whatever_the_delays() -> None:
    """The bound holds for any split of the round trip between the two directions (the
    remote reads its clock between send and receipt): random, very asymmetric delays."""
    rng = random.Random(16)
    for _ in range(2000):
        true = rng.uniform(-1000, 1000)
        exchanges = []
        t = rng.uniform(0, 1e9)
        for _ in range(rng.randint(1, 6)):
            out, back = rng.expovariate(1 / 0.002), rng.expovariate(1 / 0.02)
            exchanges.append((t, t + out + true, t + out + back))
            t += 1.0
        got = estimate_offset(exchanges, "agent")
        assert abs(got.offset_s - true) <= got.uncertainty_s + 1e-6


# ------------------------------------------------------------------ batching on the worker
def test_queued_probe_reads_go_out_together_in_order_with_their_receipt_times() -> None:
    q: queue.Queue[tuple[Any, ...]] = queue.Queue()
    first = ("probe", 1.0, b"a 1\n")
    for item in [
        ("probe", 1.1, b"b 2\n"),
        ("samples", "rss"),
        ("probe", 1.2, b"c 3"),
        ("probe", 1.3, None),
        ("update", "r", 7),
    ]:
        q.put(item)
    items = _drain_queue(q, first)
    assert list(_coalesce(items)) == [
        ("probe", [(1.0, b"a 1\n"), (1.1, b"b 2\n")]),
        ("samples", "rss"),
        ("probe", [(1.2, b"c 3"), (1.3, None)]),
        ("update", "r", 7),
    ]


def test_a_stream_item_carries_at_most_the_chunk_size_of_probe_bytes() -> None:
    q: queue.Queue[tuple[Any, ...]] = queue.Queue()
    piece = b"x 1\n" * (PROBE_CHUNK_BYTES // 10)  # 0.4 of the limit
    for i in range(10):
        q.put(("probe", float(i + 1), piece))
    items = _drain_queue(q, ("probe", 0.0, piece))
    assert len(items) == 3  # stops draining once a chunk's worth is taken
    out = list(_coalesce(items + [("probe", 9.0, piece)] * 4))
    sizes = [sum(len(d or b"") for _, d in item[1]) for item in out]
    assert all(s <= PROBE_CHUNK_BYTES for s in sizes) and sum(sizes) == 7 * len(piece)
    big = b"y" * (PROBE_CHUNK_BYTES + 10)  # one read larger than the limit stays whole
    assert list(_coalesce([("probe", 1.0, big)])) == [("probe", [(1.0, big)])]


# ------------------------------------------------------------------ raw bytes, one decoder
def _spec(argv: list[str], sid: int = 1) -> SessionSpec:
    return SessionSpec(
        id=sid,
        workload="w",
        variant="baseline",
        set_name="golden",
        index=0,
        warmup=False,
        argv=tuple(argv),
        env=(),
        cwd=str(WORKLOADS),
        timeout_s=None,
    )


async def test_raw_probe_bytes_decode_as_the_supervisor_decodes_them(tmp_path: Path) -> None:
    """``on_probe_bytes`` hands on every read undecoded, then the end of the channel; fed to
    one ``Decoder`` with their receipt times they give what the decoding supervisor gave."""
    decoded: list[Any] = []
    raw: list[tuple[int, float, bytes | None]] = []

    def sup(**kw: Any) -> Supervisor:
        return Supervisor(
            log_dir=tmp_path / "logs",
            log_cap_bytes=1 << 20,
            sample_interval_s=0.05,
            grace_s=0.3,
            on_update=lambda r: None,
            **kw,
        )

    local = sup(on_samples=decoded.append)
    forwarding = sup(
        on_samples=lambda b: None, on_probe_bytes=lambda sid, t, d: raw.append((sid, t, d))
    )
    try:
        want = await local.run_session(_spec([sys.executable, "probe_lines.py"]))
        got = await forwarding.run_session(_spec([sys.executable, "probe_lines.py"], sid=2))
    finally:
        local.close()
        forwarding.close()
    assert got.status is SessionStatus.OK and (got.samples, got.malformed) == (0, 0)
    assert raw[-1][2] is None and all(d is not None for _, _, d in raw[:-1])
    assert {sid for sid, _, _ in raw} == {2}
    dec = Decoder(1)
    again = [dec.feed_batch(d, t) if d is not None else dec.close_batch(t) for _, t, d in raw]
    rows = [(s.metric, s.value, s.kind) for b in again for s in b]
    local_rows = [
        (s.metric, s.value, s.kind) for b in decoded for s in b if s.metric != "rss_bytes"
    ]
    assert rows == local_rows and len(rows) == want.samples == 5
    assert dec.malformed == want.malformed == 4


# ------------------------------------------------------------------ on the cluster
TORN = """
    import os, time
    fd = int(os.environ["PERFMON_FD"])
    w = lambda b: (os.write(fd, b), time.sleep(0.15))
    w(b"# PERFMON 1\\n# TYPE done_total counter\\nqueue_depth 1\\nqueue_de")  # a torn line
    w(b"pth 2\\nbad-name 3\\nqueue_depth NaN\\n")                           # 2 malformed
    w(b"stamped_seconds 0.5 %r\\n" % time.time())                         # its own time
    w(b"x" * 5000)                                                          # over-long, torn
    w(b" 1\\ndone_total 1\\nqueue_depth 3")                                  # no final newline
"""


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["local", "ray"])
async def test_torn_and_damaged_probe_bytes_are_decoded_alike(
    kind: str, cluster: Any, tmp_path: Path
) -> None:
    ev = Events()
    if kind == "local":
        ex: Any = local_executor(config(tmp_path), ev.callbacks())
    else:
        ex = RayExecutor(config(tmp_path), ev.callbacks(), ExecutorSettings(kind="ray"))
    try:
        r = await ex.run_session(spec(0, TORN))
    finally:
        ex.close()
    assert r.status is SessionStatus.OK, r.error
    rows = [(s.metric, s.value) for _, b in ev.samples for s in b if s.metric != "rss_bytes"]
    assert rows == [
        ("queue_depth", 1.0),
        ("queue_depth", 2.0),
        ("stamped_seconds", 0.5),
        ("done_total", 1.0),
        ("queue_depth", 3.0),
    ]
    assert (r.samples, r.malformed) == (5, 3)


SKEW_S = 1000.0  # the daemon's clock runs this far ahead of the workers' in the next test


@pytest.mark.slow
async def test_worker_times_land_on_the_daemons_clock(cluster: Any, tmp_path: Path) -> None:
    """With the daemon's clock 1000 s ahead of the workers' (an injected skew), every time
    that comes from the worker -- start, end, probe receipt stamps, a workload's own sample
    timestamp, RSS samples -- lands on the daemon's axis, and the session records the offset
    and its uncertainty; durations are unchanged."""
    ev = Events()

    def daemon_clock() -> float:
        return time.time() + SKEW_S

    ex = RayExecutor(
        config(tmp_path), ev.callbacks(), ExecutorSettings(kind="ray"), clock=daemon_clock
    )
    code = """
        import os, time
        from perfmon import probe
        fd = int(os.environ["PERFMON_FD"])
        for i in range(4):
            probe.gauge("queue_depth", i)
            probe.flush()
            os.write(fd, b"stamped_seconds %d %r\\n" % (i, time.time()))
            time.sleep(0.2)
    """
    try:
        await ex.start()
        before = daemon_clock()
        r = await ex.run_session(spec(0, code))
        after = daemon_clock()
    finally:
        ex.close()
    assert r.status is SessionStatus.OK, r.error
    offset, u = r.extra["clock_offset_s"], r.extra["clock_offset_uncertainty_s"]
    assert abs(offset + SKEW_S) <= u + 1e-6 and u < 0.5, (offset, u)
    assert r.start_t is not None and r.end_t is not None and r.wall_s is not None
    assert before - u <= r.start_t < r.end_t <= after + u
    assert r.end_t - r.start_t == pytest.approx(r.wall_s, abs=0.05)
    times = {
        name: [s.t for _, b in ev.samples for s in b if s.metric == name]
        for name in ("queue_depth", "stamped_seconds", "rss_bytes")
    }
    assert len(times["queue_depth"]) == len(times["stamped_seconds"]) == 4 and times["rss_bytes"]
    for name, ts in times.items():
        assert all(r.start_t - u <= t <= r.end_t + u + 0.5 for t in ts), (name, ts, r.start_t)


CPU_WORK = """
    import time
    def slow_path(n):
        return sum(i * i for i in range(n))
    end = time.monotonic() + {seconds}
    while time.monotonic() < end:
        slow_path(2000)
"""


@pytest.mark.slow
@pytest.mark.skipif(find_py_spy() is None, reason="py-spy is not installed")
async def test_profile_runs_py_spy_on_the_sessions_host(cluster: Any, tmp_path: Path) -> None:
    """``profile_remote`` gives the session's pid on its node and a way to run py-spy there;
    the stacks come back and are recorded like a local profile's, perfmon's frames left out."""
    ev = Events()
    ex = RayExecutor(config(tmp_path), ev.callbacks(), ExecutorSettings(kind="ray"))
    stop = tmp_path / "stop"
    # the session runs until the profile is back (a cold agent starts in ~1 s idle, ~12 s on a
    # loaded machine: a fixed-length session could end while sampled, a "partial" profile)
    work = f"""
        import os, time
        def slow_path(n):
            return sum(i * i for i in range(n))
        end = time.monotonic() + 60
        while not os.path.exists({str(stop)!r}) and time.monotonic() < end:
            slow_path(2000)
    """
    try:
        await ex.start()
        task = asyncio.create_task(ex.run_session(spec(0, work)))
        deadline = time.monotonic() + 60
        while 0 not in ex.session_pids and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        target = ex.profile_remote(0)
        assert target is not None, "the session's pid never came back"
        pid, remote, host = target
        assert ex.pid_of(0) is None  # not a local process: py-spy must not run here
        rec = await Profiler(tmp_path / "run").profile(
            ProfileRequest(0, pid, 1.0, "test", remote=remote, host=host)
        )
        stop.touch()
        r = await task
    finally:
        ex.close()
    assert r.status is SessionStatus.OK, r.error
    if "not allowed to attach" in rec.message:
        pytest.skip(rec.message)
    assert rec.status == "ok", rec.message
    assert rec.samples > 10 and f"on {host}" in rec.message
    stacks = load_stacks(tmp_path / "run", rec.name)
    assert "slow_path" in stacks
    assert "perfmon" not in stacks and "/ray/" not in stacks  # neither keeper nor worker
    assert ex.profile_remote(0) is None  # ended: nothing to profile
    assert ex._agents == {}  # the agent lived for the profile only


def _profile_campaign(
    tmp_path: Path, cluster: Any, work: Path, *, sessions: int, every: int, duration: str
) -> Path:
    """A campaign file: ``sessions`` of ``work`` on the test cluster, ``[profile] every``."""
    path = tmp_path / "c.toml"
    path.write_text(
        textwrap.dedent(
            f"""
            [campaign]
            name = "fleet-profile-every-{every}"
            sample_interval = "100ms"
            [[workload]]
            name = "w"
            command = [{sys.executable!r}, {str(work)!r}]
            env = {{ PYTHONPATH = {os.environ.get("PYTHONPATH", "")!r} }}
            [variant.baseline]
            [set.golden]
            sessions = {sessions}
            [profile]
            every = {every}
            duration = "{duration}"
            [executor]
            kind = "ray"
            address = {cluster.address!r}
            """
        )
    )
    return path


@pytest.mark.slow
@pytest.mark.skipif(find_py_spy() is None, reason="py-spy is not installed")
async def test_a_campaign_on_ray_profiles_its_sessions_on_their_hosts(
    cluster: Any, tmp_path: Path
) -> None:
    """``[profile] every = 1`` on the Ray executor: each session is profiled on its host and
    recorded in ``profiles/`` (index and collapsed stacks) as a local run records it; the
    sessions record their clock offset and its uncertainty."""
    from perfmon.engine.profiler import load_index
    from perfmon.engine.recorder import make_run_dir
    from perfmon.engine.runner import Runner

    # Each session runs until its profile is recorded (or 60 s): on a loaded machine a Ray
    # actor and py-spy start slowly, and a fixed-length session could end first.
    work = tmp_path / "work.py"
    work.write_text(
        textwrap.dedent(
            f"""
            import os, time
            def slow_path(n):
                return sum(i * i for i in range(n))
            go = os.path.join({str(tmp_path)!r}, "profiled-" + os.environ["PERFMON_SESSION"])
            end = time.monotonic() + 60
            while not os.path.exists(go) and time.monotonic() < end:
                slow_path(2000)
            """
        )
    )

    async def tell_profiled() -> None:
        while True:
            for rec in load_index(run_dir):
                (tmp_path / f"profiled-{rec.session}").touch()
            await asyncio.sleep(0.1)

    path = _profile_campaign(tmp_path, cluster, work, sessions=2, every=1, duration="1s")
    run_dir = make_run_dir(tmp_path / "runs", "fp", time.time())
    runner = Runner(load_campaign(path), run_dir)
    watcher = asyncio.create_task(tell_profiled())
    try:
        outcome = await asyncio.wait_for(runner.run(), timeout=180)
    finally:
        watcher.cancel()
    rows = [
        json.loads(line) for line in (outcome.run_dir / "sessions.jsonl").read_text().splitlines()
    ]
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert all(r["wall_s"] < 50 for r in rows), rows  # each ended on its profile's record
    assert all("clock_offset_uncertainty_s" in r["extra"] for r in rows)
    records = load_index(outcome.run_dir)
    assert len(records) == 2, records
    if any("not allowed to attach" in rec.message for rec in records):
        pytest.skip(records[0].message)
    assert all(rec.status in ("ok", "partial") for rec in records), [
        (rec.status, rec.message) for rec in records
    ]
    assert {rec.session for rec in records} == {r["id"] for r in rows}
    assert all("slow_path" in load_stacks(outcome.run_dir, rec.name) for rec in records)


@pytest.mark.slow
@pytest.mark.skipif(find_py_spy() is None, reason="py-spy is not installed")
async def test_a_profiling_agent_never_idles_through_a_session_that_is_not_profiled(
    cluster: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``[profile] every = 2``: py-spy's agent is made ready for the profiled sessions (kept
    from ``start`` or the previous session) but ended before each session that is not
    profiled gets its node, so those sessions share their host with no idle actor."""
    from perfmon.engine.profiler import load_index
    from perfmon.engine.recorder import make_run_dir
    from perfmon.engine.runner import Runner

    alive: list[tuple[str, float, float]] = []  # (node, agent started, ended), Unix seconds
    born: dict[str, float] = {}
    take, give = RayExecutor._take_agent, RayExecutor._give_agent

    def taking(self: RayExecutor, node: str) -> Any:
        if node not in self._agents:
            born[node] = time.time()
        return take(self, node)

    def giving(self: RayExecutor, node: str) -> None:
        give(self, node)
        if node not in self._agents and node in born:
            alive.append((node, born.pop(node), time.time()))

    monkeypatch.setattr(RayExecutor, "_take_agent", taking)
    monkeypatch.setattr(RayExecutor, "_give_agent", giving)
    work = tmp_path / "work.py"
    work.write_text(textwrap.dedent(CPU_WORK.format(seconds=2)))
    path = _profile_campaign(tmp_path, cluster, work, sessions=4, every=2, duration="500ms")
    runner = Runner(load_campaign(path), make_run_dir(tmp_path / "runs", "fp", time.time()))
    outcome = await asyncio.wait_for(runner.run(), timeout=120)
    now = time.time()
    alive.extend((node, t, now) for node, t in born.items())  # those close() ended
    rows = [
        json.loads(line) for line in (outcome.run_dir / "sessions.jsonl").read_text().splitlines()
    ]
    assert [r["status"] for r in rows] == ["ok"] * 4
    profiled = {rec.session for rec in load_index(outcome.run_dir)}
    assert profiled == {rows[1]["id"], rows[3]["id"]}
    hosts = runner._supervisor.hosts  # type: ignore[union-attr]
    for r in rows:
        if r["id"] in profiled:
            continue
        node = hosts[r["id"]]
        # the session's times are its worker's, shifted by the node's estimated clock offset:
        # exact to within the estimate's uncertainty
        u = r["extra"]["clock_offset_uncertainty_s"]
        start, end = r["start_t"] + u, r["end_t"] - u
        overlap = [a for a in alive if a[0] == node and a[1] < end and a[2] > start]
        assert not overlap, (r["id"], r["start_t"], r["end_t"], u, alive)
