"""A chunked streaming pipeline whose monitoring features can each be switched on or off.

This is the workload behind the streaming-pipeline report (design.md section 1), rebuilt so that
the report's per-feature overheads are measured, one feature per variant. A synthetic event
stream arrives **in real time**: a producer with Markov-modulated Poisson arrivals at ``--rate``
events per second (bursty: ``--burstiness`` times the calm rate during bursts) whose arrival
times are drawn as they are needed and never stop (``Arrivals``); at the start of each chunk
every event whose arrival time has passed on the wall clock joins the event queue, and the
consumer takes ``--chunk-size`` of them (sleeping until the chunk's last event arrives when
fewer are queued). So the queue depth is what a real
consumer of that speed leaves behind: a faster consumer really drains it, a slower one lets it
grow.

Each chunk goes through the pipeline's own work (per-type token histograms, always on) and the
monitoring features switched on by ``--features`` / ``PIPELINE_FEATURES`` (a comma list, or
``none`` / ``all``):

- ``events``: event emission, one record per processed event appended to a bounded event log
  (the report's 50-100 ns per event);
- ``trace``: causal-trace recording: each event is linked to recent events (within
  ``--trace-horizon`` seconds of stream time) that share one of its tokens, at most
  ``--max-fanin`` parents, in a dict that grows for the whole run, its memory measured with
  ``sys.getsizeof`` (the report's ~1.3 us);
- ``carryover``: carry-over selection: the events carried from earlier chunks and those of the
  previous chunk are scored by their best Jaccard similarity (|A ∩ B| / |A ∪ B| of token sets)
  to an event of the current chunk; carried events scoring at least ``--min-similarity`` stay,
  and the ``--carry-per-chunk`` best of the previous chunk join them;
- ``experts``: expert selection: the chunk's mean token-incidence vector is scored against
  ``--experts`` fixed expert centroids (cosine similarity) and the ``--top-experts`` best are
  routed to (mixture-of-experts gating; the report's ~5 us, watch-limit < 10 us);
- ``compression``: when the carry-over grows longer than ``--compress-threshold`` events it is
  summarised by k-means clustering (Lloyd's algorithm, numpy) of the events' token-incidence
  vectors (the report's ~152 us). Compression acts on the carry-over, so it has an effect only
  with ``carryover`` on: its variant is ``carryover,compression``, compared with ``carryover``.

The Jaccard step has two implementations, chosen by ``--impl`` or ``PIPELINE_IMPL``:
``python`` (a pure-Python loop over pairs of token sets) and ``numpy`` (one integer matrix
product of token-incidence matrices). Both compute the same similarities exactly.

Metrics (probe protocol, docs/protocol.md):

- ``event_queue_depth`` (gauge, events): events still queued after each chunk is taken;
- ``chunk_seconds`` (histogram, via ``probe.timer``): processing time of each chunk (pipeline
  work plus the features on: "overhead of feature X" is the change of this metric between the
  all-off baseline and the variant with X on);
- ``chunks_total``, ``events_total`` (counters): chunks and events processed;
- ``pipeline_features_enabled`` (value): how many features were on;
- with ``events``: ``events_emitted_total`` (counter);
- with ``trace``: ``causal_trace_bytes`` (gauge, bytes) after each chunk,
  ``trace_record_seconds`` (histogram);
- with ``carryover``: ``carryover_seconds`` (histogram);
- with ``experts``: ``expert_selection_seconds`` (histogram, one per chunk);
- with ``compression``: ``compression_seconds`` (histogram), ``compressions_total`` (counter),
  ``compression_checks_total`` (counter, one per chunk processed with compression on: the
  denominator of the compression frequency, so that chunks of variants without compression do
  not dilute it).

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

FEATURES = ("events", "trace", "carryover", "experts", "compression")
"""The monitoring features, in pipeline order (``--features``)."""

TICK_SECONDS = 0.01
"""Wall-clock length of one producer tick (the burst state is redrawn every tick)."""


def parse_features(text: str) -> frozenset[str]:
    """Parse a feature list: ``"none"``, ``"all"`` or a comma list of ``FEATURES``.

    Args:
        text: the list, e.g. ``"trace,carryover"``.

    Returns:
        The set of features switched on.

    Raises:
        ValueError: naming an unknown feature.
    """
    text = text.strip().lower()
    if text in ("", "none", "off"):
        return frozenset()
    if text == "all":
        return frozenset(FEATURES)
    names = [f.strip() for f in text.split(",") if f.strip()]
    unknown = [f for f in names if f not in FEATURES]
    if unknown:
        raise ValueError(f"unknown feature {unknown[0]!r} (features: {', '.join(FEATURES)})")
    return frozenset(names)


@dataclass
class Stats:
    """Counts kept for the human summary printed at the end."""

    events: int = 0
    compressions: int = 0
    carried: int = 0
    max_depth: int = 0
    depths: list[int] = field(default_factory=list)
    emitted: int = 0
    expert_load: np.ndarray | None = None


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
        "--rate",
        type=float,
        default=float(os.environ.get("PIPELINE_RATE", "8000")),
        help="mean arrival rate, events per wall-clock second (default: $PIPELINE_RATE or 8000)",
    )
    p.add_argument(
        "--burstiness",
        type=float,
        default=3.0,
        help="arrival-rate multiplier during bursts (default 3.0; 1 = no bursts)",
    )
    p.add_argument(
        "--features",
        default=os.environ.get("PIPELINE_FEATURES", "all"),
        help="monitoring features on: a comma list of "
        f"{','.join(FEATURES)}, or none / all (default: $PIPELINE_FEATURES or all)",
    )
    p.add_argument("--experts", type=int, default=16, help="expert centroids (default 16)")
    p.add_argument("--top-experts", type=int, default=2, help="experts routed to (default 2)")
    p.add_argument(
        "--event-log", type=int, default=4096, help="event-emission log capacity (default 4096)"
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
        default=0.01,
        help="causal-trace look-back in stream (wall-clock) seconds (default 0.01)",
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
    if args.rate <= 0 or args.burstiness < 1:
        p.error("--rate must be > 0 and --burstiness >= 1")
    if args.experts < 1 or not 1 <= args.top_experts <= args.experts or args.event_log < 1:
        p.error("--experts >= 1, 1 <= --top-experts <= --experts and --event-log >= 1")
    try:
        args.features = parse_features(args.features)
    except ValueError as exc:
        p.error(f"PIPELINE_FEATURES / --features: {exc}")
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


class Arrivals:
    """The stream in real time: events with wall-clock arrival times, drawn as they are needed.

    The producer runs in ticks of ``TICK_SECONDS`` at a mean of ``rate * TICK_SECONDS`` events
    per tick (Markov-modulated Poisson, see ``Producer``) and never stops: an event's timestamp
    is its arrival time in seconds after the stream starts, whether or not the consumer keeps up.

    Args:
        args: options (``rate``, ``burstiness``, ``vocab``).
        rng: the random generator.
    """

    def __init__(self, args: argparse.Namespace, rng: np.random.Generator) -> None:
        self.producer = Producer(rng, args.rate * TICK_SECONDS, args.burstiness, args.vocab)
        self.events: list[Event] = []

    def _extend(self) -> None:
        for eid, stamp, etype, tokens in self.producer.tick():
            self.events.append((eid, stamp * TICK_SECONDS, etype, tokens))

    def time_of(self, index: int) -> float:
        """Arrival time (seconds) of event ``index`` (0-based), drawing the stream up to it."""
        while len(self.events) <= index:
            self._extend()
        return self.events[index][1]

    def arrived(self, start: int, now: float) -> list[Event]:
        """The events from index ``start`` on that have arrived by ``now`` (seconds)."""
        while not self.events or self.events[-1][1] <= now:
            self._extend()
        out = []
        i = start
        while self.events[i][1] <= now:
            out.append(self.events[i])
            i += 1
        return out


class ExpertRouter:
    """Expert selection: route a chunk to the experts whose centroids fit it best.

    Mixture-of-experts gating with a top-k choice (N. Shazeer et al., "Outrageously Large Neural
    Networks: The Sparsely-Gated Mixture-of-Experts Layer", ICLR 2017), here over fixed random
    centroids: the chunk's mean token-incidence vector is compared with each centroid by cosine
    similarity and the ``top`` best are chosen.

    Args:
        rng: random generator for the centroids.
        experts: number of experts E.
        vocab: vocabulary size.
        top: experts chosen per chunk (1 <= top <= E).
    """

    def __init__(self, rng: np.random.Generator, experts: int, vocab: int, top: int) -> None:
        c = rng.random((experts, vocab))
        self.centroids = c / np.linalg.norm(c, axis=1, keepdims=True)
        self.vocab = vocab
        self.top = top
        self.load = np.zeros(experts, dtype=np.int64)

    def select(self, chunk: Sequence[Event]) -> np.ndarray:
        """Choose the experts for one chunk and count them in ``load``.

        Args:
            chunk: the chunk's events (may be empty: then no expert is chosen).

        Returns:
            The chosen expert indices, best first.
        """
        if not chunk:
            return np.zeros(0, dtype=np.int64)
        counts = np.bincount(
            np.fromiter((t for e in chunk for t in e[3]), dtype=np.int64), minlength=self.vocab
        )
        scores = self.centroids @ (counts / max(1.0, float(np.linalg.norm(counts))))
        chosen = np.argsort(-scores, kind="stable")[: self.top]
        self.load[chosen] += 1
        return chosen


def pipeline_work(chunk: Sequence[Event], n_types: int, vocab: int) -> np.ndarray:
    """The pipeline's own work on a chunk (always on): token counts per event type.

    Args:
        chunk: the chunk's events.
        n_types: number of event types.
        vocab: vocabulary size.

    Returns:
        An (n_types, vocab) int64 array of token counts.
    """
    lengths = [len(e[3]) for e in chunk]
    types = np.repeat(np.fromiter((e[2] for e in chunk), dtype=np.int64, count=len(chunk)), lengths)
    toks = np.fromiter((t for e in chunk for t in e[3]), dtype=np.int64, count=sum(lengths))
    flat = np.bincount(types * vocab + toks, minlength=n_types * vocab)
    return flat.reshape(n_types, vocab)


def run(args: argparse.Namespace) -> Stats:
    """Run the pipeline against the real-time stream and emit its metrics through the probe.

    Args:
        args: options from ``parse_args`` (``features`` a set of ``FEATURES``).

    Returns:
        Counts for the summary.
    """
    rng = np.random.default_rng(args.seed)
    stream = Arrivals(args, rng)
    router = ExpertRouter(rng, args.experts, args.vocab, args.top_experts)
    features = args.features
    queue: deque[Event] = deque()
    trace = CausalTrace(args.trace_horizon, args.max_fanin)
    event_log: deque[tuple[int, float, int]] = deque(maxlen=args.event_log)
    carry: list[Event] = []
    previous: list[Event] = []
    stats = Stats()
    keep = max(1, args.compress_threshold // 2)
    perf = time.perf_counter
    probe.value("pipeline_features_enabled", len(features))

    arrived = consumed = 0
    start = perf()
    for _ in range(args.chunks):
        # The consumer takes a full chunk: if its last event has not arrived yet, it waits for
        # it (idle time, not chunk work); every event that has arrived by then is queued.
        due = stream.time_of(consumed + args.chunk_size - 1)
        now = perf() - start
        if due > now:
            time.sleep(due - now)
            now = perf() - start
        new_events = stream.arrived(arrived, max(now, due))
        queue.extend(new_events)
        arrived += len(new_events)
        with probe.timer("chunk_seconds"):
            n = min(args.chunk_size, len(queue))
            chunk = [queue.popleft() for _ in range(n)]
            consumed += n
            pipeline_work(chunk, 8, args.vocab)

            if "events" in features:
                for event in chunk:
                    event_log.append((event[0], event[1], 0))
                probe.count("events_emitted_total", n)

            if "carryover" in features:
                t0 = perf()
                cands = carry + previous
                if args.impl == "numpy":
                    scores = best_jaccard_numpy(cands, chunk, args.vocab)
                else:
                    scores = best_jaccard_python(cands, chunk)
                carry = select_carry(
                    carry, previous, scores, args.min_similarity, args.carry_per_chunk
                )
                probe.observe("carryover_seconds", perf() - t0)

            if "experts" in features:
                t0 = perf()
                router.select(chunk)
                probe.observe("expert_selection_seconds", perf() - t0)

            if "compression" in features:
                probe.count("compression_checks_total")
            if "compression" in features and len(carry) > args.compress_threshold:
                t0 = perf()
                carry = compress(carry, keep, args.vocab)
                probe.observe("compression_seconds", perf() - t0)
                probe.count("compressions_total")
                stats.compressions += 1

            if "trace" in features:
                t0 = perf()
                for event in chunk:
                    trace.record(event)
                probe.observe("trace_record_seconds", perf() - t0)
            previous = chunk

        depth = len(queue)
        probe.gauge("event_queue_depth", depth)
        if "trace" in features:
            probe.gauge("causal_trace_bytes", trace.nbytes)
        probe.count("chunks_total")
        probe.count("events_total", n)
        stats.events += n
        stats.carried += len(carry)
        stats.max_depth = max(stats.max_depth, depth)
        stats.depths.append(depth)
    stats.emitted = len(event_log)
    stats.expert_load = router.load
    on = ",".join(f for f in FEATURES if f in features) or "none"
    print(
        f"streaming_pipeline impl={args.impl} features={on} rate={args.rate:g}/s "
        f"seed={args.seed}: {args.chunks} chunks, "
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
