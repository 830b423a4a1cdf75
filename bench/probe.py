"""Probe cost per emitted sample, against prometheus_client's ``Gauge.set`` and an empty call.

Method. Each measurement runs in a fresh interpreter (allocator state matters: glibc heap
trimming once made batched byte buffers ten times slower), ``PROCESSES`` times. The child
times, interleaved ``ROUNDS`` times, three loops of ``N`` calls over the same list of floats:

- an empty Python function ``f(name, value)`` (the floor of any call);
- ``probe.gauge(name, value)`` while perfmon is collecting: ``PERFMON_FD`` names a pipe whose
  read end this process drains and decodes with ``perfmon.core.protocol.Decoder`` (as the
  supervisor does); the timed region ends with ``probe.flush()``, so the encoding and writing
  of every sample as protocol-version-2 binary frames (by the emitting calls when due, and by
  that final flush) is inside it; the parent checks that every sample was decoded;
- ``prometheus_client.Gauge.set(value)`` on a gauge of a private registry.

Per process the median of the rounds is taken; the figure is the median over processes of
the per-process ratio. The no-op figure runs the child without ``PERFMON_FD``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Figure, emit, median

N = 200_000
ROUNDS = 7
PROCESSES = 5


def child() -> None:
    """Run in the measured process: print one JSON object of per-round ns per call."""
    from prometheus_client import CollectorRegistry, Gauge

    from perfmon import probe

    values = [i * 0.37 for i in range(N)]
    name = "event_queue_depth"

    def empty(name: str, value: float) -> None:
        pass

    gauge = Gauge("bench_gauge", "benchmark gauge", registry=CollectorRegistry())
    gset = gauge.set

    def loop_empty() -> None:
        for v in values:
            empty(name, v)

    def loop_probe() -> None:
        g = probe.gauge
        for v in values:
            g(name, v)
        probe.flush()

    def loop_prom() -> None:
        for v in values:
            gset(v)

    out: dict[str, list[float]] = {"empty": [], "probe": [], "prometheus": []}
    loops = (("empty", loop_empty), ("probe", loop_probe), ("prometheus", loop_prom))
    for _ in range(ROUNDS):
        for key, fn in loops:
            t0 = time.perf_counter_ns()
            fn()
            out[key].append((time.perf_counter_ns() - t0) / N)
    out["enabled"] = [float(probe.enabled())]
    print(json.dumps(out))


def run_child(collect: bool) -> dict[str, list[float]]:
    """Run one fresh child, draining and decoding its channel when ``collect``."""
    from perfmon.core.protocol import Decoder

    env = {k: v for k, v in os.environ.items() if k != "PERFMON_FD"}
    cmd = [sys.executable, __file__, "--child"]
    if not collect:
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        return json.loads(res.stdout)  # type: ignore[no-any-return]
    r, w = os.pipe()
    env["PERFMON_FD"] = str(w)
    decoded = [0]

    def drain() -> None:
        dec = Decoder(0)
        while True:
            data = os.read(r, 1 << 20)
            if not data:
                break
            decoded[0] += len(dec.feed_batch(data, time.time()))

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    proc = subprocess.Popen(cmd, env=env, pass_fds=(w,), stdout=subprocess.PIPE, text=True)
    os.close(w)
    stdout, _ = proc.communicate()
    reader.join()
    os.close(r)
    out: dict[str, list[float]] = json.loads(stdout)
    expected = ROUNDS * N
    if decoded[0] != expected or out["enabled"] != [1.0]:
        raise SystemExit(f"probe bench: decoded {decoded[0]} samples, expected {expected}")
    return out


def main() -> None:
    ratios_prom, ratios_empty, probe_ns, prom_ns, empty_ns = [], [], [], [], []
    noop_ratio = []
    for _ in range(PROCESSES):
        c = run_child(collect=True)
        p, g, e = median(c["probe"]), median(c["prometheus"]), median(c["empty"])
        probe_ns.append(p)
        prom_ns.append(g)
        empty_ns.append(e)
        ratios_prom.append(p / g)
        ratios_empty.append(p / e)
        n = run_child(collect=False)
        noop_ratio.append(median(n["probe"]) / median(n["empty"]))
    detail = (
        f"probe {median(probe_ns):.0f} ns, Gauge.set {median(prom_ns):.0f} ns, empty call "
        f"{median(empty_ns):.0f} ns per sample (medians); per-process ratios "
        + ", ".join(f"{x:.2f}" for x in ratios_prom)
    )
    ratio = median(ratios_prom)
    emit(
        Figure(
            "probe cost per sample / prometheus Gauge.set",
            ratio,
            "x",
            "<= 0.6",
            ratio <= 0.6,
            f"{PROCESSES} fresh processes x {ROUNDS} interleaved rounds of {N:,} calls, "
            "perfmon draining and decoding the pipe, flush inside the timed region; "
            "median of per-process ratios",
            detail,
        )
    )
    emit(
        Figure(
            "probe cost per sample / empty function call",
            median(ratios_empty),
            "x",
            "",
            None,
            "same runs as above",
            "per-process ratios " + ", ".join(f"{x:.2f}" for x in ratios_empty),
        )
    )
    noop = median(noop_ratio)
    emit(
        Figure(
            "no-op probe (outside perfmon) / empty function call",
            noop,
            "x",
            "<= 2",
            noop <= 2.0,
            f"{PROCESSES} fresh processes without PERFMON_FD, {ROUNDS} interleaved rounds",
            "per-process ratios " + ", ".join(f"{x:.2f}" for x in noop_ratio),
        )
    )


if __name__ == "__main__":
    if sys.argv[1:] == ["--child"]:
        child()
    else:
        main()
