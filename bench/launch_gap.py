"""The gap between sessions, and what a session of ``true`` costs, under perfmon and hyperfine.

``.venv/bin/python bench/launch_gap.py [--runs N]`` (default 200) measures, in one run:

1. **perfmon**: a headless run of a campaign with one workload, ``stamp FILE`` (a 10-line C
   program, as cheap as ``true``, that appends its ``CLOCK_MONOTONIC`` start time to FILE),
   N sessions. The *gap* of each pair of sessions is the next session's recorded start minus
   the previous one's recorded end (``sessions.jsonl``'s ``start_t`` / ``end_t``, stamped by
   the keeper); the *period* is the difference of consecutive stamps the program itself wrote.
2. **hyperfine** (``hyperfine -N --runs N --export-json``), when installed, running the same
   ``stamp FILE``: its period from the stamps, and its gap as the period minus the run's time
   hyperfine reports (hyperfine's times include its own spawn, so that gap is a lower bound).
3. **cost of a ``true`` session**: a second headless run of ``["true"]`` (N sessions): median
   wall and CPU (``wall_s``, ``cpu_s``) against a bare ``/bin/true`` started N times by this
   script with ``os.posix_spawn`` + ``os.wait4`` (its rusage) right before.

Figures are medians and 95th percentiles in milliseconds; the machine is shared and noisy, so
compare the columns of one run, not runs.
"""

from __future__ import annotations

import argparse
import collections
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import Figure, emit, machine  # noqa: E402

STAMP_C = r"""
#include <fcntl.h>
#include <stdio.h>
#include <time.h>
int main(int argc, char **argv) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    int fd = open(argv[1], O_WRONLY | O_APPEND | O_CREAT, 0600);
    dprintf(fd, "%lld\n", (long long)t.tv_sec * 1000000000LL + t.tv_nsec);
    return 0;
}
"""


def pct(xs: list[float], q: float) -> float:
    """The ``q``-quantile (0..1) of ``xs`` (nearest rank)."""
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def ms(xs: list[float]) -> str:
    return f"median {statistics.median(xs) * 1e3:7.3f} ms   p95 {pct(xs, 0.95) * 1e3:7.3f} ms"


def perfmon_run(
    tmp: Path, name: str, command: list[str], runs: int, src: Path | None = None
) -> list[dict[str, object]]:
    """Run a one-workload campaign headless (perfmon from ``src``, default this checkout's);
    return its sessions.jsonl rows in order."""
    toml = tmp / f"{name}.toml"
    toml.write_text(
        f'[campaign]\nname = "{name}"\n\n'
        f'[[workload]]\nname = "{name}"\ncommand = {json.dumps(command)}\n\n'
        f"[set.golden]\nsessions = {runs}\n"
    )
    runs_dir = tmp / f"runs-{name}"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "perfmon",
            "run",
            str(toml),
            "--headless",
            "--runs-dir",
            str(runs_dir),
        ],
        check=False,
        stdout=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(src or HERE.parent / "src")},
    )
    (run_dir,) = [p for p in runs_dir.iterdir() if p.is_dir()]
    rows = [json.loads(line) for line in (run_dir / "sessions.jsonl").read_text().splitlines()]
    rows.sort(key=lambda r: int(r["id"]))
    bad = [r for r in rows if r["status"] != "ok"]
    if bad:
        raise SystemExit(f"{len(bad)} session(s) of {name} did not end ok: {bad[0]['error']}")
    return rows


CHAIN_DEPTH = 8
"""Sessions queued in the keeper ahead of the one running, in the chained measurement."""


