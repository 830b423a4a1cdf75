"""py-spy's cost on a CPU-bound Python workload: sampled at 100 Hz, blocking and non-blocking.

Method. A CPU-bound workload (a pure-Python loop of fixed work: recursive ``fib``, no I/O)
starts, waits ``SETTLE_S`` so that py-spy can attach, then times its fixed work with
``time.perf_counter`` and prints the seconds. Each round runs it three times, in a rotating
order: unsampled; sampled by ``py-spy record --pid PID --format raw --function --rate 100``
(py-spy's default, blocking: it pauses the process while reading its stacks); and the same
with ``--nonblocking``. The figures are, per mode, the median over rounds of the slowdown of
that round's sampled work time against the same round's unsampled one, in percent (0 = no
overhead), and py-spy's own CPU time per second attached, each with a distribution-free
order-statistic confidence interval for the median (``_common.median_interval``). This is how
perfmon's profiler runs py-spy (``perfmon.engine.profiler``), against the session's pid.

Budgets (judged on the interval: met only when the whole interval is within the budget):
py-spy at 100 Hz may slow the sampled workload by at most ``WALL_BUDGET_PERCENT`` = 5% of its
wall time and use at most ``CPU_BUDGET`` = 0.05 CPU-seconds per second (5% of one core).
Profiling is opt-in and transient (one key in the viewer, or a campaign's profile setting),
unlike the always-on monitoring held to 1% (``bench/overhead.py``); 5% is the ceiling the
streaming-pipeline report perfmon replaces set on its total monitoring overhead (design.md
section 1); py-spy's README describes its overhead as extremely low without giving a number,
so the budget is perfmon's own, stated here and in docs/performance.md.

A last figure checks design.md's "the probe leaves no frames in the user's profiles": a
probe-heavy workload (a loop computing and emitting two samples per turn, ``PROBE_WORKLOAD``)
runs under perfmon's probe (``PERFMON_FD`` a pipe this process drains) and is recorded for
``PROFILE_S`` seconds by ``py-spy record --threads --idle --format raw`` (every thread, idle
or not); the figure is the number of samples with perfmon code that is not under the user's
own emitting function (a probe thread, or probe frames anywhere else). Budget: 0. The probe
frames under the user's call are the real cost of emitting and are shown in the detail.

Usage: ``.venv/bin/python bench/pyspy_overhead.py [--rounds 7] [--work 27] [--rate 100]``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Figure, emit, judge, machine, median, median_interval
from perfmon.engine.profiler import find_py_spy

SETTLE_S = 1.0
WALL_BUDGET_PERCENT = 5.0
"""Most a 100 Hz py-spy may slow the sampled workload, in % of its wall time (see above)."""
CPU_BUDGET = 0.05
"""Most CPU-seconds per second py-spy itself may use while attached (5% of one core)."""

WORKLOAD = """
import sys, time
def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)
time.sleep(float(sys.argv[2]))
t0 = time.perf_counter()
fib(int(sys.argv[1]))
print(time.perf_counter() - t0, flush=True)
"""


def run_once(
    script: Path, work: int, mode: str, py_spy: str, rate: int, out_dir: Path
) -> tuple[float, float]:
    """Run the workload once in ``mode`` (``none``, ``blocking``, ``nonblocking``).

    Returns:
        ``(work_s, spy_cpu_s)``: the workload's timed work in seconds, and py-spy's own CPU
        time (user + system, from ``wait4``) in seconds (0 unsampled).
    """
    proc = subprocess.Popen(
        [sys.executable, str(script), str(work), str(SETTLE_S)],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    spy = None
    if mode != "none":
        argv = [
            py_spy,
            "record",
            "--pid",
            str(proc.pid),
            "--format",
            "raw",
            "--function",
            "--rate",
            str(rate),
            "--output",
            str(out_dir / f"{mode}-{proc.pid}.txt"),
        ]
        if mode == "nonblocking":
            argv.append("--nonblocking")
        spy = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
    out, _ = proc.communicate()
    spy_cpu = 0.0
    if spy is not None:
        assert spy.stderr is not None
        err = spy.stderr.read()
        _, status, usage = os.wait4(spy.pid, 0)
        spy.returncode = os.waitstatus_to_exitcode(status)
        spy_cpu = usage.ru_utime + usage.ru_stime
        if spy.returncode != 0:
            raise SystemExit(f"py-spy failed: {err.decode(errors='replace')[-500:]}")
    if proc.returncode != 0:
        raise SystemExit(f"workload failed with status {proc.returncode}")
    return float(out.strip()), spy_cpu


PROFILE_S = 2

PROBE_WORKLOAD = """
import sys, time
from perfmon import probe

