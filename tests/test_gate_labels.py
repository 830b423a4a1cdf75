"""Issue 11 points 1, 2 and 6: label matchers, ``by`` groups, metric direction, validate."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path
from typing import Any

import pytest

from perfmon.cli import main
from perfmon.core.batch import SampleBatch
from perfmon.core.campaign import CampaignError, parse_campaign
from perfmon.core.datasource import ArrayMetricSource
from perfmon.core.gates import (
    GateSyntaxError,
    MetricSource,
    evaluate_gates,
    live_selections,
    parse_gate,
)
from perfmon.core.labels import Matcher
from perfmon.core.live import LiveState
from perfmon.core.model import (
    SYSTEM_SESSION,
    GateResult,
    GateState,
    MetricKind,
    Sample,
    SessionResult,
    SessionSpec,
    SessionStatus,
)
from perfmon.core.snapshot import Snapshot
from perfmon.core.stats import StatsOptions
from perfmon.core.units import HIGHER, LOWER, metric_direction

FAST = StatsOptions(resamples=1000, seed=3, inference="fixed")  # fixed-n: exact at n = 6


class Run:
    """Sessions with labels, fed to a LiveState and to an ArrayMetricSource alike."""

    def __init__(self) -> None:
        self.specs: list[SessionSpec] = []
        self.samples: list[Sample] = []

    def session(
        self,
        variant: str,
        samples: dict[str, list[float]],
        *,
        workload: str = "w",
        events: str = "128",
        kind: MetricKind = MetricKind.HISTOGRAM,
    ) -> None:
        sid = len(self.specs)
        spec = SessionSpec(
            id=sid,
            workload=workload,
            variant=variant,
            set_name="golden",
            index=sid,
            warmup=False,
            argv=("true",),
            env=(),
            cwd="/tmp",
            timeout_s=None,
            params=(("events", events),),
        )
        self.specs.append(spec)
        for metric, values in samples.items():
            for i, v in enumerate(values):
                self.samples.append(Sample(sid + i * 1e-3, sid, metric, v, kind))

    def system(self, metric: str, value: float) -> None:
        self.samples.append(Sample(0.5, SYSTEM_SESSION, metric, value, MetricKind.GAUGE))

    def live(self, gates: list[Any] | None = None) -> LiveState:
        live = LiveState(
            run_id="r",
            campaign="c",
            run_dir="/r",
            started_t=0.0,
            selections=live_selections(gates or []),
        )
        for spec in self.specs:
            live.add_session(spec)
        live.add_batch(SampleBatch.from_samples(self.samples))
        for spec in self.specs:
            live.update_session(SessionResult(spec=spec, status=SessionStatus.OK))
        return live

    def recorded(self) -> ArrayMetricSource:
        rows = [
            {
                "id": s.id,
                "workload": s.workload,
                "variant": s.variant,
                "set_name": s.set_name,
                "params": dict(s.params),
                "warmup": False,
                "status": "ok",
            }
            for s in self.specs
        ]
        return ArrayMetricSource.from_samples(self.samples, sessions=rows)

    def sources(self, gates: list[Any]) -> list[MetricSource]:
        return [self.live(gates), self.recorded()]


@dataclasses.dataclass(frozen=True)
class _Config:
    """What ``evaluate_gates`` and ``live_selections`` read of a ``GateConfig``."""

    name: str
    gate: Any
    window_s: float | None = None
    by: tuple[str, ...] = ()


# --- 1. the grammar ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "expr",
    [
        'p95(chunk_seconds{variant="candidate"}) < 1ms',
        'max(sdpa_max_abs_diff{variant="candidate", workload="tgat"}) <= 1e-4',
        'speedup(session_seconds{workload="tgat"}, baseline, candidate) >= 1.4',
        'max(x_bytes{events!="512", workload=~"tg.*"}) < 1MB',
        'max(x_bytes{workload!~"a|b",}) < 1MB',
        'ratio(count(a_total{variant="c"}), count(b_total{variant="c"})) < 0.1',
        'slope(rss_bytes{variant="candidate"}) < 1MiB/h',
        'var(motif_top_lift{variant="candidate"}) < 0.05',
    ],
)
def test_matchers_parse_and_round_trip(expr: str) -> None:
    gate = parse_gate(expr)
    assert parse_gate(f"{gate.lhs.text} {gate.op} {gate.threshold_text}").lhs == gate.lhs


def test_matcher_values_and_operators() -> None:
    gate = parse_gate(r'max(x_bytes{a="q\"uote", b=~"5.*", c!="x", d!~"y+"}) < 1')
    matchers = gate.lhs.matchers  # type: ignore[attr-defined]
    assert [(m.label, m.op, m.value) for m in matchers] == [
        ("a", "=", 'q"uote'),
        ("b", "=~", "5.*"),
        ("c", "!=", "x"),
        ("d", "!~", "y+"),
    ]
    assert Matcher("e", "=~", "5.*").matches("512")
    assert not Matcher("e", "=~", "5").matches("512")  # fully anchored, as in PromQL
    assert Matcher("e", "!=", "x").matches("")  # a missing label is empty


@pytest.mark.parametrize(
    ("expr", "column", "fragment"),
    [
        ("p95(chunk_seconds{variant=candidate}) < 1ms", 27, "expected a quoted value"),
        ('p95(chunk_seconds{variant=="c"}) < 1ms', 26, "expected a label matcher"),
        ('p95(chunk_seconds{variant="c") < 1ms', 30, "expected ',' or '}'"),
        ('p95(chunk_seconds{"c"}) < 1ms', 19, "expected a label name"),
        ('p95(chunk_seconds{v=~"("}) < 1ms', 22, "bad regular expression"),
        ('p95(chunk_seconds{v=~"' + "a" * 300 + '"}) < 1ms', 22, "the limit is 256"),
        ('max(x{v="a", v="b"}) < 1', 5, "matched with '=' twice"),
        ('speedup(session_seconds{variant="c"}, a, b) > 1', 9, "variant matcher"),
        ("p95(chunk_seconds, candidate) < 1ms", 18, "expected ')'"),
        ("max(x) < 1e999", 10, "not a finite number"),
    ],
)
def test_matcher_syntax_errors_name_the_column(expr: str, column: int, fragment: str) -> None:
    with pytest.raises(GateSyntaxError) as info:
        parse_gate(expr)
    assert info.value.column == column, info.value
    assert fragment in info.value.message


def _audit_like() -> Run:
    """An unseeded baseline whose motif deltas are large; a seeded candidate at 0."""
    run = Run()
    for i in range(6):
        run.session("baseline", {"motif_lift_delta": [0.2 + 0.01 * i, 0.1]})
        run.session("candidate", {"motif_lift_delta": [0.0, 0.0]})
    run.system("system_memory_percent", 40.0)
    return run


def test_a_gate_scoped_to_the_candidate_passes_where_the_pool_fails() -> None:
    run = _audit_like()
    pooled = _Config("pool", parse_gate("max(motif_lift_delta) < 0.05"))
    scoped = _Config("cand", parse_gate('max(motif_lift_delta{variant="candidate"}) < 0.05'))
    base = _Config("base", parse_gate('max(motif_lift_delta{variant!="candidate"}) < 0.05'))
    gates = [pooled, scoped, base]
    for source in run.sources(gates):
        results = {r.name: r for r in evaluate_gates(gates, source)}
        assert results["pool"].state is GateState.FAIL
        assert results["cand"].state is GateState.PASS, results["cand"].reason
        assert results["cand"].n == 12 and results["cand"].value == 0.0
        assert results["base"].state is GateState.FAIL
        assert results["base"].value == pytest.approx(0.25)


def test_machine_wide_samples_carry_no_labels() -> None:
    run = _audit_like()
    gates = [
        _Config("a", parse_gate('max(system_memory_percent{variant="candidate"}) < 70')),
        _Config("b", parse_gate('max(system_memory_percent{variant!="baseline"}) < 70')),
    ]
    for source in run.sources(gates):
        a, b = evaluate_gates(gates, source)
        assert a.state is GateState.PENDING  # no sample matches
        assert b.state is GateState.PASS and b.value == 40.0


def test_by_groups_are_all_shown_and_the_worst_decides() -> None:
    run = Run()
    for events, v in (("117", 0.5e-3), ("512", 0.8e-3), ("1024", 3e-3)):
        for variant in ("baseline", "candidate"):
            run.session(variant, {"chunk_seconds": [v, v * 1.1]}, events=events)
    gate = _Config(
        "chunk", parse_gate('p95(chunk_seconds{variant="candidate"}) < 1ms'), by=("events",)
    )
    for source in run.sources([gate]):
        (r,) = evaluate_gates([gate], source)
        assert r.state is GateState.FAIL
        assert [(g.label, g.state) for g in r.groups] == [
            ("events=117", GateState.PASS),
            ("events=512", GateState.PASS),
            ("events=1024", GateState.FAIL),
        ]
        assert r.reason.startswith("events=1024: p95 = ")
        assert "3 groups by events: 2 pass, 1 fail" in r.reason
        assert all(g.n == 2 and g.value is not None for g in r.groups)


def test_statistical_gate_lists_every_group() -> None:
    run = Run()
    for events, factor in (("128", 2.0), ("1024", 1.0)):
        for i in range(6):
            run.session("baseline", {"session_seconds": [1.0 + 0.01 * i]}, events=events)
            run.session(
                "candidate", {"session_seconds": [(1.0 + 0.013 * i) / factor]}, events=events
            )
    for s in run.samples:
        object.__setattr__(s, "kind", MetricKind.VALUE)
    gate = parse_gate("speedup(session_seconds, baseline, candidate) >= 1.4", stats=FAST)
    r = gate.evaluate(run.recorded(), "perf")
    assert r.state is GateState.FAIL
    assert [g.state for g in r.groups] == [GateState.PASS, GateState.FAIL]
    assert [g.label for g in r.groups] == ["golden w events=128", "golden w events=1024"]
    by = parse_gate(
        'speedup(session_seconds{events="128"}, baseline, candidate) >= 1.4', stats=FAST
    )
    assert by.evaluate(run.recorded(), "perf").state is GateState.PASS


def test_gate_result_groups_survive_the_snapshot_wire_form() -> None:
    run = Run()
    for events in ("1", "2"):
        run.session("candidate", {"chunk_seconds": [1e-4]}, events=events)
    gate = _Config("g", parse_gate("max(chunk_seconds) < 1ms"), by=("events",))
    (r,) = evaluate_gates([gate], run.recorded())
    snap = run.live().snapshot(now=1.0, state="running", gates=(r,))
    back = Snapshot.from_dict(snap.to_dict()).gates[0]
    assert back == r and len(back.groups) == 2
    assert GateResult.from_dict(dataclasses.asdict(r)) == r


# --- 2. direction ------------------------------------------------------------------------------


def test_direction_from_suffix_and_campaign() -> None:
    assert metric_direction("session_seconds") == LOWER
    assert metric_direction("rss_bytes") == LOWER
    assert metric_direction("parquet_read_bytes_per_second") == HIGHER
    assert metric_direction("parquet_compression_ratio") is None
    assert metric_direction("parquet_compression_ratio", {"parquet_compression_ratio": HIGHER}) == (
        HIGHER
    )
    with pytest.raises(GateSyntaxError, match=r"better = \"lower\" or \"higher\""):
        parse_gate("regression(parquet_compression_ratio, baseline, candidate) < 10%")


def _two_variants(metric: str, base: list[float], cand: list[float]) -> ArrayMetricSource:
    run = Run()
    for a, b in zip(base, cand, strict=True):
        run.session("baseline", {metric: [a]}, kind=MetricKind.VALUE)
        run.session("candidate", {metric: [b]}, kind=MetricKind.VALUE)
    return run.recorded()


BASE = [1.00, 1.02, 0.98, 1.01, 0.99, 1.03, 0.97, 1.00, 1.02, 0.99]
JITTER = [1.01, 0.99, 1.00, 1.02, 0.98, 1.00, 1.01, 0.99, 1.03, 0.97]


def test_a_throughput_drop_fails_a_regression_gate() -> None:
    metric = "parquet_read_bytes_per_second"
    src = _two_variants(metric, [1e9 * x for x in BASE], [0.815e9 * x for x in JITTER])
    gate = parse_gate(f"regression({metric}, baseline, candidate) < 10%", stats=FAST)
    r = gate.evaluate(src, "read")
    assert r.state is GateState.FAIL, r.reason
    assert r.value == pytest.approx(0.185, abs=0.02)
    assert "slower" in r.reason and "-18" in r.reason
    speed = parse_gate(f"speedup({metric}, baseline, candidate) >= 1", stats=FAST)
    s = speed.evaluate(src, "read")
    assert s.state is GateState.FAIL
    assert s.value == pytest.approx(0.815, abs=0.02)  # B / A for a rate: < 1 is slower
    assert s.ci_low is not None and s.ci_high is not None and s.value is not None
    assert s.ci_low <= s.value <= s.ci_high


def test_a_compression_ratio_improvement_passes_when_higher_is_better() -> None:
    metric = "parquet_compression_ratio"
    src = _two_variants(metric, [3.0 * x for x in BASE], [3.0 * 1.287 * x for x in JITTER])
    gate = parse_gate(
        f"regression({metric}, baseline, candidate) < 10%",
        stats=FAST,
        directions={metric: HIGHER},
    )
    r = gate.evaluate(src, "ratio")
    assert r.state is GateState.PASS, r.reason
    assert r.value == pytest.approx(-0.287, abs=0.03)
    assert "+28" in r.reason and "better" in r.reason
    lower = parse_gate(
        f"regression({metric}, baseline, candidate) < 10%",
        stats=FAST,
        directions={metric: LOWER},
    )
    assert lower.evaluate(src, "ratio").state is GateState.FAIL


def test_time_metrics_keep_their_meaning() -> None:
    src = _two_variants("session_seconds", BASE, [1.23 * x for x in JITTER])
    r = parse_gate("speedup(session_seconds, baseline, candidate) >= 1", stats=FAST).evaluate(
        src, "t"
    )
    assert r.state is GateState.FAIL
    assert "1.23x slower" in r.reason


# --- 6. validate ------------------------------------------------------------------------------

HEAD = """\
[campaign]
name = "c"
[[workload]]
name = "w"
command = ["true"]
metrics = ["chunk_seconds"]
matrix = { events = [128, 512] }
[variant.baseline]
[variant.candidate]
[set.golden]
sessions = 6
"""


def _parse(body: str, tmp_path: Path) -> Any:
    return parse_campaign(HEAD + textwrap.dedent(body), tmp_path / "c.toml")


def _error(body: str, tmp_path: Path) -> CampaignError:
    with pytest.raises(CampaignError) as info:
        _parse(body, tmp_path)
    return info.value


def test_direction_table_and_by_parse(tmp_path: Path) -> None:
    c = _parse(
        """
        [metric.parquet_compression_ratio]
        better = "higher"
        [[gate]]
        name = "g"
        expr = "regression(parquet_compression_ratio, baseline, candidate) < 10%"
        by = ["events"]
        """,
        tmp_path,
    )
    assert c.directions == {"parquet_compression_ratio": "higher"}
    assert c.gates[0].by == ("events",)


@pytest.mark.parametrize(
    ("body", "line", "key", "fragment"),
    [
        (
            '[[gate]]\nname = "g"\nexpr = "speedup(session_seconds, baseline, cand) > 1"\n',
            14,
            "gate[0].expr",
            "no variant named 'cand'",
        ),
        (
            '[[gate]]\nname = "g"\nexpr = \'max(chunk_seconds{variant="amp"}) < 1\'\n',
            14,
            "gate[0].expr",
            "no variant 'amp'",
        ),
        (
            '[[gate]]\nname = "g"\nexpr = \'max(chunk_seconds{evnts="1"}) < 1\'\n',
            14,
            "gate[0].expr",
            "no label named 'evnts'",
        ),
        (
            '[[gate]]\nname = "g"\nexpr = "max(chunk_seconds) < 1"\nby = ["evnts"]\n',
            15,
            "gate[0].by[0]",
            "no label named 'evnts'",
        ),
        (
            '[[gate]]\nname = "g"\nexpr = "max(chunk_seconds) < 1e999"\n',
            14,
            "gate[0].expr",
            "not a finite number",
        ),
        (
            '[[gate]]\nname = "g"\nexpr = "speedup(session_seconds, baseline, candidate) > 1"\n'
            "[set.small]\nsessions = 3\n",
            16,
            "set.small.sessions",
            "min_sessions = 5",
        ),
        (
            '[[gate]]\nname = "g"\nexpr = "regression(thing, baseline, candidate) < 1%"\n',
            14,
            "gate[0].expr",
            '[metric.thing] better = "lower"',
        ),
        (
            '[[gate]]\nname = "g"\nexpr = "max(' + "m" * 300 + ') < 1"\n',
            14,
            "gate[0].expr",
            "over max_metric_name_bytes",
        ),
        ("[set.huge]\nsessions = 9223372036854775807\n", 13, "set.huge.sessions", "over the limit"),
    ],
)
def test_validate_errors_name_line_and_key(
    body: str, line: int, key: str, fragment: str, tmp_path: Path
) -> None:
    err = _error(body, tmp_path)
    assert (err.line, err.key) == (line, key), err
    assert fragment in err.message


def test_a_sampling_interval_under_1ms_is_an_error(tmp_path: Path) -> None:
    text = HEAD.replace('name = "c"\n', 'name = "c"\nsample_interval = "1ns"\n', 1)
    with pytest.raises(CampaignError) as info:
        parse_campaign(text, tmp_path / "c.toml")
    assert (info.value.line, info.value.key) == (3, "campaign.sample_interval")


def test_a_misspelled_metric_warns_with_the_closest_name(tmp_path: Path) -> None:
    c = _parse('[[gate]]\nname = "g"\nexpr = "p95(sesion_seconds) < 1"\n', tmp_path)
    (w,) = c.warnings
    assert "c.toml:14: gate[0].expr:" in w
    assert "did you mean 'session_seconds'?" in w


def test_cli_validate_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.toml"
    path.write_text(HEAD + '[[gate]]\nname = "g"\nexpr = "p95(chnk_seconds) < 1"\n')
    assert main(["validate", str(path)]) == 0
    err = capsys.readouterr().err
    assert "warning:" in err and "did you mean 'chunk_seconds'?" in err
    path.write_text(HEAD + '[[gate]]\nname = "g"\nexpr = "speedup(session_seconds, a, b) > 1"\n')
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:14: gate[0].expr: no variant named 'a'" in err


# --- the report and perfmon compare speak in the metric's direction --------------------------


def test_comparison_rows_judge_in_the_metric_direction() -> None:
    from perfmon.engine.compare import _cells, _options_json, _row

    options = _options_json(FAST)
    a = [1e9 * x for x in BASE]
    b = [0.815e9 * x for x in JITTER]
    row = _row("g", "parquet_read_bytes_per_second", "baseline", "candidate", a, b, FAST)
    assert row.direction == HIGHER
    assert row.judgement.startswith("1.23x slower (-18")
    cells = _cells(row, options)
    assert cells[4].startswith("0.8")  # B / A for a rate: below 1 is worse
    ratio = _row("g", "parquet_compression_ratio", "baseline", "candidate", BASE, JITTER, FAST)
    assert ratio.direction is None and ratio.judgement.endswith("(direction unknown)")
    assert _cells(ratio, options)[4].startswith("A/B ")
    told = _row(
        "g", "parquet_compression_ratio", "a", "b", BASE, [1.287 * x for x in JITTER], FAST,
        {"parquet_compression_ratio": HIGHER},
    )  # fmt: skip
    assert told.judgement.startswith("+28") and told.judgement.endswith(", better")


def test_report_lists_every_group_of_a_gate() -> None:
    from perfmon.engine.report import _gate_json
    from perfmon.engine.report_md import _gate_table

    run = Run()
    for events, v in (("117", 0.5e-3), ("1024", 3e-3)):
        run.session("candidate", {"chunk_seconds": [v]}, events=events)
    gate = _Config("chunk", parse_gate("max(chunk_seconds) < 1ms"), by=("events",))
    (r,) = evaluate_gates([gate], run.recorded())
    js = _gate_json(r)
    assert [(g["label"], g["state"]) for g in js["groups"]] == [
        ("events=117", "pass"),
        ("events=1024", "fail"),
    ]
    md = "\n".join(_gate_table([js]))
    assert "↳ events=117 | (group) | PASS | 500 µs" in md
    assert "↳ events=1024 | (group) | FAIL | 3 ms" in md


def test_report_splits_metrics_by_workload_and_variant() -> None:
    import pyarrow as pa

    from perfmon.engine.report import _metric_stats_by_labels
    from perfmon.engine.report_md import _metrics_by_labels_lines

    sessions = [
        {"id": 0, "workload": "w", "variant": "baseline", "params": {"events": "1"}},
        {"id": 1, "workload": "w", "variant": "candidate", "params": {"events": "1"}},
        {"id": 2, "workload": "w", "variant": "candidate", "params": {"events": "1"}, "warmup": 1},
    ]
    table = pa.table(
        {
            "t": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0],
            "session": pa.array([0, 0, 1, 1, 2, SYSTEM_SESSION], pa.int32()),
            "metric": ["chunk_seconds"] * 5 + ["system_cpu_percent"],
            "value": [1.0, 3.0, 0.5, 0.5, 99.0, 50.0],
            "kind": ["histogram"] * 5 + ["gauge"],
        }
    )

    class Data:  # a RunData's batches, as the report reads them
        def batches(self):  # type: ignore[no-untyped-def]
            from perfmon.engine.recorder import _table_batches

            return _table_batches(table)

    rows = _metric_stats_by_labels(Data(), sessions, [2])  # type: ignore[arg-type]
    assert [(r["variant"], r["n"], r["max"]) for r in rows] == [
        ("baseline", 2, 3.0),
        ("candidate", 2, 0.5),  # the warm-up's 99 and the machine-wide sample are left out
    ]
    md = "\n".join(_metrics_by_labels_lines(rows))
    assert "| chunk_seconds | w | candidate | events=1 | 2 | 500 ms | 500 ms | 500 ms |" in md


def test_gate_board_lists_every_group() -> None:
    from perfmon.tui.widgets.gate_board import group_summary

    run = Run()
    for events, v in (("117", 0.5e-3), ("1024", 3e-3)):
        run.session("candidate", {"chunk_seconds": [v]}, events=events)
    gate = _Config("chunk", parse_gate("max(chunk_seconds) < 1ms"), by=("events",))
    (r,) = evaluate_gates([gate], run.recorded())
    assert group_summary(r) == " · events=117 pass (max = 500 µs) · events=1024 fail (max = 3 ms)"


def test_set_override_below_min_sessions_is_refused(tmp_path: Path) -> None:
    from perfmon.core.campaign import override_sets

    c = _parse(
        '[[gate]]\nname = "g"\nexpr = "speedup(session_seconds, baseline, candidate) > 1"\n',
        tmp_path,
    )
    assert override_sets(c, ["golden=5"]).sets[0].sessions == 5
    with pytest.raises(CampaignError) as info:
        override_sets(c, ["golden=3"])
    assert info.value.key == "set.golden" and "min_sessions = 5" in info.value.message


def test_a_window_under_1ms_is_an_error(tmp_path: Path) -> None:
    err = _error(
        '[[gate]]\nname = "g"\nexpr = "max(chunk_seconds) < 1"\nwindow = "1us"\n', tmp_path
    )
    assert (err.line, err.key) == (15, "gate[0].window")


def test_fail_if_accepts_matchers_with_variants_omitted() -> None:
    from perfmon.engine.compare import omit_variants

    assert omit_variants('regression(session_seconds{workload="w"}) > 5%') == (
        'regression(session_seconds{workload="w"}, baseline, candidate) > 5%',
        True,
    )


def test_by_groups_whose_sessions_never_emit_the_metric_are_left_out() -> None:
    run = Run()
    run.session("candidate", {"chunk_seconds": [1e-4]}, workload="pipeline")
    run.session("candidate", {"other_total": [1.0]}, workload="dag")
    gate = _Config("g", parse_gate("max(chunk_seconds) < 1ms"), by=("workload",))
    for source in run.sources([gate]):
        (r,) = evaluate_gates([gate], source)
        assert r.state is GateState.PASS, r.reason
        assert [g.label for g in r.groups] == ["workload=pipeline"]


def test_names_over_the_length_cap_are_errors(tmp_path: Path) -> None:
    err = _error(f"[variant.{'v' * 300}]\n", tmp_path)
    assert err.key.startswith("variant.vvv") and "the limit is 200" in err.message
    long_workload = HEAD.replace('name = "w"', f'name = "{"w" * 201}"', 1)
    with pytest.raises(CampaignError) as info:
        parse_campaign(long_workload, tmp_path / "c.toml")
    assert (info.value.line, info.value.key) == (4, "workload[0].name")


def test_live_selection_aggregates_are_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    import perfmon.core.live as live_mod

    monkeypatch.setattr(live_mod, "MAX_SELECTIONS", 2)
    run = Run()
    for events in ("1", "2", "3"):
        run.session("candidate", {"chunk_seconds": [1e-4, 2e-4]}, events=events)
    gate = _Config("g", parse_gate("max(chunk_seconds) < 1ms"), by=("events",))
    live = run.live([gate])
    assert live.selection_samples_dropped == 2
    (r,) = evaluate_gates([gate], live)
    assert [g.state for g in r.groups] == [GateState.PASS, GateState.PASS, GateState.PENDING]
