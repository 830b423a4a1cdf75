"""The viewer's CPU with 10,000 samples/s flowing and 200 sessions in the table.

Method. A real detached run (``perfmon run CAMPAIGN --detach``, in a private runtime and runs
directory) of one workload with ``SESSIONS`` = 200 sessions, run one after the other: sessions
0-198 emit one sample of each of ``METRICS`` = 10 metrics and exit at once (they fill the
table); the last session emits ``RATE`` = 10,000 samples/s through the probe (``observe``,
spread over the 10 metrics, paced in 10 ms ticks) until the run is stopped. Once that session
runs and the daemon has counted samples for ``WARM_S`` seconds, the real viewer,
``perfmon attach RUN`` at the default refresh (4 Hz), is started inside tmux at 100x30
(``tmux new-session -d -x 100 -y 30``); its process is found with psutil under the tmux
pane. After ``WARM_S`` seconds (its start-up, not counted), its CPU time
(``psutil.Process.cpu_times`` user + system) is read over ``MEASURE_S`` seconds of wall time:
the figure is that CPU time / wall time, as % of one core. The daemon's own CPU (not its
sessions) is measured over the same window for context, and the sample rate actually flowing
is read from the daemon's snapshots (``samples_total`` / ``now_t``) just before and after the
window. The pane is captured at the end to check that the viewer shows the sessions table.

The campaign has two variants (``baseline``, ``candidate``, interleaved), so the viewer shows
the comparison panel (issue 14) for the per-session metrics of their 199 quick sessions.

Before/after. ``python viewer_cpu.py --before SRC`` measures twice in one invocation: first
with the perfmon source tree ``SRC`` (e.g. ``git archive <commit> src | tar -x -C /tmp/base``,
then ``--before /tmp/base/src``) first on ``PYTHONPATH`` for the daemon and the viewer alike
(an older viewer cannot read a newer daemon's snapshots), then with this checkout's; it reports
both figures and their ratio (after / before), measured minutes apart on the same machine.

``python viewer_cpu.py --workload SESSIONS`` is the workload itself (the campaign's command).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import Figure, emit  # noqa: E402

SESSIONS = 200
RATE = 10_000
"""Samples per second the last session emits."""
METRICS = 10
TICK_S = 0.01
WARM_S = 5.0
MEASURE_S = 20.0
BUDGET_PCT = 10.0
PYSPY_OUT = os.environ.get("PERFMON_BENCH_PYSPY", "")
"""When set, py-spy records the viewer for ``MEASURE_S`` more seconds after the window, into
this file (raw collapsed stacks), to profile it."""

_CAMPAIGN = """
[campaign]
name = "viewercpu"
runs_dir = {runs}

[[workload]]
name = "flow"
command = ["{{python}}", {script}, "--workload", "{sessions}"]
timeout = "10min"

[variant.baseline]
env = {{ FLOW = "a" }}
[variant.candidate]
env = {{ FLOW = "b" }}

[set.fill]
sessions = {per_variant}
order = "interleaved"
"""


def workload(sessions: int) -> None:
    """The campaign's command: a quick session, or the last one, which emits ``RATE``/s."""
    from perfmon import probe

    sid = int(os.environ.get("PERFMON_SESSION", "0"))
    names = [f"flow_metric_{i}_seconds" for i in range(METRICS)]
    if sid < sessions - 1:
        for i, name in enumerate(names):
            probe.observe(name, 0.001 * (i + 1))
        probe.flush()
        return
    per_tick = int(RATE * TICK_S)
    observe = probe.observe
    next_t = time.perf_counter()
    n = 0
    while True:  # until perfmon stops the session
        for _ in range(per_tick):
            observe(names[n % METRICS], 0.001 * (n % 97))
            n += 1
        next_t += TICK_S
        delay = next_t - time.perf_counter()
        if delay > 0:
            time.sleep(delay)


