"""The Ray executor against a local two-node Ray cluster (started here, torn down after).

One node (the head) carries the custom resource ``canary_box`` and the label
``perfmon_host=box-a``; the other has neither, and the resource ``other_box``. Each node
declares one CPU, so a host runs one session at a time. The same contract tests run against
the local supervisor and the Ray executor. These tests need the ``ray`` extra
(``pip install 'perfmon[ray]'``) and are skipped, with that reason, without it. Starting the
cluster takes ~10-30 s on a small machine, so those tests are ``slow``; the campaign and wiring
tests need neither Ray nor a cluster. The node-death test adds a third node and removes it.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import psutil
import pytest

from perfmon.core.batch import SampleBatch
from perfmon.core.campaign import ExecutorSettings, Placement, load_campaign
from perfmon.core.model import SessionSpec, SessionStatus
from perfmon.engine.executor import (
    Executor,
    ExecutorCallbacks,
    ExecutorConfig,
    local_executor,
)
from perfmon.engine.ray_executor import (
    SUBREAPER_ENV,
    PlacementError,
    RayExecutor,
    RayExecutorError,
    feasible_nodes,
)

RAY_MISSING = "the Ray executor needs the ray extra: pip install 'perfmon[ray]'"

MB = 1024 * 1024

# One Ray cluster per worker that runs these tests (a module fixture, ~10 s to start): under
# `--dist loadgroup` they all go to one worker.
pytestmark = pytest.mark.xdist_group("ray-cluster")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    ray = pytest.importorskip("ray", reason=RAY_MISSING)
    from ray.cluster_utils import Cluster

    c = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 1,
            "resources": {"canary_box": 1},
            "labels": {"perfmon_host": "box-a"},
            "object_store_memory": 80 * MB,
            "include_dashboard": False,
            # A dead node is found by the GCS's health checks: every 1 s, 3 missed (Ray's
            # defaults, 3 s x 5, take ~15 s: docs/performance.md; the README says how to set
            # them on a real cluster).
            "_system_config": {
                "health_check_period_ms": 1000,
                "health_check_failure_threshold": 3,
            },
        },
    )
    try:
        c.add_node(num_cpus=1, object_store_memory=80 * MB, resources={"other_box": 1})
        c.wait_for_nodes()
        ray.init(address=c.address, log_to_driver=False)
        yield c
    finally:
        ray.shutdown()
        c.shutdown()


class Events:
    def __init__(self) -> None:
        self.samples: list[tuple[float, SampleBatch]] = []
        self.updates: list[tuple[float, SessionStatus]] = []
        # (metric, path): the file is created when the first batch with that metric arrives
        self.on_first_metric: tuple[str, Path] | None = None

    def _sample(self, batch: SampleBatch) -> None:
        self.samples.append((time.time(), batch))
        if self.on_first_metric is not None and self.on_first_metric[0] in batch.metrics:
            self.on_first_metric[1].touch()

    def callbacks(self) -> ExecutorCallbacks:
        return ExecutorCallbacks(
            self._sample,
            lambda r: self.updates.append((time.time(), r.status)),
        )


def spec(
    i: int, code: str, *, variant: str = "baseline", workload: str = "w", **kw: Any
) -> SessionSpec:
    return SessionSpec(
        id=i,
        workload=workload,
        variant=variant,
        set_name="golden",
        index=i,
        warmup=False,
        argv=(sys.executable, "-c", textwrap.dedent(code)),
        env=(("PYTHONPATH", os.environ.get("PYTHONPATH", "")),),
        cwd="/tmp",
        timeout_s=kw.pop("timeout_s", None),
        **kw,
    )


def config(tmp_path: Path) -> ExecutorConfig:
    return ExecutorConfig(
        log_dir=tmp_path / "logs", log_cap_bytes=4096, sample_interval_s=0.1, grace_s=1.0
    )


def make(kind: str, tmp_path: Path, events: Events, **settings: Any) -> Executor:
    if kind == "local":
        return local_executor(config(tmp_path), events.callbacks())
    return RayExecutor(
        config(tmp_path), events.callbacks(), ExecutorSettings(kind="ray", **settings)
    )


def close(ex: Executor) -> None:
    closer = getattr(ex, "close", None)
    if closer is not None:
        closer()


EMIT = """
    import os, sys, time
    from perfmon import probe
    go = sys.argv[1]
    for i in range(6):
        probe.gauge("queue_depth", i)
        probe.flush()
        if i == 0:  # wait until the daemon has seen the first value: proof it streams
            deadline = time.monotonic() + 60
            while not os.path.exists(go):
                if time.monotonic() > deadline:
                    sys.exit(3)
                time.sleep(0.02)
        time.sleep(0.25)
    print("done")
