"""Bootstrap estimates of motif lift in an event stream, and how much they move between runs.

The motif-stability part of the audit (design.md section 1: "top-10 motif |delta lift| <
0.05"). A motif here is an ordered pair of event types (a, b) seen as consecutive events; its
lift is P(a then b) / (P(a) P(b)), the observed bigram frequency over the one expected if
consecutive types were independent (lift as in association-rule mining: S. Brin et al.,
"Dynamic itemset counting and implication rules for market basket data", SIGMOD 1997).

The stream (``--events`` events of ``--types`` types, drawn with Zipf-like weights, with a few
planted motifs: after a planted "a" the next event is its "b" with probability
``--plant-strength``) is generated from ``--data-seed`` and is the same in every session.

The top-10 motifs (highest lift among motifs seen at least ``--min-support`` times) are picked
on the whole stream; their lift is then estimated by a moving-block bootstrap (H. R. Künsch,
"The jackknife and the bootstrap for general stationary observations", Annals of Statistics
1989): ``--resamples`` resamples of blocks of ``--block`` events, lift averaged over resamples.
The estimate is made ``--estimates`` times, as repeated runs of a pipeline would make it. By
default (``MOTIF_SEED=session``) estimate e of perfmon session s is seeded with (s, e): every
estimate and every session draws its own resamples, reproducibly, so the spread between them is
the bootstrap's own variability. The seed audit's "fix" (one fixed seed for every estimate,
``MOTIF_SEED=<int>``) is still available, to show what it does: the estimates become identical
and |delta lift| zero by construction, while the estimator is exactly as variable as before.

Metrics (probe protocol v1, docs/protocol.md):

- ``motif_lift_delta`` (histogram): |lift_e(m) - lift_(e-1)(m)| for each top-10 motif m and
  each estimate e after the first (10 x (estimates - 1) observations per session);
- ``motif_top_lift`` (value): the last estimate of the top motif's lift;
- ``motif_lift_spread`` (value): the largest sample standard deviation, over the top-10
  motifs, of the session's ``--estimates`` lift estimates: the bootstrap's own variability,
  which a gate can judge (``max(motif_lift_spread) < 0.05``);
- ``motif_bootstrap_seconds`` (histogram): time of each bootstrap estimate.

Outside perfmon (``PERFMON_FD`` unset) the probe calls do nothing and the script runs alone.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

import numpy as np

from perfmon import probe

TOP = 10


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line.

    Args:
        argv: arguments without the program name; None reads ``sys.argv``.

    Returns:
        The parsed options; ``seed`` is an int or None (unseeded).
    """
    p = argparse.ArgumentParser(
        description="Bootstrap lift estimates of the top-10 motifs (consecutive event-type "
        "pairs) of an event stream, reporting |delta lift| between repeated estimates."
    )
    p.add_argument("--events", type=int, default=50_000, help="stream length (default 50000)")
    p.add_argument("--types", type=int, default=40, help="event types (default 40)")
    p.add_argument("--planted", type=int, default=6, help="planted motifs (default 6)")
    p.add_argument(
        "--plant-strength",
        type=float,
        default=0.3,
        help="chance a planted motif's second type follows its first (default 0.3)",
    )
    p.add_argument(
        "--min-support", type=int, default=30, help="occurrences a motif needs (default 30)"
    )
    p.add_argument("--resamples", type=int, default=40, help="bootstrap resamples (default 40)")
    p.add_argument("--block", type=int, default=100, help="bootstrap block, events (default 100)")
    p.add_argument("--estimates", type=int, default=5, help="repeated estimates (default 5)")
    p.add_argument(
        "--seed",
        default=os.environ.get("MOTIF_SEED", "session"),
        help="bootstrap seeds: 'session' (estimate e of session s seeded with (s, e), s from "
        "$PERFMON_SESSION), 'none' (OS entropy), or an integer used for every estimate "
        "(hides the bootstrap's variability) (default: $MOTIF_SEED or session)",
    )
    p.add_argument("--data-seed", type=int, default=0, help="stream RNG seed (default 0)")
    args = p.parse_args(argv)
    if str(args.seed).lower() == "none":
        args.seed = None
    elif str(args.seed).lower() == "session":
        args.seed = "session"
    else:
        try:
            args.seed = int(args.seed)
        except ValueError:
            p.error(
                f"MOTIF_SEED / --seed must be 'session', 'none' or an integer, not {args.seed!r}"
            )
    if args.events < 2 * args.block or args.types < 2 or args.estimates < 2:
        p.error("need --events >= 2 * --block, --types >= 2 and --estimates >= 2")
    if min(args.resamples, args.block, args.min_support) < 1 or args.planted < 0:
        p.error("--resamples, --block, --min-support must be >= 1, --planted >= 0")
    if not 0.0 <= args.plant_strength <= 1.0:
        p.error("--plant-strength must be in [0, 1]")
    return args


