"""What judging gates per host (issue 16) costs the session path, as ratios in one run.

Two pieces of the per-host work run on the runner's event loop, the path that launches, reaps
and times sessions:

- ``Runner._on_update`` notes each session's host and fingerprint (a dict and a set insert)
  on every update of a session (its start, samples' progress, its end);
- ``Runner._observe_gates`` marks the live gates ``pending`` while sessions of several hosts
  are pooled in the live state (one ``dataclasses.replace`` per gate per snapshot, 4 Hz).

This bench times ``_on_update`` for a session with a host against the same call for a local
session (no host), and ``_observe_gates`` with two hosts seen against none, each as the median
of interleaved repetitions of N calls, on a ``Runner`` built over the fake executor (no
processes, nothing else running). The per-host evaluation itself runs when the run ends
(``perfmon.engine.recorded.evaluate_recorded``, in the report's thread): after the last
session, never beside one.

Usage: ``PYTHONPATH=src .venv/bin/python bench/hosts.py [--calls N] [--reps R]``.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

from perfmon.core.campaign import load_campaign
from perfmon.core.model import SessionResult, SessionSpec, SessionStatus
from perfmon.engine.fake_executor import FakeExecutor, FakeSession
from perfmon.engine.recorder import make_run_dir
from perfmon.engine.runner import Runner

CAMPAIGN = """
[campaign]
name = "hosts-bench"
[[workload]]
name = "kernel"
command = ["kernel"]
[variant.baseline]
[variant.candidate]
[set.golden]
sessions = 5
[[gate]]
name = "Speed"
expr = "speedup(session_seconds, baseline, candidate) >= 1.2"
[[gate]]
name = "Queue"
expr = "max(event_queue_depth) < 100"
[[gate]]
name = "RSS"
expr = "p95(rss_bytes) < 1GB"
[[gate]]
name = "CPU"
expr = "mean(session_cpu_seconds) < 10"
"""


def _runner(tmp: Path) -> Runner:
    path = tmp / "c.toml"
    path.write_text(textwrap.dedent(CAMPAIGN))
    campaign = load_campaign(path)
    run_dir = make_run_dir(tmp / "runs", campaign.name, time.time())
    factory = FakeExecutor.factory(FakeSession())
    return Runner(campaign, run_dir, executor_factory=factory, sample_system=False)


def _time(fn: Callable[[], None], calls: int) -> float:
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls


def main() -> None:
    """Print the figures (ns per call, and the ratios)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=20_000)
    ap.add_argument("--reps", type=int, default=10)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runner = _runner(Path(tmp))
        spec = SessionSpec(
            id=1,
            workload="kernel",
            variant="baseline",
            set_name="golden",
            index=0,
            warmup=False,
            argv=("kernel",),
            env=(),
            cwd="/",
            timeout_s=None,
        )
        runner.live.add_session(spec)
        local = SessionResult(spec=spec, status=SessionStatus.RUNNING, start_t=time.time())
        remote = SessionResult(
            spec=spec,
            status=SessionStatus.RUNNING,
            start_t=time.time(),
            host="gpu-a",
            host_fingerprint="cpu=Xeon;cores=2;mem=16GiB;kernel=6.8;gpu=",
        )
        upd: dict[str, list[float]] = {"local": [], "host": []}
        obs: dict[str, list[float]] = {"one host": [], "two hosts": []}
        for rep in range(args.reps):
            order = ("local", "host") if rep % 2 == 0 else ("host", "local")
            for which in order:
                result = local if which == "local" else remote
                upd[which].append(_time(functools.partial(runner._on_update, result), args.calls))
            runner._hosts.clear()
            obs["one host"].append(_time(runner._observe_gates, args.calls // 10))
            runner._hosts.update({"gpu-a": {"x"}, "gpu-b": {"x"}})
            obs["two hosts"].append(_time(runner._observe_gates, args.calls // 10))
            runner._hosts.clear()
        med = {k: statistics.median(v) * 1e9 for k, v in {**upd, **obs}.items()}
        print(f"_on_update, local session:        {med['local']:8.0f} ns/call")
        print(f"_on_update, session with a host:  {med['host']:8.0f} ns/call")
        print(f"  ratio host/local:               {med['host'] / med['local']:8.3f}")
        print(f"_observe_gates, one host:         {med['one host']:8.0f} ns/call (4 gates)")
        print(f"_observe_gates, two hosts marked: {med['two hosts']:8.0f} ns/call (4 gates)")
        print(f"  ratio two/one:                  {med['two hosts'] / med['one host']:8.3f}")
        print(
            "  at 4 snapshots/s, marking costs "
            f"{(med['two hosts'] - med['one host']) * 4 / 1e9:.2e} s of loop time per second"
        )


if __name__ == "__main__":
    main()
