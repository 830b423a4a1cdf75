"""Beyond one machine: what the Prometheus endpoint costs the ingest path (and, with the
``ray`` extra installed, what the Ray executor costs against the local one).

Scrape (``--scrape``, the default). The ingest path of ``bench/ingest.py`` (probe lines in
64 KiB reads -> ``Decoder.feed_batch`` -> ``LiveState.add_batch`` -> ``Recorder.add_batch``,
one flush) is timed in rounds, interleaved, under three conditions in the same run:

- ``off``: no endpoint;
- ``idle``: ``MetricsServer`` listening, the snapshot published, nobody scraping;
- ``hammer``: a client *process* scraping ``/metrics`` back to back (hundreds of times more
  often than Prometheus' usual 15 s), so the endpoint's thread (collect + text encoding)
  competes with ingest for the interpreter all the time.

The figures are each condition's median rate over ``off``'s (1.0: no cost). The snapshot
served is a real one of the live state after a full round (8 metrics, 200 session rows,
4 gates), and the cost of one scrape (collect + encode) is measured alone.

Ray (``--ray``): see ``ray_figures`` (needs ``pip install 'perfmon[ray]'``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Figure, emit, median
from ingest import LINES, make_chunks
from perfmon.core.live import LiveState
from perfmon.core.model import GateResult, GateState, SessionSpec
from perfmon.core.protocol import Decoder
from perfmon.core.snapshot import Snapshot
from perfmon.engine.prometheus import MetricsServer, SnapshotCollector, parse_metrics_addr
from perfmon.engine.recorder import Recorder

ROUNDS = 5

_HAMMER = """
import sys, urllib.request
url = sys.argv[1]
n = 0
while True:
    with urllib.request.urlopen(url, timeout=5) as r:
        r.read()
    n += 1
    if n % 50 == 0:
        print(n, flush=True)
