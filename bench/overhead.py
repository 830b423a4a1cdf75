"""perfmon's overhead on a CPU-bound workload emitting 10,000 samples/s, psutil and recording on.

Method. ``overhead_workload.py`` runs fixed pure-Python work and calls ``probe.observe`` once
per step; the number of work iterations per step is calibrated (bare, in this run) so that a
step takes ``STEP_S`` = 100 us, i.e. 10,000 samples/s, for ``STEPS`` steps (about 4 s). Then,
``ROUNDS`` times, in alternating order:

- **bare**: the workload run directly (no ``PERFMON_FD``, so every probe call is a no-op);
- **perfmon**: the same command as the single session of a real campaign run with
  ``perfmon run --headless`` (psutil sampling of the session's process tree every 250 ms, the
  default; the probe channel decoded, folded into live state and recorded to the run directory;
  gates evaluated at the end).

The figure is the workload's own wall time (its timing loop, final probe flush included,
written to a file by the workload) under perfmon over bare, per round; the median of the
rounds is reported. perfmon's start-up and report time are outside the loop and not counted:
they do not slow the workload. The run's recorded sample count is checked against ``STEPS``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import Figure, emit, median  # noqa: E402

WORKLOAD = HERE / "overhead_workload.py"
STEP_S = 100e-6
"""Seconds per step: one sample per step gives 10,000 samples/s."""
STEPS = 40_000
ROUNDS = 7

_CAMPAIGN = """
[campaign]
name = "overhead"

[[workload]]
name = "cpu"
command = ["{{python}}", {script}, "{steps}", "{work}", {out}]
timeout = "120s"
"""


def _bare_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PERFMON_")}


def _read_elapsed(path: Path) -> float:
    return float(path.read_text().split()[0])


def run_bare(steps: int, work: int, out: Path) -> float:
    """Run the workload without perfmon; return its loop's wall seconds."""
    subprocess.run(
        [sys.executable, str(WORKLOAD), str(steps), str(work), str(out)],
        env=_bare_env(),
        check=True,
    )
    return _read_elapsed(out)


def run_perfmon(work: int, out: Path, runs: Path) -> float:
    """Run the workload as a real headless perfmon campaign; return its loop's wall seconds."""
    campaign = runs / "overhead.toml"
    campaign.write_text(
        _CAMPAIGN.format(script=f'"{WORKLOAD}"', steps=STEPS, work=work, out=f'"{out}"')
    )
    perfmon = [sys.executable, "-m", "perfmon", "run", "--headless", "--runs-dir", str(runs)]
    res = subprocess.run(
        [*perfmon, str(campaign)], env=_bare_env(), capture_output=True, text=True, check=False
    )
    if res.returncode not in (0, 1):  # 1: a gate failed (there are none here)
        raise SystemExit(f"perfmon run failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
    recorded = sorted(runs.glob("*/samples.parquet"))[-1]
    table = pq.read_table(recorded, columns=["metric"])
    n = sum(1 for m in table.column("metric").to_pylist() if m == "step_value")
    if n != STEPS:
        raise SystemExit(f"overhead bench: perfmon recorded {n} step samples, expected {STEPS}")
    for run_dir in runs.iterdir():
        if run_dir.is_dir():
            subprocess.run(["rm", "-rf", str(run_dir)], check=True)
    return _read_elapsed(out)


def calibrate(out: Path) -> int:
    """Work iterations per step giving ``STEP_S`` seconds per step, measured bare."""
    work = 100
    for _ in range(3):
        per_step = run_bare(5000, work, out) / 5000
        work = max(1, round(work * STEP_S / per_step))
    return work


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        out = root / "elapsed.txt"
        work = calibrate(out)
        bare_s: list[float] = []
        mon_s: list[float] = []
        ratios: list[float] = []
        for r in range(ROUNDS):
            if r % 2 == 0:
                b = run_bare(STEPS, work, out)
                m = run_perfmon(work, out, root)
            else:
                m = run_perfmon(work, out, root)
                b = run_bare(STEPS, work, out)
            bare_s.append(b)
            mon_s.append(m)
            ratios.append(m / b)
    ratio = median(ratios)
    rate = STEPS / median(bare_s)
    emit(
        Figure(
            "overhead on a CPU-bound workload at 10k samples/s (psutil + recording)",
            (ratio - 1) * 100,
            "% wall",
            "<= 1",
            ratio - 1 <= 0.01,
            f"{ROUNDS} interleaved rounds, bare run vs the same command as a real "
            "`perfmon run --headless` session (psutil every 250 ms, recording on); the "
            "workload's own loop time; median of per-round ratios",
            f"{rate:,.0f} samples/s bare; bare {median(bare_s):.3f} s, perfmon "
            f"{median(mon_s):.3f} s (medians); per-round ratios "
            + ", ".join(f"{x:.4f}" for x in ratios),
        )
    )


if __name__ == "__main__":
    main()
