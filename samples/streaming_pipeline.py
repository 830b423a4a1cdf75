"""A chunked streaming pipeline that reports its own overheads through the perfmon probe.

This is the workload behind the streaming-pipeline report (design.md section 1): a synthetic
event stream is fed by a bursty producer into an event queue and drained chunk by chunk. Each
chunk goes through three stages:

1. **carry-over selection**: the events carried from earlier chunks and those of the previous
   chunk are scored by their best Jaccard similarity (|A ∩ B| / |A ∪ B| of token sets) to an
   event of the current chunk; carried events scoring at least ``--min-similarity`` stay, and
   the ``--carry-per-chunk`` best-scoring events of the previous chunk above that similarity
   join them;
2. **compression**: when the carry-over grows longer than ``--compress-threshold`` events it is
   summarised by k-means clustering of the events' token-incidence vectors (Lloyd's algorithm,
   numpy), each cluster becoming one event holding the tokens shared by at least half of its
   members;
3. **causal-trace recording**: each event is linked to recent events (within ``--trace-horizon``
   seconds of stream time) that share one of its tokens, at most ``--max-fanin`` parents, in a
   dict that grows for the whole run; its memory is measured with ``sys.getsizeof`` as entries
   are added.

The Jaccard step has two implementations, chosen by ``--impl`` or the ``PIPELINE_IMPL``
environment variable: ``python`` (a pure-Python loop over pairs of token sets, the baseline)
and ``numpy`` (one integer matrix product of token-incidence matrices, the candidate). Both
compute the same similarities exactly, so every non-timing metric is identical between them.

Metrics (probe protocol v1, docs/protocol.md):

- ``event_queue_depth`` (gauge, events): events still queued after each chunk;
- ``causal_trace_bytes`` (gauge, bytes): measured size of the causal-trace DAG after each chunk;
- ``chunks_total`` (counter): one per chunk processed;
- ``events_total`` (counter): events processed;
- ``compressions_total`` (counter): one per carry-over compression;
- ``chunk_seconds`` (histogram, via ``probe.timer``): processing time of each chunk;
- ``carryover_seconds``, ``compression_seconds``, ``trace_record_seconds`` (histograms):
  per-stage times within a chunk.

Outside perfmon (``PERFMON_FD`` unset) the probe calls do nothing and the script runs alone.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

# A pipeline stage runs on one thread, and its matrices (about 100 x 256) are far too small to
# gain from BLAS threads: on a 2-core machine OpenBLAS' threads only add contention spikes to
# the chunk latency. Set before numpy loads OpenBLAS; the environment may still override it.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

from perfmon import probe  # noqa: E402

# An event: (id, timestamp in stream seconds, type, sorted token tuple).
Event = tuple[int, float, int, tuple[int, ...]]

# Markov-modulated Poisson arrivals: per producer tick, the chance of a calm stream entering a
# burst and of a burst ending. The stationary share of burst ticks is P_ENTER / (P_ENTER + P_EXIT)
# (two-state Markov chain), 1/8 here; bursts last 1 / P_EXIT = 4 ticks on average.
P_ENTER_BURST = 1.0 / 28.0
P_EXIT_BURST = 0.25


@dataclass
class Stats:
    """Counts kept for the human summary printed at the end."""

    events: int = 0
    compressions: int = 0
    carried: int = 0
    max_depth: int = 0
    depths: list[int] = field(default_factory=list)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line.

    Args:
        argv: arguments without the program name; None reads ``sys.argv``.

    Returns:
        The parsed options.
    """
    p = argparse.ArgumentParser(
        description="Chunked streaming pipeline (event queue, Jaccard carry-over, "
        "carry-over compression, causal-trace DAG) reporting through the perfmon probe."
    )
    p.add_argument("--chunks", type=int, default=300, help="chunks to process (default 300)")
    p.add_argument("--chunk-size", type=int, default=64, help="events per chunk (default 64)")
    p.add_argument(
        "--load",
        type=float,
        default=0.8,
        help="mean arrival rate as a fraction of the processing rate (default 0.8)",
    )
    p.add_argument(
        "--burstiness",
        type=float,
        default=3.0,
        help="arrival-rate multiplier during bursts (default 3.0; 1 = no bursts)",
    )
    p.add_argument(
        "--compress-threshold",
        type=int,
        default=48,
        help="compress the carry-over when it holds more events than this (default 48)",
    )
    p.add_argument(
        "--min-similarity",
        type=float,
        default=0.25,
        help="Jaccard similarity an event needs to be carried over (default 0.25)",
    )
    p.add_argument(
        "--carry-per-chunk",
        type=int,
        default=8,
        help="most events of a chunk that join the carry-over (default 8)",
    )
    p.add_argument("--vocab", type=int, default=256, help="token vocabulary size (default 256)")
    p.add_argument(
        "--trace-horizon",
        type=float,
        default=2.0,
        help="causal-trace look-back in stream seconds (default 2.0)",
    )
    p.add_argument("--max-fanin", type=int, default=8, help="parents per event (default 8)")
    p.add_argument(
        "--impl",
        choices=("python", "numpy"),
        default=os.environ.get("PIPELINE_IMPL", "python"),
        help="Jaccard implementation (default: $PIPELINE_IMPL or python)",
    )
    p.add_argument("--seed", type=int, default=0, help="RNG seed (default 0)")
    args = p.parse_args(argv)
    if args.impl not in ("python", "numpy"):
        p.error(f"PIPELINE_IMPL must be python or numpy, not {args.impl!r}")
    if args.chunks < 1 or args.chunk_size < 1 or args.compress_threshold < 2:
        p.error("--chunks and --chunk-size must be >= 1 and --compress-threshold >= 2")
    if args.load <= 0 or args.burstiness < 1:
        p.error("--load must be > 0 and --burstiness >= 1")
    return args