def _perfmon(env: dict[str, str], *args: str) -> str:
    exe = str(Path(sys.executable).parent / "perfmon")
    res = subprocess.run([exe, *args], env=env, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise SystemExit(f"viewer_cpu bench: perfmon {args[0]} failed: {res.stderr or res.stdout}")
    return res.stdout


def _snapshot(sock: Path):  # type: ignore[no-untyped-def]
    from perfmon.engine.client import SocketClient

    client = SocketClient(sock, control=False)
    client.connect(timeout_s=10)
    try:
        deadline = time.monotonic() + 10
        while (snap := client.latest()) is None:
            if time.monotonic() > deadline:
                raise SystemExit("viewer_cpu bench: no snapshot from the daemon")
            time.sleep(0.02)
        return snap
    finally:
        client.close()


def _cpu(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


def _find_viewer(pane_pid: int, timeout_s: float = 15.0) -> psutil.Process:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            procs = [psutil.Process(pane_pid), *psutil.Process(pane_pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            break
        for p in procs:
            try:
                if "attach" in p.cmdline():
                    return p
            except psutil.NoSuchProcess:
                continue
        time.sleep(0.05)
    raise SystemExit("viewer_cpu bench: the viewer process did not start in tmux")


class Measured(NamedTuple):
    viewer_pct: float
    daemon_pct: float
    rate: float
    rows: int
    fill_s: float
    comparison: bool


def measure(src: Path) -> Measured:
    """One detached run and one viewer, both importing perfmon from ``src`` first."""
    with tempfile.TemporaryDirectory(prefix="perfmon-viewer-cpu-") as tmp_s:
        tmp = Path(tmp_s)
        runtime = tmp / "rt"
        runtime.mkdir(mode=0o700)
        pythonpath = os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")]).rstrip(":")
        env = {**os.environ, "PERFMON_RUNTIME_DIR": str(runtime), "PYTHONPATH": pythonpath}
        env.pop("PERFMON_FD", None)
        campaign = tmp / "viewer_cpu.toml"
        campaign.write_text(
            _CAMPAIGN.format(
                runs=f'"{tmp / "runs"}"',
                script=f'"{Path(__file__).resolve()}"',
                sessions=SESSIONS,
                per_variant=SESSIONS // 2,
            )
        )
        out = _perfmon(env, "run", str(campaign), "--detach")
        m = re.search(r"started run (\S+) \(daemon pid (\d+)\)", out)
        if m is None:
            raise SystemExit(f"viewer_cpu bench: unexpected output {out!r}")
        run_id, daemon = m.group(1), psutil.Process(int(m.group(2)))
        sock = runtime / f"{run_id}.sock"  # perfmon.engine.daemon.socket_path's layout
        session = f"perfmon-viewer-cpu-{os.getpid()}"
        try:
            t_fill = time.monotonic()
            while True:
                snap = _snapshot(sock)
                if snap.sessions_done >= SESSIONS - 1 and snap.samples_total > 0:
                    break
                if time.monotonic() - t_fill > 300:
                    raise SystemExit("viewer_cpu bench: the table did not fill in 5 min")
                time.sleep(1.0)
            fill_s = time.monotonic() - t_fill
            time.sleep(WARM_S)
            perfmon_exe = str(Path(sys.executable).parent / "perfmon")
            subprocess.run(
                [
                    "tmux", "new-session", "-d", "-s", session, "-x", "100", "-y", "30",
                    "env", f"PERFMON_RUNTIME_DIR={runtime}", f"PYTHONPATH={pythonpath}",
                    perfmon_exe, "attach", run_id,
                ],
                check=True,
            )  # fmt: skip
            pane_pid = int(
                subprocess.run(
                    ["tmux", "display-message", "-p", "-t", session, "#{pane_pid}"],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
            )
            viewer = _find_viewer(pane_pid)
            time.sleep(WARM_S)
            s0 = _snapshot(sock)
            w0, v0, d0 = time.perf_counter(), _cpu(viewer), _cpu(daemon)
            time.sleep(MEASURE_S)
            w1, v1, d1 = time.perf_counter(), _cpu(viewer), _cpu(daemon)
            s1 = _snapshot(sock)
            if PYSPY_OUT:
                subprocess.run(
                    [
                        str(Path(sys.executable).parent / "py-spy"), "record",
                        "--nonblocking", "--gil",
                        "-o", PYSPY_OUT, "--format", "raw", "--pid", str(viewer.pid),
                        "-d", str(int(MEASURE_S)),
                    ],
                    check=False,
                )  # fmt: skip
            screen = subprocess.run(
                ["tmux", "capture-pane", "-p", "-t", session],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        finally:
            subprocess.run(["tmux", "kill-session", "-t", session], check=False)
            subprocess.run(
                [str(Path(sys.executable).parent / "perfmon"), "stop", run_id],
                env=env,
                capture_output=True,
                check=False,
            )
    if "Sessions" not in screen:
        raise SystemExit(f"viewer_cpu bench: the viewer did not show its tables:\n{screen}")
    wall = w1 - w0
    return Measured(
        viewer_pct=100 * (v1 - v0) / wall,
        daemon_pct=100 * (d1 - d0) / wall,
        rate=(s1.samples_total - s0.samples_total) / max(s1.now_t - s0.now_t, 1e-9),
        rows=len(s1.sessions),
        fill_s=fill_s,
        comparison="Comparison" in screen,
    )


def _figure(name: str, m: Measured) -> Figure:
    return Figure(
        name,
        m.viewer_pct,
        "% of a core",
        f"<= {BUDGET_PCT:g}%",
        m.viewer_pct <= BUDGET_PCT,
        f"real `perfmon attach` in tmux at 100x30, default 4 Hz refresh, psutil cpu_times "
        f"delta over {MEASURE_S:g} s of wall time",
        f"daemon {m.daemon_pct:.1f}% of a core in the same window; {m.rate:,.0f} samples/s "
        f"flowing; {m.rows} session rows; table filled in {m.fill_s:.0f} s; comparison "
        f"panel {'shown' if m.comparison else 'absent'}",
    )


def main(before: Path | None) -> None:
    if shutil.which("tmux") is None:
        raise SystemExit("viewer_cpu bench: needs tmux")
    here = HERE.parent / "src"
    if before is None:
        emit(_figure("viewer CPU, 10k samples/s and 200 sessions", measure(here)))
        return
    old = measure(before)
    new = measure(here)
    emit(_figure(f"viewer CPU before ({before})", old))
    emit(_figure("viewer CPU after (this checkout)", new))
    emit(
        Figure(
            "viewer CPU after / before",
            new.viewer_pct / max(old.viewer_pct, 1e-9),
            "x",
            method="the two figures above, measured one after the other in one invocation",
            detail=f"{new.viewer_pct:.2f}% / {old.viewer_pct:.2f}% of a core",
        )
    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--workload":
        workload(int(sys.argv[2]))
    elif len(sys.argv) > 2 and sys.argv[1] == "--before":
        main(Path(sys.argv[2]).resolve())
    else:
        main(None)