def supervisor_gaps(tmp: Path, command: list[str], runs: int) -> tuple[list[float], list[float]]:
    """Gaps of ``runs`` sessions run by a bare ``Supervisor``: one after the other (each
    ``run_session`` awaited before the next), and chained (``CHAIN_DEPTH`` sessions queued in
    the keeper with ``after=`` ahead of the one running)."""
    import asyncio

    sys.path.insert(0, str(HERE.parent / "src"))
    from perfmon.core.model import SessionSpec
    from perfmon.engine.supervisor import Supervisor

    def spec(i: int) -> SessionSpec:
        return SessionSpec(i, "w", "v", "s", i, False, tuple(command), (), str(tmp), None)

    def gaps(results: list) -> list[float]:  # type: ignore[type-arg]
        return [b.start_t - a.end_t for a, b in itertools.pairwise(results)]

    async def main() -> tuple[list[float], list[float]]:
        sup = Supervisor(
            log_dir=tmp / "sup-logs",
            log_cap_bytes=10_000,
            sample_interval_s=0.25,
            grace_s=1.0,
            on_samples=lambda b: None,
            on_update=lambda r: None,
        )
        await sup.start()
        try:
            sequential = [await sup.run_session(spec(i)) for i in range(runs)]
            chained = []
            ahead: collections.deque[asyncio.Task] = collections.deque()  # type: ignore[type-arg]
            for i in range(runs, 2 * runs):
                after = i - 1 if i > runs else None
                ahead.append(asyncio.create_task(sup.run_session(spec(i), after=after)))
                await asyncio.sleep(0)  # its request reaches the keeper before the next one
                if len(ahead) > CHAIN_DEPTH:
                    chained.append(await ahead.popleft())
            while ahead:
                chained.append(await ahead.popleft())
        finally:
            sup.close()
        return gaps(sequential), gaps(chained)

    return asyncio.run(main())


def stamps(path: Path) -> list[float]:
    return [int(x) / 1e9 for x in path.read_text().split()]