class Producer:
    """Bursty synthetic event source (Markov-modulated Poisson arrivals, Zipf-like tokens).

    Args:
        rng: the random generator (all randomness of the run comes from it).
        mean_rate: long-run mean of events per tick.
        burstiness: rate multiplier while in a burst (>= 1).
        vocab: number of distinct tokens; token k is drawn with probability ∝ 1/(k+1)
            (Zipf's law with exponent 1), so a few tokens are shared widely.
        n_types: number of event types.
    """

    def __init__(
        self,
        rng: np.random.Generator,
        mean_rate: float,
        burstiness: float,
        vocab: int,
        n_types: int = 8,
    ) -> None:
        self.rng = rng
        burst_share = P_ENTER_BURST / (P_ENTER_BURST + P_EXIT_BURST)
        # Solve calm * ((1 - share) + share * burstiness) = mean_rate for the calm rate.
        self.calm_rate = mean_rate / ((1.0 - burst_share) + burst_share * burstiness)
        self.burstiness = burstiness
        self.in_burst = False
        weights = 1.0 / np.arange(1, vocab + 1, dtype=np.float64)
        self.token_p = weights / weights.sum()
        self.vocab = vocab
        self.n_types = n_types
        self.next_id = 0
        self.clock = 0.0

    def tick(self) -> list[Event]:
        """Produce the events arriving during one tick (one chunk's processing time).

        Returns:
            The new events, in arrival order, with increasing timestamps (stream seconds,
            exponential inter-arrival times at the tick's rate).
        """
        rng = self.rng
        if self.in_burst:
            self.in_burst = rng.random() >= P_EXIT_BURST
        else:
            self.in_burst = rng.random() < P_ENTER_BURST
        rate = self.calm_rate * (self.burstiness if self.in_burst else 1.0)
        n = int(rng.poisson(rate))
        if n == 0:
            return []
        gaps = rng.exponential(1.0 / rate, size=n) if rate > 0 else np.zeros(n)
        stamps = self.clock + np.cumsum(gaps)
        self.clock = float(stamps[-1])
        types = rng.integers(0, self.n_types, size=n)
        lengths = rng.integers(3, 9, size=n)  # 3..8 draws per event, duplicates collapse
        draws = rng.choice(self.vocab, size=(n, 8), p=self.token_p)
        events: list[Event] = []
        for i in range(n):
            tokens = tuple(sorted(set(draws[i, : lengths[i]].tolist())))
            events.append((self.next_id, float(stamps[i]), int(types[i]), tokens))
            self.next_id += 1
        return events


def best_jaccard_python(cands: Sequence[Event], targets: Sequence[Event]) -> list[float]:
    """Best Jaccard similarity of each candidate to any target, as a pure-Python pair loop.

    Args:
        cands: events to score (length n).
        targets: events to compare against (length m).

    Returns:
        n floats in [0, 1]: max over targets of |A ∩ B| / |A ∪ B| of the token sets
        (0.0 when there are no targets).
    """
    target_sets = [set(t[3]) for t in targets]
    out: list[float] = []
    for c in cands:
        a = set(c[3])
        la = len(a)
        best = 0.0
        for b in target_sets:
            inter = len(a & b)
            j = inter / (la + len(b) - inter)
            if j > best:
                best = j
        out.append(best)
    return out


