"""A volatility-regime classifier over the grid search's prices, and its within-regime variance.

The regime part of the audit (design.md section 1: "regime variance change < 10%"). Each day of
each asset's synthetic price series (``grid_search.synthetic_prices``, regime-switching
volatility) is classified from two features of the daily log returns:

- volatility: how it is estimated is what differs between the variants
  (``--vol`` / ``REGIME_VOL``): ``rolling`` (the baseline: the sample standard deviation of
  the last ``--window`` returns, recomputed per day by a Python loop) or ``ewma`` (the
  candidate: the RiskMetrics exponentially weighted estimate
  σ²_t = λ σ²_(t-1) + (1 - λ) r²_(t-1) with λ = ``--lam`` (0.94, J.P. Morgan/Reuters,
  "RiskMetrics — Technical Document", 4th ed., 1996), run with ``scipy.signal.lfilter``);
- trend: the sign of the sum of the last ``--window`` returns.

A day is ``turbulent`` when its volatility exceeds ``--threshold`` times the asset's median
volatility, else ``up`` or ``down`` by its trend. The regime variance, the variance of daily
returns on the days classified turbulent (all assets together, after the warm-up window), is
what the audit's "< 10%" gate compares between baseline and candidate: a candidate estimator
that changes it by more than 10% changes the risk figure users read off the regimes.

Metrics (probe protocol v1, docs/protocol.md):

- ``regime_variance`` (value): variance of daily log returns on turbulent days;
- ``regime_calm_variance`` (value): the same on up and down days;
- ``regime_turbulent_ratio`` (value): share of classified days labelled turbulent;
- ``regime_switches_total`` (counter): regime changes, per asset;
- ``regime_classify_seconds`` (histogram): classification time per asset.

Outside perfmon (``PERFMON_FD`` unset) the probe calls do nothing and the script runs alone.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Sequence

import numpy as np

from grid_search import synthetic_prices
from perfmon import probe

REGIMES = ("up", "down", "turbulent")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line.

    Args:
        argv: arguments without the program name; None reads ``sys.argv``.

    Returns:
        The parsed options.
    """
    p = argparse.ArgumentParser(
        description="Classify days into volatility regimes (rolling or EWMA volatility) and "
        "report the pooled within-regime return variance through the perfmon probe."
    )
    p.add_argument("--assets", type=int, default=8, help="assets (default 8)")
    p.add_argument("--days", type=int, default=2520, help="trading days (default 2520)")
    p.add_argument(
        "--vol",
        choices=("rolling", "ewma"),
        default=os.environ.get("REGIME_VOL", "rolling"),
        help="volatility estimator (default: $REGIME_VOL or rolling)",
    )
    p.add_argument("--window", type=int, default=20, help="rolling/trend window (default 20)")
    p.add_argument("--lam", type=float, default=0.94, help="EWMA decay λ (default 0.94)")
    p.add_argument(
        "--threshold",
        type=float,
        default=1.5,
        help="turbulent above this multiple of the median volatility (default 1.5)",
    )
    p.add_argument("--seed", type=int, default=0, help="price RNG seed (default 0)")
    args = p.parse_args(argv)
    if args.vol not in ("rolling", "ewma"):
        p.error(f"REGIME_VOL must be rolling or ewma, not {args.vol!r}")
    if args.window < 2 or args.days <= args.window + 1 or args.assets < 1:
        p.error("need --window >= 2, --days > --window + 1 and --assets >= 1")
    if not 0.0 < args.lam < 1.0 or args.threshold <= 0:
        p.error("need 0 < --lam < 1 and --threshold > 0")
    return args


def rolling_vol(returns: Sequence[float], window: int) -> np.ndarray:
    """Sample standard deviation of the previous ``window`` returns, by a Python loop.

    Args:
        returns: daily log returns (length n).
        window: look-back in days.

    Returns:
        (n,) volatilities; NaN for the first ``window`` days. Day t uses returns t-window..t-1.
    """
    out = np.full(len(returns), math.nan)
    for t in range(window, len(returns)):
        xs = returns[t - window : t]
        mean = sum(xs) / window
        out[t] = math.sqrt(sum((x - mean) ** 2 for x in xs) / (window - 1))
    return out


