"""Comparisons from recorded runs: the report's section and ``perfmon compare``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from perfmon.cli import main
from perfmon.core.batch import SampleBatch
from perfmon.core.model import MetricKind, Sample, SessionResult, SessionSpec, SessionStatus
from perfmon.core.stats import StatsOptions, compare
from perfmon.engine.compare import compare_runs, comparison_section, render_comparison_md
from perfmon.engine.recorder import Recorder, read_run
from perfmon.engine.runner import evaluate_recorded_gates

OPTS = {"confidence": 0.95, "test": "mannwhitney", "resamples": 1000, "seed": 0}


def _record(
    run_dir: Path, times: dict[tuple[str, str], list[float]], *, warmup: float | None = None
) -> Path:
    """A closed run: sessions of (variant, events) with the given session_seconds."""
    run_dir.mkdir()
    rec = Recorder(run_dir)
    rec.write_manifest({"format": "perfmon-run", "version": 1, "campaign": {"stats": OPTS}})
    sid = 0
    rows = max(len(v) for v in times.values())
    for i in range(-1 if warmup is not None else 0, rows):
        for (variant, events), values in times.items():
            if i >= len(values):
                continue
            spec = SessionSpec(
                id=sid,
                workload="tgat",
                variant=variant,
                set_name="golden",
                index=max(i, 0),
                warmup=i < 0,
                argv=("true",),
                env=(),
                cwd="/tmp",
                timeout_s=None,
                params=(("events", events),),
            )
            value = warmup if i < 0 and warmup is not None else values[i]
            rec.add_batch(
                SampleBatch.from_samples(
                    [
                        Sample(float(sid), sid, "session_seconds", value, MetricKind.VALUE),
                        Sample(float(sid), sid, "parity_abs_diff", 0.0, MetricKind.VALUE),
                    ]
                )
            )
            rec.session_finished(SessionResult(spec=spec, status=SessionStatus.OK, wall_s=value))
            sid += 1
    rec.close()
    return run_dir


RNG = np.random.default_rng(3)
BASE = (1.0 + RNG.normal(0, 0.02, 8)).tolist()
CAND_128 = [x / 1.9 for x in (1.0 + RNG.normal(0, 0.02, 8)).tolist()]
CAND_1024 = [x * 1.05 for x in (1.0 + RNG.normal(0, 0.02, 8)).tolist()]


def test_report_section_per_matrix_value(tmp_path: Path) -> None:
    run = _record(
        tmp_path / "run",
        {
            ("baseline", "128"): BASE,
            ("candidate", "128"): CAND_128,
            ("baseline", "1024"): BASE,
            ("candidate", "1024"): CAND_1024,
        },
        warmup=50.0,  # a warm-up this slow would wreck every median if it were counted
    )
    section = comparison_section(read_run(run))
    rows = {(r["group"], r["metric"]): r for r in section["rows"]}
    small = rows[("golden tgat events=128", "session_seconds")]
    big = rows[("golden tgat events=1024", "session_seconds")]
    opts = StatsOptions(resamples=1000)
    expected = compare(BASE, CAND_128, opts)
    assert small["a_n"] == small["b_n"] == 8
    assert small["speedup"] == pytest.approx(expected.speedup)
    assert (small["speedup_low"], small["speedup_high"]) == pytest.approx(
        (expected.speedup_low, expected.speedup_high)
    )
    assert small["p_value"] == pytest.approx(expected.p_value)
    assert small["speedup"] == pytest.approx(1.9, rel=0.05)
    assert big["speedup"] == pytest.approx(1 / 1.05, rel=0.05)
    parity = rows[("golden tgat events=128", "parity_abs_diff")]
    assert parity["speedup"] is None and parity["a_median"] == 0.0  # no ratio of zeros
    md = "\n".join(render_comparison_md(section))
    assert "## Comparison" in md and "| golden tgat events=128 | session_seconds |" in md
    assert "1.9" in md


def test_recorded_gates_judge_each_value_and_skip_warmups(tmp_path: Path) -> None:
    run = _record(
        tmp_path / "run",
        {("baseline", "128"): BASE, ("candidate", "128"): CAND_128},
        warmup=50.0,
    )
    gates = [
        {"name": "Perf", "expr": "speedup(session_seconds, baseline, candidate) >= 1.4"},
        {"name": "Parity", "expr": "max(parity_abs_diff) <= 1e-4"},
        {"name": "Stable", "expr": "cv(session_seconds, baseline) < 10%"},
    ]
    results, _ = evaluate_recorded_gates(gates, run)
    assert [r.state.value for r in results] == ["pass", "pass", "pass"], [r.reason for r in results]
    assert results[0].n == 16
    assert "resamples" not in results[0].reason and "n = 8/8" in results[0].reason


def test_compare_runs_and_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = _record(tmp_path / "a", {("baseline", "128"): BASE})
    b = _record(tmp_path / "b", {("baseline", "128"): CAND_128})
    rows, meta = compare_runs(a, b)
    seconds = next(r for r in rows if r.metric == "session_seconds")
    assert seconds.group == "baseline tgat events=128"
    expected = compare(BASE, CAND_128)
    assert seconds.speedup == pytest.approx(expected.speedup)
    assert seconds.median_ratio == pytest.approx(np.median(BASE) / np.median(CAND_128))
    assert seconds.estimator == "HL ratio" and seconds.confidence == expected.confidence
    assert seconds.interval_method == "exact rank CI (Hodges-Lehmann, log)"
    assert seconds.p_method == "Mann-Whitney exact"
    assert meta["options"]["resamples"] == 1000
    assert main(["compare", str(a), str(b)]) == 0
    text = capsys.readouterr().out
    assert "session_seconds" in text and "speedup 95% CI" in text
    assert "exact rank CI (Hodges-Lehmann, log); Mann-Whitney exact" in text
    assert main(["compare", str(a), str(b), "--min-sessions", "9"]) == 0
    assert "n too small: 8/8, min_sessions 9" in capsys.readouterr().out
    three = _record(tmp_path / "three", {("baseline", "128"): BASE[:3]})
    assert main(["compare", str(a), str(three), "--min-sessions", "3"]) == 0
    out = capsys.readouterr().out
    assert "n = 8/3: an exact rank interval reaches at most" not in out  # 8 vs 3 reaches 95%
    assert main(["compare", str(three), str(three), "--min-sessions", "3"]) == 0
    assert "n = 3/3: an exact rank interval reaches at most 90.0%" in capsys.readouterr().out
    assert main(["compare", str(a), str(b), "--format", "json", "--test", "welch"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["options"]["test"] == "welch"
    assert {r["metric"] for r in doc["rows"]} == {"session_seconds", "parity_abs_diff"}
    assert main(["compare", str(a), str(b), "--format", "markdown"]) == 0
    assert "| baseline tgat events=128 | session_seconds |" in capsys.readouterr().out
    assert main(["compare", str(a), str(tmp_path)]) == 2
