"""A DAG over timestamped events: edge building and topological generations, timed.

The DAG-builder part of the audit (design.md section 1). Events have increasing times; each
event gets an edge to each of the next ``--k`` (default 4) later events whose time difference
dt lies in [``--dt-min``, ``--dt-max``] seconds (default [1, 120]). Edges always point forward in
time, so the graph is acyclic. Then the graph's topological generations are computed (generation
0: events with no incoming edge; generation g + 1: events all of whose parents are in
generations <= g, Kahn's algorithm taken one frontier at a time).

Implementations, chosen by option or environment variable:

- edges (``--edges`` / ``DAG_EDGES``): ``python`` (a loop over events scanning forward, the
  baseline) or ``numpy`` (two ``np.searchsorted`` calls give each event's window [lo, hi), and
  the first k indices of each window are taken at once); both give the same edge list;
- generations (``--topo`` / ``DAG_TOPO``): ``graphlib`` (the standard library's
  ``TopologicalSorter``, one ``get_ready()`` batch per generation), ``networkx``
  (``networkx.topological_generations``, when networkx is installed) or ``sparse`` (the
  frontier expanded by ``scipy.sparse`` CSR matrix-vector products over the adjacency, for
  large graphs); all three give the same generations.

- adjacency (``--adjacency`` / ``DAG_ADJACENCY``): ``dense`` (an n x n uint8 numpy matrix,
  n² bytes, refused above 20,000 events) or ``sparse`` (``scipy.sparse.csr_array``); both give
  the same in- and out-degrees.

One session may take several sizes (``--events 2000,20000``), but a campaign should give each
session one size (``--events {events}`` with a matrix), so that every size gets its own row.

Event times have exponential gaps (``--mean-gap``, 20 s by default), so a 120 s window holds
about six events and most events have the full k edges.

Metrics (probe protocol v1, docs/protocol.md), for each size in ``--events``:

- ``dag_build_seconds`` (histogram): building the edge list;
- ``dag_generations_seconds`` (histogram): computing the generations;
- ``dag_adjacency_seconds`` (histogram): building the adjacency and its degrees;
- ``dag_adjacency_bytes`` (value): bytes held by the adjacency matrix;
- ``dag_sources`` (value): events with no incoming edge (from the adjacency's in-degrees);
- ``dag_edges`` (value): edge count; ``dag_generations`` (value): generation count;
- ``dag_events_total`` (counter): events processed.

Outside perfmon (``PERFMON_FD`` unset) the probe calls do nothing and the script runs alone.
"""

from __future__ import annotations

import argparse
import graphlib
import os
import sys
import time
from collections.abc import Sequence

import numpy as np

from perfmon import probe

