"""Result tables (issue 15, point 2): pivots, medians, differences, scaling, throughput,
efficiency, values and gate margins."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from perfmon.core.campaign import CampaignError, load_campaign
from perfmon.core.model import GateResult, GateState, GroupResult
from perfmon.engine.tables import (
    SessionValues,
    build_tables,
    gate_margins,
    median_interval,
    render_tables_md,
)
from synthetic_runs import normal_walls, record_run


def _sessions(
    medians: dict[tuple[str, str], float],
    n: int = 8,
    *,
    key: str = "events",
    extra: dict[str, Any] | None = None,
) -> list[SessionValues]:
    """``n`` sessions per (variant, matrix value) with session_seconds around the median."""
    out = []
    for seed, ((variant, value), med) in enumerate(medians.items(), start=1):
        for x in normal_walls(med, n, seed=seed):
            vals = {"session_seconds": x, **(extra or {})}
            out.append(SessionValues("golden", "w", variant, ((key, value),), vals))
    return out


def _tables(section: dict[str, Any], kind: str, metric: str | None = None) -> list[dict[str, Any]]:
    return [
        t
        for t in section["tables"]
        if t["kind"] == kind
        and (metric is None or t.get("metric") == metric or metric in t.get("metrics", ()))
    ]


def test_pivot_is_variants_by_matrix_values() -> None:
    medians = {
        (v, e): base * f
        for v, f in (("math", 1.0), ("sdpa", 0.5), ("sparse", 0.25))
        for e, base in (("128", 1.0), ("256", 2.0), ("512", 4.0))
    }
    section = build_tables(_sessions(medians), variant_order=["math", "sdpa", "sparse"])
    (ratio,) = _tables(section, "ratio", "session_seconds")
    assert ratio["header"] == ["comparison", "events=128", "events=256", "events=512"]
    assert [r[0] for r in ratio["rows"]] == ["sdpa vs math", "sparse vs math"]
    for cell in ratio["rows"][0][1:]:
        assert cell["text"] == (
            f"{cell['better_factor']:.3g}x faster "
            f"[{cell['better_low']:.3g}, {cell['better_high']:.3g}]"
        )
        assert 1.9 < cell["better_low"] <= cell["better_factor"] <= cell["better_high"] < 2.1
    for cell in ratio["rows"][1][1:]:
        assert 3.8 < cell["better_factor"] < 4.2
    (med,) = _tables(section, "median", "session_seconds")
    assert [r[0] for r in med["rows"]] == ["math", "sdpa", "sparse"]
    cell = med["rows"][0][3]  # math at 512: about 4 s, with its interval
    assert cell["low"] <= cell["median"] <= cell["high"] and cell["level"] >= 0.95
    (diff,) = _tables(section, "difference", "session_seconds")
    d = diff["rows"][0][3]  # sdpa - math at 512: about -2 s
    assert d["low"] <= d["difference"] <= d["high"] < 0
    assert abs(d["difference"] + 2.0) < 0.2
    md = "\n".join(render_tables_md(section))
    assert "| sdpa vs math |" in md and "faster [" in md


def test_each_workload_gets_its_own_values() -> None:
    one = _sessions({("a", "1"): 1.0, ("b", "1"): 0.5})
    two = [
        SessionValues("golden", "other", s.variant, s.params, {"session_seconds": x * 10})
        for s, x in zip(one, [s.values["session_seconds"] for s in one], strict=True)
    ]
    section = build_tables([*one, *two])
    meds = {t["workload"]: t for t in _tables(section, "median", "session_seconds")}
    assert meds["w"]["rows"][0][1]["median"] == pytest.approx(1.0, rel=0.05)
    assert meds["other"]["rows"][0][1]["median"] == pytest.approx(10.0, rel=0.05)


def test_constants_and_one_off_values_are_values_not_ratios() -> None:
    sessions = _sessions({("a", "1"): 1.0, ("b", "1"): 0.5}, extra={"config_rows": 10_000.0})
    for i, s in enumerate(sessions):  # a parity diff: a one-off value that varies
        s.values["sdpa_max_abs_diff"] = 1e-5 * (1 + i)  # type: ignore[index]
    section = build_tables(
        sessions,
        kinds={"sdpa_max_abs_diff": "value", "config_rows": "value", "session_seconds": "value"},
        directions={"sdpa_max_abs_diff": "lower"},  # even with a direction: no ratio of a one-off
    )
    assert not _tables(section, "ratio", "sdpa_max_abs_diff")
    assert not _tables(section, "ratio", "config_rows")
    (const,) = _tables(section, "values", "config_rows")
    assert const["rows"][0][0]["text"] == "constant: config_rows = 10,000"
    (parity,) = _tables(section, "values", "sdpa_max_abs_diff")
    assert "range" in parity["rows"][0][1]["text"]
    assert _tables(section, "ratio", "session_seconds")


def test_zero_spread_timing_is_constant_and_system_metrics_are_not_compared() -> None:
    sessions = _sessions({("a", "1"): 1.0, ("b", "1"): 0.5}, extra={"chunk_seconds": 0.25})
    for s in sessions:
        s.values["system_memory_percent"] = 40.0 + len(s.values)  # type: ignore[index]
    section = build_tables(sessions, directions={"system_memory_percent": "lower"})
    assert (
        "chunk_seconds = 250 ms"
        in _tables(section, "values", "chunk_seconds")[0]["rows"][0][0]["text"]
    )
    assert not _tables(section, "ratio", "system_memory_percent")


def test_reference_previous_compares_cumulative_layers() -> None:
    medians = {("L1", "1"): 1.0, ("L1+L2", "1"): 0.8, ("L1+L2+L3", "1"): 0.4}
    order = ["L1", "L1+L2", "L1+L2+L3"]
    prev = build_tables(_sessions(medians), reference="previous", variant_order=order)
    (ratio,) = _tables(prev, "ratio", "session_seconds")
    assert [r[0] for r in ratio["rows"]] == ["L1+L2 vs L1", "L1+L2+L3 vs L1+L2"]
    assert abs(ratio["rows"][1][1]["better_factor"] - 2.0) < 0.1  # 0.8 / 0.4, not 1.0 / 0.4
    named = build_tables(_sessions(medians), reference="L1+L2", variant_order=order)
    (ratio,) = _tables(named, "ratio", "session_seconds")
    assert [r[0] for r in ratio["rows"]] == ["L1 vs L1+L2", "L1+L2+L3 vs L1+L2"]
    assert "slower" in ratio["rows"][0][1]["text"]


def test_n_too_small_gives_no_interval() -> None:
    section = build_tables(_sessions({("a", "1"): 1.0, ("b", "1"): 0.5}, n=3))
    (ratio,) = _tables(section, "ratio", "session_seconds")
    assert ratio["rows"][0][1]["text"].startswith("n too small")
    (med,) = _tables(section, "median", "session_seconds")
    assert med["rows"][0][1]["note"] == "n too small" and "low" not in med["rows"][0][1]


def test_one_variant_with_a_matrix_gives_scaling_tables() -> None:
    medians = {("only", c): 0.1 * int(c) for c in ("10", "20", "40")}
    section = build_tables(_sessions(medians, key="chunks", extra={"chunks_total": 5.0}))
    (scaling,) = _tables(section, "scaling", "session_seconds")
    assert [r[0] for r in scaling["rows"]] == ["chunks=10", "chunks=20", "chunks=40"]
    assert scaling["rows"][0][2]["text"] == "reference"
    assert "slower" in scaling["rows"][2][2]["text"]  # 4x the work: about 4x slower
    assert not _tables(section, "ratio")


def test_efficiency_with_a_workers_matrix() -> None:
    # 1 worker 8 s, 2 workers 4.4 s (speedup ~1.82, efficiency ~91%), 4 workers 2.5 s (80%)
    medians = {("pool", "1"): 8.0, ("pool", "2"): 4.4, ("pool", "4"): 2.5}
    section = build_tables(_sessions(medians, n=10, key="workers"))
    (eff,) = _tables(section, "efficiency")
    rows = {r[1]: r for r in eff["rows"]}
    assert rows["1"][3]["text"] == "100% (reference)"
    assert rows["2"][3]["efficiency"] == pytest.approx(8.0 / 4.4 / 2, abs=0.03)
    assert rows["4"][3]["efficiency"] == pytest.approx(0.8, abs=0.03)
    assert rows["4"][3]["low"] <= rows["4"][3]["efficiency"] <= rows["4"][3]["high"]
    # a declared workers_key names another key
    section = build_tables(
        _sessions(medians, n=10, key="procs"), workloads={"w": {"workers_key": "procs"}}
    )
    assert _tables(section, "efficiency")


def test_throughput_in_declared_units() -> None:
    sessions = _sessions({("a", "1"): 2.0, ("b", "1"): 1.0}, extra={"backtests_total": 200.0})
    section = build_tables(
        sessions, workloads={"w": {"units": "backtests", "units_metric": "backtests_total"}}
    )
    (tp,) = _tables(section, "throughput")
    a, b = tp["rows"][0][1], tp["rows"][1][1]
    assert a["per_second"] == pytest.approx(100.0, rel=0.05)
    assert b["per_second"] == pytest.approx(200.0, rel=0.05)
    assert "backtests/s" in b["text"] and a["low"] <= a["per_second"] <= a["high"]
    plain = build_tables(_sessions({("a", "1"): 2.0}))  # sessions/min when slower than 1/s
    (tp,) = _tables(plain, "throughput")
    assert "sessions/min" in tp["rows"][0][1]["text"]


def test_median_interval_covers_at_its_level() -> None:
    """Coverage by simulation (skewed data, n = 10 and 25): at least the stated level,
    within three standard errors of 2,000 repetitions."""
    rng = np.random.default_rng(7)
    true_median = 1.0  # lognormal(0, 1): median exp(0)
    for n in (10, 25):
        hits = 0
        reps = 2000
        coverage = 0.0
        for _ in range(reps):
            xs = rng.lognormal(0.0, 1.0, n).tolist()
            low, high, coverage = median_interval(xs, 0.95)
            hits += low <= true_median <= high
        assert coverage >= 0.95
        se = math.sqrt(coverage * (1 - coverage) / reps)
        assert hits / reps >= coverage - 3 * se
    low, high, cov = median_interval([3.0, 1.0, 2.0])  # n too small: [min, max], 75%
    assert (low, high, cov) == (1.0, 3.0, 0.75)
    with pytest.raises(ValueError):
        median_interval([])


def test_gate_margins() -> None:
    g = GateResult(
        "Performance", "speedup(session_seconds, baseline, candidate) >= 1.4", GateState.PASS,
        1.80, 20, "", 1.52, 2.1,
        groups=(GroupResult("events=128", GateState.FAIL, 1.2, 10, "", 1.1, 1.3),),
        op=">=", threshold=1.4,
    )  # fmt: skip
    ram = GateResult(
        "RAM", "max(system_memory_percent) <= 70", GateState.PASS, 55.0, 9, "",
        op="<=", threshold=70.0,
    )  # fmt: skip
    # The threshold is the result's, never parsed anew: a result without one has no margin.
    assert gate_margins([dataclasses.replace(ram, op="", threshold=None)]) == []
    (top,) = gate_margins([dataclasses.replace(g, groups=())])
    assert top["margin"] == pytest.approx(0.4)
    assert top["worst_margin"] == pytest.approx(0.12)
    assert top["text"] == "1.8 vs >= 1.4: margin +0.4 (interval low 1.52: +0.12)"
    m = gate_margins([g, ram])
    assert len(m) == 2  # per group: one row per group, not the deciding one again
    assert m[0]["group"] == "events=128" and m[0]["margin"] == pytest.approx(-0.2)
    assert m[0]["worst_margin"] == pytest.approx(-0.3)  # interval low 1.1 vs >= 1.4
    assert m[1]["margin"] == pytest.approx(15.0) and "worst" not in m[1]


def test_report_has_tables_in_md_and_json(tmp_path: Path) -> None:
    from perfmon.engine.recorder import read_run
    from perfmon.engine.report import build_report, render_markdown

    run = record_run(
        tmp_path / "run",
        {"baseline": normal_walls(1.0, 8), "candidate": normal_walls(0.7, 8, seed=2)},
    )
    report = build_report(read_run(run), [], verdict="pass")
    section = json.loads(json.dumps(report["tables"]))
    assert _tables(section, "ratio", "session_seconds")
    md = render_markdown(report)
    assert "## Result tables" in md and "candidate vs baseline" in md
    assert "constant: event_queue_depth = 4.5" in md  # mean 4.5 in every session
    from perfmon.engine import exporters

    page = exporters.render("html", report, read_run(run))
    assert ">Result tables</h2>" in page and "candidate vs baseline" in page


def test_table_cap_names_what_was_left_out() -> None:
    extra = {f"m{i}_seconds": 1.0 for i in range(3)}
    sessions = _sessions({("a", "1"): 1.0, ("b", "1"): 0.5}, extra=extra)
    section = build_tables(sessions, max_tables=2)
    assert len(section["tables"]) == 2 and section["left_out"]
    assert "more table(s) left out" in "\n".join(render_tables_md(section))


def test_a_gated_one_off_value_is_never_left_out() -> None:
    """A parity gate's values (a one-off metric) come first, like every gated metric's tables:
    the cap leaves out ungated timings before it (a 5-variant audit hit the cap)."""
    extra = {f"m{i}_seconds": 1.0 for i in range(3)}
    sessions = _sessions({("a", "1"): 1.0, ("b", "1"): 0.5}, extra=extra)
    for i, s in enumerate(sessions):
        s.values["parity_abs_diff"] = 1e-6 * (1 + i)  # type: ignore[index]
    kinds = {"parity_abs_diff": "value"}
    section = build_tables(sessions, kinds=kinds, gated=["parity_abs_diff"], max_tables=2)
    assert _tables(section, "values", "parity_abs_diff")
    ungated = build_tables(sessions, kinds=kinds, max_tables=2)
    assert not _tables(ungated, "values", "parity_abs_diff")


def test_campaign_reference_and_units(tmp_path: Path) -> None:
    def write(text: str) -> Path:
        p = tmp_path / "c.toml"
        p.write_text(text)
        return p

    base = """
