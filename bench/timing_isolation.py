"""Timing isolation: does anything perfmon does (gates, reports, recording) shift a session's
timing or delay the next launch? (issue 10)

Runs A/A campaigns of a CPU-bound workload (``mawk`` summing integers: no I/O, no sleeping,
about 1 ms to start) with the real runner, ``perfmon run --headless`` in a subprocess, and
reads back from each run directory's ``sessions.jsonl``:

- **wall - CPU** per session (ms): for a CPU-bound, single-threaded workload this is the time
  the session was timed but not running: perfmon's delay in noticing the exit, plus the
  machine's own scheduling noise;
- **gap** (ms): from one session's recorded end to the next one's start, the runner's idle
  time between sessions;
- **daemon CPU** (%): the perfmon process's own CPU time (``psutil``, children excluded) per
  0.5 s interval while sessions run, as a share of one core.

Each figure is shown as median and max over the sessions (intervals) of one run, for these
cases, side by side: no gates; 1 and 4 statistical gates (``speedup``/``regression``, 9,999
bootstrap resamples each); 200 statistical gates over 200 probe metrics (999 resamples each, so
that the run without this change, which evaluates them on the loop after every session, still
ends in a few minutes); 4 statistical gates
at 50 and at 1,000 sessions per variant. The large-n case uses a shorter workload (~5 ms of
CPU) so that 2,000 sessions stay affordable, and prints wall - CPU per block of sessions too:
a session's timing must not depend on how many sessions came before it. A/A means both
variants run the same command, so every difference between them is perfmon's or the
machine's.

Usage: ``.venv/bin/python bench/timing_isolation.py [--quick] [--src DIR] [--case NAME]``;
``--src`` runs another checkout's perfmon (its ``src`` directory), to compare before/after a
change in one sitting. Full run: a few minutes on an idle machine; ``--quick``: about one.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import Figure, emit, machine  # noqa: E402

SPIN_AWK = """
BEGIN {
    n = ENVIRON["SPIN_N"] + 0
    for (i = 0; i < n; i++) s += i
    m = ENVIRON["SPIN_METRICS"] + 0
    if (m > 0) {
        out = "/dev/fd/" ENVIRON["PERFMON_FD"]
        srand()
        for (k = 0; k < m; k++) printf "m_%03d_seconds %.6f\\n", k, 1 + rand() / 10 > out
        close(out)
    }
}
"""

STAT_GATES = [
    "speedup(session_seconds, baseline, candidate) >= 0.8",
    "regression(session_seconds, baseline, candidate) < 25%",
    "speedup(session_cpu_seconds, baseline, candidate) >= 0.8",
    "regression(session_cpu_seconds, baseline, candidate) < 25%",
]


@dataclass
class Case:
    """One campaign: ``per_variant`` sessions of each variant, ``gates`` statistical gates
    (``metrics`` > 0: one ``regression`` gate per probe metric), ``spin`` loop iterations."""

    name: str
    per_variant: int
    gates: int
    metrics: int = 0
    spin: int = 1_500_000
    blocks: bool = False


@dataclass
class Result:
    case: Case
    wall_minus_cpu_ms: list[float] = field(default_factory=list)
    gap_ms: list[float] = field(default_factory=list)
    daemon_share: list[float] = field(default_factory=list)
    verdict: str = ""
    exit_status: int = 0
    run_s: float = 0.0
    problems: str = ""


def cases(quick: bool) -> list[Case]:
    """The cases, smaller with ``--quick``."""
    per, big_metrics, mid, large = (8, 50, 20, 150) if quick else (20, 200, 50, 1000)
    return [
        Case("no gates", per, 0),
        Case("1 stat gate", per, 1),
        Case("4 stat gates", per, 4),
        Case(f"{big_metrics} gates+metrics", per, big_metrics, metrics=big_metrics),
        Case(f"4 gates, {mid}/variant", mid, 4),
        Case(f"4 gates, {large}/variant", large, 4, spin=60_000, blocks=True),
    ]


def campaign_text(case: Case, spin_file: Path) -> str:
    """The campaign TOML of a case: an A/A pair of the same command, interleaved."""
    if case.metrics:
        exprs = [
            f"regression(m_{k:03d}_seconds, baseline, candidate) < 50%" for k in range(case.metrics)
        ]
    else:
        exprs = STAT_GATES[: case.gates]
    gates = "".join(
        f'\n[[gate]]\nname = "G{i}"\nexpr = "{e}"\n' for i, e in enumerate(exprs[: case.gates])
    )
    env = f'SPIN_N = "{case.spin}", SPIN_METRICS = "{case.metrics}"'
    return (
        textwrap.dedent(
            f"""
            [campaign]
            name = "timing-isolation"
            sample_interval = "100ms"
            bootstrap_resamples = {9999 if not case.metrics else 999}
            [[workload]]
            name = "spin"
            command = ["awk", "-f", "{spin_file}"]
            [variant.baseline]
            env = {{ {env} }}
            [variant.candidate]
            env = {{ {env} }}
            [set.golden]
            sessions = {case.per_variant}
            order = "interleaved"
            """
        )
        + gates
    )


def run_case(case: Case, src: Path, work: Path) -> Result:
    """Run one case headless; read its sessions and the daemon's CPU samples."""
    spin = work / "spin.awk"
    spin.write_text(SPIN_AWK)
    camp = work / f"{case.name.replace(' ', '_').replace(',', '').replace('/', '_')}.toml"
    camp.write_text(campaign_text(case, spin))
    runs = work / f"runs-{camp.stem}"
    env = {**os.environ, "PYTHONPATH": str(src)}
    cmd = [sys.executable, "-m", "perfmon", "run", "--headless", str(camp), "--runs-dir", str(runs)]
    t0 = time.time()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ps = psutil.Process(proc.pid)
    cpu_samples: list[tuple[float, float]] = []
    while proc.poll() is None:
        try:
            ct = ps.cpu_times()
            cpu_samples.append((time.time(), ct.user + ct.system))
        except psutil.Error:
            break
        time.sleep(0.5)
    _, err = proc.communicate()
    res = Result(case, exit_status=proc.returncode, run_s=time.time() - t0)
    run_dirs = sorted(runs.glob("*"))
    if not run_dirs:
        res.problems = err.decode(errors="replace")[-500:]
        return res
    rows = [
        json.loads(line)
        for line in (run_dirs[-1] / "sessions.jsonl").read_text().splitlines()
        if line.strip()
    ]
    rows.sort(key=lambda r: r["id"])
    ok = [r for r in rows if r["status"] == "ok" and r["wall_s"] is not None and r["cpu_s"]]
    res.wall_minus_cpu_ms = [1000 * (r["wall_s"] - r["cpu_s"]) for r in ok]
    res.gap_ms = [
        1000 * (b["start_t"] - a["end_t"])
        for a, b in itertools.pairwise(rows)
        if a["end_t"] is not None and b["start_t"] is not None
    ]
    if rows and rows[0]["start_t"] is not None:
        first, last = rows[0]["start_t"], max(r["end_t"] or 0 for r in rows)
        for (ta, ca), (tb, cb) in itertools.pairwise(cpu_samples):
            if ta >= first and tb <= last and tb > ta:
                res.daemon_share.append(100 * (cb - ca) / (tb - ta))
    report = run_dirs[-1] / "report.json"
    if report.exists():
        try:
            res.verdict = str(json.loads(report.read_text()).get("verdict", ""))
        except (ValueError, OSError):
            res.verdict = "?"
    if len(ok) < len(rows):
        res.problems = f"{len(rows) - len(ok)} sessions not ok"
    return res