def incidence(events: Sequence[Event], vocab: int) -> np.ndarray:
    """Token-incidence matrix of events.

    Args:
        events: n events.
        vocab: vocabulary size.

    Returns:
        An (n, vocab) float64 array with 1.0 where the event holds the token (float so that
        products of such matrices go through BLAS; their entries stay exact small integers).
    """
    lengths = [len(e[3]) for e in events]
    rows = np.repeat(np.arange(len(events)), lengths)
    cols = np.fromiter((tok for e in events for tok in e[3]), dtype=np.int64, count=sum(lengths))
    m = np.zeros((len(events), vocab), dtype=np.float64)
    m[rows, cols] = 1.0
    return m


def best_jaccard_numpy(cands: Sequence[Event], targets: Sequence[Event], vocab: int) -> list[float]:
    """Best Jaccard similarity of each candidate to any target, vectorised with numpy.

    Intersections are one matrix product of incidence matrices; unions are
    |A| + |B| - |A ∩ B|. The division is float64 of exact integers, so the results equal
    ``best_jaccard_python``'s bit for bit.

    Args:
        cands: events to score (length n).
        targets: events to compare against (length m).
        vocab: vocabulary size.

    Returns:
        n floats in [0, 1] (all 0.0 when there are no targets).
    """
    if not cands:
        return []
    if not targets:
        return [0.0] * len(cands)
    a = incidence(cands, vocab)
    b = incidence(targets, vocab)
    inter = a @ b.T
    union = a.sum(axis=1)[:, None] + b.sum(axis=1)[None, :] - inter
    best: np.ndarray = (inter / union).max(axis=1)
    return [float(x) for x in best]


def select_carry(
    carry: list[Event],
    previous: list[Event],
    scores: Sequence[float],
    min_similarity: float,
    per_chunk: int,
) -> list[Event]:
    """Choose the next carry-over from the old one and the previous chunk.

    Args:
        carry: the current carry-over (length n).
        previous: the previous chunk (length m).
        scores: n + m best-Jaccard scores, carry first, against the current chunk.
        min_similarity: score an event needs to be carried.
        per_chunk: most events of ``previous`` that may join.

    Returns:
        The carried events that still score at least ``min_similarity``, followed by the
        ``per_chunk`` best-scoring such events of ``previous`` (ties broken by arrival order),
        in arrival order.
    """
    n = len(carry)
    kept = [e for e, s in zip(carry, scores[:n], strict=True) if s >= min_similarity]
    ranked = sorted(
        (i for i in range(len(previous)) if scores[n + i] >= min_similarity),
        key=lambda i: (-scores[n + i], i),
    )[:per_chunk]
    return kept + [previous[i] for i in sorted(ranked)]


def compress(carry: list[Event], k: int, vocab: int, iterations: int = 8) -> list[Event]:
    """Summarise a carry-over into k events by k-means clustering of token-incidence vectors.

    Lloyd's algorithm (S. Lloyd, "Least squares quantization in PCM", 1982) with deterministic
    initial centres (k events spread evenly over the carry-over). Each cluster becomes one
    event: the id, timestamp and type of its most recent member, and the tokens held by at
    least half of its members (at least the most common one).

    Args:
        carry: the carry-over, longer than k.
        k: number of events to keep (>= 1).
        vocab: vocabulary size.
        iterations: Lloyd iterations.

    Returns:
        At most k events, ordered by timestamp.
    """
    x = incidence(carry, vocab)
    centres = x[np.linspace(0, len(carry) - 1, k).round().astype(np.int64)].copy()
    labels = np.zeros(len(carry), dtype=np.int64)
    for _ in range(iterations):
        # Squared distances via |x|^2 - 2 x.c + |c|^2.
        d = (x * x).sum(1)[:, None] - 2.0 * x @ centres.T + (centres * centres).sum(1)[None, :]
        labels = d.argmin(axis=1)
        for j in range(k):
            members = labels == j
            if members.any():
                centres[j] = x[members].mean(axis=0)
    out: list[Event] = []
    for j in range(k):
        idx = np.flatnonzero(labels == j)
        if idx.size == 0:
            continue
        freq = x[idx].mean(axis=0)
        tokens = np.flatnonzero(freq >= 0.5)
        if tokens.size == 0:
            tokens = np.array([int(freq.argmax())])
        newest = max((carry[i] for i in idx.tolist()), key=lambda e: e[1])
        out.append((newest[0], newest[1], newest[2], tuple(tokens.tolist())))
    out.sort(key=lambda e: e[1])
    return out


