"""One gate grammar (issue 12, point 1): a gate's result carries its threshold, unit, direction
and labels, and the report, the board, the margins and every exporter read them from there."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from perfmon.core.gates import fill_variants, format_gate_value, parse_gate
from perfmon.core.model import GateResult, GateState
from perfmon.core.snapshot import SNAPSHOT_VERSION, Snapshot
from perfmon.engine import exporters
from perfmon.engine.exporters.github_summary import render_github
from perfmon.engine.exporters.junit_report import render_junit
from perfmon.engine.recorder import read_run
from perfmon.engine.report import build_report, render_markdown
from perfmon.engine.tables import gate_margins
from perfmon.tui.widgets.gate_board import BAR_WIDTH, GateBoard
from synthetic_runs import normal_walls, record_run

SRC = Path(__file__).resolve().parents[1] / "src" / "perfmon"


def _result(expr: str, value: float | None, low: float | None = None, high: float | None = None,
            state: GateState = GateState.PASS) -> GateResult:  # fmt: skip
    """A result as ``Gate.evaluate`` gives it: with the parsed gate's grammar."""
    gate = parse_gate(expr)
    return gate.annotate(GateResult(expr, expr, state, value, 10, "why", low, high))


@pytest.mark.parametrize(
    ("expr", "unit", "rate", "direction"),
    [
        ("p99.9(chunk_seconds) < 1ms", "time", False, "lower"),
        ("p100(rss_bytes) < 1GiB", "bytes", False, "lower"),
        ("p50(event_queue_depth) < 100", "none", False, ""),
        ("slope(rss_bytes) < 1MiB/h", "bytes", True, "lower"),
        ("count(chunks_total) > 3", "count", False, ""),
        ("max(system_memory_percent) <= 70", "percent", False, ""),
        ("speedup(session_seconds, baseline, candidate) >= 1.4x", "ratio", False, "lower"),
        ("regression(read_bytes_per_second, a, b) < 10%", "ratio", False, "higher"),
        ("ratio(count(compressions_total), count(chunks_total)) < 10%", "ratio", False, ""),
    ],
)
def test_the_result_carries_the_parsers_unit_and_direction(
    expr: str, unit: str, rate: bool, direction: str
) -> None:
    r = _result(expr, 1.0)
    gate = parse_gate(expr)
    assert (r.unit, r.rate, r.direction) == (unit, rate, direction)
    assert (r.op, r.threshold, r.limit) == (gate.op, gate.threshold, gate.limit_text)
    assert r.threshold_text == expr.rsplit(" ", 1)[1]


def test_the_result_carries_every_selection_with_its_matchers() -> None:
    expr = 'ratio(count(a_total{variant="c", events=~"5.*"}), count(b_total)) < 10%'
    r = _result(expr, 0.01)
    assert r.selections == (
        ("a_total", (("variant", "=", "c"), ("events", "=~", "5.*"))),
        ("b_total", ()),
    )
    assert r.metrics == ("a_total", "b_total")
    spread = _result('var(x_seconds{workload="w"}, baseline) < 1', 0.1)
    assert spread.selections == (("x_seconds", (("workload", "=", "w"),)),)


def test_campaign_directions_reach_the_result() -> None:
    gate = parse_gate("max(score) > 3", directions={"score": "higher"})
    assert gate.direction == "higher"
    assert gate.annotate(GateResult("g", "e", GateState.PENDING, None, 0, "")).direction == "higher"


def test_evaluated_and_by_results_carry_the_grammar() -> None:
    from test_gates import FakeSource

    src = FakeSource({("quantile", "chunk_seconds"): (0.0005, 40)})
    r = parse_gate("p99.9(chunk_seconds) < 1ms").evaluate(src, "Chunk")
    assert r.state is GateState.PASS
    grammar: tuple[str, str, object] = ("time", "<", pytest.approx(0.001))
    assert (r.unit, r.op, r.threshold) == grammar


def test_format_gate_value() -> None:
    assert format_gate_value(0.0015, "time") == "1.5 ms"
    assert format_gate_value(2 * 1024**2, "bytes") == "2 MiB"
    assert format_gate_value(1024**2 / 3600, "bytes", rate=True) == "1 MiB/h"
    assert format_gate_value(1.4, "ratio") == "1.4"
    assert format_gate_value(1.4, "") == format_gate_value(1.4, "none") == "1.4"
    assert format_gate_value(1.4, "furlongs") == "1.4"  # an unknown unit: a plain number


def test_snapshots_keep_the_grammar_and_old_ones_still_decode() -> None:
    r = _result('p95(x_seconds{variant="c"}) < 1ms', 0.0005)
    snap = Snapshot(SNAPSHOT_VERSION, "r", "c", "/r", "running", 0.0, 1.0, 0, 0, 0, 0, gates=(r,))
    back = Snapshot.from_dict(json.loads(json.dumps(snap.to_dict())))
    assert back.gates == (r,)
    old = {k: v for k, v in dataclasses.asdict(r).items()}
    for key in ("op", "threshold", "threshold_text", "limit", "unit", "rate", "direction"):
        del old[key]
    del old["selections"]
    decoded = GateResult.from_dict(old)
    assert decoded.threshold is None and decoded.unit == "" and decoded.metrics == ()


