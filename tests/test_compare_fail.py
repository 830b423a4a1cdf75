"""CI against a stored run: ``perfmon compare BASE NEW --fail-if`` and ``--baseline-run``."""

from __future__ import annotations

from pathlib import Path

import pytest

from perfmon.cli import main
from perfmon.core.gates import GateSyntaxError
from perfmon.core.model import GateState
from perfmon.engine.compare import apply_baseline_run, judge_fail_if, omit_variants
from perfmon.engine.manifest import stats_options
from perfmon.engine.recorded import evaluate_recorded
from perfmon.engine.recorder import read_run
from perfmon.engine.runner import write_run_report
from synthetic_runs import normal_walls, record_run

N = 12


@pytest.fixture
def runs(tmp_path: Path) -> dict[str, Path]:
    """BASE at 1.0 s; SLOWER at 1.3 s (+30%); SAME at 1.0 s; FEW with 2 sessions (below any
    minimum number of sessions per side)."""
    return {
        "base": record_run(tmp_path / "base", {"baseline": normal_walls(1.0, N, seed=1)}),
        "slower": record_run(tmp_path / "slower", {"baseline": normal_walls(1.3, N, seed=2)}),
        "same": record_run(tmp_path / "same", {"baseline": normal_walls(1.0, N, seed=3)}),
        "few": record_run(tmp_path / "few", {"baseline": normal_walls(1.3, 2, seed=4)}),
    }


def test_omitted_variants_are_filled_in() -> None:
    assert omit_variants("regression(session_seconds) > 5%") == (
        "regression(session_seconds, baseline, candidate) > 5%",
        True,
    )
    assert omit_variants("speedup(x, a, b) > 1")[1] is False
    assert omit_variants("max(x) > 1")[1] is False


def test_a_shown_regression_fails_the_build(runs: dict[str, Path], capsys) -> None:  # type: ignore[no-untyped-def]
    [r] = judge_fail_if(runs["base"], runs["slower"], ["regression(session_seconds) > 5%"])
    assert r.outcome == "shown"
    assert r.lines and "SHOWN" not in r.lines[0] and "PASS" in r.lines[0]
    status = main(
        [
            "compare",
            str(runs["base"]),
            str(runs["slower"]),
            "--fail-if",
            "regression(session_seconds) > 5%",
        ]
    )
    out = capsys.readouterr().out
    assert status == 1
    assert "SHOWN: failing" in out
    assert "regression = +3" in out or "regression = +2" in out  # about +30%


def test_the_opposite_shown_passes_and_says_so(runs: dict[str, Path], capsys) -> None:  # type: ignore[no-untyped-def]
    cond = "regression(session_seconds) > 5%"
    status = main(["compare", str(runs["base"]), str(runs["same"]), "--fail-if", cond])
    out = capsys.readouterr().out
    assert status == 0
    assert "NOT SHOWN: the data shows the opposite" in out


def test_too_few_sessions_is_undecided_not_failing(runs: dict[str, Path], capsys) -> None:  # type: ignore[no-untyped-def]
    cond = "regression(session_seconds) > 5%"
    status = main(["compare", str(runs["base"]), str(runs["few"]), "--fail-if", cond])
    out = capsys.readouterr().out
    assert status == 0
    assert "UNDECIDED" in out and "min_sessions" in out


def test_several_conditions_fail_if_any_is_shown(runs: dict[str, Path]) -> None:
    results = judge_fail_if(
        runs["base"],
        runs["slower"],
        ["regression(session_seconds) > 50%", "regression(session_seconds) > 5%"],
    )
    assert [r.outcome for r in results] == ["not shown", "shown"]
    status = main(
        ["compare", str(runs["base"]), str(runs["slower"]),
         "--fail-if", "regression(session_seconds) > 50%",
         "--fail-if", "speedup(session_seconds) < 0.9"]
    )  # fmt: skip
    assert status == 1


def test_explicit_variants_compare_base_a_with_new_b(tmp_path: Path) -> None:
    base = record_run(tmp_path / "b", {"math": normal_walls(1.0, N, seed=5)})
    new = record_run(tmp_path / "n", {"sdpa": normal_walls(0.5, N, seed=6)})
    [r] = judge_fail_if(base, new, ["speedup(session_seconds, math, sdpa) < 1.5"])
    assert r.outcome == "not shown"  # a 2x speedup shows "speedup < 1.5" false


def test_a_bad_condition_is_a_usage_error(runs: dict[str, Path], capsys) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(GateSyntaxError):
        judge_fail_if(runs["base"], runs["same"], ["regression(session_seconds) >"])
    status = main(["compare", str(runs["base"]), str(runs["same"]), "--fail-if", "nope(x) > 1"])
    assert status == 2
    assert "unknown function" in capsys.readouterr().err


def test_baseline_run_judges_statistical_gates_against_the_recorded_run(tmp_path: Path) -> None:
    gates = [
        {"name": "Speed", "expr": "speedup(session_seconds, baseline, candidate) >= 1.4"},
        {"name": "Queue", "expr": "max(event_queue_depth) < 100"},
    ]
    # This run's own baseline is as fast as its candidate (the gate fails on its own data);
    # the recorded run's baseline is 2x slower (the gate passes against it).
    here = record_run(
        tmp_path / "here",
        {"baseline": normal_walls(0.5, N, seed=7), "candidate": normal_walls(0.5, N, seed=8)},
        gates=gates,
    )
    stored = record_run(tmp_path / "stored", {"baseline": normal_walls(1.0, N, seed=9)})
    data = read_run(here)
    stats = stats_options(data.manifest["campaign"])
    own = evaluate_recorded(gates, data, stats)
    assert own.run[0].state is GateState.FAIL
    judged = apply_baseline_run(gates, data, own, stored, stats)
    assert judged.run[0].state is GateState.PASS
    assert judged.run[0].reason.startswith("baseline stored:")
    assert judged.run[1] == own.run[1]  # not a statistical gate: unchanged
    _, verdict, results = write_run_report(here, gates, baseline_run=stored)
    assert verdict == "pass" and results[0].state is GateState.PASS


def test_baseline_run_must_be_a_run_directory(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    campaign = tmp_path / "c.toml"
    campaign.write_text(
        '[campaign]\nname = "x"\n[[workload]]\nname = "w"\ncommand = ["true"]\n'
        "[set.golden]\nsessions = 1\n"
    )
    status = main(
        ["run", str(campaign), "--headless", "--runs-dir", str(tmp_path / "runs"),
         "--baseline-run", str(tmp_path / "nowhere")]
    )  # fmt: skip
    assert status == 2
    assert "not a run directory" in capsys.readouterr().err
