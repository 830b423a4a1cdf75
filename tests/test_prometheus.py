"""The Prometheus /metrics endpoint: built from the latest snapshot, parsed by
prometheus_client's own parser, bounded labels, loopback by default."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from perfmon.core.batch import SampleBatch
from perfmon.core.campaign import load_campaign
from perfmon.core.live import MAX_GROUP_ROWS, LiveState
from perfmon.core.model import GateResult, GateState, MetricKind, Sample, SessionSpec
from perfmon.core.snapshot import MetricSummary, SessionRow, Snapshot
from perfmon.engine.fake_executor import FakeExecutor, FakeSample, FakeSession
from perfmon.engine.prometheus import (
    DEFAULT_PORT,
    MetricsServer,
    SnapshotCollector,
    parse_metrics_addr,
    prom_name,
    serve_metrics,
)
from perfmon.engine.recorder import make_run_dir
from perfmon.engine.runner import Runner


def row(i: int, variant: str, status: str = "ok", wall: float | None = 1.0) -> SessionRow:
    return SessionRow(
        id=i,
        workload="tgat",
        variant=variant,
        set_name="golden",
        params="",
        warmup=False,
        status=status,
        status_text=status,
        wall_s=wall,
        cpu_s=0.5 if wall is not None else None,
        peak_rss_bytes=1000 if wall is not None else None,
        samples=3,
        malformed=0,
    )


def metric(name: str, kind: str) -> MetricSummary:
    return MetricSummary(
        name=name, kind=kind, count=4, total=10.0, last=4.0, min=1.0, max=4.0, mean=2.5,
        p50=2.0, p95=3.9,
    )  # fmt: skip


def snapshot() -> Snapshot:
    return Snapshot(
        version=1,
        run_id="20261201T000000Z-audit",
        campaign="audit",
        run_dir="/tmp/x",
        state="running",
        started_t=100.0,
        now_t=160.0,
        sessions_total=40,
        sessions_done=3,
        samples_total=1234,
        malformed_total=2,
        sessions=(
            row(0, "baseline"),
            row(1, "candidate", wall=0.5),
            row(2, "candidate", wall=0.7),
            row(3, "candidate", status="exit", wall=None),
            row(4, "baseline", status="running", wall=None),
        ),
        metrics=(
            metric("event_queue_depth", "gauge"),
            metric("chunks", "counter"),
            metric("chunk_seconds", "timing"),
            metric("bad name-with.dots", "value"),
            metric("perfmon_sneaky", "gauge"),
        ),
        gates=(
            GateResult("Speed", "speedup(...) >= 1.4", GateState.PASS, 1.6, 10, "ok", 1.5, 1.7),
            GateResult("Queue", "max(q) < 100", GateState.PENDING, None, 0, "pending"),
            GateResult("RAM", "max(m) <= 70", GateState.FAIL, 80.0, 5, "too much"),
        ),
        verdict="fail",
    )


def parsed(text: str) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    out: dict[str, list[tuple[str, dict[str, str], float]]] = {}
    for fam in text_string_to_metric_families(text):
        out[fam.name] = [(s.name, dict(s.labels), s.value) for s in fam.samples]
    return out


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        assert resp.status == 200
        return str(resp.read().decode())


def test_parse_metrics_addr() -> None:
    a = parse_metrics_addr("127.0.0.1:9464")
    assert (a.host, a.port, a.loopback) == ("127.0.0.1", 9464, True)
    assert parse_metrics_addr("9000") == parse_metrics_addr(":9000")
    assert parse_metrics_addr("9000").host == "127.0.0.1"
    assert parse_metrics_addr("localhost").port == DEFAULT_PORT
    v6 = parse_metrics_addr("[::1]:9464")
    assert (v6.host, v6.port, v6.loopback) == ("::1", 9464, True)
    assert str(v6) == "[::1]:9464"
    assert not parse_metrics_addr("0.0.0.0:9464").loopback
    assert not parse_metrics_addr("metrics.example:80").loopback
    for bad in ("", "host:port", "1.2.3.4:70000", "[::1"):
        with pytest.raises(ValueError):
            parse_metrics_addr(bad)


def test_a_scrape_serves_the_latest_snapshot_and_parses() -> None:
    server = MetricsServer(parse_metrics_addr("127.0.0.1:0"))
    try:
        assert parsed(scrape(server.url)) == {}  # nothing before the first snapshot
        server.collector.publish(snapshot())
        m = parsed(scrape(server.url))
    finally:
        server.close()
    states = {(lab["gate"], lab["state"]): v for _, lab, v in m["perfmon_gate_state"]}
    assert states[("Speed", "pass")] == 1.0 and states[("Speed", "fail")] == 0.0
    assert states[("Queue", "pending")] == 1.0 and states[("RAM", "fail")] == 1.0
    assert sum(states.values()) == 3  # one state per gate
    passing = {lab["gate"]: v for _, lab, v in m["perfmon_gate_passing"]}
    assert passing == {"Speed": 1.0, "Queue": 0.0, "RAM": 0.0}
    values = {lab["gate"]: v for _, lab, v in m["perfmon_gate_value"]}
    assert values == {"Speed": 1.6, "RAM": 80.0}  # pending: no value
    assert [(lab["gate"], v) for _, lab, v in m["perfmon_gate_ci_low"]] == [("Speed", 1.5)]
    assert m["perfmon_run_verdict_passing"][0][2] == 0.0
    assert m["perfmon_run_elapsed_seconds"][0][2] == 60.0
    sessions = {
        (lab["variant"], lab["status"]): v for _, lab, v in m["perfmon_sessions"]
    }  # fmt: skip
    assert sessions == {
        ("baseline", "ok"): 1,
        ("baseline", "running"): 1,
        ("candidate", "ok"): 2,
        ("candidate", "exit"): 1,
    }
    wall = {(name, lab["variant"]): v for name, lab, v in m["perfmon_session_seconds"]}
    assert wall[("perfmon_session_seconds_count", "candidate")] == 2
    assert wall[("perfmon_session_seconds_sum", "candidate")] == pytest.approx(1.2)
    assert wall[("perfmon_session_seconds_count", "baseline")] == 1
    # workload metrics by kind
    assert m["event_queue_depth"] == [("event_queue_depth", {}, 4.0)]
    assert m["chunks"] == [("chunks_total", {}, 10.0)]
    q = {(name, lab.get("quantile")): v for name, lab, v in m["chunk_seconds"]}
    assert q == {
        ("chunk_seconds", "0.5"): 2.0,
        ("chunk_seconds", "0.95"): 3.9,
        ("chunk_seconds_count", None): 4.0,
        ("chunk_seconds_sum", None): 10.0,
    }
    assert "bad_name_with_dots" in m
    assert "perfmon_sneaky" not in m  # a workload cannot pose as perfmon's own series
    assert m["perfmon_samples"] == [("perfmon_samples_total", {}, 1234.0)]


def test_no_series_has_a_per_session_label() -> None:
    c = SnapshotCollector()
    c.publish(snapshot())
    many = snapshot()
    c2 = SnapshotCollector()
    rows = tuple(row(i, "baseline" if i % 2 else "candidate") for i in range(500))
    c2.publish(
        Snapshot(**{**{f: getattr(many, f) for f in many.__dataclass_fields__}, "sessions": rows})
    )
    series = {(s.name, tuple(sorted(s.labels.items()))) for f in c.collect() for s in f.samples}
    series2 = {(s.name, tuple(sorted(s.labels.items()))) for f in c2.collect() for s in f.samples}
    labels = {k for _, lab in series2 for k, _ in lab}
    assert labels <= {
        "run_id",
        "campaign",
        "state",
        "gate",
        "set",
        "variant",
        "workload",
        "status",
        "quantile",
    }
    # 500 sessions make no more series than 5 did
    assert len(series2) <= len(series)


def test_a_non_loopback_address_is_served_with_a_warning() -> None:
    warn = io.StringIO()
    listeners: list = []  # type: ignore[type-arg]
    server = serve_metrics(listeners, "0.0.0.0:0", warn=warn)
    try:
        assert "not a loopback address" in warn.getvalue()
        listeners[0](snapshot())
        assert "perfmon_gate_state" in scrape(f"http://127.0.0.1:{server.port}/metrics")
    finally:
        server.close()
    quiet = io.StringIO()
    server = serve_metrics(listeners, "127.0.0.1:0", warn=quiet)
    server.close()
    assert quiet.getvalue() == ""


def test_a_port_in_use_is_an_error() -> None:
    server = MetricsServer(parse_metrics_addr("127.0.0.1:0"))
    try:
        with pytest.raises(OSError):
            MetricsServer(parse_metrics_addr(f"127.0.0.1:{server.port}"))
    finally:
        server.close()


CAMPAIGN = """
    [campaign]
    name = "prom"
    sample_interval = "100ms"
    [[workload]]
    name = "spin"
    command = ["spin"]
    [variant.baseline]
    env = { V = "a" }
    [variant.candidate]
    env = { V = "b" }
    [set.golden]
    sessions = 3
    [[gate]]
    name = "Queue"
    expr = "max(event_queue_depth) < 100"
