"""report.html, report.csv, junit.xml and the GitHub summary, from a recorded run's data."""

from __future__ import annotations

import csv
import io
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from perfmon.cli import main
from perfmon.core.gates import parse_gate
from perfmon.core.model import GateResult, GateState, SessionResult, SessionSpec, SessionStatus
from perfmon.engine import exporters
from perfmon.engine.exporters.csv_report import COLUMNS
from perfmon.engine.exporters.github_summary import MAX_BYTES, render_github
from perfmon.engine.exporters.html_report import downsample
from perfmon.engine.exporters.junit_report import render_junit
from perfmon.engine.recorder import read_run
from perfmon.engine.report import build_report, write_report
from synthetic_runs import normal_walls, record_run

HOSTILE = '<script>alert("x")</script>=cmd|"/c calc"'

GATES = [
    GateResult("Speed", "speedup(session_seconds, baseline, candidate) >= 1.4", GateState.PASS,
               1.9, 20, "speedup = 1.9x [1.8, 2.0]", 1.8, 2.0),
    GateResult("Queue|depth", "max(event_queue_depth) < 5", GateState.FAIL, 9.0, 200,
               "max = 9 over 200 samples, limit < 5"),
    GateResult("RAM", "max(rss_bytes) <= 1GiB", GateState.PENDING, None, 0, "no samples yet"),
    GateResult("Drift", "slope(rss_bytes) < 1MiB/h", GateState.INCONCLUSIVE, 0.5, 9,
               "slope straddles"),
]  # fmt: skip
# As gates are evaluated: each result carries its parsed grammar (unit, limit, metrics).
GATES = [parse_gate(g.expr).annotate(g) for g in GATES]


def _crash(sid: int) -> SessionResult:
    spec = SessionSpec(
        id=sid, workload=HOSTILE, variant="candidate", set_name="golden", index=99,
        warmup=False, argv=("x",), env=(), cwd="/", timeout_s=None, params=(),
    )  # fmt: skip
    r = SessionResult(spec=spec, start_t=1.0, end_t=2.0, status=SessionStatus.SIGNAL)
    r.error = "-SIGSEGV\x07"
    return r


