"""A workload emitting 100,000 distinct metric names: ingest rate, memory and snapshot size.

Method. The ingest path the engine uses (``Decoder.feed_batch`` -> ``LiveState.add_batch`` ->
``Recorder.add_batch``, one ``Recorder.flush`` at the end) is fed, in 64 KiB reads, either
400,000 probe lines over 8 names (the baseline, as in bench/ingest.py) or 400,000 lines over
100,000 distinct names (4 samples each; the metric-name cap, 1,000 by default, drops 99%).
Rounds alternate; each figure is the median over ``ROUNDS`` rounds with fresh objects. The
flood's Python heap growth (tracemalloc peak, one separate round: tracing slows everything)
and the JSON size of a snapshot after it are reported too.

Before the caps (issue 13) the same flood drove the daemon to 2.23 GB and its snapshots to
23.6 MB.
"""

from __future__ import annotations

import json
import random
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Figure, emit, median
from perfmon.core.live import LiveState
from perfmon.core.protocol import Decoder
from perfmon.engine.recorder import Recorder

LINES = 400_000
READ = 64 * 1024
ROUNDS = 3


def make_chunks(names: int) -> list[bytes]:
    rng = random.Random(7)
    text = "".join(
        f"flood_{i % names:06d}_total {rng.random() * 100!r}\n" for i in range(LINES)
    ).encode()
    return [text[i : i + READ] for i in range(0, len(text), READ)]


def run(chunks: list[bytes], tmp: Path) -> tuple[float, LiveState]:
    dec = Decoder(1)
    live = LiveState(run_id="bench", campaign="bench", run_dir=str(tmp), started_t=0.0)
    rec = Recorder(Path(tempfile.mkdtemp(dir=tmp)))
    now = 1_764_000_000.0
    t0 = time.perf_counter()
    n = 0
    for i, chunk in enumerate(chunks):
        batch = dec.feed_batch(chunk, now + i * 0.1)
        rec.add_batch(live.add_batch(batch))
        n += len(batch)
    rec.flush()
    dt = time.perf_counter() - t0
    rec.close()
    if n != LINES or dec.malformed:
        raise SystemExit(f"name-flood bench: {n} samples, {dec.malformed} malformed")
    return n / dt, live


def main() -> None:
    normal, flood = make_chunks(8), make_chunks(100_000)
    base, hostile = [], []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for _ in range(ROUNDS):
            base.append(run(normal, tmp)[0])
            rate, live = run(flood, tmp)
            hostile.append(rate)
        tracemalloc.start()
        _, live = run(flood, tmp)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    snap = live.snapshot(now=time.time(), state="finished")
    size = len(json.dumps(snap.to_dict()))
    emit(
        Figure(
            "ingest of a 100,000-name flood / of 8 names",
            median(hostile) / median(base),
            "x",
            "",
            None,
            f"{LINES:,} lines in 64 KiB reads through decoder, live state (caps) and recorder, "
            f"rounds interleaved, median of {ROUNDS}",
            f"flood {median(hostile) / 1e6:.2f}M samples/s, 8 names "
            f"{median(base) / 1e6:.2f}M samples/s; {snap.dropped_text()}",
        )
    )
    emit(
        Figure(
            "heap peak while ingesting the flood",
            peak / 2**20,
            "MiB",
            "",
            None,
            "tracemalloc peak over one round (decoder, live state, recorder buffers)",
        )
    )
    emit(
        Figure(
            "snapshot after the flood",
            size / 1024,
            "KiB",
            "< 512",
            size < 512 * 1024,
            "json.dumps(Snapshot.to_dict()), as the control socket sends it "
            "(23.6 MB before the caps)",
            f"{len(snap.metrics)} of {snap.metrics_total} metrics carried",
        )
    )


if __name__ == "__main__":
    main()