EDGE_IMPLS = ("python", "numpy")
TOPO_IMPLS = ("graphlib", "networkx", "sparse")
ADJACENCY_IMPLS = ("dense", "sparse")
DENSE_LIMIT = 20_000
"""Largest graph given a dense adjacency (n² bytes: 400 MB at this size)."""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line.

    Args:
        argv: arguments without the program name; None reads ``sys.argv``.

    Returns:
        The parsed options, with ``events`` as a list of ints.
    """
    p = argparse.ArgumentParser(
        description="Build a DAG over timestamped events (edges to the next k events within "
        "[dt-min, dt-max]) and its topological generations, timed through the perfmon probe."
    )
    p.add_argument(
        "--events",
        default="2000,20000,100000",
        help="comma-separated event counts, one DAG each (default 2000,20000,100000)",
    )
    p.add_argument("--k", type=int, default=4, help="most edges per event (default 4)")
    p.add_argument("--dt-min", type=float, default=1.0, help="smallest edge dt, s (default 1)")
    p.add_argument("--dt-max", type=float, default=120.0, help="largest edge dt, s (default 120)")
    p.add_argument(
        "--mean-gap", type=float, default=20.0, help="mean time between events, s (default 20)"
    )
    p.add_argument(
        "--edges",
        choices=EDGE_IMPLS,
        default=os.environ.get("DAG_EDGES", "python"),
        help="edge builder (default: $DAG_EDGES or python)",
    )
    p.add_argument(
        "--topo",
        choices=TOPO_IMPLS,
        default=os.environ.get("DAG_TOPO", "graphlib"),
        help="topological generations (default: $DAG_TOPO or graphlib)",
    )
    p.add_argument(
        "--adjacency",
        choices=ADJACENCY_IMPLS,
        default=os.environ.get("DAG_ADJACENCY", "dense"),
        help="adjacency matrix: dense numpy (n² bytes, n <= 20000) or scipy.sparse CSR "
        "(default: $DAG_ADJACENCY or dense)",
    )
    p.add_argument("--repeat", type=int, default=3, help="builds per size (default 3)")
    p.add_argument("--seed", type=int, default=0, help="RNG seed (default 0)")
    args = p.parse_args(argv)
    if args.edges not in EDGE_IMPLS:
        p.error(f"DAG_EDGES must be one of {', '.join(EDGE_IMPLS)}, not {args.edges!r}")
    if args.adjacency not in ADJACENCY_IMPLS:
        p.error(
            f"DAG_ADJACENCY must be one of {', '.join(ADJACENCY_IMPLS)}, not {args.adjacency!r}"
        )
    if args.topo not in TOPO_IMPLS:
        p.error(f"DAG_TOPO must be one of {', '.join(TOPO_IMPLS)}, not {args.topo!r}")
    try:
        args.events = [int(x) for x in str(args.events).split(",") if x.strip()]
    except ValueError:
        p.error(f"--events must be comma-separated integers, not {args.events!r}")
    if not args.events or min(args.events) < 1 or args.k < 1 or args.repeat < 1:
        p.error("--events (each), --k and --repeat must be >= 1")
    if args.adjacency == "dense" and max(args.events) > DENSE_LIMIT:
        p.error(f"--adjacency dense holds n² bytes: use --events <= {DENSE_LIMIT} or sparse")
    if not 0 <= args.dt_min <= args.dt_max or args.mean_gap <= 0:
        p.error("need 0 <= --dt-min <= --dt-max and --mean-gap > 0")
    if args.topo == "networkx":
        try:
            import networkx  # noqa: F401
        except ImportError:
            p.error("--topo networkx needs networkx installed (pip install networkx)")
    return args


def event_times(n: int, mean_gap: float, seed: int) -> np.ndarray:
    """Increasing event times.

    Args:
        n: number of events.
        mean_gap: mean exponential gap between events, seconds.
        seed: numpy RNG seed.

    Returns:
        (n,) float64 seconds, starting at 0.
    """
    gaps = np.random.default_rng(seed).exponential(mean_gap, size=n)
    gaps[0] = 0.0
    return np.cumsum(gaps)


def edges_python(t: Sequence[float], k: int, dt_min: float, dt_max: float) -> list[tuple[int, int]]:
    """Edges by a Python loop: for each event, scan forward while dt <= dt_max.

    Args:
        t: increasing event times, seconds (length n).
        k: most edges per event.
        dt_min, dt_max: the closed dt range of an edge, seconds.

    Returns:
        Edges (i, j) with i < j, sorted by i then j; for each i the first k j with
        t[i] + dt_min <= t[j] <= t[i] + dt_max.
    """
    n = len(t)
    out: list[tuple[int, int]] = []
    for i in range(n):
        # Compare times with t[i] + dt bounds, as np.searchsorted does in edges_numpy, so
        # that both round identically.
        low, high = t[i] + dt_min, t[i] + dt_max
        taken = 0
        j = i + 1
        while j < n and taken < k:
            tj = t[j]
            if tj > high:
                break
            if tj >= low:
                out.append((i, j))
                taken += 1
            j += 1
    return out


def edges_numpy(t: np.ndarray, k: int, dt_min: float, dt_max: float) -> np.ndarray:
    """The same edges as ``edges_python``, vectorised.

    ``lo = searchsorted(t, t + dt_min, "left")`` and ``hi = searchsorted(t, t + dt_max,
    "right")`` bound each event's window (exclusive of the event itself when dt_min = 0);
    the candidates ``lo + 0 .. lo + k - 1`` below ``hi`` are the edges.

    Args:
        t: (n,) increasing event times, seconds.
        k: most edges per event.
        dt_min, dt_max: the closed dt range of an edge, seconds.

    Returns:
        (m, 2) int64 array of edges (i, j), sorted by i then j.
    """
    n = len(t)
    idx = np.arange(n)
    lo = np.maximum(np.searchsorted(t, t + dt_min, side="left"), idx + 1)
    hi = np.searchsorted(t, t + dt_max, side="right")
    cand = lo[:, None] + np.arange(k)[None, :]
    keep = cand < hi[:, None]
    src = np.broadcast_to(idx[:, None], cand.shape)[keep]
    return np.stack([src, cand[keep]], axis=1).astype(np.int64)


def generations_graphlib(n: int, edges: np.ndarray) -> list[list[int]]:
    """Topological generations with ``graphlib.TopologicalSorter``.

    Args:
        n: number of nodes (0 .. n-1; isolated nodes form part of generation 0).
        edges: (m, 2) edges (parent, child).

    Returns:
        Generations, each a sorted list of node ids.
    """
    ts: graphlib.TopologicalSorter[int] = graphlib.TopologicalSorter()
    for v in range(n):
        ts.add(v)
    for a, b in edges.tolist():
        ts.add(b, a)
    ts.prepare()
    gens = []
    while ts.is_active():
        ready = sorted(ts.get_ready())
        gens.append(ready)
        ts.done(*ready)
    return gens


def generations_networkx(n: int, edges: np.ndarray) -> list[list[int]]:
    """Topological generations with ``networkx.topological_generations``.

    Args:
        n: number of nodes.
        edges: (m, 2) edges (parent, child).

    Returns:
        Generations, each a sorted list of node ids.
    """
    import networkx as nx

    g = nx.DiGraph()
    g.add_nodes_from(range(n))
    g.add_edges_from(edges.tolist())
    return [sorted(gen) for gen in nx.topological_generations(g)]


def generations_sparse(n: int, edges: np.ndarray) -> list[list[int]]:
    """Topological generations by frontier expansion over a scipy.sparse adjacency.

    Kahn's algorithm one generation at a time: the in-degrees start as the column sums of the
    CSR adjacency A; the rows of A for the frontier (``A[frontier]``, a CSR row slice) give
    the frontier's children with their multiplicities (``np.unique``), their in-degrees drop
    by those counts, and the children whose in-degree reaches 0 form the next frontier. Each
    generation costs O(frontier + its out-edges), not O(n).

    Args:
        n: number of nodes.
        edges: (m, 2) edges (parent, child).

    Returns:
        Generations, each a sorted list of node ids.

    Raises:
        ValueError: the graph has a cycle.
    """
    from scipy import sparse

    adj = sparse.csr_matrix(
        (np.ones(len(edges), dtype=np.int64), (edges[:, 0], edges[:, 1])), shape=(n, n)
    )
    indeg = np.asarray(adj.sum(axis=0)).ravel()
    frontier = np.flatnonzero(indeg == 0)
    gens = []
    seen = 0
    while frontier.size:
        gens.append(frontier.tolist())
        seen += frontier.size
        children, counts = np.unique(adj[frontier].indices, return_counts=True)
        indeg[children] -= counts
        frontier = children[indeg[children] == 0]
    if seen != n:
        raise ValueError("the graph has a cycle")
    return gens


GENERATIONS = {
    "graphlib": generations_graphlib,
    "networkx": generations_networkx,
    "sparse": generations_sparse,
}


def adjacency(n: int, edges: np.ndarray, impl: str) -> tuple[np.ndarray, np.ndarray, int]:
    """Build the adjacency matrix A (A[u, v] = 1 for an edge u -> v) and the degrees from it.

    Args:
        n: number of events.
        edges: (m, 2) int64 edge array.
        impl: ``"dense"`` (an (n, n) uint8 numpy array) or ``"sparse"`` (a
            ``scipy.sparse.csr_array`` with m stored entries).

    Returns:
        (in-degrees, out-degrees, bytes held by the matrix), degrees as (n,) int64 arrays.
    """
    if impl == "dense":
        a = np.zeros((n, n), dtype=np.uint8)
        a[edges[:, 0], edges[:, 1]] = 1
        indeg = a.sum(axis=0, dtype=np.int64)
        outdeg = a.sum(axis=1, dtype=np.int64)
        return indeg, outdeg, a.nbytes
    from scipy import sparse

    ones = np.ones(len(edges), dtype=np.uint8)
    m = sparse.csr_array((ones, (edges[:, 0], edges[:, 1])), shape=(n, n))
    indeg = np.asarray(m.sum(axis=0), dtype=np.int64).ravel()
    outdeg = np.asarray(m.sum(axis=1), dtype=np.int64).ravel()
    return indeg, outdeg, m.data.nbytes + m.indices.nbytes + m.indptr.nbytes


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point.

    Args:
        argv: arguments without the program name; None reads ``sys.argv``.

    Returns:
        The exit status (0).
    """
    args = parse_args(argv)
    # Import the libraries a variant uses before anything is timed (an import is not a build).
    if args.adjacency == "sparse" or args.topo == "sparse":
        import scipy.sparse  # noqa: F401
    if args.topo == "networkx":
        import networkx  # noqa: F401
    perf = time.perf_counter
    parts = []
    for size_i, n in enumerate(args.events):
        t = event_times(n, args.mean_gap, args.seed + size_i)
        t_list = t.tolist()
        for _ in range(args.repeat):
            t0 = perf()
            if args.edges == "python":
                edges = np.array(
                    edges_python(t_list, args.k, args.dt_min, args.dt_max), dtype=np.int64
                ).reshape(-1, 2)
            else:
                edges = edges_numpy(t, args.k, args.dt_min, args.dt_max)
            t1 = perf()
            gens = GENERATIONS[args.topo](n, edges)
            t2 = perf()
            indeg, _, adj_bytes = adjacency(n, edges, args.adjacency)
            t3 = perf()
            probe.observe("dag_build_seconds", t1 - t0)
            probe.observe("dag_generations_seconds", t2 - t1)
            probe.observe("dag_adjacency_seconds", t3 - t2)
            probe.count("dag_events_total", n)
        probe.value("dag_edges", len(edges))
        probe.value("dag_generations", len(gens))
        probe.value("dag_adjacency_bytes", adj_bytes)
        probe.value("dag_sources", float((indeg == 0).sum()))
        parts.append(
            f"{n} events: {len(edges)} edges, {len(gens)} generations, "
            f"build {(t1 - t0) * 1e3:.1f} ms, generations {(t2 - t1) * 1e3:.1f} ms, "
            f"adjacency {(t3 - t2) * 1e3:.1f} ms {adj_bytes / 1e6:.2f} MB"
        )
    print(
        f"dag_builder edges={args.edges} topo={args.topo} adjacency={args.adjacency} "
        f"k={args.k}: " + "; ".join(parts)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