def user_loop(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        x = 0
        for k in range(200):
            x += k * k
        probe.gauge("event_queue_depth", x)
        probe.count("chunks_total")

print("ready", flush=True)
user_loop(float(sys.argv[1]))
"""


def _drain(fd: int) -> None:
    """Read ``fd`` to EOF, as perfmon reads a probe channel (the data is not needed here)."""
    while os.read(fd, 1 << 16):
        pass


def probe_profile(script: Path, py_spy: str, rate: int, out: Path) -> tuple[int, int, int, int]:
    """Profile ``PROBE_WORKLOAD`` under the probe with py-spy (all threads, idle included).

    Returns:
        ``(samples, threads, foreign, under_user)``: all samples, distinct threads, samples
        with a perfmon frame not under ``user_loop``, samples with probe frames under it.
    """
    r, w = os.pipe()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERFMON_")}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(PROFILE_S + 2)],
        env={**env, "PERFMON_FD": str(w)},
        pass_fds=(w,),
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    os.close(w)
    drain = threading.Thread(target=_drain, args=(r,))
    drain.start()
    try:
        assert proc.stdout is not None
        if proc.stdout.readline() != b"ready\n":
            raise SystemExit("probe workload did not start")
        subprocess.run(
            [
                *(py_spy, "record", "--pid", str(proc.pid), "--duration", str(PROFILE_S)),
                *("--rate", str(rate), "--format", "raw", "--threads", "--idle"),
                *("--output", str(out)),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=True,
        )
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        drain.join()
        os.close(r)
        if proc.stdout is not None:
            proc.stdout.close()
    samples = foreign = under_user = 0
    threads: set[str] = set()
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames, n = stack.split(";"), int(count)
        samples += n
        threads.add(frames[0])
        at = [i for i, f in enumerate(frames) if "perfmon/" in f]
        if not at:
            continue
        if any(f.startswith("user_loop (") for f in frames[: at[0]]):
            under_user += n
        else:
            foreign += n
    return samples, len(threads), foreign, under_user


def main(argv: list[str] | None = None) -> None:
    """Measure and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (default 7)")
    parser.add_argument(
        "--work", type=int, default=33, help="fib(N) computed per run (default 33, about 1 s)"
    )
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples/s (default 100)")
    args = parser.parse_args(argv)
    py_spy = find_py_spy()
    if py_spy is None:
        raise SystemExit("py-spy is not installed (pip install py-spy)")
    modes = ["none", "blocking", "nonblocking"]
    times: dict[str, list[float]] = {m: [] for m in modes}
    spy_cpu: dict[str, list[float]] = {m: [] for m in modes}
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "fib_work.py"
        script.write_text(WORKLOAD)
        for r in range(args.rounds):
            order = modes[r % 3 :] + modes[: r % 3]
            for mode in order:
                work_s, cpu_s = run_once(script, args.work, mode, py_spy, args.rate, Path(tmp))
                times[mode].append(work_s)
                spy_cpu[mode].append(cpu_s / (work_s + SETTLE_S))
        heavy = Path(tmp) / "probe_heavy.py"
        heavy.write_text(PROBE_WORKLOAD)
        profile = probe_profile(heavy, py_spy, args.rate, Path(tmp) / "probe_profile.txt")
    print(f"machine: {machine()}; {os.cpu_count()} CPUs; py-spy {py_spy}")
    for mode in modes:
        print(f"  {mode:>11}: work s per round " + " ".join(f"{t:.3f}" for t in times[mode]))
    for mode in ("blocking", "nonblocking"):
        pct = [(s / u - 1) * 100 for s, u in zip(times[mode], times["none"], strict=True)]
        low, high, level = median_interval(pct)
        emit(
            Figure(
                name=f"py-spy {args.rate} Hz {mode}: slowdown of CPU-bound work",
                value=median(pct),
                unit="% wall",
                budget=f"<= {WALL_BUDGET_PERCENT:g}",
                method=(
                    f"median over {args.rounds} interleaved rounds of fib({args.work}) wall time"
                    f" sampled by py-spy --pid ({mode}) over the same round's unsampled run, "
                    "minus 1; order-statistic CI of the median"
                ),
                detail="per-round % " + " ".join(f"{x:+.2f}" for x in pct),
                low=low,
                high=high,
                level=level,
                verdict=judge(low, high, WALL_BUDGET_PERCENT, level=level),
            )
        )
        cpu = spy_cpu[mode]
        low, high, level = median_interval(cpu)
        emit(
            Figure(
                name=f"py-spy {args.rate} Hz {mode}: its own CPU per second sampled",
                value=median(cpu),
                unit="CPU s/s",
                budget=f"<= {CPU_BUDGET:g}",
                method=(
                    "median over rounds of py-spy's user+system CPU time (wait4 rusage) divided"
                    " by the seconds it was attached (settle time + work time); order-statistic"
                    " CI of the median"
                ),
                detail="per-round " + " ".join(f"{x:.4f}" for x in cpu),
                low=low,
                high=high,
                level=level,
                verdict=judge(low, high, CPU_BUDGET, level=level),
            )
        )
    samples, threads, foreign, under_user = profile
    emit(
        Figure(
            name="py-spy samples in perfmon's own code, probe-heavy workload",
            value=foreign,
            unit="samples",
            budget="<= 0",
            verdict="met" if foreign == 0 else "missed",
            method=(
                f"py-spy record --threads --idle at {args.rate} Hz for {PROFILE_S} s of a loop "
                "emitting 2 samples per turn; samples with a perfmon frame not under the "
                "user's own emitting function"
            ),
            detail=(
                f"{samples} samples, {threads} thread(s); {under_user} "
                f"({100 * under_user / max(samples, 1):.1f}%) in probe calls under the user's "
                "function (the real cost of emitting)"
            ),
        )
    )


if __name__ == "__main__":
    main()