[campaign]
name = "x"
{camp}
[[workload]]
name = "grid"
command = ["true"]
matrix = {{ procs = [1, 2] }}
{wl}
[variant.L1]
[variant.L2]
[set.golden]
sessions = 5
"""
    c = load_campaign(
        write(
            base.format(
                camp='reference = "previous"',
                wl='units = "backtests"\nunits_metric = "backtests_total"\nworkers_key = "procs"',
            )
        )
    )
    assert c.reference == "previous"
    w = c.workloads[0]
    assert (w.units, w.units_metric, w.workers_key) == ("backtests", "backtests_total", "procs")
    assert load_campaign(write(base.format(camp='reference = "L2"', wl=""))).reference == "L2"
    assert load_campaign(write(base.format(camp="", wl=""))).reference == "first"
    with pytest.raises(CampaignError, match="reference"):
        load_campaign(write(base.format(camp='reference = "L9"', wl="")))
    with pytest.raises(CampaignError, match="workers_key"):
        load_campaign(write(base.format(camp="", wl='workers_key = "threads"')))


def test_constant_metrics_fold_into_one_line_per_set_and_workload() -> None:
    """Constant metrics are one "constant: a = 1, b = 2" line, not a table (or a 1x [1, 1]
    ratio) each (issue 14)."""
    sessions = _sessions(
        {("a", "1"): 1.0, ("b", "1"): 0.5},
        extra={"config_rows": 10_000.0, "page_bytes": 4096.0, "read_bytes_per_second": 9.27e7},
    )
    section = build_tables(sessions)
    values = [t for t in section["tables"] if t["kind"] == "values"]
    (line,) = values
    text = line["rows"][0][0]["text"]
    assert text.startswith("constant: ")
    assert "config_rows = 10,000" in text
    assert "page_bytes = 4 KiB" in text
    assert "read_bytes_per_second = 92.7 MB/s" in text  # a rate, humanised
    assert sorted(line["metrics"]) == ["config_rows", "page_bytes", "read_bytes_per_second"]
    assert line["rows"][0][0]["constants"]["page_bytes"] == 4096.0
    assert not _tables(section, "ratio", "config_rows")
    md = "\n".join(render_tables_md(section))
    assert md.count("| constant: ") == 1 and "page_bytes = 4 KiB" in md


def test_median_interval_of_a_long_run_neither_overflows_nor_stalls() -> None:
    # math.comb(n, j) * 0.5**n overflowed a float past n ~ 1,030 sessions: the end-of-run
    # report of a 20,000-session soak failed. The binomial CDF is now taken in floating point.
    rng = np.random.default_rng(7)
    xs = rng.normal(10.0, 1.0, 20_000)
    low, high, coverage = median_interval(xs.tolist())
    assert low < float(np.median(xs)) < high
    assert 0.95 <= coverage < 0.96
    # and the same ranks as the exact sum where that still fits (n = 1,000)
    small = xs[:1000].tolist()
    k = 1
    cdf = 0.5**1000
    for j in range(1, 501):
        if 1.0 - 2.0 * cdf >= 0.95:
            k = j
        cdf += math.comb(1000, j) * 0.5**1000
    s = sorted(small)
    assert median_interval(small)[:2] == (s[k - 1], s[1000 - k])
