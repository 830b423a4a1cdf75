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

from perfmon.core.model import SYSTEM_SESSION, MetricKind, Sample
from perfmon.engine.sampler import (
    SystemSampler,
    process_peak_rss,
    process_tree_rss,
    system_samples,
)

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
