"""A Prometheus ``/metrics`` endpoint over a run's latest snapshot (``--metrics-addr``).

``perfmon run --metrics-addr 127.0.0.1:9464`` serves the run for Prometheus (and Grafana,
``docs/grafana-dashboard.json``). The endpoint is built so that scraping cannot disturb the
run:

- the runner hands every snapshot it publishes to ``SnapshotCollector.publish``, which only
  stores the reference (one attribute assignment on the loop: nothing is copied, encoded or
  locked on the ingest path);
- a scrape runs in prometheus_client's own HTTP server thread and builds the metric families
  from that stored, immutable ``Snapshot``; it never reads the live state, takes its lock or
  touches the recorder. ``bench/fleet.py --scrape`` measures ingest with and without a
  scraper hammering the endpoint.

What is exported (names follow the Prometheus naming guide,
https://prometheus.io/docs/practices/naming/; every series has bounded labels -- there is
never a per-session label, so cardinality does not grow with the number of sessions):

- ``perfmon_run_info{run_id, campaign, state}`` 1; ``perfmon_run_elapsed_seconds``;
  ``perfmon_run_verdict_passing`` (1 when every gate passes so far);
  ``perfmon_sessions_planned``, ``perfmon_sessions_done``, ``perfmon_samples_total``,
  ``perfmon_malformed_total``, ``perfmon_dropped_samples_total``;
- ``perfmon_gate_state{gate, state}``: 1 for the gate's current state, 0 for the other three
  (the "state set" idiom of OpenMetrics); ``perfmon_gate_passing{gate}`` 1/0;
  ``perfmon_gate_value{gate}`` (the measured left-hand side, absent while pending) with
  ``perfmon_gate_ci_low`` / ``perfmon_gate_ci_high`` where the gate has an interval, and
  ``perfmon_gate_samples{gate}`` (its n);
- ``perfmon_sessions{set, variant, workload, status}``: sessions per status over the
  snapshot's session rows (the live state keeps a bounded number of rows; older finished
  sessions are in ``perfmon_sessions_done``);
- per workload/variant/set, the session-level measurements of finished ``ok`` sessions as
  summaries: ``perfmon_session_seconds``, ``perfmon_session_cpu_seconds``,
  ``perfmon_session_peak_rss_bytes`` (``_count`` / ``_sum``);
- each workload metric per workload/variant/set (``Snapshot.group_metrics``: the live state
  keeps them only while the endpoint is on, ``LiveState.track_groups``, which ``serve_metrics``
  asks for), under its own name: a counter as ``<name>_total`` (the sum of its increments), a
  gauge as its last value, a histogram or one-off value as a summary with
  ``quantile="0.5"`` and ``"0.95"`` (the snapshot's estimates: exact up to the group's
  reservoir, DDSketch beyond), ``_count`` and ``_sum``. Names are made valid
  (``[a-zA-Z_:][a-zA-Z0-9_:]*``), a ``perfmon_`` name of the workload is skipped, and units
  become base units (``prom_name``: ``_ms`` -> ``_seconds``, ``_percent`` -> ``_ratio``, with
  the values converted; the OpenMetrics ``UNIT`` says so). A metric of the snapshot without
  any group row (machine-wide samples such as ``system_cpu_percent``, a metric whose every
  group is over the cap, or every metric when the snapshot has no groups) is served pooled
  over the run, without labels. Two names that map to one Prometheus
  name: the first (by name) is served, the other counted in
  ``perfmon_workload_metrics_clashing``;
- what the groups' cap left out: ``perfmon_workload_series`` (rows served),
  ``perfmon_workload_series_max``, ``perfmon_workload_series_dropped`` (distinct rows over
  the cap) and ``perfmon_workload_series_dropped_samples_total``.
"""

from __future__ import annotations

import ipaddress
import re
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TextIO

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector, CollectorRegistry

from perfmon.core.model import GateState
from perfmon.core.snapshot import MetricSummary, Snapshot

__all__ = [
    "DEFAULT_PORT",
    "MetricsAddress",
    "MetricsServer",
    "PromName",
    "SnapshotCollector",
    "parse_metrics_addr",
    "prom_name",
    "serve_metrics",
]

DEFAULT_PORT = 9464
"""The port of ``--metrics-addr`` when only a host is given (9464: the port the
OpenTelemetry Prometheus exporter uses by default)."""

