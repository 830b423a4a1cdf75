"""The Prometheus /metrics endpoint: built from the latest snapshot, parsed by
prometheus_client's own parser, bounded labels, loopback by default."""

from __future__ import annotations

import asyncio
import io
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from perfmon.core.campaign import load_campaign
from perfmon.core.model import GateResult, GateState, MetricKind
from perfmon.core.snapshot import MetricSummary, SessionRow, Snapshot
from perfmon.engine.fake_executor import FakeExecutor, FakeSample, FakeSession
from perfmon.engine.prometheus import (
    DEFAULT_PORT,
    MetricsServer,
    SnapshotCollector,
    parse_metrics_addr,
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
    server = serve_metrics(runner.snapshot_listeners, "127.0.0.1:0")
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
    assert final["event_queue_depth"][0][2] == 4.0


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
    reg = CollectorRegistry(auto_describe=False)
    c = SnapshotCollector()
    c.publish(snapshot())
    reg.register(c)
    served = {
        s.name
        for f in text_string_to_metric_families(generate_latest(reg).decode())
        for s in f.samples
    }
    assert names and names <= served, names - served