@pytest.fixture
def run(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    run_dir = record_run(
        tmp_path / "run",
        {"baseline": normal_walls(1.0, 8, seed=1), "candidate": normal_walls(0.5, 8, seed=2)},
        extra_sessions=[_crash(1000)],
        campaign="audit",
    )
    data = read_run(run_dir)
    return run_dir, build_report(data, GATES, verdict="fail")


def test_csv_has_one_row_per_session_and_per_metric(run: tuple[Path, dict[str, Any]]) -> None:
    run_dir, report = run
    data = read_run(run_dir)
    rows = list(csv.DictReader(io.StringIO(exporters.render("csv", report, data))))
    assert tuple(rows[0].keys()) == COLUMNS
    sessions = [r for r in rows if r["record"] == "session"]
    metrics = [r for r in rows if r["record"] == "metric"]
    assert len(sessions) == len(data.sessions) == 17
    assert [m["metric"] for m in metrics] == [m["name"] for m in report["metrics"]]
    by_id = {int(r["session_id"]): r for r in sessions}
    for s in data.sessions:  # numbers round-trip exactly
        assert float(by_id[s["id"]]["wall_s"] or "nan") == pytest.approx(
            s["wall_s"] if s["wall_s"] is not None else float("nan"), nan_ok=True
        )
    crash = by_id[1000]
    assert crash["status"] == "signal" and crash["wall_s"] == ""
    assert crash["workload"] == HOSTILE  # starts with "<": kept as is
    assert crash["error"].startswith("'-SIGSEGV")  # a would-be formula is neutralised
    queue = next(m for m in metrics if m["metric"] == "event_queue_depth")
    assert int(queue["n"]) == 160 and float(queue["max"]) == 9.0


def test_junit_has_a_testcase_per_gate_per_set(run: tuple[Path, dict[str, Any]]) -> None:
    _, report = run
    root = ET.fromstring(render_junit(report))
    cases = root.findall("./testsuite/testcase")
    assert [c.get("name") for c in cases] == ["Speed", "Queue|depth", "RAM", "Drift"]
    assert root.get("tests") == "4" and root.get("failures") == "3"
    kinds = {c.get("name"): (f.get("type") if (f := c.find("failure")) is not None
                             else None) for c in cases}  # fmt: skip
    assert kinds == {"Speed": None, "Queue|depth": "fail", "RAM": "pending",
                     "Drift": "inconclusive"}  # fmt: skip
    failure = cases[1].find("failure")
    assert failure is not None and "max = 9 over 200 samples" in (failure.get("message") or "")

    by_set = dict(report, gates_by_set={"golden": report["gates"][:2], "canary": report["gates"]})
    root = ET.fromstring(render_junit(by_set))
    suites = root.findall("./testsuite")
    assert [s.get("name") for s in suites] == ["set golden", "set canary"]
    assert [len(s.findall("testcase")) for s in suites] == [2, 4]
    assert root.get("tests") == "6"


def test_junit_survives_control_characters(run: tuple[Path, dict[str, Any]]) -> None:
    _, report = run
    bad = dict(report, gates=[dict(report["gates"][1], name="q\x00\x1b[31m", reason="r\x07")])
    root = ET.fromstring(render_junit(bad))  # would raise on an invalid XML character
    case = root.find("./testsuite/testcase")
    assert case is not None and (case.get("name") or "").startswith("q")


def test_github_summary_escapes_and_caps(run: tuple[Path, dict[str, Any]]) -> None:
    _, report = run
    text = render_github(report)
    assert text.startswith("## ❌ perfmon: audit")
    assert "Queue\\|depth" in text  # a pipe in a name does not break the table
    assert "<script>" not in text
    assert "### Comparison against `baseline`" in text
    many = dict(report, gates=[dict(report["gates"][0], reason="x" * 1000)] * 60)
    assert "10 more row(s) in report.json" in render_github(many)
    huge = dict(report, gates=[dict(report["gates"][0], reason="x" * 50_000)] * 60)
    capped = render_github(huge)
    assert len(capped.encode()) <= MAX_BYTES + 200
    assert capped.endswith("_Summary cut to fit GitHub's 1 MiB limit; see report.md._\n")


@pytest.mark.slow  # matplotlib's import and a few charts: seconds on a loaded machine
def test_html_is_self_contained_and_escaped(run: tuple[Path, dict[str, Any]]) -> None:
    run_dir, report = run
    page = exporters.render("html", report, read_run(run_dir))
    assert page.startswith("<!DOCTYPE html>")
    assert "<script" not in page.lower()
    assert HOSTILE not in page and html_escaped(HOSTILE) in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page)
    for section in ("Gates", "Distributions per variant", "Gated metrics over time",
                    "Comparison", "Flame graphs"):  # fmt: skip
        assert f">{section}</h2>" in page
    # per-variant distributions of session_seconds and the gated metric over time
    images = re.findall(r'<img class="chart" alt="([^"]*)"', page)
    assert "distribution of session_seconds per variant" in images
    assert "event_queue_depth over time" in images


def html_escaped(text: str) -> str:
    import html

    return html.escape(text, quote=True)


@pytest.mark.slow
def test_write_report_writes_every_default_format(run: tuple[Path, dict[str, Any]]) -> None:
    run_dir, report = run
    write_report(run_dir, report)
    for name in ("report.md", "report.json", "report.html", "report.csv", "junit.xml"):
        assert (run_dir / name).stat().st_size > 0, name


