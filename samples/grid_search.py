"""A backtest grid search, plain against optimised, to show a scale-dependent result.

The backtesting-framework report (design.md section 1) found its optimisation 4x faster for
200-400 backtests but a 2-3% regression below about 25. This workload reproduces the shape of
that finding with real work: a moving-average crossover strategy backtested on synthetic daily
prices of ``--assets`` assets (8 by default) for every (fast, slow) window pair of a grid.

One backtest, for each asset: the fast and slow simple moving averages of the close; a bar
loop (as event-driven backtesters run) that goes long when fast > slow and flat otherwise,
pays ``--cost`` (a fraction) on each position change, and accumulates the daily returns; the
annualised Sharpe ratio sqrt(252) mean / std of the daily strategy returns. The backtest's
score is the mean Sharpe over assets.

Implementations (``--impl`` / ``GRID_IMPL``):

- ``plain``: each backtest recomputes both moving averages of every asset from the price list,
  one backtest after another in this process;
- ``cached``: one process; the moving average of each (asset, window) is computed once per
  grid search and reused by every backtest that needs it (the caching alone);
- ``pooled`` (``optimised`` is an alias): the same cache (per-asset arrays built once, the
  moving average of each window cached), and the backtests are spread over a persistent pool of
  ``--workers`` processes (``concurrent.futures.ProcessPoolExecutor``, ``fork`` start method,
  created once per session and reused by every round), in chunks of ``--chunk`` backtests;
  ``--workers`` (``GRID_WORKERS``) may come from a campaign matrix, for a scaling table
  (efficiency = speedup / workers).

Both compute the same scores (the same float64 operations in the same order); the session's
best parameters and score are printed and emitted so that the tests can compare them.

Grid sizes: ``--combos N`` takes the first N pairs (fast < slow) of fast in 2..40 step 2 and
slow in 10..250 step 10, ordered by (fast, slow) — 25 and 208 in the bundled grid campaign.

Metrics (probe protocol v1, docs/protocol.md):

- ``grid_search_seconds`` (histogram): wall time of one grid search (``--rounds`` per
  session), the pool's start-up included in the first round of the optimised implementation;
- ``backtests_total`` (counter): backtests run;
- ``backtests_per_second`` (gauge): backtests / grid-search seconds, per round;
- ``grid_workers`` (value): processes that ran backtests (1 unless pooled);
- ``grid_best_sharpe`` (value): the best score found;
- ``pool_start_seconds`` (value, optimised only): the worker pool's start-up time.

Outside perfmon (``PERFMON_FD`` unset) the probe calls do nothing and the script runs alone.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from perfmon import probe

TRADING_DAYS = 252
IMPLS = ("plain", "cached", "pooled", "optimised")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line.

    Args:
        argv: arguments without the program name; None reads ``sys.argv``.

    Returns:
        The parsed options.
    """
    p = argparse.ArgumentParser(
        description="Moving-average crossover grid search over synthetic prices, plain vs "
        "optimised (cached arrays, persistent worker pool), timed through the perfmon probe."
    )
    p.add_argument("--combos", type=int, default=25, help="(fast, slow) pairs (default 25)")
    p.add_argument("--assets", type=int, default=8, help="assets (default 8)")
    p.add_argument(
        "--days", type=int, default=2520, help="trading days of prices (default 2520, 10 years)"
    )
    p.add_argument("--cost", type=float, default=0.0005, help="cost per trade (default 0.0005)")
    p.add_argument(
        "--impl",
        choices=IMPLS,
        default=os.environ.get("GRID_IMPL", "plain"),
        help="plain, cached (one process, cached moving averages), pooled (cached, over a "
        "worker pool); optimised = pooled (default: $GRID_IMPL or plain)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("GRID_WORKERS", "2")),
        help="pool processes (default: $GRID_WORKERS or 2)",
    )
    p.add_argument("--chunk", type=int, default=8, help="backtests per pool task (default 8)")
    p.add_argument("--rounds", type=int, default=1, help="grid searches per session (default 1)")
    p.add_argument("--seed", type=int, default=0, help="price RNG seed (default 0)")
    args = p.parse_args(argv)
    if args.impl not in IMPLS:
        p.error(f"GRID_IMPL must be one of {', '.join(IMPLS)}, not {args.impl!r}")
    if args.impl == "optimised":
        args.impl = "pooled"
    pairs = len(grid(10_000))
    if not 1 <= args.combos <= pairs:
        p.error(f"--combos must be in 1..{pairs}")
    if min(args.assets, args.workers, args.chunk, args.rounds) < 1 or args.days < 260:
        p.error("--assets, --workers, --chunk, --rounds must be >= 1 and --days >= 260")
    return args


def grid(n: int) -> list[tuple[int, int]]:
    """The first n (fast, slow) window pairs with fast < slow.

    Args:
        n: how many pairs.

    Returns:
        Pairs from fast in 2, 4, .., 40 and slow in 10, 20, .., 250, ordered by (fast, slow).
    """
    pairs = [(f, s) for f in range(2, 41, 2) for s in range(10, 251, 10) if f < s]
    return pairs[:n]


