"""Beyond one machine: what the Prometheus endpoint costs the ingest path (and, with the
``ray`` extra installed, what the Ray executor costs against the local one).

Scrape (``--scrape``, the default). The ingest path of ``bench/ingest.py`` (probe lines in
64 KiB reads -> ``Decoder.feed_batch`` -> ``LiveState.add_batch`` -> ``Recorder.add_batch``,
one flush), with a snapshot every ``SNAP_EVERY`` reads in every condition (the runner takes
them at 4 Hz whether or not anyone serves them; here they run inline, so what building them
costs is in the figures), is timed in rounds, interleaved, under three conditions in the
same run:

- ``off``: no endpoint: the live state keeps no per-group aggregates;
- ``idle`` (on, not scraped): the live state keeps each metric per workload/variant/set
  (``LiveState.track_groups``, what ``--metrics-addr`` asks for: queued on the ingest path,
  folded and summarised at each snapshot), ``MetricsServer`` listens and every snapshot is
  published to it; nobody scrapes;
- ``hammer``: as ``idle``, and a client *process* scraping ``/metrics`` back to back
  (hundreds of times more often than Prometheus' usual 15 s), so the endpoint's thread
  (collect + text encoding) competes with ingest for the interpreter all the time.

The figures are each condition's median rate over ``off``'s (1.0: no cost), the groups' own
work (``LiveState.groups_work_s``) as a share of the round, and the cost of one scrape
(collect + encode) alone, of a snapshot with 64 (metric, workload, variant, set) rows, 200
session rows and 4 gates.

Lanes (``--lanes``): the live ingest without and with the per-(set, host) lanes that judge
live gates per host on a fleet (``lanes_figures``).

Ray (``--ray``): see ``ray_figures`` (needs ``pip install 'perfmon[ray]'``), including the
node-death and the concurrency figures (``node_death_figure``, ``concurrency_figure``).
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
from _common import Figure, emit, median, median_interval
from ingest import LINES, NAMES, SPEC, make_chunks
from perfmon.core.live import LiveState
from perfmon.core.model import GateResult, GateState, SessionSpec
from perfmon.core.protocol import Decoder
from perfmon.core.snapshot import Snapshot
from perfmon.engine.prometheus import MetricsServer, SnapshotCollector, parse_metrics_addr
from perfmon.engine.recorder import Recorder

SCRAPE_ROUNDS = 9

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


SNAP_EVERY = 32
"""Chunks between two snapshots in a round (about 5 per round: the runner snapshots at 4 Hz
and a round lasts about a second on this machine)."""


def ingest_round(
    chunks: list[bytes], tmp: Path, *, groups: bool, collector: SnapshotCollector | None = None
) -> tuple[float, LiveState]:
    """One round of the columnar ingest path, a snapshot every ``SNAP_EVERY`` chunks (in
    every condition, as the runner takes them whether or not anyone serves them), handed to
    ``collector`` when there is one; ``groups``: the live state keeps each metric per
    workload/variant/set, as it does when ``--metrics-addr`` is given. Returns samples/s
    and the live state."""
    dec = Decoder(1)
    live = LiveState(run_id="bench", campaign="bench", run_dir=str(tmp), started_t=0.0)
    live.add_session(SPEC)  # the session the decoder's samples belong to
    if groups:
        live.track_groups(0.0)
    rec = Recorder(Path(tempfile.mkdtemp(dir=tmp)))
    now = 1_764_000_000.0
    t0 = time.perf_counter()
    c0 = time.thread_time()
    n = 0
    for i, chunk in enumerate(chunks):
        batch = dec.feed_batch(chunk, now + i * 0.1)
        live.add_batch(batch)
        rec.add_batch(batch)
        n += len(batch)
        if i % SNAP_EVERY == SNAP_EVERY - 1:
            snap = live.snapshot(now=now + i * 0.1, state="running")
            if collector is not None:
                collector.publish(snap)
    rec.flush()
    dt = time.perf_counter() - t0
    _CPU.append(time.thread_time() - c0)
    rec.close()
    if n != LINES:
        raise SystemExit(f"fleet bench: {n} samples")
    return n / dt, live


_CPU: list[float] = []
"""CPU seconds of the ingesting thread in each ``ingest_round`` (``time.thread_time``): on
a loaded machine, what the round itself computed, without the waits for a core."""


def served_snapshot(tmp: Path) -> Snapshot:
    """A realistic snapshot to scrape: 200 sessions over 2 workloads x 2 variants x 2 sets,
    each with 50 samples of the 8 metrics of the ingest bench (64 (metric, group) rows), and
    4 gates."""
    live = LiveState(run_id="bench", campaign="bench", run_dir=str(tmp), started_t=0.0)
    live.track_groups(0.0)
    for i in range(200):
        spec = SessionSpec(
            id=i + 10,
            workload=("tgat", "dag")[i % 2],
            variant=("baseline", "candidate")[(i // 2) % 2],
            set_name=("golden", "canary")[(i // 4) % 2],
            index=i,
            warmup=False,
            argv=("x",),
            env=(),
            cwd="/",
            timeout_s=None,
        )
        live.add_session(spec)
        dec = Decoder(spec.id)
        text = "".join(f"{NAMES[k % 8]} {k * 0.5!r}\n" for k in range(400)).encode()
        live.add_batch(dec.feed_batch(text, 1_764_000_000.0 + i))
    gates = tuple(
        GateResult(f"g{i}", "max(x) < 1", GateState.PASS, 0.5, 100, "ok", 0.4, 0.6)
        for i in range(4)
    )
    return live.snapshot(now=time.time(), state="running", gates=gates, verdict="pass")


def scrape_figures() -> None:
    """Ingest with the endpoint off, on but not scraped, and scraped back to back, in
    interleaved rounds; the groups' own work; the cost of one scrape."""
    from prometheus_client import generate_latest

    chunks = make_chunks()
    rates: dict[str, list[float]] = {"off": [], "idle": [], "hammer": []}
    own: list[tuple[float, float]] = []
    cpu: dict[str, list[float]] = {"off": [], "idle": [], "hammer": []}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        snap = served_snapshot(tmp)
        collector = SnapshotCollector()
        collector.publish(snap)
        # the cost of one scrape, alone
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
        for r in range(SCRAPE_ROUNDS):
            order = ("off", "idle", "hammer")
            for cond in order[r % 3 :] + order[: r % 3]:  # rotated: no condition always first
                if cond == "off":
                    rates["off"].append(ingest_round(chunks, tmp, groups=False)[0])
                    cpu["off"].append(_CPU[-1])
                    continue
                collector = SnapshotCollector()
                server = MetricsServer(parse_metrics_addr("127.0.0.1:0"), collector)
                try:
                    if cond == "idle":
                        rate, live = ingest_round(chunks, tmp, groups=True, collector=collector)
                        rates["idle"].append(rate)
                        cpu["idle"].append(_CPU[-1])
                        # shares of the round: queueing (ingest path), folding (snapshots)
                        queue_s, fold_s = live.groups_work_s
                        own.append((queue_s * rate / LINES, fold_s * rate / LINES))
                        continue
                    hammer = subprocess.Popen(
                        [sys.executable, "-c", _HAMMER, server.url],
                        stdout=subprocess.PIPE,
                        stderr=subprocess.DEVNULL,
                    )
                    try:
                        assert hammer.stdout is not None
                        hammer.stdout.readline()  # 50 scrapes done: it is hammering
                        before = collector.scrapes
                        rates["hammer"].append(
                            ingest_round(chunks, tmp, groups=True, collector=collector)[0]
                        )
                        scrapes.append(collector.scrapes - before)
                        cpu["hammer"].append(_CPU[-1])
                    finally:
                        hammer.kill()
                        hammer.wait()
                finally:
                    server.close()
    off = median(rates["off"])

    def paired(num: str, den: str) -> tuple[float, float, float, float]:
        """Median of the per-round ratios num/den and its order-statistic interval."""
        ratios = [a / b for a, b in zip(rates[num], rates[den], strict=True)]
        low, high, level = median_interval(ratios)
        return median(ratios), low, high, level

    for num, den, name, method in (
        (
            "idle",
            "off",
            "ingest with /metrics on, not scraped / off",
            "on: the live state keeps each metric per workload/variant/set (track_groups), "
            "the server listens, each snapshot is published to it",
        ),
        (
            "hammer",
            "idle",
            "ingest while /metrics is scraped back to back / on, not scraped",
            "a client process scraping continuously (Prometheus scrapes every 15 s): the "
            "endpoint thread competes with ingest for the interpreter",
        ),
        ("hammer", "off", "ingest while /metrics is scraped back to back / off", "both"),
    ):
        value, low, high, level = paired(num, den)
        emit(
            Figure(
                name,
                value,
                "x",
                "",
                None,
                f"{LINES:,} probe lines through the columnar ingest path with a snapshot every "
                f"{SNAP_EVERY} reads; {SCRAPE_ROUNDS} rounds, conditions rotated within each; "
                f"median of the per-round ratios, order-statistic interval; {method}",
                f"{num} {median(rates[num]) / 1e6:.2f}M/s, {den} {median(rates[den]) / 1e6:.2f}"
                f"M/s (off {off / 1e6:.2f}M/s)"
                + (
                    f"; scrapes served per hammered round: {', '.join(map(str, scrapes))}"
                    if num == "hammer"
                    else ""
                ),
                low=low,
                high=high,
                level=level,
            )
        )
    for num, den, what in (
        ("idle", "off", "with /metrics on, not scraped / off"),
        ("hammer", "idle", "while /metrics is scraped back to back / on, not scraped"),
    ):
        ratios = [a / b for a, b in zip(cpu[num], cpu[den], strict=True)]
        low, high, level = median_interval(ratios)
        emit(
            Figure(
                f"ingest thread CPU {what}",
                median(ratios),
                "x",
                "",
                None,
                "time.thread_time of the ingesting thread over a round (decode, live state "
                "with its snapshots, recorder), paired per round, median of the ratios and "
                "its order-statistic interval: the work the ingest path itself does, without "
                "the waits for a core or for the interpreter",
                f"{num} {median(cpu[num]) * 1e3:.0f} ms, {den} {median(cpu[den]) * 1e3:.0f} ms "
                "of CPU per round (medians)",
                low=low,
                high=high,
                level=level,
            )
        )
    for i, (what, where) in enumerate(
        (("queueing", "on the ingest path"), ("folding", "at the snapshots, in their thread"))
    ):
        shares = [o[i] for o in own]
        emit(
            Figure(
                f"per-group aggregates: {what} {where}, share of the ingest",
                100.0 * median(shares),
                "%",
                "",
                None,
                "LiveState.groups_work_s (timed inside the live state) over the round's time, "
                "endpoint on, median over the rounds",
                ", ".join(f"{100 * x:.2f}%" for x in shares),
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
            f"{len(snap.group_metrics)} (metric, workload, variant, set) rows, "
            f"{len(snap.sessions)} session rows, {len(snap.gates)} gates; median of 50",
            f"{len(body):,} bytes of text",
        )
    )