"""


# ------------------------------------------------------------------ the same contract
@pytest.mark.slow
@pytest.mark.parametrize("kind", ["local", "ray"])
@pytest.mark.slow
async def test_contract_samples_arrive_while_the_session_runs(
    kind: str, cluster: Any, tmp_path: Path
) -> None:
    ev = Events()
    go = tmp_path / "go"
    ex = make(kind, tmp_path, ev)
    ev.on_first_metric = ("queue_depth", go)  # the workload waits for this file
    s = spec(0, EMIT)
    s = replace(s, argv=(*s.argv, str(go)))
    try:
        r = await ex.run_session(s)
    finally:
        close(ex)
    # streamed: the workload went on only after the daemon had received its first value
    # (otherwise it exits 3 after 60 s), so a stream delivered at the end cannot pass
    assert r.status is SessionStatus.OK, (r.status, r.error)
    assert go.exists()
    assert ev.updates[0][1] is SessionStatus.RUNNING and ev.updates[-1][1] is SessionStatus.OK
    probe = [(t, b) for t, b in ev.samples if "queue_depth" in b.metrics]
    assert sum(len(b) for _, b in probe) == 6
    # the session's end is its worker's clock shifted by the estimated offset: exact to within
    # the estimate's stated uncertainty (seconds, when a loaded machine slows the round trip)
    u = 0.0
    if kind == "ray":  # one machine: the true offset is 0, which the estimate must admit
        u = r.extra["clock_offset_uncertainty_s"]
        assert abs(r.extra["clock_offset_s"]) <= u, (r.extra["clock_offset_s"], u)
    assert r.end_t is not None and probe[0][0] < r.end_t + u
    assert r.wall_s is not None and 1.2 < r.wall_s < 30
    assert r.cpu_s is not None and r.cpu_s > 0
    out, _ = ex.log_paths(0)
    assert out.read_text() == "done\n"
    if kind == "ray":
        assert r.host and "cores=" in r.host_fingerprint


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["local", "ray"])
@pytest.mark.slow
async def test_contract_failures_get_their_own_status(
    kind: str, cluster: Any, tmp_path: Path
) -> None:
    ev = Events()
    ex = make(kind, tmp_path, ev)
    try:
        exit3 = await ex.run_session(spec(0, "import sys; sys.exit(3)"))
        crash = await ex.run_session(
            spec(1, "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
        )
        slow = await ex.run_session(spec(2, "import time; time.sleep(60)", timeout_s=1.0))
        nocmd = await ex.run_session(
            SessionSpec(3, "w", "baseline", "golden", 3, False, ("/no/such/cmd",), (), "/tmp", None)
        )
    finally:
        close(ex)
    assert (exit3.status, exit3.exit_code) == (SessionStatus.EXIT, 3)
    assert (crash.status, crash.signal) == (SessionStatus.SIGNAL, signal.SIGSEGV)
    assert slow.status is SessionStatus.TIMEOUT
    assert nocmd.status is SessionStatus.START_FAILED


# ------------------------------------------------------------------ Ray only
def workload_pids(marker: str) -> list[int]:
    return [
        p.pid
        for p in psutil.process_iter(["cmdline"])
        if any(marker in (a or "") for a in (p.info["cmdline"] or []))
    ]


@pytest.mark.slow
async def test_kill_9_of_the_worker_gives_lost_no_retry_nothing_left(
    cluster: Any, tmp_path: Path
) -> None:
    ev = Events()
    ex = RayExecutor(config(tmp_path), ev.callbacks(), ExecutorSettings(kind="ray"))
    marker = f"perfmon-lost-{os.getpid()}"
    code = f"""
        import time  # {marker}
        open({str(tmp_path / "starts")!r}, "a").write("x")
        time.sleep(120)
    """
    task = asyncio.create_task(ex.run_session(spec(0, code)))
    deadline = time.monotonic() + 60
    starts = tmp_path / "starts"
    while not starts.exists() and time.monotonic() < deadline:  # it ran its first line
        await asyncio.sleep(0.05)
    assert workload_pids(marker), "the workload never started"
    worker = ex.worker_pids[0]
    killed = time.monotonic()
    os.kill(worker, signal.SIGKILL)
    r = await asyncio.wait_for(task, timeout=60)
    detect_s = time.monotonic() - killed
    assert r.status is SessionStatus.LOST, (r.status, r.error)
    assert detect_s < 10, detect_s
    await asyncio.sleep(1.0)  # retries would have started it again by now
    assert (tmp_path / "starts").read_text() == "x"  # never re-run
    deadline = time.monotonic() + 10
    while workload_pids(marker) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert workload_pids(marker) == [], "the workload outlived its Ray worker"


@pytest.mark.slow
async def test_placement_by_resource_and_label_and_impossible_placements(
    cluster: Any, tmp_path: Path
) -> None:
    import ray

    head = next(n["NodeID"] for n in ray.nodes() if n["Alive"] and "canary_box" in n["Resources"])
    settings = ExecutorSettings(
        kind="ray",
        placement=(
            ("canary", Placement(resources=(("canary_box", 1.0),))),
            ("labelled", Placement(labels=(("perfmon_host", "box-a"),))),
            ("gpu", Placement(num_gpus=1.0)),
            ("nolabel", Placement(labels=(("perfmon_host", "nowhere"),))),
        ),
        placement_timeout_s=20.0,
    )
    ev = Events()
    ex = RayExecutor(config(tmp_path), ev.callbacks(), settings)
    r1 = await ex.run_session(spec(0, "pass", workload="canary"))
    r2 = await ex.run_session(spec(1, "pass", workload="labelled"))
    assert r1.status is r2.status is SessionStatus.OK
    assert ex.hosts[0] == head and ex.hosts[1] == head
    for i, name in ((2, "gpu"), (3, "nolabel")):
        t0 = time.monotonic()
        with pytest.raises(PlacementError, match=name):
            await ex.run_session(spec(i, "pass", workload=name))
        assert time.monotonic() - t0 < 5  # rejected at once, not after a wait
    assert feasible_nodes(Placement(num_gpus=1.0), ray.nodes()) == []


@pytest.mark.slow
async def test_baseline_and_candidate_pair_on_one_host(cluster: Any, tmp_path: Path) -> None:
    ev = Events()
    ex = RayExecutor(config(tmp_path), ev.callbacks(), ExecutorSettings(kind="ray"))
    for i in range(6):
        r = await ex.run_session(
            spec(i, "pass", variant=("baseline", "candidate")[i % 2], params=(("n", str(i // 4)),))
        )
        assert r.status is SessionStatus.OK
    # sessions of one workload and matrix point: one host
    assert len({ex.hosts[i] for i in range(4)}) == 1
    assert len({ex.hosts[i] for i in (4, 5)}) == 1


@pytest.mark.slow
async def test_the_subreaper_setting_is_refused(
    cluster: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SUBREAPER_ENV, "true")
    ex = RayExecutor(config(tmp_path), Events().callbacks(), ExecutorSettings(kind="ray"))
    with pytest.raises(RayExecutorError, match="ECHILD"):
        await ex.run_session(spec(0, "pass"))


def test_executor_kind_ray_is_wired_into_the_runner(tmp_path: Path) -> None:
    from perfmon.engine.recorder import make_run_dir
    from perfmon.engine.runner import Runner

    path = tmp_path / "c.toml"
    path.write_text(
        textwrap.dedent(
            """
            [campaign]
            name = "fleet"
            [[workload]]
            name = "w"
            command = ["true"]
            [set.golden]
            sessions = 1
            [executor]
            kind = "ray"
            address = "auto"
            placement_timeout = "5s"
            [executor.placement.w]
            resources = { canary_box = 1 }
            labels = { perfmon_host = "box-a" }
            """
        )
    )
    campaign = load_campaign(path)
    assert campaign.executor.placement_for("w", "default") == Placement(
        resources=(("canary_box", 1.0),), labels=(("perfmon_host", "box-a"),)
    )
    runner = Runner(campaign, make_run_dir(tmp_path / "runs", "fleet", time.time()))
    ex = runner.executor_factory(config(tmp_path), Events().callbacks())
    assert isinstance(ex, RayExecutor) and ex.settings.placement_timeout_s == 5.0
    assert isinstance(ex, Executor)


@pytest.mark.slow
async def test_a_campaign_runs_on_ray_and_records_each_sessions_host(
    cluster: Any, tmp_path: Path
) -> None:
    import json

    from perfmon.engine.recorder import make_run_dir
    from perfmon.engine.runner import Runner

    path = tmp_path / "c.toml"
    path.write_text(
        textwrap.dedent(
            f"""
            [campaign]
            name = "fleet"
            sample_interval = "100ms"
            [[workload]]
            name = "w"
            command = [{sys.executable!r}, "-c", "from perfmon import probe; probe.gauge('q', 1)"]
            env = {{ PYTHONPATH = {os.environ.get("PYTHONPATH", "")!r} }}
            [variant.baseline]
            [variant.candidate]
            [set.golden]
            sessions = 2
            [[gate]]
            name = "Queue"
            expr = "max(q) < 10"
            [executor]
            kind = "ray"
            address = {cluster.address!r}
            """
        )
    )
    campaign = load_campaign(path)
    runner = Runner(campaign, make_run_dir(tmp_path / "runs", "fleet", time.time()))
    outcome = await asyncio.wait_for(runner.run(), timeout=120)
    assert outcome.exit_status == 0, runner.message
    rows = [
        json.loads(line) for line in (outcome.run_dir / "sessions.jsonl").read_text().splitlines()
    ]
    assert len(rows) == 4 and {r["status"] for r in rows} == {"ok"}
    assert all(r["host"] and "cores=" in r["host_fingerprint"] for r in rows)
    assert len({r["host"] for r in rows}) == 1
    report = (outcome.run_dir / "report.md").read_text()
    assert "## Hosts" in report and "1 distinct host fingerprint" in report


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('kind = "k8s"', "unknown executor 'k8s'"),
        ('kind = "ray"\nretries = 3', "unknown key 'retries'"),
        ('kind = "ray"\nplacement_timeout = "soon"', "placement_timeout"),
        ('kind = "ray"\n[executor.placement.nosuch]\nnum_gpus = 1', "neither a workload"),
        ('kind = "ray"\n[executor.placement.w]\nnum_gpus = -1', "num_gpus"),
        ('kind = "ray"\n[executor.placement.w]\nresources = { box = 0 }', "resources"),
        ('kind = "ray"\n[executor.placement.w]\nlabels = { host = 3 }', "labels"),
        ("[executor.placement.w]\nnum_gpus = 1", 'placement needs kind = "ray"'),
    ],
)
def test_bad_executor_tables_are_campaign_errors(tmp_path: Path, table: str, message: str) -> None:
    from perfmon.core.campaign import CampaignError

    path = tmp_path / "c.toml"
    path.write_text(
        '[campaign]\nname = "c"\n[[workload]]\nname = "w"\ncommand = ["true"]\n'
        "[set.golden]\nsessions = 1\n[executor]\n" + table + "\n"
    )
    with pytest.raises(CampaignError, match=re.escape(message)) as info:
        load_campaign(path)
    assert "executor" in str(info.value)


def test_the_local_executor_is_the_default(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        '[campaign]\nname = "c"\n[[workload]]\nname = "w"\ncommand = ["true"]\n'
        "[set.golden]\nsessions = 1\n"
    )
    campaign = load_campaign(path)
    assert campaign.executor == ExecutorSettings()
    assert campaign.executor.kind == "local"


def test_feasible_nodes_reads_total_resources_and_labels() -> None:
    nodes = [
        {"NodeID": "a", "Alive": True, "Resources": {"CPU": 1.0, "canary_box": 1.0},
         "Labels": {"perfmon_host": "box-a"}},
        {"NodeID": "b", "Alive": True, "Resources": {"CPU": 4.0, "GPU": 1.0}, "Labels": {}},
        {"NodeID": "c", "Alive": False, "Resources": {"CPU": 8.0, "GPU": 8.0}, "Labels": {}},
    ]  # fmt: skip
    assert feasible_nodes(Placement(), nodes) == ["a", "b"]
    assert feasible_nodes(Placement(resources=(("canary_box", 1.0),)), nodes) == ["a"]
    assert feasible_nodes(Placement(labels=(("perfmon_host", "box-a"),)), nodes) == ["a"]
    assert feasible_nodes(Placement(num_gpus=1.0), nodes) == ["b"]
    assert feasible_nodes(Placement(num_gpus=2.0), nodes) == []  # the dead node does not count
    assert feasible_nodes(Placement(num_cpus=2.0), nodes) == ["b"]


@pytest.mark.slow
async def test_cancel_all_ends_a_running_session_and_the_later_ones(
    cluster: Any, tmp_path: Path
) -> None:
    ev = Events()
    ex = RayExecutor(config(tmp_path), ev.callbacks(), ExecutorSettings(kind="ray"))
    marker = f"perfmon-cancel-{os.getpid()}"
    task = asyncio.create_task(ex.run_session(spec(0, f"import time  # {marker}\ntime.sleep(120)")))
    deadline = time.monotonic() + 60
    while not workload_pids(marker) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert workload_pids(marker)
    await asyncio.wait_for(ex.cancel_all(), timeout=30)
    r = await asyncio.wait_for(task, timeout=30)
    assert r.status is SessionStatus.CANCELLED
    assert (await ex.run_session(spec(1, "pass"))).status is SessionStatus.CANCELLED
    deadline = time.monotonic() + 10
    while workload_pids(marker) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert workload_pids(marker) == []


@pytest.mark.slow
async def test_sessions_on_hosts_of_different_fingerprints_are_refused(
    cluster: Any, tmp_path: Path
) -> None:
    from perfmon.engine.ray_executor import MixedHostsError

    ev = Events()
    ex = RayExecutor(
        config(tmp_path), ev.callbacks(), ExecutorSettings(kind="ray", pair_same_host=False)
    )
    assert (await ex.run_session(spec(0, "pass"))).status is SessionStatus.OK
    key = ex._pair_key(spec(0, "pass"))
    ex._fingerprints[key] = "cpu=other;cores=64"  # as if the first host were another kind
    with pytest.raises(MixedHostsError, match="allow_mixed_hosts"):
        await ex.run_session(spec(1, "pass"))
    ok = RayExecutor(
        config(tmp_path),
        ev.callbacks(),
        ExecutorSettings(kind="ray", pair_same_host=False, allow_mixed_hosts=True),
    )
    ok._fingerprints[key] = "cpu=other;cores=64"
    assert (await ok.run_session(spec(2, "pass"))).status is SessionStatus.OK


@pytest.mark.slow
def test_validate_rejects_an_impossible_placement_with_exit_2(
    cluster: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from perfmon.cli import main

    def campaign(placement: str) -> str:
        path = tmp_path / "c.toml"
        path.write_text(
            '[campaign]\nname = "c"\n[[workload]]\nname = "w"\ncommand = ["true"]\n'
            f'[set.golden]\nsessions = 1\n[executor]\nkind = "ray"\naddress = "{cluster.address}"\n'
            f"[executor.placement.w]\n{placement}\n"
        )
        return str(path)

    assert main(["validate", campaign("num_gpus = 1")]) == 2
    err = capsys.readouterr().err
    assert "no node of the cluster can run w/default" in err and "num_gpus=1" in err
    assert main(["validate", campaign("resources = { canary_box = 1 }")]) == 0
    assert "every placement has a node" in capsys.readouterr().out


def test_the_report_has_a_section_per_host_only_when_hosts_were_recorded() -> None:
    from perfmon.engine.report import hosts_lines, hosts_section

    local = [{"id": 0, "status": "ok", "wall_s": 1.0, "workload": "w", "variant": "b"}]
    assert hosts_section(local) is None and hosts_lines(None) == []
    rows: list[dict[str, Any]] = [
        {"id": i, "status": st, "wall_s": wall, "workload": "w", "variant": v, "params": {},
         "host": h, "host_fingerprint": fp}
        for i, (st, wall, v, h, fp) in enumerate([
            ("ok", 1.0, "baseline", "a", "cpu=x"),
            ("ok", 0.5, "candidate", "a", "cpu=x"),
            ("ok", 2.0, "baseline", "b", "cpu=y"),
            ("lost", None, "candidate", "b", "cpu=y"),
        ])
    ]  # fmt: skip
    section = hosts_section(rows)
    assert section is not None and section["fingerprints"] == 2
    a, b = section["hosts"]
    assert (a["host"], a["by_status"], len(a["groups"])) == ("a", {"ok": 2}, 2)
    assert b["by_status"] == {"lost": 1, "ok": 1}
    assert b["groups"][0]["wall_s"]["median"] == 2.0
    text = "\n".join(hosts_lines(section))
    assert "## Hosts" in text and "### a" in text and "`cpu=y`" in text
    assert "mix instruments" in text


@pytest.mark.slow
async def test_an_impossible_placement_stops_the_run_at_once_with_why(
    cluster: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from perfmon.engine.recorder import make_run_dir
    from perfmon.engine.runner import Runner

    path = tmp_path / "c.toml"
    path.write_text(
        '[campaign]\nname = "c"\n[[workload]]\nname = "w"\ncommand = ["true"]\n'
        f'[set.golden]\nsessions = 3\n[executor]\nkind = "ray"\naddress = "{cluster.address}"\n'
        "[executor.placement.w]\nnum_gpus = 1\n"
    )
    runner = Runner(load_campaign(path), make_run_dir(tmp_path / "runs", "c", time.time()))
    t0 = time.monotonic()
    outcome = await asyncio.wait_for(runner.run(), timeout=120)
    assert outcome.exit_status == 3
    # the runner logs why (its final message keeps only "run stopped before the end")
    assert "no node of the Ray cluster can run w/default" in caplog.text
    assert time.monotonic() - t0 < 60
    rows = (
        (outcome.run_dir / "sessions.jsonl").read_text()
        if (outcome.run_dir / "sessions.jsonl").exists()
        else ""
    )
    assert rows == ""  # nothing ran


# ------------------------------------------------------------------ several hosts at once
SLEEP = """
    import time
    time.sleep(1.5)
