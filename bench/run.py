"""Run perfmon's benchmark suite: ``.venv/bin/python bench/run.py [NAME ...]``.

Each benchmark is a script in this directory that prints its figures (each a ratio against a
baseline measured in the same run, with its method) and appends them as JSON lines to
``$PERFMON_BENCH_JSON``. This runner starts each script in a fresh interpreter, one after the
other (never in parallel: they would disturb each other's timings), then prints one summary
table: figure, value, interval, budget, verdict. A budget is ``met`` only when the figure (its
whole interval, when it has one) is within it; ``not shown`` when the interval straddles the
limit; ``missed`` when it is outside. Exit status 0 when every budget is met, 1 when any is
missed or not shown, 2 when a script failed.

Options: ``--json PATH`` keeps the collected figures; names restrict the run to those
scripts (``probe ingest``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import MET, MISSED, NOT_SHOWN, machine  # noqa: E402

SCRIPTS = [
    "probe",
    "ingest",
    "storage",
    "startup",
    "viewer_cpu",
    "overhead",
    "soak_memory",
    "stats_honesty",
    "pyspy_overhead",
    "noise_cost",
    "launch_gap",
    "name_flood",
    "label_selections",
]
"""Benchmarks in running order; scripts not present (yet) are skipped."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    parser.add_argument("--json", type=Path, help="write the collected figures here")
    args = parser.parse_args(argv)
    names = args.names or [n for n in SCRIPTS if (HERE / f"{n}.py").exists()]
    print(f"machine: {machine()}")
    failed: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "figures.jsonl"
        out.touch()
        env = {**os.environ, "PERFMON_BENCH_JSON": str(out)}
        for name in names:
            script = HERE / f"{name}.py"
            print(f"\n== {name} ({script.relative_to(HERE.parent)})", flush=True)
            res = subprocess.run([sys.executable, str(script)], env=env, check=False)
            if res.returncode != 0:
                failed.append(name)
        figures = [json.loads(line) for line in out.read_text().splitlines() if line]
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "figures": figures}, indent=2))
    print("\n== summary")
    width = max((len(f["name"]) for f in figures), default=10)
    for f in figures:
        value = f"{f['value']:.4g} {f['unit']}"
        low, high = f.get("low"), f.get("high")
        interval = f"[{low:.4g} .. {high:.4g}]" if low is not None and high is not None else ""
        print(f"{f['name']:<{width}}  {value:>18}  {interval:>20}  {f['budget']:>14}  {verdict(f)}")
    for name in failed:
        print(f"{name}: FAILED (see its output above)")
    if failed:
        return 2
    return 0 if all(verdict(f) in ("", MET) for f in figures) else 1


def verdict(figure: dict[str, object]) -> str:
    """A figure's verdict: ``met``, ``missed``, ``not shown``, or ``""`` without a budget.

    A figure with a budget counts as met only when it says so: a missing or unknown
    ``met`` (older JSON lines without ``verdict``) is ``not shown``, never met.
    """
    if not figure.get("budget"):
        return ""
    given = figure.get("verdict")
    if given in (MET, MISSED, NOT_SHOWN):
        return str(given)
    met = figure.get("met")
    return MET if met is True else MISSED if met is False else NOT_SHOWN


if __name__ == "__main__":
    sys.exit(main())