LANE_ROUNDS = 9


def _gate_configs(metrics: list[str]) -> list[Any]:
    from perfmon.core.campaign import GateConfig
    from perfmon.core.gates import parse_gate

    return [
        GateConfig(name=f"g{i}", expr=f"p95({m}) < 1e9", gate=parse_gate(f"p95({m}) < 1e9"))
        for i, m in enumerate(metrics)
    ]


def lanes_round(chunks: list[bytes], gated: int | None) -> float:
    """One round of the live ingest (decode -> ``LiveState.add_batch`` -> the lanes), with
    ``HostLanes`` for ``gated`` of the 8 metric names gated (None: no lanes, as a run that
    pools hosts or has one). Returns samples/s."""
    from perfmon.core.model import SessionResult, SessionStatus
    from perfmon.engine.host_lanes import HostLanes

    dec = Decoder(1)
    live = LiveState(run_id="bench", campaign="bench", run_dir="/tmp", started_t=0.0)
    live.add_session(SPEC)
    lanes = None
    if gated is not None:
        lanes = HostLanes(
            _gate_configs(NAMES[:gated]), run_id="b", campaign="b", run_dir="/tmp", started_t=0.0
        )
        started = SessionResult(spec=SPEC, status=SessionStatus.RUNNING)
        started.host = "gpu-a"
        lanes.update(started)
    now = 1_764_000_000.0
    t0 = time.perf_counter()
    n = 0
    for i, chunk in enumerate(chunks):
        kept = live.add_batch(dec.feed_batch(chunk, now + i * 0.1))
        if lanes is not None:
            lanes.add_batch(kept)
        n += len(kept)
    dt = time.perf_counter() - t0
    if n != LINES:
        raise SystemExit(f"lanes bench: {n} samples")
    return n / dt