def med_max(xs: list[float]) -> str:
    if not xs:
        return "-"
    return f"{statistics.median(xs):7.1f} / {max(xs):7.1f}"


def print_table(results: list[Result], label: str) -> None:
    print(f"\n{label}")
    head = (
        f"{'case':<26} {'n/var':>5}  {'wall-CPU ms med/max':>19}  {'gap ms med/max':>19}  "
        f"{'daemon CPU % med/max':>20}  {'verdict':<12} {'run s':>6}"
    )
    print(head)
    print("-" * len(head))
    for r in results:
        print(
            f"{r.case.name:<26} {r.case.per_variant:>5}  {med_max(r.wall_minus_cpu_ms):>19}  "
            f"{med_max(r.gap_ms):>19}  {med_max(r.daemon_share):>20}  "
            f"{(r.verdict or f'exit {r.exit_status}'):<12} {r.run_s:6.1f}"
            + (f"  ({r.problems})" if r.problems else "")
        )
    for r in results:
        if r.case.blocks and len(r.wall_minus_cpu_ms) >= 10:
            xs = r.wall_minus_cpu_ms
            k = max(1, len(xs) // 5)
            blocks = [xs[i : i + k] for i in range(0, len(xs), k)]
            shown = "  ".join(f"{statistics.median(b):.1f}" for b in blocks if b)
            print(f"{r.case.name}: wall-CPU median per block of {k} sessions (ms): {shown}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller cases (about a minute)")
    parser.add_argument(
        "--src", type=Path, default=HERE.parent / "src", help="perfmon source to run"
    )
    parser.add_argument("--case", action="append", default=[], help="only cases named so")
    args = parser.parse_args(argv)
    print(f"machine: {machine()}; perfmon from {args.src}")
    chosen = [c for c in cases(args.quick) if not args.case or c.name in args.case]
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="pm-iso-") as tmp:
        for case in chosen:
            work = Path(tmp)
            print(f"running {case.name} ({2 * case.per_variant} sessions) ...", flush=True)
            results.append(run_case(case, args.src.resolve(), work))
            r = results[-1]
            print(
                f"  wall-CPU ms {med_max(r.wall_minus_cpu_ms)}, gap ms {med_max(r.gap_ms)}, "
                f"daemon CPU % {med_max(r.daemon_share)}, {r.verdict or r.exit_status}",
                flush=True,
            )
    print_table(results, "A/A CPU-bound campaigns, one run each (perfmon run --headless)")
    by_name = {r.case.name: r for r in results}
    base, gated = by_name.get("no gates"), by_name.get("4 stat gates")
    if base and gated and base.wall_minus_cpu_ms and gated.wall_minus_cpu_ms:
        ratio = max(gated.wall_minus_cpu_ms) / max(1e-3, max(base.wall_minus_cpu_ms))
        emit(
            Figure(
                "timing isolation: max wall-CPU, 4 stat gates / no gates",
                ratio,
                "x",
                method="A/A mawk spin campaigns run one after the other in this run; "
                "max over sessions of wall - CPU",
                detail=f"{max(gated.wall_minus_cpu_ms):.1f} ms vs "
                f"{max(base.wall_minus_cpu_ms):.1f} ms",
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
