"""Cost of the report formats on a large run: report.html against report.md + report.json.

Method. A run of 40 sessions (2 variants, interleaved) with 2,000,000 samples in all (a gated
gauge, a histogram, a counter, ``session_seconds``) is recorded through ``Recorder`` and
closed. Then, in one process, interleaved ``REPEAT`` times: (a) ``read_run`` +
``build_report`` + render md and json (what every run already paid), (b) render html, csv,
junit and github from the same report and data. Figures: the median time of each format over
the median of (a), the size of report.html, and the number of points in its largest chart
(bounded by ``TIME_BUCKETS`` whatever the run's size).
"""

from __future__ import annotations

import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Figure, emit, median
from perfmon.core.batch import SampleBatch
from perfmon.core.model import (
    GateResult,
    GateState,
    MetricKind,
    SessionResult,
    SessionSpec,
    SessionStatus,
)
from perfmon.engine.exporters import render
from perfmon.engine.recorder import Recorder, read_run
from perfmon.engine.report import build_report, render_markdown

SESSIONS = 40
SAMPLES = 2_000_000
REPEAT = 3
METRICS = (
    ("event_queue_depth", MetricKind.GAUGE),
    ("chunk_seconds", MetricKind.HISTOGRAM),
    ("chunks_total", MetricKind.COUNTER),
)
GATES = [
    GateResult("Queue", "max(event_queue_depth) < 100", GateState.PASS, 90.0, 1, "max = 90"),
    GateResult("Chunk", "p95(chunk_seconds) < 1ms", GateState.FAIL, 0.002, 1, "p95 = 2 ms"),
]


def record(run_dir: Path) -> None:
    rng = np.random.default_rng(1)
    rec = Recorder(run_dir)
    rec.write_manifest({"run_id": run_dir.name, "campaign": {"name": "bench", "gates": []}})
    per = SAMPLES // SESSIONS
    t0 = 1_764_000_000.0
    for sid in range(SESSIONS):
        variant = ("baseline", "candidate")[sid % 2]
        wall = 10.0 * (1.0 if variant == "baseline" else 0.7) * rng.lognormal(0, 0.05)
        start = t0 + sid * 11.0
        keys = (np.arange(per) % len(METRICS)).astype(np.int32)
        values = rng.lognormal(0, 0.5, per)
        values[keys == 0] = np.floor(values[keys == 0] * 30)
        values[keys == 2] = 1.0
        rec.add_batch(
            SampleBatch(
                t=np.sort(rng.uniform(start, start + wall, per)),
                session=np.full(per, sid, np.int32),
                key=keys,
                value=values,
                metrics=tuple(m for m, _ in METRICS),
                kinds=tuple(k for _, k in METRICS),
            )
        )
        rec.flush()
        spec = SessionSpec(
            id=sid, workload="w", variant=variant, set_name="golden", index=sid // 2,
            warmup=False, argv=("x",), env=(), cwd="/", timeout_s=None, params=(),
        )  # fmt: skip
        r = SessionResult(spec=spec, start_t=start, end_t=start + wall, status=SessionStatus.OK)
        r.wall_s = wall
        rec.session_finished(r)
    rec.close()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        run_dir.mkdir()
        record(run_dir)
        base: list[float] = []
        per_format: dict[str, list[float]] = {f: [] for f in ("html", "csv", "junit", "github")}
        page = ""
        for _ in range(REPEAT):
            t = time.perf_counter()
            data = read_run(run_dir)
            report = build_report(data, GATES, verdict="fail")
            render_markdown(report)
            render("json", report, data)
            base.append(time.perf_counter() - t)
            for fmt, times in per_format.items():
                t = time.perf_counter()
                text = render(fmt, report, data)
                times.append(time.perf_counter() - t)
                if fmt == "html":
                    page = text
        b = median(base)
        for fmt, times in per_format.items():
            emit(
                Figure(
                    f"report {fmt} / (read_run + build_report + md + json)",
                    median(times) / b,
                    "x",
                    method=f"medians of {REPEAT} interleaved renders of a {SAMPLES:,}-sample run",
                    detail=f"{fmt} {median(times):.3f} s, baseline {b:.3f} s",
                )
            )
        charts = re.findall(r"data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)", page)
        emit(
            Figure(
                "report.html size",
                len(page.encode()),
                "bytes",
                method=f"{len(charts)} charts, time series in <= 600 buckets, self-contained",
            )
        )


if __name__ == "__main__":
    main()