"""


@pytest.mark.slow
async def test_a_run_is_scraped_while_it_runs(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(textwrap.dedent(CAMPAIGN))
    campaign = load_campaign(path)
    run_dir = make_run_dir(tmp_path / "runs", campaign.name, time.time())
    samples = tuple(
        FakeSample(i * 0.02, "event_queue_depth", float(i), MetricKind.GAUGE) for i in range(5)
    )
    factory = FakeExecutor.factory(FakeSession(wall_s=0.2, samples=samples), pace=1.0)
    runner = Runner(
        campaign, run_dir, executor_factory=factory, sample_system=False, snapshot_hz=20
    )
    server = serve_metrics(
        runner.snapshot_listeners, "127.0.0.1:0", track_groups=runner.track_groups
    )
    seen: list[dict[str, list[tuple[str, dict[str, str], float]]]] = []

    async def scraper() -> None:
        while True:
            text = await asyncio.to_thread(scrape, server.url)
            seen.append(parsed(text))
            await asyncio.sleep(0.1)

    task = asyncio.create_task(scraper())
    try:
        outcome = await asyncio.wait_for(runner.run(), timeout=60)
    finally:
        task.cancel()
    final = parsed(await asyncio.to_thread(scrape, server.url))
    server.close()
    assert outcome.exit_status == 0
    running = [m for m in seen if m and m["perfmon_run_info"][0][1]["state"] == "running"]
    assert running, "no scrape saw the run running"
    assert final["perfmon_run_verdict_passing"][0][2] == 1.0
    assert {lab["gate"]: v for _, lab, v in final["perfmon_gate_passing"]} == {"Queue": 1.0}
    ok = {lab["variant"]: v for _, lab, v in final["perfmon_sessions"] if lab["status"] == "ok"}
    assert ok == {"baseline": 3, "candidate": 3}  # sessions are per variant
    depth = {
        (lab["workload"], lab["variant"], lab["set"]): v for _, lab, v in final["event_queue_depth"]
    }
    assert depth == {("spin", "baseline", "golden"): 4.0, ("spin", "candidate", "golden"): 4.0}


@pytest.mark.parametrize("addr", ["1.2.3.4:70000", "nohost:port", "203.0.113.7:9464"])
def test_a_bad_metrics_addr_exits_2_before_any_run(
    tmp_path: Path, addr: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from perfmon.cli import main

    path = tmp_path / "c.toml"
    path.write_text(textwrap.dedent(CAMPAIGN))
    runs = tmp_path / "runs"
    status = main(["run", str(path), "--headless", "--runs-dir", str(runs), "--metrics-addr", addr])
    assert status == 2
    assert "--metrics-addr" in capsys.readouterr().err
    assert not runs.exists() or not any(runs.iterdir())


def test_the_grafana_dashboard_queries_only_series_the_endpoint_serves() -> None:
    import json
    import re

    from prometheus_client import generate_latest
    from prometheus_client.registry import CollectorRegistry

    board = json.loads((Path(__file__).parent.parent / "docs/grafana-dashboard.json").read_text())
    names = {
        n
        for p in board["panels"]
        for t in p["targets"]
        for n in re.findall(r"perfmon_[a-z_]+", t["expr"])
    }
    live = LiveState(run_id="r", campaign="c", run_dir="/r", started_t=0.0)
    live.track_groups(now=0.0)
    live.add_session(_spec(0, "baseline"))
    live.add_batch(_batch([(0, "chunks_total", 1.0), (0, "queue_depth", 2.0)]))
    grouped = live.snapshot(now=1.0, state="running")
    served = set()
    for snap in (snapshot(), grouped):
        reg = CollectorRegistry(auto_describe=False)
        c = SnapshotCollector()
        c.publish(snap)
        reg.register(c)
        text = generate_latest(reg).decode()
        served |= {s.name for f in text_string_to_metric_families(text) for s in f.samples}
    assert names and names <= served, names - served
    assert "perfmon_workload_series_dropped" in names
    # workload/variant/set variables, and the workload metric panels filter by them
    variables = {v["name"]: v for v in board["templating"]["list"]}
    for label in ("workload", "variant", "set"):
        assert variables[label]["query"].startswith("label_values(perfmon_sessions")
        assert variables[label]["multi"] and variables[label]["includeAll"]
    assert variables["metric"]["query"].startswith("label_values(")
    metric_panels = [p for p in board["panels"] if p.get("repeat") == "metric"]
    assert len(metric_panels) == 3
    for p in metric_panels:
        expr = p["targets"][0]["expr"]
        for matcher in ('workload=~"$workload"', 'variant=~"$variant"', 'set=~"$set"'):
            assert matcher in expr, (p["title"], expr)
    # the variable's regex keeps workload metrics and drops perfmon's own and summary parts
    keep = re.compile(variables["metric"]["regex"].strip("/"))
    for name in ("chunks_total", "queue_depth", "chunk_seconds"):
        assert keep.match(name), name
    for name in ("perfmon_sessions", "chunk_seconds_count", "chunk_seconds_sum"):
        assert not keep.match(name), name


# -- workload metrics per workload/variant/set (issue 16 point 5) ------------------------------

TWO_VARIANTS = """
    [campaign]
    name = "groups"
    [[workload]]
    name = "tgat"
    command = ["tgat"]
    [[workload]]
    name = "dag"
    command = ["dag"]
    [variant.baseline]
    env = { V = "a" }
    [variant.candidate]
    env = { V = "b" }
    [set.golden]
    sessions = 2
    warmup = 1
    [set.canary]
    sessions = 1
    [[gate]]
    name = "Queue"
    expr = "max(event_queue_depth) < 100"
