"""Honesty checks of perfmon's statistical gates, on real recorded runs.

Method.

1. A real campaign (``perfmon run --headless``): a CPU-bound workload (a Python loop of
   ``WORK`` iterations in a fresh interpreter) in three variants, ``a1`` and ``a2`` identical
   and ``slow`` doing 1.5x the iterations, ``SESSIONS`` measured sessions each after one
   warm-up, interleaved. Gates: ``regression(session_seconds, a1, a2) < 10%`` (A/A: must not
   fail), ``speedup(session_seconds, a1, slow) >= 1.0`` (must fail) and ``<= 0.8`` (must pass).
   The run's exit status and gate table are perfmon's own; the script also replays the recorded
   session times in order to find the first n per variant at which the two power gates are
   decided. ``WORK`` (about 0.5 s of CPU) is chosen so that the interpreter's start-up (about
   40 ms, the same in both variants) does not dilute the slowdown: the wall-time ratio of a
   variant doing 1.5x the work is (s + 1.5 w) / (s + w), 1.46 here, but only 1.33 with
   w = 0.1 s, too close to the 0.8 (1.25x) threshold to be decided in 20 sessions.
2. A/A simulation: the recorded ``session_seconds`` of ``a1`` and ``a2`` (the same workload)
   are pooled, and ``SIMULATIONS`` campaigns of ``SIM_N`` sessions per variant are drawn from
   the pool with replacement; each is judged with ``perfmon.core.stats.compare`` (95% bootstrap
   CI). A false failure is a gate that fails although both variants are the same:
   ``speedup >= 1.0`` fails when the whole CI is below 1, ``speedup <= 1.0`` when it is above,
   ``regression < 10%`` when it is at or above 10%. The two speedup gates together are the
   CI's miss rate for the true ratio 1 (nominal 5%).
3. Interleaving: two identical variants (A/A, true ratio 1), run once ``blocked`` and once
   ``interleaved`` while a background load (two busy processes per core) starts
   half-way through the run. The figure is whether each run's 95% CI of the speedup covers 1.

Run: ``.venv/bin/python bench/stats_honesty.py`` (about 1-2 minutes on 2 cores).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np

from _common import Figure, emit
from perfmon.core.stats import StatsOptions, compare
from perfmon.engine.compare import source_from_run
from perfmon.engine.recorder import read_run

WORK = 5_000_000
SESSIONS = 20
SIMULATIONS = 1000
SIM_N = 10
SIM_OPTIONS = StatsOptions(resamples=2000, seed=0)

LOOP = "import os\nn = int(os.environ['WORK'])\ns = 0\nfor i in range(n):\n    s += i * i\n"


def _campaign(path: Path, variants: dict[str, int], sessions: int, order: str, gates: str) -> None:
    lines = [
        "[campaign]",
        f'name = "{path.stem}"',
        'sample_interval = "250ms"',
        "",
        "[[workload]]",
        'name = "loop"',
        f"command = ['{{python}}', '-c', {json.dumps(LOOP)}]",
        'timeout = "60s"',
        "",
    ]
    for name, work in variants.items():
        lines += [f"[variant.{name}]", f'env = {{ WORK = "{work}" }}', ""]
    lines += [
        "[set.golden]",
        f"sessions = {sessions}",
        "warmup = 1",
        f'order = "{order}"',
        "",
        gates,
    ]
    path.write_text("\n".join(lines))


def _run(campaign: Path, runs: Path) -> tuple[int, Path, str]:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "perfmon",
            "run",
            "--headless",
            str(campaign),
            "--runs-dir",
            str(runs),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    run_dir = max(runs.iterdir(), key=lambda p: p.stat().st_mtime)
    return proc.returncode, run_dir, proc.stdout


def _values(run_dir: Path, variant: str) -> list[float]:
    return source_from_run(read_run(run_dir)).session_values("session_seconds", variant)


def power_and_aa(tmp: Path) -> list[float]:
    """Part 1; returns the pooled A/A session times for part 2."""
    campaign = tmp / "power.toml"
    gates = "\n".join(
        f'[[gate]]\nname = "{name}"\nexpr = "{expr}"\n'
        for name, expr in (
            ("A/A regression", "regression(session_seconds, a1, a2) < 10%"),
            ("Slowdown >= 1.0", "speedup(session_seconds, a1, slow) >= 1.0"),
            ("Slowdown <= 0.8", "speedup(session_seconds, a1, slow) <= 0.8"),
        )
    )
    _campaign(
        campaign,
        {"a1": WORK, "a2": WORK, "slow": int(WORK * 1.5)},
        SESSIONS,
        "interleaved",
        gates,
    )
    t0 = time.perf_counter()
    status, run_dir, _ = _run(campaign, tmp / "runs")
    took = time.perf_counter() - t0
    report = json.loads((run_dir / "report.json").read_text())
    states = {g["name"]: g["state"] for g in report["gates"]}
    reasons = {g["name"]: g["reason"] for g in report["gates"]}
    # Issue 3: an A/A pair "must not fail" regression < 10% (inconclusive is allowed: with 20
    # noisy sessions the CI may still reach past 10%); the 1.5x slowdown must be decided.
    ok = (
        states["A/A regression"] != "fail"
        and states["Slowdown >= 1.0"] == "fail"
        and states["Slowdown <= 0.8"] == "pass"
    )
    expected = ("A/A regression", "Slowdown >= 1.0", "Slowdown <= 0.8")
    emit(
        Figure(
            "real run: gates as expected (A/A regression does not fail, 1.5x work fails "
            ">= 1.0, passes <= 0.8)",
            float(ok),
            "bool",
            budget="== 1",
            met=ok,
            method=f"perfmon run --headless, {SESSIONS} sessions per variant, interleaved, "
            f"{took:.0f} s; exit status {status}",
            detail="; ".join(f"{k}: {states[k]} ({reasons[k]})" for k in expected),
        )
    )
    a1, slow = _values(run_dir, "a1"), _values(run_dir, "slow")
    decided: int | None = None  # the n from which both gates stay decided to the end
    for n in range(3, min(len(a1), len(slow)) + 1):
        c = compare(a1[:n], slow[:n], StatsOptions())
        ok = c.speedup_high < 1.0 and c.speedup_high <= 0.8
        decided = (decided or n) if ok else None
    emit(
        Figure(
            "sessions per variant until the 1.5x slowdown is decided (fails >= 1.0 and "
            "passes <= 0.8)",
            float(decided or 0),
            "sessions",
            budget="<= 20",
            met=decided is not None and decided <= 20,
            method="the recorded session times replayed in order; the first n from which both "
            "gates stay decided (0: not decided at the last session); 95% CI, 9999 resamples",
        )
    )
    return _values(run_dir, "a1") + _values(run_dir, "a2")


def aa_simulation(pool: list[float]) -> None:
    """Part 2."""
    rng = np.random.default_rng(12345)
    data = np.asarray(pool)
    below = above = regress = 0
    for _ in range(SIMULATIONS):
        a = rng.choice(data, SIM_N).tolist()
        b = rng.choice(data, SIM_N).tolist()
        c = compare(a, b, SIM_OPTIONS)
        below += c.speedup_high < 1.0  # speedup >= 1.0 fails
        above += c.speedup_low > 1.0  # speedup <= 1.0 fails
        regress += c.regression_low >= 0.10  # regression < 10% fails
    method = (
        f"{SIMULATIONS} A/A campaigns of {SIM_N} sessions per variant resampled from "
        f"{len(pool)} recorded session times; 95% percentile bootstrap, "
        f"{SIM_OPTIONS.resamples} resamples"
    )
    for name, count in (
        ("A/A false failures of speedup >= 1.0 and <= 1.0 together (CI misses 1)", below + above),
        ("A/A false failures of speedup >= 1.0", below),
        ("A/A false failures of regression < 10%", regress),
    ):
        rate = count / SIMULATIONS
        emit(
            Figure(
                name,
                rate,
                "fraction",
                budget="<= 0.05",
                met=rate <= 0.05,
                method=method,
                detail=f"{count} of {SIMULATIONS}",
            )
        )


def _burn(stop_at: float) -> None:
    x = 0
    while time.time() < stop_at:
        x += 1


def _start_load() -> list[multiprocessing.Process]:
    """Two busy processes per core, until terminated."""
    procs = []
    for _ in range(2 * (os.cpu_count() or 2)):
        p = multiprocessing.Process(target=_burn, args=(time.time() + 3600,))
        p.start()
        procs.append(p)
    return procs


def _run_with_load_from_half_way(campaign: Path, runs: Path, sessions: int) -> Path:
    """Run a campaign; start the background load once half of its sessions are recorded."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "perfmon",
            "run",
            "--headless",
            str(campaign),
            "--runs-dir",
            str(runs),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    load: list[multiprocessing.Process] = []
    try:
        while proc.poll() is None:
            done = 0
            for journal in runs.glob("*/sessions.jsonl"):
                done = len(journal.read_bytes().splitlines())
            if not load and done >= sessions // 2:
                load = _start_load()
            time.sleep(0.05)
    finally:
        for p in load:
            p.terminate()
            p.join()
        proc.wait()
    return max(runs.iterdir(), key=lambda p: p.stat().st_mtime)