def test_margins_read_the_results_threshold_only() -> None:
    r = _result("p99.9(chunk_seconds) < 1ms", 0.0004)
    (m,) = gate_margins([r])
    assert m["op"] == "<" and m["threshold"] == pytest.approx(0.001)
    assert m["margin"] == pytest.approx(0.0006)
    # Text that no longer parses does not matter: nothing is parsed again.
    (again,) = gate_margins([dataclasses.replace(r, expr="not a gate")])
    assert again["margin"] == pytest.approx(0.0006)


def test_the_board_draws_the_interval_against_the_results_threshold() -> None:
    r = _result("speedup(session_seconds, baseline, candidate) >= 1.4", 2.0, 1.8, 2.2)
    cells = GateBoard.cells_of(GateBoard(), r)
    bar = str(cells[2].text)[:BAR_WIDTH]
    assert "│" in bar and "●" in bar
    # The threshold is the result's: with none, no bar (the expression is not parsed).
    none = GateBoard.cells_of(GateBoard(), dataclasses.replace(r, threshold=None))
    assert "│" not in str(none[2].text)[:BAR_WIDTH]


@pytest.fixture
def report(tmp_path: Path) -> dict[str, object]:
    run_dir = record_run(
        tmp_path / "run",
        {"baseline": normal_walls(1.0, 6, seed=1), "candidate": normal_walls(0.5, 6, seed=2)},
    )
    gates = [
        _result("p99.9(chunk_seconds) < 1ms", 0.0015, state=GateState.FAIL),
        _result("p100(rss_bytes) < 1GiB", 2 * 1024**2),
        _result("slope(rss_bytes) < 1MiB/h", 1024**2 / 3600 / 2, 0.0, 1024**2 / 3600),
    ]
    return build_report(read_run(run_dir), gates, verdict="fail")


def test_report_and_exporters_show_the_parsers_unit(report: dict[str, object]) -> None:
    gates = report["gates"]
    assert isinstance(gates, list)
    assert [g["unit"] for g in gates] == ["time", "bytes", "bytes"]
    assert [g["rate"] for g in gates] == [False, False, True]
    assert gates[0]["metrics"] == ["chunk_seconds"] and gates[0]["limit"] == "< 1 ms (1ms)"
    md = render_markdown(report)
    row = next(line for line in md.splitlines() if line.startswith("| p99.9(chunk_seconds)"))
    assert "| 1.5 ms |" in row
    assert "| 2 MiB |" in next(line for line in md.splitlines() if line.startswith("| p100("))
    slope = next(line for line in md.splitlines() if line.startswith("| slope("))
    assert "| 512 KiB/h | [0 B/h, 1 MiB/h] |" in slope
    github = render_github(report)
    assert "1.5 ms" in github and "512 KiB/h" in github
    junit = render_junit(report)
    assert "value: 0.0015 (1.5 ms)" in junit and "limit: &lt; 1 ms (1ms)" in junit
    assert exporters.gate_quantity(gates[2], gates[2]["value"]) == "512 KiB/h"
    assert exporters.gate_quantity({}, 1.23456) == "1.235"  # an older report: plain number


def test_report_html_shows_the_parsers_unit(report: dict[str, object]) -> None:
    pytest.importorskip("matplotlib")
    from perfmon.engine.exporters.html_report import _gate_table, _gated_metrics

    html = _gate_table(report["gates"])  # type: ignore[arg-type]
    assert "1.5 ms" in html and "512 KiB/h" in html
    assert _gated_metrics(report) == {
        "chunk_seconds": ["p99.9(chunk_seconds) < 1ms"],
        "rss_bytes": ["p100(rss_bytes) < 1GiB", "slope(rss_bytes) < 1MiB/h"],
    }


def test_fill_variants_reads_the_grammar() -> None:
    assert fill_variants("regression(session_seconds) > 5%", "A", "B") == (
        "regression(session_seconds, A, B) > 5%",
        True,
    )
    assert fill_variants(' speedup( x_seconds{workload="w"} ) >= 1.2', "A", "B") == (
        'speedup(x_seconds{workload="w"}, A, B) >= 1.2',
        True,
    )
    assert fill_variants("speedup(x, a, b) > 1", "A", "B") == ("speedup(x, a, b) > 1", False)
    assert fill_variants("max(x) > 1", "A", "B")[1] is False
    assert fill_variants("regression(x{bad) > 1", "A", "B")[1] is False  # parse_gate says why


def test_nothing_outside_the_core_parses_gate_text() -> None:
    """Only the places that build gates to evaluate them (recorded runs, compare --fail-if)
    call the parser; no regex over gate text is left in the engine or the viewer."""
    callers = sorted(
        str(p.relative_to(SRC))
        for p in SRC.rglob("*.py")
        if "core" not in p.parts and re.search(r"\bparse_gate\(", p.read_text())
    )
    assert callers == ["engine/compare.py", "engine/recorded.py"]
    for p in SRC.rglob("*.py"):
        if "core" in p.parts:
            continue
        text = p.read_text()
        assert "_GATE_ARG_RE" not in text and "_OMITTED_VARIANTS_RE" not in text, p
