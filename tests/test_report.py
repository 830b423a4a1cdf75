"""Tests for the snapshot report (perfmon.engine.report) built from a recorded run directory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.stats import median_abs_deviation

from perfmon.core.batch import SampleBatch
from perfmon.core.gates import parse_gate
from perfmon.core.model import (
    GateResult,
    GateState,
    MetricKind,
    Sample,
    SessionResult,
    SessionSpec,
    SessionStatus,
)
from perfmon.engine.recorder import Recorder, read_run
from perfmon.engine.report import build_report, describe, render_markdown, write_report

T0 = 1_764_000_000.0

GATES = [
    GateResult(
        "Performance",
        "speedup(session_seconds, baseline, candidate) >= 1.4",
        GateState.PASS,
        1.62,
        12,
        "speedup 1.62 (CI 1.5-1.7) over 12 sessions, limit >= 1.4",
        1.5,
        1.7,
    ),
    GateResult(
        "Queue|depth",
        "p95(event_queue_depth) < 100",
        GateState.FAIL,
        131.0,
        4812,
        "p95 = 131 over 4,812 samples, limit < 100",
    ),
    GateResult("RAM", "max(rss_bytes) <= 1GiB", GateState.PENDING, None, 0, "no samples yet"),
]
# As a run's gates come: annotated with their grammar by the parser (issue 12), which the
# report reads for units and formats (a speedup reads 1.62x).
GATES = [parse_gate(g.expr).annotate(g) for g in GATES]


class Synth:
    """A synthetic run: sessions with known walls/RSS and samples with known values."""

    def __init__(self, seed: int = 7) -> None:
        rng = np.random.default_rng(seed)
        self.results: list[SessionResult] = []
        self.samples: list[Sample] = []
        sid = 0
        self.walls: dict[str, list[float]] = {"baseline": [], "candidate": []}
        self.rss: dict[str, list[int]] = {"baseline": [], "candidate": []}
        self.metric_values: dict[str, list[tuple[float, float]]] = {}
        for variant, scale in (("baseline", 2.0), ("candidate", 1.2)):
            for i in range(9):
                warm = i < 2
                spec = SessionSpec(
                    id=sid,
                    workload="tgat",
                    variant=variant,
                    set_name="golden",
                    index=i,
                    warmup=warm,
                    argv=("python", "w.py"),
                    env=(),
                    cwd="/tmp",
                    timeout_s=None,
                    params=(("events", "512"),),
                )
                start = T0 + sid * 3
                r = SessionResult(spec=spec, start_t=start)
                if i == 8 and variant == "candidate":
                    r.status, r.error, r.end_t = (
                        SessionStatus.TIMEOUT,
                        "timeout after 120 s",
                        start + 2,
                    )
                elif i == 7 and variant == "baseline":
                    r.status, r.exit_code, r.end_t = SessionStatus.EXIT, 3, start + 1
                    r.error = "exit | 3"
                else:
                    r.status = SessionStatus.OK
                    r.wall_s = float(scale + rng.normal(0, 0.1))
                    r.peak_rss_bytes = int(200e6 + rng.integers(0, 50_000_000))
                    r.end_t = start + r.wall_s
                    if not warm:
                        self.walls[variant].append(r.wall_s)
                        self.rss[variant].append(r.peak_rss_bytes)
                r.malformed = 4 if sid == 3 else 0
                for k in range(20):
                    t = start + k * 0.05
                    big = 1e9 if warm else 0.0  # warm-up values must not reach the report
                    v = float(big + rng.lognormal(0, 0.5)) * 1e-3
                    self.samples.append(Sample(t, sid, "chunk_seconds", v, MetricKind.HISTOGRAM))
                    self.samples.append(Sample(t, sid, "chunks_total", 1.0, MetricKind.COUNTER))
                    if not warm:
                        self.metric_values.setdefault("chunk_seconds", []).append((t, v))
                        self.metric_values.setdefault("chunks_total", []).append((t, 1.0))
                self.results.append(r)
                sid += 1
        for k in range(10):
            v = 40.0 + k
            self.samples.append(Sample(T0 + k, -1, "system_memory_percent", v))
            self.metric_values.setdefault("system_memory_percent", []).append((T0 + k, v))
        self.end = max(max(r.end_t or 0 for r in self.results), max(s.t for s in self.samples))

    def record(self, run_dir: Path, *, close: bool) -> None:
        rec = Recorder(run_dir)
        rec.write_manifest(
            {
                "run_id": run_dir.name,
                "campaign": {"name": "attention-audit"},
                "started_t": T0 - 1,
                "provenance": {
                    "perfmon_version": "0.1.0",
                    "git": {"commit": "abc123", "dirty": True},
                    "hostname": "box",
                    "ram_total_bytes": 16 * 1024**3,
                    "packages": {"numpy": "2.0", "torch": None},
                },
            }
        )
        for i in range(0, len(self.samples), 50):
            rec.add_batch(SampleBatch.from_samples(self.samples[i : i + 50]))
            rec.flush()
        for r in self.results:
            rec.session_finished(r)
        if close:
            rec.close()


@pytest.fixture(params=[True, False], ids=["closed", "open"])
def synth_report(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Synth, dict[str, Any]]:
    synth = Synth()
    synth.record(tmp_path, close=request.param)
    data = read_run(tmp_path)
    assert data.closed is request.param
    return synth, build_report(data, GATES, verdict="fail")


def test_describe_matches_numpy_scipy() -> None:
    x = np.array([3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0])
    d = describe(x)
    assert d["n"] == 8
    assert d["median"] == pytest.approx(np.median(x))
    assert d["mad"] == pytest.approx(median_abs_deviation(x, scale=1.0))
    assert d["mad"] == pytest.approx(np.median(np.abs(x - np.median(x))))
    assert d["p95"] == pytest.approx(np.percentile(x, 95))
    assert (d["min"], d["max"]) == (1.0, 9.0)
    assert describe([]) == {
        "n": 0,
        "median": None,
        "mad": None,
        "p95": None,
        "min": None,
        "max": None,
    }


def test_report_sessions_and_metrics(synth_report: tuple[Synth, dict[str, Any]]) -> None:
    synth, rep = synth_report
    assert rep["format"] == "perfmon-report" and rep["version"] == 1
    assert rep["campaign"] == "attention-audit"
    assert rep["verdict"] == "fail"
    assert rep["verdict_line"] == "FAIL: 1 of 3 gates passed (1 pass, 1 fail, 1 pending)"
    ses = rep["sessions"]
    assert ses["total"] == 18 and ses["warmup"] == 4
    assert ses["by_status"] == {"exit": 1, "ok": 16, "timeout": 1}
    groups = {g["variant"]: g for g in ses["groups"]}
    assert set(groups) == {"baseline", "candidate"}
    for variant in ("baseline", "candidate"):
        g = groups[variant]
        assert g["params"] == {"events": "512"} and g["workload"] == "tgat"
        walls = np.array(synth.walls[variant])
        assert g["sessions"] == len(walls) == g["wall_s"]["n"]
        assert g["wall_s"]["median"] == pytest.approx(np.median(walls))
        assert g["wall_s"]["mad"] == pytest.approx(median_abs_deviation(walls, scale=1.0))
        assert g["wall_s"]["p95"] == pytest.approx(np.percentile(walls, 95))
        assert g["wall_s"]["min"] == pytest.approx(walls.min())
        assert g["wall_s"]["max"] == pytest.approx(walls.max())
        rss = np.array(synth.rss[variant], dtype=float)
        assert g["peak_rss_bytes"]["median"] == pytest.approx(np.median(rss))
        assert g["peak_rss_bytes"]["mad"] == pytest.approx(median_abs_deviation(rss, scale=1.0))
    failed = {f["status"]: f for f in ses["failed"]}
    assert set(failed) == {"exit", "timeout"}
    assert failed["exit"]["status_text"] == "exit 3"
    assert failed["timeout"]["error"] == "timeout after 120 s"

    metrics = {m["name"]: m for m in rep["metrics"]}
    assert list(metrics) == sorted(synth.metric_values)
    for name, pairs in synth.metric_values.items():
        vals = np.array([v for _, v in sorted(pairs, key=lambda p: p[0])])
        m = metrics[name]
        assert m["n"] == len(vals)
        assert m["min"] == pytest.approx(vals.min())
        assert m["max"] == pytest.approx(vals.max())
        assert m["median"] == pytest.approx(np.median(vals))
        assert m["p95"] == pytest.approx(np.percentile(vals, 95))
        assert m["last"] == pytest.approx(vals[-1])
        assert m["total"] == pytest.approx(vals.sum())
    assert metrics["chunk_seconds"]["max"] < 1.0  # warm-up samples (1e6 s) excluded
    assert metrics["chunks_total"]["kind"] == "counter"

    assert rep["malformed"]["total"] == 4
    assert [r["id"] for r in rep["malformed"]["sessions"]] == [3]
    t = rep["timing"]
    assert t["started_t"] == T0 - 1 and t["ended_t"] == pytest.approx(synth.end)
    assert t["duration_s"] == pytest.approx(synth.end - (T0 - 1))
    assert rep["provenance"]["git"]["commit"] == "abc123"
    json.dumps(rep, allow_nan=False)


def test_markdown_has_gate_table_and_numbers(synth_report: tuple[Synth, dict[str, Any]]) -> None:
    _, rep = synth_report
    md = render_markdown(rep)
    assert "**Verdict: FAIL: 1 of 3 gates passed" in md
    assert "| Gate | Expression | State | Value | CI | n | Reason |" in md
    assert (
        "| Performance | `speedup(session_seconds, baseline, candidate) >= 1.4` | PASS | 1.62x "
        "| [1.5x, 1.7x] | 12 | speedup 1.62 (CI 1.5-1.7) over 12 sessions, limit >= 1.4 |"
    ) in md
    assert "| Queue\\|depth | `p95(event_queue_depth) < 100` | FAIL | 131 | – | 4,812 |" in md
    assert "| RAM | `max(rss_bytes) <= 1GiB` | PENDING | no data | – | 0 | no samples yet |" in md
    assert "### Wall time of measured sessions" in md
    assert "exit \\| 3" in md  # pipes in cells are escaped
    assert "| chunks_total | counter | 280 |" in md
    assert "Git commit: `abc123` (dirty work tree)" in md
    assert "torch not installed" in md
    assert "scale=1.0" in md
    assert "[XXX]" not in md and "TODO" not in md
    # Issue 11: the rule that makes the verdict, and which intervals the gates show.
    assert "Rule: verdict: pass only if every gate passes in every set" in md
    assert "anytime-valid confidence sequences" in md
    # Every table row has the same number of cells as its header.
    lines = md.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("|---"):
            n = lines[i - 1].replace("\\|", "").count("|")
            j = i + 1
            while j < len(lines) and lines[j].startswith("|"):
                assert lines[j].replace("\\|", "").count("|") == n, lines[j]
                j += 1


def test_empty_run_says_no_data(tmp_path: Path) -> None:
    with Recorder(tmp_path):
        pass
    rep = build_report(read_run(tmp_path), [], verdict="pass")
    assert rep["metrics"] == [] and rep["sessions"]["groups"] == []
    assert rep["timing"]["started_t"] is None and rep["timing"]["duration_s"] is None
    md = render_markdown(rep)
    assert "No gates defined." in md
    assert "Metrics: no data." in md
    assert "Sessions: no data." in md
    assert "Provenance: no data." in md
    assert "Duration: no data" in md
    assert "Problem: manifest.json missing" in md


def test_report_counts_repairs(tmp_path: Path) -> None:
    synth = Synth()
    synth.record(tmp_path, close=False)
    seg = tmp_path / "samples" / "segment-000001.arrows"
    seg.write_bytes(seg.read_bytes()[:-10])
    with open(tmp_path / "sessions.jsonl", "ab") as f:
        f.write(b'{"id": 99, "wor')
    rep = build_report(read_run(tmp_path), GATES, verdict="fail")
    assert rep["recording"]["repaired_segments"] == 1
    assert rep["recording"]["samples_dropped_bytes"] > 0
    assert rep["recording"]["sessions_dropped_lines"] == 1
    md = render_markdown(rep)
    assert "Repaired segments: 1" in md and "torn tail" in md


def test_write_report_atomic(tmp_path: Path) -> None:
    synth = Synth()
    synth.record(tmp_path, close=True)
    rep = build_report(read_run(tmp_path), GATES, verdict="fail")
    md_path, json_path = write_report(tmp_path, rep)
    assert md_path == tmp_path / "report.md" and json_path == tmp_path / "report.json"
    assert json.loads(json_path.read_text()) == rep
    assert md_path.read_text() == render_markdown(rep)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    with pytest.raises(ValueError):
        render_markdown({"format": "other"})


def _comparison_row_line(row: dict[str, Any]) -> str:
    """The start of a row of the old comparison table (``render_rows_markdown``)."""
    return f"| {row['group']} | {row['metric']} |"


def test_markdown_shows_each_comparison_once(synth_report: tuple[Synth, dict[str, Any]]) -> None:
    """Issue 15: with result tables, report.md does not repeat their comparisons as the old
    one-row-per-metric-x-group-x-variant table; report.json keeps every row."""
    _, rep = synth_report
    rows = rep["comparison"]["rows"]
    assert {r["metric"] for r in rows} == {"chunk_seconds", "chunks_total"}
    md = render_markdown(rep)
    assert "## Result tables" in md
    assert f"The result tables below show {len(rows)} of the run's {len(rows)} comparison" in md
    assert "report.json keeps every row under `comparison`" in md
    assert "## Comparison: metrics the result tables do not show" not in md
    assert _comparison_row_line(rows[0]) not in md
    assert "constant: golden tgat events=512: chunks_total = 20" not in md  # the old fold
    # ... and each is shown by the tables: chunk_seconds' ratio pivot, chunks_total's value
    ratio = md.split("### golden tgat: chunk_seconds, ratio against the reference")[1]
    assert "| candidate vs baseline | " in ratio.split("###")[0]
    assert "x slower [" in ratio.split("###")[0] or "x faster [" in ratio.split("###")[0]
    assert "constant: chunks_total = 20" in md


def test_markdown_keeps_the_rows_the_tables_do_not_show(
    synth_report: tuple[Synth, dict[str, Any]],
) -> None:
    _, rep = synth_report
    rows = rep["comparison"]["rows"]
    tables = dict(rep["tables"])
    # as when MAX_TABLES leaves chunk_seconds' tables out: its rows stay in the old shape
    tables["tables"] = [t for t in tables["tables"] if t.get("metric") != "chunk_seconds"]
    md = render_markdown(dict(rep, tables=tables))
    kept = [r for r in rows if r["metric"] == "chunk_seconds"]
    assert kept
    assert "## Comparison: metrics the result tables do not show" in md
    assert f"show {len(rows) - len(kept)} of the run's {len(rows)} comparison rows" in md
    assert _comparison_row_line(kept[0]) in md
    assert "constant: golden tgat events=512: chunks_total = 20" not in md
    # without result tables (a report of an older version) the old section is whole
    old = render_markdown(dict(rep, tables=None))
    assert "The result tables below show" not in old
    assert _comparison_row_line(kept[0]) in old
    assert "constant: golden tgat events=512: chunks_total = 20" in old
    # a damaged tables entry covers nothing and costs nothing
    from perfmon.engine.report_md import comparison_beside_tables

    damaged = dict(rep, tables={"tables": [5, {"kind": "ratio"}, {"kind": "ratio", "set": 1}]})
    assert comparison_beside_tables(damaged) == (rows, 0)
    assert comparison_beside_tables(dict(rep, comparison={"rows": "x"})) == ([], 0)


def test_html_comparison_shows_each_comparison_once(
    synth_report: tuple[Synth, dict[str, Any]],
) -> None:
    from perfmon.engine.exporters.html_report import _comparison

    _, rep = synth_report
    rows = rep["comparison"]["rows"]
    page = _comparison(rep)
    assert f"show {len(rows)} of the run's {len(rows)} comparison rows" in page
    assert "<table" not in page
    tables = dict(rep["tables"])
    tables["tables"] = [t for t in tables["tables"] if t.get("metric") != "chunk_seconds"]
    page = _comparison(dict(rep, tables=tables))
    assert "<table" in page and ">chunk_seconds<" in page and "chunks_total = 20" not in page
    assert "<table" in _comparison(dict(rep, tables=None))


def test_an_unbounded_gate_interval_reads_infinity_not_no_data() -> None:
    from perfmon.engine.report_md import _gate_table

    gate = {
        "name": "Speedup", "expr": "speedup(x_seconds, a, b) >= 1.4", "state": "inconclusive",
        "value": 1.84, "ci_low": 0.0, "ci_high": None, "n": 10, "reason": "r", "groups": [],
        "func": "speedup", "unit": "ratio", "metrics": ["x_seconds"],
    }  # fmt: skip
    md = "\n".join(_gate_table([gate]))
    assert "| 1.84x | [0x, ∞] |" in md
    assert "no data]" not in md
