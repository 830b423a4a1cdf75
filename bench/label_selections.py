"""The cost of gates' label selections on the live state's ingest path (issue 11).

Method. 400,000 values in probe v2 binary frames (the probe's wire form: 40 flushes x 8
metrics) from 4 sessions (baseline/candidate x events 128/512, 10 flushes each) are decoded
and folded into a ``LiveState``; one state has no gate selections, the other the selections of
three gates (``p95(chunk_seconds{variant="candidate"})``, ``p95(chunk_seconds)`` with
``by = ["events"]``, ``max(event_queue_depth{workload="w"})``), which fold the matching
sessions' samples into aggregates of their own. Rounds alternate; the figure is the ratio of the
medians over ``ROUNDS`` rounds, measured in one run.

Run: ``python bench/label_selections.py``.
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Figure, emit, median
from perfmon.core.gates import Reduce, live_selections, parse_gate
from perfmon.core.live import LiveState
from perfmon.core.model import MetricKind, SessionSpec
from perfmon.core.protocol import Decoder, encode_frame, encode_header

LINES = 400_000
FLUSHES = 40
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
SESSIONS = [("baseline", "128"), ("candidate", "128"), ("baseline", "512"), ("candidate", "512")]


class _Gate:
    def __init__(self, expr: str, by: tuple[str, ...] = ()) -> None:
        self.name = expr
        self.gate = parse_gate(expr)
        self.window_s = None
        self.by = by


GATES = [
    _Gate('p95(chunk_seconds{variant="candidate"}) < 1ms'),
    _Gate("p95(chunk_seconds) < 1ms", ("events",)),
    _Gate('max(event_queue_depth{workload="w"}) < 100'),
]


def make_streams() -> list[bytes]:
    """One byte stream per session: the header, then its share of the flushes."""
    rng = random.Random(7)
    per = LINES // FLUSHES // len(NAMES)
    streams = []
    for _ in SESSIONS:
        parts = [encode_header().encode()]
        for _ in range(FLUSHES // len(SESSIONS)):
            for name in NAMES:
                values = [rng.random() * 100 for _ in range(per)]
                parts.append(encode_frame(name, MetricKind.GAUGE, values))
        streams.append(b"".join(parts))
    return streams


def run(streams: list[bytes], selections: bool) -> float:
    live = LiveState(
        run_id="bench",
        campaign="bench",
        run_dir="/tmp",
        started_t=0.0,
        selections=live_selections(GATES) if selections else (),
    )
    for sid, (variant, events) in enumerate(SESSIONS):
        live.add_session(
            SessionSpec(sid, "w", variant, "golden", sid, False, ("x",), (), "/", None,
                        (("events", events),))
        )  # fmt: skip
    now = 1_764_000_000.0
    n = 0
    t0 = time.perf_counter()
    for sid, data in enumerate(streams):
        dec = Decoder(sid)
        for i in range(0, len(data), 64 * 1024):
            batch = dec.feed_batch(data[i : i + 64 * 1024], now + i * 1e-6)
            live.add_batch(batch)
            n += len(batch)
    dt = time.perf_counter() - t0
    if n != LINES // FLUSHES // len(NAMES) * FLUSHES * len(NAMES):
        raise SystemExit(f"label bench: {n} samples")
    if selections:
        lhs = GATES[0].gate.lhs
        if not isinstance(lhs, Reduce):
            raise SystemExit(f"label bench: {GATES[0].name!r} is not one reduction")
        value, count = live.reduce("quantile", "chunk_seconds", q=0.95, where=lhs.matchers)
        if value is None or count != n // len(NAMES) // 2:
            raise SystemExit(f"label bench: candidate selection has {count} samples")
    return n / dt


def main() -> None:
    streams = make_streams()
    plain, labelled = [], []
    for _ in range(ROUNDS):
        plain.append(run(streams, False))
        labelled.append(run(streams, True))
    ratio = median(labelled) / median(plain)
    rate = median(labelled)
    how = (
        f"{LINES:,} values in probe v2 frames from 4 sessions, decode + LiveState.add_batch, "
        f"median of {ROUNDS} rounds each, interleaved"
    )
    emit(
        Figure(
            "live ingest with 3 gates' label selections",
            rate,
            "samples/s",
            ">= 300,000 (design.md: hundreds of thousands per second on one core)",
            rate >= 3e5,
            how,
            "rounds " + ", ".join(f"{x / 1e6:.2f}M" for x in labelled),
        )
    )
    emit(
        Figure(
            "live ingest with those selections / without",
            ratio,
            "x",
            "",
            None,
            how + "; the selections' own aggregates fold 5/16 of the samples once more "
            "(the candidate's chunk_seconds, every chunk_seconds by events, event_queue_depth)",
            f"without {median(plain) / 1e6:.2f}M samples/s",
        )
    )


if __name__ == "__main__":
    main()