_NAME_BAD = re.compile(r"[^a-zA-Z0-9_:]")
_GATE_STATES = tuple(s.value for s in GateState)
_SESSION_VALUES = (
    ("perfmon_session_seconds", "wall_s", "Wall time of finished ok sessions, seconds."),
    ("perfmon_session_cpu_seconds", "cpu_s", "CPU time of finished ok sessions, seconds."),
    (
        "perfmon_session_peak_rss_bytes",
        "peak_rss_bytes",
        "Peak RSS of finished ok sessions' process trees, bytes.",
    ),
)


class SnapshotCollector(Collector):
    """A prometheus_client collector that builds every family from the latest snapshot.

    ``publish`` is a runner snapshot listener: it stores the reference and returns. ``collect``
    runs in the scraping thread and reads only that immutable snapshot (reading one attribute
    is atomic in CPython), so a scrape never waits for, or delays, the run.
    """

    def __init__(self) -> None:
        self._snapshot: Snapshot | None = None
        self.scrapes = 0
        """Scrapes served (for tests and the bench)."""

    def publish(self, snapshot: Snapshot) -> None:
        """Keep ``snapshot`` as the one the next scrape reads (a runner snapshot listener)."""
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        """Yield the metric families of the latest snapshot (none before the first one)."""
        snap = self._snapshot
        self.scrapes += 1
        if snap is None:
            return
        yield from _run_families(snap)
        yield from _gate_families(snap)
        yield from _session_families(snap)
        yield from _workload_families(snap)


def _run_families(snap: Snapshot) -> Iterator[Metric]:
    info = GaugeMetricFamily(
        "perfmon_run_info",
        "The run being served (value 1).",
        labels=["run_id", "campaign", "state"],
    )
    info.add_metric([snap.run_id, snap.campaign, snap.state], 1.0)
    yield info
    for name, doc, value in (
        ("perfmon_run_elapsed_seconds", "Seconds since the run started.", snap.elapsed_s),
        (
            "perfmon_run_verdict_passing",
            "1 when every gate passes so far, else 0.",
            1.0 if snap.verdict == GateState.PASS.value else 0.0,
        ),
        ("perfmon_sessions_planned", "Sessions scheduled for the run.", snap.sessions_total),
        ("perfmon_sessions_done", "Sessions finished so far.", snap.sessions_done),
    ):
        yield GaugeMetricFamily(name, doc, value=float(value))
    for name, doc, value in (
        ("perfmon_samples", "Probe and system samples ingested.", snap.samples_total),
        ("perfmon_malformed", "Malformed probe lines dropped.", snap.malformed_total),
        (
            "perfmon_dropped_samples",
            "Samples dropped by the metric-name caps.",
            snap.dropped_samples,
        ),
    ):
        yield CounterMetricFamily(name, doc, value=float(value))


def _gate_families(snap: Snapshot) -> Iterator[Metric]:
    state = GaugeMetricFamily(
        "perfmon_gate_state",
        "1 for the gate's current state (pending, pass, fail, inconclusive), 0 for the others.",
        labels=["gate", "state"],
    )
    passing = GaugeMetricFamily(
        "perfmon_gate_passing", "1 when the gate passes, else 0.", labels=["gate"]
    )
    value = GaugeMetricFamily(
        "perfmon_gate_value",
        "The gate's measured left-hand side, in the metric's base unit (absent while pending).",
        labels=["gate"],
    )
    low = GaugeMetricFamily(
        "perfmon_gate_ci_low", "Lower end of the gate value's confidence interval.", labels=["gate"]
    )
    high = GaugeMetricFamily(
        "perfmon_gate_ci_high",
        "Upper end of the gate value's confidence interval.",
        labels=["gate"],
    )
    n = GaugeMetricFamily(
        "perfmon_gate_samples", "The number of values the gate was judged on.", labels=["gate"]
    )
    for g in snap.gates:
        current = g.state.value if isinstance(g.state, GateState) else str(g.state)
        for s in _GATE_STATES:
            state.add_metric([g.name, s], 1.0 if s == current else 0.0)
        passing.add_metric([g.name], 1.0 if current == GateState.PASS.value else 0.0)
        n.add_metric([g.name], float(g.n))
        if g.value is not None:
            value.add_metric([g.name], float(g.value))
        if g.ci_low is not None:
            low.add_metric([g.name], float(g.ci_low))
        if g.ci_high is not None:
            high.add_metric([g.name], float(g.ci_high))
    yield from (state, passing, value, low, high, n)


