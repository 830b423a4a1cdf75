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
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


def ray_figures() -> None:
    """The Ray executor's figures (see ``perfmon.engine.ray_executor``)."""
    raise SystemExit("fleet bench: the Ray figures are not built yet")


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
