"""Ingest throughput: decode + fold into live state + hand to the recorder, on one core.

Method. 400,000 probe lines as ``perfmon.probe`` writes them (``name value``, 8 metrics
interleaved, floats written with ``repr``) are cut into 64 KiB reads, as the supervisor reads a
pipe. Each round times the columnar path the engine uses (``Decoder.feed_batch`` ->
``LiveState.add_batch`` -> ``Recorder.add_batch``, then one ``Recorder.flush`` writing the Arrow
segment), and, as the baseline in the same run, a row path: the decoded lines as lists of
``Sample`` objects, handed over as ``SampleBatch.from_samples`` (what a caller holding rows
pays; the row methods ``Decoder.feed``, ``LiveState.add_samples`` and ``Recorder.add_samples``
are gone since issue 12). Rounds alternate; the
figure is the median over ``ROUNDS`` rounds, each with a fresh decoder, live state and recorder
(so it includes creating the aggregates and the segment file).

The probe itself sends binary frames (protocol version 2): the same 400,000 values as the probe
flushes them (``# PERFMON 2``, then per 100 ms flush one ``#B name kind count`` frame per metric,
here 40 flushes of 10,000 samples), through the same columnar path, are a third figure.
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Figure, emit, median
from perfmon.core.batch import SampleBatch
from perfmon.core.live import LiveState
from perfmon.core.model import MetricKind
from perfmon.core.protocol import Decoder, encode_frame, encode_header
from perfmon.engine.recorder import Recorder

LINES = 400_000
READ = 64 * 1024
ROUNDS = 5
NAMES = [
    "event_queue_depth",
    "chunk_seconds",
    "payload_bytes",
    "chunks_total",
    "compression_ratio",
    "expert_seconds",
    "causal_trace_bytes",
    "cache_hit_ratio",
]


def make_chunks() -> list[bytes]:
    rng = random.Random(7)
    text = "".join(f"{NAMES[i % 8]} {rng.random() * 100!r}\n" for i in range(LINES)).encode()
    return [text[i : i + READ] for i in range(0, len(text), READ)]


def make_frame_chunks(flushes: int = 40) -> list[bytes]:
    """The same values as the probe sends them: binary frames, one per metric per flush."""
    rng = random.Random(7)
    per = LINES // flushes // len(NAMES)
    parts = [encode_header().encode()]
    for _ in range(flushes):
        for name in NAMES:
            parts.append(
                encode_frame(name, MetricKind.GAUGE, [rng.random() * 100 for _ in range(per)])
            )
    data = b"".join(parts)
    return [data[i : i + READ] for i in range(0, len(data), READ)]


def run(chunks: list[bytes], columnar: bool, tmp: Path) -> float:
    dec = Decoder(1)
    live = LiveState(run_id="bench", campaign="bench", run_dir=str(tmp), started_t=0.0)
    rec = Recorder(Path(tempfile.mkdtemp(dir=tmp)))
    now = 1_764_000_000.0
    t0 = time.perf_counter()
    n = 0
    for i, chunk in enumerate(chunks):
        if columnar:
            batch = dec.feed_batch(chunk, now + i * 0.1)
            live.add_batch(batch)
            rec.add_batch(batch)
            n += len(batch)
        else:
            rows = list(dec.feed_batch(chunk, now + i * 0.1))
            live.add_batch(SampleBatch.from_samples(rows))
            rec.add_batch(SampleBatch.from_samples(rows))
            n += len(rows)
    rec.flush()
    dt = time.perf_counter() - t0
    rec.close()
    if n != LINES or dec.malformed:
        raise SystemExit(f"ingest bench: {n} samples, {dec.malformed} malformed")
    return n / dt


def main() -> None:
    chunks = make_chunks()
    frames = make_frame_chunks()
    cols, rows, framed = [], [], []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for _ in range(ROUNDS):
            cols.append(run(chunks, True, tmp))
            rows.append(run(chunks, False, tmp))
            framed.append(run(frames, True, tmp))
    rate = median(cols)
    emit(
        Figure(
            "ingest (decode + live state + recorder)",
            rate,
            "samples/s",
            ">= 1,000,000",
            rate >= 1e6,
            f"{LINES:,} probe lines in 64 KiB reads, columnar path, median of {ROUNDS} rounds",
            "rounds " + ", ".join(f"{x / 1e6:.2f}M" for x in cols),
        )
    )
    frate = median(framed)
    emit(
        Figure(
            "ingest of binary frames (what the probe sends)",
            frate,
            "samples/s",
            ">= 1,000,000",
            frate >= 1e6,
            f"{LINES:,} values in probe v2 frames (40 flushes x 8 metrics), 64 KiB reads, "
            f"columnar path, median of {ROUNDS} rounds",
            "rounds " + ", ".join(f"{x / 1e6:.2f}M" for x in framed),
        )
    )
    emit(
        Figure(
            "ingest columnar / row-by-row Sample path",
            rate / median(rows),
            "x",
            "",
            None,
            "the same lines as row Sample objects through SampleBatch.from_samples, "
            "rounds interleaved",
            f"row path {median(rows) / 1e6:.2f}M samples/s",
        )
    )


if __name__ == "__main__":
    main()
