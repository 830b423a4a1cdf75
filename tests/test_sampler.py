"""psutil samplers (perfmon.engine.sampler)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from perfmon.core.model import SYSTEM_SESSION, MetricKind, Sample, SessionSpec, SessionStatus
from perfmon.engine.sampler import (
    SystemSampler,
    TreeMemorySampler,
    _tree,
    process_peak_rss,
    process_tree_pss_uss,
    process_tree_rss,
    system_samples,
)
from perfmon.engine.supervisor import Supervisor

WORKLOADS = Path(__file__).parent / "workloads"


def test_process_tree_rss_counts_descendants(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    grandchild = None
    proc = subprocess.Popen([sys.executable, str(WORKLOADS / "stubborn.py"), str(pidfile)])
    try:
        while not pidfile.exists():
            assert proc.poll() is None
            time.sleep(0.02)
        _, grandchild = (int(x) for x in pidfile.read_text().split())
        own = psutil.Process(proc.pid).memory_info().rss
        # The /proc task-children walk finds the same tree as psutil's machine-wide scan.
        walked = {p.pid for p in _tree(proc.pid)}
        assert walked == {proc.pid, grandchild} | {
            p.pid for p in psutil.Process(proc.pid).children(recursive=True)
        }
        tree = process_tree_rss(proc.pid)
        assert tree > own  # the grandchild's RSS is included
        assert process_peak_rss(proc.pid) >= own // 2
    finally:
        proc.kill()
        proc.wait()
        if grandchild is not None:
            psutil.Process(grandchild).kill()


def test_process_tree_rss_of_gone_and_zombie_processes() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    while psutil.Process(proc.pid).status() != psutil.STATUS_ZOMBIE:
        time.sleep(0.01)
    assert process_tree_rss(proc.pid) == 0  # a zombie has no memory
    assert process_peak_rss(proc.pid) == 0
    proc.wait()
    assert process_tree_rss(proc.pid) == 0
    assert process_peak_rss(proc.pid) == 0


def test_process_peak_rss_of_self() -> None:
    assert process_peak_rss(os.getpid()) >= psutil.Process().memory_info().rss // 2


def test_system_samples() -> None:
    got = system_samples(123.0)
    by_name = {s.metric: s for s in got}
    assert set(by_name) == {
        "system_memory_percent",
        "system_memory_used_bytes",
        "system_cpu_percent",
    }
    for s in got:
        assert s.t == 123.0 and s.session == SYSTEM_SESSION and s.kind is MetricKind.GAUGE
    assert 0 < by_name["system_memory_percent"].value <= 100
    assert 0 < by_name["system_memory_used_bytes"].value <= psutil.virtual_memory().total
    assert 0 <= by_name["system_cpu_percent"].value <= 100


async def test_system_sampler_runs_until_stopped() -> None:
    batches: list[list[Sample]] = []
    sampler = SystemSampler(0.02, batches.append)
    task = asyncio.create_task(sampler.run())
    while len(batches) < 3:
        await asyncio.sleep(0.01)
    sampler.stop()
    await asyncio.wait_for(task, 5)
    n = len(batches)
    await asyncio.sleep(0.05)
    assert len(batches) == n  # nothing after stop
    assert all(len(b) == 3 for b in batches)


async def test_system_sampler_stopped_before_run_returns() -> None:
    sampler = SystemSampler(10.0, lambda s: None)
    sampler.stop()
    await asyncio.wait_for(sampler.run(), 5)


def test_system_sampler_rejects_bad_interval() -> None:
    with pytest.raises(ValueError):
        SystemSampler(0, lambda s: None)


_HAS_SMAPS_ROLLUP = os.path.exists("/proc/self/smaps_rollup")


@pytest.mark.skipif(not _HAS_SMAPS_ROLLUP, reason="no /proc/<pid>/smaps_rollup (PSS/USS)")
def test_tree_rss_double_counts_a_fork_pools_shared_heap_and_pss_does_not(
    tmp_path: Path,
) -> None:
    ready, release = tmp_path / "ready", tmp_path / "release"
    mib = 64
    proc = subprocess.Popen(
        [sys.executable, str(WORKLOADS / "shared_pool.py"), str(mib), str(ready), str(release)]
    )
    try:
        while not ready.exists():
            assert proc.poll() is None
            time.sleep(0.02)
        rss = process_tree_rss(proc.pid)
        mem = process_tree_pss_uss(proc.pid)
        assert mem is not None
        assert mem.processes >= 3  # the parent and its two workers (and the pool's helpers)
        heap = mib * 2**20
        # RSS counts the 64 MiB heap in the parent and in each worker: at least 3x.
        assert rss >= 3 * heap
        # PSS counts it once (split three ways), plus three small interpreters.
        assert heap <= mem.pss_bytes < 2 * heap
        assert rss >= 1.8 * mem.pss_bytes
        # USS: each process's private pages; the shared heap is nobody's.
        assert mem.uss_bytes <= mem.pss_bytes <= rss
        assert mem.uss_bytes < heap
        assert mem.cost_s > 0
    finally:
        release.touch()
        try:
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_tree_pss_uss_of_a_gone_process() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert process_tree_pss_uss(proc.pid) is None


def test_tree_memory_sampler_bounds_its_own_cost() -> None:
    now = [100.0]
    sampler = TreeMemorySampler(min_interval_s=1.0, max_cost_fraction=0.01, clock=lambda: now[0])
    assert sampler.due()  # the first read at once: short sessions get a value
    now[0] = 100.2
    sampler.schedule(0.0001)  # early and cheap: the next read after half the age (0.1 s)
    now[0] = 100.29
    assert not sampler.due()
    now[0] = 100.31
    assert sampler.due()
    now[0] = 110.0
    sampler.schedule(0.002)  # a cheap read later on: the next one a min_interval later
    now[0] = 110.9
    assert not sampler.due()
    now[0] = 111.0
    assert sampler.due()
    sampler.schedule(0.08)  # an 80 ms read (a 450 MB process): 8 s later, 1% of wall
    now[0] = 118.9
    assert not sampler.due()
    now[0] = 119.0
    assert sampler.due()
    with pytest.raises(ValueError):
        TreeMemorySampler(min_interval_s=0)
    with pytest.raises(ValueError):
        TreeMemorySampler(max_cost_fraction=1.5)


def test_tree_memory_sampler_keeps_peaks_of_a_real_process() -> None:
    sampler = TreeMemorySampler()
    mem = sampler.read(os.getpid())
    if mem is None:
        pytest.skip("no USS/PSS on this system")
    assert sampler.peak_pss_bytes == mem.pss_bytes > 0
    assert sampler.peak_uss_bytes == mem.uss_bytes > 0
    assert not sampler.due()  # the next read is scheduled
    assert sampler.reads == 1 and sampler.cost_s == mem.cost_s


@pytest.mark.slow
@pytest.mark.skipif(not _HAS_SMAPS_ROLLUP, reason="no /proc/<pid>/smaps_rollup (PSS/USS)")
async def test_a_session_reports_peak_pss_and_uss_beside_rss(tmp_path: Path) -> None:
    # 2 s: reading PSS of 100 MB costs ~20 ms here, so the 1% cost bound spaces reads ~2 s
    # apart once the memory is resident; a shorter session may only get an early reading.
    samples: list[Sample] = []
    sup = Supervisor(
        log_dir=tmp_path / "logs",
        log_cap_bytes=1_000_000,
        sample_interval_s=0.05,
        grace_s=0.3,
        on_samples=samples.extend,
        on_update=lambda r: None,
    )
    spec = SessionSpec(
        id=1,
        workload="w",
        variant="baseline",
        set_name="golden",
        index=0,
        warmup=False,
        argv=(sys.executable, "alloc.py", "100", "2.5"),
        env=(),
        cwd=str(WORKLOADS),
        timeout_s=None,
    )
    r = await sup.run_session(spec)
    assert r.status is SessionStatus.OK
    assert r.peak_pss_bytes is not None and r.peak_pss_bytes >= 90 * 2**20
    assert r.peak_uss_bytes is not None and r.peak_uss_bytes >= 90 * 2**20
    assert r.peak_rss_bytes is not None and r.peak_rss_bytes >= r.peak_pss_bytes
    # PSS/USS are session-level figures only: the live samples stay rss_bytes (and probe's).
    assert {s.metric for s in samples} == {"rss_bytes"}