def make_stream(n: int, types: int, planted: int, strength: float, seed: int) -> np.ndarray:
    """A synthetic stream of event types with planted motifs.

    Types are drawn with weights ∝ 1/(k+1) (Zipf's law, exponent 1). For ``planted`` pairs
    (a_i, b_i) of distinct types, after an a_i the next event is b_i with probability
    ``strength``.

    Args:
        n: stream length.
        types: number of event types.
        planted: number of planted motifs.
        strength: probability in [0, 1] of the planted follow-up.
        seed: numpy RNG seed.

    Returns:
        (n,) int64 event types.
    """
    rng = np.random.default_rng(seed)
    w = 1.0 / np.arange(1, types + 1)
    draws = rng.choice(types, size=n, p=w / w.sum())
    follow = rng.random(n) < strength
    pairs = rng.permutation(types)[: 2 * planted].reshape(-1, 2) if planted else np.empty((0, 2))
    nxt = np.full(types, -1, dtype=np.int64)
    for a, b in pairs.astype(np.int64):
        nxt[a] = b
    out = draws.copy()
    for i in range(1, n):  # sequential: a planted follow-up depends on the previous event
        prev = nxt[out[i - 1]]
        if prev >= 0 and follow[i]:
            out[i] = prev
    return out


def pair_counts(stream: np.ndarray, types: int) -> tuple[np.ndarray, np.ndarray]:
    """Bigram and unigram counts.

    Args:
        stream: (n,) event types.
        types: number of types T.

    Returns:
        (T, T) counts of consecutive pairs (a, b), and (T,) counts of types.
    """
    bigram = np.bincount(stream[:-1] * types + stream[1:], minlength=types * types)
    return bigram.reshape(types, types), np.bincount(stream, minlength=types)


def lift(bigrams: np.ndarray, unigrams: np.ndarray) -> np.ndarray:
    """Lift P(a, b) / (P(a) P(b)) of every pair; 0 where a type never occurs.

    Args:
        bigrams: (T, T) pair counts.
        unigrams: (T,) type counts.

    Returns:
        (T, T) float64 lifts.
    """
    p_ab = bigrams / max(bigrams.sum(), 1)
    p = unigrams / max(unigrams.sum(), 1)
    expected = np.outer(p, p)
    return np.divide(p_ab, expected, out=np.zeros_like(p_ab), where=expected > 0)


def top_motifs(stream: np.ndarray, types: int, min_support: int) -> list[tuple[int, int]]:
    """The ``TOP`` motifs of highest lift among those seen at least ``min_support`` times.

    Args:
        stream: (n,) event types.
        types: number of types.
        min_support: occurrences a pair needs.

    Returns:
        Up to 10 (a, b) pairs, highest lift first (ties by (a, b)).
    """
    bigrams, unigrams = pair_counts(stream, types)
    lifts = np.where(bigrams >= min_support, lift(bigrams, unigrams), -1.0)
    order = np.lexsort((np.arange(types * types), -lifts.ravel()))
    picked = [divmod(int(i), types) for i in order[:TOP] if lifts.ravel()[i] >= 0]
    return picked