class CausalTrace:
    """A causal-trace DAG: each event links to recent events that share one of its tokens.

    Args:
        horizon: look-back window, stream seconds.
        max_fanin: most parents kept per event (the most recent ones).

    Attributes:
        edges: event id -> list of parent event ids.
        nbytes: measured bytes held by ``edges``: ``sys.getsizeof`` of the dict itself plus,
            per entry, of its key, its parent list and the ints in that list (CPython object
            sizes; shared small ints are counted each time, so this is an upper bound).
    """

    def __init__(self, horizon: float, max_fanin: int) -> None:
        self.horizon = horizon
        self.max_fanin = max_fanin
        self.edges: dict[int, list[int]] = {}
        self.recent: dict[int, deque[tuple[int, float]]] = {}
        self._entry_bytes = 0

    def record(self, event: Event) -> None:
        """Add one event and its edges to the trace.

        Args:
            event: the event; its timestamp must not precede earlier events'.
        """
        eid, ts, _type, tokens = event
        cutoff = ts - self.horizon
        parents: set[int] = set()
        for tok in tokens:
            q = self.recent.get(tok)
            if q is None:
                q = self.recent[tok] = deque()
            while q and q[0][1] < cutoff:
                q.popleft()
            parents.update(pid for pid, _ in q)
            q.append((eid, ts))
        parents.discard(eid)
        kept = sorted(parents)[-self.max_fanin :]
        self.edges[eid] = kept
        self._entry_bytes += (
            sys.getsizeof(eid) + sys.getsizeof(kept) + sum(sys.getsizeof(p) for p in kept)
        )

    @property
    def nbytes(self) -> int:
        """Measured size of the trace in bytes (see the class docstring)."""
        return sys.getsizeof(self.edges) + self._entry_bytes

    @property
    def edge_count(self) -> int:
        """Number of edges recorded."""
        return sum(len(v) for v in self.edges.values())


def run(args: argparse.Namespace) -> Stats:
    """Run the pipeline and emit its metrics through the probe.

    Args:
        args: options from ``parse_args``.

    Returns:
        Counts for the summary.
    """
    rng = np.random.default_rng(args.seed)
    producer = Producer(rng, args.load * args.chunk_size, args.burstiness, args.vocab)
    queue: deque[Event] = deque()
    trace = CausalTrace(args.trace_horizon, args.max_fanin)
    carry: list[Event] = []
    previous: list[Event] = []
    stats = Stats()
    keep = max(1, args.compress_threshold // 2)
    perf = time.perf_counter

    for _ in range(args.chunks):
        queue.extend(producer.tick())
        with probe.timer("chunk_seconds"):
            n = min(args.chunk_size, len(queue))
            chunk = [queue.popleft() for _ in range(n)]

            t0 = perf()
            cands = carry + previous
            if args.impl == "numpy":
                scores = best_jaccard_numpy(cands, chunk, args.vocab)
            else:
                scores = best_jaccard_python(cands, chunk)
            carry = select_carry(carry, previous, scores, args.min_similarity, args.carry_per_chunk)
            probe.observe("carryover_seconds", perf() - t0)

            if len(carry) > args.compress_threshold:
                t0 = perf()
                carry = compress(carry, keep, args.vocab)
                probe.observe("compression_seconds", perf() - t0)
                probe.count("compressions_total")
                stats.compressions += 1

            t0 = perf()
            for event in chunk:
                trace.record(event)
            probe.observe("trace_record_seconds", perf() - t0)
            previous = chunk

        depth = len(queue)
        probe.gauge("event_queue_depth", depth)
        probe.gauge("causal_trace_bytes", trace.nbytes)
        probe.count("chunks_total")
        probe.count("events_total", n)
        stats.events += n
        stats.carried += len(carry)
        stats.max_depth = max(stats.max_depth, depth)
        stats.depths.append(depth)
    print(
        f"streaming_pipeline impl={args.impl} seed={args.seed}: {args.chunks} chunks, "
        f"{stats.events} events, {stats.compressions} compressions "
        f"({stats.compressions / args.chunks:.1%} of chunks), "
        f"mean carry-over {stats.carried / args.chunks:.1f} events, "
        f"queue depth p95 {np.percentile(stats.depths, 95):.0f} max {stats.max_depth}, "
        f"causal trace {len(trace.edges)} events {trace.edge_count} edges "
        f"{trace.nbytes / 1e6:.2f} MB"
    )
    return stats


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point.

    Args:
        argv: arguments without the program name; None reads ``sys.argv``.

    Returns:
        The exit status (0).
    """
    t0 = time.perf_counter()
    run(parse_args(argv))
    print(f"wall {time.perf_counter() - t0:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
