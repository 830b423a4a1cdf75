"""Bytes per sample of a compacted recording (``samples.parquet``, ZSTD).

Method. A synthetic but realistic run is recorded through ``Recorder`` exactly as the engine
does (one ``add_batch`` per pipe read, a flush per second, ``close`` compacting to Parquet):
20 sessions of 60 s each, each emitting 8 probe metrics at 10,000 samples/s in total
(stamped on receipt, one read every 100 ms; values by kind: integer queue depths and byte
sizes, counter increments of 1, full-precision floats for timings and ratios), plus
``rss_bytes`` and three machine-wide metrics every 200 ms. The figure is the file size over
the number of rows. Baseline in the same run: the same rows written with
``pyarrow.parquet.write_table`` defaults for ZSTD (no sorting, no column encodings), and the
raw 8+4+4+8+4 = 28 bytes of one uncompressed row.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pyarrow.parquet as pq

from _common import Figure, emit
from perfmon.core.batch import SampleBatch
from perfmon.core.model import SYSTEM_SESSION, MetricKind
from perfmon.engine.recorder import SAMPLES_PARQUET, SAMPLES_SCHEMA, Recorder, read_run

SESSIONS = 20
SECONDS = 60
RATE = 10_000
METRICS = [
    ("event_queue_depth", MetricKind.GAUGE),
    ("chunk_seconds", MetricKind.HISTOGRAM),
    ("payload_bytes", MetricKind.HISTOGRAM),
    ("chunks_total", MetricKind.COUNTER),
    ("compression_ratio", MetricKind.GAUGE),
    ("expert_seconds", MetricKind.HISTOGRAM),
    ("causal_trace_bytes", MetricKind.GAUGE),
    ("cache_hit_ratio", MetricKind.GAUGE),
]


def batches(rng: np.random.Generator) -> list[SampleBatch]:
    out: list[SampleBatch] = []
    t0 = 1_764_000_000.0
    per_read = RATE // 10
    names = tuple(m for m, _ in METRICS)
    kinds = tuple(k for _, k in METRICS)
    for s in range(SESSIONS):
        start = t0 + s * SECONDS
        level = rng.uniform(1, 100, len(METRICS))
        for r in range(SECONDS * 10):
            t = start + r * 0.1 + rng.uniform(0, 0.002)
            keys = np.arange(per_read, dtype=np.int32) % len(METRICS)
            # By kind, as workloads emit them: integer levels and sizes, counter increments
            # of 1, and full-precision floats (timings from perf_counter, ratios).
            values = level[keys] * rng.lognormal(0.0, 0.1, per_read)
            values[keys == 0] = np.floor(values[keys == 0])  # queue depth
            values[keys == 2] = np.floor(values[keys == 2] * 1e3)  # payload bytes
            values[keys == 3] = 1.0  # counter increments
            values[keys == 6] = np.floor(values[keys == 6] * 1e5)  # trace bytes
            values[keys == 1] *= 1e-4  # chunk seconds
            values[keys == 5] *= 1e-6  # expert seconds
            values[keys == 4] /= 100.0  # ratios
            values[keys == 7] /= 100.0
            out.append(
                SampleBatch(
                    np.full(per_read, t),
                    np.full(per_read, s, np.int64),
                    keys,
                    values,
                    names,
                    kinds,
                )
            )
            if r % 2 == 1:  # every 200 ms (close to the default 250 ms)
                rss = float(200_000_000 + int(rng.integers(0, 4096)) * 4096)
                sysv = [rng.uniform(20, 30), rng.uniform(0, 100), rng.uniform(10, 12)]
                out.append(
                    SampleBatch(
                        np.full(4, t),
                        np.array([s, SYSTEM_SESSION, SYSTEM_SESSION, SYSTEM_SESSION], np.int64),
                        np.arange(4, dtype=np.int32),
                        np.array([rss, *sysv]),
                        (
                            "rss_bytes",
                            "system_memory_percent",
                            "system_cpu_percent",
                            "system_load_ratio",
                        ),
                        (MetricKind.GAUGE,) * 4,
                    )
                )
    return out


def main() -> None:
    rng = np.random.default_rng(11)
    data = batches(rng)
    with tempfile.TemporaryDirectory() as d:
        run_dir = Path(d) / "run"
        run_dir.mkdir()
        rec = Recorder(run_dir)
        for i, b in enumerate(data):
            rec.add_batch(b)
            if i % 10 == 9:
                rec.flush()
        rec.close()
        path = run_dir / SAMPLES_PARQUET
        table = read_run(run_dir).samples
        rows = table.num_rows
        size = path.stat().st_size
        plain = Path(d) / "plain.parquet"
        pq.write_table(table.cast(SAMPLES_SCHEMA), plain, compression="zstd", compression_level=3)
        plain_size = plain.stat().st_size
    per = size / rows
    emit(
        Figure(
            "compacted recording",
            per,
            "bytes/sample",
            "<= 5",
            per <= 5,
            f"{rows:,} samples ({SESSIONS} sessions x {SECONDS} s at {RATE:,} samples/s, plus "
            "RSS and system metrics) recorded by Recorder and compacted on close",
            f"{size:,} bytes; baseline write_table(zstd) of the same rows "
            f"{plain_size / rows:.2f} bytes/sample (ratio {size / plain_size:.2f}); "
            "raw row 28 bytes",
        )
    )


if __name__ == "__main__":
    main()