def bootstrap_lift(
    stream: np.ndarray,
    types: int,
    motifs: Sequence[tuple[int, int]],
    resamples: int,
    block: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Moving-block bootstrap estimate of each motif's lift.

    Each resample concatenates ``n // block`` blocks of ``block`` consecutive events starting
    at uniform random offsets; the estimate is the mean lift over resamples.

    Args:
        stream: (n,) event types.
        types: number of types.
        motifs: the (a, b) pairs to estimate.
        resamples: number of bootstrap resamples.
        block: block length, events.
        rng: the bootstrap's random generator.

    Returns:
        (len(motifs),) mean lifts.
    """
    n = len(stream)
    nblocks = n // block
    a = np.array([m[0] for m in motifs], dtype=np.int64)
    b = np.array([m[1] for m in motifs], dtype=np.int64)
    total = np.zeros(len(motifs))
    offsets = np.arange(block)
    for _ in range(resamples):
        starts = rng.integers(0, n - block + 1, size=nblocks)
        sample = stream[(starts[:, None] + offsets[None, :]).ravel()]
        bigrams, unigrams = pair_counts(sample, types)
        total += lift(bigrams, unigrams)[a, b]
    return total / resamples


def estimate_rng(seed: int | str | None, session: int | None, estimate: int) -> np.random.Generator:
    """The bootstrap generator of one estimate.

    Args:
        seed: ``"session"``: seeded with ``(session, estimate)`` through ``np.random.SeedSequence``
            (distinct, reproducible streams per session and estimate; OS entropy for the
            session part when ``session`` is None); None: OS entropy; an int: that seed for
            every estimate (every estimate identical: a fixed seed hides the variability, it
            does not remove it).
        session: the perfmon session number, or None outside perfmon.
        estimate: the estimate's index in the session.

    Returns:
        A fresh generator.
    """
    if seed == "session":
        root = session if session is not None else np.random.SeedSequence().entropy
        return np.random.default_rng(np.random.SeedSequence([int(root), estimate]))
    return np.random.default_rng(seed)


def lift_spread(estimates: np.ndarray) -> float:
    """How much the lift estimates of a session disagree: max over motifs of their sample sd.

    Args:
        estimates: (k, m) lift estimates, k >= 2 estimates of m motifs.

    Returns:
        max_m sd_k (ddof = 1) of the estimates; 0.0 when there are no motifs.
    """
    if estimates.size == 0 or estimates.shape[1] == 0:
        return 0.0
    return float(np.std(estimates, axis=0, ddof=1).max())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point.

    Args:
        argv: arguments without the program name; None reads ``sys.argv``.

    Returns:
        The exit status (0).
    """
    args = parse_args(argv)
    stream = make_stream(args.events, args.types, args.planted, args.plant_strength, args.data_seed)
    motifs = top_motifs(stream, args.types, args.min_support)
    perf = time.perf_counter
    estimates: list[np.ndarray] = []
    deltas: list[float] = []
    session = os.environ.get("PERFMON_SESSION", "")
    base = int(session) if session.isdigit() else None
    for e in range(args.estimates):
        rng = estimate_rng(args.seed, base, e)
        t0 = perf()
        est = bootstrap_lift(stream, args.types, motifs, args.resamples, args.block, rng)
        probe.observe("motif_bootstrap_seconds", perf() - t0)
        if estimates:
            for d in np.abs(est - estimates[-1]).tolist():
                probe.observe("motif_lift_delta", d)
                deltas.append(d)
        estimates.append(est)
    spread = lift_spread(np.array(estimates))
    if motifs:
        probe.value("motif_top_lift", float(estimates[-1][0]))
        probe.value("motif_lift_spread", spread)
    seed = "none" if args.seed is None else args.seed
    print(
        f"motif_mining seed={seed} session={session or '-'}: {len(motifs)} motifs, "
        f"top lift {estimates[-1][0]:.3f}; lift spread (max sd over motifs, "
        f"{args.estimates} estimates) {spread:.4f}; "
        f"|delta lift| over {len(deltas)}: max {max(deltas, default=0.0):.4f}, "
        f"variance {float(np.var(deltas)) if deltas else 0.0:.5f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