"""


def ingest_round(chunks: list[bytes], tmp: Path) -> tuple[float, LiveState]:
    """One round of the columnar ingest path; returns samples/s and the live state."""
    dec = Decoder(1)
    live = LiveState(run_id="bench", campaign="bench", run_dir=str(tmp), started_t=0.0)
    rec = Recorder(Path(tempfile.mkdtemp(dir=tmp)))
    now = 1_764_000_000.0
    t0 = time.perf_counter()
    n = 0
    for i, chunk in enumerate(chunks):
        batch = dec.feed_batch(chunk, now + i * 0.1)
        live.add_batch(batch)
        rec.add_batch(batch)
        n += len(batch)
    rec.flush()
    dt = time.perf_counter() - t0
    rec.close()
    if n != LINES:
        raise SystemExit(f"fleet bench: {n} samples")
    return n / dt, live


def served_snapshot(live: LiveState) -> Snapshot:
    """A realistic snapshot: the live state of a round, 200 sessions, 4 gates."""
    for i in range(200):
        live.add_session(
            SessionSpec(
                id=i + 10,
                workload="tgat",
                variant="baseline" if i % 2 else "candidate",
                set_name="canary",
                index=i,
                warmup=False,
                argv=("x",),
                env=(),
                cwd="/",
                timeout_s=None,
            )
        )
    gates = tuple(
        GateResult(f"g{i}", "max(x) < 1", GateState.PASS, 0.5, 100, "ok", 0.4, 0.6)
        for i in range(4)
    )
    return live.snapshot(now=time.time(), state="running", gates=gates, verdict="pass")


def scrape_figures() -> None:
    chunks = make_chunks()
    rates: dict[str, list[float]] = {"off": [], "idle": [], "hammer": []}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        _, live = ingest_round(chunks, tmp)
        snap = served_snapshot(live)
        collector = SnapshotCollector()
        collector.publish(snap)
        # the cost of one scrape, alone
        from prometheus_client import generate_latest

        server = MetricsServer(parse_metrics_addr("127.0.0.1:0"), collector)
        body = generate_latest(server.registry)
        times = []
        for _ in range(50):
            t0 = time.perf_counter()
            generate_latest(server.registry)
            times.append(time.perf_counter() - t0)
        scrape_s = median(times)
        server.close()
        scrapes: list[int] = []
        for _ in range(ROUNDS):
            rates["off"].append(ingest_round(chunks, tmp)[0])
            server = MetricsServer(parse_metrics_addr("127.0.0.1:0"), collector)
            try:
                rates["idle"].append(ingest_round(chunks, tmp)[0])
                hammer = subprocess.Popen(
                    [sys.executable, "-c", _HAMMER, server.url],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                )
                try:
                    assert hammer.stdout is not None
                    hammer.stdout.readline()  # 50 scrapes done: it is hammering
                    before = collector.scrapes
                    rates["hammer"].append(ingest_round(chunks, tmp)[0])
                    scrapes.append(collector.scrapes - before)
                finally:
                    hammer.kill()
                    hammer.wait()
            finally:
                server.close()
    off = median(rates["off"])
    emit(
        Figure(
            "ingest with /metrics idle / without",
            median(rates["idle"]) / off,
            "x",
            "",
            None,
            f"{LINES:,} probe lines through the columnar ingest path, {ROUNDS} interleaved "
            "rounds per condition, medians",
            f"off {off / 1e6:.2f}M/s, idle {median(rates['idle']) / 1e6:.2f}M/s",
        )
    )
    emit(
        Figure(
            "ingest while /metrics is scraped back to back / without",
            median(rates["hammer"]) / off,
            "x",
            "",
            None,
            "a client process scraping continuously (Prometheus scrapes every 15 s); the "
            "endpoint thread competes with ingest for the interpreter",
            f"hammer {median(rates['hammer']) / 1e6:.2f}M/s; scrapes served during each "
            f"hammered round: {', '.join(map(str, scrapes))}",
        )
    )
    emit(
        Figure(
            "one scrape (collect + encode), served snapshot",
            scrape_s * 1e3,
            "ms",
            "",
            None,
            f"generate_latest over a snapshot of {len(snap.metrics)} metrics, "
            f"{len(snap.sessions)} session rows, {len(snap.gates)} gates; median of 50",
            f"{len(body):,} bytes of text",
        )
    )


RAY_SESSIONS = 15
LATENCY_CODE = """
import time
from perfmon import probe
for i in range(60):
    probe.gauge("sent_at_seconds", time.time())
    probe.flush()
    time.sleep(0.05)
"""
FLOOD_CODE = """
import time
from perfmon import probe
probe.gauge("flood_start_seconds", time.time())
probe.flush()
for i in range({n}):
    probe.observe("flood_seconds", i * 1e-6)