def ewma_vol(returns: np.ndarray, lam: float, window: int) -> np.ndarray:
    """RiskMetrics EWMA volatility, σ²_t = λ σ²_(t-1) + (1 - λ) r²_(t-1), via lfilter.

    Seeded with the sample variance of the first ``window`` returns at day ``window``, so that
    it is defined on the same days as ``rolling_vol``.

    Args:
        returns: (n,) daily log returns.
        lam: decay λ in (0, 1).
        window: the warm-up days.

    Returns:
        (n,) volatilities; NaN for the first ``window`` days.
    """
    from scipy.signal import lfilter

    out = np.full(len(returns), math.nan)
    seed = float(np.var(returns[:window], ddof=1))
    r2 = returns[window - 1 : -1] ** 2  # r_(t-1) for t = window .. n-1
    # y_t = lam y_(t-1) + (1 - lam) x_t with initial state y_(-1) = seed.
    var, _ = lfilter([1.0 - lam], [1.0, -lam], r2, zi=[lam * seed])
    out[window:] = np.sqrt(var)
    return out


def classify(returns: np.ndarray, vol: np.ndarray, window: int, threshold: float) -> np.ndarray:
    """Regime of each day: 0 up, 1 down, 2 turbulent, -1 before the window fills.

    Args:
        returns: (n,) daily log returns.
        vol: (n,) volatility estimates (NaN where undefined).
        window: trend window in days.
        threshold: turbulent when vol > threshold * median(vol).

    Returns:
        (n,) int8 labels.
    """
    csum = np.concatenate([[0.0], np.cumsum(returns)])
    trend = np.full(len(returns), math.nan)
    trend[window:] = csum[window:-1] - csum[: len(returns) - window]
    labels = np.where(trend >= 0, 0, 1).astype(np.int8)
    labels[vol > threshold * np.nanmedian(vol)] = 2
    labels[np.isnan(vol)] = -1
    return labels


def regime_variances(returns: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Variance of daily returns within each regime (population variance).

    Args:
        returns: (n,) daily log returns (or several assets' concatenated).
        labels: (n,) regime labels, -1 excluded.

    Returns:
        Regime name -> variance (NaN for a regime with no day), plus ``"calm"``: up and
        down days together.
    """
    out = {}
    for r, name in enumerate(REGIMES):
        xs = returns[labels == r]
        out[name] = float(np.var(xs)) if xs.size else math.nan
    calm = returns[(labels == 0) | (labels == 1)]
    out["calm"] = float(np.var(calm)) if calm.size else math.nan
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point.

    Args:
        argv: arguments without the program name; None reads ``sys.argv``.

    Returns:
        The exit status (0).
    """
    args = parse_args(argv)
    closes = synthetic_prices(args.assets, args.days, args.seed)
    logret = np.diff(np.log(closes), axis=1)
    perf = time.perf_counter
    all_r, all_l = [], []
    switches = 0
    for r in logret:
        t0 = perf()
        if args.vol == "rolling":
            vol = rolling_vol(r.tolist(), args.window)
        else:
            vol = ewma_vol(r, args.lam, args.window)
        labels = classify(r, vol, args.window, args.threshold)
        probe.observe("regime_classify_seconds", perf() - t0)
        valid = labels >= 0
        n_switch = int(np.count_nonzero(np.diff(labels[valid])))
        probe.count("regime_switches_total", n_switch)
        switches += n_switch
        all_r.append(r[valid])
        all_l.append(labels[valid])
    returns, labels = np.concatenate(all_r), np.concatenate(all_l)
    var = regime_variances(returns, labels)
    turbulent = float(np.mean(labels == 2))
    probe.value("regime_variance", var["turbulent"])
    probe.value("regime_calm_variance", var["calm"])
    probe.value("regime_turbulent_ratio", turbulent)
    print(
        f"regime_variance vol={args.vol}: {args.assets} assets x {args.days} days; return "
        f"variance turbulent {var['turbulent']:.4e}, calm {var['calm']:.4e} (all days "
        f"{float(np.var(returns)):.4e}); turbulent {turbulent:.1%} of days; {switches} switches"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