def _session_families(snap: Snapshot) -> Iterator[Metric]:
    labels = ["set", "variant", "workload"]
    counts: Counter[tuple[str, str, str, str]] = Counter()
    sums: dict[str, dict[tuple[str, str, str], list[float]]] = {
        m: {} for m, _, _ in _SESSION_VALUES
    }
    for row in snap.sessions:
        key = (row.set_name, row.variant, row.workload)
        counts[(*key, row.status)] += 1
        if row.status != "ok" or row.warmup:
            continue
        for metric, attr, _ in _SESSION_VALUES:
            v = getattr(row, attr)
            if v is None:
                continue
            acc = sums[metric].setdefault(key, [0.0, 0.0])
            acc[0] += 1
            acc[1] += float(v)
    sessions = GaugeMetricFamily(
        "perfmon_sessions",
        "Sessions by set, variant, workload and status (over the snapshot's session rows).",
        labels=[*labels, "status"],
    )
    for key4, c in sorted(counts.items()):
        sessions.add_metric(list(key4), float(c))
    yield sessions
    for metric, _, doc in _SESSION_VALUES:
        fam = SummaryMetricFamily(metric, doc, labels=labels)
        for key, (count, total) in sorted(sums[metric].items()):
            fam.add_metric(list(key), count_value=int(count), sum_value=total)
        yield fam


_UNIT_SUFFIXES: tuple[tuple[str, str, float, str], ...] = (
    # (suffix, base-unit suffix, factor to the base unit, OpenMetrics unit)
    ("_seconds", "_seconds", 1.0, "seconds"),
    ("_milliseconds", "_seconds", 1e-3, "seconds"),
    ("_ms", "_seconds", 1e-3, "seconds"),
    ("_microseconds", "_seconds", 1e-6, "seconds"),
    ("_us", "_seconds", 1e-6, "seconds"),
    ("_nanoseconds", "_seconds", 1e-9, "seconds"),
    ("_ns", "_seconds", 1e-9, "seconds"),
    ("_bytes", "_bytes", 1.0, "bytes"),
    ("_percent", "_ratio", 1e-2, "ratio"),
    ("_ratio", "_ratio", 1.0, "ratio"),
)
"""Unit suffixes of workload metric names and their Prometheus base units: seconds, bytes,
and ratios (0-1) rather than percentages (https://prometheus.io/docs/practices/naming/
#base-units)."""


@dataclass(frozen=True, slots=True)
class PromName:
    """How one workload metric is exported.

    Attributes:
        name: the family name: valid (``[a-zA-Z_:][a-zA-Z0-9_:]*``), in base units, without
            the ``_total`` a counter's sample gets.
        factor: multiplies the metric's values into the base unit (1e-3 for ``_ms``).
        unit: the OpenMetrics unit (``"seconds"``, ``"bytes"``, ``"ratio"``) or "".
    """

    name: str
    factor: float
    unit: str


def prom_name(name: str, kind: str) -> PromName | None:
    """The Prometheus name of a workload metric, or None for one to skip (a ``perfmon_``
    name: a workload cannot pose as perfmon's own series).

    Characters outside ``[a-zA-Z0-9_:]`` become ``_`` (a leading digit gets a ``_`` before
    it); a counter's ``_total`` is taken off (prometheus_client puts it on the sample); a
    unit suffix becomes its base unit (``_UNIT_SUFFIXES``: ``chunk_ms`` -> ``chunk_seconds``
    with ``factor`` 1e-3, ``cpu_percent`` -> ``cpu_ratio`` with 1e-2).

    Args:
        name: the metric's name as the workload sent it.
        kind: its ``MetricKind`` value.
    """
    clean = _NAME_BAD.sub("_", name)
    if not clean or clean[0].isdigit():
        clean = "_" + clean
    if clean.startswith("perfmon_"):
        return None
    total = kind == "counter" and clean.endswith("_total") and len(clean) > len("_total")
    base = clean[: -len("_total")] if total else clean
    for suffix, unit_suffix, factor, unit in _UNIT_SUFFIXES:
        if base.endswith(suffix) and len(base) > len(suffix):
            return PromName(base[: -len(suffix)] + unit_suffix, factor, unit)
    return PromName(base, 1.0, "")


