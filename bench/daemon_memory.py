"""Memory that must not grow with a run's length: the report's peak, and the real daemon's RSS.

Three parts, each printing figures (``bench/_common.py``):

1. **Report peak RSS, 1M vs 10M samples** (``--quick``: 0.2M vs 2M). A closed run directory
   of N samples (12 metrics, 200 sessions, written with the recorder's own API and compacted
   to ``samples.parquet`` as a run's close does) is reported by ``perfmon report RUN_DIR`` in a
   fresh subprocess; its peak RSS is ``getrusage(RUSAGE_SELF).ru_maxrss`` read at its exit.
   The figure is peak(10N) / peak(N): 1.0 means the report's memory does not grow with the
   samples. The campaign's gates read per-session values (``speedup``) and reduce three of
   the twelve metrics over the whole run (``p95``): held in memory up to
   ``recorded.GATE_SAMPLES_HELD`` samples, streamed past it (``perfmon.engine.streamed``).

2. **Daemon RSS over 20,000 short sessions** (``--quick``: 3,000; ``--headless``: the runner
   of ``perfmon run --headless`` instead, in the CLI's own process). The real ``perfmon run
   --detach`` (daemon, supervisor, psutil sampler, control socket, recorder, gates) runs a
   campaign of ``true`` sessions; the daemon's RSS (psutil) is read every few seconds with
   the number of sessions finished (lines of ``sessions.jsonl``). The figure is the slope
   of the RSS floor (the lowest reading in each tenth of the sessions past the first 20%)
   against sessions, by least squares, in bytes per session, and its 72-hour extrapolation
   at ``samples/soak.toml``'s rate (one session every 4 s: 64,800 sessions; ``--sessions
   64800`` runs that many).

3. **Daemon through a 10M-sample run** (``--quick``: 2M). One session writes samples through
   the probe protocol (``PERFMON_FD``) as fast as it can; the daemon's RSS is read during
   ingest and during the end-of-run report; the figure is the daemon's peak RSS.

Run: ``PYTHONPATH=src .venv/bin/python bench/daemon_memory.py [--quick] [--part 1|2|3]``.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import psutil

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from _common import Figure, emit  # noqa: E402

START_T = 1_764_000_000.0
METRICS = 12
SESSIONS = 200
MiB = 1024 * 1024


def _env(src: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(src or REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    return env


# -- part 1: the report's peak -----------------------------------------------------------------

CAMPAIGN_JSON = {
    "name": "report-memory",
    "gates": [
        {
            "name": "Speed",
            "expr": "speedup(session_seconds, baseline, candidate) >= 0.5",
            "window_s": None,
        },
        # Reductions of high-rate metrics over the whole run (as soak.toml's queue-depth
        # gates): 3/12 of the samples, held up to GATE_SAMPLES_HELD and streamed past it.
        *(
            {"name": f"P95 {i}", "expr": f"p95(metric_{i:02d}_seconds) < 10", "window_s": None}
            for i in range(3)
        ),
    ],
}


def make_run(run_dir: Path, n: int) -> None:
    """A closed run of ``n`` samples: 12 metrics over 200 sessions, one per 10 ms."""
    from perfmon.core.batch import SampleBatch
    from perfmon.core.model import MetricKind, SessionResult, SessionSpec, SessionStatus
    from perfmon.engine.recorder import Recorder

    rng = np.random.default_rng(1)
    rec = Recorder(run_dir)
    rec.write_manifest({"run_id": run_dir.name, "started_t": START_T, "campaign": CAMPAIGN_JSON})
    names = (*(f"metric_{i:02d}_seconds" for i in range(METRICS - 1)), "session_seconds")
    kinds = (*(MetricKind.HISTOGRAM for _ in range(METRICS - 1)), MetricKind.VALUE)
    per_session = n // SESSIONS
    chunk = 250_000
    done = 0
    while done < n:
        m = min(chunk, n - done)
        idx = np.arange(done, done + m)
        sids = np.minimum(idx // per_session, SESSIONS - 1).astype(np.int64)
        rec.add_batch(
            SampleBatch(
                np.asarray(START_T + idx * 0.01, dtype=np.float64),
                sids,
                (idx % METRICS).astype(np.int32),
                rng.lognormal(0.0, 0.5, m),
                names,
                kinds,
            )
        )
        rec.flush()
        done += m
    for sid in range(SESSIONS):
        spec = SessionSpec(
            id=sid,
            workload="w",
            variant="baseline" if sid % 2 == 0 else "candidate",
            set_name="canary",
            index=sid // 2,
            warmup=False,
            argv=("true",),
            env=(),
            cwd="/tmp",
            timeout_s=None,
            params=(),
        )
        start = START_T + sid * per_session * 0.01
        r = SessionResult(spec=spec, status=SessionStatus.OK, start_t=start, end_t=start + 1)
        r.wall_s = 1.0
        rec.session_finished(r)
    rec.close()


def report_peak(run_dir: Path, src: Path | None = None) -> tuple[int, float, int]:
    """``perfmon report`` in a fresh process: (peak RSS bytes, seconds, exit status)."""
    code = textwrap.dedent(
        """
        import resource, sys
        from perfmon.cli import main
        rc = main(["report", sys.argv[1]])
        print("PEAK", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, rc)
        """
    )
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", code, str(run_dir)],
        capture_output=True,
        text=True,
        env=_env(src),
        check=True,
    )
    dt = time.perf_counter() - t0
    m = re.search(r"PEAK (\d+) (\d+)", out.stdout)
    assert m, out.stdout + out.stderr
    return int(m.group(1)), dt, int(m.group(2))


def part_report(quick: bool, baseline: Path | None) -> None:
    small, big = (200_000, 2_000_000) if quick else (1_000_000, 10_000_000)
    peaks = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in (small, big):
            run = Path(tmp) / f"run-{n}"
            run.mkdir()
            t0 = time.perf_counter()
            make_run(run, n)
            made = time.perf_counter() - t0
            peak, dt, rc = report_peak(run)
            peaks[n] = peak
            size = (run / "samples.parquet").stat().st_size
            print(
                f"  {n:>11,} samples: samples.parquet {size / MiB:.1f} MiB (written and "
                f"compacted in {made:.1f} s); perfmon report peak RSS {peak / MiB:.1f} MiB, "
                f"{dt:.1f} s, exit {rc}"
            )
            if baseline is not None:
                old, odt, orc = report_peak(run, baseline)
                print(
                    f"  {'':>11} baseline source {baseline}: peak RSS {old / MiB:.1f} MiB, "
                    f"{odt:.1f} s, exit {orc}"
                )
    ratio = peaks[big] / peaks[small]
    emit(
        Figure(
            name=f"perfmon report peak RSS, {big:,} / {small:,} samples",
            value=round(ratio, 3),
            unit="x",
            budget="<= 1.1",
            met=ratio <= 1.1,
            method="getrusage(RUSAGE_SELF).ru_maxrss of `perfmon report` in a fresh process, "
            "on closed runs of each size",
            detail=f"{peaks[small] / MiB:.1f} MiB vs {peaks[big] / MiB:.1f} MiB",
        )
    )


# -- part 2 and 3: the real daemon -----------------------------------------------------------


def _daemon_log(run_dir: Path) -> list[str]:
    """The daemon's log lines naming its allocator and its heap trimming."""
    try:
        text = (run_dir / "daemon.log").read_text(errors="replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if "allocator" in line or "heap trim" in line]


def _start(campaign: Path, runs: Path, allocator: str | None = None) -> tuple[psutil.Process, Path]:
    env = _env()
    if allocator is not None:  # the user's PYTHONMALLOC: perfmon leaves it as it is
        env["PYTHONMALLOC"] = allocator
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "perfmon",
            "run",
            str(campaign),
            "--detach",
            "--runs-dir",
            str(runs),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    run_id = re.search(r"started run (\S+)", out.stdout)
    assert run_id, out.stdout + out.stderr
    from perfmon.engine.registry import find_run

    entry = find_run(run_id.group(1))
    return psutil.Process(entry.pid), entry.run_dir


def _start_headless(
    campaign: Path, runs: Path, allocator: str | None = None
) -> tuple[psutil.Process, Path]:
    """``perfmon run --headless`` (the runner in the CLI's own process, which executes itself
    again under perfmon's allocator unless ``allocator`` is given); its process and run
    directory."""
    env = _env()
    if allocator is not None:
        env["PYTHONMALLOC"] = allocator
    popen = subprocess.Popen(
        [
            *(sys.executable, "-m", "perfmon", "run", str(campaign)),
            *("--headless", "--runs-dir", str(runs)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        dirs = [p for p in runs.glob("*") if p.is_dir()] if runs.is_dir() else []
        if dirs:
            return psutil.Process(popen.pid), dirs[0]
        time.sleep(0.05)
    popen.kill()
    raise SystemExit("headless run made no run directory in 60 s")


def _sessions_done(run_dir: Path) -> int:
    try:
        with open(run_dir / "sessions.jsonl", "rb") as f:
            return sum(1 for _ in f)
    except OSError:
        return 0


def _watch(proc: psutil.Process, run_dir: Path, every_s: float) -> list[tuple[float, int, int]]:
    """(seconds, sessions finished, RSS bytes) every ``every_s`` until the daemon exits."""
    t0 = time.monotonic()
    rows: list[tuple[float, int, int]] = []
    while True:
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:  # a headless run's CLI, ended
                return rows
            rss = proc.memory_info().rss
        except psutil.NoSuchProcess:
            return rows
        if rss:  # 0 once it is a zombie
            rows.append((time.monotonic() - t0, _sessions_done(run_dir), rss))
        time.sleep(every_s)


def _session_timings(run_dir: Path) -> None:
    """Median and p95 of the sessions' recorded wall time and of the gap between sessions:
    what the daemon's own work (heap trims included) could do to the sessions."""
    import json

    rows = []
    with open(run_dir / "sessions.jsonl", "rb") as f:
        for line in f:
            with contextlib.suppress(ValueError):
                rows.append(json.loads(line))
    rows = [r for r in rows if r.get("status") == "ok" and r.get("start_t") and r.get("end_t")]
    rows.sort(key=lambda r: float(r["start_t"]))
    wall = np.array([float(r["wall_s"]) for r in rows]) * 1e3
    gap = np.array([float(b["start_t"]) - float(a["end_t"]) for a, b in itertools.pairwise(rows)])
    gap *= 1e3
    if len(gap) == 0:
        return
    print(
        f"  sessions' wall time median {np.median(wall):.3f} ms, p95 "
        f"{np.percentile(wall, 95):.3f} ms; gap end -> next start median {np.median(gap):.3f} "
        f"ms, p95 {np.percentile(gap, 95):.3f} ms, p99 {np.percentile(gap, 99):.3f} ms "
        f"({len(rows):,} sessions)"
    )


SESSIONS_TOML = """
[campaign]
name = "daemon-memory"
sample_interval = "250ms"
grace = "1s"

[[workload]]
name = "true"
command = ["true"]
timeout = "10s"

[variant.baseline]
[variant.candidate]

[set.canary]
sessions = {sessions}
order = "interleaved"

[[gate]]
name = "Speed"
expr = "speedup(session_seconds, baseline, candidate) >= 0.5"
[[gate]]
name = "RAM"
expr = "max(system_memory_percent) <= 99"
"""


def part_sessions(
    quick: bool,
    allocator: str | None = None,
    sessions: int | None = None,
    rows_out: Path | None = None,
    headless: bool = False,
) -> None:
    n = sessions or (3_000 if quick else 20_000)
    how = "perfmon run --headless" if headless else "perfmon run --detach"
    with tempfile.TemporaryDirectory() as tmp:
        campaign = Path(tmp) / "sessions.toml"
        campaign.write_text(SESSIONS_TOML.replace("{sessions}", str(n // 2)))
        start = _start_headless if headless else _start
        proc, run_dir = start(campaign, Path(tmp) / "runs", allocator)
        rows = _watch(proc, run_dir, 0.25)
        for line in _daemon_log(run_dir):
            print(f"  daemon.log: {line}")
        _session_timings(run_dir)
    rows = [r for r in rows if r[1] > 0]
    for t, done, rss in rows[:: max(1, len(rows) // 15)]:
        print(f"  {t:7.1f} s  {done:>7,} sessions  RSS {rss / MiB:7.1f} MiB")
    warm = [r for r in rows if n * 0.2 <= r[1] < n]
    if len(warm) < 3:
        print("  too few readings past the warm-up")
        return
    if rows_out is not None:
        rows_out.write_text("".join(f"{t:.1f},{done},{rss}\n" for t, done, rss in rows))
        print(f"  every reading (seconds, sessions, RSS bytes): {rows_out}")
    x = np.array([r[1] for r in warm], dtype=float)
    y = np.array([r[2] for r in warm], dtype=float)
    slope = float(np.polyfit(x, y, 1)[0])
    # The floor: the lowest reading in each tenth of the sessions past the warm-up. Between two
    # collections of cyclic garbage (and two heap trims) the RSS rises and falls back; what a
    # run keeps is the floor's slope, which the sawtooth's phase at each reading cannot move.
    edges = np.linspace(x[0], x[-1], 11)
    fx, fy = [], []
    for lo, hi in itertools.pairwise(edges):
        sel = (x >= lo) & (x <= hi)
        if sel.any():
            i = int(np.argmin(np.where(sel, y, np.inf)))
            fx.append(x[i])
            fy.append(y[i])
    floor = float(np.polyfit(fx, fy, 1)[0]) if len(fx) >= 3 else float("nan")
    print(
        "  floor (lowest reading per tenth of the sessions): "
        + ", ".join(f"{int(a):,}: {b / MiB:.1f}" for a, b in zip(fx, fy, strict=True))
        + f" MiB; slope {floor:,.0f} bytes/session, 72 h {floor * 64_800 / MiB:+.1f} MiB"
    )
    soak = floor * 64_800
    emit(
        Figure(
            name=f"{'headless runner' if headless else 'daemon'} RSS growth per session past "
            "warm-up (floor)",
            value=round(floor, 1),
            unit="bytes/session",
            budget="72 h extrapolation <= 5% of RSS",
            met=soak <= 0.05 * fy[0],
            method=f"real `{how}` of {n:,} `true` sessions (PYTHONMALLOC="
            f"{allocator or 'malloc, set by perfmon'}), psutil RSS every 0.25 s; least-squares "
            "slope of the floor (the lowest reading in each tenth of the sessions past the "
            "first 20%: what the run keeps; the readings between are the working set between "
            "two heap trims, which at a soak's one session per 4 s is a few sessions' worth)",
            detail=f"floor {fy[0] / MiB:.1f} -> {fy[-1] / MiB:.1f} MiB over sessions "
            f"{int(fx[0]):,}-{int(fx[-1]):,}; 72 h at one session / 4 s (64,800 sessions): "
            f"{soak / MiB:+.1f} MiB ({100 * soak / fy[0]:+.1f}%); least-squares slope of every "
            f"reading {slope:,.0f} bytes/session ({slope * 64_800 / MiB:+.1f} MiB)",
        )
    )


FLOOD_TOML = """
[campaign]
name = "daemon-flood"
sample_interval = "250ms"
grace = "1s"

[[workload]]
name = "flood"
command = ["{python}", "-c", '''
import os
fd = int(os.environ["PERFMON_FD"])
n = {samples}
block = "".join(f"flood_metric_{i % 8}_seconds {(i % 1000) * 0.001}\\n" for i in range(10000))
data = block.encode()
for _ in range(n // 10000):
    os.write(fd, data)
''']
timeout = "1h"

[set.one]
sessions = 1

[[gate]]
name = "Flood"
expr = "max(flood_metric_0_seconds) < 10"
"""


def part_flood(quick: bool, allocator: str | None = None) -> None:
    n = 2_000_000 if quick else 10_000_000
    with tempfile.TemporaryDirectory() as tmp:
        campaign = Path(tmp) / "flood.toml"
        campaign.write_text(
            FLOOD_TOML.replace("{python}", sys.executable).replace("{samples}", str(n))
        )
        proc, run_dir = _start(campaign, Path(tmp) / "runs", allocator)
        rows = _watch(proc, run_dir, 1.0)
        for line in _daemon_log(run_dir):
            print(f"  daemon.log: {line}")
        from perfmon.engine.recorder import read_run

        data = read_run(run_dir)
        recorded = data.num_samples
    for t, _, rss in rows[:: max(1, len(rows) // 15)]:
        print(f"  {t:7.1f} s  daemon RSS {rss / MiB:7.1f} MiB")
    peak = max(r[2] for r in rows)
    emit(
        Figure(
            name=f"daemon peak RSS through a {n / 1e6:.0f}M-sample run and its report",
            value=round(peak / MiB, 1),
            unit="MiB",
            method="real `perfmon run --detach`; one session floods the probe protocol; "
            "psutil RSS of the daemon every second until it exits (report included)",
            detail=f"{recorded:,} samples recorded",
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes (a minute or two)")
    ap.add_argument("--part", type=int, choices=(1, 2, 3), action="append")
    ap.add_argument(
        "--allocator",
        help="parts 2 and 3: run the daemon with this PYTHONMALLOC (e.g. pymalloc, the "
        "interpreter's default, for a before/after; default: perfmon's own choice, malloc)",
    )
    ap.add_argument("--sessions", type=int, help="part 2: this many sessions instead")
    ap.add_argument("--rows", type=Path, help="part 2: write every reading to this CSV file")
    ap.add_argument(
        "--headless",
        action="store_true",
        help="part 2: the runner of `perfmon run --headless` (in the CLI's process) instead",
    )
    ap.add_argument(
        "--baseline-src",
        type=Path,
        help="part 1 also runs `perfmon report` from this source tree (e.g. an old checkout's "
        "src/) on the same runs, for a before/after in one run",
    )
    args = ap.parse_args()
    parts = args.part or [1, 2, 3]
    if 1 in parts:
        print("1. perfmon report's peak RSS against the number of samples")
        part_report(args.quick, args.baseline_src)
    if 2 in parts:
        print("2. daemon RSS over many short sessions")
        part_sessions(args.quick, args.allocator, args.sessions, args.rows, args.headless)
    if 3 in parts:
        print("3. daemon through a flood of samples")
        part_flood(args.quick, args.allocator)


if __name__ == "__main__":
    main()