def bare_true(runs: int) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds of ``/bin/true`` started with posix_spawn and reaped with wait4."""
    true = shutil.which("true") or "/bin/true"
    walls, cpus = [], []
    for _ in range(runs):
        pid = os.posix_spawn(true, ["true"], dict(os.environ))
        t1 = time.monotonic()  # after the exec, as the keeper stamps a session's start
        _, _, ru = os.wait4(pid, 0)
        t2 = time.monotonic()
        walls.append(t2 - t1)
        cpus.append(ru.ru_utime + ru.ru_stime)
    return walls, cpus


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="sessions per measurement")
    parser.add_argument(
        "--baseline-src",
        type=Path,
        help="also run perfmon from this source tree (e.g. an older checkout's src/) on the "
        "same `stamp` campaign, right after this one, for a before/after in one run",
    )
    args = parser.parse_args()
    n = args.runs
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory(prefix="launch-gap-") as tmp_s:
        tmp = Path(tmp_s)
        stamp = tmp / "stamp"
        (tmp / "stamp.c").write_text(STAMP_C)
        subprocess.run(["cc", "-O2", "-o", str(stamp), str(tmp / "stamp.c")], check=True)

        # 1. perfmon, stamp
        pm_file = tmp / "perfmon.stamps"
        rows = perfmon_run(tmp, "gap", [str(stamp), str(pm_file)], n)
        pm_gap = [
            float(b["start_t"]) - float(a["end_t"])  # type: ignore[arg-type]
            for a, b in itertools.pairwise(rows)
        ]
        st = stamps(pm_file)
        pm_period = [b - a for a, b in itertools.pairwise(st)]
        base_gap: list[float] = []
        if args.baseline_src is not None:
            base_rows = perfmon_run(
                tmp, "base", [str(stamp), str(tmp / "base.stamps")], n, args.baseline_src
            )
            base_gap = [
                float(b["start_t"]) - float(a["end_t"])  # type: ignore[arg-type]
                for a, b in itertools.pairwise(base_rows)
            ]

        # 2. hyperfine, stamp
        hf = shutil.which("hyperfine")
        hf_gap: list[float] = []
        hf_period: list[float] = []
        if hf:
            hf_file = tmp / "hyperfine.stamps"
            export = tmp / "hf.json"
            subprocess.run(
                [
                    hf,
                    "-N",
                    "--runs",
                    str(n),
                    "--warmup",
                    "0",
                    "--style",
                    "none",
                    "--export-json",
                    str(export),
                    f"{stamp} {hf_file}",
                ],
                check=True,
                stdout=subprocess.DEVNULL,
            )
            times = json.loads(export.read_text())["results"][0]["times"]
            st = stamps(hf_file)[-n:]  # hyperfine may run it once more to calibrate the shell
            hf_period = [b - a for a, b in itertools.pairwise(st)]
            hf_gap = [p - t for p, t in zip(hf_period, times, strict=False)]

        # 2b. a bare Supervisor, sequential and chained (after=)
        sup_seq, sup_chain = supervisor_gaps(tmp, [str(stamp), str(tmp / "sup.stamps")], n)

        # 3. cost of `true`: bare, then under perfmon
        bare_wall, bare_cpu = bare_true(n)
        true_rows = perfmon_run(tmp, "true", ["true"], n)
        pm_wall = [float(r["wall_s"]) for r in true_rows]  # type: ignore[arg-type]
        pm_cpu = [float(r["cpu_s"]) for r in true_rows]  # type: ignore[arg-type]

    print(f"\n{n} runs each")
    print(f"gap (end -> next start)   perfmon   {ms(pm_gap)}")
    if base_gap:
        print(f"                          perfmon from {args.baseline_src}  {ms(base_gap)}")
    if hf:
        print(f"                          hyperfine {ms(hf_gap)}  (period - its run time)")
    print(f"                          Supervisor, one after the other  {ms(sup_seq)}")
    print(f"                          Supervisor, chained (after=)     {ms(sup_chain)}")
    print(f"period (start -> start)   perfmon   {ms(pm_period)}")
    if hf:
        print(f"                          hyperfine {ms(hf_period)}")
    else:
        print("                          hyperfine not installed (apt-get install hyperfine)")
    print(f"`true` wall               perfmon   {ms(pm_wall)}")
    print(f"                          bare      {ms(bare_wall)}  (posix_spawn return to wait4)")
    print(f"`true` CPU                perfmon   {ms(pm_cpu)}")
    print(f"                          bare      {ms(bare_cpu)}  (wait4 rusage)\n")

    gap = statistics.median(pm_gap)
    emit(
        Figure(
            "launch gap, median",
            gap * 1e3,
            "ms",
            "< 5",
            gap < 0.005,
            "recorded end of a session of a C `stamp` program to the recorded start of the next, "
            f"{n} sessions, headless",
            f"p95 {pct(pm_gap, 0.95) * 1e3:.3f} ms"
            + (f"; hyperfine gap median {statistics.median(hf_gap) * 1e3:.3f} ms" if hf else "")
            + (
                f"; baseline source median {statistics.median(base_gap) * 1e3:.3f} ms"
                if base_gap
                else ""
            ),
        )
    )
    chain = statistics.median(sup_chain)
    emit(
        Figure(
            "launch gap, chained sessions (after=), median",
            chain * 1e3,
            "ms",
            "< 5",
            chain < 0.005,
            f"Supervisor.run_session(spec, after=previous), {CHAIN_DEPTH} queued ahead in the "
            f"keeper, {n} sessions of `stamp`; recorded end to next start",
            f"p95 {pct(sup_chain, 0.95) * 1e3:.3f} ms; one after the other: median "
            f"{statistics.median(sup_seq) * 1e3:.3f} ms",
        )
    )
    if hf:
        ratio = statistics.median(pm_period) / statistics.median(hf_period)
        emit(
            Figure(
                "launch period / hyperfine's",
                ratio,
                "x",
                method="median start-to-start interval of the same `stamp` program, "
                "perfmon headless against hyperfine -N, same run",
            )
        )
    cpu_ratio = statistics.median(pm_cpu) / statistics.median(bare_cpu)
    emit(
        Figure(
            "CPU of `true` session / bare `true`",
            cpu_ratio,
            "x",
            method="median cpu_s of a perfmon session of `true` against rusage of "
            "posix_spawn+wait4 of /bin/true, same run",
            detail=f"{statistics.median(pm_cpu) * 1e3:.3f} ms vs "
            f"{statistics.median(bare_cpu) * 1e3:.3f} ms",
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