_LABELS = ("workload", "variant", "set")
_SAMPLE_SUFFIXES = {"counter": ("_total",), "gauge": ("",), "summary": ("", "_count", "_sum")}


def _workload_families(snap: Snapshot) -> Iterator[Metric]:
    """Each workload metric per workload/variant/set (``Snapshot.group_metrics``) with its
    Prometheus type; a metric without groups (machine-wide samples, or a snapshot without
    groups) pooled, without labels."""
    grouped: dict[str, list[MetricSummary]] = {}
    for m in snap.group_metrics:
        grouped.setdefault(m.name, []).append(m)
    rows: list[tuple[str, list[MetricSummary]]] = list(grouped.items())
    rows += [(m.name, [m]) for m in snap.metrics if m.name not in grouped]
    used: set[str] = set()
    clashes = 0
    for raw, summaries in sorted(rows, key=lambda r: r[0]):
        kind = summaries[0].kind
        pn = prom_name(raw, kind)
        if pn is None:
            continue
        typ = kind if kind in ("counter", "gauge") else "summary"
        names = [pn.name + suffix for suffix in _SAMPLE_SUFFIXES[typ]]
        if any(n in used for n in (pn.name, *names)):
            clashes += 1  # two workload names map to one Prometheus name: the first wins
            continue
        used.update((pn.name, *names))
        yield _family(raw, pn, typ, summaries)
    if snap.group_rows_max:
        yield from _group_cap_families(snap, clashes)


def _family(raw: str, pn: PromName, typ: str, rows: list[MetricSummary]) -> Metric:
    """One workload metric's family: a counter's total, a gauge's last value, or a summary's
    p50/p95 (the snapshot's reservoir/sketch estimates), count and sum, per row's labels."""
    kind = rows[0].kind
    scope = "per workload/variant/set" if rows[0].labels else "over every session"
    doc = f"Workload metric {raw} ({kind}), {scope}, since the run started."
    if pn.factor != 1.0:
        doc += f" Converted to base units (x{pn.factor:g})."
    fam = Metric(pn.name, doc, typ, unit=pn.unit)
    f = pn.factor
    for m in rows:
        labels = {k: v for k, v in m.labels if k in _LABELS}
        if typ == "counter":
            fam.add_sample(pn.name + "_total", labels, float(m.total) * f)
        elif typ == "gauge":
            fam.add_sample(pn.name, labels, float(m.last) * f)
        else:
            fam.add_sample(pn.name, {**labels, "quantile": "0.5"}, float(m.p50) * f)
            fam.add_sample(pn.name, {**labels, "quantile": "0.95"}, float(m.p95) * f)
            fam.add_sample(pn.name + "_count", labels, float(m.count))
            fam.add_sample(pn.name + "_sum", labels, float(m.total) * f)
    return fam


def _group_cap_families(snap: Snapshot, clashes: int) -> Iterator[Metric]:
    """What the per-group rows' cap (and name clashes) left out, in perfmon's own series."""
    for name, doc, value in (
        (
            "perfmon_workload_series",
            "(metric, workload, variant, set) rows kept for /metrics.",
            len(snap.group_metrics),
        ),
        ("perfmon_workload_series_max", "The cap on those rows.", snap.group_rows_max),
        (
            "perfmon_workload_series_dropped",
            "Distinct (metric, workload, variant, set) rows over the cap, not exported"
            + (" (at least)." if snap.group_rows_dropped_capped else "."),
            snap.group_rows_dropped,
        ),
        (
            "perfmon_workload_metrics_clashing",
            "Workload metrics not exported because another one has the same Prometheus name.",
            clashes,
        ),
    ):
        yield GaugeMetricFamily(name, doc, value=float(value))
    yield CounterMetricFamily(
        "perfmon_workload_series_dropped_samples",
        "Samples of rows over the cap (counted, not exported; the recording has them).",
        value=float(snap.group_samples_dropped),
    )