"""


def _script(spec: SessionSpec) -> FakeSession:
    """Values that say which workload and variant emitted them: base 10 for tgat, 20 for
    dag, +1 for the candidate; warm-ups emit 1000 (they must not show)."""
    base = (10.0 if spec.workload == "tgat" else 20.0) + (spec.variant == "candidate")
    if spec.warmup:
        base = 1000.0
    return FakeSession(
        wall_s=0.5,
        samples=(
            FakeSample(0.1, "event_queue_depth", base, MetricKind.GAUGE),
            FakeSample(0.2, "chunks_total", 2.0, MetricKind.COUNTER),
            FakeSample(0.3, "chunk_ms", base, MetricKind.HISTOGRAM),
            FakeSample(0.4, "cache_hit_percent", base, MetricKind.GAUGE),
        ),
    )


def _run_groups(tmp_path: Path, *, track: bool) -> Runner:
    path = tmp_path / "c.toml"
    path.write_text(textwrap.dedent(TWO_VARIANTS))
    campaign = load_campaign(path)
    run_dir = make_run_dir(tmp_path / "runs", campaign.name, time.time())
    factory = FakeExecutor.factory(_script)
    runner = Runner(campaign, run_dir, executor_factory=factory, sample_system=False)
    if track:
        runner.track_groups()
    outcome = asyncio.run(asyncio.wait_for(runner.run(), timeout=60))
    assert outcome.exit_status == 0
    return runner


def _served(snap: Snapshot) -> str:
    from prometheus_client import generate_latest
    from prometheus_client.registry import CollectorRegistry

    reg = CollectorRegistry(auto_describe=False)
    c = SnapshotCollector()
    c.publish(snap)
    reg.register(c)
    return generate_latest(reg).decode()


def test_a_two_variant_run_is_served_per_workload_variant_set(tmp_path: Path) -> None:
    runner = _run_groups(tmp_path, track=True)
    snap = runner.snapshot()
    text = _served(snap)
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    groups = {(w, v, s) for w in ("tgat", "dag") for v in ("baseline", "candidate")
              for s in ("golden", "canary")}  # fmt: skip

    def by_group(name: str, sample: str, **extra: str) -> dict[tuple[str, str, str], float]:
        out = {}
        for s in fams[name].samples:
            if s.name == sample and all(s.labels.get(k) == v for k, v in extra.items()):
                out[(s.labels["workload"], s.labels["variant"], s.labels["set"])] = s.value
        return out

    def expect(w: str, v: str) -> float:
        return (10.0 if w == "tgat" else 20.0) + (v == "candidate")

    # A gauge: its last value per group (no warm-up's 1000 anywhere).
    assert fams["event_queue_depth"].type == "gauge"
    depth = by_group("event_queue_depth", "event_queue_depth")
    assert depth == {(w, v, s): expect(w, v) for w, v, s in groups}
    # A counter: <name>_total, the sum of the increments (2 per session; golden 2, canary 1).
    assert fams["chunks"].type == "counter"
    chunks = by_group("chunks", "chunks_total")
    assert chunks == {(w, v, s): 2.0 * (2 if s == "golden" else 1) for w, v, s in groups}
    # A timing in ms: a summary in seconds (base units), quantiles as the snapshot has them.
    assert "chunk_ms" not in fams and fams["chunk_seconds"].type == "summary"
    p50 = by_group("chunk_seconds", "chunk_seconds", quantile="0.5")
    assert p50 == pytest.approx({(w, v, s): expect(w, v) / 1e3 for w, v, s in groups})
    count = by_group("chunk_seconds", "chunk_seconds_count")
    assert count == {(w, v, s): 2.0 if s == "golden" else 1.0 for w, v, s in groups}
    # A percentage: a ratio (0-1).
    ratio = by_group("cache_hit_ratio", "cache_hit_ratio")
    assert ratio == pytest.approx({(w, v, s): expect(w, v) / 100 for w, v, s in groups})
    # Never a per-session label; the cap's own series say nothing was left out.
    labels = {k for f in fams.values() for s in f.samples for k in s.labels}
    assert "session" not in labels and "id" not in labels
    assert fams["perfmon_workload_series"].samples[0].value == len(snap.group_metrics)
    assert fams["perfmon_workload_series_dropped"].samples[0].value == 0
    # OpenMetrics (what Prometheus negotiates) parses too, with the units declared.
    from prometheus_client.openmetrics.exposition import generate_latest as om_latest
    from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse
    from prometheus_client.registry import CollectorRegistry

    reg = CollectorRegistry(auto_describe=False)
    c = SnapshotCollector()
    c.publish(snap)
    reg.register(c)
    om = {f.name: f for f in om_parse(om_latest(reg).decode())}  # type: ignore[no-untyped-call]
    assert om["chunk_seconds"].unit == "seconds" and om["cache_hit_ratio"].unit == "ratio"


def test_without_the_endpoint_nothing_is_grouped(tmp_path: Path) -> None:
    runner = _run_groups(tmp_path, track=False)
    snap = runner.snapshot()
    assert snap.group_metrics == () and snap.group_rows_max == 0 and snap.group_since_t == 0
    assert runner.live.groups_work_s == (0.0, 0.0)
    fams = {f.name: f for f in text_string_to_metric_families(_served(snap))}
    # served pooled, without labels, as before
    assert [s.labels for s in fams["event_queue_depth"].samples] == [{}]
    assert "perfmon_workload_series" not in fams


def test_groups_cross_the_socket_and_fold_incrementally() -> None:
    live = LiveState(run_id="r", campaign="c", run_dir="/r", started_t=0.0)
    live.track_groups(now=5.0)
    live.add_session(_spec(0, "baseline"))
    live.add_session(_spec(1, "candidate"))
    live.add_batch(_batch([(0, "x_seconds", 1.0), (1, "x_seconds", 3.0), (-1, "x_seconds", 9.0)]))
    first = live.snapshot(now=6.0, state="running")
    assert [(m.labels, m.count, m.last) for m in first.group_metrics] == [
        ((("workload", "w"), ("variant", "baseline"), ("set", "s")), 1, 1.0),
        ((("workload", "w"), ("variant", "candidate"), ("set", "s")), 1, 3.0),
    ]  # the machine-wide sample (session -1) is in no group
    live.add_batch(_batch([(0, "x_seconds", 2.0)]))
    second = live.snapshot(now=7.0, state="running")
    assert [(m.count, m.last) for m in second.group_metrics] == [(2, 2.0), (1, 3.0)]
    assert second.group_metrics[1] is first.group_metrics[1]  # unchanged: not rebuilt
    assert second.group_since_t == 5.0 and second.group_metrics[0].series == ()
    assert Snapshot.from_dict(json.loads(json.dumps(second.to_dict()))) == second


def test_a_metric_flood_keeps_the_series_bounded_and_counts_the_rest() -> None:
    """100,000 names from each of 4 groups: the name cap keeps 1,000 names, the group cap
    ``MAX_GROUP_ROWS`` rows; the scrape stays bounded and says what it left out."""
    live = LiveState(
        run_id="r", campaign="c", run_dir="/r", started_t=0.0, session_metrics={"queue_depth"}
    )
    live.track_groups(now=0.0)
    for sid in range(4):
        live.add_session(
            _spec(sid, "baseline" if sid % 2 else "candidate", set_name=f"s{sid // 2}")
        )
    names = 100_000
    for start in range(0, names, 5_000):
        for sid in range(4):
            live.add_batch(
                _batch([(sid, f"flood_{i:06d}_total", 1.0) for i in range(start, start + 5_000)])
            )
    # A gate's metric arriving after the flood is kept: the flood cannot push it out.
    live.add_batch(_batch([(sid, "queue_depth", 3.0) for sid in range(4)]))
    snap = live.snapshot(now=1.0, state="running")
    assert len(snap.group_metrics) == MAX_GROUP_ROWS + 4
    assert sum(m.name == "queue_depth" for m in snap.group_metrics) == 4
    # 1,000 admitted names x 4 groups, of which MAX_GROUP_ROWS kept
    assert snap.group_rows_dropped == 4 * 1_000 - MAX_GROUP_ROWS
    assert snap.group_samples_dropped == snap.group_rows_dropped  # one sample per row
    size = len(json.dumps(snap.to_dict()))
    assert size < 512_000, size
    text = _served(snap)
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    series = sum(len(f.samples) for f in fams.values())
    assert series < MAX_GROUP_ROWS + 200, series
    assert len(fams["queue_depth"].samples) == 4  # the groups, the pooled rest, perfmon's own
    assert fams["perfmon_workload_series_dropped"].samples[0].value == snap.group_rows_dropped
    dropped = fams["perfmon_workload_series_dropped_samples"].samples[0]
    assert (dropped.name, dropped.value) == (
        "perfmon_workload_series_dropped_samples_total",
        float(snap.group_samples_dropped),
    )
    assert len(text) < 400_000, len(text)


@pytest.mark.parametrize(
    ("name", "kind", "expected"),
    [
        ("event_queue_depth", "gauge", ("event_queue_depth", 1.0, "")),
        ("chunks_total", "counter", ("chunks", 1.0, "")),
        ("read_bytes_total", "counter", ("read_bytes", 1.0, "bytes")),
        ("chunk_ms", "histogram", ("chunk_seconds", 1e-3, "seconds")),
        ("kernel_us", "value", ("kernel_seconds", 1e-6, "seconds")),
        ("emit_ns_total", "counter", ("emit_seconds", 1e-9, "seconds")),
        ("system_cpu_percent", "gauge", ("system_cpu_ratio", 1e-2, "ratio")),
        ("gauge_total", "gauge", ("gauge_total", 1.0, "")),  # only counters lose _total
        ("9lives.x-y", "gauge", ("_9lives_x_y", 1.0, "")),
        ("_ms", "gauge", ("_ms", 1.0, "")),  # a bare suffix is a name, not a unit
    ],
)
def test_prometheus_names_are_valid_and_in_base_units(
    name: str, kind: str, expected: tuple[str, float, str]
) -> None:
    pn = prom_name(name, kind)
    assert pn is not None and (pn.name, pn.factor, pn.unit) == expected
    assert prom_name("perfmon_x", "gauge") is None


def test_names_that_clash_are_served_once_and_counted() -> None:
    base = snapshot()
    clashing = (metric("a.b", "gauge"), metric("a_b", "gauge"), metric("c", "gauge"))
    snap = dataclasses.replace(base, metrics=clashing, group_rows_max=8, group_since_t=1.0)
    fams = {f.name: f for f in text_string_to_metric_families(_served(snap))}
    assert [s.value for s in fams["a_b"].samples] == [4.0]
    assert fams["perfmon_workload_metrics_clashing"].samples[0].value == 1.0


def _spec(sid: int, variant: str, set_name: str = "s") -> SessionSpec:
    return SessionSpec(
        id=sid, workload="w", variant=variant, set_name=set_name, index=sid, warmup=False,
        argv=("x",), env=(), cwd="/", timeout_s=None,
    )  # fmt: skip


def _batch(rows: list[tuple[int, str, float]]) -> SampleBatch:
    kind = {True: MetricKind.COUNTER, False: MetricKind.GAUGE}
    return SampleBatch.from_samples(
        [
            Sample(1.0 + i * 1e-3, sid, n, v, kind[n.endswith("_total")])
            for i, (sid, n, v) in enumerate(rows)
        ]
    )