"""
FLOOD = 1_000_000
FLOOD_ROUNDS = 3
SLEEP_CODE = "import time; time.sleep(120)"


def _spec(i: int, code: str) -> Any:
    return SessionSpec(
        id=i,
        workload="bench",
        variant="baseline",
        set_name="fleet",
        index=i,
        warmup=False,
        argv=(sys.executable, "-c", code),
        env=(("PYTHONPATH", os.environ.get("PYTHONPATH", "")),),
        cwd="/tmp",
        timeout_s=None,
    )


def ray_figures() -> None:
    """Local supervisor against the Ray executor on a local 2-node cluster, side by side:
    dispatch overhead per session (run_session's elapsed time minus the session's own wall
    time, ``/bin/true``, interleaved), sample latency workload -> daemon (a gauge carrying its
    send time, 60 per session), probe throughput streamed back (``FLOOD`` observations as
    fast as the probe emits them: samples received per second between the first and last
    batch), and the time from ``kill -9`` of a session's Ray worker to ``LOST``.

    Probe throughput is ``FLOOD`` samples over the time from the workload's first emission
    (a gauge carrying its send time, flushed before the flood) to the daemon's receipt of the
    last one, ``FLOOD_ROUNDS`` floods per executor, interleaved, median: end to end, so it
    cannot be inflated by the stream delivering the flood in one late batch (the first
    version measured between the first and last batch received, which a batching stream
    makes near zero). The Ray executor is started as the runner starts it (``start``: its
    node agents and clock offsets before any session); the agents' CPU time while the
    sessions run is read with psutil (processes titled ``ray::_NodeAgent``)."""
    import asyncio

    import ray
    from ray.cluster_utils import Cluster

    from perfmon.core.campaign import ExecutorSettings
    from perfmon.engine.executor import ExecutorCallbacks, ExecutorConfig, local_executor
    from perfmon.engine.ray_executor import RayExecutor

    mb = 1024 * 1024
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "object_store_memory": 80 * mb, "include_dashboard": False},
    )
    try:
        cluster.add_node(num_cpus=1, object_store_memory=80 * mb)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        with tempfile.TemporaryDirectory() as d:
            received: list[tuple[float, Any]] = []

            def on_samples(batch: Any) -> None:
                received.append((time.time(), batch))

            cb = ExecutorCallbacks(on_samples, lambda r: None)
            cfg = ExecutorConfig(
                log_dir=Path(d), log_cap_bytes=1 << 20, sample_interval_s=0.25, grace_s=1.0
            )
            execs = {
                "local": local_executor(cfg, cb),
                "ray": RayExecutor(cfg, cb, ExecutorSettings(kind="ray")),
            }
            asyncio.run(_ray_bench(execs, received))
    finally:
        ray.shutdown()
        cluster.shutdown()


def _values(batch: Any, name: str) -> Any:
    """The values of metric ``name`` in a ``SampleBatch``."""
    keys = [i for i, m in enumerate(batch.metrics) if m == name]
    if not keys:
        return []
    import numpy as np

    return batch.value[np.isin(batch.key, keys)]


def _agents_cpu_s() -> tuple[int, float]:
    """(number, total user + system CPU seconds) of the node agent processes running now."""
    import psutil

    n, total = 0, 0.0
    for p in psutil.process_iter(["cmdline"]):
        try:
            if any("_NodeAgent" in (a or "") for a in (p.info["cmdline"] or [])):
                times = p.cpu_times()
                n, total = n + 1, total + times.user + times.system
        except psutil.Error:
            continue
    return n, total


async def _ray_bench(execs: dict[str, Any], received: list[tuple[float, Any]]) -> None:
    import asyncio

    import numpy as np

    t0 = time.perf_counter()
    await execs["ray"].start()  # as the runner does: agents and clock offsets first
    start_s = time.perf_counter() - t0
    offsets = dict(getattr(execs["ray"], "offsets", {}))
    await execs["ray"].run_session(_spec(10_000, "pass"))  # warm a worker up
    agents_before = _agents_cpu_s()
    overhead: dict[str, list[float]] = {k: [] for k in execs}
    sid = 0
    for _ in range(RAY_SESSIONS):
        for kind, ex in execs.items():
            sid += 1
            t0 = time.perf_counter()
            r = await ex.run_session(_spec(sid, "pass"))
            overhead[kind].append(time.perf_counter() - t0 - (r.wall_s or 0.0))
    lat: dict[str, list[float]] = {}
    for kind, ex in execs.items():
        received.clear()
        sid += 1
        await ex.run_session(_spec(sid, LATENCY_CODE))
        lat[kind] = [t - float(v) for t, b in received for v in _values(b, "sent_at_seconds")]
    rates: dict[str, list[float]] = {k: [] for k in execs}
    items: dict[str, list[int]] = {k: [] for k in execs}
    for _ in range(FLOOD_ROUNDS):
        for kind, ex in execs.items():
            received.clear()
            sid += 1
            await ex.run_session(_spec(sid, FLOOD_CODE.format(n=FLOOD)))
            start = [float(v) for _, b in received for v in _values(b, "flood_start_seconds")]
            got = [(t, len(_values(b, "flood_seconds"))) for t, b in received]
            got = [(t, n) for t, n in got if n]
            n = sum(k for _, k in got)
            if n != FLOOD or not start:
                raise SystemExit(f"fleet bench: {kind} delivered {n} of {FLOOD} samples")
            rates[kind].append(n / (got[-1][0] - start[0]))
            items[kind].append(len(got))
    rate = {k: median(v) for k, v in rates.items()}
    agents_after = _agents_cpu_s()
    lost: list[float] = []
    ray_ex = execs["ray"]
    for _ in range(3):
        sid += 1
        task = asyncio.create_task(ray_ex.run_session(_spec(sid, SLEEP_CODE)))
        while sid not in ray_ex.worker_pids:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.5)
        t0 = time.perf_counter()
        os.kill(ray_ex.worker_pids[sid], 9)
        r = await task
        lost.append(time.perf_counter() - t0)
        if r.status.value != "lost":
            raise SystemExit(f"fleet bench: a killed worker gave {r.status}")
    getattr(execs["local"], "close", lambda: None)()
    lo, ra = median(overhead["local"]), median(overhead["ray"])
    emit(
        Figure(
            "dispatch overhead per session, Ray / local",
            ra / lo,
            "x",
            "",
            None,
            f"run_session elapsed minus the session's wall time, /bin/true-like `python -c pass`, "
            f"{RAY_SESSIONS} sessions each, interleaved, medians",
            f"local {lo * 1e3:.1f} ms, Ray {ra * 1e3:.1f} ms (+{(ra - lo) * 1e3:.1f} ms)",
        )
    )
    for kind in execs:
        p50, p95 = np.percentile(lat[kind], [50, 95]) if lat[kind] else (float("nan"),) * 2
        emit(
            Figure(
                f"sample latency workload -> daemon, {kind}",
                float(p50) * 1e3,
                "ms (p50)",
                "",
                None,
                "a gauge carrying its send time, flushed every 50 ms, 60 per session",
                f"p95 {float(p95) * 1e3:.1f} ms over {len(lat[kind])} samples",
            )
        )
    emit(
        Figure(
            "probe throughput streamed back, Ray / local",
            rate["ray"] / rate["local"],
            "x",
            "",
            None,
            f"{FLOOD:,} probe.observe calls as fast as possible; samples per second from the "
            "workload's first emission to the daemon's receipt of the last sample, "
            f"{FLOOD_ROUNDS} floods each, interleaved, medians",
            f"local {rate['local'] / 1e6:.2f}M/s, Ray {rate['ray'] / 1e6:.2f}M/s; batches "
            f"delivered per flood: local {items['local']}, Ray {items['ray']}",
        )
    )
    if offsets:
        us = sorted(o.uncertainty_s for o in offsets.values())
        emit(
            Figure(
                "clock offset uncertainty (half the shortest round trip), median node",
                median(us) * 1e3,
                "ms",
                "",
                None,
                "estimated by RayExecutor.start on every node before any session (agent "
                "actor, 5 round trips, NTP's method)",
                "; ".join(
                    f"offset {o.offset_s * 1e3:+.3f} ms +- {o.uncertainty_s * 1e3:.3f} ms"
                    for o in offsets.values()
                )
                + f"; start (agents + estimates) took {start_s:.2f} s",
            )
        )
    n_agents, cpu_before = agents_before
    emit(
        Figure(
            "node agents' CPU while the sessions ran",
            (agents_after[1] - cpu_before) * 1e3,
            "ms",
            "",
            None,
            "user + system CPU of the ray::_NodeAgent processes (psutil) from after the "
            "warm-up session to the end of the latency and throughput sessions",
            f"{n_agents} agents alive at the window's start, {agents_after[0]} at its end; "
            f"{2 * RAY_SESSIONS + 2 + 2 * FLOOD_ROUNDS} sessions ran (an agent lives only "
            "while it estimates an offset or profiles)",
        )
    )
    emit(
        Figure(
            "time to detect a lost worker (kill -9 -> LOST)",
            median(lost),
            "s",
            "",
            None,
            "SIGKILL of the Ray worker running a sleeping session, 3 times, median",
            ", ".join(f"{x:.2f}s" for x in lost),
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scrape", action="store_true", help="the /metrics figures")
    parser.add_argument("--ray", action="store_true", help="the Ray executor figures")
    args = parser.parse_args()
    if not args.ray or args.scrape:
        scrape_figures()
    if args.ray:
        ray_figures()


if __name__ == "__main__":
    main()