# ---------------------------------------------------------------------- address and server
@dataclass(frozen=True, slots=True)
class MetricsAddress:
    """Where ``/metrics`` listens.

    Attributes:
        host: an IP address or host name ("127.0.0.1" unless given).
        port: TCP port (0: any free port).
        loopback: True when ``host`` is a loopback address (or ``localhost``).
    """

    host: str
    port: int
    loopback: bool

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_metrics_addr(text: str) -> MetricsAddress:
    """Parse ``--metrics-addr``: ``HOST:PORT``, ``[IPv6]:PORT``, ``:PORT`` or ``PORT``
    (loopback ``127.0.0.1``), or ``HOST`` (port ``DEFAULT_PORT``).

    Raises:
        ValueError: with a one-line reason when the address cannot be parsed or the port is
            not in 0..65535.
    """
    s = text.strip()
    if not s:
        raise ValueError("empty address")
    host, port_text = "127.0.0.1", ""
    if s.startswith("["):
        end = s.find("]")
        if end < 0:
            raise ValueError(f"{text!r}: unclosed '[' in an IPv6 address")
        host, rest = s[1:end], s[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ValueError(f"{text!r}: expected ':PORT' after ']'")
        port_text = rest[1:]
    elif s.isdigit():
        port_text = s
    elif s.count(":") == 1:
        h, port_text = s.split(":")
        host = h or host
    elif ":" in s:  # a bare IPv6 address
        host = s
    else:
        host = s
    if port_text:
        if not port_text.isdigit():
            raise ValueError(f"{text!r}: the port must be a number")
        port = int(port_text)
    else:
        port = DEFAULT_PORT
    if not 0 <= port <= 65535:
        raise ValueError(f"{text!r}: port {port} is not in 0..65535")
    if host == "localhost":
        loopback = True
    else:
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False  # a host name: it may resolve to anything
    return MetricsAddress(host, port, loopback)


class MetricsServer:
    """prometheus_client's HTTP server (a daemon thread) serving one ``SnapshotCollector``.

    Args:
        addr: where to listen.
        collector: the collector to serve (a new one by default).

    Raises:
        OSError: if the address cannot be bound (in use, not a local address).
    """

    def __init__(self, addr: MetricsAddress, collector: SnapshotCollector | None = None) -> None:
        from prometheus_client import start_http_server

        self.collector = collector or SnapshotCollector()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.collector)
        self._server, self._thread = start_http_server(
            addr.port, addr=addr.host, registry=self.registry
        )
        self.port: int = self._server.server_address[1]
        """The bound port (the chosen one when ``addr.port`` was 0)."""
        self.addr = MetricsAddress(addr.host, self.port, addr.loopback)
        self._closed = threading.Event()

    @property
    def url(self) -> str:
        """``http://HOST:PORT/metrics``."""
        return f"http://{self.addr}/metrics"

    def close(self) -> None:
        """Stop serving and close the socket. Idempotent."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve_metrics(
    add_listener: Callable[[Callable[[Snapshot], None]], Any] | list[Callable[[Snapshot], None]],
    addr: str | MetricsAddress,
    *,
    warn: TextIO | None = None,
    track_groups: Callable[[], Any] | None = None,
) -> MetricsServer:
    """Start ``/metrics`` for a run: ``serve_metrics(runner.snapshot_listeners, "127.0.0.1:9464")``.

    Args:
        add_listener: the runner's ``snapshot_listeners`` list (or a function registering a
            listener): the collector's ``publish`` is added to it.
        addr: the ``--metrics-addr`` text or a parsed address.
        warn: where the warning for a non-loopback address goes (default stderr).
        track_groups: called once the endpoint listens, to have the live state keep each
            metric per workload/variant/set (``perfmon.engine.runner.Runner.track_groups``);
            without it the workload metrics are served pooled, without labels.

    Returns:
        The running server (call ``close`` at the end of the run).

    Raises:
        ValueError: for an address that cannot be parsed.
        OSError: if it cannot be bound.
    """
    a = parse_metrics_addr(addr) if isinstance(addr, str) else addr
    if not a.loopback:
        print(
            f"perfmon: warning: /metrics listens on {a}, which is not a loopback address: "
            "anyone who can reach it can read this run's metrics",
            file=warn if warn is not None else sys.stderr,
            flush=True,
        )
    server = MetricsServer(a)
    if track_groups is not None:
        track_groups()
    if isinstance(add_listener, list):
        add_listener.append(server.collector.publish)
    else:
        add_listener(server.collector.publish)
    return server


def families(snapshot: Snapshot) -> Iterable[Metric]:
    """The metric families one snapshot gives (what a scrape would serve), for tests and
    exporters that write the text format to a file."""
    c = SnapshotCollector()
    c.publish(snapshot)
    return list(c.collect())