"""


@pytest.mark.slow
async def test_two_pinned_workloads_overlap_on_two_nodes_one_at_a_time_on_each(
    cluster: Any, tmp_path: Path
) -> None:
    import ray

    settings = ExecutorSettings(
        kind="ray",
        placement=(
            ("a", Placement(resources=(("canary_box", 1.0),))),
            ("b", Placement(resources=(("other_box", 1.0),))),
        ),
    )
    ex = RayExecutor(config(tmp_path), Events().callbacks(), settings)
    await ex.start()
    alive = [n for n in ray.nodes() if n["Alive"]]
    assert ex.concurrency == len(alive) >= 2
    specs = [
        spec(i, SLEEP, workload=w, variant=v)
        for i, (w, v) in enumerate(
            [("a", "baseline"), ("b", "baseline"), ("a", "candidate"), ("b", "candidate")]
        )
    ]
    t0 = time.monotonic()
    results = await asyncio.wait_for(
        asyncio.gather(*(ex.run_session(s) for s in specs)), timeout=120
    )
    elapsed = time.monotonic() - t0
    assert all(r.status is SessionStatus.OK for r in results), [r.error for r in results]
    a0, b0, a1, b1 = results
    assert ex.hosts[0] == ex.hosts[2] != ex.hosts[1] == ex.hosts[3]

    def overlap(x: Any, y: Any) -> bool:
        return bool(x.start_t < y.end_t and y.start_t < x.end_t)

    assert overlap(a0, b0) and overlap(a1, b1)  # two hosts side by side
    assert not overlap(a0, a1) and not overlap(b0, b1)  # one at a time on a host
    assert a0.end_t is not None and a1.start_t is not None and a0.end_t <= a1.start_t
    assert b0.end_t is not None and b1.start_t is not None and b0.end_t <= b1.start_t
    assert elapsed < 4 * 1.5  # less than the four sessions back to back
    assert not any(ex.slots.busy.values())


@pytest.mark.slow
async def test_node_death_gives_lost_within_seconds_no_retry_nothing_left(
    cluster: Any, tmp_path: Path
) -> None:
    victim = cluster.add_node(num_cpus=1, object_store_memory=80 * MB, resources={"victim": 1})
    cluster.wait_for_nodes()
    settings = ExecutorSettings(
        kind="ray", placement=(("doomed", Placement(resources=(("victim", 1.0),))),)
    )
    ex = RayExecutor(config(tmp_path), Events().callbacks(), settings)
    marker = f"perfmon-node-{os.getpid()}"
    starts = tmp_path / "starts"
    code = f"""
        import time  # {marker}
        open({str(starts)!r}, "a").write("x")
        time.sleep(120)
    """
    task = asyncio.create_task(ex.run_session(spec(0, code, workload="doomed")))
    deadline = time.monotonic() + 60
    while not starts.exists() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert workload_pids(marker), "the workload never started"
    killed = time.monotonic()
    cluster.remove_node(victim, allow_graceful=False)  # SIGKILL of the node's raylet
    r = await asyncio.wait_for(task, timeout=60)
    detect_s = time.monotonic() - killed
    assert r.status is SessionStatus.LOST, (r.status, r.error)
    assert "NodeDied" in (r.error or "") or "node" in (r.error or "").lower()
    assert detect_s < 10, detect_s
    await asyncio.sleep(1.0)
    assert starts.read_text() == "x"  # never re-run
    deadline = time.monotonic() + 15
    while workload_pids(marker) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert workload_pids(marker) == [], "the workload outlived its node"
    assert not any(ex.slots.busy.values())