def interleaving(tmp: Path) -> None:
    """Part 3."""
    n = 12
    for order in ("blocked", "interleaved"):
        campaign = tmp / f"drift-{order}.toml"
        gate = '[[gate]]\nname = "A/A"\nexpr = "speedup(session_seconds, a, b) >= 1.0"\n'
        _campaign(campaign, {"a": WORK, "b": WORK}, n, order, gate)
        # 2 warm-ups + 2n measured sessions; the load starts when half of them are recorded.
        run_dir = _run_with_load_from_half_way(campaign, tmp / f"runs-{order}", 2 + 2 * n)
        a, b = _values(run_dir, "a"), _values(run_dir, "b")
        c = compare(a, b, StatsOptions())
        covers = c.speedup_low <= 1.0 <= c.speedup_high
        emit(
            Figure(
                f"background load starting mid-run, {order} order: 95% CI covers the true ratio 1",
                float(covers),
                "bool",
                budget="== 1" if order == "interleaved" else "",
                met=covers if order == "interleaved" else None,
                method=f"A/A, {n} sessions per variant, busy loops, two per core, started "
                "once half of the sessions were recorded",
                detail=f"speedup {c.speedup:.3f} [{c.speedup_low:.3f}, {c.speedup_high:.3f}], "
                f"medians a {np.median(a):.3f} s, b {np.median(b):.3f} s",
            )
        )


def main() -> int:
    """Run the three checks; print figures."""
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        pool = power_and_aa(tmp)
        aa_simulation(pool)
        interleaving(tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
