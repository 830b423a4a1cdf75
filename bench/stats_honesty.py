"""Honesty checks of perfmon's statistical gates, on real recorded session times.

Method.

1. Coverage table (the check that chose the interval method). ``SIMULATIONS`` (2,000) A/A
   campaigns of n = 5, 10, 20 and 50 sessions per variant are drawn with replacement from a
   pool of real session times of one workload (both variants the same, so the true ratio is
   1); each campaign's 95% interval of the speedup is computed by each candidate method:

   - the percentile bootstrap of the ratio of medians (perfmon's method before issue 10;
     ``scipy.stats.bootstrap``, 999 resamples);
   - the BCa bootstrap of the same ratio (999 resamples);
   - the exact rank interval of the Hodges-Lehmann ratio on log times (Moses; perfmon's
     default now, ``perfmon.core.stats.compare``).

   Printed per n and method: the share of campaigns whose interval excludes 1 (budget at most
   0.065 at a stated 95%), how many had no interval (BCa's jackknife degenerates on tied
   resamples), and the median interval width as the ratio high/low (narrower is more useful).
   The pool is ``bench/data/aa_session_seconds.json`` (recorded with ``--record``, see there:
   300 real session times, right-skewed), so the table is reproducible without running
   anything; the full bench repeats it on the pool of the real run of part 2.
2. A real campaign (``perfmon run --headless``): a CPU-bound workload (a Python loop of
   ``WORK`` iterations in a fresh interpreter) in three variants, ``a1`` and ``a2`` identical
   and ``slow`` doing 1.5x the iterations, ``SESSIONS`` measured sessions each after one
   warm-up, interleaved. Gates: ``regression(session_seconds, a1, a2) < 10%`` (A/A: must not
   fail), ``speedup(session_seconds, a1, slow) >= 1.0`` (must fail) and ``<= 0.8`` (must pass).
   The run's exit status and gate table are perfmon's own; the script also replays the recorded
   session times in order to find the first n per variant (from ``min_sessions``) at which the
   two power gates are decided. ``WORK`` (about 0.5 s of CPU) is chosen so that the
   interpreter's start-up (about 40 ms, the same in both variants) does not dilute the
   slowdown: the wall-time ratio of a variant doing 1.5x the work is (s + 1.5 w) / (s + w),
   1.46 here, but only 1.33 with w = 0.1 s, too close to the 0.8 (1.25x) threshold.
3. Interleaving: two identical variants (A/A, true ratio 1), run once ``blocked`` and once
   ``interleaved`` while a background load (two busy processes per core) starts
   half-way through the run. The figure is whether each run's 95% CI of the speedup covers 1.

4. Anytime validity (issue 11): ``ANYTIME_SEQUENCES`` (1,000) A/A sequences of pairs from the
   recorded pool, looked at after every pair from n = 3 to 50: the share in which
   ``speedup >= 1.0`` or ``regression < 10%`` ever shows a wrong pass or fail with the betting
   confidence sequence the live gates use (budget 5%), the same looks with the fixed-n exact
   interval for contrast, and the cost: sessions per variant to decide a real 1.5x slowdown,
   stopping at the first deciding look, against the planned n a fixed-n design needs for 80%
   power; and the time of one look. ``--anytime`` runs this part alone (a few minutes).

5. Windows (issue 11): a ``window = "5min"`` p95 over a simulated 72 h soak at 15.4 Hz
   (4,608 samples a window), live against the exact p95 of the same window, every hour
   (budget 1% relative); ``--windows`` runs this part alone.

Run: ``.venv/bin/python bench/stats_honesty.py`` (all three parts, a few minutes on 2 cores),
``--table-only`` (part 1 on the recorded pool only, 1-3 minutes, the bootstraps dominate),
``--record PATH`` (run the A/A campaign that recorded the pool and write it to PATH).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np

from _common import Figure, emit
from perfmon.core.stats import StatsOptions, compare
from perfmon.engine.compare import source_from_run
from perfmon.engine.recorder import read_run

WORK = 5_000_000
SESSIONS = 20
SIMULATIONS = 2000
SIM_NS = (5, 10, 20, 50)
BOOT_RESAMPLES = 999
MAX_MISS = 0.065
DATA = Path(__file__).resolve().parent / "data" / "aa_session_seconds.json"
POOL_WORK = 1_000_000
POOL_SESSIONS = 150

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
    for name, options in (
        ("95% exact rank CI of the HL ratio (default)", StatsOptions()),
        (
            "95% percentile bootstrap of the median ratio, 9999 resamples (before issue 10)",
            StatsOptions(interval="bootstrap"),
        ),
    ):
        decided: int | None = None  # the n from which both gates stay decided to the end
        for n in range(StatsOptions().min_sessions, min(len(a1), len(slow)) + 1):
            c = compare(a1[:n], slow[:n], options)
            ok = c.speedup_high < 1.0 and c.speedup_high <= 0.8
            decided = (decided or n) if ok else None
        c = compare(a1, slow, options)
        emit(
            Figure(
                f"sessions per variant until the 1.5x slowdown is decided (fails >= 1.0 and "
                f"passes <= 0.8), {name}",
                float(decided or 0),
                "sessions",
                budget="<= 20",
                met=decided is not None and decided <= 20,
                method="the recorded session times replayed in order; the first n from which "
                "both gates stay decided (0: not decided at the last session)",
                detail=f"at n = {len(a1)}: {c.speedup:.3f}x [{c.speedup_low:.3f}, "
                f"{c.speedup_high:.3f}]",
            )
        )
    return _values(run_dir, "a1") + _values(run_dir, "a2")


def _bootstrap_interval(method: str) -> Any:
    from scipy import stats

    def ratio(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.asarray(np.median(x, axis=axis) / np.median(y, axis=axis))

    def interval(a: np.ndarray, b: np.ndarray, seed: int) -> tuple[float, float]:
        res = stats.bootstrap(
            (a, b),
            ratio,
            n_resamples=BOOT_RESAMPLES,
            vectorized=True,
            paired=False,
            confidence_level=0.95,
            method=method,
            rng=np.random.default_rng(seed),
        )
        return float(res.confidence_interval.low), float(res.confidence_interval.high)

    return interval


def _rank_interval(a: np.ndarray, b: np.ndarray, seed: int) -> tuple[float, float]:
    c = compare(a.tolist(), b.tolist(), StatsOptions())
    return c.speedup_low, c.speedup_high


METHODS = {
    "percentile bootstrap of the median ratio (before issue 10)": _bootstrap_interval("percentile"),
    "BCa bootstrap of the median ratio": _bootstrap_interval("BCa"),
    "exact rank CI of the HL ratio, log (perfmon's default)": _rank_interval,
}


def coverage_table(pool: list[float], source: str, sims: int = SIMULATIONS) -> None:
    """Part 1: the share of A/A campaigns whose 95% interval excludes 1, per n and method."""
    import warnings

    data = np.asarray(pool)
    for n in SIM_NS:
        rng = np.random.default_rng(1000 + n)
        draws = [(rng.choice(data, n), rng.choice(data, n)) for _ in range(sims)]
        rank_widths: list[float] = []
        for name, interval in METHODS.items():
            t0 = time.perf_counter()
            miss = undefined = 0
            widths = []
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # BCa's degenerate-jackknife warnings, counted
                for i, (a, b) in enumerate(draws):
                    low, high = interval(a, b, i)
                    if not (np.isfinite(low) and np.isfinite(high)):
                        undefined += 1
                        miss += 1  # no interval is no coverage
                        continue
                    miss += not (low <= 1.0 <= high)
                    widths.append(high / low)
            took = time.perf_counter() - t0
            rate = miss / sims
            width = float(np.median(widths)) if widths else float("nan")
            if "rank" in name:
                rank_widths.append(width)
            emit(
                Figure(
                    f"n = {n}/{n}, {name}: A/A campaigns whose 95% CI excludes 1",
                    rate,
                    "fraction",
                    budget=f"<= {MAX_MISS}",
                    met=rate <= MAX_MISS,
                    method=f"{sims} A/A campaigns resampled from {len(pool)} {source}",
                    detail=f"{miss} of {sims} (no interval: {undefined}); median width "
                    f"high/low {width:.3f}; {took / sims * 1e3:.1f} ms per interval",
                )
            )


def power_table(pool: list[float], sims: int = SIMULATIONS, slowdown: float = 1.46) -> None:
    """Power: the share of campaigns in which ``speedup(A, B) <= 0.8`` passes (its whole
    interval at or below 0.8) when B's sessions are A's pool times ``slowdown`` (true ratio
    1 / 1.46 = 0.685, the slowdown of part 2's ``slow`` variant)."""
    import warnings

    data = np.asarray(pool)
    methods = {k: v for k, v in METHODS.items() if not k.startswith("BCa")}
    for n in SIM_NS[:3]:
        rng = np.random.default_rng(2000 + n)
        draws = [(rng.choice(data, n), rng.choice(data, n) * slowdown) for _ in range(sims)]
        for name, interval in methods.items():
            passed = 0
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for i, (a, b) in enumerate(draws):
                    passed += interval(a, b, i)[1] <= 0.8
            emit(
                Figure(
                    f"n = {n}/{n}, {name}: campaigns deciding a {slowdown}x slowdown "
                    "(speedup <= 0.8 passes)",
                    passed / sims,
                    "fraction",
                    method=f"{sims} campaigns resampled from {len(pool)} recorded session "
                    f"times, B's times multiplied by {slowdown}",
                    detail=f"{passed} of {sims}",
                )
            )


def gate_false_failures(pool: list[float], n: int = 10, sims: int = SIMULATIONS) -> None:
    """A/A false failures of ``regression < 10%`` with perfmon's default method."""
    rng = np.random.default_rng(12345)
    data = np.asarray(pool)
    regress = 0
    for _ in range(sims):
        c = compare(rng.choice(data, n).tolist(), rng.choice(data, n).tolist(), StatsOptions())
        regress += c.regression_low >= 0.10
    rate = regress / sims
    emit(
        Figure(
            f"A/A false failures of regression < 10% at n = {n}/{n}",
            rate,
            "fraction",
            budget="<= 0.05",
            met=rate <= 0.05,
            method=f"{sims} A/A campaigns from the run's {len(pool)} session times; "
            "exact rank CI of the HL ratio",
            detail=f"{regress} of {sims}",
        )
    )


def evaluation_cost() -> None:
    """What one uncached comparison costs at the sizes a soak reaches (a gate evaluation is one
    comparison per group; results are cached by their inputs)."""
    rng = np.random.default_rng(7)
    for n in (1000, 2000):
        for ties in (False, True):
            times = []
            for rep in range(5):
                a = rng.lognormal(0.0, 0.3, n)
                b = rng.lognormal(0.05, 0.3, n)
                if ties:
                    a, b = np.round(a, 2), np.round(b, 2)  # 10 ms resolution: many ties
                t0 = time.perf_counter()
                c = compare(a.tolist(), b.tolist(), StatsOptions(seed=rep))
                times.append(time.perf_counter() - t0)
            ms = float(np.median(times)) * 1e3
            emit(
                Figure(
                    f"one comparison at n = {n:,}/{n:,}{' with ties' if ties else ''}",
                    ms,
                    "ms",
                    budget="< 100",
                    met=ms < 100,
                    method="perfmon.core.stats.compare, uncached, median of 5 (lognormal "
                    f"times{', rounded to 10 ms' if ties else ''})",
                    detail=f"{c.interval_method}; {c.p_method}",
                )
            )


def record_pool(path: Path) -> None:
    """Run the A/A campaign whose session times are the recorded pool; write them to path."""
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        campaign = tmp / "aa-pool.toml"
        _campaign(campaign, {"a1": POOL_WORK, "a2": POOL_WORK}, POOL_SESSIONS, "interleaved", "")
        status, run_dir, _ = _run(campaign, tmp / "runs")
        a1, a2 = _values(run_dir, "a1"), _values(run_dir, "a2")
        doc = {
            "description": "Recorded A/A session times (session_seconds, wall clock of each "
            "session) of one real perfmon campaign: one CPU-bound workload (a Python loop of "
            f"{POOL_WORK:,} iterations in a fresh interpreter) in two identical variants a1 "
            f"and a2, {POOL_SESSIONS} measured sessions each after one warm-up, interleaved, "
            "on a shared 2-core machine while other engineers ran builds and tests (hence "
            "the heavy right tail).",
            "recorded_with": f".venv/bin/python bench/stats_honesty.py --record {path}",
            "run_id": run_dir.name,
            "exit_status": status,
            "host": {
                "machine": platform.machine(),
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
            },
            "unit": "seconds",
            "a1": [round(v, 9) for v in a1],
            "a2": [round(v, 9) for v in a2],
        }
        path.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {len(a1) + len(a2)} session times to {path}")


def recorded_pool() -> list[float]:
    """The pool of ``bench/data/aa_session_seconds.json``."""
    doc = json.loads(DATA.read_text())
    return [float(v) for v in doc["a1"] + doc["a2"]]


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


ANYTIME_SEQUENCES = 1000
ANYTIME_LOOKS = (3, 50)


def _first_pair_at(pool: np.ndarray, rng: np.random.Generator, slowdown: float) -> np.ndarray:
    """``ANYTIME_LOOKS[1]`` pairs (a, b): A's and B's times drawn from the pool, B's times
    multiplied by ``slowdown``."""
    n = ANYTIME_LOOKS[1]
    return np.stack([rng.choice(pool, n), rng.choice(pool, n) * slowdown], axis=1)


def anytime_table(pool: list[float], sims: int = ANYTIME_SEQUENCES) -> None:
    """Part 4 (issue 11): looking after every pair, the anytime-valid sequence against the
    fixed-n exact rank interval, and what it costs in sessions."""
    from perfmon.core.stats import ShiftSequence

    data = np.asarray(pool)
    lo_n, hi_n = ANYTIME_LOOKS
    thr_reg = np.log(1.0 / 1.10)  # regression < 10%: fails when the log ratio a/b is below it
    rng = np.random.default_rng(4242)
    ever_speedup = ever_regress = 0
    updates = 0
    t0 = time.perf_counter()
    for _ in range(sims):
        pairs = _first_pair_at(data, rng, 1.0)
        seq = ShiftSequence(0.05)
        wrong_s = wrong_r = False
        for i, (a, b) in enumerate(pairs, start=1):
            seq.update(float(np.log(a) - np.log(b)))
            updates += 1
            if i < lo_n:
                continue
            low, high = seq.interval()
            wrong_s |= low > 0.0 or high < 0.0  # speedup >= 1.0 passes or fails
            wrong_r |= high < thr_reg  # regression < 10% fails
        ever_speedup += wrong_s
        ever_regress += wrong_r
    per_update = (time.perf_counter() - t0) / updates
    for gate, ever in (("speedup >= 1.0", ever_speedup), ("regression < 10%", ever_regress)):
        rate = ever / sims
        emit(
            Figure(
                f"anytime CS, A/A looked at after every pair n = {lo_n}..{hi_n}: "
                f"{gate} ever shows a wrong pass or fail",
                rate,
                "fraction",
                budget="<= 0.05",
                met=rate <= 0.05,
                method=f"{sims} A/A sequences of pairs drawn from {len(pool)} recorded session "
                "times; 95% betting confidence sequence (perfmon.core.stats.ShiftSequence)",
                detail=f"{ever} of {sims}",
            )
        )
    # The same looks with the fixed-n exact rank interval (what gates did before): fewer
    # sequences, the exact interval costs more per look.
    fixed_sims = max(sims // 4, 50)
    rng = np.random.default_rng(4243)
    ever_fixed = 0
    for _ in range(fixed_sims):
        pairs = _first_pair_at(data, rng, 1.0)
        for i in range(max(lo_n, 5), hi_n + 1):
            c = compare(pairs[:i, 0].tolist(), pairs[:i, 1].tolist(), StatsOptions())
            if c.speedup_low > 1.0 or c.speedup_high < 1.0:
                ever_fixed += 1
                break
    emit(
        Figure(
            f"fixed-n exact rank CI, A/A looked at after every pair n = 5..{hi_n}: "
            "speedup >= 1.0 ever shows a wrong pass or fail",
            ever_fixed / fixed_sims,
            "fraction",
            method=f"{fixed_sims} A/A sequences from the same pool; perfmon's fixed-n interval "
            "(valid at one planned n) looked at every pair, for contrast",
            detail=f"{ever_fixed} of {fixed_sims}",
        )
    )
    # Power: sessions per variant to decide a real 1.5x slowdown (regression < 10% fails).
    rng = np.random.default_rng(4244)
    stops: list[int] = []
    fixed_decided = {n: 0 for n in (5, 8, 10, 12, 15, 20, 30)}
    power_sims = max(sims // 4, 50)
    for _ in range(power_sims):
        pairs = _first_pair_at(data, rng, 1.5)
        seq = ShiftSequence(0.05)
        stop = hi_n + 1
        for i, (a, b) in enumerate(pairs, start=1):
            seq.update(float(np.log(a) - np.log(b)))
            if i >= 5 and seq.interval()[1] < thr_reg:
                stop = i
                break
        stops.append(stop)
        for n in fixed_decided:
            c = compare(pairs[:n, 0].tolist(), pairs[:n, 1].tolist(), StatsOptions())
            fixed_decided[n] += c.regression_low >= 0.10
    fixed_80 = next((n for n, k in fixed_decided.items() if k / power_sims >= 0.8), math.inf)
    for q in (50, 80):
        emit(
            Figure(
                f"anytime CS: sessions per variant to decide a 1.5x slowdown, {q}th percentile",
                float(np.percentile(stops, q)),
                "sessions",
                method=f"{power_sims} sequences, B's times x 1.5, regression < 10% must fail; "
                f"stopped at the first look (from n = 5) that decides; {hi_n + 1} = undecided",
                detail=f"decided by n = {hi_n} in {sum(s <= hi_n for s in stops)} of {power_sims}",
            )
        )
    emit(
        Figure(
            "fixed-n exact rank CI: planned sessions per variant to decide a 1.5x slowdown in "
            ">= 80% of campaigns",
            float(fixed_80),
            "sessions",
            method="the same sequences, one look at the planned n",
            detail=", ".join(f"n = {n}: {k}/{power_sims}" for n, k in fixed_decided.items()),
        )
    )
    emit(
        Figure(
            "anytime CS: cost of one look (one new pair)",
            per_update * 1e6,
            "us",
            method="mean over the A/A sequences above (one ShiftSequence.update + interval)",
            detail=f"{updates} updates",
        )
    )


def windowed_p95(hours: int = 72, hz: float = 4608 / 300) -> None:
    """Part 5 (issue 11): a ``window = "5min"`` p95 over a simulated 72 h soak (time-compressed:
    synthetic timestamps, ``hz`` samples per second, 4,608 per window as in the issue), live
    against the exact type-7 p95 of the same window, checked every hour; the old path (a window
    the aggregate does not track: reservoir quantiles) for contrast."""
    from perfmon.core.aggregate import MetricAggregate, window_bounds
    from perfmon.core.model import MetricKind

    rng = np.random.default_rng(72)
    t = np.arange(0.0, hours * 3600.0, 1.0 / hz) + 1.8e9
    hour = (t - t[0]) / 3600.0
    v = (40.0 + 2.0 * np.sin(hour / 6.0) + np.where(hour > hours - 2, 10.0, 0.0)) * rng.lognormal(
        0.0, 0.15, t.size
    )
    tracked = MetricAggregate(MetricKind.GAUGE, windows=(300.0,))
    old = MetricAggregate(MetricKind.GAUGE)
    batch = 2048
    per_hour = int(3600 * hz)
    worst = worst_old = 0.0
    ns: set[int] = set()
    started = time.perf_counter()
    next_check = per_hour
    for i in range(0, t.size, batch):
        tracked.add_many(t[i : i + batch], v[i : i + batch])
        old.add_many(t[i : i + batch], v[i : i + batch])
        done = min(i + batch, t.size)
        if done < next_check and done < t.size:
            continue
        next_check += per_hour
        end = float(t[done - 1])
        low, high = window_bounds(end, 300.0)
        lo_i, hi_i = np.searchsorted(t[:done], [low, high])
        exact = float(np.quantile(v[lo_i:hi_i], 0.95))
        value, n = tracked.reduce("quantile", q=0.95, window_s=300.0)
        old_value, _ = old.reduce("quantile", q=0.95, window_s=300.0)
        assert value is not None and n == hi_i - lo_i
        ns.add(n)
        worst = max(worst, abs(value / exact - 1.0))
        if old_value is not None:
            worst_old = max(worst_old, abs(old_value / exact - 1.0))
    elapsed = time.perf_counter() - started
    emit(
        Figure(
            "windowed p95 (5 min) over a simulated 72 h soak: worst relative error, live vs exact",
            worst,
            "fraction",
            budget="<= 0.01",
            met=worst <= 0.01,
            method=f"{t.size:,} samples at {hz:.2f} Hz, checked every hour; per-bucket DDSketch "
            "ring (perfmon.core.aggregate), type-7 exact p95 of the same window",
            detail=f"window counts {min(ns)}..{max(ns)} (true counts); "
            f"old reservoir path's worst error {worst_old:.3f}; fold time {elapsed:.1f} s "
            "for both aggregates",
        )
    )


def main(argv: list[str] | None = None) -> int:
    """Run the checks; print figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table-only", action="store_true", help="part 1 on the recorded pool")
    parser.add_argument("--record", type=Path, help="record the A/A pool to this JSON file")
    parser.add_argument("--simulations", type=int, default=SIMULATIONS)
    parser.add_argument(
        "--anytime", action="store_true", help="part 4 only: anytime-valid gates, looked at often"
    )
    parser.add_argument("--sequences", type=int, default=ANYTIME_SEQUENCES)
    parser.add_argument("--windows", action="store_true", help="part 5 only: windowed p95")
    args = parser.parse_args(argv)
    if args.record:
        record_pool(args.record)
        return 0
    if args.anytime:
        anytime_table(recorded_pool(), args.sequences)
        return 0
    if args.windows:
        windowed_p95()
        return 0
    sims = args.simulations
    evaluation_cost()
    coverage_table(recorded_pool(), f"recorded session times ({DATA.name})", sims)
    power_table(recorded_pool(), sims)
    anytime_table(recorded_pool(), args.sequences)
    windowed_p95()
    if args.table_only:
        return 0
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        pool = power_and_aa(tmp)
        coverage_table(pool, "session times of this run (a1 and a2 pooled)", sims)
        gate_false_failures(pool, sims=sims)
        interleaving(tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
