"""CPU cost of running the daemon under ``PYTHONMALLOC=malloc`` instead of pymalloc (issue 13).

The daemon runs with glibc's ``malloc`` for every Python object (``perfmon.engine.heap``), so
that its freed memory can be returned by ``malloc_trim``. pymalloc is faster for small
objects; this bench measures by how much on the daemon's hot paths, each in a fresh child
process started with ``PYTHONMALLOC=pymalloc`` or ``PYTHONMALLOC=malloc``, alternating
(A B A B ...), so that a change in the machine's load hits both sides alike:

- **ingest, text lines**: 400,000 probe lines (``bench/ingest.py``'s) decoded, folded into a
  ``LiveState`` and handed to a ``Recorder`` (columnar path), samples/s;
- **ingest, binary frames**: the same values as the probe sends them, samples/s;
- **snapshot**: a ``LiveState`` holding 1,000 finished sessions and 12 metrics; one snapshot
  built (``LiveState.snapshot``), turned into a dict and encoded as the control socket sends
  it (``perfmon.engine.daemon.encode``), snapshots/s (the daemon does this 4 times a second).

The figure per path is the median over pairs of (malloc rate / pymalloc rate): 1.0 means no
cost, 0.9 means 10% slower under malloc.

Run: ``PYTHONPATH=src .venv/bin/python bench/allocator_cost.py [--pairs N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import Figure, emit  # noqa: E402


def child() -> None:
    """Measure the three paths once in this process; print JSON rates."""
    import ingest
    from perfmon.core.batch import SampleBatch
    from perfmon.core.live import LiveState
    from perfmon.core.model import MetricKind, Sample, SessionResult, SessionSpec, SessionStatus
    from perfmon.engine.daemon import encode

    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        out["ingest_text"] = ingest.run(ingest.make_chunks(), True, tmp)
        out["ingest_frames"] = ingest.run(ingest.make_frame_chunks(), True, tmp)
    live = LiveState(run_id="b", campaign="b", run_dir="/tmp", started_t=0.0)
    for i in range(1_000):
        spec = SessionSpec(
            id=i,
            workload="w",
            variant=("baseline", "candidate")[i % 2],
            set_name="canary",
            index=i // 2,
            warmup=False,
            argv=("true",),
            env=(),
            cwd="/tmp",
            timeout_s=None,
        )
        live.add_session(spec)
        live.add_batch(
            SampleBatch.from_samples(
                [
                    Sample(i + k * 0.01, i, f"m{k}_seconds", k * 0.5, MetricKind.GAUGE)
                    for k in range(12)
                ]
            )
        )
        live.update_session(
            SessionResult(
                spec=spec,
                status=SessionStatus.OK,
                exit_code=0,
                start_t=float(i),
                end_t=i + 0.5,
                wall_s=0.5,
                cpu_s=0.4,
            )
        )
    n = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < 2.0:
        snap = live.snapshot(now=2_000.0, state="running")
        encode({"type": "snapshot", "snapshot": snap.to_dict()})
        n += 1
    out["snapshot"] = n / (time.perf_counter() - t0)
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=4, help="pymalloc/malloc pairs (default 4)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child()
        return
    results: dict[str, list[dict[str, float]]] = {"pymalloc": [], "malloc": []}
    for i in range(args.pairs):
        order = ("pymalloc", "malloc") if i % 2 == 0 else ("malloc", "pymalloc")
        for allocator in order:
            env = {**os.environ, "PYTHONMALLOC": allocator}
            out = subprocess.run(
                [sys.executable, __file__, "--child"],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            results[allocator].append(json.loads(out.stdout.strip().splitlines()[-1]))
    for path, unit in (
        ("ingest_text", "samples/s"),
        ("ingest_frames", "samples/s"),
        ("snapshot", "snapshots/s"),
    ):
        ratios = [
            m[path] / p[path] for p, m in zip(results["pymalloc"], results["malloc"], strict=True)
        ]
        emit(
            Figure(
                f"{path}: malloc / pymalloc rate",
                round(statistics.median(ratios), 3),
                "x",
                method=f"{args.pairs} pairs of fresh processes, alternating order; median of "
                "the per-pair ratios",
                detail="pymalloc "
                + ", ".join(f"{r[path]:,.0f}" for r in results["pymalloc"])
                + f" {unit}; malloc "
                + ", ".join(f"{r[path]:,.0f}" for r in results["malloc"])
                + "; ratios "
                + ", ".join(f"{x:.2f}" for x in ratios),
            )
        )


if __name__ == "__main__":
    main()