def synthetic_prices(assets: int, days: int, seed: int) -> np.ndarray:
    """Daily closes by geometric Brownian motion with regime-switching volatility.

    Each asset has a drift in [-5%, 15%] a year and a volatility that switches between a calm
    (15% a year) and a turbulent (45%) state by a two-state Markov chain (leaving calm with
    probability 1/120 a day, turbulence with 1/30).

    Args:
        assets: number of assets.
        days: number of trading days.
        seed: numpy RNG seed.

    Returns:
        (assets, days) float64 closes, starting at 100.
    """
    rng = np.random.default_rng(seed)
    drift = rng.uniform(-0.05, 0.15, size=(assets, 1)) / TRADING_DAYS
    turbulent = np.zeros((assets, days), dtype=bool)
    u = rng.random((assets, days))
    for d in range(1, days):
        prev = turbulent[:, d - 1]
        turbulent[:, d] = np.where(prev, u[:, d] >= 1 / 30, u[:, d] < 1 / 120)
    vol = np.where(turbulent, 0.45, 0.15) / math.sqrt(TRADING_DAYS)
    logret = drift - 0.5 * vol**2 + vol * rng.standard_normal((assets, days))
    logret[:, 0] = 0.0
    return 100.0 * np.exp(np.cumsum(logret, axis=1))


def sma(prices: Sequence[float], window: int) -> list[float]:
    """Simple moving average by a running sum (NaN before the window fills).

    Args:
        prices: closes.
        window: window length in days.

    Returns:
        Averages, one per day.
    """
    out = [math.nan] * len(prices)
    acc = 0.0
    for i, p in enumerate(prices):
        acc += p
        if i >= window:
            acc -= prices[i - window]
        if i >= window - 1:
            out[i] = acc / window
    return out


def backtest_asset(
    prices: Sequence[float], fast: Sequence[float], slow: Sequence[float], cost: float
) -> float:
    """Sharpe ratio of a long/flat crossover strategy on one asset, by a bar loop.

    Args:
        prices: closes.
        fast, slow: the two moving averages (NaN while not yet defined).
        cost: fraction paid on each position change.

    Returns:
        Annualised Sharpe ratio sqrt(252) * mean / std (population std) of daily strategy
        returns; 0.0 when they have no spread.
    """
    position = 0
    rets = []
    for i in range(1, len(prices)):
        r = position * (prices[i] / prices[i - 1] - 1.0)
        want = 1 if fast[i] > slow[i] else 0  # NaN compares False: flat until both exist
        if want != position:
            r -= cost
            position = want
        rets.append(r)
    mean = sum(rets) / len(rets)
    var = sum((x - mean) ** 2 for x in rets) / len(rets)
    return math.sqrt(TRADING_DAYS) * mean / math.sqrt(var) if var > 0 else 0.0


def backtest_plain(closes: list[list[float]], fast: int, slow: int, cost: float) -> float:
    """One backtest, recomputing every moving average.

    Args:
        closes: per-asset close lists.
        fast, slow: window lengths.
        cost: cost per trade.

    Returns:
        Mean Sharpe ratio over assets.
    """
    scores = [backtest_asset(c, sma(c, fast), sma(c, slow), cost) for c in closes]
    return sum(scores) / len(scores)


# Per-process state of the optimised implementation, set once in each worker (and the parent).
_CLOSES: list[list[float]] = []
_SMA_CACHE: dict[tuple[int, int], list[float]] = {}
_COST = 0.0


def _init_worker(closes: list[list[float]], cost: float) -> None:
    global _CLOSES, _COST
    _CLOSES, _COST = closes, cost
    _SMA_CACHE.clear()


def _cached_sma(asset: int, window: int) -> list[float]:
    key = (asset, window)
    if key not in _SMA_CACHE:
        _SMA_CACHE[key] = sma(_CLOSES[asset], window)
    return _SMA_CACHE[key]


def _run_chunk(pairs: list[tuple[int, int]]) -> list[float]:
    out = []
    for fast, slow in pairs:
        scores = [
            backtest_asset(c, _cached_sma(a, fast), _cached_sma(a, slow), _COST)
            for a, c in enumerate(_CLOSES)
        ]
        out.append(sum(scores) / len(scores))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point.

    Args:
        argv: arguments without the program name; None reads ``sys.argv``.

    Returns:
        The exit status (0).
    """
    args = parse_args(argv)
    pairs = grid(args.combos)
    closes = synthetic_prices(args.assets, args.days, args.seed).tolist()
    perf = time.perf_counter
    pool: ProcessPoolExecutor | None = None
    times: list[float] = []
    scores: list[float] = []
    try:
        for _ in range(args.rounds):
            t0 = perf()
            if args.impl == "plain":
                scores = [backtest_plain(closes, f, s, args.cost) for f, s in pairs]
            elif args.impl == "cached":
                _init_worker(closes, args.cost)  # a fresh cache per grid search
                scores = _run_chunk(pairs)
            else:
                if pool is None:
                    pool = ProcessPoolExecutor(
                        args.workers,
                        mp_context=multiprocessing.get_context("fork"),
                        initializer=_init_worker,
                        initargs=(closes, args.cost),
                    )
                    # Start the workers now so that their start-up is measured on its own.
                    list(pool.map(_run_chunk, [[] for _ in range(args.workers)]))
                    probe.value("pool_start_seconds", perf() - t0)
                chunks = [pairs[i : i + args.chunk] for i in range(0, len(pairs), args.chunk)]
                scores = [s for part in pool.map(_run_chunk, chunks) for s in part]
            elapsed = perf() - t0
            times.append(elapsed)
            probe.observe("grid_search_seconds", elapsed)
            probe.count("backtests_total", len(pairs))
            probe.gauge("backtests_per_second", len(pairs) / elapsed)
    finally:
        if pool is not None:
            pool.shutdown()
    best = int(np.argmax(scores))
    probe.value("grid_best_sharpe", scores[best])
    probe.value("grid_workers", float(args.workers if args.impl == "pooled" else 1))
    print(
        f"grid_search impl={args.impl}: {len(pairs)} backtests x {args.assets} assets x "
        f"{args.days} days, {args.rounds} rounds; median {np.median(times):.3f} s; "
        f"best fast={pairs[best][0]} slow={pairs[best][1]} sharpe={scores[best]:.6f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
