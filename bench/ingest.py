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

The metrics panel's split by a label (issue 11, ``LiveState.set_split``) folds each sample a
second time while a viewer shows it (nothing is split, and nothing is paid, while no viewer
asks for it). Its cost is measured on the live state alone, the one part it changes: the same
decoded batches folded with and without the split by ``variant``, in paired rounds; the extra
least time (least: the round least disturbed on a shared machine) is given as a share of the
least time of one columnar ingest round.
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
from perfmon.core.model import MetricKind, SessionSpec
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


SPEC = SessionSpec(
    id=1,
    workload="bench",
    variant="candidate",
    set_name="golden",
    index=0,
    warmup=False,
    argv=("true",),
    env=(),
    cwd="/",
    timeout_s=None,
    params=(("events", "512"),),
)


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
    live.add_session(SPEC)  # the session the decoder's samples belong to
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
    plain_s, split_s, own_s = live_fold_seconds(chunks)
    round_s = LINES / max(cols)  # the least time of one columnar ingest round
    own = median(own_s) / round_s
    emit(
        Figure(
            "split by a label: its own work, share of the ingest",
            100.0 * own,
            "%",
            "<= 5",
            own <= 0.05,
            "LiveState.split_work_s (queueing and folding the split, timed inside the live "
            "state) with set_split('variant') over the decoded batches, median of 9 rounds, "
            "over the least time of one columnar ingest round",
            f"{median(own_s) * 1e3:.0f} ms per {LINES:,} samples",
        )
    )
    # End to end, indirect costs included: the least time of each (the round least
    # disturbed by the other processes of a shared machine).
    extra = (min(split_s) - min(plain_s)) / round_s
    emit(
        Figure(
            "split by a label: live-state fold with / without, share of the ingest",
            100.0 * extra,
            "%",
            "<= 5",
            extra <= 0.05,
            "LiveState.add_batch over the same decoded batches with and without "
            "set_split('variant') (+ flush_split), 9 paired rounds; extra least time over "
            "the least time of one columnar ingest round",
            f"least {min(plain_s) * 1e3:.0f} ms unsplit, {min(split_s) * 1e3:.0f} ms split "
            f"(medians {median(plain_s) * 1e3:.0f} / {median(split_s) * 1e3:.0f} ms)",
        )
    )
    # The Prometheus endpoint's per-(metric, workload, variant, set) aggregates: the same
    # machinery, one row per metric here (one session), smaller reservoirs, no series.
    plain_g, groups_s, own_g = live_fold_seconds(chunks, mode="groups")
    emit(
        Figure(
            "/metrics groups: their own work, share of the ingest",
            100.0 * median(own_g) / round_s,
            "%",
            "",
            None,
            "LiveState.groups_work_s (queueing and folding, timed inside the live state) with "
            "track_groups over the decoded batches, median of 9 rounds, over the least time "
            "of one columnar ingest round; nothing is grouped without --metrics-addr",
            f"{median(own_g) * 1e3:.0f} ms per {LINES:,} samples",
        )
    )
    extra_g = (min(groups_s) - min(plain_g)) / round_s
    emit(
        Figure(
            "/metrics groups: live-state fold with / without, share of the ingest",
            100.0 * extra_g,
            "%",
            "",
            None,
            "LiveState.add_batch over the same decoded batches with and without track_groups "
            "(+ the fold at the snapshot), 9 paired rounds; extra least time over the least "
            "time of one columnar ingest round",
            f"least {min(plain_g) * 1e3:.0f} ms without, {min(groups_s) * 1e3:.0f} ms with "
            f"(medians {median(plain_g) * 1e3:.0f} / {median(groups_s) * 1e3:.0f} ms)",
        )
    )


def live_fold_seconds(
    chunks: list[bytes], rounds: int = 9, mode: str = "split"
) -> tuple[list[float], list[float], list[float]]:
    """Seconds to fold the decoded chunks into a fresh live state, without and with the
    split by variant (``mode="split"``) or the per-group aggregates of the Prometheus
    endpoint (``mode="groups"``, ``LiveState.track_groups``), in paired rounds (the order
    alternating), and their own work per round."""
    dec = Decoder(1)
    batches = [dec.feed_batch(chunk, 1_764_000_000.0 + i * 0.1) for i, chunk in enumerate(chunks)]
    plain: list[float] = []
    split: list[float] = []
    own: list[float] = []
    for r in range(rounds):
        for on in (False, True) if r % 2 == 0 else (True, False):
            live = LiveState(run_id="bench", campaign="bench", run_dir="/", started_t=0.0)
            live.add_session(SPEC)
            if on and mode == "split":
                live.set_split("variant", 0.0)
            elif on:
                live.track_groups(0.0)
            t0 = time.perf_counter()
            for batch in batches:
                live.add_batch(batch)
            live.flush_split()
            (split if on else plain).append(time.perf_counter() - t0)
            if on:
                own.append(live.split_work_s if mode == "split" else sum(live.groups_work_s))
    return plain, split, own


if __name__ == "__main__":
    main()