def test_one_failing_format_costs_nothing_else(
    run: tuple[Path, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir, report = run
    real = exporters.render

    def broken(fmt: str, rep: Any, data: Any) -> str:
        if fmt == "html":
            raise ImportError("No module named 'matplotlib'")
        return real(fmt, rep, data)

    monkeypatch.setattr(exporters, "render", broken)
    (run_dir / "report.html").write_text("an older export")
    written, failed = exporters.write_exports(run_dir, report)
    assert not (run_dir / "report.html").exists()  # no stale page next to the new report
    assert set(failed) == {"html"} and "matplotlib" in failed["html"]
    assert {p.name for p in written} == {"report.csv", "junit.xml"}
    md, js = write_report(run_dir, report)  # md and json never depend on the others
    assert md.exists() and json.loads(js.read_text())["verdict"] == "fail"


def test_downsample_keeps_extremes_and_means() -> None:
    rng = np.random.default_rng(3)
    t = rng.uniform(0, 1000, 100_000)
    v = rng.normal(0, 1, t.size)
    v[123] = 50.0
    tm, vmin, vmean, vmax = downsample(t, v, buckets=100)
    assert tm.size <= 100 and np.all(np.diff(tm) > 0)
    assert vmax.max() == 50.0 and vmin.min() == v.min()
    assert np.average(vmean, weights=None) == pytest.approx(v.mean(), abs=0.05)
    small_t, small_v = np.array([3.0, 1.0, np.nan]), np.array([1.0, 2.0, 3.0])
    tm, vmin, vmean, vmax = downsample(small_t, small_v)
    assert tm.tolist() == [1.0, 3.0] and vmean.tolist() == [2.0, 1.0]


def test_cli_report_formats(run: tuple[Path, dict[str, Any]], capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run_dir, _ = run
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["campaign"]["gates"] = [{"name": "Queue", "expr": "max(event_queue_depth) < 5"}]
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    assert main(["report", str(run_dir), "--format", "github"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("## ❌ perfmon: audit") and "Queue" in out
    target = tmp_path / "j.xml"
    assert main(["report", str(run_dir), "--format", "junit", "-o", str(target)]) == 0
    assert ET.parse(target).getroot().get("failures") == "1"
    assert main(["report", str(run_dir), "--format", "csv"]) == 0
    assert (run_dir / "report.csv").exists() and not (run_dir / "report.md").exists()
    assert main(["report", str(run_dir), "--format", "csv", "--format", "md", "-o", "x"]) == 2


@pytest.mark.slow
def test_html_marks_gate_changes_and_embeds_flame_graphs(
    run: tuple[Path, dict[str, Any]],
) -> None:
    import base64

    run_dir, report = run
    flame = '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><text>hot</text></svg>'
    (run_dir / "profiles").mkdir(exist_ok=True)
    (run_dir / "profiles" / "variant-candidate.svg").write_text(flame)
    t0 = report["timing"]["started_t"]
    changes = [{"t": t0 + 2.0, "gate": "Queue|depth", "old": "pending", "new": "fail",
                "reason": "max = 9", "since_start_s": 2.0}]  # fmt: skip
    page = exporters.render(
        "html", dict(report, gate_changes={"changes": changes}), read_run(run_dir)
    )
    assert "<h3>variant-candidate</h3>" in page
    assert base64.b64encode(flame.encode()).decode() in page
    charts = dict(re.findall(r'alt="([^"]*)" src="data:image/svg\+xml;base64,([^"]+)"', page))
    svg = base64.b64decode(charts["event_queue_depth over time"]).decode()
    assert "Queue|depth: fail" in svg  # the change is marked on the gated metric's chart
    assert "Queue|depth: fail" not in base64.b64decode(charts["session_seconds over time"]).decode()


@pytest.mark.slow
def test_damaged_session_rows_cost_a_section_never_the_report(
    run: tuple[Path, dict[str, Any]],
) -> None:
    import dataclasses

    run_dir, report = run
    data = read_run(run_dir)
    damaged: list[dict[str, Any]] = [
        {"id": "x", "workload": 5, "params": [1], "wall_s": "fast"},
        {"id": 3},
    ]
    bad = dataclasses.replace(data, sessions=[*data.sessions, *damaged])
    rows = list(csv.DictReader(io.StringIO(exporters.render("csv", report, bad))))
    assert rows[len(data.sessions)]["session_id"] == "" and rows[len(data.sessions)]["wall_s"] == ""
    page = exporters.render("html", report, bad)
    assert "Could not draw this section: ValueError" in page
    assert ">Comparison</h2>" in page and "Verdict: FAIL" in page