def lanes_figures() -> None:
    """What live per-host gates (``perfmon.engine.host_lanes``) cost the ingest: rounds of
    the live ingest without lanes, with lanes for 1 of the 8 metrics gated (the usual
    campaign gates a few of many metrics) and with all 8 gated (the worst case), rotated."""
    chunks = make_chunks()
    conds: dict[str, int | None] = {"off": None, "1 of 8 gated": 1, "8 of 8 gated": 8}
    rates: dict[str, list[float]] = {c: [] for c in conds}
    order = list(conds)
    for r in range(LANE_ROUNDS):
        for cond in order[r % 3 :] + order[: r % 3]:
            rates[cond].append(lanes_round(chunks, conds[cond]))
    for cond in order[1:]:
        ratios = [a / b for a, b in zip(rates[cond], rates["off"], strict=True)]
        low, high, level = median_interval(ratios)
        emit(
            Figure(
                f"live ingest with per-host lanes, {cond} / without",
                median(ratios),
                "x",
                "",
                None,
                f"{LINES:,} probe lines, 8 names, decoded and folded into the live state, "
                f"then into one (set, host) lane; {LANE_ROUNDS} rounds, conditions rotated; "
                "median of the per-round ratios, order-statistic interval",
                f"{cond} {median(rates[cond]) / 1e6:.2f}M/s, off "
                f"{median(rates['off']) / 1e6:.2f}M/s",
                low=low,
                high=high,
                level=level,
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
        head_node_args={
            "num_cpus": 1,
            "object_store_memory": 80 * mb,
            "include_dashboard": False,
            "resources": {"box_a": 1},
        },
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
            concurrency_figure(cluster, Path(d))
            node_death_figure(cluster, Path(d))
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


CONC_SESSIONS = 3
"""Sessions per workload and variant in the concurrency figure (2 workloads x 2 variants)."""
CONC_SLEEP_S = 0.3
CONC_ROUNDS = 2


def _fleet_campaign(path: Path, address: str, *, one_node: bool) -> Path:
    """Two workloads, baseline and candidate, ``CONC_SESSIONS`` each, on the Ray cluster at
    ``address``; with ``one_node`` both are placed on the head (resource ``box_a``)."""
    pin = (
        "[executor.placement.a]\nresources = { box_a = 1 }\n"
        "[executor.placement.b]\nresources = { box_a = 1 }\n"
        if one_node
        else ""
    )
    code = f"import time; time.sleep({CONC_SLEEP_S})"
    workloads = "".join(
        f'[[workload]]\nname = "{w}"\ncommand = [{sys.executable!r}, "-c", "{code}"]\n'
        for w in ("a", "b")
    )
    path.write_text(
        '[campaign]\nname = "fleet"\nsample_interval = "100ms"\n'
        + workloads
        + "[variant.baseline]\n[variant.candidate]\n"
        + f"[set.golden]\nsessions = {CONC_SESSIONS}\n"
        + f'[executor]\nkind = "ray"\naddress = "{address}"\n'
        + pin
    )
    return path


def concurrency_figure(cluster: Any, tmp: Path) -> None:
    """Wall time of one campaign (2 workloads x 2 variants x ``CONC_SESSIONS`` sessions of
    ``CONC_SLEEP_S`` s) through the whole runner on the 2-node cluster: spread over both
    nodes (the default placement: each workload pinned to its own node) against both pinned
    to one node, ``CONC_ROUNDS`` interleaved rounds each, medians."""
    import asyncio
    import json

    from perfmon.core.campaign import load_campaign
    from perfmon.engine.recorder import make_run_dir
    from perfmon.engine.runner import Runner

    walls: dict[str, list[float]] = {"two": [], "one": []}
    session_s: dict[str, list[float]] = {"two": [], "one": []}
    hosts: dict[str, set[str]] = {"two": set(), "one": set()}
    n = 0
    for r in range(CONC_ROUNDS):
        for kind in ("two", "one"):
            path = _fleet_campaign(
                tmp / f"fleet-{kind}-{r}.toml", cluster.address, one_node=kind == "one"
            )
            campaign = load_campaign(path)
            runner = Runner(
                campaign,
                make_run_dir(tmp / "runs", f"fleet-{kind}", time.time()),
                sample_system=False,
            )
            t0 = time.perf_counter()
            outcome = asyncio.run(runner.run())
            walls[kind].append(time.perf_counter() - t0)
            rows = [
                json.loads(line)
                for line in (outcome.run_dir / "sessions.jsonl").read_text().splitlines()
            ]
            if {row["status"] for row in rows} != {"ok"}:
                raise SystemExit(f"fleet bench: sessions {[row['status'] for row in rows]}")
            n = len(rows)
            session_s[kind].append(sum(row["wall_s"] for row in rows))
            hosts[kind] |= {row["host"] for row in rows}
    two, one = median(walls["two"]), median(walls["one"])
    emit(
        Figure(
            "campaign wall time on two nodes / one node",
            two / one,
            "x",
            "",
            None,
            f"{n} sessions (2 workloads x 2 variants x {CONC_SESSIONS}, `time.sleep"
            f"({CONC_SLEEP_S})`) through the runner, {CONC_ROUNDS} interleaved rounds, medians",
            f"two nodes {two:.2f} s, one node {one:.2f} s; sessions' own wall time "
            f"{median(session_s['two']):.2f} / {median(session_s['one']):.2f} s; per-session "
            f"overhead {(one - median(session_s['one'])) / n * 1e3:.0f} ms on one node",
        )
    )


NODE_DEATHS = 3


def _pids(marker: str) -> list[int]:
    import psutil

    return [
        p.pid
        for p in psutil.process_iter(["cmdline"])
        if any(marker in (a or "") for a in (p.info["cmdline"] or []))
    ]


async def _kill_a_node(cluster: Any, cfg: Any, k: int) -> float:
    """Add a node, run a sleeping session on it, remove the node; seconds to ``LOST``."""
    import asyncio

    from perfmon.core.campaign import ExecutorSettings, Placement
    from perfmon.engine.executor import ExecutorCallbacks
    from perfmon.engine.ray_executor import RayExecutor

    node = cluster.add_node(
        num_cpus=1, object_store_memory=80 * 1024 * 1024, resources={f"victim{k}": 1}
    )
    cluster.wait_for_nodes()
    settings = ExecutorSettings(
        kind="ray", placement=(("bench", Placement(resources=((f"victim{k}", 1.0),))),)
    )
    ex = RayExecutor(cfg, ExecutorCallbacks(lambda b: None, lambda r: None), settings)
    marker = f"perfmon-bench-node-{os.getpid()}-{k}"
    task = asyncio.create_task(
        ex.run_session(_spec(50_000 + k, f"import time; time.sleep(120)  # {marker}"))
    )
    while not _pids(marker):
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.5)
    t0 = time.perf_counter()
    cluster.remove_node(node, allow_graceful=False)
    r = await task
    dt = time.perf_counter() - t0
    if r.status.value != "lost":
        raise SystemExit(f"fleet bench: a dead node gave {r.status}: {r.error}")
    deadline = time.monotonic() + 15
    while _pids(marker) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    if _pids(marker):
        raise SystemExit("fleet bench: a workload outlived its node")
    return dt


def node_death_figure(cluster: Any, tmp: Path) -> None:
    """Time from killing a whole node (``Cluster.remove_node(allow_graceful=False)``: SIGKILL
    of its raylet, with the cluster's health-check settings) to the session on it being
    ``LOST``, ``NODE_DEATHS`` times (a node added for each), median; each time the session's
    workload must be gone."""
    import asyncio

    from perfmon.engine.executor import ExecutorConfig

    cfg = ExecutorConfig(log_dir=tmp, log_cap_bytes=1 << 20, sample_interval_s=0.25, grace_s=1.0)
    lost = [asyncio.run(_kill_a_node(cluster, cfg, k)) for k in range(NODE_DEATHS)]
    emit(
        Figure(
            "time to detect a lost node (raylet SIGKILL -> LOST)",
            median(lost),
            "s",
            "",
            None,
            f"Cluster.remove_node(allow_graceful=False) under a sleeping session, {NODE_DEATHS} "
            "times, median; the workload is gone each time",
            ", ".join(f"{x:.2f}s" for x in lost),
        )
    )


FAST_HEALTH_CHECKS = {"health_check_period_ms": 1000, "health_check_failure_threshold": 3}
"""The head's ``_system_config`` for a faster node-death detection (Ray's defaults: every
3,000 ms, 5 missed): what ``ray start --head --system-config=...`` sets on a real cluster."""


def node_death_settings_figures() -> None:
    """``node_death_figure`` on two local clusters in one run: Ray's default health checks,
    and ``FAST_HEALTH_CHECKS`` (the README's advice for fleets that must see a dead host
    quickly)."""
    import ray
    from ray.cluster_utils import Cluster

    mb = 1024 * 1024
    for label, system_config in (("default", {}), ("1 s x 3", FAST_HEALTH_CHECKS)):
        head: dict[str, Any] = {
            "num_cpus": 1,
            "object_store_memory": 80 * mb,
            "include_dashboard": False,
        }
        if system_config:
            head["_system_config"] = system_config
        cluster = Cluster(initialize_head=True, head_node_args=head)
        try:
            ray.init(address=cluster.address, log_to_driver=False)
            print(f"# health checks: {label}")
            with tempfile.TemporaryDirectory() as d:
                node_death_figure(cluster, Path(d))
        finally:
            ray.shutdown()
            cluster.shutdown()


AGENT_STARTS = 3
"""Cold starts of py-spy's node agent timed per condition."""


def agent_start_figures(burners: int = 2) -> None:
    """Time from creating a ``_NodeAgent`` actor to its first answer (``now``), cold, on a
    one-node local cluster running a CPU-bound Ray task, ``AGENT_STARTS`` times each: with the
    machine otherwise idle, then with ``burners`` CPU-bound processes beside it (a loaded
    machine). Why the Ray executor keeps the agent ready for the sessions it will profile."""
    import multiprocessing

    import ray

    from perfmon.engine.ray_executor import _NodeAgent

    ray.init(num_cpus=1, include_dashboard=False, object_store_memory=80 << 20, log_to_driver=False)

    @ray.remote(num_cpus=1)
    def busy(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            pass

    def starts() -> list[float]:
        out = []
        for _ in range(AGENT_STARTS):
            task = busy.remote(6.0)
            time.sleep(0.5)
            t0 = time.monotonic()
            cls: Any = ray.remote(num_cpus=0, max_restarts=0)(_NodeAgent)
            agent = cls.remote()
            ray.get(agent.now.remote())
            out.append(time.monotonic() - t0)
            ray.kill(agent)
            ray.get(task)
        return out

    try:
        for label, n in (("idle", 0), (f"{burners} CPU burners", burners)):
            procs = [multiprocessing.Process(target=_burn, args=(120.0,)) for _ in range(n)]
            for proc in procs:
                proc.start()
            try:
                got = starts()
            finally:
                for proc in procs:
                    proc.terminate()
                    proc.join()
            emit(
                Figure(
                    f"cold start of py-spy's node agent, {label}",
                    median(got),
                    "s",
                    "",
                    None,
                    f"ray actor created -> first now() answered, beside a CPU-bound Ray task, "
                    f"{AGENT_STARTS} times, median",
                    ", ".join(f"{x:.2f}s" for x in got),
                )
            )
    finally:
        ray.shutdown()


def _burn(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scrape", action="store_true", help="the /metrics figures")
    parser.add_argument("--ray", action="store_true", help="the Ray executor figures")
    parser.add_argument(
        "--node-death",
        action="store_true",
        help="time to detect a dead node, Ray's default health checks against 1 s x 3",
    )
    parser.add_argument(
        "--lanes",
        action="store_true",
        help="what live per-host gates (one live state per set and host) cost the ingest",
    )
    parser.add_argument(
        "--agent-start",
        action="store_true",
        help="cold start of py-spy's node agent, idle and on a loaded machine",
    )
    args = parser.parse_args()
    if args.agent_start:
        agent_start_figures()
    if args.lanes:
        lanes_figures()
    if not (args.ray or args.node_death or args.agent_start or args.lanes) or args.scrape:
        scrape_figures()
    if args.ray:
        ray_figures()
    if args.node_death:
        node_death_settings_figures()


if __name__ == "__main__":
    main()
